"""Simulator throughput and memory: ~N impressions and ~N/4, each in a fresh process.

    python benchmarks/bench_simulate.py [--impressions 1000000] [--out benchmarks/results/simulate.json]

Users are sized with the module's rule of thumb (``users_for_impressions``). Peak RSS is the
child process's ``ru_maxrss`` (it includes the interpreter and libraries, ~150–250 MB), so the
ratio big/small close to 1 means memory stays flat in the total size.
"""

from __future__ import annotations

import argparse
import multiprocessing
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

from publish import write_result


def _run(impressions: int, days: int, seed: int) -> dict:
    """One simulation in this (fresh) process; returns its measurements."""
    from offer_ranker.config import SimulateConfig
    from offer_ranker.simulator import simulate, users_for_impressions

    cfg = SimulateConfig(users=users_for_impressions(impressions, days), days=days, seed=seed)
    with tempfile.TemporaryDirectory() as tmp:
        # Warm-up: the first pyarrow conversion imports pandas (slow without .pyc files); time
        # the steady state, not one-off imports.
        simulate(SimulateConfig(users=10, days=2, seed=seed), Path(tmp) / "warm-up")
        began = time.perf_counter()
        result = simulate(cfg, Path(tmp))
        wall = time.perf_counter() - began
        size = sum(p.stat().st_size for p in result.paths.values())
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {
        "target_impressions": impressions, "users": cfg.users, "days": days,
        "impressions": result.impressions, "requests": result.requests, "clicks": result.clicks,
        "conversions": result.conversions, "seconds": round(wall, 3),
        "impressions_per_s": round(result.impressions / wall), "peak_rss_mb": round(peak_kb / 1024, 1),
        "output_mb": round(size / 2**20, 1),
        "ctr": round(result.clicks / result.impressions, 4),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--impressions", type=int, default=1_000_000, help="target size of the big run")
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/simulate.json"))
    args = parser.parse_args(argv)

    spawn = multiprocessing.get_context("spawn")  # a fresh process per run: separate peak RSS
    runs = []
    for target in (args.impressions // 4, args.impressions):
        with spawn.Pool(1) as pool:
            runs.append(pool.apply(_run, (target, args.days, args.seed)))
    small, big = runs
    ratios = {
        "peak_rss_big_over_small": round(big["peak_rss_mb"] / small["peak_rss_mb"], 3),
        "throughput_big_over_small": round(big["impressions_per_s"] / small["impressions_per_s"], 3),
    }

    columns = ("impressions", "users", "requests", "seconds", "impressions_per_s", "peak_rss_mb", "output_mb", "ctr")
    print(" | ".join(f"{c:>17}" for c in columns))
    for run in runs:
        print(" | ".join(f"{run[c]:>17,}" if isinstance(run[c], int) else f"{run[c]:>17}" for c in columns))
    print(f"peak RSS ratio (big / small): {ratios['peak_rss_big_over_small']}   "
          f"throughput ratio (big / small): {ratios['throughput_big_over_small']}")

    report = {"runs": runs, "ratios": ratios, "python": sys.version.split()[0], "machine": platform.machine(),
              "cpus": multiprocessing.cpu_count()}
    write_result(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
