"""The dashboard's session facts: the shared cookie-signing secret, a session's token.

The secret lives in the database (``ui_secrets``, one row) so every server
process signs and checks the same cookies; the first process to need it creates
it, and a race between two first processes keeps one row (the insert of the
loser does nothing). A session cookie names its token; each request looks the
token up again, so revoking or expiring a token ends its sessions at once.
"""

from __future__ import annotations

import secrets
import time

from hpclaunch.queue.accounts import Identity
from hpclaunch.queue.driver import Connection

SECRET_ID = 1


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


def session_identity(conn: Connection, token_id: int) -> Identity | None:
    """The identity behind a session's token while it is valid (not revoked, not
    expired, not a worker token); None otherwise."""
    row = conn.one(
        "SELECT t.id, u.name, u.group_name, t.role, t.share_group"
        " FROM tokens t JOIN users u ON u.id = t.user_id"
        " WHERE t.id = :id AND t.revoked_at IS NULL AND t.role <> 'worker'"
        " AND (t.expires_at IS NULL OR t.expires_at > :now)",
        {"id": token_id, "now": time.time()},
    )
    if row is None:
        return None
    return Identity(int(row[0]), row[1], row[2], row[3], bool(row[4]))
