"""Latency of the real ``bentoml serve`` against a bare Starlette + uvicorn app, same engine.

    python benchmarks/bench_service.py [--users 5000] [--seconds 20] [--connections 1,8]

Simulates logs, builds features and trains a bundle in a temp folder, then starts three servers
on loopback, all ranking the same 20-candidate requests with the same engine:

* ``baseline``: bare Starlette + uvicorn (``benchmarks/baseline_app.py``);
* ``bentoml``: ``bentoml serve offer_ranker.serve.service:OfferRanker``, as shipped;
* ``bentoml_unfixed``: the same with ``serve.latency_fixes = false`` (BentoML's own per-request
  timers left running and no ``gc.freeze``; see ``offer_ranker/serve/asgi.py``).

Closed-loop load with ``wrk`` (``apt-get install wrk``) at each connection count, the servers
interleaved so they share the machine's noise; a short warm-up precedes each measurement.
Prints p50/p90/p99, throughput and errors, and the ratios to the baseline (the figures to compare
across machines); writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from offer_ranker.serve import launch

HERE = Path(__file__).parent
ROOT = HERE.parent
TARGETS = ("baseline", "bentoml", "bentoml_unfixed")
GOALS = {"p50_ratio": 1.5, "p99_ratio": 2.0, "throughput_ratio": 0.5}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=5000)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--connections", default="1,8")
    parser.add_argument("--targets", default=",".join(TARGETS))
    parser.add_argument("--json", type=Path, default=HERE / "results" / "service.json")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install wrk")
    with tempfile.TemporaryDirectory() as tmp:
        result = run(Path(tmp), args)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print_table(result)
    print(f"\nwrote {args.json}")


def prepare(tmp: Path, users: int) -> tuple[str, Path, Path]:
    """Simulated logs → features → a trained bundle; returns its tag and two wrk scripts of the
    same requests: plain, and with ``"explain": true`` (per-request reasons)."""
    from offer_ranker.config import Config
    from offer_ranker.featurize.build import build_features
    from offer_ranker.model.train import train
    from offer_ranker.serve.examples import sample_requests
    from offer_ranker.simulator import simulate

    cfg = Config.model_validate({"simulate": {"users": users, "days": 7}})
    simulate(cfg.simulate, tmp / "raw")
    build_features(tmp / "raw", tmp / "features", cfg)
    tag = train(tmp / "features", cfg).tag
    bodies = sample_requests(tmp / "features", 1000, candidates=20)
    scripts = []
    for name, explain in (("rank.lua", False), ("explain.lua", True)):
        lua_bodies = ",\n".join("[==[" + json.dumps(b | {"explain": explain}) + "]==]" for b in bodies)
        (tmp / name).write_text(
            f"local bodies = {{\n{lua_bodies}\n}}\nlocal i = 0\n"
            'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
            "request = function()\n  i = i % #bodies + 1\n"
            '  return wrk.format(nil, "/rank", nil, bodies[i])\nend\n')
        scripts.append(tmp / name)
    return tag, scripts[0], scripts[1]


def start_target(target: str, tmp: Path, tag: str) -> launch.Server:
    config = tmp / f"{target}.toml"
    fixes = "false" if target == "bentoml_unfixed" else "true"
    config.write_text(f'[serve]\nmodel = "{tag}"\nprediction_log = "{tmp / target}.jsonl"\nlatency_fixes = {fixes}\n')
    port = launch.free_port()
    command = None
    if target == "baseline":
        command = [sys.executable, "-m", "uvicorn", "benchmarks.baseline_app:app", "--port", str(port),
                   "--no-access-log", "--log-level", "warning"]
    return launch.start(command, tmp / f"{target}.log", port=port, config=config)


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def wrk(port: int, script: Path, connections: int, seconds: int) -> dict:
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script),
                          f"http://127.0.0.1:{port}"], capture_output=True, text=True, check=True).stdout
    pct = {int(p): float(v) * _UNITS[u] for p, v, u in re.findall(r"^\s+(\d+)%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)}
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {"p50_ms": pct[50], "p75_ms": pct[75], "p90_ms": pct[90], "p99_ms": pct[99],
            "requests_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)), "requests": requests,
            "errors": (int(non2xx.group(1)) if non2xx else 0)
                      + (sum(map(int, socket_errors.groups())) if socket_errors else 0)}


def run(tmp: Path, args: argparse.Namespace) -> dict:
    os.environ.update(BENTOML_HOME=str(tmp / "bentoml"), BENTOML_DO_NOT_TRACK="True")
    t0 = time.perf_counter()
    tag, script, explain_script = prepare(tmp, args.users)
    print(f"prepared bundle {tag} in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    targets = args.targets.split(",")
    servers = {t: start_target(t, tmp, tag) for t in targets}
    results: dict[str, dict[str, dict]] = {t: {} for t in targets}
    try:
        for conns in [int(c) for c in args.connections.split(",")]:
            for target in targets:  # interleaved: the servers share the machine's noise
                port = servers[target].port
                wrk(port, script, conns, args.warmup)
                results[target][str(conns)] = wrk(port, script, conns, args.seconds)
                print(f"{target:16} c={conns}: {results[target][str(conns)]}", file=sys.stderr)
                if target == "bentoml" and conns == 1:  # the same requests with "explain": true
                    wrk(port, explain_script, 1, args.warmup)
                    explained = results.setdefault("bentoml_explain", {})
                    explained["1"] = wrk(port, explain_script, 1, args.seconds)
                    print(f"bentoml explain   c=1: {explained['1']}", file=sys.stderr)
    finally:
        for server in servers.values():
            server.stop()
    ratios = {}
    for target in results:
        if target == "baseline" or "baseline" not in results:
            continue
        ratios[target] = {}
        for conns, r in results[target].items():
            b = results["baseline"][conns]
            ratios[target][conns] = {"p50_ratio": r["p50_ms"] / b["p50_ms"], "p99_ratio": r["p99_ms"] / b["p99_ms"],
                                     "throughput_ratio": r["requests_per_s"] / b["requests_per_s"]}
    return {"benchmark": "service", "candidates_per_request": 20, "seconds": args.seconds, "users": args.users,
            "cpus": os.cpu_count(), "load_generator": "wrk -t1 (closed loop)", "results": results,
            "ratios_to_baseline": ratios, "goals": GOALS,
            "explain_overhead_p50_ms": (results["bentoml_explain"]["1"]["p50_ms"] - results["bentoml"]["1"]["p50_ms"]
                                        if "bentoml_explain" in results else None)}


def print_table(result: dict) -> None:
    print(f"\n{'server':16} {'conns':>5} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'req/s':>8} {'errors':>6}"
          f" {'p50 x':>6} {'p99 x':>6} {'thr x':>6}")
    for target, by_conns in result["results"].items():
        for conns, r in by_conns.items():
            ratio = result["ratios_to_baseline"].get(target, {}).get(conns)
            extra = (f" {ratio['p50_ratio']:6.2f} {ratio['p99_ratio']:6.2f} {ratio['throughput_ratio']:6.2f}"
                     if ratio else f" {'1':>6} {'1':>6} {'1':>6}")
            print(f"{target:16} {conns:>5} {r['p50_ms']:8.2f} {r['p90_ms']:8.2f} {r['p99_ms']:8.2f}"
                  f" {r['requests_per_s']:8.0f} {r['errors']:6d}{extra}")
    if result.get("explain_overhead_p50_ms") is not None:
        print(f"explain=true adds {result['explain_overhead_p50_ms']:.2f} ms at p50 (goal <= 1 ms)")
    goals = result["goals"]
    print(f"goals for bentoml: p50 x <= {goals['p50_ratio']}, p99 x <= {goals['p99_ratio']}, "
          f"throughput x >= {goals['throughput_ratio']}, zero errors")


if __name__ == "__main__":
    main()
