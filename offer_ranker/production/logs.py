"""Reading the service's prediction logs: every ``*.jsonl`` file under a folder (one per service
process, any depth, in name order), line by line, into the records the service wrote
(:class:`~offer_ranker.serve.prediction_log.RankRecord`, :class:`~offer_ranker.serve.prediction_log.FeedbackRecord`).

One policy for ``monitor``, ``ab-report`` and ``logs-to-raw``: a line is used when it is a JSON
object that validates as a rank or feedback record; a record of another kind is counted and
skipped (a later writer may add kinds); a blank line is ignored; anything else is malformed:
skipped, counted, and kept with its file, line number and reason. A missing folder, a folder
without logs or a file that cannot be read is an error that names it.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from offer_ranker.errors import OfferRankerError
from offer_ranker.serve.prediction_log import RECORDS, FeedbackRecord, RankRecord


class LogFileError(OfferRankerError):
    """A log folder is missing, empty or unreadable; the message names it."""


@dataclass(frozen=True)
class Malformed:
    file: str  # relative to the log folder
    line: int  # 1-based
    reason: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.reason}"


@dataclass
class Scan:
    """What a pass over a log folder saw: lines per file, records used, other kinds, malformed lines."""

    files: dict[str, int] = field(default_factory=dict)
    ranks: int = 0
    feedback: int = 0
    other_kinds: Counter = field(default_factory=Counter)
    malformed: list[Malformed] = field(default_factory=list)


def read_records(folder: Path | str, *, rank: Callable[[RankRecord], None] | None = None,
                 feedback: Callable[[FeedbackRecord], None] | None = None) -> Scan:
    """Feed every valid record under ``folder`` to ``rank`` or ``feedback`` (in file and line order)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise LogFileError(f"log folder {folder} does not exist or is not a folder")
    paths = sorted(p for p in folder.rglob("*.jsonl") if p.is_file())
    if not paths:
        raise LogFileError(f"no *.jsonl prediction logs under {folder}")
    scan = Scan()
    for path in paths:
        name, lineno = str(path.relative_to(folder)), 0
        try:
            with path.open("rb") as handle:
                for lineno, line in enumerate(handle, 1):
                    if not line.strip():
                        continue
                    record = parse(line)
                    if isinstance(record, RankRecord):
                        scan.ranks += 1
                        if rank is not None:
                            rank(record)
                    elif isinstance(record, FeedbackRecord):
                        scan.feedback += 1
                        if feedback is not None:
                            feedback(record)
                    elif isinstance(record, Malformed):
                        scan.malformed.append(Malformed(name, lineno, record.reason))
                    else:
                        scan.other_kinds[record] += 1
        except OSError as exc:
            raise LogFileError(f"cannot read prediction log {path}: {exc.strerror or exc}") from None
        scan.files[name] = lineno
    return scan


def parse(line: bytes) -> RankRecord | FeedbackRecord | Malformed | str:
    """One line: a record, the name of another record kind, or why it is malformed (file and line
    left blank)."""
    try:
        obj = json.loads(line)
    except ValueError:  # includes bytes that are not UTF-8
        return Malformed("", 0, "not valid JSON" + ("" if line.endswith(b"\n") else " (a truncated last line?)"))
    kind = obj.get("kind") if isinstance(obj, dict) else None
    if kind not in RECORDS:
        if isinstance(kind, str):
            return kind  # a record kind added later is not an error
        return Malformed("", 0, f"not a rank or feedback record, got {_short(obj)}")
    try:
        return RECORDS[kind].model_validate(obj)
    except ValidationError as exc:
        err = exc.errors()[0]
        got = "missing" if err["type"] == "missing" else f"got {_short(err['input'])}"
        where = ".".join(map(str, err["loc"]))
        return Malformed("", 0, f"{kind}: {where + ': ' if where else ''}{err['msg']}, {got}")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
