"""``QueueSession`` over HTTP: a worker talking to ``hpclaunch serve`` (its worker routes).

Why a second session: a thousand workers through a server cost the database a
handful of connections, workers behind an HTTP proxy reach the queue, and no
compute node holds database credentials. The loop does not know the
difference (``worker.connect.open_session`` picks this for ``http(s)://`` URLs).

Stdlib only (``http.client``, ``ssl``, ``json``, ``urllib.request`` for the
proxy settings): the worker's HTTP path imports neither SQLAlchemy nor psycopg,
so its cold start is the cheapest.

* Security: TLS is verified (the system's CAs, or ``--ca-bundle`` /
  ``HPCLAUNCH_CA_BUNDLE``); plain ``http://`` is refused to a host that is not
  loopback unless ``--insecure-http``. The token comes from ``HPCLAUNCH_TOKEN``
  or the 0600 file named by ``HPCLAUNCH_TOKEN_FILE``, never from the command
  line, and never appears in a message.
* Proxies: ``HTTPS_PROXY`` / ``HTTP_PROXY`` / ``NO_PROXY`` as urllib reads them;
  https goes through a ``CONNECT`` tunnel, http as an absolute-URI request.
* Outages: every call but the heartbeat retries connection failures and 5xx
  answers for up to its ``wait`` (the session's default, ``--db-wait``), then
  raises ``QueueUnavailable``. Claim, finish and release carry one request ID
  for all their tries, so a retry whose first reply was lost gets the first
  answer (``queue.replies`` on the server). The heartbeat thread uses its own
  connection.
* Long-poll: ``claim(remaining, wait)`` asks the server to hold the request up
  to ``wait`` s until a task comes; a stop request (a signal) ends the wait
  within ``STOP_SLICE`` s by closing the connection.
"""

from __future__ import annotations

import base64
import http.client
import ipaddress
import json
import os
import select
import socket
import ssl
import stat
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hpclaunch import __version__
from hpclaunch.errors import UserError
from hpclaunch.queue import wire
from hpclaunch.queue.session import Claimed, Outcome, QueueUnavailable, Watch, WorkerInfo

TOKEN_ENV = "HPCLAUNCH_TOKEN"
TOKEN_FILE_ENV = "HPCLAUNCH_TOKEN_FILE"
CA_BUNDLE_ENV = "HPCLAUNCH_CA_BUNDLE"
REQUEST_TIMEOUT = 60.0  # seconds for one short request (the server's own retries: 15 s)
HEARTBEAT_TIMEOUT = 30.0
POLL_MARGIN = 30.0  # a long-poll's read timeout beyond the wait it asked for
STOP_SLICE = 0.5  # how often a waiting request checks for a stop
FIRST_DELAY = 0.25
MAX_DELAY = 5.0
RETRY_STATUSES = frozenset({500, 502, 503, 504})


class VersionRefused(UserError):
    """The server does not speak this worker's protocol: the one line says which it needs."""


class _Stopped(Exception):
    """A stop was requested while a request waited: the connection was dropped."""


@dataclass(frozen=True)
class Target:
    """Where the server is and how to reach it (pure data, from ``parse_server_url``)."""

    scheme: str
    host: str
    port: int
    base: str  # path prefix, no trailing slash
    proxy: tuple[str, int, str | None] | None  # host, port, Proxy-Authorization value

    def url(self, path: str) -> str:
        netloc = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{netloc}:{self.port}{self.base}{path}"


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_server_url(
    url: str,
    *,
    insecure_http: bool = False,
    proxies: dict[str, str] | None = None,
    bypass: Callable[[str], bool] | None = None,
) -> Target:
    """Check a server URL and choose the proxy for it (``proxies``: urllib's getproxies())."""
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise UserError(f"bad server URL {url!r}: use https://HOST[:PORT] (or http:// on loopback)")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise UserError(
            "the server URL carries no credentials, query or fragment: "
            "the token comes from HPCLAUNCH_TOKEN or HPCLAUNCH_TOKEN_FILE"
        )
    host = parts.hostname
    if scheme == "http" and not insecure_http and not is_loopback(host):
        raise UserError(
            f"refusing plain http:// to {host}: the token would cross the network in clear; "
            "use https://, or --insecure-http if you must"
        )
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError as exc:
        raise UserError(f"bad server URL {url!r}: bad port") from exc
    proxy = None
    chosen = (proxies or {}).get(scheme)
    if chosen and not (bypass is not None and bypass(host)):
        proxy = _parse_proxy(chosen)
    return Target(scheme, host, port, parts.path.rstrip("/"), proxy)


def _parse_proxy(value: str) -> tuple[str, int, str | None]:
    parts = urllib.parse.urlsplit(value if "://" in value else f"http://{value}")
    if parts.scheme != "http" or not parts.hostname:
        raise UserError(
            f"unsupported proxy {parts.scheme}://{parts.hostname}: "
            "use an http:// proxy (https to the server is tunnelled through it)"
        )
    auth = None
    if parts.username:
        pair = (
            f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password or '')}"
        )
        auth = "Basic " + base64.b64encode(pair.encode()).decode()
    try:
        port = parts.port or 80
    except ValueError as exc:
        raise UserError(f"bad proxy port in {parts.hostname}") from exc
    return parts.hostname, port, auth


def read_token(env: dict[str, str] | os._Environ[str] = os.environ) -> str:
    """The worker's token: ``HPCLAUNCH_TOKEN``, or the 0600 file ``HPCLAUNCH_TOKEN_FILE``."""
    token = env.get(TOKEN_ENV, "").strip()
    if token:
        return token
    path = env.get(TOKEN_FILE_ENV, "").strip()
    if not path:
        raise UserError(
            f"a worker with a server needs a token: set {TOKEN_ENV}, or {TOKEN_FILE_ENV} "
            "to a file only you can read (chmod 600)"
        )
    try:
        info = os.stat(path)
        if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise UserError(
                f"{path}: the token file must be readable by you alone (chmod 600 {path})"
            )
        with open(path, encoding="utf-8") as handle:
            token = handle.readline().strip()
    except OSError as exc:
        raise UserError(f"{path}: cannot read the token file ({exc.strerror})") from exc
    if not token:
        raise UserError(f"{path}: the token file is empty")
    return token


def tls_context(ca_bundle: str | None) -> ssl.SSLContext:
    """Verified TLS: the system's CAs, or only ``ca_bundle`` when given."""
    bundle = ca_bundle or os.environ.get(CA_BUNDLE_ENV) or None
    if bundle is not None and not os.path.isfile(bundle):
        raise UserError(f"{bundle}: no such CA bundle file")
    try:
        return ssl.create_default_context(cafile=bundle)
    except ssl.SSLError as exc:
        raise UserError(f"{bundle}: not a PEM CA bundle ({exc.reason})") from exc


class _Channel:
    """One kept-alive HTTP(S) connection to the server (re-opened after any error)."""

    def __init__(self, target: Target, context: ssl.SSLContext | None, headers: dict[str, str]):
        self.target = target
        self.context = context
        self.headers = headers
        self.conn: http.client.HTTPConnection | None = None

    def _open(self, timeout: float) -> http.client.HTTPConnection:
        t = self.target
        conn: http.client.HTTPConnection
        if t.proxy is None:
            if t.scheme == "https":
                conn = http.client.HTTPSConnection(
                    t.host, t.port, timeout=timeout, context=self.context
                )
            else:
                conn = http.client.HTTPConnection(t.host, t.port, timeout=timeout)
            return conn
        host, port, auth = t.proxy
        if t.scheme == "https":
            conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=self.context)
            conn.set_tunnel(t.host, t.port, headers={"Proxy-Authorization": auth} if auth else None)
        else:
            conn = http.client.HTTPConnection(host, port, timeout=timeout)
        return conn

    def exchange(
        self,
        path: str,
        body: dict[str, Any],
        *,
        timeout: float,
        stop: Callable[[], bool] | None = None,
    ) -> tuple[int, dict[str, Any]]:
        """POST ``body`` as JSON; (status, JSON answer). Raises OSError/HTTPException/_Stopped."""
        t = self.target
        if self.conn is None:
            self.conn = self._open(timeout)
        conn = self.conn
        conn.timeout = timeout
        if conn.sock is not None:
            conn.sock.settimeout(timeout)
        headers = dict(self.headers)
        if t.proxy is not None and t.scheme == "http":
            target = t.url(path)  # absolute-URI form for a forwarding proxy
            if t.proxy[2]:
                headers["Proxy-Authorization"] = t.proxy[2]
        else:
            target = t.base + path
        payload = json.dumps(body).encode()
        headers["Content-Length"] = str(len(payload))
        try:
            conn.request("POST", target, body=payload, headers=headers)
            if stop is not None:
                _await_reply(conn, timeout, stop)
            reply = conn.getresponse()
            raw = reply.read()
        except BaseException:
            self.close()
            raise
        if reply.will_close:
            self.close()
        try:
            data = json.loads(raw) if raw else {}
        except ValueError:
            data = {"error": f"HTTP {reply.status} with a body that is not JSON"}
        return reply.status, data if isinstance(data, dict) else {}

    def close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # noqa: BLE001 - closing a broken connection is best effort
                pass


def _await_reply(conn: http.client.HTTPConnection, timeout: float, stop: Callable[[], bool]):
    """Wait for the reply's first bytes in slices, so a stop is seen within STOP_SLICE s."""
    sock = conn.sock
    if sock is None:
        return
    end = time.monotonic() + timeout
    while True:
        if isinstance(sock, ssl.SSLSocket) and sock.pending():
            return
        left = end - time.monotonic()
        if left <= 0:
            raise TimeoutError("no reply from the server")
        ready, _, _ = select.select([sock], [], [], min(left, STOP_SLICE))
        if ready:
            return
        if stop():
            raise _Stopped()


class HttpSession:
    """A worker's session through ``hpclaunch serve`` (see ``queue.session.QueueSession``)."""

    long_poll = True

    def __init__(
        self,
        url: str,
        *,
        wait: float,
        log: Callable[[str], None],
        stop: Callable[[], bool],
        insecure_http: bool = False,
        ca_bundle: str | None = None,
    ):
        self.wait = wait
        self.log = log
        self.stop = stop
        proxies, bypass = _proxy_settings()
        self.target = parse_server_url(
            url, insecure_http=insecure_http, proxies=proxies, bypass=bypass
        )
        context = tls_context(ca_bundle) if self.target.scheme == "https" else None
        headers = {
            "Authorization": f"Bearer {read_token()}",
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": f"hpclaunch-worker/{__version__}",
            wire.VERSION_HEADER: __version__,
            wire.PROTOCOL_HEADER: str(wire.PROTOCOL),
        }
        self._main = _Channel(self.target, context, headers)
        self._beat = _Channel(self.target, context, headers)
        self.worker_id: int | None = None
        self.info: dict[str, Any] = {}
        self.lease = 0.0
        self._watching: int | None = None

    # --- transport ---------------------------------------------------------------
    def _call(
        self,
        path: str,
        body: dict[str, Any],
        *,
        what: str,
        wait: float | None = None,
        stoppable: bool = False,
        timeout: float = REQUEST_TIMEOUT,
        long: bool = False,
    ) -> dict[str, Any]:
        """POST with retries through outages for up to ``wait`` s; the answer's JSON."""
        wait = self.wait if wait is None else wait
        started = time.monotonic()
        delay = FIRST_DELAY
        announced = False
        while True:
            try:
                status, data = self._main.exchange(
                    path, body, timeout=timeout, stop=self.stop if long else None
                )
            except _Stopped:
                raise
            except ssl.SSLCertVerificationError as exc:  # waiting will not fix it
                raise UserError(f"cannot reach the server: {_describe(exc)}") from exc
            except (OSError, http.client.HTTPException) as exc:
                problem = _describe(exc)
            else:
                if 200 <= status < 300:
                    if announced:
                        self.log(f"{what}: server reachable again after {_since(started)} s")
                    return data
                problem = f"HTTP {status}: {data.get('error', 'no detail')}"
                if status == 426:
                    raise VersionRefused(str(data.get("error", problem)))
                if status in (401, 403):
                    raise UserError(
                        f"the server refused this worker's token ({data.get('error', status)}); "
                        f"check {TOKEN_ENV} / {TOKEN_FILE_ENV}"
                    )
                if status not in RETRY_STATUSES:
                    raise UserError(f"the server refused {what}: {problem}")
            if stoppable and self.stop():
                raise QueueUnavailable(f"stopped while the server was unavailable ({problem})")
            if time.monotonic() - started + delay > wait:
                raise QueueUnavailable(f"server unavailable for {_since(started)} s: {problem}")
            if not announced:
                announced = True
                self.log(
                    f"server unavailable during {what} ({problem}); retrying for up to {wait:g} s"
                )
            time.sleep(delay)
            delay = min(delay * 2, MAX_DELAY)

    def _worker(self) -> int:
        assert self.worker_id is not None, "register first"
        return self.worker_id

    # --- QueueSession --------------------------------------------------------------
    def register(self, worker: WorkerInfo) -> int:
        self.info = wire.info_to_json(worker)
        self.lease = worker.lease
        data = self._call("/api/v1/workers", self.info, what="register", stoppable=True)
        self.worker_id = int(data["worker"])
        return self.worker_id

    def claim(self, remaining: float | None, wait: float = 0.0) -> Claimed | None:
        """The next task; with ``wait`` the server holds the request until one comes."""
        wait = min(max(wait, 0.0), wire.MAX_WAIT)
        body = {
            "worker": self._worker(),
            "info": self.info,
            "wait": wait,
            "remaining": remaining,
            "request_id": _request_id(),
            "watching": self._watching,
        }
        try:
            data = self._call(
                "/api/v1/claim",
                body,
                what="claim",
                stoppable=True,
                timeout=wait + POLL_MARGIN,
                long=True,
            )
        except _Stopped:
            return None  # a task claimed meanwhile is put back by release_orphans at exit
        found = data.get("task")
        task = None if found is None else wire.claimed_from_json(found)
        if task is not None:
            self._watching = None
        return task

    def watch(self, within: float | None) -> Watch | None:
        data = self._call(
            f"/api/v1/workers/{self._worker()}/watch",
            {"info": self.info, "within": within},
            what="watch",
            stoppable=True,
        )
        found = wire.watch_from_json(data.get("watch"))
        self._watching = None if found is None else found.task_id
        return found

    def heartbeat(self, task: Claimed | None) -> bool:
        worker_id = self._worker()
        body: dict[str, Any]
        if task is None:
            path, body = f"/api/v1/workers/{worker_id}/heartbeat", {"lease": self.lease}
        else:
            path = f"/api/v1/tasks/{task.id}/heartbeat"
            body = {"worker": worker_id, "lease": self.lease, **wire.held_to_json(task)}
        body["request_id"] = _request_id()
        status, data = self._beat.exchange(path, body, timeout=HEARTBEAT_TIMEOUT)
        if status == 426:
            raise VersionRefused(str(data.get("error")))
        if not 200 <= status < 300:
            raise OSError(f"heartbeat: HTTP {status}: {data.get('error', 'no detail')}")
        return bool(data.get("ok"))

    def finish(self, task: Claimed, outcome: Outcome, *, wait: float) -> str | None:
        body = {
            "worker": self._worker(),
            "request_id": _request_id(),
            "outcome": wire.outcome_to_json(outcome),
            **wire.held_to_json(task),
        }
        data = self._call(
            f"/api/v1/tasks/{task.id}/finish", body, what=f"recording task {task.id}", wait=wait
        )
        return data.get("status")

    def release(self, task: Claimed, reason: str) -> str | None:
        body = {
            "worker": self._worker(),
            "request_id": _request_id(),
            "reason": reason,
            "walltime_releases": int(self.info.get("walltime_releases", 3)),
            **wire.held_to_json(task),
        }
        data = self._call(f"/api/v1/tasks/{task.id}/release", body, what="release")
        return data.get("status")

    def record_crash(self, task: Claimed, detail: str) -> None:
        if self.worker_id is None:
            return
        try:
            self.finish(task, Outcome(ok=False, reason="worker_crash", error=detail), wait=0)
        except Exception:  # noqa: BLE001 - the lease will return the task if this fails
            pass

    def release_orphans(self) -> list[int]:
        if self.worker_id is None:
            return []
        try:
            data = self._call(
                f"/api/v1/workers/{self.worker_id}/release-orphans",
                {},
                what="release orphans",
                wait=0,
            )
        except Exception:  # noqa: BLE001 - the lease returns them otherwise
            return []
        return [int(x) for x in data.get("released", [])]

    def reap(self) -> list[tuple[int, str]]:
        data = self._call(f"/api/v1/workers/{self._worker()}/reap", {}, what="reap", stoppable=True)
        return [(int(task_id), str(status)) for task_id, status in data.get("reaped", [])]

    def refresh_estimates(self) -> None:
        """Nothing to do: the server keeps the runtime estimates its claims use."""

    def too_long_count(self, remaining: float) -> int:
        data = self._call(
            f"/api/v1/workers/{self._worker()}/too-long",
            {"info": self.info, "remaining": remaining},
            what="count",
        )
        return int(data.get("count", 0))

    def record_exit(self, reason: str, detail: str | None, *, wait: float) -> None:
        if self.worker_id is None:
            return
        self._call(
            f"/api/v1/workers/{self.worker_id}/exit",
            {"reason": str(reason), "detail": detail},
            what="recording the exit",
            wait=wait,
        )

    def close(self) -> None:
        self._main.close()
        self._beat.close()


def _proxy_settings() -> tuple[dict[str, str], Callable[[str], bool] | None]:
    """urllib's reading of ``*_PROXY`` / ``NO_PROXY``; urllib.request (about 15 ms of
    imports) is loaded only when the environment names a proxy."""
    if not any(name.lower().endswith("_proxy") for name in os.environ):
        return {}, None
    import urllib.request

    return urllib.request.getproxies(), urllib.request.proxy_bypass


def _request_id() -> str:
    # os.urandom is what ``secrets`` uses; importing ``secrets`` (hmac, hashlib) costs
    # the worker's cold start more than this whole module's own code.
    return os.urandom(16).hex()


def _since(started: float) -> str:
    return f"{time.monotonic() - started:.1f}"


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate not trusted ({exc.verify_message}); see --ca-bundle"
    if isinstance(exc, socket.timeout | TimeoutError):
        return "timed out"
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__
