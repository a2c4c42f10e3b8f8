"""Online/offline parity: the online store, loaded from the snapshot at midnight of the last day
and fed that day's events in time order, computes for every request of the day the feature
vectors ``train.parquet`` holds (DESIGN.md §2); and cold-start values for unknown ids."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from offer_ranker.config import SimulateConfig
from offer_ranker.data.ingest import ingest
from offer_ranker.featurize.build import build_features
from offer_ranker.featurize.online import Event, OnlineStore, Served
from offer_ranker.simulator import simulate

RTOL = ATOL = 1e-9


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, datetime]:
    root = tmp_path_factory.mktemp("parity")
    simulate(SimulateConfig(users=2500, days=4, offers=80, seed=5), root / "raw")
    ingest(root / "raw", root / "ingested")
    last = pl.read_parquet(root / "ingested" / "impressions.parquet", columns=["ts"])["ts"].max()
    as_of = datetime.combine(last.date(), datetime.min.time())
    build_features(root / "ingested", root / "features", snapshot_as_of=as_of)
    return root, as_of


def events_since(impressions: pl.DataFrame, as_of: datetime) -> list[Event]:
    """Every event at or after ``as_of``, in time order, timed as sql/features/events.sql does."""
    click_t = pl.max_horizontal(pl.coalesce("click_ts", "conversion_ts", "ts"), "ts")
    conv_t = pl.max_horizontal(pl.coalesce("conversion_ts", "ts"), pl.coalesce("click_ts", "ts"), "ts")
    cols = ["user_id", "offer_id", "position"]
    frame = pl.concat([
        impressions.select(pl.lit("impression").alias("kind"), pl.col("ts").alias("t"), *cols),
        impressions.filter(pl.col("label") >= 1).select(pl.lit("click").alias("kind"), click_t.alias("t"), *cols),
        impressions.filter(pl.col("label") == 2).select(pl.lit("conversion").alias("kind"), conv_t.alias("t"), *cols),
    ]).filter(pl.col("t") >= as_of).sort("t", maintain_order=True)
    return [Event(k, u, o, t, p) for k, t, u, o, p in frame.iter_rows()]


def requests(root: Path, features: Path, since: datetime) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The training rows from ``since`` on, and the same rows as logged (user, time, context, price)."""
    logged = pl.read_parquet(root / "ingested" / "impressions.parquet")
    train = pl.read_parquet(features / "train.parquet").filter(pl.col("ts") >= since)
    rows = train.select("request_id", "offer_id").join(
        logged.select("request_id", "offer_id", "user_id", "ts", "device", "country", "surface", "price"),
        on=["request_id", "offer_id"], how="left", maintain_order="left")
    return train, rows


def serve(store: OnlineStore, rows: pl.DataFrame, events: list[Event], applied: int = 0) -> tuple[pl.DataFrame, int]:
    """Each request's features from ``store`` after the events before it (``events[applied:]``
    are applied as the requests reach them); returns the features and the events applied."""
    online: dict[str, list] = {name: [] for name in store.names}
    for (_,), request in rows.group_by("request_id", maintain_order=True):
        first = request.row(0, named=True)
        before = applied
        while applied < len(events) and events[applied].ts < first["ts"]:
            applied += 1
        store.apply_many(events[before:applied])
        columns = store.feature_columns({
            "user_id": first["user_id"], "ts": first["ts"],
            "context": {k: first[k] for k in ("device", "country", "surface")},
            "candidates": [{"offer_id": o, "features": {"price": p}}
                           for o, p in zip(request["offer_id"], request["price"])],
        })
        for name, values in columns.items():
            online[name].extend(values.tolist())
    schema = {n: pl.Float64 if store.dtypes[n] == "numeric" else pl.Utf8 for n in store.names}
    return pl.DataFrame(online, schema=schema, nan_to_null=True), applied


def replay(root: Path, as_of: datetime, store: OnlineStore | None = None) -> tuple[pl.DataFrame, pl.DataFrame, int]:
    """(offline rows, online rows) of every request at or after ``as_of``, same row order, and
    the number of events applied to the store (default: the memory store of the snapshot)."""
    store = store or OnlineStore.load(root / "features")
    events = events_since(pl.read_parquet(root / "ingested" / "impressions.parquet"), as_of)
    train, rows = requests(root, root / "features", as_of)
    online, applied = serve(store, rows, events)
    return train, online, applied


def compare(offline: pl.DataFrame, online: pl.DataFrame, dtypes: dict[str, str]) -> dict[str, float]:
    """Assert parity column by column; returns the largest absolute and relative differences."""
    worst = {"abs": 0.0, "rel": 0.0}
    for name, dtype in dtypes.items():
        a, b = offline[name], online[name]
        if dtype != "numeric":
            assert a.to_list() == b.to_list(), name
            continue
        x, y = a.cast(pl.Float64).to_numpy(), b.to_numpy()
        assert np.array_equal(np.isnan(x), np.isnan(y)), (name, int((np.isnan(x) != np.isnan(y)).sum()))
        ok = ~np.isnan(x)
        close = np.isclose(y[ok], x[ok], rtol=RTOL, atol=ATOL)
        assert close.all(), (name, x[ok][~close][:5], y[ok][~close][:5])
        diff = np.abs(x[ok] - y[ok])
        worst["abs"] = max(worst["abs"], float(diff.max(initial=0)))
        worst["rel"] = max(worst["rel"], float((diff / np.maximum(np.abs(x[ok]), 1e-300)).max(initial=0)))
    return worst


def test_replayed_day_matches_training_frame(built: tuple[Path, datetime]) -> None:
    root, as_of = built
    offline, online, applied = replay(root, as_of)
    manifest = json.loads((root / "features" / "manifest.json").read_text())
    dtypes = {f["name"]: f["dtype"] for f in manifest["features"]}
    assert offline["request_id"].n_unique() >= 1000
    assert offline.height == online.height and online.columns == list(dtypes)
    compare(offline, online, dtypes)
    # the replay exercised the overlays: the day's events, returning users, earlier clicks
    assert applied > offline.height
    assert (offline["uo_impressions"] > 0).sum() > 100 and (offline["user_clicks"] > 0).sum() > 100


def test_replayed_day_matches_training_frame_on_redis(built: tuple[Path, datetime], redis_server) -> None:
    """The same replay against the Redis store: the snapshot loaded into a namespace, the day's
    events through its Lua scripts, the same features to 1e-9."""
    root, as_of = built
    store = OnlineStore.load(root / "features", url=redis_server.url, prefix="parity")
    assert store.wait_ready(120), store.status()
    try:
        offline, online, applied = replay(root, as_of, store)
    finally:
        store.close()
    manifest = json.loads((root / "features" / "manifest.json").read_text())
    dtypes = {f["name"]: f["dtype"] for f in manifest["features"]}
    assert offline.height == online.height and applied > offline.height
    compare(offline, online, dtypes)


def test_affinity_tables_are_sums_of_user_offer_rows(built: tuple[Path, datetime]) -> None:
    """The store derives user×category and user×partner counts from user_offer.parquet (and
    does not load their own tables): the snapshot's tables must be exactly those sums."""
    snapshot = built[0] / "features" / "snapshot"
    offers = pl.read_parquet(snapshot / "offers.parquet").select("offer_id", "category", "partner")
    user_offer = pl.read_parquet(snapshot / "user_offer.parquet").join(offers, on="offer_id", how="left")
    for table, key, counts in (("user_category", "category", ["impressions", "clicks"]),
                               ("user_partner", "partner", ["impressions", "clicks", "conversions"])):
        stored = pl.read_parquet(snapshot / f"{table}.parquet").sort("user_id", key)
        derived = (user_offer.filter(pl.col(key).is_not_null()).group_by("user_id", key)
                   .agg(pl.col(c).sum() for c in counts).sort("user_id", key).select(stored.columns))
        assert stored.height > 1000 and derived.equals(stored), table


def test_unknown_user_and_offer_get_cold_start_values(built: tuple[Path, datetime]) -> None:
    root, as_of = built
    store = OnlineStore.load(root / "features")
    priors = pl.read_parquet(root / "features" / "snapshot" / "priors.parquet")
    known = pl.read_parquet(root / "features" / "snapshot" / "offers.parquet").row(0, named=True)
    ts = as_of + timedelta(hours=9, minutes=30)
    f = store.features({"user_id": "no-such-user", "ts": ts, "context": {"device": "ios"},
                        "candidates": [{"offer_id": "no-such-offer", "features": {"price": 3.0}},
                                       {"offer_id": known["offer_id"]}]}).to_dicts()
    new, old = f
    user = priors.filter(pl.col("kind") == "user").row(0, named=True)
    for row in f:  # unknown user: no history, the user prior, new, no recency, no attributes
        assert row["user_requests"] == row["user_impressions"] == row["user_clicks"] == 0
        assert row["user_is_new"] == 1 and row["user_hours_since_last_visit"] is None
        assert row["user_hours_since_last_click"] is None and row["user_days_since_signup"] is None
        assert row["user_ctr"] == pytest.approx(user["ctr_mean"], rel=1e-12)
        assert row["uc_impressions"] == row["up_impressions"] == row["uo_impressions"] == 0
        assert row["uc_click_share"] is None and row["uo_hours_since_seen"] is None
        assert row["user_x_plan"] is None and row["ctx_device"] == "ios" and row["ctx_country"] is None
        assert row["ctx_hour"] == 9 and row["lw_candidates"] == 2
    # unknown offer: no history, no category, so the global prior; no catalogue attributes
    assert new["offer_impressions"] == new["offer_clicks"] == new["offer_impressions_recent"] == 0
    assert new["offer_category"] is None and new["offer_payout"] is None and new["offer_age_hours"] is None
    assert new["imp_x_price"] == 3.0 and old["imp_x_price"] is None and new["lw_payout_rel"] is None
    assert old["lw_payout_rel"] == pytest.approx(1.0) and old["offer_category"] == known["category"]
    g_mean, g_strength, cvr_mean, _ = store.offer_prior(None)
    assert new["offer_ctr"] == pytest.approx(g_mean, rel=1e-12) == new["uc_ctr"]
    assert new["offer_cvr"] == pytest.approx(cvr_mean, rel=1e-12) and new["offer_coec"] == pytest.approx(1.0)
    # every category without enough offers of its own uses that same global prior offline
    offline = priors.filter(pl.col("kind") == "offer")
    fallback = offline.filter(pl.col("key").is_in(_thin_categories(root, store.settings)))
    if "" in offline["key"].to_list():
        fallback = offline.filter(pl.col("key") == "")
    assert fallback.height > 0
    for row in fallback.iter_rows(named=True):
        assert (row["ctr_mean"], row["ctr_strength"]) == pytest.approx((g_mean, g_strength), rel=1e-12)


def _thin_categories(root: Path, settings: dict) -> list[str]:
    """Categories with fewer than min_group offers of min_evidence impressions (no own ctr prior)."""
    offers = pl.read_parquet(root / "features" / "snapshot" / "offers.parquet")
    per = offers.group_by("category").agg((pl.col("impressions") >= settings["min_evidence"]).sum().alias("n"))
    return per.filter(pl.col("n") < settings["min_group"])["category"].drop_nulls().to_list()


def test_recorded_events_move_the_features(built: tuple[Path, datetime]) -> None:
    root, as_of = built
    store = OnlineStore.load(root / "features")
    ts = as_of + timedelta(hours=1)
    request = {"user_id": "u-new", "ts": ts + timedelta(minutes=5), "candidates": [{"offer_id": "o-new"}]}
    before = store.feature_columns(request)
    store.apply(Event("impression", "u-new", "o-new", ts, 1))
    store.apply(Event("click", "u-new", "o-new", ts + timedelta(minutes=1)))
    with pytest.raises(ValueError, match="kind"):
        store.apply(Event("view", "u-new", "o-new", ts))
    after = store.feature_columns(request)
    assert before["user_is_new"][0] == 1 and after["user_is_new"][0] == 0
    assert after["offer_impressions"][0] == 1 and after["offer_clicks"][0] == 1 and after["uo_clicks"][0] == 1
    assert after["user_hours_since_last_visit"][0] == pytest.approx(5 / 60)
    assert after["user_hours_since_last_click"][0] == pytest.approx(4 / 60)
    assert after["offer_clicks_recent"][0] == pytest.approx(np.exp(-4 * 60 / store.tau))


def test_events_at_or_after_the_request_time_are_not_seen(tmp_path: Path) -> None:
    """Logging a page's own impressions (and a later click) before scoring it again changes
    nothing for that request; a later request sees them."""
    simulate(SimulateConfig(users=100, offers=40, days=2, seed=3), tmp_path / "raw")
    build_features(tmp_path / "raw", tmp_path / "f")
    store = OnlineStore.load(tmp_path / "f")
    t = datetime(2026, 3, 1, 10)
    request = {"user_id": "brand-new", "ts": t, "context": {"device": "ios"},
               "candidates": [{"offer_id": "o00001", "features": {"price": 9.0}},
                              {"offer_id": "o00002", "features": {"price": 12.0}}]}
    before = store.feature_columns(request)
    store.apply(Event("impression", "brand-new", "o00001", t, 1))
    store.apply(Event("impression", "brand-new", "o00002", t, 2))
    store.apply(Event("click", "brand-new", "o00001", t + timedelta(hours=2)))
    again = store.feature_columns(request)
    for name, values in before.items():
        assert np.array_equal(values, again[name], equal_nan=True) if values.dtype.kind == "f" \
            else list(values) == list(again[name]), name
    later = store.feature_columns({**request, "ts": t + timedelta(hours=3)})
    assert list(later["user_impressions"]) == [2.0, 2.0] and list(later["uo_clicks"]) == [1.0, 0.0]
    assert list(later["imp_x_price"]) == [9.0, 12.0]  # the request carries the raw column name


@pytest.mark.slow  # three more redis-servers and a cluster handshake: `make test-all` runs it
def test_replayed_day_matches_training_frame_on_redis_cluster(built: tuple[Path, datetime],
                                                               tmp_path: Path) -> None:
    """The same replay on a three-node Redis Cluster (redis+cluster://): every script and command
    touches one slot, the cluster client routes them, the features are the same to 1e-9."""
    from tests.redis_server import RedisCluster, require_redis

    require_redis()
    root, as_of = built
    with RedisCluster(tmp_path / "cluster") as cluster:
        store = OnlineStore.load(root / "features", url=cluster.url)
        assert store.wait_ready(120), store.status()
        try:
            offline, online, applied = replay(root, as_of, store)
            # a served page and its feedback (the served request and the user share a slot)
            key, ts = store.user_key("cluster-user"), as_of + timedelta(days=1)
            request_id = store.new_request_id(key)
            offer = str(store.snapshot.offer_ids[0])
            store.record_page(request_id, "cluster-user", Served(key, ts, True, (offer,), ""), [1])
            assert store.record_feedback(request_id, offer, "click", None).applied
            assert not store.record_feedback(request_id, offer, "click", None).applied  # a retry: once
            nodes = {n.name for n in store.client.get_primaries()}
            holding = {n.name for n in store.client.get_primaries()
                       if store.client.dbsize(target_nodes=n) > 0}
        finally:
            store.close()
    manifest = json.loads((root / "features" / "manifest.json").read_text())
    dtypes = {f["name"]: f["dtype"] for f in manifest["features"]}
    assert offline.height == online.height and applied > offline.height
    assert len(nodes) == 3 and holding == nodes  # the users really are spread over the nodes
    compare(offline, online, dtypes)


@pytest.fixture(scope="module")
def built_short_lived(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, datetime]:
    """Offers of 2-48 hours with text: the content prior is a feature."""
    root = tmp_path_factory.mktemp("parity-short-lived")
    simulate(SimulateConfig(scenario="short-lived", users=1500, days=4, seed=5), root / "raw")
    ingest(root / "raw", root / "ingested")
    last = pl.read_parquet(root / "ingested" / "impressions.parquet", columns=["ts"])["ts"].max()
    as_of = datetime.combine(last.date(), datetime.min.time())
    build_features(root / "ingested", root / "features", snapshot_as_of=as_of)
    return root, as_of


def test_short_lived_day_matches_training_frame_with_the_content_prior(
        built_short_lived: tuple[Path, datetime]) -> None:
    """The content prior of the snapshot's day, online, is the training frame's value of that day."""
    root, as_of = built_short_lived
    offline, online, _ = replay(root, as_of)
    manifest = json.loads((root / "features" / "manifest.json").read_text())
    dtypes = {f["name"]: f["dtype"] for f in manifest["features"]}
    assert "offer_content_ctr" in dtypes and online.columns == list(dtypes)
    compare(offline, online, dtypes)
    assert offline["offer_content_ctr"].null_count() < offline.height / 2
