"""The floor: the least a ranking service over HTTP does. A bare Starlette app under uvicorn that
parses the same JSON as ``/rank``, scores the candidates with a LightGBM booster of the same size
as the bundle's click model (its own file) and returns the top ``k`` as JSON. No validation, no
online features, no re-ranking, no logging: what the service is measured against.

    FLOOR_BOOSTER=model.txt python benchmarks/floor_app.py --port 3002 [--workers 2]

(Not ``uvicorn --workers N`` directly: its listening socket then lacks TCP_NODELAY, and every
response waits ~40 ms for the client's delayed ACK. This binds the socket with it, as uvicorn's
single-process mode and BentoML do, and hands it to uvicorn's workers.)
"""

from __future__ import annotations

import json
import os
import socket
import sys
from contextlib import asynccontextmanager

import lightgbm as lgb
import numpy as np
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

state: dict[str, lgb.Booster] = {}


async def rank(request: Request) -> Response:
    body = json.loads(await request.body())
    candidates = body["candidates"]
    booster = state["booster"]
    X = np.zeros((len(candidates), booster.num_feature()))  # 20 x ~60, as the service's matrix
    X[:, 0] = [c.get("features", {}).get("price", np.nan) for c in candidates]
    scores = booster.predict(X, num_threads=1)
    top = np.argsort(-scores)[:body.get("k", 3)]
    return Response(json.dumps({"offers": [
        {"offer_id": candidates[i]["offer_id"], "position": j + 1, "score": float(scores[i])}
        for j, i in enumerate(top)]}), media_type="application/json")


async def readyz(request: Request) -> Response:
    return Response("\n", status_code=200 if "booster" in state else 503)


@asynccontextmanager
async def lifespan(app: Starlette):  # noqa: ANN201
    state["booster"] = lgb.Booster(model_file=os.environ["FLOOR_BOOSTER"])
    yield


app = Starlette(routes=[Route("/rank", rank, methods=["POST"]), Route("/readyz", readyz)], lifespan=lifespan)


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # inherited by accepted connections
    sock.bind(("127.0.0.1", args.port))
    sock.listen(2048)
    os.dup2(sock.fileno(), 3)
    os.set_inheritable(3, True)
    os.execv(sys.executable, [sys.executable, "-m", "uvicorn", "benchmarks.floor_app:app", "--fd", "3",
                              "--workers", str(args.workers), "--no-access-log", "--log-level", "warning"])


if __name__ == "__main__":
    main()
