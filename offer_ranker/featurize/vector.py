"""The online feature vector of one request: the values ``train.parquet`` holds for the same request
at the same time, from the state of its user and candidate offers, mirroring ``sql/features/*.sql``
group by group (``tests/data/test_online_parity.py`` replays a day and compares).

The state comes from an online store (:mod:`.online`); everything here is arithmetic over arrays
of the request's n candidates, so any store that produces a :class:`RequestState` gives the same
features.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from offer_ranker.features import IMPRESSION_PREFIX
from offer_ranker.featurize.snapshot import NULL_TS, Manifest, Snapshot, smoothed


@dataclass
class RequestState:
    """What is known at request time ``t`` (µs) about the user and the n candidates.

    offers : (n,) the candidates' rows in the snapshot's offer arrays (the unknown row if new)
    offer_state : (n, 6) the candidates' counts, ``snapshot.OFFER_STATE`` order
    user_counts : requests, impressions, clicks, conversions; last_visit, last_click, signup : µs or NULL_TS
    user_extras : the user's pass-through attributes (float, NaN or str, None when unknown)
    pair_hit : (k, n) whether the user's k user×offer entries are each candidate
    pair_category, pair_partner : (k,) category and partner codes of those entries' offers
    pair_counts : (3, k) impressions, clicks, conversions; pair_seen : (k,) last impression, µs
    """

    t: int
    ts: datetime
    offers: np.ndarray
    offer_state: np.ndarray
    user_counts: tuple[float, float, float, float]
    last_visit: int
    last_click: int
    signup: int
    user_extras: dict[str, Any]
    pair_hit: np.ndarray
    pair_category: np.ndarray
    pair_partner: np.ndarray
    pair_counts: np.ndarray
    pair_seen: np.ndarray


def feature_columns(s: RequestState, snap: Snapshot, manifest: Manifest, context: Mapping[str, Any],
                    candidates: list[Mapping[str, Any]]) -> dict[str, np.ndarray]:
    """``{name: array (n,)}`` in manifest order: numeric float64 (NaN for NULL), categorical object
    arrays of str / None."""
    n, o = len(s.offers), s.offers
    categories = [snap.category_names[c] for c in snap.offer_category[o]]
    partners = [snap.partner_names[p] for p in snap.offer_partner[o]]
    priors = np.array([snap.offer_priors.get(c or "", snap.offer_priors[""]) for c in categories],
                      dtype=float).reshape(n, 4).T
    f = offer_history(s, snap, priors)
    f |= user_history(s, snap, n)
    f |= pairs(s, snap.offer_category[o], snap.offer_partner[o], priors[:2], f["user_clicks"][0] if n else 0.0)
    f |= lifecycle_and_context(s, snap, categories, partners, context)
    f |= listwise(f["offer_payout"], f["offer_ctr"])
    f |= passthrough(s, snap, manifest, context, candidates)
    f |= crosses(f, manifest)
    missing = [name for name in manifest.names if name not in f]
    if missing:
        raise KeyError(f"the online store does not compute features {missing} of the manifest")
    return {name: f[name] for name in manifest.names}


def offer_history(s: RequestState, snap: Snapshot, priors: np.ndarray) -> dict[str, np.ndarray]:
    """offer_history.sql: counts, decayed counts, smoothed rates; ``priors`` (4, n) ctr and cvr mean
    and strength of each candidate's category."""
    imp, clk, conv, expected, imp_scaled, clk_scaled = s.offer_state.T
    decay = math.exp((snap.t_ref - s.t / 1e6) / snap.tau)
    ctr_m, ctr_s, cvr_m, cvr_s = priors
    return {"offer_impressions": imp, "offer_clicks": clk, "offer_conversions": conv,
            "offer_impressions_recent": imp_scaled * decay, "offer_clicks_recent": clk_scaled * decay,
            "offer_ctr": smoothed(clk, imp, ctr_m, ctr_s),
            "offer_ctr_recent": smoothed(clk_scaled * decay, imp_scaled * decay, ctr_m, ctr_s),
            "offer_cvr": smoothed(conv, clk, cvr_m, cvr_s),
            "offer_coec": (clk + ctr_m * ctr_s) / (expected + ctr_m * ctr_s)}


def user_history(s: RequestState, snap: Snapshot, n: int) -> dict[str, np.ndarray]:
    """user_history.sql: the user's counts and recency, the same for every candidate."""
    req, imp, clk, conv = s.user_counts
    user = {"user_requests": req, "user_impressions": imp, "user_clicks": clk, "user_conversions": conv,
            "user_ctr": smoothed(clk, imp, *snap.user_prior), "user_is_new": float(req == 0),
            "user_hours_since_last_visit": hours(s.t, s.last_visit),
            "user_hours_since_last_click": hours(s.t, s.last_click),
            "user_days_since_signup": hours(s.t, s.signup) / 24}
    return {k: np.full(n, v, dtype=float) for k, v in user.items()}


def pairs(s: RequestState, category: np.ndarray, partner: np.ndarray, ctr_priors: np.ndarray,
          user_clicks: float) -> dict[str, np.ndarray]:
    """user_offer.sql, user_category.sql, user_partner.sql: the user's offers summed per candidate
    offer, category and partner (user × category counts are those of the category's offers)."""
    n = len(category)
    uo_imp, uo_clk, uo_conv = s.pair_counts @ s.pair_hit
    uo_seen = np.where(s.pair_hit, s.pair_seen[:, None], NULL_TS).max(axis=0, initial=NULL_TS)
    uc_imp, uc_clk = _sum_by(s.pair_category, category, s.pair_counts[:2])
    up_imp, up_clk, up_conv = _sum_by(s.pair_partner, partner, s.pair_counts)
    share = uc_clk / user_clicks if user_clicks > 0 else np.full(n, np.nan)
    return {"uc_impressions": uc_imp, "uc_clicks": uc_clk, "uc_ctr": smoothed(uc_clk, uc_imp, *ctr_priors),
            "uc_click_share": share, "up_impressions": up_imp, "up_clicks": up_clk, "up_conversions": up_conv,
            "uo_impressions": uo_imp, "uo_clicks": uo_clk, "uo_conversions": uo_conv,
            "uo_hours_since_seen": hours(s.t, uo_seen)}


def lifecycle_and_context(s: RequestState, snap: Snapshot, categories: list[str | None], partners: list[str | None],
                          context: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """offer_lifecycle.sql, context.sql and content.sql (the content prior of the snapshot's day)."""
    n, o, ts = len(s.offers), s.offers, s.ts
    f = {"offer_age_hours": hours(s.t, snap.offer_start[o]), "offer_hours_to_expiry": hours(snap.offer_end[o], s.t),
         "offer_payout": snap.offer_payout[o], "offer_content_ctr": snap.offer_content_ctr[o],
         "offer_category": np.array(categories, dtype=object),
         "offer_partner": np.array(partners, dtype=object),
         "ctx_hour": np.full(n, float(ts.hour)), "ctx_weekday": np.full(n, float(ts.isoweekday() % 7))}
    for name in ("device", "country", "surface"):
        value = context.get(name)
        f[f"ctx_{name}"] = np.array([None if value is None else str(value)] * n, dtype=object)
    return f


def listwise(payout: np.ndarray, ctr: np.ndarray) -> dict[str, np.ndarray]:
    """listwise.sql: avg ignores NULLs; nullif(avg, 0)."""
    return {"lw_candidates": np.full(len(payout), float(len(payout))), "lw_payout_rel": payout / _avg(payout),
            "lw_ctr_rel": ctr / _avg(ctr)}


def passthrough(s: RequestState, snap: Snapshot, manifest: Manifest, context: Mapping[str, Any],
                candidates: list[Mapping[str, Any]]) -> dict[str, np.ndarray]:
    """passthrough.sql: offer and user columns from the snapshot; request columns from the candidate
    (or the context), which carry the raw column name."""
    n, f = len(s.offers), {}
    for name, entity in manifest.passthrough:
        if entity == "offer":
            f[name] = snap.offer_extras[name][s.offers]
        elif entity == "user":
            value = s.user_extras.get(name)
            f[name] = (np.full(n, np.nan if value is None else value, dtype=float) if manifest.dtypes[name] == "numeric"
                       else np.full(n, value, dtype=object))
        else:
            raw = name.removeprefix(IMPRESSION_PREFIX)
            values = [(c.get("features") or {}).get(raw, context.get(raw)) for c in candidates]
            f[name] = (np.array([np.nan if v is None else float(v) for v in values])
                       if manifest.dtypes[name] == "numeric"
                       else np.array([None if v is None else str(v) for v in values], dtype=object))
    return f


def crosses(f: Mapping[str, np.ndarray], manifest: Manifest) -> dict[str, np.ndarray]:
    """crosses.sql: CAST(segment AS VARCHAR) || ' × ' || category."""
    return {name: np.array([None if a is None or b is None else f"{a} × {b}"
                            for a, b in zip(_texts(f[segment]), f[category])], dtype=object)
            for name, (segment, category) in manifest.crosses}


def hours(later: int | np.ndarray, earlier: int | np.ndarray) -> Any:
    """``hours_between(earlier, later)`` of setup.sql; NaN where either is ``NULL_TS``."""
    later, earlier = np.asarray(later), np.asarray(earlier)
    null = (later == NULL_TS) | (earlier == NULL_TS)
    return np.where(null, np.nan, (np.where(null, 0, later) - np.where(null, 0, earlier)) / 3.6e9)


def _sum_by(groups: np.ndarray, wanted: np.ndarray, values: np.ndarray) -> np.ndarray:
    """(m, n): for each code of ``wanted`` (n,), the sums of ``values`` (m, k) over the rows whose
    code in ``groups`` (k,) equals it; code -1 (NULL) matches nothing."""
    return values @ ((groups[:, None] == wanted[None, :]) & (wanted >= 0)[None, :])


def _texts(values: np.ndarray) -> list[str | None]:
    """``CAST(x AS VARCHAR)`` per value: text as it is, a float as DuckDB writes a DOUBLE (Python's
    shortest repr, e.g. '13.0'), None for NULL / NaN."""
    if values.dtype != object:
        return [None if math.isnan(v) else repr(float(v)) for v in values.tolist()]
    return [None if v is None else str(v) for v in values.tolist()]


def _avg(x: np.ndarray) -> float:
    """``nullif(avg(x), 0)``: the mean of the non-NaN values; NaN if none or if it is 0."""
    ok = ~np.isnan(x)
    mean = x[ok].sum() / ok.sum() if ok.any() else np.nan
    return np.nan if mean == 0 else mean
