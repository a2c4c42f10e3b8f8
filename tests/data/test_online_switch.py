"""Moving the online state to a newer bundle's snapshot loses no event that came after that
snapshot's cutoff and counts none twice: the service runs on yesterday's snapshot and records the
day's events; today's snapshot (cut at midnight) takes over mid-day; the features of every later
request still equal the training frame's, to 1e-9.

Redis: the new namespace loads the snapshot and replays the journal from the cutoff; events the old
bundle's replicas record after the switch reach it through the journal. Memory: the restarted store
replays its journal from the new snapshot's cutoff."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from offer_ranker.config import SimulateConfig
from offer_ranker.data.ingest import ingest
from offer_ranker.featurize.build import build_features
from offer_ranker.featurize.online import OnlineStore
from offer_ranker.simulator import simulate
from tests.data.test_online_parity import compare, events_since, requests, serve


@pytest.fixture(scope="module")
def two_snapshots(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, datetime, datetime]:
    """Features of one log with yesterday's and today's snapshots; (root, yesterday, today)."""
    root = tmp_path_factory.mktemp("switch")
    simulate(SimulateConfig(users=2500, days=4, offers=80, seed=8), root / "raw")
    ingest(root / "raw", root / "ingested")
    last = pl.read_parquet(root / "ingested" / "impressions.parquet", columns=["ts"])["ts"].max()
    today = datetime.combine(last.date(), datetime.min.time())
    yesterday = today - timedelta(days=1)
    for name, as_of in (("old", yesterday), ("new", today)):
        build_features(root / "ingested", root / name, snapshot_as_of=as_of)
    return root, yesterday, today


def _check(root: Path, offline: pl.DataFrame, online: pl.DataFrame) -> None:
    dtypes = {f["name"]: f["dtype"] for f in json.loads((root / "new" / "manifest.json").read_text())["features"]}
    assert offline.height == online.height > 500
    compare(offline, online, dtypes)


def _until(events: list, t: datetime) -> int:
    return next((i for i, e in enumerate(events) if e.ts >= t), len(events))


def test_redis_switch_to_a_new_snapshot_counts_every_event_once(two_snapshots, redis_server) -> None:
    root, yesterday, today = two_snapshots
    events = events_since(pl.read_parquet(root / "ingested" / "impressions.parquet"), yesterday)
    switch, drain = today + timedelta(hours=10), today + timedelta(hours=13)
    old = OnlineStore.load(root / "old", url=redis_server.url, prefix="switch")
    assert old.wait_ready(120), old.status()
    before_switch = _until(events, switch)
    old.apply_many(events[:before_switch])  # yesterday's bundle serves until mid-morning
    new = OnlineStore.load(root / "new", url=redis_server.url, prefix="switch")  # today's bundle starts
    assert new.wait_ready(120), new.status()
    # the old bundle's replicas keep serving for three more hours, alongside the new ones
    before_drain = _until(events, drain)
    old.apply_many(events[before_switch:before_drain])
    last = old.client.xrevrange(old.keys.journal, count=1)[0][0]
    deadline = time.monotonic() + 30
    while new.client.hget(new.keys.meta, "cursor") < last and time.monotonic() < deadline:
        time.sleep(0.1)  # the new namespace reads the old one's events from the journal
    assert new.client.hget(new.keys.meta, "cursor") >= last
    offline, rows = requests(root, root / "new", drain)
    try:
        online, _ = serve(new, rows, events, before_drain)
    finally:
        old.close()
        new.close()
    _check(root, offline, online)


def test_memory_restart_on_a_new_snapshot_counts_every_event_once(two_snapshots, tmp_path: Path) -> None:
    root, yesterday, today = two_snapshots
    events = events_since(pl.read_parquet(root / "ingested" / "impressions.parquet"), yesterday)
    switch = today + timedelta(hours=10)
    journal = tmp_path / "journal.jsonl"
    old = OnlineStore.load(root / "old", journal=journal)
    before_switch = _until(events, switch)
    old.apply_many(events[:before_switch])
    old.close()  # the process stops; it restarts with today's bundle on the same journal
    new = OnlineStore.load(root / "new", journal=journal)
    offline, rows = requests(root, root / "new", switch)
    online, _ = serve(new, rows, events, before_switch)
    new.close()
    _check(root, offline, online)


def test_online_load_cli_loads_a_namespace_the_service_then_finds_ready(two_snapshots, redis_server) -> None:
    from click.testing import CliRunner

    from offer_ranker.cli import main

    root, _, _ = two_snapshots
    args = ["online", "load", "--snapshot", str(root / "new"), "--store", redis_server.url]
    first = CliRunner().invoke(main, args, env={"COLUMNS": "200"})
    assert first.exit_code == 0, first.output
    store = OnlineStore.load(root / "new", url=redis_server.url, catch_up=False)
    try:
        assert store.wait_ready(5), store.status()
        meta = store.client.hgetall(store.keys.meta)
        users = pl.read_parquet(root / "new" / "snapshot" / "users.parquet").height
        assert int(meta[b"users"]) == users > 1000
        assert f"{users}" in first.output and store.keys.ns in first.output
        again = CliRunner().invoke(main, args)  # there already: nothing is loaded again ...
        assert again.exit_code == 0 and store.client.hget(store.keys.meta, "loaded_at") == meta[b"loaded_at"]
        forced = CliRunner().invoke(main, [*args, "--force"])  # ... unless the operator says so
        assert forced.exit_code == 0 and store.client.hget(store.keys.meta, "loaded_at") != meta[b"loaded_at"]
    finally:
        store.close()
    bad = CliRunner().invoke(main, ["online", "load", "--snapshot", str(root / "new"), "--store", "http://x"])
    assert bad.exit_code != 0 and "online_store" in bad.output
