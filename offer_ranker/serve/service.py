"""The BentoML service: ``bentoml serve`` in the project root (``bentofile.yaml`` points here).

Endpoints: ``POST /rank`` and ``POST /feedback`` (contract in :mod:`offer_ranker.serve.api`), plus
BentoML's ``/healthz``, ``/livez``, ``/readyz`` (false until the bundle and its snapshot are
loaded), ``/metrics`` (Prometheus) and ``/docs.json`` (OpenAPI).

Settings: ``OFFER_RANKER_CONFIG`` names a TOML file whose ``[serve]`` section is read
(:class:`offer_ranker.config.ServeConfig`); ``OFFER_RANKER_MODEL`` (a tag) and
``OFFER_RANKER_SNAPSHOT`` (a snapshot folder) override it. With none of them the bundle the model
registry's ``production`` alias points at is served (the newest, and /readyz says so, before any
promotion), with the snapshot it was trained with. ``bentoml build`` packages the same bundles.
"""

from __future__ import annotations

import gc
import json
import logging
import os
from typing import Any

import bentoml
from starlette.responses import Response

from offer_ranker.config import serve_config_from_env
from offer_ranker.model import registry
from offer_ranker.model import store as model_store
from offer_ranker.serve import asgi
from offer_ranker.serve.api import Feedback, FeedbackResponse, RankRequest, RankResponse, RequestError
from offer_ranker.serve.router import Router

log = logging.getLogger("offer_ranker.serve.service")
#: sub-millisecond resolution where a ranking spends its time
LATENCY_BUCKETS = (0.0001, 0.0002, 0.0003, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003, 0.005, 0.0075,
                   0.01, 0.02, 0.05, 0.1, 0.25, 1.0)
CANDIDATE_BUCKETS = (1, 2, 5, 10, 15, 20, 25, 30, 50, 100)


def json_response(payload: Any, status: int = 200) -> Response:
    body = payload.model_dump_json() if hasattr(payload, "model_dump_json") else json.dumps(payload)
    return Response(body, status_code=status, media_type="application/json")


def error_response(exc: RequestError) -> Response:
    """The same shape as BentoML's validation errors: ``error`` plus ``detail[].loc``; a
    ``Retry-After`` header when sending the request again later will do."""
    response = json_response({"error": str(exc), "detail": [{"loc": exc.field.split("."), "msg": str(exc)}]},
                             status=exc.status)
    if exc.retry_after is not None:
        response.headers["Retry-After"] = str(exc.retry_after)
    return response


def workers() -> int:
    """Worker processes: ``serve.workers``, else one per core when the online store is shared
    (Redis) and one with the memory store, whose state lives in one process."""
    try:
        cfg = serve_config_from_env()
    except Exception:  # noqa: BLE001 - a bad config is reported when the service starts
        return 1
    return cfg.worker_count(os.cpu_count() or 1)


def served_bundles() -> list[str]:
    """The BentoML tags this service serves: ``serve.model``, or every arm's model, with registry
    aliases resolved (:func:`offer_ranker.model.registry.resolve`). ``bentoml build`` packages these
    in the Bento; a Bento then serves what it holds (it has no registry of its own: the newest of its
    bundles, or the arms' tags)."""
    try:
        cfg = serve_config_from_env()
        refs = [arm.model for arm in cfg.arms.values()] or [cfg.model]
        # one that is not in the store is not declared: BentoML would refuse to start; /readyz says why
        return sorted({tag for ref in refs if model_store.exists(tag := registry.resolve(ref).tag)})
    except Exception as exc:  # noqa: BLE001 - reported by /readyz when the service starts
        log.warning("no bundle to declare to BentoML (a Bento built now would hold none): %s", exc)
        return []


class OfferRanker:
    def __init__(self) -> None:
        cfg = serve_config_from_env()
        self.engine = Router.load(cfg)
        latency = bentoml.metrics.Histogram(
            name="offer_ranker_latency_seconds", documentation="time spent per ranking, by stage",
            labelnames=["stage"], buckets=LATENCY_BUCKETS)
        self.latency = {stage: latency.labels(stage=stage) for stage in ("features", "model", "total")}
        self.candidates = bentoml.metrics.Histogram(
            name="offer_ranker_candidates", documentation="candidates per ranking request", buckets=CANDIDATE_BUCKETS)
        self.fallbacks = bentoml.metrics.Counter(
            name="offer_ranker_fallbacks_total", documentation="rankings served from priors, by reason",
            labelnames=["reason"])
        self.explored = bentoml.metrics.Counter(
            name="offer_ranker_explored_total", documentation="rankings that explored new offers")
        self.feedback_events = bentoml.metrics.Counter(
            name="offer_ranker_feedback_total", documentation="feedback events applied", labelnames=["event"])
        if cfg.latency_fixes:
            asgi.fix_timeout_middleware()
            # everything loaded so far lives as long as the process: keep it out of the collector's
            # full passes (see offer_ranker.serve.asgi: a full pass over BentoML's objects costs ~80 ms)
            gc.collect()
            gc.freeze()
        if cfg.online_store == "memory":
            log.info("online store: memory, so one worker (the state lives in this process; set "
                     "serve.online_store or OFFER_RANKER_ONLINE_STORE to a redis:// URL for one per core)")
        asgi.Readiness.status = self.status
        log.info("offer-ranker serving %s (ready=%s)", self.engine.version, self.engine.ready)

    def status(self) -> tuple[str, list[str]]:
        """``ready``, ``degraded`` (answering, from what the snapshot knows) or ``not_ready``, and why."""
        if not self.engine.ready:
            return "not_ready", list(self.engine.problems) or [self.engine.degraded or "loading"]
        if (problem := self.engine.degraded) is not None:
            return "degraded", [problem, *self.engine.notes]
        return "ready", list(self.engine.notes)

    async def __is_ready__(self) -> bool:
        return self.engine.ready

    # the responses are built here (errors with their 4xx), output_spec documents the success
    @bentoml.api(route="/rank", input_spec=RankRequest, output_spec=RankResponse)
    async def rank(self, **request: Any) -> RankResponse:
        """Order the candidate offers for one user; return the top ``k``."""
        body = RankRequest.model_construct(**request)
        try:
            result = self.engine.rank(body)
        except RequestError as exc:
            return error_response(exc)
        except Exception:  # noqa: BLE001 - a bug must still not cost the page its offers
            log.exception("ranking failed; answering with the emergency order")
            self.fallbacks.labels(reason="internal_error").inc()
            return json_response(self.engine.emergency(body, "internal_error"))
        t = result.timings
        self.latency["features"].observe(t.features)
        self.latency["model"].observe(t.model)
        self.latency["total"].observe(t.total)
        self.candidates.observe(result.candidates)
        if result.response.fallback:
            self.fallbacks.labels(reason=result.response.fallback.split(":")[0]).inc()
        if result.explored:
            self.explored.inc()
        return json_response(result.response)

    @bentoml.api(route="/feedback", input_spec=Feedback, output_spec=FeedbackResponse)
    async def feedback(self, **event: Any) -> FeedbackResponse:
        """Record a click or conversion on an offer a ranking showed; the next ranking sees it."""
        body = Feedback.model_construct(**event)
        try:
            response = self.engine.feedback(body)
        except RequestError as exc:
            return error_response(exc)
        except Exception:  # noqa: BLE001 - never a 5xx: say it was not applied
            log.exception("feedback failed")
            return json_response(FeedbackResponse(request_id=body.request_id, offer_id=body.offer_id,
                                                  event=body.event, applied=False))
        self.feedback_events.labels(event=response.event).inc()
        return json_response(response)


for _number, _tag in enumerate(served_bundles()):
    setattr(OfferRanker, f"bundle_{_number}", bentoml.models.BentoModel(_tag))
OfferRanker = bentoml.service(
    name="offer_ranker",
    workers=workers(),
    traffic={"timeout": 10},
    # every ranking goes to the prediction log (user ids hashed); the access log would repeat it
    logging={"access": {"enabled": False}},
    # no OpenTelemetry spans on the hot paths (nothing exports them by default; ~5% of a request)
    tracing={"excluded_urls": ["/rank", "/feedback"]},
)(OfferRanker)
OfferRanker.add_asgi_middleware(asgi.RequestGuard)
OfferRanker.add_asgi_middleware(asgi.Readiness)
