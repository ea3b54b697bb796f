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
from hpclaunch.server.auth import RequireToken
from hpclaunch.server.pool import Pool
from hpclaunch.server.wakeup import WakeHub
from hpclaunch.server.worker_routes import WorkerApi

log = logging.getLogger("hpclaunch.server")

_CODES = {status.value for status in HTTPStatus}
HEALTH_WAIT = 5.0  # seconds /healthz waits for the database before saying "unavailable"


def create_app(pool: Pool) -> Starlette:
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

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        wake.start()
        yield
        wake.stop()
        pool.close()

    app = Starlette(
        routes=[Route("/healthz", healthz, methods=["GET"]), *WorkerApi(pool, wake).routes()],
        middleware=[Middleware(RequireToken, pool=pool)],
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
