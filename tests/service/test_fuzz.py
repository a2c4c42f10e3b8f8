"""Schemathesis against the service's own OpenAPI document: generated requests, never a 5xx."""

from __future__ import annotations

import collections
import json
import subprocess
import sys
from pathlib import Path

import pytest

from offer_ranker.serve import launch

#: Seeded runs of the examples, coverage (boundary values) and fuzzing phases until 500+ requests
#: went out. A run sends 200-750: schemathesis ends an operation early once most of its
#: valid-by-schema requests are refused (/feedback for requests never served, /rank dated far
#: from the snapshot), so the count varies. The time goes into generating the bodies, not serving
#: them, and varies by seed: seeds 3-6 each sent 757 requests in 50-60 s, seed 1 sent 219 in 10 s
#: and seed 2 took 185 s for 757; so the cheap seeds come first.
SEEDS = (3, 4, 5, 6, 1, 2)


@pytest.mark.slow  # ~90 s with the server's start: `make test-all`; test_http covers each invalid-input class
def test_generated_requests_never_get_a_server_error(server: launch.Server, tmp_path: Path) -> None:
    statuses: collections.Counter[int] = collections.Counter()
    for seed in SEEDS:
        if sum(statuses.values()) >= 500:
            break
        har = tmp_path / f"requests-{seed}.har"
        run = subprocess.run(
            [str(Path(sys.executable).parent / "schemathesis"), "run", f"{server.url}/docs.json",
             "--checks", "not_a_server_error", "--include-path-regex", "^/(rank|feedback)$",
             "--max-examples", "300", "--seed", str(seed), "--phases", "examples,coverage,fuzzing",
             "--report", "har", "--report-har-path", str(har)],
            capture_output=True, text=True, timeout=600, cwd=tmp_path)  # its cache stays out of the checkout
        assert run.returncode == 0, run.stdout[-3000:]
        statuses.update(e["response"]["status"] for e in json.loads(har.read_text())["log"]["entries"])
    assert sum(statuses.values()) >= 500, statuses
    assert not [s for s in statuses if s >= 500], statuses
    assert statuses[200] > 0  # some generated requests were valid and ranked
