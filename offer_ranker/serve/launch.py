"""Run the real service in a child process and wait until it is ready: for the service tests and
the latency benchmark (both talk HTTP to ``bentoml serve``, not to an in-process app).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

#: the checkout this module runs from (offer_ranker/serve/launch.py -> the folder holding bentofile.yaml)
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bentoml_command(port: int) -> list[str]:
    return [str(Path(sys.executable).parent / "bentoml"), "serve", "offer_ranker.serve.service:OfferRanker",
            "--port", str(port), "--host", "127.0.0.1"]


@dataclass
class Server:
    process: subprocess.Popen
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(30)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def kill(self) -> None:
        """A crash: SIGKILL to the server and every process under it (BentoML's workers run in
        their own process groups), with no chance to flush or shut down anything."""
        import psutil

        try:
            tree = psutil.Process(self.process.pid)
            processes = [tree, *tree.children(recursive=True)]
        except psutil.NoSuchProcess:
            return
        for process in processes:
            try:
                process.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(processes, timeout=10)

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start(command: list[str] | None, log: Path, *, port: int | None = None, env: dict[str, str] | None = None,
          config: Path | None = None, ready: str = "/readyz", accept_unready: bool = False,
          timeout: float = 180.0, cwd: Path = PROJECT_ROOT) -> Server:
    """Start ``command`` (default: ``bentoml serve`` of the service) in ``cwd`` (default: the
    project root) and wait until ``ready`` answers 200 (or, with ``accept_unready``, answers at
    all)."""
    port = port or free_port()
    command = command or bentoml_command(port)
    env = dict(os.environ if env is None else env)
    env.setdefault("BENTOML_DO_NOT_TRACK", "True")
    if config is not None:
        env["OFFER_RANKER_CONFIG"] = str(config)
    out = open(log, "w")  # noqa: SIM115 - the child writes to it until it stops
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                               start_new_session=True)
    server = Server(process, port, log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            with urllib.request.urlopen(server.url + ready, timeout=2) as response:
                if response.status == 200:
                    return server
        except urllib.error.HTTPError:
            if accept_unready:
                return server
        except OSError:
            pass
        time.sleep(0.3)
    server.stop()
    raise RuntimeError(f"server {' '.join(command)} did not become ready; its log ends:\n{log.read_text()[-4000:]}")
