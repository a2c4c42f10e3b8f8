"""What every benchmark script does around its measurement: private temporary stores while it runs,
then its result written as JSON and printed."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def private_stores() -> Iterator[Path]:
    """A temporary folder that holds this run's BentoML model store and MLflow runs, so nothing it
    trains reaches the project's stores; BentoML sends no telemetry."""
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")
        os.environ["BENTOML_HOME"] = f"{tmp}/bentoml"
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp}/mlflow.db"
        yield Path(tmp)


def write_result(result: dict, path: Path, table: Callable[[dict], None] | None = None) -> None:
    """Write ``result`` to ``path`` as JSON (creating its folder), print ``table(result)`` if given,
    and say where it went."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    if table is None:
        print(f"wrote {path}")
    else:
        table(result)
        print(f"\nwrote {path}")
