"""The service as deployed against a bare floor, over HTTP, in one run.

    python benchmarks/bench_service.py [--users 5000] [--seconds 20] [--connections 1,8]

Simulates logs, builds features and trains a bundle in a temp folder, starts a real
``redis-server`` (Debian's package), then these servers on loopback, all answering the same
20-candidate ``/rank`` requests:

* ``floor``: a bare Starlette + uvicorn app that parses the JSON, scores a 20 x ~60 matrix with the
  bundle's click model (a LightGBM booster of the same size) and returns JSON: no validation, no
  online features, no re-ranking, no logging (``benchmarks/floor_app.py``), one worker per core;
* ``redis``: ``bentoml serve`` as deployed: the Redis online store, one worker per core;
* ``memory``: ``bentoml serve`` with the embedded memory store (one worker, as it must);
* ``floor_1``: the floor with one worker, what ``memory`` is compared with;
* optional ``engine``: the service's engine in a bare Starlette app (``benchmarks/baseline_app.py``,
  memory store): how much of the gap is BentoML's.

Closed-loop load with ``wrk`` (``apt-get install wrk``) at each connection count, the servers
interleaved so they share the machine's noise; a short warm-up precedes each measurement. Each
service is compared with the floor of the same worker count. Then ``/feedback`` latency (a
client that ranks, then sends a click for a shown offer, timing the feedback), and the per-stage
time of a ranking in process (features, model, the rest) with each store. Prints tables, writes
JSON.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from publish import write_result

from offer_ranker.serve import launch

HERE = Path(__file__).parent
ROOT = HERE.parent
TARGETS = ("floor", "redis", "memory", "floor_1")
FLOOR_OF = {"redis": "floor", "memory": "floor_1", "engine": "floor_1"}
GOALS = {"p50_ratio": 2.5, "p99_ratio": 3.0, "throughput_ratio": 0.5}  # for "redis" (issue 14)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=5000)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--connections", default="1,8")
    parser.add_argument("--targets", default=",".join(TARGETS))
    parser.add_argument("--feedback", type=int, default=2000, help="feedback events timed per store")
    parser.add_argument("--json", type=Path, default=HERE / "results" / "service.json")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install wrk")
    if shutil.which("redis-server") is None:
        sys.exit("redis-server is not installed: apt-get install redis-server")
    with tempfile.TemporaryDirectory() as tmp:
        result = run(Path(tmp), args)
    write_result(result, args.json, print_table)


def prepare(tmp: Path, users: int) -> tuple[str, list[dict], Path, Path]:
    """Simulated logs -> features -> a trained bundle, its click model as a LightGBM text file for
    the floor, and wrk scripts of the same requests: plain, and with ``"explain": true``. Returns
    (tag, request bodies, plain script, explain script)."""
    from offer_ranker.config import Config
    from offer_ranker.featurize.build import build_features
    from offer_ranker.model.store import load
    from offer_ranker.model.train import train
    from offer_ranker.serve.examples import sample_requests
    from offer_ranker.simulator import simulate

    cfg = Config.model_validate({"simulate": {"users": users, "days": 7}})
    simulate(cfg.simulate, tmp / "raw")
    build_features(tmp / "raw", tmp / "features", cfg)
    tag = train(tmp / "features", cfg).tag
    load(tag).ctr.save(tmp / "booster.txt")
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
    return tag, bodies, scripts[0], scripts[1]


def serve_config(target: str, tmp: Path, tag: str, redis_url: str) -> Path:
    store = redis_url if target == "redis" else "memory"
    config = tmp / f"{target}.toml"
    config.write_text(f'[serve]\nmodel = "{tag}"\nprediction_log = "{tmp / target}.jsonl"\n'
                      f'journal = "{tmp / target}-journal.jsonl"\nonline_store = "{store}"\n')
    return config


def start_target(target: str, tmp: Path, tag: str, redis_url: str) -> launch.Server:
    port = launch.free_port()
    if target.startswith("floor"):
        workers = 1 if target == "floor_1" else os.cpu_count() or 1
        command = [sys.executable, str(HERE / "floor_app.py"), "--port", str(port), "--workers", str(workers)]
        return launch.start(command, tmp / f"{target}.log", port=port,
                            env=dict(os.environ, FLOOR_BOOSTER=str(tmp / "booster.txt")))
    command = None
    if target == "engine":
        command = [sys.executable, "-m", "uvicorn", "benchmarks.baseline_app:app", "--port", str(port),
                   "--no-access-log", "--log-level", "warning"]
    return launch.start(command, tmp / f"{target}.log", port=port, config=serve_config(target, tmp, tag, redis_url))


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
    # its bundles, runs and aliases stay in tmp: the project's `bentoml serve` is untouched
    os.environ.update(BENTOML_HOME=str(tmp / "bentoml"), BENTOML_DO_NOT_TRACK="True",
                      MLFLOW_TRACKING_URI=f"sqlite:///{tmp}/mlflow.db")
    sys.path.insert(0, str(ROOT))
    from tests.redis_server import RedisServer

    t0 = time.perf_counter()
    tag, bodies, script, explain_script = prepare(tmp, args.users)
    print(f"prepared bundle {tag} in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    targets = args.targets.split(",")
    # AOF with one fsync a second: what a deployment runs (the tests' always-fsync is stricter)
    with RedisServer(tmp / "redis", fsync="everysec") as redis:
        servers = {t: start_target(t, tmp, tag, redis.url) for t in targets}
        results: dict[str, dict[str, dict]] = {t: {} for t in targets}
        feedback: dict[str, dict] = {}
        try:
            for conns in [int(c) for c in args.connections.split(",")]:
                for target in targets:  # interleaved: the servers share the machine's noise
                    port = servers[target].port
                    wrk(port, script, conns, args.warmup)
                    results[target][str(conns)] = wrk(port, script, conns, args.seconds)
                    print(f"{target:16} c={conns}: {results[target][str(conns)]}", file=sys.stderr)
                    if target == "redis" and conns == 1:  # the same requests with "explain": true
                        wrk(port, explain_script, 1, args.warmup)
                        explained = results.setdefault("redis_explain", {})
                        explained["1"] = wrk(port, explain_script, 1, args.seconds)
                        print(f"redis explain    c=1: {explained['1']}", file=sys.stderr)
            for target in ("redis", "memory"):
                if target in servers:
                    feedback[target] = feedback_latency(servers[target].port, bodies, args.feedback)
                    print(f"{target:16} feedback: {feedback[target]}", file=sys.stderr)
        finally:
            for server in servers.values():
                server.stop()
        in_process = {name: stages(tmp, tag, url, bodies) for name, url in (("memory", "memory"), ("redis", redis.url))}
    ratios = {}
    for target, floor in FLOOR_OF.items():
        if target not in results or floor not in results:
            continue
        ratios[target] = {}
        for conns, r in results[target].items():
            b = results[floor][conns]
            ratios[target][conns] = {"floor": floor, "p50_ratio": r["p50_ms"] / b["p50_ms"],
                                     "p99_ratio": r["p99_ms"] / b["p99_ms"],
                                     "throughput_ratio": r["requests_per_s"] / b["requests_per_s"]}
    return {"benchmark": "service", "candidates_per_request": 20, "seconds": args.seconds, "users": args.users,
            "cpus": os.cpu_count(), "load_generator": "wrk -t1 (closed loop)", "results": results,
            "ratios_to_floor": ratios, "goals": GOALS, "feedback": feedback, "in_process_ms": in_process,
            "explain_overhead_p50_ms": (results["redis_explain"]["1"]["p50_ms"] - results["redis"]["1"]["p50_ms"]
                                        if "redis_explain" in results else None)}


def feedback_latency(port: int, bodies: list[dict], n: int) -> dict:
    """Rank, then time a click on the first shown offer; ``n`` times over one connection."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Content-Type": "application/json"}
    seconds, errors = [], 0
    for i in range(n):
        conn.request("POST", "/rank", json.dumps(bodies[i % len(bodies)]), headers)
        ranked = json.loads(conn.getresponse().read())
        click = {"request_id": ranked["request_id"], "offer_id": ranked["offers"][0]["offer_id"], "event": "click"}
        started = time.perf_counter()
        conn.request("POST", "/feedback", json.dumps(click), headers)
        response = conn.getresponse()
        response.read()
        seconds.append(time.perf_counter() - started)
        errors += response.status != 200
    conn.close()
    ms = np.array(seconds) * 1e3
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)), "events": n,
            "errors": errors}


def stages(tmp: Path, tag: str, url: str, bodies: list[dict], n: int = 3000) -> dict:
    """Where a ranking's time goes, in process (no HTTP): parsing the JSON, the online features,
    the model (matrix, click model, calibration), and the rest (re-ranking, recording the page,
    the prediction log); mean ms."""
    from offer_ranker.config import ServeConfig
    from offer_ranker.serve.api import RankRequest
    from offer_ranker.serve.router import Router

    router = Router.load(ServeConfig(model=tag, prediction_log=tmp / f"stages-{len(url)}.jsonl", journal=None,
                                     online_store=url))
    for engine in router.engines.values():
        if engine.store is not None and engine.store.shared:
            engine.store.wait_ready(120)
    raw = [json.dumps(b).encode() for b in bodies]
    for body in raw[:300]:
        router.rank(RankRequest.model_validate_json(body))
    parse, features, model, total = [], [], [], []
    for i in range(n):
        started = time.perf_counter()
        request = RankRequest.model_validate_json(raw[i % len(raw)])
        parse.append(time.perf_counter() - started)
        timings = router.rank(request).timings
        features.append(timings.features)
        model.append(timings.model)
        total.append(timings.total)
    router.close()
    mean = {k: float(np.mean(v) * 1e3) for k, v in
            (("parse", parse), ("features", features), ("model", model), ("rank", total))}
    mean["rest"] = mean["rank"] - mean["features"] - mean["model"]
    return mean


def print_table(result: dict) -> None:
    print(f"\n{'server':16} {'conns':>5} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'req/s':>8} {'errors':>6}"
          f" {'p50 x':>6} {'p99 x':>6} {'thr x':>6}  floor")
    for target, by_conns in result["results"].items():
        for conns, r in by_conns.items():
            ratio = result["ratios_to_floor"].get(target, {}).get(conns)
            extra = (f" {ratio['p50_ratio']:6.2f} {ratio['p99_ratio']:6.2f} {ratio['throughput_ratio']:6.2f}  "
                     f"{ratio['floor']}" if ratio else f" {'':>6} {'':>6} {'':>6}")
            print(f"{target:16} {conns:>5} {r['p50_ms']:8.2f} {r['p90_ms']:8.2f} {r['p99_ms']:8.2f}"
                  f" {r['requests_per_s']:8.0f} {r['errors']:6d}{extra}")
    for target, fb in result["feedback"].items():
        print(f"/feedback {target:7} p50 {fb['p50_ms']:.2f} ms, p99 {fb['p99_ms']:.2f} ms, {fb['errors']} errors "
              f"in {fb['events']}")
    print(f"\nin process, mean ms  {'parse':>7} {'features':>9} {'model':>7} {'rest':>7} {'rank':>7}")
    for store, t in result["in_process_ms"].items():
        print(f"{store:20} {t['parse']:7.3f} {t['features']:9.3f} {t['model']:7.3f} {t['rest']:7.3f} {t['rank']:7.3f}")
    if result.get("explain_overhead_p50_ms") is not None:
        print(f"explain=true adds {result['explain_overhead_p50_ms']:.2f} ms at p50")
    goals = result["goals"]
    print(f"goals for redis (workers = cores): p50 x <= {goals['p50_ratio']}, p99 x <= {goals['p99_ratio']}, "
          f"throughput x >= {goals['throughput_ratio']}, zero errors")


if __name__ == "__main__":
    main()
