"""The closed loop (``offer-ranker simulate-online``): the simulator as live traffic against the
real ranking code, retrained on its own logs every round.

Three arms live through the same world — the same users, request times and candidate offers
(the simulator draws them per day and window, whatever the policy) — and differ only in what
they show, and so in what they learn from:

* ``logging``: the simulator's own heuristic (noisy popularity, a share shuffled), never retrained;
* ``model``: after a warm-up on the heuristic's logs, each round a bundle is trained on all the
  arm's logs so far and ranks the next round's requests through :class:`~offer_ranker.serve.engine.Engine`
  (online features, click model, cold-start prior, MMR, partner cap) without exploration;
* ``explore``: the same with exploration (``simulate_online.explore_rate`` of requests).

The engine picks the top ``k`` (1-3) of each page; the rest of the page keeps the heuristic's
order below them. Every shown impression is recorded in the engine's online store, and clicks
and conversions too, once the simulator has drawn them (after each window of requests), as the
service's ``/feedback`` would. Per round and arm: observed and expected (true-probability) clicks
in the top ``k`` per request, revenue per request, and offer coverage (the share of offers live
in the round that reached a top slot).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from offer_ranker import simulator as sim
from offer_ranker.config import Config, ServeConfig
from offer_ranker.console import Track, no_track
from offer_ranker.featurize.online import Event
from offer_ranker.io import staged_outputs
from offer_ranker.model.bundle import Bundle
from offer_ranker.serve.api import RankRequest

ARMS = ("logging", "model", "explore")


@dataclass
class Round:
    """What one arm's traffic did in one round."""

    requests: int = 0
    top_clicks: int = 0
    top_expected: float = 0.0  # sum of the true click probabilities of the top-k slots
    revenue: float = 0.0
    offers_on_top: set[int] | None = None
    offers_live: set[int] | None = None

    def summary(self) -> dict[str, float]:
        n = max(self.requests, 1)
        return {"requests": self.requests, "top_ctr": self.top_clicks / n, "top_expected_ctr": self.top_expected / n,
                "revenue_per_request": self.revenue / n,
                "coverage": len(self.offers_on_top or ()) / max(len(self.offers_live or ()), 1)}


def _engine_policy(engine: Any, k: int, heuristic: sim.Policy, user_ids: list[str],
                   offer_ids: list[str]) -> sim.Policy:
    """A simulator :data:`~offer_ranker.simulator.Policy` that asks ``engine`` for the top ``k`` of
    each request and fills the rest of the page in ``heuristic``'s order; ``user_ids`` and
    ``offer_ids`` are the simulator's ids by index."""
    offer_id = offer_ids.__getitem__

    def policy(world: sim.World, batch: sim.Batch, rng: np.random.Generator) -> sim.Slate:
        base = heuristic(world, batch, rng)
        position = np.zeros_like(base.position)
        propensity = np.full(base.position.shape, np.nan)
        for r in range(len(batch.request)):
            n = int(batch.n[r])
            offers = batch.offer[r, :n]
            ts = _datetime(int(batch.ts[r]))
            request = RankRequest(
                user_id=user_ids[batch.user[r]], ts=ts, k=min(k, n),
                context={"device": sim.DEVICES[batch.device[r]], "country": sim.COUNTRIES[batch.country[r]],
                         "surface": sim.SURFACES[batch.surface[r]]},
                candidates=[{"offer_id": offer_id(o), "features": {"price": float(batch.price[r, s])}}
                            for s, o in enumerate(offers)])
            shown = engine.rank(request).response.offers
            slot = {offer_id(o): s for s, o in enumerate(offers)}
            top = [slot[o.offer_id] for o in shown]
            rest = [s for s in np.argsort(base.position[r, :n]) if s not in top]
            for pos, s in enumerate(top + rest, start=1):
                position[r, s] = pos
                propensity[r, s] = shown[pos - 1].propensity if pos <= len(top) else 1.0
                if pos > len(top):  # the engine recorded its own offers; the rest of the page too
                    engine.store.apply(Event("impression", user_ids[batch.user[r]], offer_id(offers[s]), ts, pos))
        return sim.Slate(position, propensity, np.full(len(batch.request), "model", dtype=object))

    return policy


def _ids(world: sim.World) -> tuple[list[str], list[str]]:
    """The user and offer ids by index, formatted as the simulator writes them."""
    return sim.user_ids(world).to_pylist(), sim.offer_ids(world).to_pylist()


def _datetime(us: int) -> datetime:
    return datetime(1970, 1, 1) + (np.datetime64(us, "us") - np.datetime64(0, "us")).item()


def _feedback(engine: Any, log: sim.LogChunk, user_ids: list[str], offer_ids: list[str]) -> None:
    """Clicks and conversions of a window, into the engine's online store at their own times."""
    for i in np.flatnonzero(log.click):
        user, offer = user_ids[log.user[i]], offer_ids[log.offer[i]]
        engine.store.apply(Event("click", user, offer, _datetime(int(log.click_ts[i]))))
        if log.conversion[i]:
            engine.store.apply(Event("conversion", user, offer, _datetime(int(log.conversion_ts[i]))))


def _train(cfg: Config, raw_rounds: list[Path], work: Path, name: str) -> Bundle:
    """Features and a bundle from the arm's logs so far, written to ``work/bundle``: the closed loop
    keeps its models to itself (never in the user's model store or MLflow runs)."""
    from offer_ranker.featurize.build import build_features
    from offer_ranker.model.train import train

    raw = work / "raw"
    with staged_outputs(raw) as stage:
        for table in ("impressions", "clicks", "conversions"):
            pq.write_table(pa.concat_tables([pq.read_table(r / f"{table}.parquet") for r in raw_rounds]),
                           stage.path(f"{table}.parquet"))
        for table in ("offers", "users"):
            pq.write_table(pq.read_table(raw_rounds[0] / f"{table}.parquet"), stage.path(f"{table}.parquet"))
    build_features(raw, work / "features", cfg)
    # train on everything logged: the next round is the test, so no time is held out for it
    last = datetime.fromisoformat(json.loads((work / "features" / "manifest.json").read_text())["last_ts"])
    tcfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"train_until": last})})
    bundle = train(work / "features", tcfg, save=False).bundle
    bundle.info["tag"] = name
    bundle.write(work / "bundle")
    return bundle


class _ArmRun:
    """One arm through the whole period: its day policy retrains at each round's first day."""

    def __init__(self, arm: str, world: sim.World, cfg: Config, out: Path, track: Track) -> None:
        c = cfg.simulate_online
        self.arm, self.world, self.cfg, self.out, self.track = arm, world, cfg, out, track
        self.heuristic = sim.logging_policy(cfg.simulate.uniform_share, cfg.simulate.seed)
        self.serve = ServeConfig(prediction_log=None, journal=None, seed=cfg.simulate.seed, partner_cap=cfg.serve.partner_cap,
                                 mmr_lambda=cfg.serve.mmr_lambda, prior_impressions=cfg.serve.prior_impressions,
                                 explore_rate=c.explore_rate if arm == "explore" else 0.0,
                                 exploration=c.exploration, explore_below=cfg.serve.explore_below)
        self.round_of_day = [0] * c.warmup_days + [1 + d // c.days_per_round for d in range(c.rounds * c.days_per_round)]
        self.rounds: list[Round] = [Round(offers_on_top=set(), offers_live=set()) for _ in range(c.rounds + 1)]
        self.raw: list[Path] = []
        self.user_ids, self.offer_ids = _ids(world)
        self.engine: Any = None
        self.bundles: list[str] = []
        self._stage: Any = None
        self._writer: Any = None

    def policy_for_day(self, day: int, clicks: np.ndarray, impressions: np.ndarray) -> sim.Policy:
        heuristic = self.heuristic(day, clicks, impressions)
        r = self.round_of_day[day]
        if day == 0 or r != self.round_of_day[day - 1]:
            self._start_round(r)
        if self.arm == "logging" or r == 0:
            return heuristic
        return _engine_policy(self.engine, self.cfg.simulate_online.k, heuristic, self.user_ids, self.offer_ids)

    def _start_round(self, r: int) -> None:
        self._close_round()
        if r > 0 and self.arm != "logging":
            from offer_ranker.serve.engine import Engine

            work = self.out / self.arm / f"round-{r}"
            bundle = _train(self.cfg, self.raw, work, f"simulate-online:{self.arm}-round-{r}")
            self.bundles.append(str(work / "bundle"))
            self.engine = Engine.serving(self.serve, bundle)
            if not self.engine.ready:
                raise RuntimeError(f"round {r}: the bundle in {work / 'bundle'} does not load: {self.engine.problems}")
        folder = self.out / self.arm / f"round-{r}" / "logs"
        self._stage_cm = staged_outputs(folder)
        self._stage = self._stage_cm.__enter__()
        self._writer = sim.LogWriter(self.world, self._stage)
        self.raw.append(folder)

    def _close_round(self) -> None:
        if self._writer is None:
            return
        self._writer.flush()
        self._writer.close()
        pq.write_table(sim.offers_table(self.world, self._writer.offer_ids), self._stage.path("offers.parquet"))
        pq.write_table(sim.users_table(self.world, self._writer.user_ids), self._stage.path("users.parquet"))
        self._stage_cm.__exit__(None, None, None)
        self._writer = None

    def record(self, day: int, log: sim.LogChunk) -> None:
        """Write a window's logs, count its top slots, and feed its outcomes back to the engine."""
        self._writer.write(log)
        k = self.cfg.simulate_online.k
        stats, top = self.rounds[self.round_of_day[day]], log.position <= k
        stats.requests += int((log.position == 1).sum())
        stats.top_clicks += int(log.click[top].sum())
        stats.top_expected += float(log.p_click[top].sum())
        stats.revenue += float(self.world.payout[log.offer[log.conversion]].sum())
        stats.offers_on_top.update(np.unique(log.offer[top]).tolist())
        stats.offers_live.update(np.unique(log.offer).tolist())
        if self.engine is not None and self.round_of_day[day] > 0:  # the model arms, once serving
            _feedback(self.engine, log, self.user_ids, self.offer_ids)

    def run(self) -> list[dict[str, float]]:
        request_day = (self.world.request_ts - self.world.start) // sim.DAY
        days = self.world.days
        done = 0
        for log in sim.run_days(self.world, self.policy_for_day, seed=self.cfg.simulate.seed,
                                track=lambda items, _, total: self.track(items, f"{self.arm:<8} days", total)):
            day = int(request_day[log.request[0]])
            self.record(day, log)
            done = max(done, day)
        self._close_round()
        assert done == days - 1
        return [r.summary() for r in self.rounds]


def simulate_online(cfg: Config, out: Path | str, *, track: Track = no_track) -> dict[str, Any]:
    """Run the three arms (:data:`ARMS`) and write ``simulate_online.json`` and ``.png`` to ``out``."""
    c = cfg.simulate_online
    out = Path(out)
    started = time.perf_counter()
    days = c.warmup_days + c.rounds * c.days_per_round
    world = sim.World.from_config(cfg.simulate.model_copy(update={"days": days}))
    results, bundles = {}, {}
    for arm in ARMS:
        run = _ArmRun(arm, world, cfg, out, track)
        results[arm] = run.run()
        bundles[arm] = run.bundles
    report = {"config": cfg.simulate_online.model_dump(mode="json"), "users": world.n_users,
              "offers": world.n_offers, "days": days, "arms": results, "bundles": bundles,
              "seconds": round(time.perf_counter() - started, 1)}
    with staged_outputs(out) as stage:
        _plot(report, stage.path("simulate_online.png"))
        stage.write_json("simulate_online.json", report)
    return report


def _plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = report["config"]["k"]
    panels = (("top_expected_ctr", f"expected clicks in the top {k} per request"),
              ("revenue_per_request", "revenue per request"), ("coverage", f"offers reaching the top {k}"))
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for ax, (key, title) in zip(axes, panels):
        for arm, rounds in report["arms"].items():
            ax.plot(range(len(rounds)), [r[key] for r in rounds], marker="o", label=arm)
        ax.set_title(title, fontsize=10)
        ax.set_xticks(range(len(next(iter(report["arms"].values())))))
        ax.set_xlabel("round (0 = warm-up on the heuristic's logs)")
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
