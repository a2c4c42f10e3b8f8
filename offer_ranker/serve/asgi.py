"""ASGI pieces around the BentoML app: the request body limit, and a fix for BentoML's timeout
middleware that makes the service's tail latency 50-100x worse.

**Why BentoML's p99 was 100-300 ms** (measured on BentoML 1.4.39, a trivial endpoint, 1
connection): the handler itself took 1-2 ms at p99 (BentoML's access log), but every second or
two one request stalled for 80-650 ms, the stalls growing as the server ran. ``py-spy`` put the
stalls in allocations, ``gc.callbacks`` showed them to be full (generation 2) garbage
collections, and ``len(gc.get_objects())`` grew by ~20 objects per request. The cause:
``bentoml._internal.server.http.traffic.TimeoutMiddleware`` schedules
``loop.call_later(timeout, ...)`` for every request and never cancels it, so each request's
timer handle, future and copied context (OpenTelemetry span, request context) stays alive for the
whole ``traffic.timeout`` (60 s by default): at 650 requests/s, tens of thousands of objects that
every full collection walks. Two changes remove the stalls:

1. :func:`fix_timeout_middleware` cancels the timer when the request is done (same behaviour:
   a request still gets its 504 after ``timeout``);
2. the service calls ``gc.freeze()`` once loaded: a full collection over BentoML's own ~116k
   long-lived objects still took ~80 ms; frozen, they are never walked again.

Either alone is not enough (one leaves 80 ms stalls, the other growing ones); with both, the
trivial endpoint's live objects stayed at ~2,200 and no collection took over 5 ms in 10,000
requests (``benchmarks/bench_service.py`` measures the real service with and without them).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from offer_ranker.errors import OfferRankerError

Scope = dict[str, Any]


def fix_timeout_middleware() -> None:
    """Make BentoML's ``TimeoutMiddleware`` cancel its per-request timer (idempotent)."""
    from bentoml._internal.server.http import traffic
    from starlette.responses import JSONResponse

    middleware = traffic.TimeoutMiddleware
    if getattr(middleware, "_offer_ranker_fixed", False):
        return
    if not hasattr(middleware, "_set_timer_out"):
        raise OfferRankerError("BentoML's TimeoutMiddleware changed: review offer_ranker/serve/asgi.py for this version")

    async def __call__(self: Any, scope: Scope, receive: Any, send: Any) -> None:  # noqa: N807
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        timer = loop.call_later(self.timeout, self._set_timer_out, waiter)

        async def _send(message: Any) -> None:
            if not waiter.done():
                waiter.set_result(None)
            await send(message)

        task = asyncio.ensure_future(self.app(scope, receive, _send), loop=loop)
        try:
            await waiter
        except asyncio.TimeoutError:
            if task.cancel():
                response = JSONResponse({"error": f"Not able to process the request in {self.timeout} seconds"},
                                        status_code=504)
                await response(scope, receive, send)
        else:
            await task
        finally:
            timer.cancel()

    middleware.__call__ = __call__
    middleware._offer_ranker_fixed = True


class RequestGuard:
    """Check a POST before anything parses it: a JSON body (415 for another declared content
    type, which BentoML would try to parse as a form and fail on with a 500) of at most
    ``serve.max_body_bytes`` (413, whether declared or streamed)."""

    def __init__(self, app: Any, max_bytes: int | None = None) -> None:
        if max_bytes is None:
            from offer_ranker.config import serve_config_from_env

            max_bytes = serve_config_from_env().max_body_bytes
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        media_type = headers.get(b"content-type", b"application/json").split(b";")[0].strip().lower()
        if media_type not in (b"application/json", b""):
            return await _error(send, 415, f"content type {media_type.decode('latin-1')!r} is not supported: "
                                           "send the body as application/json", "content-type")
        declared = headers.get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            return await self._too_large(send)
        # read the body (it is small) so a streamed one is measured too, then replay it
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return await self.app(scope, _replay([message]), send)
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                return await self._too_large(send)
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        await self.app(scope, _replay([{"type": "http.request", "body": b"".join(chunks), "more_body": False}],
                                      receive), send)

    async def _too_large(self, send: Any) -> None:
        await _error(send, 413, f"request body larger than {self.max_bytes} bytes", "body")


class Readiness:
    """``GET /readyz`` with the reason: 200 ``{"status": "ready"}``; 200 ``degraded`` while the online
    store cannot be reached (the service answers, from what its snapshot knows); 503 ``not_ready``
    while a bundle or snapshot is missing or the online store is still loading. The service sets
    :attr:`status` once loaded; until then BentoML's own check answers."""

    status: Any = None  # () -> (status, reasons)

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("path") != "/readyz" or Readiness.status is None:
            return await self.app(scope, receive, send)
        status, reasons = Readiness.status()
        body = json.dumps({"status": status, "detail": reasons}).encode()
        await send({"type": "http.response.start", "status": 503 if status == "not_ready" else 200,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


async def _error(send: Any, status: int, message: str, field: str) -> None:
    """A JSON error in the shape of BentoML's validation errors."""
    body = json.dumps({"error": message, "detail": [{"loc": [field], "msg": message}]}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def _replay(messages: list[dict[str, Any]], then: Any = None) -> Any:
    queue = list(messages)

    async def receive() -> dict[str, Any]:
        if queue:
            return queue.pop(0)
        if then is not None:
            return await then()
        return {"type": "http.disconnect"}

    return receive
