"""Off-policy estimators on a synthetic slate bandit whose true value is known."""

from __future__ import annotations

import numpy as np

from offer_ranker.stats import ope

N_ITEMS, K, EPS = 6, 3, 0.3


def _logs(rng: np.random.Generator, requests: int):
    """Logging policy: a fixed order with probability 1-EPS, else a uniform shuffle; clicks from
    attraction x examination (the item-position model); exact per-slot propensities."""
    attraction = rng.uniform(0.05, 0.6, (requests, N_ITEMS))
    exam = 1.0 / np.arange(1, N_ITEMS + 1)
    fixed = np.tile(np.arange(1, N_ITEMS + 1), (requests, 1))  # item i at slot i+1
    shuffled = np.argsort(rng.random((requests, N_ITEMS)), axis=1).argsort(axis=1) + 1
    uniform = rng.random(requests) < EPS
    position = np.where(uniform[:, None], shuffled, fixed)
    propensity = (1 - EPS) * (position == fixed) + EPS / N_ITEMS
    click = (rng.random((requests, N_ITEMS)) < attraction * exam[position - 1]).astype(float)
    # the new policy: items in reverse order (item N at the top)
    new_rank = np.tile(np.arange(N_ITEMS, 0, -1), (requests, 1))
    truth = (attraction * np.where(new_rank <= K, exam[new_rank - 1], 0)).sum(axis=1).mean()
    groups = np.full(requests, N_ITEMS)
    flat = (new_rank.ravel(), position.ravel(), click.ravel(), propensity.ravel(), groups, K)
    return flat, attraction, exam, truth


def test_estimators_are_unbiased_over_repeated_logs() -> None:
    rng = np.random.default_rng(7)
    estimates = {"ips": [], "snips": [], "dr": [], "dr_bad_model": []}
    truths = []
    for _ in range(200):
        args, attraction, exam, truth = _logs(rng, 400)
        truths.append(truth)
        p_at = attraction.reshape(-1, 1) * exam[None, :K]  # a perfect reward model
        estimates["ips"].append(ope.ips(*args).mean())
        estimates["snips"].append(ope.snips(*args))
        estimates["dr"].append(ope.dr(*args, p_click_at=p_at).mean())
        estimates["dr_bad_model"].append(ope.dr(*args, p_click_at=np.full_like(p_at, 0.2)).mean())
    truth = float(np.mean(truths))
    for name, values in estimates.items():
        values = np.asarray(values)
        se = values.std(ddof=1) / np.sqrt(len(values))
        assert abs(values.mean() - truth) < 4 * se + 0.01 * truth, (name, values.mean(), truth, se)
    # a perfect reward model leaves DR only the click noise: less variable than IPS
    assert np.std(estimates["dr"]) < np.std(estimates["ips"])


def test_logged_value_counts_top_k_clicks() -> None:
    position = np.array([1, 2, 3, 4, 1, 2])
    click = np.array([1, 0, 1, 1, 0, 1.0])
    assert ope.logged_value(position, click, np.array([4, 2]), 3).tolist() == [2.0, 1.0]
