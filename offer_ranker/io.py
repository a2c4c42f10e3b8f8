"""Atomic outputs: a command's files appear all together, or not at all."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


class Staging:
    """A hidden folder next to the final outputs; ``path(name)`` is where to write ``name``."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.root = out_dir / f".staging-{uuid.uuid4().hex[:12]}"
        self.names: list[str] = []
        self.removed: list[str] = []

    def path(self, name: str) -> Path:
        """Staging location for the output ``name`` (may contain sub-folders)."""
        target = self.root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if name not in self.names:
            self.names.append(name)
        return target

    def remove(self, name: str) -> None:
        """``out_dir/name`` from an earlier run is deleted when this run's outputs move in."""
        self.removed.append(name)

    def write_json(self, name: str, payload: Any) -> Path:
        target = self.path(name)
        target.write_text(json.dumps(payload, indent=2, default=str) + "\n")
        return target


@contextmanager
def staged_outputs(out_dir: Path | str) -> Iterator[Staging]:
    """Stage files, then move each into ``out_dir`` with ``os.replace`` once all are written.

    On any exception the staging folder is removed and ``out_dir`` keeps what it had before.
    Outputs are moved in the order they were first staged, so write the file that marks a
    complete run (a report) last. An output may be a folder (Spark's frame of parts): an earlier
    output of the same name, file or folder, is moved aside into the staging folder first (and
    back, should the move in fail), so for that moment the name does not exist.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stage = Staging(out_dir)
    stage.root.mkdir()
    try:
        yield stage
        for name in stage.removed:
            (out_dir / name).unlink(missing_ok=True)
        missing = [name for name in stage.names if not (stage.root / name).exists()]
        if missing:
            raise FileNotFoundError(f"staged outputs never written: {', '.join(missing)} (in {stage.root})")
        for i, name in enumerate(stage.names):
            final, staged = out_dir / name, stage.root / name
            final.parent.mkdir(parents=True, exist_ok=True)
            if (final.is_dir() or staged.is_dir()) and final.exists():  # os.replace moves a file over a file only
                aside = stage.root / f".replaced-{i}"
                os.replace(final, aside)
                try:
                    os.replace(staged, final)
                except OSError:
                    os.replace(aside, final)
                    raise
            else:
                os.replace(staged, final)
    finally:
        shutil.rmtree(stage.root, ignore_errors=True)
