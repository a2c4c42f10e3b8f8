"""Schemathesis against the service's own OpenAPI document: generated requests, never a 5xx."""

from __future__ import annotations

import collections
import json
import subprocess
import sys
from pathlib import Path

from offer_ranker import launch


def test_generated_requests_never_get_a_server_error(server: launch.Server, tmp_path: Path) -> None:
    har = tmp_path / "requests.har"
    run = subprocess.run(
        [str(Path(sys.executable).parent / "schemathesis"), "run", f"{server.url}/docs.json",
         "--checks", "not_a_server_error", "--include-path-regex", "^/(rank|feedback)$",
         "--max-examples", "300", "--seed", "7", "--report", "har", "--report-har-path", str(har)],
        capture_output=True, text=True, timeout=600)
    entries = json.loads(har.read_text())["log"]["entries"]
    statuses = collections.Counter(e["response"]["status"] for e in entries)
    assert run.returncode == 0, run.stdout[-3000:]
    assert len(entries) >= 500, statuses
    assert not [s for s in statuses if s >= 500], statuses
    assert statuses[200] > 0  # some generated requests were valid and ranked
