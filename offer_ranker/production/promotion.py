"""Promotion with a gate (``offer-ranker models promote``), and rollback.

Before an alias moves to a candidate, the candidate and the bundle the alias points at now are
compared on the same held-out window (:func:`offer_ranker.evaluation.compare.compare`). A candidate
that is significantly worse (the whole 95% CI of the difference below 0) is refused unless forced;
so is one the comparison cannot judge (no impressions after both training windows, or features the
incumbent cannot read), since a gate that cannot look must not wave through. The first promotion
of an alias has nothing to compare with and goes through.

The comparison, the decision and its reason are recorded on the candidate's MLflow run (tags
``gate.*``, metrics ``gate.*``, artifact ``gate/comparison.json``).
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from offer_ranker.config import Config
from offer_ranker.evaluation.compare import compare
from offer_ranker.model import registry, store, tracking

log = logging.getLogger(__name__)


@dataclass
class Decision:
    """What ``promote`` did: ``promoted``, and why; the comparison when there was one."""

    tag: str
    alias: str
    promoted: bool
    reason: str
    incumbent: str | None = None
    version: str | None = None
    comparison: dict[str, Any] | None = field(default=None, repr=False)


def promote(tag: str, alias: str = registry.PRODUCTION, cfg: Config | None = None, *,
            features: Path | None = None, force: bool = False) -> Decision:
    """Move ``alias`` to bundle ``tag`` if the gate lets it (or ``force``); ``features``: the folder
    whose later impressions judge (default: the candidate's own training folder)."""
    cfg = cfg or Config()
    candidate = store.load(tag)
    incumbent_tag = registry.alias_tag(alias)
    decision = Decision(candidate.version, alias, promoted=False, reason="", incumbent=incumbent_tag)
    if incumbent_tag is None:
        decision.promoted, decision.reason = True, f"the first model under '{alias}': nothing to compare with"
    elif incumbent_tag == candidate.version:
        decision.reason = f"'{alias}' already points at {candidate.version}"
        return decision
    else:
        folder = features or Path(candidate.info.get("features_dir", ""))
        try:
            decision.comparison = compare(candidate, store.load(incumbent_tag), folder, cfg)
        except Exception as exc:  # noqa: BLE001 - the gate cannot judge: say why
            decision.reason = f"the gate could not compare with {incumbent_tag}: {exc}"
        else:
            decision.reason = _judgement(decision.comparison)
        judged_worse = decision.comparison is None or decision.comparison["outcome"] == "worse"
        decision.promoted = not judged_worse or force
        if judged_worse and force:
            decision.reason += " (promoted anyway: --force)"
    if decision.promoted:
        decision.version = registry.promote(candidate, alias, reason=decision.reason)
    _record(candidate, decision, force)
    return decision


def _judgement(c: dict[str, Any]) -> str:
    d = c["difference"]
    gap = (f"{c['metric']} {c['candidate']['value']:.4f} vs {c['incumbent']['value']:.4f}, difference "
           f"{d['value']:+.4f} [{d['ci'][0]:+.4f}, {d['ci'][1]:+.4f}] (95% CI by request, "
           f"{c['window']['requests']:,} requests from {c['window']['from'][:16]})")
    verdict = {"worse": "significantly worse than", "better": "significantly better than",
               "tie": "not significantly different from"}[c["outcome"]]
    return f"{verdict} {c['incumbent']['model']}: {gap}"


def _record(candidate: Any, decision: Decision, force: bool) -> None:
    """The gate's decision on the candidate's run (logged and skipped if there is none)."""
    outcome = "promoted" if decision.promoted else "refused"
    c = decision.comparison or {}
    metrics = {}
    if c:
        metrics = {"gate.difference": c["difference"]["value"], "gate.ci_low": c["difference"]["ci"][0],
                   "gate.ci_high": c["difference"]["ci"][1], "gate.candidate": c["candidate"]["value"],
                   "gate.incumbent": c["incumbent"]["value"]}
    try:
        client = tracking.client()
        run_id = tracking.run_of(client, candidate)
        if run_id is None:
            return
        gate = f"gate.{decision.alias}"
        tracking.log_values(client, run_id, metrics=metrics, tags={
            f"{gate}.decision": outcome, f"{gate}.reason": decision.reason, f"{gate}.incumbent": decision.incumbent,
            f"{gate}.forced": str(force).lower()})
        if c:
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "comparison.json"
                path.write_text(json.dumps(c, indent=2))
                client.log_artifact(run_id, str(path), f"gate/{decision.alias}")
    except Exception as exc:  # noqa: BLE001 - the decision stands; its record is a convenience
        log.warning("could not record the gate's decision in MLflow: %s", exc)
