"""The memory store's journal: every event it records, one JSON line each, so a restart loses none.

On start the store loads its snapshot and replays the journal's events the snapshot does not count:
those recorded on this very snapshot (a restart), and those dated from the snapshot's cutoff on (a
move to a newer bundle's snapshot, which counts the logs up to its cutoff). Each event counts once. Lines hold user keys (salted hashes), never user ids. A line
that cannot be read (a crash in the middle of a write) is skipped and counted.
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

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.malformed = 0
        self._file = open(self.path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115 - lives with the store

    def write(self, entry: dict[str, Any]) -> None:
        self._file.write(json.dumps(entry, separators=(",", ":")) + "\n")

    def entries(self, snapshot: str, since_us: int) -> Iterator[dict[str, Any]]:
        """The entries a snapshot does not count, in file order: recorded on ``snapshot`` (its id),
        or dated at or after ``since_us`` (µs since the epoch)."""
        with open(self.path, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                try:
                    entry = json.loads(line)
                    if entry.get("s") == snapshot or entry["t"] >= since_us:
                        yield entry
                except (ValueError, KeyError, TypeError, AttributeError):
                    self.malformed += 1

    def compact(self, snapshot: str, since_us: int) -> int:
        """Keep only the entries the snapshot does not count; returns how many. The file is replaced
        atomically."""
        kept = list(self.entries(snapshot, since_us))
        tmp = self.path.with_suffix(".compacting")
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.writelines(json.dumps(e, separators=(",", ":")) + "\n" for e in kept)
        self._file.close()
        os.replace(tmp, self.path)
        self._file = open(self.path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115
        return len(kept)

    def close(self) -> None:
        self._file.close()
