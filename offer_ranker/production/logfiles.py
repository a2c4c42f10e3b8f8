"""Reading the service's prediction logs: every ``*.jsonl`` file under a folder (one per service
process, any depth), line by line, with file and line number for whatever cannot be used.

``offer-ranker monitor``, ``ab-report`` and ``logs-to-raw`` parse the records differently; this
is the walk, the numbering and the errors they share.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from offer_ranker.errors import OfferRankerError


class LogFileError(OfferRankerError):
    """A log folder is missing, empty or unreadable; the message names it."""


def read_lines(folder: Path | str, add: Callable[[bytes], str | None]) -> tuple[dict[str, int], list[tuple[str, int, str]]]:
    """Feed every non-blank line under ``folder`` (files in name order) to ``add``, which returns
    why the line is malformed, or None. Returns the lines read per file (by path relative to
    ``folder``) and the malformed lines as ``(file, line number, reason)``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise LogFileError(f"log folder {folder} does not exist or is not a folder")
    paths = sorted(p for p in folder.rglob("*.jsonl") if p.is_file())
    if not paths:
        raise LogFileError(f"no *.jsonl prediction logs under {folder}")
    files: dict[str, int] = {}
    malformed: list[tuple[str, int, str]] = []
    for path in paths:
        name, lineno = str(path.relative_to(folder)), 0
        try:
            with path.open("rb") as handle:
                for lineno, line in enumerate(handle, 1):
                    if line.strip() and (reason := add(line)):
                        malformed.append((name, lineno, reason))
        except OSError as exc:
            raise LogFileError(f"cannot read prediction log {path}: {exc.strerror or exc}") from None
        files[name] = lineno
    return files, malformed
