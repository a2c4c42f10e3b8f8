"""Metric functions against hand-computed toy cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from offer_ranker.stats import metrics as M


def test_ranks_descending_within_each_request_with_tiebreak() -> None:
    score = np.array([0.1, 0.9, 0.5, 0.3, 0.3])
    groups = np.array([3, 2])
    assert M.ranks(score, groups).tolist() == [3, 1, 2, 1, 2]
    assert M.ranks(score, groups, tiebreak=np.array([0, 0, 0, 9, 1])).tolist() == [3, 1, 2, 2, 1]


def test_ndcg_by_hand() -> None:
    # one request, gains 3, 0, 1 in row order; the scores put them in the order 1, 3, 0
    gains = np.array([3.0, 0.0, 1.0])
    score = np.array([0.2, 0.1, 0.9])
    dcg = 1 / math.log2(2) + 3 / math.log2(3)
    ideal = 3 / math.log2(2) + 1 / math.log2(3)
    got = M.ndcg_per_request(score, gains, np.array([3]), 3)
    assert got[0] == pytest.approx(dcg / ideal)
    assert M.ndcg_per_request(score, gains, np.array([3]), 1)[0] == pytest.approx(1 / 3)
    # a request without any gain is undefined, not zero
    assert np.isnan(M.ndcg_per_request(score, np.zeros(3), np.array([3]), 3)[0])


def test_mrr_and_precision_by_hand() -> None:
    groups = np.array([3, 2])
    rank = np.array([1, 2, 3, 2, 1])
    relevant = np.array([0, 0, 1, 1, 0])
    assert M.mrr_per_request(rank, relevant, groups).tolist() == pytest.approx([1 / 3, 1 / 2])
    assert M.precision_per_request(rank, relevant, groups, 1).tolist() == [0.0, 0.0]
    assert M.precision_per_request(rank, relevant, groups, 3).tolist() == pytest.approx([1 / 3, 1 / 2])
    assert np.isnan(M.mrr_per_request(rank, np.zeros(5), groups)).all()


def test_auc_logloss_ece_by_hand() -> None:
    assert M.auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])) == pytest.approx(0.75)
    assert M.log_loss(np.array([0.5, 0.5]), np.array([0, 1])) == pytest.approx(math.log(2))
    # two bins: predictions 0.1 (observed 0/2) and 0.9 (observed 1/2): |0.1-0| and |0.9-0.5|, weighted equally
    p = np.array([0.1, 0.1, 0.9, 0.9])
    y = np.array([0, 0, 1, 0])
    assert M.ece(p, y, bins=2) == pytest.approx((0.1 + 0.4) / 2)
    assert M.ece(np.full(1000, 0.3), (np.arange(1000) % 10 < 3).astype(float), bins=10) == pytest.approx(0.0, abs=0.1)


def test_gini_of_exposure() -> None:
    assert M.gini(np.array([5, 5, 5, 5])) == pytest.approx(0.0)
    assert M.gini(np.array([0, 0, 0, 12])) == pytest.approx(0.75)  # (n-1)/n for one offer taking all


def test_bootstrap_ci_covers_the_mean_and_shrinks_with_data() -> None:
    rng = np.random.default_rng(0)
    small, big = rng.normal(1.0, 1.0, 100), rng.normal(1.0, 1.0, 10_000)
    lo_s, hi_s = M.bootstrap_ci(small, rng.integers(0, 100, (500, 100)))
    lo_b, hi_b = M.bootstrap_ci(big, rng.integers(0, 10_000, (500, 10_000)))
    assert lo_s < small.mean() < hi_s and lo_b < big.mean() < hi_b
    assert (hi_b - lo_b) < (hi_s - lo_s) / 5
