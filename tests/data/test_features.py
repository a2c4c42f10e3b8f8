"""The offline feature pipeline: completeness of definitions, point-in-time correctness, and a
plain-Python reference that recomputes every feature of sampled impressions."""

from __future__ import annotations

import json
import math
import random
from datetime import datetime, timedelta
from importlib.resources import files
from pathlib import Path

import polars as pl
import pytest

from offer_ranker.config import Config, SimulateConfig
from offer_ranker.features import FEATURES
from offer_ranker.featurize.build import ID_COLUMNS, build_features
from offer_ranker.simulator import simulate


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("raw")
    simulate(SimulateConfig(users=600, offers=50, days=3, seed=21), path)
    return path


@pytest.fixture(scope="module")
def built(raw: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("features")
    build_features(raw, out)
    return out


def test_every_column_has_a_definition_and_every_definition_is_produced(built: Path) -> None:
    train = pl.read_parquet(built / "train.parquet")
    manifest = json.loads((built / "manifest.json").read_text())
    produced = [c for c in train.columns if c not in ID_COLUMNS]
    defined = [f["name"] for f in manifest["features"]]
    assert produced == defined  # same names, same order
    assert {f.name for f in FEATURES} <= set(produced)
    passthrough = {f["name"] for f in manifest["features"] if f["group"] == "passthrough"}
    assert passthrough == {"imp_x_price", "offer_x_reward_type", "offer_x_min_spend", "user_x_country",
                           "user_x_plan", "user_x_age_band"}
    crossed = {f["name"]: f["inputs"] for f in manifest["features"] if f["group"] == "crosses"}
    assert crossed == {f"category_by_{s}": [s, "offer_category"] for s in (
        "ctx_device", "ctx_country", "ctx_surface", "user_x_country", "user_x_plan", "user_x_age_band")}
    sql_dir = files("offer_ranker.sql") / "features"
    for f in FEATURES:  # each definition names the SQL file that really produces it
        assert f.name in (sql_dir / f"{f.group}.sql").read_text(), f.name
        assert f.description.endswith(".") and "\n" not in f.description and len(f.description) < 140
    for f in manifest["features"]:  # types in the frame match the definitions
        expected = pl.Float64 if f["dtype"] == "numeric" else pl.Utf8
        assert train.schema[f["name"]] in (expected, pl.Int64, pl.Int32) if f["group"] == "passthrough" \
            else train.schema[f["name"]] == expected, f["name"]


def test_frame_is_ordered_by_time_with_requests_contiguous(built: Path) -> None:
    train = pl.read_parquet(built / "train.parquet", columns=["request_id", "ts"])
    assert train["ts"].is_sorted()
    runs = train.select((pl.col("request_id") != pl.col("request_id").shift()).fill_null(True).sum()).item()
    assert runs == train["request_id"].n_unique()


def test_categorical_levels_in_manifest(built: Path) -> None:
    manifest = json.loads((built / "manifest.json").read_text())
    train = pl.read_parquet(built / "train.parquet")
    for name, levels in manifest["categories"].items():
        counts = train[name].drop_nulls().value_counts(sort=True)
        assert levels[0] == counts[name][0]  # most frequent first
        assert set(levels) == set(counts[name].to_list())


def _mutate_after(raw: Path, out: Path, cut: datetime) -> Path:
    """A copy of the raw log whose events at or after ``cut`` differ; nothing before it does."""
    out.mkdir()
    rng = random.Random(3)
    imp = pl.read_parquet(raw / "impressions.parquet")
    late = imp.filter(pl.col("ts") >= cut)
    # drop a third of the later impressions, shuffle positions of the rest
    keep = late.sample(fraction=0.66, seed=1).with_columns(pl.col("position").shuffle(seed=2))
    imp = pl.concat([imp.filter(pl.col("ts") < cut), keep])
    imp.write_parquet(out / "impressions.parquet")
    clicks = pl.read_parquet(raw / "clicks.parquet")
    shown = imp.select("request_id", "offer_id", pl.col("ts").alias("shown"))
    clicks = clicks.join(shown, on=["request_id", "offer_id"])  # clicks of dropped impressions go
    before = clicks.filter(pl.col("ts") < cut).drop("shown")
    # later clicks: drop half, and click some later impressions that were not clicked
    after = clicks.filter(pl.col("ts") >= cut).drop("shown").sample(fraction=0.5, seed=4)
    extra = imp.filter(pl.col("ts") >= cut).sample(n=min(200, keep.height), seed=5).select(
        "request_id", "offer_id", (pl.col("ts") + timedelta(seconds=rng.randint(1, 60))).alias("ts"))
    pl.concat([before, after, extra]).unique(["request_id", "offer_id"], keep="first").write_parquet(
        out / "clicks.parquet")
    conv = pl.read_parquet(raw / "conversions.parquet")
    conv.filter(pl.col("ts") < cut).write_parquet(out / "conversions.parquet")  # no later conversions
    for name in ("offers", "users"):
        pl.read_parquet(raw / f"{name}.parquet").write_parquet(out / f"{name}.parquet")
    return out


def test_point_in_time_logs_that_differ_after_t_give_identical_features_before_t(
    raw: Path, built: Path, tmp_path: Path
) -> None:
    imp = pl.read_parquet(raw / "impressions.parquet")
    first, last = imp["ts"].min(), imp["ts"].max()
    cut = first + (last - first) * 0.6  # mid-day: priors of that day are shared, later days differ
    other = _mutate_after(raw, tmp_path / "raw_b", cut)
    build_features(other, tmp_path / "b")
    a = pl.read_parquet(built / "train.parquet").filter(pl.col("ts") < cut)
    b = pl.read_parquet(tmp_path / "b" / "train.parquet").filter(pl.col("ts") < cut)
    key = ["request_id", "offer_id"]
    a, b = a.sort(key), b.sort(key)
    assert a.height > 1000 and a.height == b.height
    for column in a.columns:
        if column in ("label", "value"):  # outcomes may differ: clicks after the cut changed
            continue
        if a.schema[column] == pl.Float64:
            # equal up to summation order: DuckDB's windowed sums are segment trees whose shape
            # depends on the partition's size, so the last bit can differ
            both = pl.DataFrame({"a": a[column], "b": b[column]})
            assert both.filter(pl.col("a").is_null() != pl.col("b").is_null()).height == 0, column
            worst = both.drop_nulls().select(((pl.col("a") - pl.col("b")).abs()
                                               / pl.max_horizontal(pl.col("a").abs(), 1e-300)).max()).item()
            assert (worst or 0.0) < 1e-12, (column, worst)
        else:
            assert a[column].equals(b[column]), column
    # and the logs really differ after the cut
    later_a = pl.read_parquet(built / "train.parquet").filter(pl.col("ts") >= cut)
    later_b = pl.read_parquet(tmp_path / "b" / "train.parquet").filter(pl.col("ts") >= cut)
    assert later_a.height != later_b.height


# ---- reference: every feature recomputed by a plain loop ------------------------------------

def _events(ingested: Path) -> pl.DataFrame:
    imp = pl.read_parquet(ingested / "impressions.parquet")
    offers = pl.read_parquet(ingested / "offers.parquet").select("offer_id", "category", "partner")
    imp = imp.join(offers, on="offer_id", how="left")
    cols = ["user_id", "offer_id", "category", "partner", "position"]
    click_t = pl.max_horizontal(pl.coalesce("click_ts", "conversion_ts", "ts"), "ts")
    conv_t = pl.max_horizontal(pl.coalesce("conversion_ts", "ts"), pl.coalesce("click_ts", "ts"), "ts")
    return pl.concat([
        imp.select(pl.col("ts").alias("t"), *cols, pl.lit("imp").alias("kind")),
        imp.filter(pl.col("label") >= 1).select(click_t.alias("t"), *cols, pl.lit("click").alias("kind")),
        imp.filter(pl.col("label") == 2).select(conv_t.alias("t"), *cols, pl.lit("conv").alias("kind")),
    ])


def _beta_strength(mean: float, variance: float, inv_n: float) -> float:
    spread = variance - mean * (1 - mean) * inv_n
    return min(max(mean * (1 - mean) / spread - 1, 2.0), 10000.0) if spread > 0 else 10000.0


def _fit(rates: list[tuple[float, float]], cfg, fallback_mean: float) -> tuple[float, float]:
    """Method-of-moments Beta prior from (successes, trials) pairs, or the fallback."""
    obs = [(s / n, n) for s, n in rates if n >= cfg.min_evidence]
    if len(obs) < cfg.min_group:
        return fallback_mean, cfg.fallback_strength
    p = [o[0] for o in obs]
    mean = sum(p) / len(p)
    variance = sum((x - mean) ** 2 for x in p) / len(p)
    return mean, _beta_strength(mean, variance, sum(1 / o[1] for o in obs) / len(obs))


def _priors(ev: pl.DataFrame, day, category, cfg) -> dict[str, tuple[float, float]]:
    before = ev.filter(pl.col("t").dt.date() < day)
    per_offer = before.group_by("offer_id").agg(
        pl.col("category").first(), (pl.col("kind") == "imp").sum().alias("i"),
        (pl.col("kind") == "click").sum().alias("c"), (pl.col("kind") == "conv").sum().alias("v"))
    rows = per_offer.rows(named=True)
    g_ctr = _fit([(r["c"], r["i"]) for r in rows], cfg, cfg.fallback_ctr)
    g_cvr = _fit([(r["v"], r["c"]) for r in rows], cfg, cfg.fallback_cvr)
    mine = [r for r in rows if r["category"] == category and category is not None]
    ctr = [(r["c"], r["i"]) for r in mine if r["i"] >= cfg.min_evidence]
    cvr = [(r["v"], r["c"]) for r in mine if r["c"] >= cfg.min_evidence]
    per_user = before.group_by("user_id").agg((pl.col("kind") == "imp").sum().alias("i"),
                                              (pl.col("kind") == "click").sum().alias("c"))
    per_pos = before.group_by("position").agg((pl.col("kind") == "imp").sum().alias("i"),
                                              (pl.col("kind") == "click").sum().alias("c"))
    g_fit_ok = len([r for r in rows if r["i"] >= cfg.min_evidence]) >= cfg.min_group
    g_pos = g_ctr if g_fit_ok else (cfg.fallback_ctr, cfg.fallback_strength)
    return {
        "ctr": _fit(ctr, cfg, 0) if len(ctr) >= cfg.min_group else g_ctr,
        "cvr": _fit(cvr, cfg, 0) if len(cvr) >= cfg.min_group else g_cvr,
        "user": _fit([(r["c"], r["i"]) for r in per_user.rows(named=True)], cfg, cfg.fallback_ctr),
        "positions": {r["position"]: (r["c"] + g_pos[0] * g_pos[1]) / (r["i"] + g_pos[1])
                      for r in per_pos.rows(named=True)},
        "global": g_pos,
    }


def _smooth(s: float, n: float, prior: tuple[float, float]) -> float:
    return (s + prior[0] * prior[1]) / (n + prior[1])


def _hours(a: datetime | None, b: datetime) -> float | None:
    return None if a is None else (b - a) / timedelta(hours=1)


def _reference(row: dict, ev: pl.DataFrame, request: pl.DataFrame, offers: dict, users: dict,
               manifest: dict, cfg) -> dict:
    t, user, offer = row["ts"], row["user_id"], row["offer_id"]
    o = offers[offer]
    cat, partner = o["category"], o["partner"]
    past = ev.filter(pl.col("t") < t)
    n = lambda frame, kind: float((frame["kind"] == kind).sum())  # noqa: E731
    po = past.filter(pl.col("offer_id") == offer)
    pu = past.filter(pl.col("user_id") == user)
    puc = pu.filter(pl.col("category") == cat)
    pup = pu.filter(pl.col("partner") == partner)
    puo = pu.filter(pl.col("offer_id") == offer)
    priors = _priors(ev, t.date(), cat, cfg)
    tau, t_ref = cfg.decay_hours * 3600, manifest["t_ref"]
    decay = lambda frame, kind: sum(  # noqa: E731
        math.exp(((x - datetime(1970, 1, 1)).total_seconds() - t_ref) / tau)
        for x in frame.filter(pl.col("kind") == kind)["t"]) * math.exp((t_ref - (t - datetime(1970, 1, 1)).total_seconds()) / tau)
    expected = 0.0  # each earlier impression adds the position click rate of its own day
    for r in po.filter(pl.col("kind") == "imp").iter_rows(named=True):
        then = _priors(ev, r["t"].date(), cat, cfg)
        expected += then["positions"].get(r["position"], then["global"][0])
    oi, oc, ov = n(po, "imp"), n(po, "click"), n(po, "conv")
    oir, ocr = decay(po, "imp"), decay(po, "click")
    offer_ctr = _smooth(oc, oi, priors["ctr"])
    ui, uc = n(pu, "imp"), n(pu, "click")
    visits = pu.filter(pl.col("kind") == "imp")["t"]
    clicks_t = pu.filter(pl.col("kind") == "click")["t"]
    seen_t = puo.filter(pl.col("kind") == "imp")["t"]
    signup = users.get(user, {}).get("signup_ts")
    payouts = [offers[x]["payout"] for x in request["offer_id"]]
    ctrs = request["offer_ctr"].to_list()
    g = priors["ctr"][0] * priors["ctr"][1]
    segments = {"ctx_device": row["device"], "ctx_country": row["country"],
                "ctx_surface": row["surface"]} | {f"user_x_{k}": users[user][k] for k in ("country", "plan", "age_band")}
    crossed = {f"category_by_{k}": None if v is None or cat is None else f"{v} × {cat}" for k, v in segments.items()}
    return crossed | {
        "offer_impressions": oi, "offer_clicks": oc, "offer_conversions": ov,
        "offer_impressions_recent": oir, "offer_clicks_recent": ocr,
        "offer_ctr": offer_ctr, "offer_ctr_recent": _smooth(ocr, oir, priors["ctr"]),
        "offer_cvr": _smooth(ov, oc, priors["cvr"]), "offer_coec": (oc + g) / (expected + g),
        "user_requests": float(visits.n_unique()), "user_impressions": ui, "user_clicks": uc,
        "user_conversions": n(pu, "conv"), "user_ctr": _smooth(uc, ui, priors["user"]),
        "user_is_new": float(ui == 0),
        "user_hours_since_last_visit": _hours(visits.max(), t),
        "user_hours_since_last_click": _hours(clicks_t.max(), t),
        "user_days_since_signup": None if signup is None else _hours(signup, t) / 24,
        "uc_impressions": n(puc, "imp"), "uc_clicks": n(puc, "click"),
        "uc_ctr": _smooth(n(puc, "click"), n(puc, "imp"), priors["ctr"]),
        "uc_click_share": n(puc, "click") / uc if uc > 0 else None,
        "up_impressions": n(pup, "imp"), "up_clicks": n(pup, "click"), "up_conversions": n(pup, "conv"),
        "uo_impressions": n(puo, "imp"), "uo_clicks": n(puo, "click"), "uo_conversions": n(puo, "conv"),
        "uo_hours_since_seen": _hours(seen_t.max(), t),
        "offer_age_hours": _hours(o["start_ts"], t), "offer_hours_to_expiry": _hours(t, o["end_ts"]),
        "offer_payout": o["payout"], "offer_category": cat, "offer_partner": partner,
        "ctx_hour": float(t.hour), "ctx_weekday": float((t.weekday() + 1) % 7),
        "ctx_device": row["device"], "ctx_country": row["country"], "ctx_surface": row["surface"],
        "lw_candidates": float(request.height), "lw_payout_rel": o["payout"] / (sum(payouts) / len(payouts)),
        "lw_ctr_rel": offer_ctr / (sum(ctrs) / len(ctrs)),
    }


#: impressions recomputed by the reference loop (about a second each)
SAMPLED = 30


def test_reference_loop_matches_sql_on_sampled_impressions(built: Path) -> None:
    ingested = built / "ingested"
    manifest = json.loads((built / "manifest.json").read_text())
    cfg = Config().features
    ev = _events(ingested)
    train = pl.read_parquet(built / "train.parquet")
    logged = pl.read_parquet(ingested / "impressions.parquet").select("request_id", "offer_id", "device",
                                                                        "country", "surface")
    offers = {r["offer_id"]: r for r in pl.read_parquet(ingested / "offers.parquet").iter_rows(named=True)}
    users = {r["user_id"]: r for r in pl.read_parquet(ingested / "users.parquet").iter_rows(named=True)}
    # sample across the whole period, including returning users and clicked offers
    sample = train.join(logged, on=["request_id", "offer_id"]).sample(n=SAMPLED, seed=8)
    checked = 0
    for row in sample.iter_rows(named=True):
        request = train.filter(pl.col("request_id") == row["request_id"])
        want = _reference(row, ev, request, offers, users, manifest, cfg)
        for name, value in want.items():
            got = row[name]
            if value is None or got is None:
                assert value is None and got is None, (name, row["request_id"], row["offer_id"], got, value)
            elif isinstance(value, str):
                assert got == value, name
            else:
                assert math.isclose(got, value, rel_tol=1e-9, abs_tol=1e-9), (name, got, value)
            checked += 1
    assert checked == SAMPLED * (42 + 6)
    assert sample["user_impressions"].max() > 0 and sample["offer_clicks"].max() > 0


def test_snapshot_priors_exist_for_every_day_and_unknown_offers(built: Path, tmp_path: Path) -> None:
    priors = pl.read_parquet(built / "snapshot" / "priors.parquet")
    assert "" in priors.filter(pl.col("kind") == "offer")["key"].to_list()  # global prior for new offers
    assert priors.filter(pl.col("kind") == "user").height == 1
    from offer_ranker.featurize.build import FeatureError
    with pytest.raises(FeatureError, match="must fall between the first day of the log"):
        build_features(built / "ingested", tmp_path / "early", snapshot_as_of=datetime(2020, 1, 1))


def test_impressions_of_one_request_share_its_time(tmp_path: Path) -> None:
    """Logged timestamps 1 ms apart within a page view must not let siblings see each other."""
    from tests.toy_logs import toy_tables, write_csv

    tables = toy_tables()
    for k, row in enumerate(tables["impressions"][:3]):  # r1's three impressions
        row["ts"] = f"2026-01-05T10:00:00.00{k}Z"
    build_features(write_csv(tmp_path / "raw", tables), tmp_path / "f")
    r1 = pl.read_parquet(tmp_path / "f" / "train.parquet").filter(pl.col("request_id") == "r1")
    assert r1["ts"].n_unique() == 1
    assert r1["user_impressions"].to_list() == [0.0, 0.0, 0.0]
    assert r1["user_is_new"].to_list() == [1.0, 1.0, 1.0]
