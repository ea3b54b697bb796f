"""Users, groups and tokens: the named operations behind ``user add`` and ``token ...``.

A token is ``hpl_`` + 256 random bits; only its SHA-256 is stored, so a stolen
database does not hand out credentials and checking one is a unique-index lookup.
The secret is returned once, at creation, and never logged.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

from hpclaunch.errors import NotFound, UserError
from hpclaunch.queue.driver import Connection

ROLES = ("user", "worker", "admin")
PREFIX = "hpl_"
MAX_EXPIRES_DAYS = 3650
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}")


@dataclass(frozen=True)
class Identity:
    """Who a valid token speaks for (never the secret itself)."""

    token_id: int
    user: str
    group: str
    role: str
    share_group: bool


def check_name(value: str, *, what: str) -> str:
    """A user or group name: letters, digits, ``_ . -``, at most 100 characters."""
    if not _NAME.fullmatch(value):
        raise UserError(
            f"bad {what} name {value[:40]!r}: use letters, digits, '_', '.' or '-' "
            "(at most 100 characters, not starting with '.' or '-')"
        )
    return value


def hash_token(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def add_user(conn: Connection, name: str, group: str, *, admin: bool = False) -> int:
    """Create a user in ``group``; an existing name is an error, not an update."""
    check_name(name, what="user")
    check_name(group, what="group")
    with conn.transaction():
        if conn.one("SELECT id FROM users WHERE name = :name", {"name": name}) is not None:
            raise UserError(f"user {name!r} already exists")
        row = conn.one(
            "INSERT INTO users (name, group_name, admin, created_at)"
            " VALUES (:name, :grp, :admin, :now) RETURNING id",
            {"name": name, "grp": group, "admin": int(admin), "now": time.time()},
        )
    return int(row[0])


def create_token(
    conn: Connection,
    user: str,
    role: str,
    *,
    expires_days: float | None = None,
    share_group: bool = False,
) -> tuple[int, str]:
    """A new token for ``user``: (its ID, the secret, to be shown once)."""
    if role not in ROLES:
        raise UserError(f"bad role {role!r}: use one of {', '.join(ROLES)}")
    if expires_days is not None and not 0 < expires_days <= MAX_EXPIRES_DAYS:
        raise UserError(f"--expires must be between 0 and {MAX_EXPIRES_DAYS} days")
    row = conn.one("SELECT id, admin FROM users WHERE name = :name", {"name": user})
    if row is None:
        raise NotFound(f"no user {user!r} (create it with `hpclaunch user add`)")
    if role == "admin" and not row[1]:
        raise UserError(f"user {user!r} is not an admin: only an admin user gets an admin token")
    secret = PREFIX + secrets.token_urlsafe(32)
    now = time.time()
    expires = now + expires_days * 86400 if expires_days is not None else None
    created = conn.one(
        "INSERT INTO tokens (user_id, token_hash, role, share_group, created_at, expires_at)"
        " VALUES (:uid, :hash, :role, :share, :now, :expires) RETURNING id",
        {
            "uid": row[0],
            "hash": hash_token(secret),
            "role": role,
            "share": int(share_group),
            "now": now,
            "expires": expires,
        },
    )
    return int(created[0]), secret


def list_tokens(conn: Connection) -> list[dict[str, Any]]:
    """Every token's metadata (never its hash), oldest first."""
    return conn.dicts(
        "SELECT t.id, u.name AS user, u.group_name AS group_name, t.role, t.share_group,"
        " t.created_at, t.expires_at, t.revoked_at"
        " FROM tokens t JOIN users u ON u.id = t.user_id ORDER BY t.id"
    )


def revoke_token(conn: Connection, token_id: int) -> None:
    """Revoke a token for good (revoking one twice is not an error)."""
    row = conn.one(
        "UPDATE tokens SET revoked_at = COALESCE(revoked_at, :now) WHERE id = :id RETURNING id",
        {"now": time.time(), "id": token_id},
    )
    if row is None:
        raise NotFound(f"no token {token_id}")


def identify(conn: Connection, secret: str) -> Identity | None:
    """The identity of a valid secret; None when unknown, revoked or expired."""
    found = identify_until(conn, secret)
    return None if found is None else found[0]


def identify_until(conn: Connection, secret: str) -> tuple[Identity, float | None] | None:
    """``identify``, with the token's expiry (epoch seconds, None: never) for a cache."""
    if not secret.startswith(PREFIX) or len(secret) > 200:
        return None
    row = conn.one(
        "SELECT t.id, u.name, u.group_name, t.role, t.share_group, t.expires_at"
        " FROM tokens t JOIN users u ON u.id = t.user_id"
        " WHERE t.token_hash = :hash AND t.revoked_at IS NULL"
        " AND (t.expires_at IS NULL OR t.expires_at > :now)",
        {"hash": hash_token(secret), "now": time.time()},
    )
    if row is None:
        return None
    identity = Identity(int(row[0]), row[1], row[2], row[3], bool(row[4]))
    return identity, None if row[5] is None else float(row[5])
