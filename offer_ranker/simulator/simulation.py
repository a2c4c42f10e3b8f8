"""One simulation run: build the world, run the logging policy through every day, write the logs.

:func:`simulate` is what ``offer-ranker simulate`` runs; the closed loop
(:mod:`offer_ranker.production.closed_loop`) assembles the same parts with other policies.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

from offer_ranker.config import SimulateConfig
from offer_ranker.console import Track, no_track
from offer_ranker.io import staged_outputs
from offer_ranker.simulator.policy import logging_policy
from offer_ranker.simulator.traffic import run_days
from offer_ranker.simulator.world import World
from offer_ranker.simulator.writer import SCHEMAS, LogWriter, offers_table, users_table


@dataclass(frozen=True)
class SimulationResult:
    """Where :func:`simulate` wrote its outputs, row counts, and the wall time in seconds."""

    out: Path
    paths: dict[str, Path]
    impressions: int
    requests: int
    clicks: int
    conversions: int
    users: int
    offers: int
    seconds: float


def simulate(cfg: SimulateConfig, out: Path, *, track: Track = no_track) -> SimulationResult:
    """Simulate ``cfg`` and write raw logs + ground truth to ``out``, all files or none.

    Writes impressions, clicks, conversions, ground_truth (per day), offers and users as Parquet,
    then ``simulation.json`` (config, counts, headline rates) last.
    """
    began = time.perf_counter()
    world = World.from_config(cfg)
    out = Path(out)
    with staged_outputs(out) as stage:
        writer = LogWriter(world, stage)
        try:
            for log in run_days(world, logging_policy(cfg.uniform_share, cfg.seed), seed=cfg.seed, track=track):
                writer.write(log)
            writer.flush()
        finally:
            writer.close()
        pq.write_table(offers_table(world, writer.offer_ids), stage.path("offers.parquet"), compression="zstd")
        pq.write_table(users_table(world, writer.user_ids), stage.path("users.parquet"), compression="zstd")
        counts, rates = writer.summary()
        report = {"config": cfg.model_dump(mode="json"), "counts": counts, "rates": rates}
        stage.write_json("simulation.json", report)  # last: it marks a complete run
    paths = {name: out / f"{name}.parquet" for name in (*SCHEMAS, "offers", "users")}
    paths["simulation"] = out / "simulation.json"
    return SimulationResult(out=out, paths=paths, seconds=time.perf_counter() - began, **counts)
