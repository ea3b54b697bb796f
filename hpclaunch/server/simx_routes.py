"""SIMX's runweb routes, answering in JSON: the seed's curl transcript works as written.

``GET /batch`` and ``/batches`` (the caller's group's batches), ``/batch/{n}`` (one
batch with all its runs), ``/worker`` and ``/workers`` (every worker the group
knows, long-gone ones too), ``/user/{name}`` (the batches that user started) and
``POST /batch/new`` (a batch-req.yaml body, read raw whatever the Content-Type:
curl's ``--data-binary`` says form-encoded). Authentication is the server's
middleware (``-u user:TOKEN`` or a Bearer token); a worker token may not use
these routes, and a batch's user/group must be the caller's own unless it is an
admin. The work is the queue's named operations (``queue/simx.py``): no SQL here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from hpclaunch.errors import NotFound, UserError
from hpclaunch.queue import simx
from hpclaunch.queue.accounts import Identity, check_name
from hpclaunch.queue.batches import NotYours, parse_batch
from hpclaunch.queue.scope import Scope
from hpclaunch.server.pool import Pool

SOURCE = "batch-req.yaml"


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def caller_of(request: Request) -> Scope | None:
    """The caller as the queue sees it; None for a worker token (it only claims and runs)."""
    identity: Identity = request.scope["state"]["identity"]
    if identity.role == "worker":
        return None
    return Scope.of(identity)


def routes(pool: Pool, *, new_work: Callable[[], None] = lambda: None) -> list[Route]:
    """The runweb routes over ``pool`` (added to the app by ``app.create_app``);
    ``new_work`` wakes long-polling workers after an enqueue."""

    async def answer(request: Request, fn: Any, *args: Any, **kwargs: Any) -> Response:
        caller = caller_of(request)
        if caller is None:
            return error(403, "a worker token cannot use the SIMX routes; use a user token")
        try:
            return JSONResponse(await pool.run(fn, caller, *args, **kwargs))
        except NotFound as exc:
            return error(404, str(exc))

    async def batches(request: Request) -> Response:
        return await answer(request, simx.visible_batches)

    async def batch(request: Request) -> Response:
        text = request.path_params["n"]
        if not (text.isascii() and text.isdigit()) or int(text) > 2**63 - 1:
            return error(404, f"no batch {text[:40]}")
        return await answer(request, simx.visible_batch, int(text))

    async def workers(request: Request) -> Response:
        return await answer(request, simx.visible_workers)

    async def user(request: Request) -> Response:
        name = request.path_params["name"]
        try:
            check_name(name, what="user")
        except UserError:
            # No account has such a name (a NUL would be a database error, not an answer).
            if caller_of(request) is not None:
                return error(404, "no such user: names are letters, digits, '_', '.' or '-'")
        return await answer(request, simx.visible_batches, user=name)

    async def new_batch(request: Request) -> Response:
        caller = caller_of(request)
        if caller is None:
            return error(403, "a worker token cannot enqueue batches; use a user token")
        # The raw body whatever its Content-Type (curl --data-binary says form
        # encoding); server.bodies bounds its size for every route.
        body = await request.body()
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            return error(400, "the batch file is not UTF-8 text")
        try:
            # Parsing 100,000 runs takes a while: off the event loop.
            parsed = await asyncio.to_thread(parse_batch, text, source=SOURCE)
            batch_id, ids = await pool.run(simx.enqueue_batch, parsed, caller)
            new_work()
        except NotYours as exc:
            return error(403, str(exc))
        except UserError as exc:
            return error(400, str(exc))
        engine = parsed.tasks[0].engine if parsed.tasks else None
        reply = {
            "id": batch_id,
            "name": parsed.name,
            "engine": engine,
            "n_runs": len(ids),
            "first_task_id": ids[0],
            "last_task_id": ids[-1],
            "warnings": list(parsed.warnings),
        }
        return JSONResponse(reply, status_code=201, headers={"location": f"/batch/{batch_id}"})

    return [
        Route("/batch", batches, methods=["GET"]),
        Route("/batches", batches, methods=["GET"]),
        Route("/batch/new", new_batch, methods=["POST"]),
        Route("/batch/{n}", batch, methods=["GET"]),
        Route("/worker", workers, methods=["GET"]),
        Route("/workers", workers, methods=["GET"]),
        Route("/user/{name}", user, methods=["GET"]),
    ]
