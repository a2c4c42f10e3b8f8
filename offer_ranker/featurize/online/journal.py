"""The memory store's journal: every event it records, one JSON line each, so a restart loses none.

On start the store loads its snapshot and replays the journal's events the snapshot does not count:
those recorded on this very snapshot (a restart), and those dated from the snapshot's cutoff on (a
move to a newer bundle's snapshot, which counts the logs up to its cutoff). Each event counts once.
Lines hold user keys (salted hashes), never user ids. A line that cannot be read (a crash in the
middle of a write) is skipped and counted; the next line starts on a line of its own. Entries
older than ``keep_days`` before the newest are dropped when the journal is opened, as Redis trims
its journal stream: a snapshot older than that misses events.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger("offer_ranker.online")


class Journal:
    """Append-only JSON lines, flushed per line: what was acknowledged survives the process."""

    def __init__(self, path: Path, keep_days: float = 7.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.malformed = 0
        if self.path.exists() and self.path.stat().st_size:
            self._trim(keep_days)
        self._file = open(self.path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115 - lives with the store

    def _trim(self, keep_days: float) -> None:
        """Drop entries older than ``keep_days`` before the newest (and end a torn last line)."""
        with open(self.path, "rb") as handle:
            handle.seek(-1, os.SEEK_END)
            torn = handle.read(1) != b"\n"
        times = [entry["t"] for entry in self._read() if isinstance(entry.get("t"), int)]
        self.malformed = 0
        if not times:
            return
        since = max(times) - int(keep_days * 86_400e6)
        if min(times) >= since and not torn:
            return
        tmp = self.path.with_suffix(".trimming")
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.writelines(json.dumps(e, separators=(",", ":")) + "\n" for e in self._read()
                              if isinstance(e.get("t"), int) and e["t"] >= since)
        os.replace(tmp, self.path)

    def _read(self) -> Iterator[dict[str, Any]]:
        with open(self.path, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                try:
                    entry = json.loads(line)
                except ValueError:
                    self.malformed += 1
                    continue
                if isinstance(entry, dict):
                    yield entry
                else:
                    self.malformed += 1

    def write(self, entry: dict[str, Any]) -> None:
        self._file.write(json.dumps(entry, separators=(",", ":")) + "\n")

    def entries(self, snapshot: str, since_us: int) -> Iterator[dict[str, Any]]:
        """The entries a snapshot does not count, in file order: recorded on ``snapshot`` (its id),
        or dated at or after ``since_us`` (µs since the epoch)."""
        for entry in self._read():
            try:
                if entry.get("s") == snapshot or entry["t"] >= since_us:
                    yield entry
            except (KeyError, TypeError):
                self.malformed += 1

    def close(self) -> None:
        self._file.close()
