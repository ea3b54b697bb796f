"""The dashboard's sessions: the shared cookie-signing secret and one row per sign-in.

The secret lives in the database (``ui_secrets``, one row) so every server
process signs and checks the same cookies; the first process to need it creates
it, and when two race the loser's insert does nothing. A session row names the
token it was opened with; every request reads the session and its token again,
so signing out, expiry, and revoking the token each end the session at once,
for every copy of the cookie.
"""

from __future__ import annotations

import secrets
import time

from hpclaunch.queue.accounts import Identity
from hpclaunch.queue.driver import Connection

SECRET_ID = 1
KEEP_ENDED = 86400.0  # seconds ended or expired sessions are kept before a sign-in drops them


def cookie_secret(conn: Connection) -> str:
    """The shared signing secret, created on first use."""
    row = conn.one("SELECT secret FROM ui_secrets WHERE id = :id", {"id": SECRET_ID})
    if row is not None:
        return str(row[0])
    conn.execute(
        "INSERT INTO ui_secrets (id, secret, created_at) VALUES (:id, :secret, :now) "
        "ON CONFLICT (id) DO NOTHING",
        {"id": SECRET_ID, "secret": secrets.token_urlsafe(48), "now": time.time()},
    )
    return str(conn.one("SELECT secret FROM ui_secrets WHERE id = :id", {"id": SECRET_ID})[0])


def start_session(conn: Connection, token_id: int, lifetime: float) -> int:
    """A new session for a token (checked valid by the caller); drops long-dead ones."""
    now = time.time()
    with conn.transaction():
        conn.execute("DELETE FROM ui_sessions WHERE expires_at < :old", {"old": now - KEEP_ENDED})
        row = conn.one(
            "INSERT INTO ui_sessions (token_id, created_at, expires_at) "
            "VALUES (:token, :now, :expires) RETURNING id",
            {"token": token_id, "now": now, "expires": now + lifetime},
        )
    return int(row[0])


def end_session(conn: Connection, session_id: int) -> None:
    """Sign out: the session's cookie stops working everywhere."""
    conn.execute(
        "UPDATE ui_sessions SET ended_at = :now WHERE id = :id AND ended_at IS NULL",
        {"id": session_id, "now": time.time()},
    )


def session_identity(conn: Connection, session_id: int) -> Identity | None:
    """Who a live session speaks for: not ended, not expired, its token neither revoked
    nor expired nor a worker's. None otherwise."""
    now = time.time()
    row = conn.one(
        "SELECT t.id, u.name, u.group_name, t.role, t.share_group FROM ui_sessions s"
        " JOIN tokens t ON t.id = s.token_id JOIN users u ON u.id = t.user_id"
        " WHERE s.id = :id AND s.ended_at IS NULL AND s.expires_at > :now"
        " AND t.revoked_at IS NULL AND t.role <> 'worker'"
        " AND (t.expires_at IS NULL OR t.expires_at > :now)",
        {"id": session_id, "now": now},
    )
    if row is None:
        return None
    return Identity(int(row[0]), row[1], row[2], row[3], bool(row[4]))
