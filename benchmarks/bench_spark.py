"""DuckDB and Spark (local) building the same features, next to a one-window-aggregate baseline.

    python benchmarks/bench_spark.py [--sizes 1000000,10000000] [--driver-memory 12g]

For each size: simulated logs (cached) are ingested once; then, each in a fresh process, the
baseline (one DuckDB window aggregate over the impressions, written as Parquet), ``features``
on DuckDB and ``features --engine spark`` on ``local[2]``. Peak memory is the largest resident
set of the process and all its children (Spark's JVM is a child) sampled every 0.2 s. The
Spark run's outputs are checked equal to DuckDB's (rows; every numeric column within 1e-9).
Prints a table, writes JSON; the ratios to the baseline, measured in the same run, are the
figures to compare across machines, and the per-core rates feed the scaling estimate of
docs/spark.md.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from publish import write_result

HERE = Path(__file__).parent
CORES = 2

_BASELINE = """
import duckdb, sys
from pathlib import Path
text = (Path(sys.argv[1]) / "sql" / "window_baseline.sql").read_text()
text = text.replace("{{ impressions }}", repr(sys.argv[2])).replace("{{ path }}", repr(sys.argv[3]))
duckdb.connect().execute(text)
"""
_FEATURES = """
import sys
from offer_ranker.config import Config
from offer_ranker.featurize.build import build_features
cfg = Config.model_validate({"spark": {"master": f"local[{sys.argv[4]}]", "driver_memory": sys.argv[5],
                                       "shuffle_partitions": int(sys.argv[6])}})
build_features(sys.argv[1], sys.argv[2], cfg, engine=sys.argv[3])
"""
_SAME = """
import sys
import numpy as np, polars as pl
paths = [f"{d}/train.parquet" for d in sys.argv[1:3]]  # DuckDB's file, Spark's folder of parts
names = [pl.scan_parquet(p).collect_schema().names() for p in paths]
assert names[0] == names[1], "columns differ"
# one column at a time, rows put in (request_id, offer_id) order: memory stays at a column's size
orders = [pl.read_parquet(p, columns=["request_id", "offer_id"]).with_row_index().sort(["request_id", "offer_id"])["index"]
          for p in paths]
assert len(orders[0]) == len(orders[1]), "rows differ"
worst = 0.0
for c in names[0]:
    a, b = (pl.read_parquet(p, columns=[c])[c].gather(o) for p, o in zip(paths, orders))
    assert a.dtype == b.dtype, c
    if a.dtype.is_float():
        x, y = a.to_numpy(), b.to_numpy()
        assert np.array_equal(np.isnan(x), np.isnan(y)), c
        d = np.abs(x - y) / np.maximum(1.0, np.abs(x))
        worst = max(worst, float(np.nanmax(d)) if d.size else 0.0)
    else:
        assert a.equals(b), c
print("WORST", worst)
"""


def _run(code: str, *args: str) -> tuple[float, float, str]:
    """Seconds, peak RSS of the process tree (GB) and stdout of ``code`` in a fresh interpreter."""
    import psutil

    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    root, peak = psutil.Process(proc.pid), 0
    while proc.poll() is None:
        try:
            tree = [root, *root.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
        except psutil.Error:
            pass
        time.sleep(0.2)
    out, err = proc.communicate()
    if proc.returncode:
        raise RuntimeError(f"benchmark step failed (exit {proc.returncode}; -9: killed, e.g. out of memory):\n"
                           f"{err[-3000:]}")
    return time.perf_counter() - started, peak / 1024**3, out


def measure(size: int, cache: Path, driver_memory: str, partitions: int) -> dict:
    sys.path.insert(0, str(HERE))
    from bench_ingest import _simulated

    from offer_ranker.data.ingest import ingest

    raw, rows = _simulated(size, cache)
    ingested = cache / f"ingested-{size}"
    if not (ingested / "ingest_report.json").exists():
        ingest(raw, ingested)
    with tempfile.TemporaryDirectory() as tmp:
        base = _run(_BASELINE, str(HERE), str(ingested / "impressions.parquet"), f"{tmp}/w.parquet")
        runs = {engine: _run(_FEATURES, str(ingested), f"{tmp}/{engine}", engine, str(CORES), driver_memory,
                             str(partitions)) for engine in ("duckdb", "spark")}
        worst = float(_run(_SAME, f"{tmp}/duckdb", f"{tmp}/spark")[2].split("WORST")[1])
    out = {"impressions": rows, "baseline_window": {"seconds": base[0], "peak_rss_gb": base[1]},
           "max_relative_difference": worst}
    for engine, (seconds, peak, _) in runs.items():
        out[engine] = {"seconds": seconds, "peak_rss_gb": peak, "impressions_per_second": rows / seconds,
                       "impressions_per_core_second": rows / seconds / CORES, "ratio_to_baseline": seconds / base[0]}
    return out


def print_table(result: dict) -> None:
    print(f"\nDuckDB vs Spark local[{CORES}] building the same features ({CORES} cores)")
    print(f"{'impressions':>12} {'step':<22}{'seconds':>9}{'impr/s':>11}{'per core':>10}{'x baseline':>11}"
          f"{'peak GB':>9}")
    for r in result["sizes"]:
        b = r["baseline_window"]
        print(f"{r['impressions']:>12,} {'one window aggregate':<22}{b['seconds']:>9.1f}"
              f"{r['impressions'] / b['seconds']:>11,.0f}{'':>10}{1.0:>11.1f}{b['peak_rss_gb']:>9.2f}")
        for engine in ("duckdb", "spark"):
            e = r[engine]
            print(f"{'':>12} {'features, ' + engine:<22}{e['seconds']:>9.1f}{e['impressions_per_second']:>11,.0f}"
                  f"{e['impressions_per_core_second']:>10,.0f}{e['ratio_to_baseline']:>11.1f}{e['peak_rss_gb']:>9.2f}")
        print(f"{'':>12} Spark's frame vs DuckDB's: largest relative difference {r['max_relative_difference']:.1e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000000,10000000")
    parser.add_argument("--driver-memory", default="12g")
    parser.add_argument("--shuffle-partitions", type=int, default=16)
    parser.add_argument("--cache", type=Path, default=HERE / ".cache")
    parser.add_argument("--json", type=Path, default=HERE / "results" / "spark.json")
    args = parser.parse_args()
    started = time.perf_counter()
    result = {"benchmark": "spark", "cores": CORES, "driver_memory": args.driver_memory,
              "shuffle_partitions": args.shuffle_partitions, "sizes": []}
    for size in args.sizes.split(","):  # written after each size: the largest takes the longest
        result["sizes"].append(measure(int(size), args.cache, args.driver_memory, args.shuffle_partitions))
        result["seconds"] = round(time.perf_counter() - started, 1)
        write_result(result, args.json, print_table)


if __name__ == "__main__":
    main()
