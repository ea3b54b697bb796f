"""Deny by default: every route but ``/healthz`` and the dashboard's (``/``, ``/ui/...``,
which check their own session cookie) needs a valid token in ``Authorization``.

``Bearer TOKEN``, or HTTP Basic with the token as the password and its owner's
name as the user name (a mismatch is 401). Cookies are never read here, so no
web page can make a logged-in browser act on the API. The secret never reaches
a log line or an error.
"""

from __future__ import annotations

import base64
import binascii
import json

from starlette.types import ASGIApp, Receive, Scope, Send

from hpclaunch.queue.accounts import Identity, identify
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


def is_dashboard(path: str) -> bool:
    """The dashboard's paths: it signs people in with its own cookie (``server/ui``)."""
    return path in ("/", "/ui") or path.startswith("/ui/")


class RequireToken:
    """ASGI middleware: puts the caller's ``Identity`` in ``scope["state"]["identity"]``."""

    def __init__(self, app: ASGIApp, pool: Pool):
        self.app = app
        self.pool = pool

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
            await _reply(send, 401, "authentication required: a valid token")
            return
        scope.setdefault("state", {})["identity"] = identity
        await self.app(scope, receive, send)

    async def _identify(self, scope: Scope) -> Identity | None:
        headers = [v for k, v in scope["headers"] if k == b"authorization"]
        if len(headers) != 1:
            return None
        parsed = parse_authorization(headers[0].decode("latin-1"))
        if parsed is None:
            return None
        claimed, secret = parsed
        identity = await self.pool.run(identify, secret)
        if identity is None or (claimed is not None and claimed != identity.user):
            return None
        return identity


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
