"""Workers over HTTP against a real ``hpclaunch serve``, on SQLite and PostgreSQL:
draining, signals, owner matching, wake-up latency, proxies, versions and refusals."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
from server_helpers import run_cli, running_server
from waiting import wait_until
from worker_http_helpers import (
    ForwardingProxy,
    assert_each_ran_once,
    enqueue_markers,
    set_owner,
    sql,
    start_http_worker,
    status_counts,
    stop,
    worker_env,
    worker_token,
)

from hpclaunch import Queue
from hpclaunch.queue import wire

N_TASKS = 2000
N_WORKERS = 8


def test_eight_http_workers_drain_2000_tasks_exactly_once(queue_url, tmp_path):
    token = worker_token()
    markers = tmp_path / "markers"
    markers.mkdir()
    enqueue_markers(queue_url, markers, N_TASKS)
    with running_server(tmp_path / "serve.log", "--pool-size", "4") as (_, base):
        errs = [tmp_path / f"w{i}.err" for i in range(N_WORKERS)]
        procs = [
            start_http_worker(base, token, "--close-on-empty-queue", "-q", err=e) for e in errs
        ]
        try:
            codes = [p.wait(timeout=600) for p in procs]
        finally:
            for p in procs:
                stop(p)
    assert codes == [0] * N_WORKERS, [e.read_text() for e in errs]
    assert_each_ran_once(queue_url, markers, N_TASKS)
    rows = sql(queue_url, "SELECT exit_reason, token_id FROM workers")
    assert len(rows) == N_WORKERS and {r[0] for r in rows} == {"empty_queue"}
    assert all(r[1] is not None for r in rows)  # registered through the server


def _running_task(url: str) -> bool:
    return status_counts(url).get("running", 0) == 1


def test_sigkill_mid_task_returns_the_task_after_its_lease(queue_url, tmp_path):
    token = worker_token()
    first = tmp_path / "first"
    again = tmp_path / "again"
    run_cli(
        "enqueue",
        "--",
        "sh",
        "-c",
        f"if [ -e {first} ]; then touch {again}; else touch {first}; sleep 120; fi",
    )
    with running_server(tmp_path / "serve.log") as (_, base):
        victim = start_http_worker(base, token, "--lease", "2", err=tmp_path / "victim.err")
        try:
            wait_until(lambda: first.exists(), timeout=60, what="the task running")
            victim.send_signal(signal.SIGKILL)
            victim.wait()
            assert status_counts(queue_url) == {"running": 1}  # nobody gave it back yet
            rescuer = start_http_worker(
                base,
                token,
                "--close-on-empty-queue",
                "--wait-timeout",
                "30",
                "--lease",
                "2",
                err=tmp_path / "rescuer.err",
            )
            assert rescuer.wait(timeout=120) == 0, (tmp_path / "rescuer.err").read_text()
        finally:
            stop(victim)
    assert again.exists()
    assert sql(queue_url, "SELECT status, attempts FROM tasks") == [("completed", 2)]
    outcomes = sql(queue_url, "SELECT outcome FROM task_attempts ORDER BY id")
    assert [o for (o,) in outcomes] == ["lost", "completed"]


def test_sigterm_puts_the_task_back_uncounted(queue_url, tmp_path):
    token = worker_token()
    run_cli("enqueue", "--", "sleep", "120")
    with running_server(tmp_path / "serve.log") as (_, base):
        err = tmp_path / "w.err"
        worker = start_http_worker(base, token, "--grace", "1", err=err)
        try:
            wait_until(lambda: _running_task(queue_url), timeout=60, what="the task running")
            worker.send_signal(signal.SIGTERM)
            assert worker.wait(timeout=60) == 0, err.read_text()
        finally:
            stop(worker)
    assert sql(queue_url, "SELECT status, attempts, worker_id FROM tasks") == [("pending", 0, None)]
    assert sql(queue_url, "SELECT outcome, reason FROM task_attempts") == [("released", "stopped")]
    assert sql(queue_url, "SELECT exit_reason FROM workers") == [("signal",)]


def test_a_worker_token_claims_only_its_users_tasks_or_with_share_group_its_groups(
    queue_url, tmp_path
):
    alice = worker_token("alice", "g1")
    alice_shared = worker_token("alice", "g1", "--share-group")
    worker_token("carol", "g1")  # alice's group
    worker_token("bob", "g2")
    markers = tmp_path / "m"
    markers.mkdir()
    ids = enqueue_markers(queue_url, markers, 6)
    set_owner(queue_url, ids[0:2], "alice", "g1")
    set_owner(queue_url, ids[2:4], "carol", "g1")
    set_owner(queue_url, ids[4:6], "bob", "g2")

    def run(token: str, name: str) -> set[int]:
        err = tmp_path / f"{name}.err"
        proc = start_http_worker(base, token, "--close-on-empty-queue", err=err)
        assert proc.wait(timeout=120) == 0, err.read_text()
        done = sql(queue_url, "SELECT id FROM tasks WHERE status = 'completed'")
        return {i for (i,) in done}

    with running_server(tmp_path / "serve.log") as (_, base):
        assert run(alice, "alice") == set(ids[0:2])  # not carol's, not bob's
        assert run(alice_shared, "shared") == set(ids[0:4])  # now the group's too
        assert status_counts(queue_url) == {"completed": 4, "pending": 2}  # bob's wait

        # A worker row is used only by the token that registered it; user tokens
        # never reach worker routes.
        headers = {
            "Authorization": f"Bearer {alice}",
            wire.PROTOCOL_HEADER: str(wire.PROTOCOL),
            "Content-Type": "application/json",
        }
        others = sql(queue_url, "SELECT MAX(id) FROM workers")[0][0]
        bob = worker_token("bob", "g2")
        bob_headers = {**headers, "Authorization": f"Bearer {bob}"}
        status, body = _post(f"{base}/api/v1/workers/{others}/exit", {"reason": "x"}, bob_headers)
        assert (status, body) == (404, {"error": f"no worker {others}"})
        user = json.loads(
            run_cli("token", "create", "--user", "bob", "--role", "user", "--json").stdout
        )["token"]
        status, body = _post(
            f"{base}/api/v1/claim", {}, {**headers, "Authorization": f"Bearer {user}"}
        )
        assert status == 403 and body == {"error": "this route is for worker tokens"}


def _post(url: str, body: dict, headers: dict[str, str]) -> tuple[int, dict]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers=headers, method="POST"
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=30) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_an_idle_long_polling_worker_starts_new_work_quickly(queue_url, tmp_path):
    token = worker_token()
    stamp = tmp_path / "started"
    with running_server(tmp_path / "serve.log") as (proc, base):
        err = tmp_path / "w.err"
        worker = start_http_worker(base, token, "--nitems-max", "1", err=err)
        try:
            wait_until(lambda: "started" in err.read_text(), timeout=60, what="worker up")
            time.sleep(3)  # idle, long-polling: its claim waits in the server
            queue = Queue(queue_url)
            queue.conn  # noqa: B018 - connected before the clock starts
            enqueued = time.time()
            # Straight into the database from another process, as psql or a script would.
            queue.enqueue_command(f"date +%s.%N > {stamp}")
            queue.close()
            assert worker.wait(timeout=60) == 0, err.read_text()
        finally:
            stop(worker)
    latency = float(stamp.read_text()) - enqueued
    # Generous for a loaded machine (the task's own shell start is inside it); a
    # polling worker's 2 s backoff would often miss it.
    assert latency < 2.0, latency


def test_an_incompatible_worker_is_refused_with_one_line(queue_url, tmp_path):
    token = worker_token()
    with running_server(tmp_path / "serve.log") as (_, base):
        status, body = _post(
            f"{base}/api/v1/workers",
            {},
            {"Authorization": f"Bearer {token}", wire.PROTOCOL_HEADER: "99"},
        )
        assert status == 426
        assert "needs workers speaking worker protocol 1" in body["error"]
        code = (
            "import hpclaunch.queue.wire as w; w.PROTOCOL = 99\n"
            "from hpclaunch.cli import main\n"
            f"main(['worker', '--server', {base!r}, '--singleflow'])\n"
        )
        out = subprocess.run(
            [sys.executable, "-P", "-c", code],
            capture_output=True,
            text=True,
            timeout=120,
            env=worker_env(token),
        )
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    assert "needs workers speaking worker protocol 1" in lines[0]
    assert "sent protocol 99" in lines[0]


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (
            ["--server", "http://192.0.2.10:8097"],
            {},
            "refusing plain http:// to 192.0.2.10",
        ),
        (["--server", "ftp://x"], {}, "--server takes an https:// (or http://) URL"),
        (["--server", "https://x.invalid"], {"HPCLAUNCH_TOKEN": ""}, "needs a token"),
    ],
)
def test_worker_refusals_are_one_line(tmp_path, args, env, message):
    out = run_cli("worker", *args, "--singleflow", env={"HPCLAUNCH_TOKEN": "hpl_x", **env})
    assert out.returncode != 0
    assert out.stderr.strip().splitlines() == [out.stderr.strip()], out.stderr
    assert message in out.stderr and "Traceback" not in out.stderr


def test_server_and_database_together_and_a_readable_token_file(tmp_path):
    both = run_cli(
        "--database", "sqlite:///x.db", "worker", "--server", "https://h", "--singleflow"
    )
    assert both.returncode != 0 and "give --server or --database, not both" in both.stderr
    token_file = tmp_path / "token"
    token_file.write_text("hpl_secret\n")
    token_file.chmod(0o644)
    loose = run_cli(
        "worker",
        "--server",
        "https://h.invalid",
        "--singleflow",
        env={"HPCLAUNCH_TOKEN": "", "HPCLAUNCH_TOKEN_FILE": str(token_file)},
    )
    assert loose.returncode != 0 and "chmod 600" in loose.stderr
    assert "hpl_secret" not in loose.stderr and "Traceback" not in loose.stderr
    # --insecure-http lets it try (and give up after --db-wait on an unroutable address).
    token_file.chmod(0o600)
    tried = run_cli(
        "worker",
        "--server",
        "http://192.0.2.10:9",
        "--insecure-http",
        "--singleflow",
        "--db-wait",
        "1",
        env={"HPCLAUNCH_TOKEN": "", "HPCLAUNCH_TOKEN_FILE": str(token_file)},
        timeout=180,
    )
    assert tried.returncode == 4, tried.stderr
    assert "refusing" not in tried.stderr and "hpl_secret" not in tried.stderr


def test_the_http_worker_path_imports_no_database_library(queue_url, tmp_path):
    token = worker_token()
    with running_server(tmp_path / "serve.log") as (_, base):
        code = (
            "import sys\nfrom hpclaunch.cli import main\n"
            "try:\n"
            f"    main(['worker', '--server', {base!r}, '--singleflow', '-q'])\n"
            "except SystemExit as exc:\n"
            "    assert exc.code in (0, None), exc.code\n"
            "heavy = [m for m in ('sqlalchemy', 'psycopg', 'alembic', 'sqlite3', 'rich', "
            "'jinja2', 'paramiko', 'tenacity') if m in sys.modules]\n"
            "print('HEAVY:' + ','.join(heavy))\n"
        )
        out = subprocess.run(
            [sys.executable, "-P", "-c", code],
            capture_output=True,
            text=True,
            timeout=120,
            env=worker_env(token),
        )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "HEAVY:"
    assert sql(queue_url, "SELECT exit_reason FROM workers") == [("empty_queue",)]


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_a_worker_reaches_the_server_through_an_http_proxy(tmp_path, monkeypatch, scheme):
    from test_serve import _self_signed

    monkeypatch.setenv("HPCLAUNCH_HOME", str(tmp_path / "home"))
    url = f"sqlite:///{tmp_path / 'q.sqlite3'}"
    monkeypatch.setenv("HPCLAUNCH_DATABASE_URL", url)
    token = worker_token()
    markers = tmp_path / "m"
    markers.mkdir()
    enqueue_markers(url, markers, 5)
    args: tuple[str, ...] = ()
    context = None
    extra = {}
    if scheme == "https":
        import ssl

        cert, key = _self_signed(tmp_path)
        args = ("--tls-cert", str(cert), "--tls-key", str(key))
        context = ssl.create_default_context(cafile=str(cert))
        extra = {"HPCLAUNCH_CA_BUNDLE": str(cert)}
    proxy = ForwardingProxy()
    try:
        with running_server(tmp_path / "serve.log", *args, scheme=scheme, context=context) as (
            _,
            base,
        ):
            env = worker_env(token, **extra, **{f"{scheme.upper()}_PROXY": proxy.url})
            err = tmp_path / "w.err"
            worker = start_http_worker(base, token, "--close-on-empty-queue", err=err, env=env)
            assert worker.wait(timeout=120) == 0, err.read_text()
            # NO_PROXY names the server: the proxy is bypassed.
            before = len(proxy.connects) + len(proxy.forwarded)
            env["NO_PROXY"] = "127.0.0.1"
            direct = start_http_worker(base, token, "--close-on-empty-queue", err=err, env=env)
            assert direct.wait(timeout=120) == 0, err.read_text()
    finally:
        proxy.close()
    assert_each_ran_once(url, markers, 5)
    port = base.rsplit(":", 1)[1]
    if scheme == "https":
        assert proxy.connects and set(proxy.connects) == {f"127.0.0.1:{port}"}
    else:
        assert len(proxy.forwarded) >= 5 and all(
            u.startswith(f"http://127.0.0.1:{port}/api/v1/") for u in proxy.forwarded
        )
    assert len(proxy.connects) + len(proxy.forwarded) == before  # NO_PROXY: not through it


def test_malformed_worker_requests_get_one_clear_4xx_never_a_500(tmp_path, monkeypatch):
    monkeypatch.setenv("HPCLAUNCH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HPCLAUNCH_DATABASE_URL", f"sqlite:///{tmp_path / 'q.sqlite3'}")
    token = worker_token()
    headers = {
        "Authorization": f"Bearer {token}",
        wire.PROTOCOL_HEADER: str(wire.PROTOCOL),
        "Content-Type": "application/json",
    }
    info = {
        "host": "h",
        "pid": 1,
        "tags": "default",
        "tag_sets": ["default"],
        "mode": "draining",
        "lease": 60,
        "allow_pickle": True,
        "fit_deadline": False,
        "version": "x",
    }
    with running_server(tmp_path / "serve.log") as (_, base):
        status, body = _post(f"{base}/api/v1/workers", info, headers)
        assert status == 201
        worker = body["worker"]
        bad = [
            ("/api/v1/workers", {**info, "pid": "one"}, 422),
            ("/api/v1/workers", {**info, "launch_id": "x" * 65}, 422),
            ("/api/v1/workers", {k: v for k, v in info.items() if k != "lease"}, 422),
            ("/api/v1/workers", {**info, "tag_sets": ["a"] * 300}, 422),
            ("/api/v1/claim", {"worker": worker, "info": info}, 422),  # no request_id
            ("/api/v1/claim", {"worker": "1", "info": info, "request_id": "r"}, 422),
            ("/api/v1/claim", {"worker": 999, "info": info, "request_id": "r"}, 404),
            ("/api/v1/tasks/1/finish", {"worker": worker, "request_id": "r"}, 422),
            ("/api/v1/tasks/1/release", {"worker": worker, "token": "t", "attempt": 1}, 422),
            (f"/api/v1/workers/{worker}/exit", {"reason": 7}, 422),
            (f"/api/v1/workers/{worker}/heartbeat", {"lease": -1}, 422),
        ]
        for path, payload, expected in bad:
            status, body = _post(f"{base}{path}", payload, headers)
            assert (status, sorted(body)) == (expected, ["error"]), (path, status, body)
        request = urllib.request.Request(
            f"{base}/api/v1/claim", data=b"{not json", headers=headers, method="POST"
        )
        try:
            urllib.request.build_opener(urllib.request.ProxyHandler({})).open(request)
        except urllib.error.HTTPError as exc:
            assert exc.code == 400
            assert json.loads(exc.read()) == {"error": "the request body is not valid JSON"}
        else:
            raise AssertionError("malformed JSON was accepted")
    assert "Traceback" not in (tmp_path / "serve.log").read_text()


def test_cluster_with_a_server_runs_its_workers_over_http(tmp_path, monkeypatch):
    monkeypatch.setenv("HPCLAUNCH_HOME", str(tmp_path / "home"))
    url = f"sqlite:///{tmp_path / 'q.sqlite3'}"
    monkeypatch.setenv("HPCLAUNCH_DATABASE_URL", url)
    token = worker_token()
    markers = tmp_path / "m"
    markers.mkdir()
    enqueue_markers(url, markers, 20)
    with running_server(tmp_path / "serve.log") as (_, base):
        out = subprocess.run(
            [sys.executable, "-P", "-m", "hpclaunch", "cluster", "2", "--close-on-empty-queue"],
            capture_output=True,
            text=True,
            timeout=180,
            env=worker_env(token, HPCLAUNCH_SERVER=base),
        )
    assert out.returncode == 0, out.stderr
    assert_each_ran_once(url, markers, 20)
    rows = sql(url, "SELECT exit_reason, token_id FROM workers")
    assert len(rows) == 2 and all(r == ("empty_queue", 1) for r in rows), rows
    assert token not in out.stderr


def test_a_client_that_goes_away_stops_its_long_poll(tmp_path, monkeypatch):
    """Else the server would claim the next task for nobody (until its lease ran out)."""
    import socket

    monkeypatch.setenv("HPCLAUNCH_HOME", str(tmp_path / "home"))
    url = f"sqlite:///{tmp_path / 'q.sqlite3'}"
    monkeypatch.setenv("HPCLAUNCH_DATABASE_URL", url)
    token = worker_token()
    headers = {
        "Authorization": f"Bearer {token}",
        wire.PROTOCOL_HEADER: str(wire.PROTOCOL),
        "Content-Type": "application/json",
    }
    info = {
        "host": "h",
        "pid": 1,
        "tags": "default",
        "tag_sets": ["default"],
        "mode": "draining",
        "lease": 60,
        "allow_pickle": True,
        "fit_deadline": False,
        "version": "x",
    }
    with running_server(tmp_path / "serve.log") as (_, base):
        worker = _post(f"{base}/api/v1/workers", info, headers)[1]["worker"]
        body = json.dumps(
            {"worker": worker, "info": info, "wait": 60, "request_id": "gone"}
        ).encode()
        port = int(base.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port)) as sock:
            head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
            sock.sendall(
                f"POST /api/v1/claim HTTP/1.1\r\nHost: x\r\n{head}"
                f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            time.sleep(1.5)  # the claim found nothing and waits in the server
        time.sleep(0.5)  # the client is gone
        assert run_cli("enqueue", "--", "true").returncode == 0
        time.sleep(3)  # a wake-up (at most a second on SQLite) and a claim would be done
        assert status_counts(url) == {"pending": 1}
        # The same request, asked again by a client that stays, gets it.
        status, answer = _post(
            f"{base}/api/v1/claim",
            {"worker": worker, "info": info, "wait": 5, "request_id": "gone"},
            headers,
        )
        assert status == 200 and answer["task"]["id"] == 1
