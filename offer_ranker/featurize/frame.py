"""From the feature build's outputs to model inputs: the feature spec, the time split, matrices.

Training, scoring, evaluation and the service all turn feature columns into the model's matrix
here, with the one :class:`FeatureSpec` stored in the model bundle, so they cannot drift apart.

Categorical features become integer codes of the levels in the feature manifest (LightGBM and
XGBoost split on them natively; no one-hot matrix). A level the manifest has not seen, or NULL,
becomes NaN, which both engines treat as missing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from offer_ranker.errors import OfferRankerError

#: The training frame's name in a features folder: one Parquet file, or (written by Spark with
#: ``[spark] frame = "parts"``) a folder of Parquet parts whose names sort in row order.
FRAME = "train.parquet"


class FrameError(OfferRankerError):
    """A features folder or frame cannot be used as model input; the message says why."""


@dataclass(frozen=True)
class FeatureSpec:
    """The model's input columns, in order, and the levels of its categorical ones."""

    names: tuple[str, ...]
    levels: dict[str, tuple[str, ...]]

    @classmethod
    def from_manifest(cls, manifest: dict[str, Any]) -> FeatureSpec:
        names = tuple(f["name"] for f in manifest["features"])
        levels = {f["name"]: tuple(manifest["categories"].get(f["name"], ()))
                  for f in manifest["features"] if f["dtype"] == "categorical"}
        return cls(names, levels)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FeatureSpec:
        return cls(tuple(data["names"]), {k: tuple(v) for k, v in data["levels"].items()})

    def to_json(self) -> dict[str, Any]:
        return {"names": list(self.names), "levels": {k: list(v) for k, v in self.levels.items()}}

    @property
    def monotone(self) -> list[int]:
        """Monotone constraint of each column (from the feature definitions; 0 for unknown names)."""
        from offer_ranker.features import BY_NAME

        return [BY_NAME[n].monotone if n in BY_NAME else 0 for n in self.names]

    @property
    def categorical(self) -> list[int]:
        """Column indexes of the categorical features."""
        return [i for i, name in enumerate(self.names) if name in self.levels]

    @cached_property
    def codes(self) -> dict[str, dict[str, float]]:
        """Code of each level of each categorical feature."""
        return {name: {level: float(i) for i, level in enumerate(levels)} for name, levels in self.levels.items()}

    def matrix(self, frame: pl.DataFrame) -> np.ndarray:
        """(rows, features) float64 matrix of ``frame``'s feature columns, categoricals as codes."""
        missing = [n for n in self.names if n not in frame.columns]
        if missing:
            raise FrameError(f"feature columns missing from the frame: {', '.join(missing)} "
                             f"(expected the columns of the model's feature manifest)")
        columns = []
        for name in self.names:
            if name in self.levels:
                col = frame[name].cast(pl.String).replace_strict(self.codes[name], default=None, return_dtype=pl.Float64)
            else:
                col = frame[name].cast(pl.Float64)
            columns.append(col.fill_null(float("nan")).to_numpy())
        return np.column_stack(columns) if columns else np.empty((frame.height, 0))


    def row_matrix(self, columns: dict[str, np.ndarray]) -> np.ndarray:
        """The same matrix from the online store's columns (``OnlineStore.feature_columns``):
        numeric float64 with NaN for NULL, categorical object arrays of str / None. For the few
        rows of one request this is ~20x faster than building a polars frame."""
        n = len(next(iter(columns.values()))) if columns else 0
        X = np.empty((n, len(self.names)))
        for j, name in enumerate(self.names):
            if name in self.levels:
                codes = self.codes[name]
                X[:, j] = [codes.get(v, np.nan) if v is not None else np.nan for v in columns[name]]
            else:
                X[:, j] = columns[name]
        return X


def with_position(X: np.ndarray, position: np.ndarray | float) -> np.ndarray:
    """``X`` with the screen position appended as the last column (1 = top slot)."""
    column = np.broadcast_to(np.asarray(position, dtype=np.float64), (X.shape[0],))
    return np.column_stack([X, column])


def read_manifest(features: Path) -> dict[str, Any]:
    path = Path(features) / "manifest.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FrameError(f"{path} does not exist: FEATURES must be the output folder of "
                         f"`offer-ranker features`") from None


def ordered_parts(folder: Path) -> list[Path]:
    """Spark's ``part-NNNNN-*.parquet`` files of ``folder`` in partition order (the number, not the
    name: past 99,999 partitions the names no longer sort)."""
    return sorted(folder.glob("part-*.parquet"), key=lambda p: (int(p.name.split("-")[1]), p.name))


def frame_files(features: Path) -> list[Path]:
    """The Parquet files of ``features/train.parquet``, in row order: the file itself, or the parts
    of the folder Spark writes."""
    path = Path(features) / FRAME
    if path.is_dir():
        parts = ordered_parts(path)
        if not parts:
            raise FrameError(f"{path} is a folder without part-*.parquet files: rebuild the features")
        return parts
    if not path.exists():
        raise FrameError(f"{path} does not exist: FEATURES must be the output folder of `offer-ranker features`")
    return [path]


def read_frame(features: Path, *, start: datetime | None = None, end: datetime | None = None) -> pl.DataFrame:
    """Rows of ``features/train.parquet`` (a file or a folder of parts) with ``start <= ts < end``,
    requests kept contiguous."""
    lazy = pl.scan_parquet(frame_files(features))
    if start is not None:
        lazy = lazy.filter(pl.col("ts") >= start)
    if end is not None:
        lazy = lazy.filter(pl.col("ts") < end)
    return lazy.collect()


def default_split(manifest: dict[str, Any], share: float) -> datetime:
    """The timestamp that ends the first ``share`` of the logged time range."""
    first, last = (datetime.fromisoformat(manifest[k]) for k in ("first_ts", "last_ts"))
    return first + (last - first) * share


def group_sizes(request_ids: pl.Series) -> np.ndarray:
    """Sizes of the runs of equal request ids (the frame keeps each request's rows contiguous)."""
    sizes = request_ids.rle().struct.field("len").to_numpy().astype(np.int64)
    if len(sizes) != request_ids.n_unique():
        raise FrameError("the rows of a request are not contiguous in the frame; rebuild the features")
    return sizes


@dataclass
class ModelInputs:
    """A slice of the frame as model inputs: whole requests, each request's rows contiguous.

    X : (rows, features) the spec's matrix; groups : (requests,) rows per request
    """

    frame: pl.DataFrame
    X: np.ndarray
    groups: np.ndarray
    categorical: list[int]

    @classmethod
    def of(cls, frame: pl.DataFrame, spec: FeatureSpec) -> ModelInputs:
        return cls(frame, spec.matrix(frame), group_sizes(frame["request_id"]), spec.categorical)

    @property
    def label(self) -> np.ndarray:
        """(rows,) 0 shown, 1 clicked, 2 converted."""
        return self.frame["label"].to_numpy().astype(np.int64)

    @property
    def clicked(self) -> np.ndarray:
        return (self.label >= 1).astype(np.float64)

    @property
    def position(self) -> np.ndarray:
        """(rows,) the logged slot, 1 = top."""
        return self.frame["position"].to_numpy().astype(np.float64)
