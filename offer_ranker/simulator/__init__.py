"""A simulated offer marketplace that writes raw logs (DESIGN.md §1) with known ground truth.

Three parts, kept apart so the same world can also serve as live traffic for a real ranking
model (the closed loop):

* the world — every latent parameter, built deterministically from a
  :class:`~offer_ranker.config.SimulateConfig` (:class:`World`): the market's vocabularies and
  effects (:mod:`.market`), the offers (:mod:`.offers`), the users (:mod:`.users`) and when they
  visit (:mod:`.schedule`); the truth functions and the user × offer history (:mod:`.truth`);
* a policy — :func:`logging_policy` orders a request's candidates (:mod:`.eligibility`) by noisy
  popularity, or uniformly at random with probability ``uniform_share``, and returns the exact
  propensity of every shown slot. Anything with the :data:`Policy` signature can replace it
  (:mod:`.policy`);
* the traffic — :func:`run_days` runs the days: candidates per request, the policy, clicks and
  conversions drawn from the truth, yielded as chunks (:class:`LogChunk`, at most a day each)
  (:mod:`.traffic`). :func:`simulate` (:mod:`.simulation`) writes them as Parquet
  (:mod:`.writer`).

Every stage draws from its own random stream (:mod:`.streams`): the same seed gives the same
files. How many users make how many impressions: :mod:`.schedule`; memory: :mod:`.traffic`.
"""

from offer_ranker.simulator.eligibility import Batch, candidates
from offer_ranker.simulator.market import (
    CATEGORIES,
    CATEGORY_PRICE,
    COUNTRIES,
    DAY,
    DEVICES,
    MAX_SLATE,
    MIN_SLATE,
    SURFACES,
    US,
)
from offer_ranker.simulator.policy import (
    Policy,
    PolicyForDay,
    Slate,
    logging_policy,
    mixture_policy,
    popularity_scores,
)
from offer_ranker.simulator.schedule import requests_per_user, users_for_impressions
from offer_ranker.simulator.simulation import SimulationResult, simulate
from offer_ranker.simulator.traffic import LogChunk, run_days, simulate_day
from offer_ranker.simulator.truth import (
    CONVERTED,
    FATIGUE,
    FATIGUE_CAP,
    INTEREST,
    History,
    attraction_logit,
    conversion_probability,
    examination,
)
from offer_ranker.simulator.world import World
from offer_ranker.simulator.writer import LogWriter, offer_ids, offers_table, user_ids, users_table

__all__ = [
    "CATEGORIES", "CATEGORY_PRICE", "CONVERTED", "COUNTRIES", "DAY", "DEVICES", "FATIGUE", "FATIGUE_CAP",
    "INTEREST", "MAX_SLATE", "MIN_SLATE", "SURFACES", "US",
    "Batch", "History", "LogChunk", "LogWriter", "Policy", "PolicyForDay", "SimulationResult", "Slate", "World",
    "attraction_logit", "candidates", "conversion_probability", "examination", "logging_policy",
    "mixture_policy", "offer_ids", "offers_table", "popularity_scores", "requests_per_user", "run_days",
    "simulate", "simulate_day", "user_ids", "users_for_impressions", "users_table",
]
