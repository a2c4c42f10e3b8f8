"""SHAP points on the demo data (``make demo``'s simulation, ~800k impressions): bounded and additive
where the old rescaling claimed effects of hundreds of points. Long: ``pytest -m slow``."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from offer_ranker.config import Config
from offer_ranker.evaluation.explain import explain
from offer_ranker.featurize.build import build_features
from offer_ranker.model.train import train
from offer_ranker.simulator import simulate


@pytest.mark.slow
def test_points_on_the_demo_data_are_bounded_and_additive(tmp_path: Path) -> None:
    cfg = Config()  # the quickstart's defaults: what `make demo` runs
    simulate(cfg.simulate, tmp_path / "raw")
    build_features(tmp_path / "raw", tmp_path / "features", cfg)
    summary = explain(train(tmp_path / "features", cfg).bundle, tmp_path / "features", tmp_path / "explanation", cfg)
    assert 0 < summary["points"]["max_abs"] <= 100 and summary["points"]["max_additivity_error"] < 1e-9
    for sentence in summary["dependence"].values():
        for number in (float(x) for x in re.findall(r"([+-]?\d+\.\d+) points", sentence)):
            assert abs(number) <= 100, sentence
    assert np.isfinite(summary["base_p_click"]) and 0 < summary["base_p_click"] < 1
