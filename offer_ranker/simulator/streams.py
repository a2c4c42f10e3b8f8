"""Random streams: one independent generator per (seed, stream, index…), and centred effects.

Every stage draws from its own stream, so no draw depends on how the work is chunked or on what
another stage drew: worlds of any size share the market structure (:data:`MARKET`), and a
policy that draws more or less does not move the candidates or outcomes of later requests.
The stream numbers are part of the output: append new streams, never renumber.
"""

from __future__ import annotations

import numpy as np

OFFERS, USERS, SCHEDULE, CANDIDATES, POLICY, OUTCOMES, POPULARITY, MARKET, TEXT, SESSIONS = range(10)


def stage_rng(seed: int, stage: int, *index: int) -> np.random.Generator:
    """An independent generator per (seed, stage, index…): draws never depend on chunking."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(stage, *index)))


def centred_effects(rng: np.random.Generator, sd: float, shape) -> np.ndarray:
    """Random effects N(0, ``sd``) of ``shape``, centred to mean 0, so the overall CTR level
    hardly depends on the seed."""
    x = rng.normal(0, sd, shape)
    return x - x.mean()
