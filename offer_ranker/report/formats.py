"""How numbers read in the reports and the CLI: the one formatter of a value with its interval."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any


def num(value: Any, digits: int = 3, *, scale: float = 1.0, significant: bool = False) -> str:
    """``value × scale`` with ``digits`` decimals (or significant digits), ``-`` when missing."""
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return "-"
    return f"{value * scale:.{digits}g}" if significant else f"{value * scale:.{digits}f}"


def percent(value: Any, digits: int = 1, *, signed: bool = True) -> str:
    """A share as a percentage (``+4.2%``), ``-`` when missing."""
    if value is None or not isinstance(value, (int, float)) or not math.isfinite(value):
        return "-"
    return f"{value:{'+' if signed else ''}.{digits}%}"


def ci(entry: Mapping[str, Any] | None, digits: int = 3, *, scale: float = 1.0, significant: bool = False,
       as_percent: bool = False) -> str:
    """``value [lo, hi]`` of an entry ``{"value", "ci"?}``; ``-`` when it has no finite value.

    digits, scale, significant : as :func:`num`; as_percent : signed percentages instead
    """
    if not entry:
        return "-"

    def one(v: Any) -> str:
        return percent(v) if as_percent else num(v, digits, scale=scale, significant=significant)

    text = one(entry.get("value"))
    if text == "-":
        return text
    interval = entry.get("ci")
    if interval and len(interval) == 2 and all(one(v) != "-" for v in interval):
        text += f" [{one(interval[0])}, {one(interval[1])}]"
    return text
