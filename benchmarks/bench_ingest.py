"""Ingest throughput on simulated logs, next to a plain DuckDB read of the same files.

    python benchmarks/bench_ingest.py [--impressions 10000000] [--repeats 3]

Baseline, measured in the same run: DuckDB reads each raw Parquet file and writes it back as
Parquet (read + write, no checks) — the floor any ingest that writes its output must pay.
Runs alternate baseline and ingest; medians are reported, and the ratio ingest / baseline is
the figure to compare across machines. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import duckdb
from publish import write_result

from offer_ranker.config import SimulateConfig
from offer_ranker.data.ingest import ingest
from offer_ranker.data.schema import TABLES
from offer_ranker.simulator import simulate, users_for_impressions

HERE = Path(__file__).parent


def _simulated(impressions: int, cache: Path) -> tuple[Path, int]:
    """Simulated raw logs of about ``impressions`` rows, cached between runs."""
    cfg = SimulateConfig(users=users_for_impressions(impressions), seed=1)
    raw = cache / f"sim-{impressions}"
    marker = raw / "simulation.json"
    if not marker.exists() or json.loads(marker.read_text()).get("config", {}).get("users") != cfg.users:
        print(f"simulating ~{impressions:,} impressions into {raw} (cached for later runs) ...", flush=True)
        simulate(cfg, raw)
    rows = duckdb.connect().read_parquet(str(raw / "impressions.parquet")).aggregate("count(*)").fetchall()[0][0]
    return raw, rows


def _baseline(raw: Path, out: Path) -> float:
    con = duckdb.connect()
    started = time.perf_counter()
    for table in TABLES:
        con.read_parquet(str(raw / f"{table.name}.parquet")).write_parquet(
            str(out / f"{table.name}.parquet"), compression="snappy")
    return time.perf_counter() - started


def _ingest(raw: Path, out: Path) -> float:
    started = time.perf_counter()
    ingest(raw, out)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--impressions", type=int, default=10_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cache", type=Path, default=HERE / ".cache")
    parser.add_argument("--json", type=Path, default=HERE / "results" / "ingest.json")
    args = parser.parse_args()

    raw, rows = _simulated(args.impressions, args.cache)
    times: dict[str, list[float]] = {"baseline": [], "ingest": []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            order = ("baseline", "ingest") if i % 2 == 0 else ("ingest", "baseline")
            for name in order:
                out = Path(tmp) / f"{name}-{i}"
                out.mkdir()
                times[name].append((_baseline if name == "baseline" else _ingest)(raw, out))
    med = {k: statistics.median(v) for k, v in times.items()}
    result = {
        "benchmark": "ingest",
        "impressions": rows,
        "repeats": args.repeats,
        "seconds": times,
        "median_seconds": med,
        "impressions_per_second": {k: rows / v for k, v in med.items()},
        "ratio_ingest_to_baseline": med["ingest"] / med["baseline"],
        "target": "ingest >= 1,000,000 impressions/s on 2 cores",
        "machine": {"python": platform.python_version(), "cpus": _cpus(), "duckdb": duckdb.__version__},
    }
    print(f"\ningest benchmark: {rows:,} simulated impressions, median of {args.repeats} runs")
    print(f"{'step':<28}{'seconds':>10}{'impressions/s':>16}")
    print(f"{'DuckDB read+write (baseline)':<28}{med['baseline']:>10.2f}{rows / med['baseline']:>16,.0f}")
    print(f"{'offer-ranker ingest':<28}{med['ingest']:>10.2f}{rows / med['ingest']:>16,.0f}")
    print(f"ratio ingest / baseline: {result['ratio_ingest_to_baseline']:.2f}x")
    write_result(result, args.json)


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0))


if __name__ == "__main__":
    main()
