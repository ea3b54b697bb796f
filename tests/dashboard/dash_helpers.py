"""Helpers for the dashboard tests: accounts, owned batches, a cookie-keeping HTTP client."""

from __future__ import annotations

import http.cookiejar
import json
import re
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from server_helpers import run_cli

from hpclaunch.queue import driver


def add_user(name: str, group: str, role: str = "user") -> tuple[int, str]:
    """A user in ``group`` and a token of ``role`` for it: (token id, secret)."""
    extra = ["--admin"] if role == "admin" else []
    added = run_cli("user", "add", name, "--group", group, *extra)
    assert added.returncode == 0, added.stderr
    out = run_cli("token", "create", "--user", name, "--role", role, "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    return data["id"], data["token"]


def owned_batch(url: str, folder: Path, name: str, body: str, *, owner: str, group: str) -> int:
    """Enqueue a batch file with the real CLI, then give it (and its tasks) an owner.

    The CLI enqueues as the ``local`` user; the server's enqueue routes (another
    part) set owners themselves. Here the test plays that part with one UPDATE.
    """
    path = folder / f"{name}.yaml"
    path.write_text(f"name: {name}\n{body}")
    out = run_cli("enqueue", "--file", str(path), "--json")
    assert out.returncode == 0, out.stderr
    batch_id = json.loads(out.stdout)["batch_id"]
    conn = driver.connect(url)
    try:
        for table, key in (("batches", "id"), ("tasks", "batch_id")):
            conn.execute(
                f"UPDATE {table} SET owner = :o, owner_group = :g WHERE {key} = :b",
                {"o": owner, "g": group, "b": batch_id},
            )
    finally:
        conn.close()
    return batch_id


def task_statuses(url: str, batch_id: int) -> dict[str, int]:
    conn = driver.connect(url)
    try:
        rows = conn.execute(
            "SELECT status, COUNT(*) FROM tasks WHERE batch_id = :b GROUP BY status",
            {"b": batch_id},
        ).fetchall()
    finally:
        conn.close()
    return {s: int(n) for s, n in rows}


class Browserless:
    """A plain HTTP client with a cookie jar: the dashboard with JavaScript off."""

    def __init__(self, base: str):
        self.base = base
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}),
            urllib.request.HTTPCookieProcessor(self.jar),
            _NoRedirect(),
        )

    def request(
        self,
        path: str,
        form: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, str, dict[str, str]]:
        """(status, body, headers); redirects are returned, not followed."""
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        req = urllib.request.Request(self.base + path, data=data, headers=headers or {})
        try:
            with self.opener.open(req, timeout=30) as reply:
                return reply.status, reply.read().decode(), dict(reply.headers)
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(), dict(exc.headers)

    def login(self, token: str) -> tuple[int, str, dict[str, str]]:
        return self.request("/ui/login", {"token": token, "next": "/ui/"})

    def cookie(self) -> str | None:
        return next((c.value for c in self.jar if c.name == "hpclaunch_session"), None)

    def csrf(self, path: str = "/ui/") -> str:
        status, body, _ = self.request(path)
        assert status == 200, (status, body[:300])
        match = re.search(r'name="csrf" value="([^"]+)"', body)
        assert match, "no CSRF field on the page"
        return match.group(1)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


def submitted_by(url: str, user: str, *launch_ids: str) -> None:
    """Record launches as ``user``'s: a dashboard user sees the launches it submitted
    (``queue.scope.launch_condition``), and the tests submit as the Unix account."""
    conn = driver.connect(url)
    try:
        for launch_id in launch_ids:
            conn.execute(
                "UPDATE launches SET submitted_by = :u WHERE id = :i", {"u": user, "i": launch_id}
            )
    finally:
        conn.close()
