"""Re-ranking: MMR, partner cap, cold-start blend, eligibility, exploration propensities."""

from __future__ import annotations

import numpy as np
import pytest

from offer_ranker.policy import rerank

# four offers: 0 and 1 near-duplicates (same category and partner), 2 and 3 different
CATS = np.array([0, 0, 1, 2])
PARTNERS = np.array([0, 0, 1, 2])
REL = np.array([1.0, 0.95, 0.6, 0.5])


def _sim() -> np.ndarray:
    return rerank.similarity(CATS, PARTNERS, np.zeros((4, 0)), (0.5, 0.5, 0.0))


def test_similarity_known_values() -> None:
    sim = rerank.similarity(np.array([0, 0, 1, -1]), np.array([3, 4, 3, -1]), np.array([[0.0], [10.0], [5.0], [np.nan]]),
                            (0.5, 0.3, 0.2))
    assert sim[0, 1] == pytest.approx(0.5 + 0 + 0.2 * 0.0)  # same category, numeric gap = whole range
    assert sim[0, 2] == pytest.approx(0 + 0.3 + 0.2 * 0.5)  # same partner, half the range apart
    assert sim[3, 0] == 0 and sim[3, 3] == 1  # unknown category/partner/number match nothing
    assert np.allclose(sim, sim.T)


def test_lambda_one_is_relevance_order() -> None:
    rng = np.random.default_rng(0)
    rel = rng.random(12)
    sim = rerank.similarity(rng.integers(0, 3, 12), rng.integers(0, 3, 12), rng.random((12, 1)))
    assert list(rerank.mmr(rel, sim, 5, lam=1.0)[0]) == list(np.argsort(-rel)[:5])


def test_lambda_zero_maximises_diversity() -> None:
    # after the first pick, the near-duplicate (sim 1) loses to the two unrelated offers
    assert list(rerank.mmr(REL, _sim(), 3, lam=0.0)[0]) == [0, 2, 3]
    # pure relevance takes the duplicate second
    assert list(rerank.mmr(REL, _sim(), 3, lam=1.0)[0]) == [0, 1, 2]


def test_mmr_known_answer_in_between() -> None:
    # λ = 0.5, relevances scaled by the max (1.0): second pick gains
    #   offer 1: 0.5·0.95 − 0.5·1.0 = −0.025;  offer 2: 0.5·0.6 − 0 = 0.30;  offer 3: 0.25
    assert list(rerank.mmr(REL, _sim(), 2, lam=0.5)[0]) == [0, 2]
    # λ = 0.95: offer 1 gains 0.95·0.95 − 0.05 = 0.8525 > offer 2's 0.57
    assert list(rerank.mmr(REL, _sim(), 2, lam=0.95)[0]) == [0, 1]


def test_partner_cap_and_ineligible_offers() -> None:
    picked = rerank.mmr(REL, _sim(), 3, lam=1.0, partners=PARTNERS, cap=1)[0]
    assert list(picked) == [0, 2, 3]  # offer 1 shares offer 0's partner
    rel = REL.copy()
    rel[0] = -np.inf  # ineligible
    assert list(rerank.mmr(rel, _sim(), 4, lam=1.0, partners=PARTNERS, cap=1)[0]) == [1, 2, 3, -1]
    # unknown partner (-1) is never capped
    assert list(rerank.mmr(REL, _sim(), 3, lam=1.0, partners=np.array([-1, -1, 1, 2]), cap=1)[0]) == [0, 1, 2]


def test_blend_follows_the_evidence() -> None:
    p_model, prior = np.array([0.3, 0.3, 0.3]), np.array([0.05, 0.05, 0.05])
    out = rerank.blend(p_model, prior, np.array([0.0, 100.0, 1e7]), half_weight=100.0)
    assert out[0] == pytest.approx(0.05)  # no evidence: the prior
    assert out[1] == pytest.approx(0.175)  # as much evidence as the half weight: halfway
    assert out[2] == pytest.approx(0.3, abs=1e-5)  # much evidence: the model
    assert rerank.blend(p_model, prior, np.array([np.nan] * 3), 100.0)[0] == pytest.approx(0.05)


def test_eligibility() -> None:
    ok = rerank.eligible(np.array([5.0, -1.0, 5.0, 5.0, np.nan]), np.array([5.0, 5.0, 0.0, 5.0, np.nan]),
                         np.array([0.0, 0.0, 0.0, 1.0, np.nan]))
    assert list(ok) == [True, False, False, False, True]  # started, not expired, not converted; unknown is fine


def _choose(rate: float, rng: np.random.Generator, draws: int = 400):
    rel = np.array([0.10, 0.09, 0.08, 0.02, 0.02, 0.02])
    sim = rerank.similarity(np.arange(6), np.arange(6), np.zeros((6, 0)))
    policy = rerank.Policy(k=2, lam=1.0, cap=1, explore_rate=rate, explore_below=100, draws=draws)
    return rerank.choose(policy, rel, sim, np.arange(6), multiplier=np.ones(6),
                         impressions=np.array([1e4, 1e4, 1e4, 0, 0, 0]), clicks=np.array([1e3, 900, 800, 0, 0, 0]),
                         prior=np.full(6, 0.05), prior_strength=20.0, rng=rng)


def test_no_exploration_is_deterministic_with_propensity_one() -> None:
    shown, propensity, explored = _choose(0.0, np.random.default_rng(0))
    assert list(shown) == [0, 1] and list(propensity) == [1.0, 1.0] and not explored


def test_exploration_propensities_match_the_policy() -> None:
    """The logged propensity of (offer, slot) is the frequency with which the policy shows it there."""
    rng = np.random.default_rng(1)
    runs = [_choose(0.3, rng) for _ in range(3000)]
    assert 0.25 < np.mean([r[2] for r in runs]) < 0.35  # explores at the configured rate
    counts: dict[tuple[int, int], int] = {}
    logged: dict[tuple[int, int], list[float]] = {}
    for shown, propensity, _ in runs:
        for slot, (offer, p) in enumerate(zip(shown, propensity)):
            counts[(slot, offer)] = counts.get((slot, offer), 0) + 1
            logged.setdefault((slot, offer), []).append(p)
    assert any(offer >= 3 for _, offer in counts)  # new offers reach the page
    for key, n in counts.items():
        if n >= 100:
            assert np.mean(logged[key]) == pytest.approx(n / len(runs), abs=0.03), key
    assert all(0 < p <= 1 for ps in logged.values() for p in ps)


def test_epsilon_greedy_propensities_are_exact() -> None:
    """ε-greedy: every placement's logged propensity equals its frequency (one value per
    placement, not an estimate), so off-policy estimates on the service's logs are unbiased."""
    rel = np.array([0.10, 0.09, 0.08, 0.02, -np.inf])  # the last offer is ineligible
    sim = rerank.similarity(np.arange(5), np.arange(5), np.zeros((5, 0)))
    policy = rerank.Policy(k=2, lam=1.0, cap=1, explore_rate=0.2, exploration="epsilon")
    rng = np.random.default_rng(4)
    runs = [rerank.choose(policy, rel, sim, np.arange(5), multiplier=np.ones(5), impressions=np.full(5, 1e4),
                          clicks=np.full(5, 100.0), prior=np.full(5, 0.05), prior_strength=20.0, rng=rng)
            for _ in range(20_000)]
    logged: dict[tuple[int, int], set[float]] = {}
    counts: dict[tuple[int, int], int] = {}
    for shown, propensity, _ in runs:
        for slot, (offer, p) in enumerate(zip(shown, propensity)):
            logged.setdefault((slot, int(offer)), set()).add(float(p))
            counts[(slot, int(offer))] = counts.get((slot, int(offer)), 0) + 1
    assert all(len(ps) == 1 for ps in logged.values())  # exact: one propensity per placement
    exact = {(0, 0): 0.8 + 0.2 / 4, (1, 1): 0.8 + 0.2 / 4, (0, 3): 0.2 / 4, (1, 2): 0.2 / 4}
    for key, p in exact.items():
        assert next(iter(logged[key])) == pytest.approx(p)
        assert counts[key] / len(runs) == pytest.approx(p, abs=4 * np.sqrt(p * (1 - p) / len(runs)))
    assert not any(offer == 4 for _, offer in counts)  # never the ineligible one
