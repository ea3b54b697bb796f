"""``hpclaunch serve``: a real server process on SQLite and on the real PostgreSQL."""

from __future__ import annotations

import concurrent.futures
import os
import ssl
import subprocess
import sys
import urllib.error
import urllib.parse
from pathlib import Path

import pytest
from server_helpers import get, run_cli, running_server, sockets_to_port


def test_healthz_answers_and_unknown_routes_are_json_errors(queue_url, tmp_path):
    with running_server(tmp_path / "serve.log") as (proc, base):
        assert get(f"{base}/healthz") == (200, {"status": "ok"})
        assert get(f"{base}/healthz", method="POST") == (
            405,
            {"error": "method not allowed on this route"},
        )
        limits = Path(f"/proc/{proc.pid}/limits").read_text()
        row = next(line for line in limits.splitlines() if line.startswith("Max open files"))
        soft, hard = row.split()[3:5]
        assert soft == hard, row  # raised to the hard limit for thousands of long-polls
    assert proc.returncode in (0, -15)  # SIGTERM: a graceful stop
    log = (tmp_path / "serve.log").read_text()
    assert "Traceback" not in log
    password = urllib.parse.urlsplit(queue_url).password
    if password:
        assert password not in log


def test_the_pool_bounds_database_connections(pg_queue_url, tmp_path):
    pg_port = urllib.parse.urlsplit(pg_queue_url).port or 5432
    with running_server(tmp_path / "serve.log", "--pool-size", "2") as (proc, base):
        with concurrent.futures.ThreadPoolExecutor(40) as pool:
            replies = list(pool.map(lambda _: get(f"{base}/healthz"), range(200)))
        assert all(reply == (200, {"status": "ok"}) for reply in replies)
        # The pool's connections, plus the process's two listeners (LISTEN): the wake-up
        # one and the accounts one.
        assert 1 <= sockets_to_port(proc.pid, pg_port) <= 2 + 2


def test_the_server_path_never_imports_sqlalchemy(queue_url):
    code = (
        "import asyncio, sys\n"
        "from hpclaunch.queue import db\n"
        "from hpclaunch.queue.health import ping\n"
        "from hpclaunch.server.app import create_app\n"
        "from hpclaunch.server.pool import Pool\n"
        "import uvicorn\n"
        f"pool = Pool({queue_url!r}, 2, first=db.connect({queue_url!r}))\n"
        "create_app(pool)\n"
        "asyncio.run(pool.run(ping))\n"
        "print(sorted(m for m in sys.modules if m.startswith('sqlalchemy')))\n"
    )
    db_ready = run_cli("db", "upgrade")  # the schema is current, as when a server starts
    assert db_ready.returncode == 0, db_ready.stderr
    out = subprocess.run(
        [sys.executable, "-P", "-c", code], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return cert, key


def test_tls_is_served_and_verified(tmp_path, monkeypatch):
    monkeypatch.setenv("HPCLAUNCH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HPCLAUNCH_DATABASE_URL", f"sqlite:///{tmp_path / 'q.sqlite3'}")
    cert, key = _self_signed(tmp_path)
    trusting = ssl.create_default_context(cafile=str(cert))
    args = ("--tls-cert", str(cert), "--tls-key", str(key))
    with running_server(tmp_path / "serve.log", *args, scheme="https", context=trusting) as (
        _,
        base,
    ):
        assert get(f"{base}/healthz", context=trusting) == (200, {"status": "ok"})
        with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
            get(f"{base}/healthz", context=ssl.create_default_context())
        curl = subprocess.run(
            ["curl", "-sS", "--noproxy", "*", "--cacert", str(cert), f"{base}/healthz"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert curl.returncode == 0, curl.stderr
        assert curl.stdout == '{"status":"ok"}'


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tls-cert", "c.pem"], "--tls-cert and --tls-key go together"),
        (["--tls-cert", "c.pem", "--tls-key", "k.pem"], "c.pem: no such file"),
        (["--port", "70000"], "Invalid value for '--port'"),
        (["--pool-size", "0"], "Invalid value for '--pool-size'"),
    ],
)
def test_bad_flags_are_one_clear_line(args, message, tmp_path):
    out = run_cli("serve", *args, cwd=tmp_path, env={"HPCLAUNCH_HOME": str(tmp_path)})
    assert out.returncode != 0
    assert message in out.stderr
    assert "Traceback" not in out.stderr


def test_an_unreachable_database_is_one_line(tmp_path):
    out = run_cli(
        "--database",
        "postgresql://nobody:s3cret@127.0.0.1:1/x",
        "serve",
        env={"HPCLAUNCH_HOME": str(tmp_path)},
        timeout=120,
    )
    assert out.returncode != 0
    assert "cannot connect" in out.stderr
    assert "s3cret" not in out.stderr and "Traceback" not in out.stderr
    assert os.path.exists(tmp_path)  # nothing else happened
