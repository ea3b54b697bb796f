"""Session cookies and CSRF tokens (pure: the secret is passed in).

A cookie is ``<session id>.<nonce>.<signature>``: HMAC-SHA256 over the rest
with the shared secret (``queue.web_sessions.cookie_secret``). It names a
session row, never holds a token; the handler reads that row and its token on
every request (``session_identity``), so signing out or revoking the token ends
it. The CSRF token is a second HMAC of the cookie: it changes with each sign-in
and needs no storage.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass

COOKIE = "hpclaunch_session"
LIFETIME = 12 * 3600  # seconds a session lasts, at most: a working day


@dataclass(frozen=True)
class Session:
    session_id: int
    cookie: str


def _mac(secret: str, message: str) -> str:
    digest = hmac.new(secret.encode(), message.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def issue(secret: str, session_id: int) -> str:
    """The cookie value for a new session row."""
    body = f"{int(session_id)}.{secrets.token_urlsafe(12)}"
    return f"{body}.{_mac(secret, body)}"


def verify(secret: str, value: str | None) -> Session | None:
    """The session a cookie value names, if its signature holds."""
    if not value or len(value) > 200:
        return None
    body, _, signature = value.rpartition(".")
    parts = body.split(".")
    if len(parts) != 2 or not hmac.compare_digest(_mac(secret, body), signature):
        return None
    try:
        return Session(int(parts[0]), value)
    except ValueError:
        return None


def csrf_token(secret: str, cookie: str) -> str:
    """The form token that goes with this session's cookie."""
    return _mac(secret, "csrf." + cookie)


def csrf_ok(secret: str, cookie: str, presented: str | None) -> bool:
    return bool(presented) and hmac.compare_digest(csrf_token(secret, cookie), presented or "")
