"""The package's shape, checked: stages import only the stages below them (the import-linter
contracts in pyproject.toml), no import circles, and no module too long to read in one sitting."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MAX_LINES = 400


def test_the_import_contracts_hold() -> None:
    run = subprocess.run([str(Path(sys.executable).parent / "lint-imports"), "--no-cache"], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "0 broken" in run.stdout and "4 kept" in run.stdout, run.stdout[-2000:]


@pytest.mark.parametrize("path", sorted(p.relative_to(ROOT) for p in (ROOT / "offer_ranker").rglob("*.py")),
                         ids=str)
def test_no_module_is_over_400_lines(path: Path) -> None:
    lines = len((ROOT / path).read_text().splitlines())
    assert lines <= MAX_LINES, f"{path} has {lines} lines: split it by responsibility"
