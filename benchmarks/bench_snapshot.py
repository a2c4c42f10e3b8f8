"""Online snapshot: bytes per user on disk, and the time the online store takes to load it.

    python benchmarks/bench_snapshot.py [--users 100000] [--days 14] [--tile 10] [--repeats 5]

Size is measured on the snapshot ``build_features`` writes for a simulation of ``--users`` users
(goal: <= 200 bytes per user; Metarank needs about 0.8 GiB of Redis per 1M users). A real
1M-user simulation is too slow for now, so the load time is measured on a 1M-user snapshot made
by tiling that snapshot ``--tile`` times with renamed user ids (``<copy><user_id>``, rows sorted
as snapshot.sql sorts them); the output says so. Goal: load in < 2 s.

Baseline, measured in the same run: pyarrow reads the same six Parquet files into Arrow tables
(``pyarrow.parquet.read_table``, defaults) — what any loader pays before building anything.
Runs alternate baseline and load; medians are reported, and the ratio load / baseline is the
figure to compare across machines (the machine's load average is recorded: other work on the
machine inflates both). Also reported: the store's memory and the latency of one request's
features (15 candidates). Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pyarrow
import pyarrow.parquet as pq
from publish import write_result

from offer_ranker.config import SimulateConfig
from offer_ranker.featurize.build import SNAPSHOT_TABLES, build_features
from offer_ranker.featurize.online import OnlineStore
from offer_ranker.simulator import simulate

HERE = Path(__file__).parent
#: Per-user tables and the columns they are sorted by after user_id (snapshot.sql).
_PER_USER = {"users": "", "user_category": ", category", "user_partner": ", partner", "user_offer": ", offer_id"}


def _built(users: int, days: int, cache: Path) -> Path:
    """Features (with snapshot) of a simulation of ``users`` users, cached between runs."""
    cfg = SimulateConfig(users=users, days=days, seed=1)
    root = cache / f"snapshot-{users}-{days}"
    marker = root / "built.json"
    if not marker.exists() or json.loads(marker.read_text()) != cfg.model_dump(mode="json"):
        shutil.rmtree(root, ignore_errors=True)
        print(f"simulating {users:,} users over {days} days and building features into {root} "
              "(cached for later runs) ...", flush=True)
        simulate(cfg, root / "raw")
        build_features(root / "raw", root / "features")
        marker.write_text(json.dumps(cfg.model_dump(mode="json")))
    return root / "features"


def _tiled(features: Path, copies: int) -> Path:
    """The snapshot repeated ``copies`` times with user ids prefixed by the copy number."""
    out = features.parent / f"tiled-{copies}"
    marker = out / "tiled.json"
    if marker.exists():
        return out
    shutil.rmtree(out, ignore_errors=True)
    (out / "snapshot").mkdir(parents=True)
    print(f"tiling the snapshot {copies}x into {out} ...", flush=True)
    con = duckdb.connect()
    for name, keys in _PER_USER.items():
        src, dst = features / "snapshot" / f"{name}.parquet", out / "snapshot" / f"{name}.parquet"
        con.execute(f"""COPY (SELECT * EXCLUDE (k) REPLACE (CAST(k AS VARCHAR) || user_id AS user_id)
                            FROM read_parquet('{src}') CROSS JOIN (SELECT range AS k FROM range({copies}))
                            ORDER BY user_id{keys})
                        TO '{dst}' (FORMAT parquet, COMPRESSION zstd)""")
    for name in ("offers.parquet", "priors.parquet", "snapshot.json"):
        shutil.copy(features / "snapshot" / name, out / "snapshot" / name)
    shutil.copy(features / "manifest.json", out / "manifest.json")
    marker.write_text(json.dumps({"copies": copies, "source": str(features)}))
    return out


def _sizes(snapshot: Path) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in sorted(snapshot.iterdir()) if p.is_file()}


def _baseline(snapshot: Path) -> None:
    for name in SNAPSHOT_TABLES:
        pq.read_table(snapshot / f"{name}.parquet")


def _timed(step: str, path: Path) -> float:
    """Seconds of one ``step`` (baseline or load) in a fresh Python process, so each run pays for
    its memory as a service starting up does; imports are done before the clock starts (pandas
    too: pyarrow's ``to_numpy`` imports it, and the service has it already, through lightgbm)."""
    out = subprocess.run([sys.executable, __file__, "--measure", step, str(path)], check=True,
                         capture_output=True, text=True)
    return float(out.stdout.strip().splitlines()[-1])


def _measure(step: str, path: Path) -> None:
    import pandas  # noqa: F401
    import pyarrow.dataset  # noqa: F401  (read_table imports it)

    started = time.perf_counter()
    _baseline(path / "snapshot") if step == "baseline" else OnlineStore.load(path)
    print(time.perf_counter() - started)


def _memory(store: OnlineStore) -> int:
    """Bytes held by the store: numpy arrays (object arrays: pointers plus each str object once),
    Arrow and polars columns, followed through lists, dicts and attributes."""
    seen: set[int] = set()

    def size(value: object) -> int:
        if id(value) in seen:
            return 0
        seen.add(id(value))
        if isinstance(value, np.ndarray):
            return value.nbytes + (sum(size(x) for x in value) if value.dtype == object else 0)
        if isinstance(value, str):
            return sys.getsizeof(value)
        if isinstance(value, pl.Series):
            return value.estimated_size()
        if isinstance(value, pyarrow.Array):
            return value.nbytes
        if isinstance(value, (list, tuple)):
            return sum(size(x) for x in value)
        if isinstance(value, dict):
            return sum(size(x) for x in value.values())
        return size(vars(value)) if hasattr(value, "__dict__") and not isinstance(value, type) else 0

    return size(store)


def _latency(store: OnlineStore, features: Path, n: int = 2000) -> dict[str, float]:
    """Microseconds per ``feature_columns`` call on logged requests of 15 candidates."""
    manifest = json.loads((features / "manifest.json").read_text())
    ts = pl.read_parquet(features / "train.parquet", columns=["ts"])["ts"].max() + timedelta(hours=1)
    offers = pl.read_parquet(features / "snapshot" / "offers.parquet", columns=["offer_id"])["offer_id"].to_list()
    users = store.snapshot.user_ids  # the 1M (tiled) ids
    rng = np.random.default_rng(0)
    requests = [{"user_id": users[rng.integers(len(users))], "ts": ts,
                 "context": {"device": "ios", "country": "SE", "surface": "home"},
                 "candidates": [{"offer_id": o, "features": {"price": 10.0}}
                                for o in rng.choice(offers, 15, replace=False)]} for _ in range(n)]
    took = []
    for r in requests:
        started = time.perf_counter()
        store.feature_columns(r)
        took.append((time.perf_counter() - started) * 1e6)
    assert len(store.feature_columns(requests[0])) == len(manifest["features"])
    return {"median_us": statistics.median(took), "p99_us": float(np.percentile(took, 99))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument("--tile", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cache", type=Path, default=HERE / ".cache")
    parser.add_argument("--json", type=Path, default=HERE / "results" / "snapshot.json")
    parser.add_argument("--measure", nargs=2, metavar=("STEP", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        return _measure(args.measure[0], Path(args.measure[1]))

    features = _built(args.users, args.days, args.cache)
    sizes = _sizes(features / "snapshot")
    users = pq.read_metadata(features / "snapshot" / "users.parquet").num_rows
    tiled = _tiled(features, args.tile)
    tiled_users = pq.read_metadata(tiled / "snapshot" / "users.parquet").num_rows
    tiled_bytes = sum(_sizes(tiled / "snapshot").values())

    times: dict[str, list[float]] = {"baseline": [], "load": [], "reload": []}
    load_avg = []
    for i in range(args.repeats):
        for name in ("baseline", "load") if i % 2 == 0 else ("load", "baseline"):
            times[name].append(_timed(name, tiled))
        load_avg.append(os.getloadavg()[0])
    store = OnlineStore.load(tiled)
    for _ in range(args.repeats):  # in a warm process: the memory of the last load is reused
        started = time.perf_counter()
        store = OnlineStore.load(tiled)
        times["reload"].append(time.perf_counter() - started)
    med = {k: statistics.median(v) for k, v in times.items()}
    latency = _latency(store, features)
    memory = _memory(store)

    result = {
        "benchmark": "snapshot",
        "size": {
            "simulated_users": users, "days": args.days, "bytes": sum(sizes.values()),
            "bytes_per_user": sum(sizes.values()) / users,
            "bytes_per_user_by_file": {k: v / users for k, v in sizes.items()},
            "goal": "<= 200 bytes per user (Metarank: about 0.8 GiB of Redis per 1M users)",
        },
        "load": {
            "users": tiled_users,
            "how": f"the {users:,}-user snapshot tiled {args.tile}x with renamed user ids (a real "
                   f"{tiled_users:,}-user simulation is too slow for now)",
            "bytes_per_user": tiled_bytes / tiled_users,
            "repeats": args.repeats, "seconds": times, "median_seconds": med,
            "ratio_load_to_baseline": med["load"] / med["baseline"],
            "baseline": "pyarrow.parquet.read_table of the same six files",
            "runs": "baseline and load: each in a fresh process, imports done before timing; "
                    "reload: OnlineStore.load again in a warm process",
            "goal": "< 2 s for 1M users",
            "load_average_1min": load_avg,
        },
        "memory_bytes": memory,
        "memory_bytes_per_user": memory / tiled_users,
        "feature_latency_15_candidates": latency,
        "machine": {"python": platform.python_version(), "cpus": len(os.sched_getaffinity(0)),
                    "pyarrow": pyarrow.__version__, "numpy": np.__version__},
    }
    print(f"\nsnapshot benchmark: {users:,} simulated users over {args.days} days")
    print(f"{'file':<26}{'bytes':>14}{'bytes/user':>12}")
    for name, size in sizes.items():
        print(f"{name:<26}{size:>14,}{size / users:>12.1f}")
    print(f"{'total (goal <= 200/user)':<26}{sum(sizes.values()):>14,}{sum(sizes.values()) / users:>12.1f}")
    print(f"\nload of {tiled_users:,} users ({result['load']['how']}),")
    print(f"median of {args.repeats} runs, each in a fresh process")
    print(f"{'step':<40}{'seconds':>10}")
    print(f"{'pyarrow read_table (baseline)':<40}{med['baseline']:>10.2f}")
    print(f"{'OnlineStore.load (goal < 2 s)':<40}{med['load']:>10.2f}")
    print(f"{'OnlineStore.load again, warm process':<40}{med['reload']:>10.2f}")
    print(f"ratio load / baseline: {result['load']['ratio_load_to_baseline']:.2f}x"
          f"   (1-min load average during the runs: {min(load_avg):.1f}-{max(load_avg):.1f})")
    print(f"store memory: {memory / 2**20:,.0f} MiB ({memory / tiled_users:.0f} bytes/user); "
          f"features of one request of 15 candidates: median {latency['median_us']:.0f} µs, "
          f"p99 {latency['p99_us']:.0f} µs")
    write_result(result, args.json)


if __name__ == "__main__":
    main()
