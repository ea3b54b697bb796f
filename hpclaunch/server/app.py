"""The ASGI application: routes and JSON errors.

Starlette: a small, well-kept ASGI toolkit (the base FastAPI is built on) with no
validation layer to pull in; routes stay plain functions over the queue's named
operations. Every error is one JSON object ``{"error": "..."}``, never a traceback.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from http import HTTPStatus

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from hpclaunch.queue.health import ping
from hpclaunch.server import simx_routes
from hpclaunch.server.api_routes import api_routes
from hpclaunch.server.auth import RequireToken
from hpclaunch.server.bodies import LimitBody
from hpclaunch.server.identities import IdentityCache
from hpclaunch.server.openapi import openapi_route
from hpclaunch.server.pool import Pool
from hpclaunch.server.ui import ui_routes
from hpclaunch.server.wakeup import WakeHub
from hpclaunch.server.worker_routes import WorkerApi

log = logging.getLogger("hpclaunch.server")

_CODES = {status.value for status in HTTPStatus}
HEALTH_WAIT = 5.0  # seconds /healthz waits for the database before saying "unavailable"


def create_app(pool: Pool, *, allow_pickle: bool = False) -> Starlette:
    """The application over ``pool``; the pool is closed when the server stops."""

    async def healthz(request: Request) -> Response:
        """Liveness for a load balancer: says whether the database answers, nothing else."""
        try:
            await asyncio.wait_for(pool.run(ping, wait=0), HEALTH_WAIT)
        except Exception as exc:  # any failure is "unavailable"; the reason goes to the log
            log.warning("health check: database unavailable (%s)", type(exc).__name__)
            return JSONResponse({"status": "unavailable"}, status_code=503)
        return JSONResponse({"status": "ok"})

    # One wake-up listener per process; routes that enqueue call ``app.state.wake.notify()``
    # (SQLite has no database notifications; on PostgreSQL it is harmless).
    wake = WakeHub(pool.url)
    identities = IdentityCache(pool.url)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        wake.start()
        identities.start()
        yield
        identities.stop()
        wake.stop()
        pool.close()

    app = Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            openapi_route(),
            *WorkerApi(pool, wake).routes(),
            *api_routes(pool, allow_pickle=allow_pickle, new_work=wake.notify),
            *simx_routes.routes(pool, new_work=wake.notify),
            *ui_routes(pool),
        ],
        middleware=[
            Middleware(RequireToken, pool=pool, identities=identities),
            Middleware(LimitBody),
        ],
        exception_handlers={HTTPException: _http_error, Exception: _server_error},
        lifespan=lifespan,
    )
    app.state.wake = wake
    return app


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    messages = {404: "no such route", 405: "method not allowed on this route"}
    # A route's own detail wins; Starlette's default detail is the status phrase.
    default = HTTPStatus(exc.status_code).phrase if exc.status_code in _CODES else None
    if exc.detail and exc.detail != default:
        message = str(exc.detail)
    else:
        message = messages.get(exc.status_code, str(exc.detail))
    return JSONResponse({"error": message}, status_code=exc.status_code, headers=exc.headers)


async def _server_error(request: Request, exc: Exception) -> Response:
    log.error("internal error on %s %s: %s", request.method, request.url.path, type(exc).__name__)
    return JSONResponse({"error": "internal server error"}, status_code=500)
