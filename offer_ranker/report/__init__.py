"""Self-contained HTML reports: Jinja2 templates with autoescape, figures embedded as PNG data URIs.

One base template (``templates/base.html.j2``) holds the page and its CSS; each report extends it
and leads with its verdict. Python passes data and figures only: every string that comes from data
or configuration is escaped by the template engine. The pages open from disk with no network and
no scripts.
"""

from __future__ import annotations

import base64
import io
import math
from functools import cache
from typing import Any

from offer_ranker.report.formats import ci, num, percent


@cache
def _environment() -> Any:
    from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

    env = Environment(loader=PackageLoader("offer_ranker.report", "templates"),
                      autoescape=select_autoescape(["html", "j2"], default_for_string=True),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(ci=ci, num=num, percent=percent)
    return env


def render(template: str, **context: Any) -> str:
    """The page ``templates/<template>`` filled with ``context`` (data and figure URIs)."""
    return _environment().get_template(template).render(**context)


def pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend (no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def figure(fig: Any) -> str:
    """A matplotlib figure as a ``data:image/png`` URI (the figure is closed)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    pyplot().close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


__all__ = ["ci", "figure", "finite", "num", "percent", "pyplot", "render"]
