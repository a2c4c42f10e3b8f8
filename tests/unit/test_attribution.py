"""SHAP contributions in probability points: bounded, additive and sign-preserving, where rescaling
each log-odds contribution by the row's (p - p_base) / sum blows up."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.special import expit

from offer_ranker.stats.attribution import probability_points


def test_nearly_cancelling_contributions_stay_bounded() -> None:
    # the demo data's failure: large contributions that almost cancel, and a slot residual
    phi = np.array([[3.0, -2.999, 0.5], [8.0, -8.0, 0.0]])
    residual = np.array([0.4, 0.7])
    points = probability_points(phi, -3.5, residual=residual)
    old = phi * ((expit(-3.5 + phi.sum(1) + residual) - expit(-3.5)) / phi.sum(1).clip(1e-12))[:, None]
    assert np.abs(old).max() > 1  # the old rescaling: more than 100 points
    assert np.abs(points).max() <= 1
    np.testing.assert_allclose(points.sum(1), expit(-3.5 + phi.sum(1) + residual) - expit(-3.5), atol=1e-12)


def test_known_answer_with_two_features() -> None:
    # one feature up by log 3 from p = 1/2: up alone gives 3/4 - 1/2; the other down by log 3
    phi = np.array([[np.log(3), -np.log(3)]])
    points = probability_points(phi, 0.0)
    assert points[0] == pytest.approx([0.25, -0.25])


@settings(max_examples=300, deadline=None)
@example(np.where(np.arange(35).reshape(7, 5) == 0, 5e-324, 0.0), 0.0, np.ones(7))  # a subnormal weight
@given(arrays(np.float64, (7, 5), elements=st.floats(-12, 12)), st.floats(-8, 4),
       arrays(np.float64, 7, elements=st.floats(-3, 3)))
def test_bounded_additive_and_sign_preserving(phi: np.ndarray, base: float, residual: np.ndarray) -> None:
    points = probability_points(phi, base, residual=residual)
    assert np.all(np.abs(points) <= 1 + 1e-12)
    np.testing.assert_allclose(points.sum(1), expit(base + phi.sum(1) + residual) - expit(base), atol=1e-12)
    # where the residual's side has features of its own, every feature keeps the sign of its push
    own_side = ((residual <= 0) | (phi > 0).any(1)) & ((residual >= 0) | (phi < 0).any(1))
    assert np.all(points[own_side] * phi[own_side] >= -1e-15)
