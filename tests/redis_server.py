"""A real ``redis-server`` for the tests, started and stopped by them (Debian's package; ``make
test`` installs it when it runs as root). AOF on, so a restart keeps what was acknowledged."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_cluster_port() -> int:
    """A free port below 55536 whose cluster bus port (+10000) is free too."""
    import random

    while True:
        port = random.randint(20000, 45000)
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 10000))
            return port
        except OSError:
            continue


class RedisServer:
    def __init__(self, folder: Path, port: int | None = None, fsync: str = "always", cluster: bool = False) -> None:
        self.folder, self.port, self.fsync, self.cluster = folder, port or free_port(), fsync, cluster
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder),
             "--save", "", "--appendonly", "yes", "--appendfsync", self.fsync, "--protected-mode", "no",
             *(["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"] if self.cluster else [])],
            stdout=(self.folder / "redis.log").open("a"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server on port {self.port} did not start: {(self.folder / 'redis.log').read_text()}")

    def kill(self) -> None:
        """Stop the server at once (SIGKILL: no chance to save anything more)."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None

    def restart(self) -> RedisServer:
        self.kill()
        return self.start()

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.kill()


class RedisCluster:
    """Three ``redis-server`` primaries in cluster mode (no replicas), slots spread over them."""

    def __init__(self, folder: Path, nodes: int = 3) -> None:
        self.servers = [RedisServer(folder / f"node{i}", free_cluster_port(), cluster=True) for i in range(nodes)]

    @property
    def url(self) -> str:
        return f"redis+cluster://127.0.0.1:{self.servers[0].port}/0"

    def __enter__(self) -> RedisCluster:
        for server in self.servers:
            server.start()
        subprocess.run(["redis-cli", "--cluster", "create", *(f"127.0.0.1:{s.port}" for s in self.servers),
                        "--cluster-replicas", "0", "--cluster-yes"], check=True, capture_output=True, timeout=60)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            info = subprocess.run(["redis-cli", "-p", str(self.servers[0].port), "cluster", "info"],
                                  capture_output=True, text=True).stdout
            if "cluster_state:ok" in info:
                return self
            time.sleep(0.2)
        raise RuntimeError(f"the cluster did not become ready: {info}")

    def __exit__(self, *exc: object) -> None:
        for server in self.servers:
            server.kill()


def require_redis() -> None:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server; `make test` installs it when root)")
