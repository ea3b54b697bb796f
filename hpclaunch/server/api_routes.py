"""The people's routes under ``/api/v1/``: tasks, batches and read-only views.

Each route checks the caller's role, turns the request into arguments (pure
``params``), and runs one named queue operation on the pool with the caller's
``Scope``: a user reaches its own and its group's rows, another group's row is
"not found", an admin reaches everything, a worker token none of it (403).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from hpclaunch.errors import DatabaseError, NotFound, UserError
from hpclaunch.queue import history, launch_rows, operations, simx, store
from hpclaunch.queue.accounts import Identity
from hpclaunch.queue.batches import NotYours, TaskSpec, parse_batch
from hpclaunch.queue.scope import Scope
from hpclaunch.server import params
from hpclaunch.server.params import ApiError
from hpclaunch.server.pool import Pool
from hpclaunch.states import TaskStatus
from hpclaunch.tasks.payloads import (
    call_payload,
    canonical_tags,
    command_payload,
    engine_payload,
)
from hpclaunch.validate import check_max_attempts, check_priority, check_seconds, check_tag

log = logging.getLogger("hpclaunch.server")

Handler = Callable[[Request], Awaitable[Response]]
TASK_KEYS = {
    "command",
    "shell",
    "cwd",
    "env",
    "call",
    "args",
    "kwargs",
    "pickle",
    "engine",
    "param",
    "tags",
    "priority",
    "max_attempts",
    "timeout",
    "expected_runtime",
    "name",
}
# A field that only one kind of task reads: with another kind it is a mistake, not ignored.
MODE_KEYS = {"command": {"shell", "cwd", "env"}, "call": {"args", "kwargs"}, "engine": {"param"}}
HIDDEN_TASK_FIELDS = ("pickled", "claim_token")


def person(request: Request) -> Scope:
    """The caller's scope; a worker token is refused every people route."""
    identity: Identity = request.state.identity
    if identity.role == "worker":
        raise ApiError(403, "a worker token may only claim and run tasks; use a user token")
    return Scope.of(identity)


def endpoint(fn: Handler) -> Handler:
    """Errors as ``{"error": ...}``: the client's with their status, the database's 503."""

    async def wrapped(request: Request) -> Response:
        try:
            return await fn(request)
        except ApiError as exc:
            return error(exc.status, exc.message)
        except NotFound as exc:
            return error(404, str(exc))
        except DatabaseError:
            return error(503, "the queue database is unavailable; try again")
        except UserError as exc:
            return error(422, str(exc))

    return wrapped


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": params.printable(message)}, status_code=status)


def public_task(task: dict[str, Any]) -> dict[str, Any]:
    """A task row for a client: no pickled bytes, no claim token."""
    for key in HIDDEN_TASK_FIELDS:
        task.pop(key, None)
    task["has_pickled_result"] = task.pop("result_pickled", None) is not None
    return task


def task_spec(body: dict[str, Any]) -> tuple[TaskSpec, bytes | None]:
    """A task from a JSON body, through the same payload builders as the CLI."""
    unknown = sorted(set(body) - TASK_KEYS)
    if unknown:
        raise ApiError(422, f"unknown field {unknown[0]!r}; known: {', '.join(sorted(TASK_KEYS))}")
    modes = [k for k in ("command", "call", "pickle", "engine") if k in body]
    if len(modes) != 1:
        raise ApiError(422, "give exactly one of: command, call, pickle or engine")
    for mode, keys in MODE_KEYS.items():
        stray = sorted(keys & set(body)) if modes != [mode] else []
        if stray:
            raise ApiError(422, f"{stray[0]} goes with {mode}, not {modes[0]}")
    name = body.get("name")
    if name is not None and (not isinstance(name, str) or len(name) > 200):
        raise ApiError(422, "name must be a string of at most 200 characters")
    tags = body.get("tags")
    if tags is not None and (not isinstance(tags, list) or len(tags) > 64):
        raise ApiError(422, "tags must be a list of tag names")
    seconds = {
        key: None if body.get(key) is None else check_seconds(body[key], name=key)
        for key in ("timeout", "expected_runtime")
    }
    pickled = None
    if modes == ["command"]:
        command, shell = body["command"], body.get("shell")
        if shell is None:
            shell = isinstance(command, str)
        if not isinstance(command, str | list) or not isinstance(shell, bool):
            raise ApiError(422, "command is a list of strings or a string; shell a boolean")
        cwd, env = body.get("cwd"), body.get("env")
        if cwd is not None and not isinstance(cwd, str):
            raise ApiError(422, "cwd must be a path (a string)")
        if env is not None and not isinstance(env, dict):
            raise ApiError(422, "env must be an object of NAME: value")
        kind, payload = "command", command_payload(command, shell=shell, cwd=cwd, env=env)
    elif modes == ["call"]:
        args, kwargs = body.get("args", []), body.get("kwargs", {})
        if not isinstance(args, list) or not isinstance(kwargs, dict):
            raise ApiError(422, "args must be a JSON list and kwargs a JSON object")
        kind, payload = "call", call_payload(body["call"], args, kwargs)
    elif modes == ["engine"]:
        if not isinstance(body["engine"], str):
            raise ApiError(422, "engine must be an engine's name (a string)")
        # The batch loader's builder: the same payload as one run of a batch file.
        kind, payload = "engine", engine_payload(body["engine"], body.get("param"), 0)
    else:
        pickled = _pickle_bytes(body["pickle"])
        kind, payload = "pickle", {"function": name}
    spec = TaskSpec(
        kind=kind,
        payload=payload,
        tags=canonical_tags([check_tag(t) for t in tags or []]),
        priority=check_priority(body.get("priority", 0)),
        max_attempts=check_max_attempts(body.get("max_attempts", 3)),
        timeout=seconds["timeout"],
        expected_runtime=seconds["expected_runtime"],
        name=name,
        engine=payload["engine"] if kind == "engine" else None,
    )
    return spec, pickled


def _pickle_bytes(value: object) -> bytes:
    if not isinstance(value, str):
        raise ApiError(422, "pickle must be the base64 of a cloudpickled (fn, args, kwargs)")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(422, "pickle is not valid base64") from None


def api_routes(
    pool: Pool, *, allow_pickle: bool = False, new_work: Callable[[], None] = lambda: None
) -> list[Route]:
    """The people's routes over ``pool``; pickle tasks only when ``allow_pickle``.

    ``new_work`` is called after tasks become pending (enqueue, retry), to wake
    long-polling workers at once where the database cannot notify (SQLite)."""

    @endpoint
    async def post_task(request: Request) -> Response:
        scope = person(request)
        spec, pickled = task_spec(params.json_object(await request.body()))
        if pickled is not None and not allow_pickle:
            raise ApiError(403, "this server refuses pickle tasks (start it with --allow-pickle)")
        owner = (scope.user, scope.group)
        ids = await pool.run(store.insert_tasks, [spec], pickled=pickled, owner=owner)
        new_work()
        return JSONResponse({"task_ids": ids, "tags": spec.tags}, status_code=201)

    @endpoint
    async def list_tasks(request: Request) -> Response:
        scope = person(request)
        q = request.query_params
        status = q.get("status")
        if status is not None and status not in {s.value for s in TaskStatus}:
            raise ApiError(400, f"status must be one of {', '.join(s.value for s in TaskStatus)}")
        tag = q.get("tag")
        if tag is not None:
            try:
                check_tag(tag)
            except UserError as exc:
                raise ApiError(400, str(exc)) from None
        batch = q.get("batch")
        size = params.limit(q.get("limit"))
        # newest=true: the newest ``limit`` tasks, oldest first, as one page (what
        # ``tasks`` shows); else a page forward from the cursor.
        newest = params.flag(q.get("newest"), "newest")
        if newest and q.get("cursor") is not None:
            raise ApiError(400, "newest=true is one page: it takes no cursor")
        rows = await pool.run(
            store.list_tasks,
            status=status,
            tag=tag,
            batch_id=None if batch is None else params.row_id(batch, "batch"),
            limit=size if newest else size + 1,
            after=params.decode_cursor(q.get("cursor")),
            scope=scope,
            newest=newest,
        )
        if newest:
            return JSONResponse({"items": rows, "next_cursor": None})
        return JSONResponse(params.page(rows, size))

    def one_task(request: Request) -> int:
        return params.row_id(request.path_params["id"], "task")

    @endpoint
    async def get_task(request: Request) -> Response:
        scope, task_id = person(request), one_task(request)

        def read(conn: Any) -> dict[str, Any]:
            task = public_task(store.get_task(conn, task_id, scope=scope))
            return {**task, "attempt_history": store.attempts(conn, task_id)}

        return JSONResponse(await pool.run(read))

    @endpoint
    async def why(request: Request) -> Response:
        scope, task_id = person(request), one_task(request)
        return JSONResponse(await pool.run(history.explain, task_id, scope=scope))

    @endpoint
    async def cancel_task(request: Request) -> Response:
        scope, task_id = person(request), one_task(request)

        def cancel(conn: Any) -> dict[str, Any]:
            canceled = operations.cancel(conn, [task_id], scope=scope)
            return {"canceled": canceled, "status": store.task_status(conn, task_id)}

        return JSONResponse(await pool.run(cancel))

    @endpoint
    async def retry_task(request: Request) -> Response:
        scope, task_id = person(request), one_task(request)
        try:
            retried = await pool.run(operations.retry, [task_id], scope=scope)
        except (NotFound, DatabaseError):
            raise
        except UserError as exc:  # not failed or canceled: the task's state says no
            raise ApiError(409, str(exc)) from None
        new_work()
        return JSONResponse({"retried": retried})

    @endpoint
    async def post_batch(request: Request) -> Response:
        scope = person(request)
        body = await request.body()
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise ApiError(400, "the batch file is not UTF-8") from None
        if not text.strip():
            raise ApiError(400, "the request body is empty: send a batch file (YAML or JSON)")
        try:
            batch = await asyncio.to_thread(parse_batch, text, source="batch")
        except RecursionError:
            raise ApiError(422, "the batch file nests too deeply") from None
        params.storable(batch.spec)
        try:
            batch_id, ids = await pool.run(simx.enqueue_batch, batch, scope)
        except NotYours as exc:
            raise ApiError(403, str(exc)) from None
        new_work()
        return JSONResponse(
            {"batch_id": batch_id, "name": batch.name, "task_ids": ids}, status_code=201
        )

    @endpoint
    async def list_batches(request: Request) -> Response:
        scope, q = person(request), request.query_params
        size = params.limit(q.get("limit"))
        after = params.decode_cursor(q.get("cursor"))
        rows = await pool.run(store.list_batches, scope=scope, after=after, limit=size + 1)
        return JSONResponse(params.page(rows, size))

    def one_batch(request: Request) -> int:
        return params.row_id(request.path_params["id"], "batch")

    @endpoint
    async def get_batch(request: Request) -> Response:
        scope, batch_id = person(request), one_batch(request)
        rows = await pool.run(store.list_batches, scope=scope, batch_id=batch_id)
        if not rows:
            raise ApiError(404, f"no batch with ID {batch_id}")
        return JSONResponse(rows[0])

    @endpoint
    async def cancel_batch(request: Request) -> Response:
        scope, batch_id = person(request), one_batch(request)
        canceled = await pool.run(operations.cancel, batch_id=batch_id, scope=scope)
        return JSONResponse({"canceled": canceled})

    @endpoint
    async def retry_batch(request: Request) -> Response:
        scope, batch_id = person(request), one_batch(request)
        retried = await pool.run(operations.retry, batch_id=batch_id, scope=scope)
        new_work()
        return JSONResponse({"retried": retried})

    @endpoint
    async def list_workers(request: Request) -> Response:
        scope, q = person(request), request.query_params
        size = params.limit(q.get("limit"))
        rows = await pool.run(
            store.list_workers,
            include_gone=params.flag(q.get("all"), "all"),
            scope=scope,
            after=params.decode_cursor(q.get("cursor")),
            limit=size + 1,
        )
        return JSONResponse(params.page(rows, size))

    @endpoint
    async def list_launches(request: Request) -> Response:
        scope, q = person(request), request.query_params
        size = params.limit(q.get("limit"))
        rows = await pool.run(
            launch_rows.list_launches,
            scope=scope,
            after=params.decode_cursor(q.get("cursor"), str),
            limit=size + 1,
        )
        return JSONResponse(params.page(rows, size))

    @endpoint
    async def get_launch(request: Request) -> Response:
        scope = person(request)
        launch_id = params.key_id(request.path_params["id"], "launch")
        rows = await pool.run(launch_rows.list_launches, launch_id=launch_id, scope=scope)
        return JSONResponse(rows[0])

    @endpoint
    async def get_stats(request: Request) -> Response:
        scope = person(request)
        return JSONResponse(await pool.run(store.stats, scope=scope))

    v1 = "/api/v1"
    return [
        Route(f"{v1}/tasks", post_task, methods=["POST"]),
        Route(f"{v1}/tasks", list_tasks, methods=["GET"]),
        Route(f"{v1}/tasks/{{id}}", get_task, methods=["GET"]),
        Route(f"{v1}/tasks/{{id}}/why", why, methods=["GET"]),
        Route(f"{v1}/tasks/{{id}}/cancel", cancel_task, methods=["POST"]),
        Route(f"{v1}/tasks/{{id}}/retry", retry_task, methods=["POST"]),
        Route(f"{v1}/batches", post_batch, methods=["POST"]),
        Route(f"{v1}/batches", list_batches, methods=["GET"]),
        Route(f"{v1}/batches/{{id}}", get_batch, methods=["GET"]),
        Route(f"{v1}/batches/{{id}}/cancel", cancel_batch, methods=["POST"]),
        Route(f"{v1}/batches/{{id}}/retry", retry_batch, methods=["POST"]),
        Route(f"{v1}/workers", list_workers, methods=["GET"]),
        Route(f"{v1}/launches", list_launches, methods=["GET"]),
        Route(f"{v1}/launches/{{id}}", get_launch, methods=["GET"]),
        Route(f"{v1}/stats", get_stats, methods=["GET"]),
    ]
