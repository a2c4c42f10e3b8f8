"""SHAP explanations: additivity, the simulator's main effect among the top drivers, the report
rendering in headless Chromium."""

from __future__ import annotations

import base64
import io
import re
import shutil
import subprocess
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from offer_ranker.evaluation.explain import explain, sample_requests, shap_values
from offer_ranker.featurize.frame import read_frame, with_position
from offer_ranker.model.train import TrainResult
from tests.conftest import CFG

#: The simulator's two largest effects on which offer a user clicks, and the features through
#: which the logs show them: offer quality (partner and category quality, reward type, noise,
#: clickbait: sd ≈ 0.45 on the logit) and the user's taste for the offer's category (by plan,
#: country and age band: sd 0.5, 0.35, 0.35 — personalisation, not popularity).
OFFER_QUALITY = {"offer_partner", "offer_ctr", "offer_ctr_recent", "offer_coec", "lw_ctr_rel", "offer_category"}
TASTE = {"category_by_user_x_plan", "category_by_user_x_country", "category_by_user_x_age_band",
         "category_by_ctx_country"}


@pytest.fixture(scope="module")
def report(trained: TrainResult, sim: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("explain")
    return out, explain(trained.bundle, sim / "features", out, CFG)


def test_shap_values_add_up_to_the_model_output(trained: TrainResult, sim: Path) -> None:
    b = trained.bundle
    frame = read_frame(sim / "features", start=datetime.fromisoformat(b.info["train_until"]))
    e = shap_values(b, sample_requests(frame, 400, seed=1), seconds=30)
    raw = b.ctr.model.predict(with_position(e.X, 1.0), raw_score=True)
    assert np.allclose(e.base + e.values.sum(axis=1) + e.slot, raw, atol=1e-6)
    # in probability terms the contributions add up to p - p(base) of the uncalibrated model
    p = 1 / (1 + np.exp(-raw))
    assert np.allclose(e.probability_values.sum(axis=1), p - 1 / (1 + np.exp(-e.base)), atol=1e-9)


def test_the_simulators_main_effects_are_the_top_drivers(report: tuple[Path, dict]) -> None:
    top3 = [d["feature"] for d in report[1]["drivers"][:3]]
    assert top3[0] in OFFER_QUALITY | TASTE, top3
    top6 = {d["feature"] for d in report[1]["drivers"][:6]}
    assert OFFER_QUALITY & top6 and TASTE & top6, top6  # both effects among the leading drivers


def test_report_content(report: tuple[Path, dict]) -> None:
    out, summary = report
    assert len(summary["examples"]) == 3 and all(ex["reasons"] for ex in summary["examples"])
    assert len(summary["dependence"]) == 4
    business = summary["business"]
    assert business["clicks"]["model"]["ci"][0] <= business["clicks"]["model"]["value"] <= business["clicks"]["model"]["ci"][1]
    assert "true" in business["clicks"]  # simulated logs: the true value too
    page = (out / "report.html").read_text()
    for heading in ("What the model is worth", "What drives the ranking", "How the top drivers act",
                    "New vs returning users", "Top drivers per offer category", "Worked examples"):
        assert heading in page


def test_report_renders_in_headless_chromium(report: tuple[Path, dict], tmp_path: Path) -> None:
    from PIL import Image

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (apt-get install chromium; `make test` installs it when root)")
    page = report[0] / "report.html"
    # every image is embedded and decodes
    uris = re.findall(r'src="data:image/png;base64,([^"]+)"', page.read_text())
    assert len(uris) >= 6 and 'src="' not in re.sub(r'src="data:image/png;base64,[^"]+"', "", page.read_text())
    for uri in uris:
        Image.open(io.BytesIO(base64.b64decode(uri))).verify()
    shot = tmp_path / "report.png"
    run = subprocess.run([chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                          "--window-size=1200,3000", "--enable-logging=stderr", "--v=0",
                          f"--screenshot={shot}", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert shot.exists(), run.stderr[-2000:]
    console = [line for line in run.stderr.splitlines() if "CONSOLE" in line]
    assert not console, console  # the page has no scripts: any console message is an error
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float64)
    assert pixels.std() > 10 and (pixels < 128).mean() > 0.01  # not blank: text and plots drawn


def test_contributions_in_points_are_bounded_and_add_up(report: tuple[Path, dict], trained: TrainResult,
                                                        sim: Path) -> None:
    """In probability points every contribution lies in [-100, 100] and a row's add up to its click
    chance minus the base's; the sentences quote such points."""
    _, summary = report
    assert 0 < summary["points"]["max_abs"] <= 100 and summary["points"]["max_additivity_error"] < 1e-9
    quoted = [float(x) for s in summary["dependence"].values() for x in re.findall(r"([+-]?\d+\.\d+) points", s)]
    assert quoted and max(abs(x) for x in quoted) <= 100
    b = trained.bundle
    frame = read_frame(sim / "features", start=datetime.fromisoformat(b.info["train_until"]))
    e = shap_values(b, sample_requests(frame, 400, seed=2), seconds=30)
    raw = b.ctr.model.predict(with_position(e.X, 1.0), raw_score=True)
    points = e.probability_values
    assert np.abs(points).max() <= 1.0
    assert np.allclose(points.sum(axis=1), 1 / (1 + np.exp(-raw)) - 1 / (1 + np.exp(-e.base)), atol=1e-12)


def test_the_report_is_added_to_the_training_run(report: tuple[Path, dict], trained: TrainResult) -> None:
    from offer_ranker.model import tracking

    files = {a.path for a in tracking.client().list_artifacts(trained.run_id, "explanation")}
    assert {"explanation/report.html", "explanation/explanation.json"} <= files
