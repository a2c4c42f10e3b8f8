"""What the model lifecycle costs: tracking a training, promoting, and resolving ``production``.

    python benchmarks/bench_lifecycle.py [--users 6000] [--repeats 5]

In a temp folder (its own BentoML store and MLflow store): a small simulation, features, then

* ``train``: ``offer-ranker``'s training with ``track.enabled = false`` (the baseline, measured in
  the same run) and with tracking, each in a fresh process, so that importing MLflow and opening
  the store are counted as a user pays them. The first tracked run also creates the store; it is
  reported on its own;
* ``promote``: ``offer-ranker models promote`` of a second bundle through the gate (one
  comparison on the held-out window), in a fresh process;
* ``resolve``: what a service worker pays at start to learn which bundle ``production`` is, in a
  fresh process: the read-only SQLite query the service uses, against MLflow's client (import
  and lookup), with peak memory.

Prints a table and writes JSON (ratios to the same run's baseline are the figures to compare).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from publish import write_result

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent

RESOLVE_SQLITE = "from offer_ranker.model import registry; print(registry.alias_tag('production'))"
RESOLVE_MLFLOW = ("from mlflow.tracking import MlflowClient; import os; "
                  "c = MlflowClient(os.environ['MLFLOW_TRACKING_URI']); "
                  "print(c.get_model_version_by_alias('offer_ranker', 'production').tags['bentoml_tag'])")


def timed(command: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float, str]:
    """Wall seconds, peak RSS (MB) and stdout of one fresh process."""
    started = time.perf_counter()
    run = subprocess.run(["/usr/bin/time", "-f", "%M", *command], env=env, cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if run.returncode != 0:
        raise SystemExit(f"{command} failed:\n{run.stdout[-2000:]}{run.stderr[-2000:]}")
    peak_kb = float(run.stderr.strip().splitlines()[-1])
    return seconds, peak_kb / 1024, run.stdout


def run(tmp: Path, users: int, repeats: int) -> dict:
    env = os.environ | {"BENTOML_HOME": str(tmp / "bentoml"), "BENTOML_DO_NOT_TRACK": "True",
                        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp}/mlflow.db"}
    cli = str(BIN / "offer-ranker")
    config = tmp / "cfg.toml"
    config.write_text(f"[simulate]\nusers = {users}\nseed = 3\n[train]\nrounds = 200\nearly_stopping = 20\n")
    untracked = tmp / "untracked.toml"
    untracked.write_text(config.read_text() + "[track]\nenabled = false\n")
    subprocess.run([cli, "simulate", "--out", str(tmp / "raw"), "--config", str(config)], env=env, check=True,
                   capture_output=True)
    subprocess.run([cli, "features", "--raw", str(tmp / "raw"), "--out", str(tmp / "features"), "--config",
                    str(config)], env=env, check=True, capture_output=True)
    train = [cli, "train", "--features", str(tmp / "features"), "--config"]
    first, _, _ = timed([*train, str(config)], env, tmp)  # creates the MLflow store
    plain, tracked, tags = [], [], []
    for _ in range(repeats):  # interleaved, so drift in the machine's load hits both alike
        plain.append(timed([*train, str(untracked)], env, tmp)[0])
        seconds, _, out = timed([*train, str(config)], env, tmp)
        tracked.append(seconds)
        tags.append(out.strip().splitlines()[-1])
    subprocess.run([cli, "models", "promote", tags[0]], env=env, check=True, capture_output=True)
    promote, _, _ = timed([cli, "models", "promote", tags[1], "--force"], env, tmp)
    sqlite = [timed([sys.executable, "-c", RESOLVE_SQLITE], env, tmp) for _ in range(repeats)]
    mlflow = [timed([sys.executable, "-c", RESOLVE_MLFLOW], env, tmp) for _ in range(repeats)]
    assert {s[2].strip() for s in sqlite} == {m[2].strip() for m in mlflow} == {tags[1]}
    med = statistics.median
    return {
        "users": users, "repeats": repeats,
        "train_seconds": {"untracked": med(plain), "tracked": med(tracked), "first_tracked": first,
                          "ratio": med(tracked) / med(plain), "overhead": med(tracked) - med(plain)},
        "promote_seconds": promote,
        "resolve": {"sqlite": {"seconds": med(s[0] for s in sqlite), "peak_mb": med(s[1] for s in sqlite)},
                    "mlflow_client": {"seconds": med(m[0] for m in mlflow), "peak_mb": med(m[1] for m in mlflow)}},
    }


def print_table(r: dict) -> None:
    t, s, m = r["train_seconds"], r["resolve"]["sqlite"], r["resolve"]["mlflow_client"]
    rows = [("train, untracked (baseline), fresh process", f"{t['untracked']:.1f} s"),
            ("train, tracked in MLflow", f"{t['tracked']:.1f} s ({t['ratio']:.2f}x, +{t['overhead']:.1f} s)"),
            ("first tracked train (creates the store)", f"{t['first_tracked']:.1f} s"),
            ("models promote (gate + registry), fresh process", f"{r['promote_seconds']:.1f} s"),
            ("resolve production: SQLite read (the service's)", f"{s['seconds']:.2f} s, peak {s['peak_mb']:.0f} MB"),
            ("resolve production: MLflow client", f"{m['seconds']:.2f} s, peak {m['peak_mb']:.0f} MB")]
    width = max(len(a) for a, _ in rows)
    for a, b in rows:
        print(f"{a:<{width}}  {b}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=6000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path, default=HERE / "results" / "lifecycle.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        result = run(Path(tmp), args.users, args.repeats)
    write_result(result, args.json, print_table)


if __name__ == "__main__":
    main()
