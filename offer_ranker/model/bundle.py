"""The model bundle: everything needed to rank, saved in the BentoML model store.

A bundle holds the ranker, the calibrated click model, the conversion model (when the logs have
conversions), the feature spec and manifest, the online snapshot the features produced (so a
bundle is deployable on its own), and ``bundle.json``: engine, objective, training window, data
fingerprint, parameters, metrics and package versions. :mod:`offer_ranker.model.store` keeps
bundles in the BentoML model store as ``offer_ranker:<version>``.

Files in the bundle directory::

    bundle.json       the description above
    ranker.txt        LambdaRank booster (LightGBM text; XGBoost: ranker.json)
    ctr.txt           click model; calibration maps its output to p_click (isotonic, in bundle.json)
    conversion.txt    P(conversion | click) model, when trained
    manifest.json     the feature manifest (names, descriptions, categorical levels)
    snapshot/         the online snapshot for serving
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from offer_ranker.errors import OfferRankerError
from offer_ranker.featurize.frame import FeatureSpec, with_position
from offer_ranker.model.engines import Booster

_EXT = {"lightgbm": "txt", "xgboost": "json"}


class BundleError(OfferRankerError):
    """A model bundle cannot be found or read; the message says which and why."""


@dataclass(frozen=True)
class Calibration:
    """A monotone map from the click model's raw probability to p_click (isotonic regression)."""

    x: tuple[float, ...]
    y: tuple[float, ...]

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        if not self.x:
            return np.asarray(raw, dtype=np.float64)
        return np.interp(raw, self.x, self.y)


@dataclass
class Bundle:
    spec: FeatureSpec
    ranker: Booster
    ctr: Booster
    calibration: Calibration
    conversion: Booster | None
    info: dict[str, Any]
    manifest: dict[str, Any]
    snapshot: Path | None = None

    @property
    def objective(self) -> str:
        return self.info["objective"]

    @property
    def version(self) -> str:
        return self.info.get("tag", "unsaved")

    def score(self, X: np.ndarray) -> np.ndarray:
        """Ranking scores (higher = higher on the page) of candidate rows ``X`` (no position column)."""
        if self.objective == "revenue":
            return self.expected_value(X)
        if self.info.get("score_model") == "click_model":  # raw output: calibration would add ties
            return self.ctr.predict(with_position(X, 1.0))
        if self.info["position_bias"] == "feature":
            X = with_position(X, 1.0)
        return self.ranker.predict(X)

    def p_click(self, X: np.ndarray, position: np.ndarray | float = 1.0) -> np.ndarray:
        """Calibrated probability of a click if shown at ``position``."""
        return np.clip(self.calibration(self.ctr.predict(with_position(X, position))), 0.0, 1.0)

    def p_convert(self, X: np.ndarray) -> np.ndarray:
        """P(conversion | click); the training base rate when no conversion model was trained."""
        if self.conversion is None:
            return np.full(len(X), self.info.get("conversion_rate", 0.0))
        return self.conversion.predict(X)

    def value_per_click(self, X: np.ndarray) -> np.ndarray:
        """What a click is worth under the objective: 1 (clicks), p_convert (conversions), or
        p_convert x payout (revenue; the mean conversion value where the payout is unknown)."""
        if self.objective == "clicks":
            return np.ones(len(X))
        if self.objective == "conversions":
            return self.p_convert(X)
        payout = np.full(len(X), self.info.get("mean_value", 1.0))
        if "offer_payout" in self.spec.names:
            known = X[:, self.spec.names.index("offer_payout")]
            payout = np.where(np.isfinite(known), known, payout)
        return self.p_convert(X) * payout

    def expected_value(self, X: np.ndarray) -> np.ndarray:
        """p_click at the top slot x p_convert x payout (the mean conversion value when unknown)."""
        return self.p_click(X, 1.0) * self.value_per_click(X)

    def write(self, path: Path) -> None:
        """Write the bundle's files into the directory ``path``."""
        path.mkdir(parents=True, exist_ok=True)
        ext = _EXT[self.info["engine"]]
        self.ranker.save(path / f"ranker.{ext}")
        self.ctr.save(path / f"ctr.{ext}")
        if self.conversion is not None:
            self.conversion.save(path / f"conversion.{ext}")
        (path / "manifest.json").write_text(json.dumps(self.manifest, indent=2))
        info = self.info | {"spec": self.spec.to_json(),
                            "calibration": {"x": list(self.calibration.x), "y": list(self.calibration.y)},
                            "has_conversion_model": self.conversion is not None,
                            "best_iterations": {"ranker": self.ranker.best_iteration, "ctr": self.ctr.best_iteration,
                                                "conversion": getattr(self.conversion, "best_iteration", None)}}
        (path / "bundle.json").write_text(json.dumps(info, indent=2, default=str))
        if self.snapshot is not None and self.snapshot.resolve() != (path / "snapshot").resolve():
            shutil.copytree(self.snapshot, path / "snapshot", dirs_exist_ok=True)


def read(path: Path) -> Bundle:
    """Load a bundle from its directory (as written by :meth:`Bundle.write`)."""
    path = Path(path)
    try:
        info = json.loads((path / "bundle.json").read_text())
    except FileNotFoundError:
        raise BundleError(f"{path} is not a model bundle (no bundle.json)") from None
    spec = FeatureSpec.from_json(info.pop("spec"))
    calibration = info.pop("calibration")
    # the position column, when a model takes it, is appended last: categorical indexes hold
    engine, cats = info["engine"], spec.categorical
    ext = _EXT[engine]
    conversion = (Booster.load(engine, "classifier", path / f"conversion.{ext}", cats)
                  if info.get("has_conversion_model") else None)
    snapshot = path / "snapshot"
    return Bundle(spec=spec, ranker=Booster.load(engine, "ranker", path / f"ranker.{ext}", cats),
                  ctr=Booster.load(engine, "classifier", path / f"ctr.{ext}", cats),
                  calibration=Calibration(tuple(calibration["x"]), tuple(calibration["y"])),
                  conversion=conversion, info=info, manifest=json.loads((path / "manifest.json").read_text()),
                  snapshot=snapshot if snapshot.exists() else None)
