"""The dashboard's routes under ``/ui/``: pages, login and logout, actions.

Each page handler checks the session (cookie signature, then the token row:
revoked tokens end their sessions), reads its data through the page cache (one
read per page key per few seconds, whatever the number of viewers), and
renders HTML on the server. Actions are POSTs that carry the session's CSRF
token and, when the browser says where it comes from, a same-origin ``Origin``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from hpclaunch.errors import DatabaseError, NotFound, UserError
from hpclaunch.queue import dashboard, dashboard_infra, operations, retry
from hpclaunch.queue.accounts import Identity, identify
from hpclaunch.queue.scope import Scope
from hpclaunch.queue.web_sessions import (
    cookie_secret,
    end_session,
    session_identity,
    start_session,
)
from hpclaunch.server.pool import Pool
from hpclaunch.server.ui import charts, session
from hpclaunch.server.ui.cache import PageCache
from hpclaunch.server.ui.render import page
from hpclaunch.states import TaskStatus

log = logging.getLogger("hpclaunch.server.ui")

STATIC = Path(__file__).parent / "static"
MAX_FORM = 4096  # bytes of a login or action form
TEXT_PARAM = 100  # characters of a filter value
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
}
PAGES = ("overview", "batches", "tasks", "workers", "launches", "runtimes")


# Launches are scoped to who submitted them (``queue.scope.launch_condition``), not
# to a group: their cached pages are not shared within a group.
PER_USER_PAGES = frozenset({"overview.html", "launches.html", "launch.html"})


class BadParam(UserError):
    """A query parameter the page cannot use (one line, shown as a 400 page)."""


class Dashboard:
    """The dashboard over one pool; its cache and the signing secret live here."""

    def __init__(self, pool: Pool):
        self.pool = pool
        self.cache = PageCache()
        self._secret: str | None = None

    # -- sessions ---------------------------------------------------------------

    async def secret(self) -> str:
        if self._secret is None:
            self._secret = await self.pool.run(cookie_secret)
        return self._secret

    async def who(self, request: Request) -> tuple[session.Session, Identity] | None:
        """The signed-in person, checked against the token row on every request."""
        found = session.verify(await self.secret(), request.cookies.get(session.COOKIE))
        if found is None:
            return None
        identity = await self.pool.run(session_identity, found.session_id)
        return None if identity is None else (found, identity)

    # -- plumbing ---------------------------------------------------------------

    async def view(
        self,
        request: Request,
        template: str,
        key: tuple,
        load: Callable[[Identity], Callable[[Any], Any]],
        extra: Callable[[Any], dict[str, Any]] | None = None,
    ) -> Response:
        """Check the session, read (cached) data, render ``template``."""
        started = time.perf_counter()
        try:
            who = await self.who(request)
        except Exception as exc:  # noqa: BLE001 - the database is down (or a bug: 500)
            return self.error(request, None, *_failure(exc))
        if who is None:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse("/ui/login?" + urlencode({"next": target}), status_code=303)
        identity = who[1]
        scope: tuple[str, ...] | None = None if identity.role == "admin" else (identity.group,)
        if scope is not None and template in PER_USER_PAGES:
            scope = (identity.group, identity.user)
        timing = {"db": 0.0}

        async def read() -> Any:
            t0 = time.perf_counter()
            data = await self.pool.run(load(identity))
            timing["db"] = time.perf_counter() - t0
            return data

        try:
            data = await self.cache.get((template, scope, *key), read)
        except (NotFound, BadParam) as exc:
            return self.error(request, who, 404 if isinstance(exc, NotFound) else 400, str(exc))
        except Exception as exc:  # noqa: BLE001 - one line in the log, a page for the person
            return self.error(request, who, *_failure(exc))
        context = {"data": data, **(extra(data) if extra else {})}
        t1 = time.perf_counter()
        html = page(template, **self.chrome(request, who), **context)
        render = time.perf_counter() - t1
        total = time.perf_counter() - started
        timing_header = (
            f"db;dur={timing['db'] * 1000:.1f}, render;dur={render * 1000:.1f}, "
            f"total;dur={total * 1000:.1f}"
        )
        return _html(html, 200, {"server-timing": timing_header})

    def chrome(
        self, request: Request, who: tuple[session.Session, Identity] | None
    ) -> dict[str, Any]:
        """What every page's frame shows: the person, the CSRF token, the active tab."""
        secret = self._secret or ""
        return {
            "identity": who[1] if who else None,
            "csrf": session.csrf_token(secret, who[0].cookie) if who else "",
            "path": request.url.path,
            "now": time.time(),
            "params": dict(request.query_params),
        }

    def error(
        self,
        request: Request,
        who: tuple[session.Session, Identity] | None,
        status: int,
        message: str,
    ) -> Response:
        html = page("error.html", **self.chrome(request, who), status=status, message=message)
        return _html(html, status)

    async def form(self, request: Request) -> dict[str, str]:
        """A small url-encoded form (no multipart: nothing here uploads files)."""
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_FORM:
                raise BadParam("form too large")
        fields = parse_qs(body.decode("utf-8", "replace"), max_num_fields=20)
        return {k: v[0] for k, v in fields.items() if v}

    async def action(
        self, request: Request, run: Callable[[Identity, dict[str, str]], Awaitable[Response]]
    ) -> Response:
        """A POST: signed in, same origin, the session's CSRF token; then ``run``."""
        try:
            who = await self.who(request)
        except Exception as exc:  # noqa: BLE001 - the database is down (or a bug: 500)
            return self.error(request, None, *_failure(exc))
        if who is None:
            return self.error(request, None, 401, "sign in first: your session has ended")
        if not _same_origin(request):
            return self.error(request, who, 403, "refused: the request came from another site")
        try:
            fields = await self.form(request)
        except BadParam as exc:
            return self.error(request, who, 400, str(exc))
        if not session.csrf_ok(await self.secret(), who[0].cookie, fields.get("csrf")):
            return self.error(
                request, who, 403, "refused: the form's CSRF token is missing or stale; reload"
            )
        try:
            return await run(who[1], fields)
        except NotFound as exc:
            return self.error(request, who, 404, str(exc))
        except UserError as exc:
            return self.error(request, who, 400, str(exc))

    # -- login / logout ---------------------------------------------------------

    async def login_form(self, request: Request) -> Response:
        html = page("login.html", **self.chrome(request, None), message=None, next=_next(request))
        return _html(html, 200)

    async def login(self, request: Request) -> Response:
        if not _same_origin(request):
            return self.error(request, None, 403, "refused: the request came from another site")
        try:
            fields = await self.form(request)
            identity = await self.pool.run(identify, fields.get("token", "").strip())
        except BadParam as exc:
            return self.error(request, None, 400, str(exc))
        except Exception as exc:  # noqa: BLE001 - the database is down (or a bug: 500)
            return self.error(request, None, *_failure(exc))
        target = _safe_next(fields.get("next"))
        if identity is None or identity.role == "worker":
            message = (
                "a worker token cannot sign in to the dashboard; use a user or admin token"
                if identity is not None
                else "that token is not valid (mistyped, revoked or expired)"
            )
            html = page("login.html", **self.chrome(request, None), message=message, next=target)
            return _html(html, 403 if identity is not None else 401)
        session_id = await self.pool.run(start_session, identity.token_id, session.LIFETIME)
        cookie = session.issue(await self.secret(), session_id)
        log.info("dashboard sign-in: %s (token %d)", identity.user, identity.token_id)
        reply = RedirectResponse(target, status_code=303)
        reply.set_cookie(
            session.COOKIE,
            cookie,
            max_age=session.LIFETIME,
            path="/ui",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return reply

    async def logout(self, request: Request) -> Response:
        async def run(identity: Identity, fields: dict[str, str]) -> Response:
            found = session.verify(await self.secret(), request.cookies.get(session.COOKIE))
            if found is not None:
                await self.pool.run(end_session, found.session_id)
            log.info("dashboard sign-out: %s", identity.user)
            reply = RedirectResponse("/ui/login", status_code=303)
            reply.delete_cookie(session.COOKIE, path="/ui", httponly=True, samesite="strict")
            return reply

        return await self.action(request, run)

    # -- pages ------------------------------------------------------------------

    async def overview(self, request: Request) -> Response:
        def load(identity: Identity) -> Callable[[Any], Any]:
            scope = None if identity.role == "admin" else identity.group
            return lambda conn: dashboard.overview(conn, scope, time.time(), _scope(identity))

        def extra(data: Any) -> dict[str, Any]:
            chart = charts.per_minute(data["per_minute"], data["chart_start"])
            return {"chart": chart}

        return await self.view(request, "overview.html", (), load, extra)

    async def batches(self, request: Request) -> Response:
        q = request.query_params
        name, show = _text(q.get("name")), q.get("show", "all")
        before = _int(q.get("before"), "before")
        if show not in ("all", "active", "canceled"):
            show = "all"

        def load(identity: Identity) -> Callable[[Any], Any]:
            scope = None if identity.role == "admin" else identity.group
            return lambda conn: dashboard.batches(conn, scope, name=name, show=show, before=before)

        return await self.view(request, "batches.html", (name, show, before), load)

    async def batch(self, request: Request) -> Response:
        batch_id = request.path_params["batch_id"]
        return await self._tasks(request, batch_id)

    async def tasks(self, request: Request) -> Response:
        return await self._tasks(request, None)

    async def _tasks(self, request: Request, batch_id: int | None) -> Response:
        q = request.query_params
        status = q.get("status") or None
        if status is not None and status not in TaskStatus.__members__.values():
            raise BadParam(f"unknown status {status[:20]!r}")
        tag, name = _text(q.get("tag")), _text(q.get("name"))
        after = _int(q.get("after"), "after") or 0
        if batch_id is None:
            batch_id = _int(q.get("batch"), "batch")
        template = "batch.html" if request.path_params.get("batch_id") else "tasks.html"

        def load(identity: Identity) -> Callable[[Any], Any]:
            scope = None if identity.role == "admin" else identity.group

            def read(conn: Any) -> dict[str, Any]:
                head = None
                if template == "batch.html" and batch_id is not None:
                    head = dashboard.batch(conn, scope, batch_id)
                table = dashboard.tasks(
                    conn, scope, batch_id=batch_id, status=status, tag=tag, name=name, after=after
                )
                return {"batch": head, "table": table}

            return read

        key = (batch_id, status, tag, name, after)
        return await self.view(request, template, key, load)

    async def task(self, request: Request) -> Response:
        task_id = request.path_params["task_id"]

        def load(identity: Identity) -> Callable[[Any], Any]:
            scope = None if identity.role == "admin" else identity.group
            return lambda conn: dashboard.task(conn, scope, task_id)

        def extra(data: Any) -> dict[str, Any]:
            return {"chart": charts.attempts(data["attempt_rows"])}

        return await self.view(request, "task.html", (task_id,), load, extra)

    async def workers(self, request: Request) -> Response:
        q = request.query_params
        show = q.get("show", "live")
        if show not in ("live", "gone", "all"):
            show = "live"
        before = _int(q.get("before"), "before")
        return await self.view(
            request,
            "workers.html",
            (show, before),
            lambda who: (
                lambda conn: dashboard_infra.workers(conn, _scope(who), show=show, before=before)
            ),
        )

    async def launches(self, request: Request) -> Response:
        return await self.view(
            request,
            "launches.html",
            (),
            lambda who: lambda conn: dashboard_infra.launches(conn, _scope(who)),
        )

    async def launch(self, request: Request) -> Response:
        launch_id = str(request.path_params["launch_id"])[:64]

        def extra(data: Any) -> dict[str, Any]:
            return {"chart": charts.timeline(data["workers_rows"], time.time())}

        return await self.view(
            request,
            "launch.html",
            (launch_id,),
            lambda who: lambda conn: dashboard_infra.launch(conn, launch_id, _scope(who)),
            extra,
        )

    async def runtimes(self, request: Request) -> Response:
        def load(identity: Identity) -> Callable[[Any], Any]:
            scope = None if identity.role == "admin" else identity.group
            return lambda conn: dashboard_infra.runtimes(conn, scope)

        def extra(data: Any) -> dict[str, Any]:
            return {"charts": [charts.histogram(r["samples"], r["p95"]) for r in data]}

        return await self.view(request, "runtimes.html", (), load, extra)

    # -- actions ----------------------------------------------------------------

    async def batch_action(self, request: Request) -> Response:
        batch_id = request.path_params["batch_id"]
        verb = request.path_params["verb"]

        if verb not in ("cancel", "retry"):
            return self.error(request, None, 404, "no such action")

        async def run(identity: Identity, fields: dict[str, str]) -> Response:
            owner = await self.pool.run(dashboard.batch_group, batch_id)
            if identity.role != "admin" and owner != identity.group:
                raise NotFound(f"no batch {batch_id} in your view")
            if verb == "cancel":
                done = await self.pool.run(operations.cancel, batch_id=batch_id)
            else:
                done = await self.pool.run(operations.retry, all_failed=True, batch_id=batch_id)
            self.cache.clear()
            log.info(
                "dashboard: %s %s batch %d (%d tasks)", identity.user, verb, batch_id, len(done)
            )
            target = f"/ui/batches/{batch_id}?" + urlencode({"did": verb, "n": len(done)})
            return RedirectResponse(target, status_code=303)

        return await self.action(request, run)

    def guarded(self, handler: Callable[[Request], Awaitable[Response]]) -> Any:
        """``handler`` with a bad query parameter answered as a one-line 400 page."""

        async def run(request: Request) -> Response:
            try:
                return await handler(request)
            except BadParam as exc:
                try:
                    who = await self.who(request)
                except Exception:  # noqa: BLE001 - the error page shows without the person
                    who = None
                return self.error(request, who, 400, str(exc))

        return run


def ui_routes(pool: Pool) -> list[BaseRoute]:
    """The dashboard's routes, for ``create_app`` (``/`` redirects to ``/ui/``)."""
    d = Dashboard(pool)

    async def to_ui(request: Request) -> Response:
        return RedirectResponse("/ui/", status_code=303)

    return [
        Route("/", to_ui, methods=["GET"]),
        Route("/ui", to_ui, methods=["GET"]),
        Route("/ui/", d.guarded(d.overview), methods=["GET"]),
        Route("/ui/login", d.login_form, methods=["GET"]),
        Route("/ui/login", d.login, methods=["POST"]),
        Route("/ui/logout", d.logout, methods=["POST"]),
        Route("/ui/batches", d.guarded(d.batches), methods=["GET"]),
        Route("/ui/batches/{batch_id:int}", d.guarded(d.batch), methods=["GET"]),
        Route("/ui/batches/{batch_id:int}/{verb:str}", d.batch_action, methods=["POST"]),
        Route("/ui/tasks", d.guarded(d.tasks), methods=["GET"]),
        Route("/ui/tasks/{task_id:int}", d.guarded(d.task), methods=["GET"]),
        Route("/ui/workers", d.guarded(d.workers), methods=["GET"]),
        Route("/ui/launches", d.guarded(d.launches), methods=["GET"]),
        Route("/ui/launches/{launch_id:str}", d.guarded(d.launch), methods=["GET"]),
        Route("/ui/runtimes", d.guarded(d.runtimes), methods=["GET"]),
        Mount("/ui/static", StaticFiles(directory=STATIC), name="ui-static"),
    ]


def _html(body: str, status: int, headers: dict[str, str] | None = None) -> HTMLResponse:
    return HTMLResponse(body, status_code=status, headers={**SECURITY_HEADERS, **(headers or {})})


def _same_origin(request: Request) -> bool:
    """True unless the browser names another origin (Origin, else Referer)."""
    origin = request.headers.get("origin") or request.headers.get("referer")
    if not origin or origin == "null":
        return origin != "null"
    own = f"{request.url.scheme}://{request.url.netloc}"
    return origin == own or origin.startswith(own + "/")


def _next(request: Request) -> str:
    return _safe_next(request.query_params.get("next"))


def _safe_next(value: str | None) -> str:
    """Where to go after signing in: a dashboard path on this server, nothing else."""
    if value and value.startswith("/ui/") and "//" not in value and "\\" not in value:
        return value[:500]
    return "/ui/"


def _int(value: str | None, what: str) -> int | None:
    if value in (None, ""):
        return None
    try:
        number = int(value)
    except ValueError:
        raise BadParam(f"{what} must be a whole number, not {value[:20]!r}") from None
    if not 0 <= number < 2**62:
        raise BadParam(f"{what} is out of range")
    return number


def _text(value: str | None) -> str | None:
    return value.strip()[:TEXT_PARAM] or None if value else None


def _failure(exc: BaseException) -> tuple[int, str]:
    """The status and line for a failed read: 503 for the database, else 500."""
    if isinstance(exc, DatabaseError) or retry.is_transient(exc):
        return 503, _unavailable(exc)
    log.error("dashboard: internal error (%s)", type(exc).__name__, exc_info=exc)
    return 500, "internal error; the server's log says more"


def _unavailable(exc: BaseException) -> str:
    log.warning("dashboard: the database is unavailable (%s)", type(exc).__name__)
    return "the queue database is unavailable; try again in a moment"


def _scope(identity: Identity) -> Scope | None:
    """What the signed-in person may see of workers and launches (``None``: an admin)."""
    return None if identity.role == "admin" else Scope.of(identity)
