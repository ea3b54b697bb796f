"""The dashboard over plain HTTP (JavaScript off): sessions, groups, CSRF, every page's data.

A real ``hpclaunch serve`` on SQLite and on PostgreSQL, a real worker to run the
tasks, a real ``submit --site local`` launch for the launch pages.
"""

from __future__ import annotations

import json
import re
import time

from dash_helpers import Browserless, add_user, owned_batch, submitted_by, task_statuses
from server_helpers import get, run_cli, running_server

from hpclaunch.queue import driver

MIXED = 'command: "echo out-{x}; echo boom-{x} >&2; test {x} -lt 3"\nparams:\n  x: [1, 2, 3]\n'
SLOW = 'command: "sleep 60"\nn_runs: 5\ntags: [never]\n'


def _run_worker() -> None:
    out = run_cli("worker", "--close-on-empty-queue", "-t", "default", timeout=180)
    assert out.returncode == 0, out.stderr


def test_pages_show_their_data_without_javascript(queue_url, tmp_path):
    add_user("root", "ops", "admin")
    _, alice = add_user("alice", "lab1")
    mixed = owned_batch(queue_url, tmp_path, "mixed", MIXED, owner="alice", group="lab1")
    fails = 'command: "exit 1"\nn_runs: 1\nmax_attempts: 1\n'
    elsewhere = owned_batch(queue_url, tmp_path, "elsewhere", fails, owner="alice", group="lab1")
    _run_worker()
    submitted = run_cli(
        "submit", "--site", "local", "--workers", "1", "--set", f"workdir={tmp_path / 'runs'}",
        "--json",
    )  # fmt: skip
    assert submitted.returncode == 0, submitted.stderr
    launch_id = json.loads(submitted.stdout)["launch_id"]
    failed_id = _first_failed(queue_url, mixed)
    broken = _broken_launch(queue_url)
    others = _broken_launch(queue_url, "cafe0002")
    # A user sees the launches it submitted (as the API scopes them), not another's.
    submitted_by(queue_url, "alice", launch_id, broken)
    submitted_by(queue_url, "carol", others)
    with running_server(tmp_path / "serve.log") as (_, base):
        web = Browserless(base)
        status, _, headers = web.request("/ui/")
        assert status == 303 and headers["location"].startswith("/ui/login")
        status, _, headers = web.login(alice)
        assert status == 303 and headers["location"] == "/ui/"
        cookie_header = headers["set-cookie"].lower()
        for flag in ("httponly", "samesite=strict", "path=/ui"):
            assert flag in cookie_header
        expected = {
            "/ui/": ["completed", "failed", "Tasks finished per minute", "<svg", "default", broken],
            "/ui/batches": ["mixed", "alice (lab1)", "2 completed", "1 failed", "Retry failed"],
            f"/ui/batches/{mixed}": ["mixed", "2 completed", "mixed[2]"],
            f"/ui/tasks?batch={mixed}&status=failed": ["1 task(s) match", "mixed[2]"],
            f"/ui/tasks/{failed_id}": [
                "boom-3",
                "out-3",
                "exited with code 1",
                "attempt 3",
                "timeline of 3 attempts",
            ],
            f"/ui/launches/{broken}": ["broken", "No module named"],
            "/ui/workers?show=all": ["empty_queue", "default"],
            "/ui/launches": [launch_id, "local"],
            f"/ui/launches/{launch_id}": [launch_id, "Workers timeline", "<svg"],
            "/ui/runtimes": ["default", "p95", "<svg"],
        }
        for path, needles in expected.items():
            status, body, headers = web.request(path)
            assert status == 200, (path, status, body[:500])
            for needle in needles:
                assert needle in body, (path, needle)
            assert "server-timing" in {k.lower() for k in headers}
            assert "default-src 'self'" in headers["content-security-policy"]
            # Nothing is loaded from another host: every src/href is local.
            for ref in re.findall(r'(?:src|href)="([^"]+)"', body):
                assert ref.startswith(("/ui", "?", "#")) or ref == "", (path, ref)
        for path in ("/ui/", "/ui/launches"):
            assert others not in web.request(path)[1], path
        assert web.request(f"/ui/launches/{others}")[0] == 404
        # The chart counts what finished in the last minutes: mixed's 3 and elsewhere's 1.
        _, body, _ = web.request("/ui/")
        assert "tasks finished per minute over the last 180 minutes: 4 in all" in body
        # Launches that need attention come first, with the first failing element's stderr.
        _, body, _ = web.request("/ui/")
        attention = body.index('id="attention"')
        assert attention < body.index("<h1>Queue</h1>") and "No module named" in body[attention:]
        # Parameters are shown with the task: the grid point of mixed[2] is x = 3.
        _, body, _ = web.request(f"/ui/tasks/{failed_id}")
        assert re.search(r"<th>x</th><td>3</td>", body)
        # Retry failed: the batch's failed task goes back on the queue, no other batch's.
        csrf = web.csrf()
        status, _, headers = web.request(f"/ui/batches/{mixed}/retry", {"csrf": csrf})
        assert status == 303 and "did=retry&n=1" in headers["location"]
        assert task_statuses(queue_url, mixed) == {"completed": 2, "pending": 1}
        assert task_statuses(queue_url, elsewhere) == {"failed": 1}
        _, body, _ = web.request(headers["location"])
        assert "Put back on the queue: 1 task(s)." in body
        assert web.request("/ui/tasks?after=abc")[0] == 400
        assert web.request("/ui/tasks?status=bogus")[0] == 400
        assert web.request("/ui/static/app.js")[0] == 200
    log = (tmp_path / "serve.log").read_text()
    assert alice not in log and "Traceback" not in log


def _broken_launch(url: str, launch_id: str = "deadbeef01") -> str:
    """A launch the circuit breaker marked broken (as ``status`` records it)."""
    from hpclaunch.queue import launch_rows

    conn = driver.connect(url)
    try:
        launch_rows.create_launch(
            conn, launch_id=launch_id, site="longleaf", host="login.example", scheduler="slurm",
            workdir="/scratch/runs", log_dir="/scratch/runs/deadbeef01", workers_count=4,
            tags="default", profile={}, chunks=[],
        )  # fmt: skip
        reason = (
            "2 element(s) ended before any worker claimed a task; first: element 0 FAILED; "
            "its stderr ends: ModuleNotFoundError: No module named 'hpclaunch'"
        )
        launch_rows.set_status(conn, launch_id, "broken", reason=reason)
    finally:
        conn.close()
    return launch_id


def _first_failed(url: str, batch_id: int) -> int:
    conn = driver.connect(url)
    try:
        row = conn.one(
            "SELECT id FROM tasks WHERE batch_id = :b AND status = 'failed'", {"b": batch_id}
        )
    finally:
        conn.close()
    return int(row[0])


def test_sessions_groups_and_csrf(queue_url, tmp_path):
    _, root = add_user("root", "ops", "admin")
    alice_token_id, alice = add_user("alice", "lab1")
    _, bob = add_user("bob", "lab2")
    made = run_cli("token", "create", "--user", "bob", "--role", "worker", "--json")
    worker = json.loads(made.stdout)["token"]
    mine = owned_batch(queue_url, tmp_path, "mine", SLOW, owner="alice", group="lab1")
    theirs = owned_batch(queue_url, tmp_path, "theirs", SLOW, owner="bob", group="lab2")
    with running_server(tmp_path / "serve.log") as (_, base):
        # Who may sign in.
        web = Browserless(base)
        status, body, _ = web.login("hpl_not-a-token")
        assert status == 401 and "not valid" in body and web.cookie() is None
        status, body, _ = web.login(worker)
        assert status == 403 and "worker token cannot sign in" in body and web.cookie() is None
        assert web.login(alice)[0] == 303 and web.cookie()
        csrf = web.csrf()

        # A user sees its group only; another group's batch is refused, read or write.
        _, listing, _ = web.request("/ui/batches")
        assert "mine" in listing and "theirs" not in listing
        status, body, _ = web.request(f"/ui/batches/{theirs}")
        assert status == 404 and f"no batch {theirs} in your view" in body
        status, _, _ = web.request(f"/ui/batches/{theirs}/cancel", {"csrf": csrf})
        assert status == 404 and task_statuses(queue_url, theirs) == {"pending": 5}

        # CSRF: no token, a wrong one, or another site's Origin: refused, nothing changes.
        for form, headers in (
            ({}, {}),
            ({"csrf": "forged"}, {}),
            ({"csrf": csrf}, {"Origin": "https://evil.example"}),
        ):
            status, body, _ = web.request(f"/ui/batches/{mine}/cancel", form, headers)
            assert status == 403 and "refused" in body
            assert task_statuses(queue_url, mine) == {"pending": 5}
        status, _, headers = web.request(f"/ui/batches/{mine}/cancel", {"csrf": csrf})
        assert status == 303 and headers["location"].startswith(f"/ui/batches/{mine}?did=cancel")
        assert task_statuses(queue_url, mine) == {"canceled": 5}

        # The cookie opens nothing outside /ui/: the API reads only Authorization.
        cookie = f"hpclaunch_session={web.cookie()}"
        for path in ("/api/v1/tasks", "/nothing", "/api/v1/batches/1"):
            status, body = get(f"{base}{path}", headers={"Cookie": cookie})
            assert status == 401 and body == {"error": "authentication required: a valid token"}

        # An admin sees every group.
        admin = Browserless(base)
        assert admin.login(root)[0] == 303
        assert admin.request(f"/ui/batches/{theirs}")[0] == 200

        # Signing out ends the session for every copy of the cookie.
        copy = Browserless(base)
        assert copy.login(bob)[0] == 303
        stolen = copy.cookie()
        status, _, headers = copy.request("/ui/logout", {"csrf": copy.csrf()})
        assert status == 303 and headers["location"] == "/ui/login"
        replay = Browserless(base)
        status, _, headers = replay.request(
            "/ui/batches", headers={"Cookie": f"hpclaunch_session={stolen}"}
        )
        assert status == 303 and headers["location"].startswith("/ui/login")
        status, _, _ = replay.request(
            "/ui/logout", {"csrf": "x"}, {"Cookie": f"hpclaunch_session={stolen}"}
        )
        assert status == 401

        # A tampered cookie is no session.
        good = web.cookie() or ""
        forged = good[:-2] + ("BB" if good.endswith("AA") else "AA")
        status, _, _ = Browserless(base).request(
            "/ui/", headers={"Cookie": f"hpclaunch_session={forged}"}
        )
        assert status == 303

        # Revoking the token ends its sessions at the next request.
        assert web.request("/ui/")[0] == 200
        assert run_cli("token", "revoke", str(alice_token_id)).returncode == 0
        status, _, headers = web.request("/ui/")
        assert status == 303 and headers["location"].startswith("/ui/login")
    log = (tmp_path / "serve.log").read_text()
    for secret in (root, alice, bob, worker):
        assert secret not in log
    assert "Traceback" not in log


def test_one_read_per_page_whatever_the_viewers(queue_url, tmp_path):
    """Twenty viewers of the same page within the cache's few seconds cost one read of
    its data (each reply's Server-Timing says whether it read the database)."""
    _, alice = add_user("alice", "lab1")
    owned_batch(queue_url, tmp_path, "b", SLOW, owner="alice", group="lab1")
    with running_server(tmp_path / "serve.log") as (_, base):
        viewers = [Browserless(base) for _ in range(20)]
        for v in viewers:
            assert v.login(alice)[0] == 303
        reads = []
        started = time.monotonic()
        for v in viewers:
            status, _, headers = v.request("/ui/batches")
            assert status == 200
            timing = dict(
                part.strip().split(";dur=") for part in headers["server-timing"].split(",")
            )
            reads.append(float(timing["db"]) > 0)
        elapsed = time.monotonic() - started
        # One read per cache period (3 s) at most, however many viewers asked.
        assert 1 <= sum(reads) <= 1 + int(elapsed / 3.0), (reads, elapsed)
