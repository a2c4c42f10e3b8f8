"""The Redis online store at 1M users: how long a snapshot takes to load, and bytes per user.

    python benchmarks/bench_online_store.py [--users 100000] [--days 14] [--tile 10]

The 1M-user snapshot is the one ``bench_snapshot.py`` makes (a ``--users`` simulation tiled
``--tile`` times with renamed user ids; cached in ``benchmarks/.cache``). A real
``redis-server`` (Debian's package; AOF on, one fsync a second, as deployed) is started in a temp
folder, then:

* ``load``: ``OnlineStore.load(snapshot, url=...)`` until the namespace is ready, what
  ``offer-ranker online load`` and a starting replica do (goal: <= 60 s for 1M users);
* ``baseline``, measured in the same run: redis-py writes as many keys of the same key and value
  sizes, pipelined in the same batches, with the same TTL — the least any loader pays to put
  that many users into Redis. The ratio load / baseline is the figure to compare across machines;
* memory: ``INFO memory`` ``used_memory`` after the load minus before, per user (goal: <= 256
  bytes; Metarank documents about 0.8 GiB per 1M users), next to the same for the baseline's keys
  (what Redis itself costs per key of that size);
* reads: the latency of one ranking's state read (one pipelined round trip) for random users.

Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from publish import write_result

HERE = Path(__file__).parent
ROOT = HERE.parent
GOALS = {"load_seconds": 60.0, "bytes_per_user": 256.0}


def used_memory(client) -> int:  # noqa: ANN001
    return int(client.info("memory")["used_memory"])


def load(snapshot: Path, url: str) -> tuple[float, object]:
    from offer_ranker.featurize.online import OnlineStore

    started = time.perf_counter()
    store = OnlineStore.load(snapshot, url=url, catch_up=False, timeout_ms=10_000, wait_seconds=900)
    if not store.wait_ready(900):
        raise RuntimeError(f"the namespace did not become ready: {store.status()}")
    return time.perf_counter() - started, store


def baseline(client, users: int, key_bytes: int, value_bytes: int, ttl_ms: int, batch: int) -> float:  # noqa: ANN001
    """Write ``users`` keys of ``key_bytes`` with values of ``value_bytes`` and a TTL, pipelined."""
    rng = np.random.default_rng(0)
    value = rng.bytes(value_bytes)
    started = time.perf_counter()
    pipe = client.pipeline(transaction=False)
    for u in range(users):
        pipe.set(b"bl:" + u.to_bytes(key_bytes - 3, "big"), value, px=ttl_ms)
        if (u + 1) % batch == 0:
            pipe.execute()
            pipe = client.pipeline(transaction=False)
    pipe.execute()
    return time.perf_counter() - started


def reads(store, user_ids: np.ndarray, features: Path, n: int = 2000) -> dict:  # noqa: ANN001
    from datetime import timedelta

    from offer_ranker.serve.examples import end_of_logs

    offers = store.snapshot.offer_ids[:20].tolist()
    ts = end_of_logs(features) + timedelta(minutes=1)
    t = int(ts.timestamp() * 1e6)
    rng = np.random.default_rng(1)
    took = []
    for user in rng.choice(user_ids, n):
        started = time.perf_counter()
        store.state(str(user), offers, t, ts)
        took.append(time.perf_counter() - started)
    us = np.array(took) * 1e6
    return {"p50_us": float(np.percentile(us, 50)), "p99_us": float(np.percentile(us, 99))}


def run(tmp: Path, args: argparse.Namespace) -> dict:
    sys.path.insert(0, str(HERE))
    sys.path.insert(0, str(ROOT))
    from bench_snapshot import _built, _tiled  # the same cached 1M-user snapshot

    from offer_ranker.featurize.online.loader import BATCH
    from tests.redis_server import RedisServer

    features = _built(args.users, args.days, args.cache)
    tiled = _tiled(features, args.tile)
    users = pq.read_metadata(tiled / "snapshot" / "users.parquet").num_rows
    with RedisServer(tmp / "redis", fsync="everysec") as server:
        import redis

        client = redis.Redis.from_url(server.url)
        before = used_memory(client)
        print(f"loading {users:,} users ...", file=sys.stderr, flush=True)
        seconds, store = load(tiled, server.url)
        loaded = used_memory(client)
        prefix = store.keys.user(0)[:-9]  # <prefix>{<8-byte hash>}: binary, so no MATCH pattern
        sample = [k for k in client.scan_iter(count=1000) if k.startswith(prefix) and len(k) == len(prefix) + 9]
        sample = sample[:1000]
        key_bytes = int(np.mean([len(k) for k in sample]))
        value_bytes = int(np.mean([client.strlen(k) for k in sample]))
        usage = int(np.mean([client.memory_usage(k, samples=0) for k in sample]))
        read = reads(store, pq.read_table(tiled / "snapshot" / "users.parquet", columns=["user_id"])
                     .column(0).to_numpy(), tiled)
        store.close()
        client.flushall()
        empty = used_memory(client)
        print(f"baseline: {users:,} plain keys ...", file=sys.stderr, flush=True)
        base_seconds = baseline(client, users, key_bytes, value_bytes, int(30 * 86400e3), BATCH)
        base_memory = used_memory(client) - empty
    return {"benchmark": "online_store", "users": users, "cpus": os.cpu_count(),
            "how": f"the {args.users:,}-user snapshot tiled {args.tile}x with renamed user ids",
            "redis": "redis-server, AOF everysec", "load_seconds": seconds, "baseline_seconds": base_seconds,
            "load_ratio": seconds / base_seconds, "bytes_per_user": (loaded - before) / users,
            "baseline_bytes_per_key": base_memory / users, "key_bytes": key_bytes, "value_bytes": value_bytes,
            "memory_usage_per_key": usage, "state_read": read, "goals": GOALS}


def print_table(r: dict) -> None:
    print(f"\n{r['users']:,} users ({r['how']}), {r['redis']}")
    print(f"{'':26} {'load s':>8} {'bytes/user':>11}")
    print(f"{'online store':26} {r['load_seconds']:8.1f} {r['bytes_per_user']:11.0f}")
    print(f"{'baseline: plain SET + TTL':26} {r['baseline_seconds']:8.1f} {r['baseline_bytes_per_key']:11.0f}")
    print(f"load / baseline {r['load_ratio']:.2f}x; key {r['key_bytes']} B, value {r['value_bytes']} B, "
          f"MEMORY USAGE {r['memory_usage_per_key']} B per user key")
    print(f"state read (one round trip): p50 {r['state_read']['p50_us']:.0f} us, p99 {r['state_read']['p99_us']:.0f} us")
    print(f"goals: load <= {r['goals']['load_seconds']:.0f} s, <= {r['goals']['bytes_per_user']:.0f} bytes/user")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument("--tile", type=int, default=10)
    parser.add_argument("--cache", type=Path, default=HERE / ".cache")
    parser.add_argument("--json", type=Path, default=HERE / "results" / "online_store.json")
    args = parser.parse_args()
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")
    with tempfile.TemporaryDirectory() as tmp:
        result = run(Path(tmp), args)
    write_result(result, args.json, print_table)


if __name__ == "__main__":
    main()
