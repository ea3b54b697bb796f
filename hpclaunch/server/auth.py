"""Deny by default: every route but ``/healthz`` and the dashboard's (``/``, ``/ui/...``,
which check their own session cookie) needs a valid token in ``Authorization``.

``Bearer TOKEN``, or HTTP Basic with the token as the password and its owner's
name as the user name (a mismatch is 401). Cookies are never read here, so no
web page can make a logged-in browser act on the API. The secret never reaches
a log line or an error.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import time
from collections import OrderedDict

from starlette.types import ASGIApp, Receive, Scope, Send

from hpclaunch.queue.accounts import Identity, identify_until
from hpclaunch.server.identities import IdentityCache
from hpclaunch.server.pool import Pool

OPEN_PATHS = frozenset({"/healthz"})
CHALLENGE = b'Bearer realm="hpclaunch", Basic realm="hpclaunch"'


def parse_authorization(header: str) -> tuple[str | None, str] | None:
    """(claimed user name or None, secret) from an Authorization header, else None."""
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer" and value:
        return None, value
    if scheme.lower() == "basic" and value:
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        name, sep, secret = decoded.partition(":")
        if sep and name and secret:
            return name, secret
    return None


class FailureThrottle:
    """Slows repeated authentication failures of one credential or one user name.

    Keyed by credential, not by address: behind a site proxy every worker shares
    one address. After ``FREE`` failures each further failure of the key waits
    twice as long (up to ``MAX_DELAY``), one at a time, before its 401; a valid
    credential is never slowed, so a stranger cannot lock a user out.
    """

    FREE = 3
    FIRST_DELAY = 0.25
    MAX_DELAY = 5.0
    FORGET = 900.0  # seconds after the last failure
    MAX_KEYS = 10_000

    def __init__(self) -> None:
        self._failures: OrderedDict[str, tuple[int, float]] = OrderedDict()
        self._locks: dict[str, asyncio.Lock] = {}

    def record(self, key: str, now: float) -> float:
        """Count one failure of ``key``; the seconds its reply must wait."""
        count, last = self._failures.pop(key, (0, now))
        count = 1 if now - last > self.FORGET else count + 1
        self._failures[key] = (count, now)
        while len(self._failures) > self.MAX_KEYS:
            old, _ = self._failures.popitem(last=False)
            self._locks.pop(old, None)
        if count <= self.FREE:
            return 0.0
        return min(self.FIRST_DELAY * 2 ** (count - self.FREE - 1), self.MAX_DELAY)

    async def fail(self, key: str) -> None:
        """Wait out ``key``'s penalty, one failing request of the key at a time."""
        delay = self.record(key, time.monotonic())
        if delay:
            lock = self._locks.setdefault(key, asyncio.Lock())
            async with lock:
                await asyncio.sleep(delay)


def failure_key(header: str) -> str | None:
    """What a failure counts against: the claimed user name, else a hash of the secret."""
    parsed = parse_authorization(header)
    if parsed is None:
        return None
    name, secret = parsed
    if name is not None:
        return "user:" + name
    return "secret:" + hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def is_dashboard(path: str) -> bool:
    """The dashboard's paths: it signs people in with its own cookie (``server/ui``)."""
    return path in ("/", "/ui") or path.startswith("/ui/")


class RequireToken:
    """ASGI middleware: puts the caller's ``Identity`` in ``scope["state"]["identity"]``."""

    def __init__(self, app: ASGIApp, pool: Pool, identities: IdentityCache):
        self.app = app
        self.pool = pool
        self.identities = identities
        self.throttle = FailureThrottle()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS or is_dashboard(scope["path"]):
            await self.app(scope, receive, send)
            return
        try:
            identity = await self._identify(scope)
        except Exception:  # the database is down: the client retries, nothing is decided
            await _reply(send, 503, "the queue database is unavailable; try again")
            return
        if identity is None:
            key = failure_key(_authorization(scope) or "")
            if key is not None:
                await self.throttle.fail(key)
            await _reply(send, 401, "authentication required: a valid token")
            return
        scope.setdefault("state", {})["identity"] = identity
        await self.app(scope, receive, send)

    async def _identify(self, scope: Scope) -> Identity | None:
        header = _authorization(scope)
        if header is None:
            return None
        parsed = parse_authorization(header)
        if parsed is None:
            return None
        claimed, secret = parsed
        identity = self.identities.get(secret)
        if identity is None:
            seen = self.identities.generation
            found = await self.pool.run(identify_until, secret)
            if found is None:
                return None
            identity, expires_at = found
            self.identities.put(secret, identity, expires_at, seen)
        if claimed is not None and claimed != identity.user:
            return None
        return identity


def _authorization(scope: Scope) -> str | None:
    """The one Authorization header (two are refused: which would count is ambiguous)."""
    headers = [v for k, v in scope["headers"] if k == b"authorization"]
    return headers[0].decode("latin-1") if len(headers) == 1 else None


async def _reply(send: Send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    if status == 401:
        headers.append((b"www-authenticate", CHALLENGE))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
