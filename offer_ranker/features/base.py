"""The shape of a feature definition."""

from __future__ import annotations

from dataclasses import dataclass

ENTITIES = ("offer", "user", "user×category", "user×partner", "user×offer", "request", "request×offer",
            "segment×category")
DTYPES = ("numeric", "categorical")


@dataclass(frozen=True)
class Feature:
    """One model input.

    name : column name in ``train.parquet`` and in the online feature vector
    entity : what the value describes (one of ``ENTITIES``)
    dtype : ``numeric`` (float) or ``categorical`` (text, encoded for the model from the manifest)
    window : which history it summarises, e.g. ``lifetime``, ``decayed (half-life …)``, ``at request``
    description : one plain-language sentence; the SHAP reports print it
    group : the SQL file ``sql/features/<group>.sql`` that produces it
    monotone : +1 when the click models must not score an offer lower for a higher value (a
        monotone constraint in LightGBM and XGBoost), -1 for the reverse, 0 for no constraint
    inputs : the features a derived feature is computed from (a cross names its two sides)
    """

    name: str
    entity: str
    dtype: str
    window: str
    description: str
    group: str
    monotone: int = 0
    inputs: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.entity not in ENTITIES:
            raise ValueError(f"feature {self.name}: entity must be one of {ENTITIES}, got {self.entity!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"feature {self.name}: dtype must be one of {DTYPES}, got {self.dtype!r}")
