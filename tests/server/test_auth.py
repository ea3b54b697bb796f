"""Accounts and deny-by-default authentication on a real server."""

from __future__ import annotations

import base64
import json
import subprocess

from server_helpers import get, run_cli, running_server

ROUTES = [
    ("GET", "/api/v1/tasks"),
    ("POST", "/api/v1/claim"),
    ("GET", "/nothing"),
    ("GET", "/uinfo"),  # only /, /ui and /ui/... are the dashboard's (its own sign-in)
    ("GET", "/api/ui/x"),
]


def _token(user: str, role: str = "user", *extra: str) -> tuple[int, str]:
    out = run_cli("token", "create", "--user", user, "--role", role, "--json", *extra)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["token"].startswith("hpl_") and len(data["token"]) > 40
    return data["id"], data["token"]


def _basic(user: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()}


def test_accounts_cli(queue_url):
    assert run_cli("user", "add", "alice", "--group", "g1").returncode == 0
    again = run_cli("user", "add", "alice", "--group", "g1")
    assert again.returncode != 0 and "already exists" in again.stderr
    bad = run_cli("user", "add", "bad name", "--group", "g1")
    assert bad.returncode != 0 and "bad user name" in bad.stderr and "Traceback" not in bad.stderr
    not_admin = run_cli("token", "create", "--user", "alice", "--role", "admin")
    assert not_admin.returncode != 0 and "not an admin" in not_admin.stderr
    nobody = run_cli("token", "create", "--user", "bob", "--role", "user")
    assert nobody.returncode != 0 and "no user 'bob'" in nobody.stderr
    assert run_cli("user", "add", "root1", "--group", "ops", "--admin").returncode == 0
    _token("root1", "admin")
    plain = run_cli("token", "create", "--user", "alice", "--role", "worker", "--share-group")
    assert plain.returncode == 0 and plain.stdout.strip().startswith("hpl_")
    secret = plain.stdout.strip()
    listing = run_cli("token", "list", "--json")
    assert listing.returncode == 0
    rows = json.loads(listing.stdout)
    assert [(r["user"], r["role"], r["share_group"]) for r in rows] == [
        ("root1", "admin", False),
        ("alice", "worker", True),
    ]
    assert secret not in listing.stdout and "hpl_" not in listing.stdout
    assert run_cli("token", "revoke", str(rows[1]["id"])).returncode == 0
    missing = run_cli("token", "revoke", "999")
    assert missing.returncode != 0 and "no token 999" in missing.stderr


def test_deny_by_default(queue_url, tmp_path):
    assert run_cli("user", "add", "alice", "--group", "g1").returncode == 0
    assert run_cli("user", "add", "bob", "--group", "g1").returncode == 0
    alice_id, alice = _token("alice")
    _, expiring = _token("alice", "worker", "--expires", "1")
    log = tmp_path / "serve.log"
    with running_server(log) as (_, base):
        assert get(f"{base}/healthz") == (200, {"status": "ok"})
        wrong = [
            {},
            {"Cookie": f"session={alice}; token={alice}"},
            {"Authorization": "Bearer hpl_not-a-token"},
            {"Authorization": f"Token {alice}"},
            {"Authorization": "Basic !!!"},
            _basic("bob", alice),  # a name that is not the token's owner
        ]
        for method, path in ROUTES:
            for headers in wrong:
                status, body = get(f"{base}{path}", method=method, headers=headers)
                assert status == 401, (method, path, headers.keys())
                assert body == {"error": "authentication required: a valid token"}
        # With valid credentials the request passes authentication, to the router.
        for headers in ({"Authorization": f"Bearer {alice}"}, _basic("alice", alice)):
            assert get(f"{base}/api/v1/no-such-route", headers=headers) == (
                404,
                {"error": "no such route"},
            )
        curl = subprocess.run(
            ["curl", "-sS", "--noproxy", "*", "-u", f"alice:{alice}", f"{base}/api/v1/stats"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert json.loads(curl.stdout)["total"] == 0, curl.stdout
        curl = subprocess.run(
            [
                "curl",
                "-sS",
                "--noproxy",
                "*",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                f"{base}/api/v1/tasks",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert curl.stdout == "401"
        # Revoked and expired tokens are refused at once (a cached identity is forgotten).
        assert run_cli("token", "revoke", str(alice_id)).returncode == 0
        assert get(f"{base}/x", headers={"Authorization": f"Bearer {alice}"})[0] == 401
        assert get(f"{base}/x", headers={"Authorization": f"Bearer {expiring}"})[0] == 404
        from hpclaunch.queue import driver

        conn = driver.connect(queue_url)
        try:
            conn.execute("UPDATE tokens SET expires_at = 1.0 WHERE role = 'worker'")
        finally:
            conn.close()
        assert get(f"{base}/x", headers={"Authorization": f"Bearer {expiring}"})[0] == 401
    text = log.read_text()
    assert alice not in text and expiring not in text and "Traceback" not in text
