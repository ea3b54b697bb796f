"""Helpers for the API tests: accounts of every role, and JSON requests with a token."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

GROUP_A, GROUP_B = "labA", "labB"


@dataclass
class Accounts:
    """Tokens by role name: alice and carol in group A, bob in group B, root an admin."""

    tokens: dict[str, str] = field(default_factory=dict)
    ids: dict[str, int] = field(default_factory=dict)


def make_accounts(url: str) -> Accounts:
    """Users and tokens written straight into the database (as `hpclaunch user/token` does)."""
    from hpclaunch.queue import accounts, db

    made = Accounts()
    conn = db.connect(url)  # creates a fresh SQLite file's tables
    try:
        for name, group, admin in (
            ("alice", GROUP_A, False),
            ("carol", GROUP_A, False),
            ("bob", GROUP_B, False),
            ("root", "ops", True),
        ):
            accounts.add_user(conn, name, group, admin=admin)
        for label, user, role in (
            ("alice", "alice", "user"),
            ("carol", "carol", "user"),
            ("bob", "bob", "user"),
            ("admin", "root", "admin"),
            ("worker", "alice", "worker"),
            ("revoked", "alice", "user"),
            ("expired", "alice", "user"),
        ):
            made.ids[label], made.tokens[label] = accounts.create_token(
                conn, user, role, expires_days=1 if label == "expired" else None
            )
        accounts.revoke_token(conn, made.ids["revoked"])
        conn.execute(
            "UPDATE tokens SET expires_at = 1.0 WHERE id = :id", {"id": made.ids["expired"]}
        )
    finally:
        conn.close()
    return made


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def basic(user: str, token: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{token}".encode()).decode()}


def call(
    base: str,
    method: str,
    path: str,
    *,
    token: str | None = None,
    body: Any = None,
    data: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 120,
) -> tuple[int, Any]:
    """One request; (status, parsed JSON body). An HTTP error status is a result."""
    all_headers = dict(headers or {})
    if token is not None:
        all_headers.update(bearer(token))
    if body is not None:
        data = json.dumps(body).encode()
        all_headers.setdefault("Content-Type", "application/json")
    request = urllib.request.Request(base + path, data=data, method=method, headers=all_headers)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=timeout) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())
