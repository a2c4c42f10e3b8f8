"""The latency baseline: a bare Starlette app under uvicorn that ranks with the same engine (same
validation, A/B routing, features, booster and re-ranking) as the BentoML service, without BentoML.

    OFFER_RANKER_MODEL=<tag> uvicorn benchmarks.baseline_app:app --port 3001 --no-access-log
"""

from __future__ import annotations

import gc
from contextlib import asynccontextmanager

from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from offer_ranker.config import serve_config_from_env
from offer_ranker.serve.api import RankRequest, RequestError
from offer_ranker.serve.router import Router

state: dict[str, Router] = {}


async def rank(request: Request) -> Response:
    try:
        body = RankRequest.model_validate_json(await request.body())
        result = state["engine"].rank(body)
    except ValidationError as exc:
        return JSONResponse({"error": str(exc)}, status_code=400)
    except RequestError as exc:
        return JSONResponse({"error": str(exc)}, status_code=exc.status)
    return Response(result.response.model_dump_json(), media_type="application/json")


async def readyz(request: Request) -> Response:
    return Response("\n", status_code=200 if state["engine"].ready else 503)


@asynccontextmanager
async def lifespan(app: Starlette):  # noqa: ANN201
    state["engine"] = Router.load(serve_config_from_env())
    gc.collect()
    gc.freeze()  # as the service does once loaded: no full collections over long-lived objects
    yield
    state["engine"].close()


app = Starlette(routes=[Route("/rank", rank, methods=["POST"]), Route("/readyz", readyz)], lifespan=lifespan)
