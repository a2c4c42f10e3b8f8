"""Feature pipeline throughput and peak memory, next to a one-window-aggregate baseline.

    python benchmarks/bench_features.py [--impressions 10000000]

Ingests cached simulated logs once, then runs, each in a fresh process (so peak RSS is the
step's own): the baseline — one DuckDB window aggregate over the same impressions written as
Parquet — and ``build_features`` (train.parquet, manifest, snapshot); then, as a floor, the time to
write that train.parquet again from memory with the same order and codec (no pipeline finishes
before its output is written). The baseline runs before and after the other steps and its median
is the ratios' denominator, so one slow moment of a shared machine does not make the ratio. Prints
a table, writes JSON; the ratios to the baseline are the figures to compare across machines.

Target (single node, issue 17): features ≤ 25× the baseline, ≤ 8 GB peak at 10M impressions.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from publish import write_result

HERE = Path(__file__).parent

_BASELINE = """
import duckdb, sys
from pathlib import Path
text = (Path(sys.argv[1]) / "sql" / "window_baseline.sql").read_text()
text = text.replace("{{ impressions }}", repr(sys.argv[2])).replace("{{ path }}", repr(sys.argv[3]))
duckdb.connect().execute(text)
"""
_FEATURES = """
import sys
from offer_ranker.featurize.build import build_features
build_features(sys.argv[1], sys.argv[2])
"""
_WRITE_FLOOR = """
import duckdb, sys, time
from pathlib import Path
sql = Path(sys.argv[1]) / "sql"
con = duckdb.connect()
con.execute((sql / "write_floor.sql").read_text().replace("{{ frame }}", repr(sys.argv[2])))
started = time.perf_counter()
con.execute((sql / "write_floor_copy.sql").read_text().replace("{{ path }}", repr(sys.argv[3])))
print("WRITE_S", time.perf_counter() - started)
"""
_PEAK = "import resource; print('PEAK_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"


def _run(code: str, *args: str) -> tuple[float, float, str]:
    """Seconds, peak RSS (GB) and stdout of ``code`` in a fresh interpreter."""
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code + "\n" + _PEAK, *args], check=True,
                         capture_output=True, text=True).stdout
    seconds = time.perf_counter() - started
    peak_kb = int(next(line for line in out.splitlines() if line.startswith("PEAK_KB")).split()[1])
    return seconds, peak_kb / 1024**2, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--impressions", type=int, default=10_000_000)
    parser.add_argument("--cache", type=Path, default=HERE / ".cache")
    parser.add_argument("--json", type=Path, default=HERE / "results" / "features.json")
    args = parser.parse_args()

    sys.path.insert(0, str(HERE))
    from bench_ingest import _simulated  # the same cached simulation as the ingest benchmark

    from offer_ranker.data.ingest import ingest

    raw, rows = _simulated(args.impressions, args.cache)
    ingested = args.cache / f"ingested-{args.impressions}"
    if not (ingested / "ingest_report.json").exists():
        ingest(raw, ingested)
    with tempfile.TemporaryDirectory() as tmp:
        baseline = (str(HERE), str(ingested / "impressions.parquet"), f"{tmp}/w.parquet")
        bases = [_run(_BASELINE, *baseline)[:2]]
        feat_s, feat_gb, _ = _run(_FEATURES, str(ingested), f"{tmp}/features")
        bases.append(_run(_BASELINE, *baseline)[:2])
        out = _run(_WRITE_FLOOR, str(HERE), f"{tmp}/features/train.parquet", f"{tmp}/again.parquet")[2]
        write_s = float(next(line for line in out.splitlines() if line.startswith("WRITE_S")).split()[1])
        bases.append(_run(_BASELINE, *baseline)[:2])
        base_s, base_gb = statistics.median(s for s, _ in bases), max(gb for _, gb in bases)
        snapshot_bytes = sum(p.stat().st_size for p in Path(tmp, "features", "snapshot").glob("*.parquet"))
        users = json.loads((raw / "simulation.json").read_text())["counts"]["users"]
    result = {
        "benchmark": "features",
        "impressions": rows,
        "seconds": {"baseline_window": base_s, "features": feat_s, "write_floor": write_s},
        "baseline_runs_seconds": [s for s, _ in bases],
        "impressions_per_second": {"baseline_window": rows / base_s, "features": rows / feat_s},
        "ratio_features_to_baseline": feat_s / base_s,
        "ratio_write_floor_to_baseline": write_s / base_s,
        "peak_rss_gb": {"baseline_window": base_gb, "features": feat_gb},
        "snapshot_bytes_per_user": snapshot_bytes / users,
        "targets": {"ratio_features_to_baseline": 25, "peak_rss_gb": 8},
    }
    result["met"] = {"ratio_features_to_baseline": feat_s / base_s <= 25, "peak_rss_gb": feat_gb <= 8}
    print(f"\nfeature benchmark: {rows:,} simulated impressions ({users:,} users)")
    print(f"{'step':<34}{'seconds':>9}{'impressions/s':>15}{'peak GB':>9}")
    print(f"{'one window aggregate (median of 3)':<34}{base_s:>9.1f}{rows / base_s:>15,.0f}{base_gb:>9.2f}")
    print(f"{'build_features (all groups)':<34}{feat_s:>9.1f}{rows / feat_s:>15,.0f}{feat_gb:>9.2f}")
    print(f"{'write floor (train.parquet only)':<34}{write_s:>9.1f}{rows / write_s:>15,.0f}")
    print(f"ratio features / baseline: {feat_s / base_s:.1f}x; write floor / baseline: {write_s / base_s:.1f}x; "
          f"snapshot {snapshot_bytes / users:.0f} bytes per user")
    print(f"baseline runs: {', '.join(f'{s:.1f}' for s, _ in bases)} s; target <= 25x and <= 8 GB: "
          f"{'met' if all(result['met'].values()) else 'NOT met'}")
    write_result(result, args.json)


if __name__ == "__main__":
    main()
