"""The worker routes: the worker's ``QueueSession`` over HTTP, on the server's side.

Each route runs the queue's named operations (``queue.claims``,
``queue.replies``, ``queue.operations``) through the pool: no SQL here. The
client is ``queue.http_session``; the bodies are ``queue.wire``'s shapes.

* Roles: only ``worker`` and ``admin`` tokens. A worker token claims (and
  watches) only tasks owned by its user, or its group's with share-group; an
  admin token, like the database's own administrator, all of them. A worker
  row may be used only by the token that registered it (else 404).
* Versions: every request carries ``X-Hpclaunch-Protocol``; an incompatible
  one gets 426 and one line saying which versions are needed.
* Long-poll: ``POST /api/v1/claim`` tries a claim; if nothing came, it waits on
  the process's one ``WakeHub`` (never a database connection per waiter) until
  a wake or the requested wait, and tries again. A client that disconnects
  stops its wait.
* Retries: claim, finish and release carry the client's request ID
  (``queue.replies`` records the answers in the database).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from collections.abc import Callable, Hashable
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from hpclaunch import __version__
from hpclaunch.errors import UserError
from hpclaunch.queue import claims, estimates, operations, replies, retry, wire
from hpclaunch.queue.accounts import Identity
from hpclaunch.queue.driver import Connection
from hpclaunch.queue.session import WorkerInfo
from hpclaunch.server.pool import Pool
from hpclaunch.server.wakeup import WakeHub
from hpclaunch.validate import check_engine

log = logging.getLogger("hpclaunch.server")

WORKER_ROLES = frozenset({"worker", "admin"})
MAX_BODY = 32 * 1024 * 1024  # a finish carries the result and output tails
EXPIRE_EVERY = 600.0  # seconds between deletions of old recorded answers
MAX_REASON = 64
MAX_TAG_SETS = 256  # a worker has at most 8 tags: 2**8 subsets


class WorkerApi:
    """The routes' shared state: the pool, the wake hub, small caches."""

    def __init__(self, pool: Pool, hub: WakeHub):
        self.pool = pool
        self.hub = hub
        self.owners: dict[int, int | None] = {}  # worker ID -> registering token ID
        self.estimates: dict[tuple[str, ...], tuple[float, dict[str, float]]] = {}
        self.last_expire = float("-inf")

    def routes(self) -> list[Route]:
        post = ["POST"]
        return [
            Route("/api/v1/workers", self.register, methods=post),
            Route("/api/v1/claim", self.claim, methods=post),
            Route("/api/v1/tasks/{task_id:int}/heartbeat", self.task_heartbeat, methods=post),
            Route("/api/v1/tasks/{task_id:int}/finish", self.finish, methods=post),
            Route("/api/v1/tasks/{task_id:int}/release", self.release, methods=post),
            Route("/api/v1/workers/{worker_id:int}/exit", self.exit, methods=post),
            Route("/api/v1/workers/{worker_id:int}/heartbeat", self.heartbeat, methods=post),
            Route("/api/v1/workers/{worker_id:int}/watch", self.watch, methods=post),
            Route("/api/v1/workers/{worker_id:int}/reap", self.reap, methods=post),
            Route("/api/v1/workers/{worker_id:int}/too-long", self.too_long, methods=post),
            Route(
                "/api/v1/workers/{worker_id:int}/release-orphans",
                self.release_orphans,
                methods=post,
            ),
        ]

    # --- the routes ------------------------------------------------------------
    async def register(self, request: Request) -> Response:
        identity, body = await self._enter(request)
        info = _info(body)
        worker_id = await self._run(
            claims.register_worker,
            host=info.host[:255],
            pid=info.pid,
            tags=info.tags,
            mode=info.mode,
            lease=info.lease,
            launch_id=info.launch_id,
            version=info.version[:32],
            scheduler=info.scheduler,
            job_id=info.job_id,
            array_job_id=info.array_job_id,
            array_index=info.array_index,
            token_id=identity.token_id,
            engines=",".join(sorted(set(info.engines))) or None,
        )
        self.owners[worker_id] = identity.token_id
        return JSONResponse({"worker": worker_id}, status_code=201)

    async def claim(self, request: Request) -> Response:
        identity, body = await self._enter(request)
        worker_id = _int(body, "worker")
        await self._own(identity, worker_id)
        info = _info(body.get("info"))
        request_id = _request_id(body)
        wait = min(max(_number(body, "wait", 0.0), 0.0), wire.MAX_WAIT)
        remaining = _optional_number(body, "remaining")
        watching = body.get("watching")
        if watching is not None and (isinstance(watching, bool) or not isinstance(watching, int)):
            raise HTTPException(422, "watching: a task ID or null")
        known = await self._estimates(info) if info.fit_deadline else {}

        def make(conn: Connection) -> claims.Claimer:
            return _claimer(conn, worker_id, info, identity, known)

        self._maybe_expire()
        key = _wake_key(info, identity)
        started = time.monotonic()
        end = started + wait
        gone: asyncio.Future[Any] | None = None  # watches the client once it must wait
        woken = False  # this request holds a wake no claim has used yet (see ``wakeup``)
        try:
            while True:
                seen = self.hub.generation
                left = None if remaining is None else remaining - (time.monotonic() - started)
                if left is not None and left <= 0:
                    task = None
                    break
                task = await self._run(
                    replies.claim, worker_id, request_id, make, left, watching=watching
                )
                if woken and task is not None:
                    self.hub.pass_on(key, 2)  # more may be pending: two more of the key look
                woken = False
                if task is not None or time.monotonic() >= end:
                    break
                if gone is None:
                    gone = asyncio.ensure_future(_disconnected(request))
                waiter: asyncio.Future[Any] = asyncio.ensure_future(
                    self.hub.wait(seen, end - time.monotonic(), key)
                )
                done, _ = await asyncio.wait({waiter, gone}, return_when=asyncio.FIRST_COMPLETED)
                woken = waiter.done() and not waiter.cancelled() and bool(waiter.result())
                if gone in done:
                    waiter.cancel()
                    return Response(status_code=499)  # nobody reads it
        finally:
            if gone is not None:
                gone.cancel()
            if woken:
                self.hub.pass_on(key)  # woken, but no claim followed: another waiter claims
        return JSONResponse({"task": None if task is None else wire.claimed_to_json(task)})

    async def task_heartbeat(self, request: Request) -> Response:
        identity, body = await self._enter(request)
        worker_id = _int(body, "worker")
        await self._own(identity, worker_id)
        task = _parse(lambda b: wire.held_from_json(_path_id(request, "task_id"), b), body)
        ok = await self._run(claims.heartbeat, worker_id, _lease(body), task)
        return JSONResponse({"ok": ok})

    async def heartbeat(self, request: Request) -> Response:
        identity, body = await self._enter(request)
        worker_id = await self._path_worker(request, identity)
        await self._run(claims.heartbeat, worker_id, _lease(body), None)
        return JSONResponse({"ok": True})

    async def finish(self, request: Request) -> Response:
        identity, body = await self._enter(request)
        worker_id = _int(body, "worker")
        await self._own(identity, worker_id)
        task = _parse(lambda b: wire.held_from_json(_path_id(request, "task_id"), b), body)
        outcome = _parse(wire.outcome_from_json, body.get("outcome"))
        status = await self._run(replies.finish, worker_id, _request_id(body), task, outcome)
        self._poke_if_pending(status)
        return JSONResponse({"status": status})

    async def release(self, request: Request) -> Response:
        identity, body = await self._enter(request)
        worker_id = _int(body, "worker")
        await self._own(identity, worker_id)
        task = _parse(lambda b: wire.held_from_json(_path_id(request, "task_id"), b), body)
        reason = body.get("reason")
        if not isinstance(reason, str) or not 0 < len(reason) <= MAX_REASON:
            raise HTTPException(422, f"reason: a short text (at most {MAX_REASON} characters)")
        walltime_releases = _int(body, "walltime_releases", claims.WALLTIME_RELEASES)
        status = await self._run(
            replies.release, worker_id, _request_id(body), task, reason, walltime_releases
        )
        self._poke_if_pending(status)
        return JSONResponse({"status": status})

    async def exit(self, request: Request) -> Response:
        identity, body = await self._enter(request)
        worker_id = await self._path_worker(request, identity)
        reason = body.get("reason")
        detail = body.get("detail")
        if not isinstance(reason, str) or not 0 < len(reason) <= 32:
            raise HTTPException(422, "reason: a short text (at most 32 characters)")
        if detail is not None and not isinstance(detail, str):
            raise HTTPException(422, "detail: a text or null")
        await self._run(claims.record_worker_exit, worker_id, reason, detail)
        await self._run(replies.forget, worker_id)
        return JSONResponse({"ok": True})

    async def watch(self, request: Request) -> Response:
        identity, body = await self._enter(request)
        worker_id = await self._path_worker(request, identity)
        info = _info(body.get("info"))
        owner, group = _match(identity)
        found = await self._run(
            claims.watch,
            worker_id,
            info.tag_sets,
            allow_pickle=info.allow_pickle,
            within=_optional_number(body, "within"),
            owner=owner,
            owner_group=group,
            engines=info.engines,
        )
        return JSONResponse({"watch": wire.watch_to_json(found)})

    async def reap(self, request: Request) -> Response:
        identity, _ = await self._enter(request)
        await self._path_worker(request, identity)
        done = await self._run(operations.reap)
        if any(status == "pending" for _, status in done):
            self.hub.poke()
        return JSONResponse({"reaped": [[task_id, status] for task_id, status in done]})

    async def too_long(self, request: Request) -> Response:
        identity, body = await self._enter(request)
        worker_id = await self._path_worker(request, identity)
        info = _info(body.get("info"))
        remaining = _number(body, "remaining", 0.0)
        known = await self._estimates(info) if info.fit_deadline else {}

        def count(conn: Connection) -> int:
            return _claimer(conn, worker_id, info, identity, known).too_long(remaining)

        return JSONResponse({"count": await self._run(count)})

    async def release_orphans(self, request: Request) -> Response:
        identity, _ = await self._enter(request)
        worker_id = await self._path_worker(request, identity)
        released = await self._run(claims.release_orphans, worker_id)
        if released:
            self.hub.poke()
        return JSONResponse({"released": released})

    # --- helpers -------------------------------------------------------------------
    async def _enter(self, request: Request) -> tuple[Identity, dict[str, Any]]:
        """The caller's identity (a worker or admin token, a compatible protocol) and body."""
        identity: Identity | None = request.scope.get("state", {}).get("identity")
        if identity is None or identity.role not in WORKER_ROLES:
            raise HTTPException(403, "this route is for worker tokens")
        problem = wire.incompatible(
            request.headers.get(wire.PROTOCOL_HEADER),
            request.headers.get(wire.VERSION_HEADER),
            __version__,
        )
        if problem is not None:
            raise HTTPException(426, problem)
        return identity, await _read_json(request)

    async def _own(self, identity: Identity, worker_id: int) -> None:
        """404 unless the worker row exists and this token registered it."""
        if worker_id not in self.owners:
            exists, token_id = await self._run(replies.worker_token, worker_id)
            if not exists:
                raise HTTPException(404, f"no worker {worker_id}")
            self.owners[worker_id] = token_id
        if self.owners[worker_id] != identity.token_id:
            raise HTTPException(404, f"no worker {worker_id}")

    async def _path_worker(self, request: Request, identity: Identity) -> int:
        worker_id = _path_id(request, "worker_id")
        await self._own(identity, worker_id)
        return worker_id

    async def _run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """A queue operation on the pool; a database outage is 503 (the client retries)."""
        try:
            return await self.pool.run(fn, *args, **kwargs)
        except HTTPException:
            raise
        except Exception as exc:
            if retry.is_transient(exc) or getattr(exc, "transient", False):
                log.warning("database unavailable (%s)", type(exc).__name__)
                raise HTTPException(503, "the queue database is unavailable; try again") from exc
            raise

    async def _estimates(self, info: WorkerInfo) -> dict[str, float]:
        """Runtime estimates for the worker's tag sets, refreshed every ``estimates.REFRESH`` s."""
        key = tuple(info.tag_sets)
        now = time.monotonic()
        cached = self.estimates.get(key)
        if cached is not None and now - cached[0] < estimates.REFRESH:
            return cached[1]
        samples = await self._run(claims.completed_runtimes, list(key))
        found = estimates.estimates(samples)
        self.estimates[key] = (now, found)
        return found

    def _poke_if_pending(self, status: str | None) -> None:
        if status == "pending":
            self.hub.poke()  # on SQLite no trigger says so: wake the waiters here

    def _maybe_expire(self) -> None:
        now = time.monotonic()
        if now - self.last_expire < EXPIRE_EVERY:
            return
        self.last_expire = now

        async def expire() -> None:
            try:
                await self.pool.run(replies.expire)
            except Exception as exc:  # noqa: BLE001 - next time
                log.warning("expiring old request answers failed (%s)", type(exc).__name__)

        asyncio.ensure_future(expire())


def _wake_key(info: WorkerInfo, identity: Identity) -> Hashable | None:
    """What makes two waiting claims interchangeable (see ``server.wakeup``): the same
    token reach, tag sets, engines and pickle rule. None for a deadline-fitting worker:
    its time left decides what it may take, so it is woken on every wake."""
    if info.fit_deadline:
        return None
    return (*_match(identity), tuple(info.tag_sets), tuple(info.engines), info.allow_pickle)


def _match(identity: Identity) -> tuple[str | None, str | None]:
    """(owner, owner_group) filter for a token; an admin token claims everything."""
    if identity.role == "admin":
        return None, None
    if identity.share_group:
        return None, identity.group
    return identity.user, None


async def _disconnected(request: Request) -> None:
    """Returns when the client goes away (its body has been read already)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def _read_json(request: Request) -> dict[str, Any]:
    size = request.headers.get("content-length")
    if size is not None and size.isdigit() and int(size) > MAX_BODY:
        raise HTTPException(413, f"request body too large (at most {MAX_BODY} bytes)")
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > MAX_BODY:
            raise HTTPException(413, f"request body too large (at most {MAX_BODY} bytes)")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw:
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise HTTPException(400, "the request body is not valid JSON") from exc
    if not isinstance(body, dict):
        raise HTTPException(422, "the request body must be a JSON object")
    return body


def _claimer(
    conn: Connection,
    worker_id: int,
    info: WorkerInfo,
    identity: Identity,
    known: dict[str, float],
) -> claims.Claimer:
    """The worker's claim as its token may make it: its tags, engines, deadline rule
    and learned estimates, within the token's owner/group match."""
    owner, group = _match(identity)
    claimer = claims.Claimer(
        conn,
        worker_id=worker_id,
        tag_sets=info.tag_sets,
        lease=info.lease,
        allow_pickle=info.allow_pickle,
        fit_deadline=info.fit_deadline,
        owner=owner,
        owner_group=group,
        engines=info.engines,
    )
    claimer.set_estimates(known)
    return claimer


def _info(value: Any) -> WorkerInfo:
    """The worker's description, bounded: its tag sets become SQL parameters."""
    info: WorkerInfo = _parse(wire.info_from_json, value)
    if not 0 < len(info.tag_sets) <= MAX_TAG_SETS or any(
        not 0 < len(t) <= 512 for t in info.tag_sets
    ):
        raise HTTPException(422, f"tag_sets: 1 to {MAX_TAG_SETS} tag sets are required")
    if not 0 < info.lease <= 7 * 86400 or len(info.tags) > 512 or len(info.mode) > 16:
        raise HTTPException(422, "lease, tags or mode out of range")
    # The columns' sizes: a longer value would be a database error, not a clear answer.
    for name, limit in (("launch_id", 64), ("scheduler", 16), ("job_id", 64), ("array_job_id", 64)):
        value = getattr(info, name)
        if value is not None and len(value) > limit:
            raise HTTPException(422, f"{name}: at most {limit} characters")
    for name in ("pid", "array_index", "walltime_releases"):
        value = getattr(info, name)
        if value is not None and not 0 <= value < 2**31:
            raise HTTPException(422, f"{name}: out of range")
    if not isinstance(info.engines, list | tuple) or len(info.engines) > MAX_TAG_SETS:
        raise HTTPException(422, f"engines: at most {MAX_TAG_SETS} engine names")
    try:
        engines = tuple(check_engine(name) for name in info.engines)
    except (UserError, TypeError) as exc:
        raise HTTPException(422, f"engines: {exc}") from None
    return dataclasses.replace(info, engines=engines)


def _path_id(request: Request, key: str) -> int:
    """A path's row ID; one beyond any row's (a database integer) is "not found", not a 500."""
    value = int(request.path_params[key])
    if value >= 2**62:
        raise HTTPException(404, f"no such {key.partition('_')[0]} {value}")
    return value


def _parse(fn: Callable[[Any], Any], value: Any) -> Any:
    try:
        return fn(value)
    except (ValueError, TypeError) as exc:
        raise HTTPException(422, str(exc).splitlines()[0][:200]) from exc


def _int(body: dict[str, Any], key: str, default: int | None = None) -> int:
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**62:
        raise HTTPException(422, f"{key}: a non-negative integer is required")
    return value


def _number(body: dict[str, Any], key: str, default: float) -> float:
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        raise HTTPException(422, f"{key}: a number is required")
    return float(value)


def _optional_number(body: dict[str, Any], key: str) -> float | None:
    if body.get(key) is None:
        return None
    return _number(body, key, 0.0)


def _lease(body: dict[str, Any]) -> float:
    lease = _number(body, "lease", 0.0)
    if not 0 < lease <= 7 * 86400:
        raise HTTPException(422, "lease: seconds, more than 0 and at most a week")
    return lease


def _request_id(body: dict[str, Any]) -> str:
    value = body.get("request_id")
    if not isinstance(value, str) or not 0 < len(value) <= wire.MAX_REQUEST_ID:
        raise HTTPException(
            422, f"request_id: a text of 1 to {wire.MAX_REQUEST_ID} characters is required"
        )
    return value
