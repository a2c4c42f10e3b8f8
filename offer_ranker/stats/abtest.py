"""A/B-test maths on per-unit sums: ratio metrics with delta-method variances, the comparison of an
arm with the control (difference, relative lift, p-value, minimum detectable effect, units needed)
and the sample-ratio-mismatch test.

A metric is a ratio of per-unit sums, R = sum(Y) / sum(X), with the delta-method variance
``var(Y - R X) / (n mean(X)^2)`` over n units. Differences are z-tests of independent arms; the
relative lift m_t / m_c - 1 has the delta-method variance ``v_t / m_c^2 + m_t^2 v_c / m_c^4``.
JSON has no NaN or infinity: undefined values are None.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import stats


def ratio(y: np.ndarray, x: np.ndarray) -> tuple[float, float]:
    """sum(y) / sum(x) over n units and its delta-method variance (NaN when undefined)."""
    n, total = y.size, x.sum()
    if n == 0 or total <= 0:
        return math.nan, math.nan
    r = y.sum() / total
    return float(r), float(np.var(y - r * x, ddof=1) / (n * (total / n) ** 2)) if n > 1 else math.nan


def compare(t: tuple[float, float, int], c: tuple[float, float, int], z: float, z_power: float,
             *, alpha: float, target_lift: float) -> dict[str, Any]:
    """Arm ``t`` against the control ``c``, each ``(value, variance of the value, units)``."""
    (mt, vt, nt), (mc, vc, nc) = t, c
    diff, var = mt - mc, vt + vc
    se = math.sqrt(var) if var >= 0 else math.nan
    p = float(2 * stats.norm.sf(abs(diff) / se)) if se > 0 else math.nan
    mde = (z + z_power) * se
    # two equal arms with the per-unit variances seen (n v), to detect a difference of m_c * target_lift
    needed = _div((z + z_power) ** 2 * (nc * vc + nt * vt), (target_lift * mc) ** 2)
    return {"difference": entry(diff, var, z) | {"p_value": _num(p)},
            "relative": entry(_div(mt, mc) - 1, _div(vt, mc**2) + _div(mt**2 * vc, mc**4), z),
            "significant": bool(p < alpha), "mde": {"absolute": _num(mde), "relative": _num(_div(mde, mc))},
            "required_per_arm": math.ceil(needed) if math.isfinite(needed) else None}


def srm(arms: dict[str, Any], srm_alpha: float) -> dict[str, Any]:
    """Chi-square goodness of fit of users per arm against the logged shares."""
    users, shares = {a: v["users"] for a, v in arms.items()}, {a: v["arm_share"] for a, v in arms.items()}
    out = {"users": users, "shares": shares, "alpha": srm_alpha, "chi2": None, "p_value": None, "mismatch": False}
    if len(arms) < 2 or not all(isinstance(s, float) for s in shares.values()):
        return out | {"note": "not tested: needs two or more arms, each with one logged arm_share"}
    total, share_sum = sum(users.values()), sum(shares.values())
    expected = {a: total * shares[a] / share_sum for a in arms}  # an arm without traffic is not in the logs
    chi2, p = stats.chisquare(list(users.values()), list(expected.values()))
    out |= {"expected": expected, "chi2": float(chi2), "p_value": float(p), "mismatch": bool(p < srm_alpha)}
    if abs(share_sum - 1) > 1e-6:
        out["note"] = f"the logged shares of the arms seen sum to {share_sum:g}: an arm may have had no users"
    return out


def entry(value: float, var: float, z: float) -> dict[str, Any]:
    se = math.sqrt(var) if var >= 0 else math.nan  # NaN >= 0 is False
    return {"value": _num(value), "se": _num(se), "ci": [_num(value - z * se), _num(value + z * se)]}


def _num(value: float) -> float | None:
    """JSON has no NaN or infinity: undefined values are null."""
    return float(value) if math.isfinite(value) else None


def _div(a: float, b: float) -> float:
    return a / b if b else math.nan
