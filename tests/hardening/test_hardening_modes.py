"""Files and folders hpclaunch creates are private whatever the umask; bad
database locations are one line."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from hardening_helpers import one_error_line, run_main


@pytest.fixture
def open_umask():
    old = os.umask(0)
    yield
    os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_home_queue_and_task_logs_are_private_under_an_open_umask(
    tmp_path, monkeypatch, open_umask
):
    home = tmp_path / "fresh" / "home"
    monkeypatch.setenv("HPCLAUNCH_HOME", str(home))
    for name in ("HPCLAUNCH_DATABASE_URL", "HPCLAUNCH_DATABASE_FILE", "HPCLAUNCH_LOG_DIR"):
        monkeypatch.delenv(name, raising=False)
    assert run_main("enqueue", "--", "sh", "-c", "echo out; echo err >&2").code == 0
    assert run_main("enqueue", "--call", "builtins:print", "--args", '["hi"]').code == 0
    ran = run_main("worker", "--close-on-empty-queue", "--wait-timeout", "0")
    assert ran.code == 0, ran
    assert _mode(home) == 0o700
    assert _mode(tmp_path / "fresh") == 0o700
    assert _mode(home / "hpclaunch.sqlite3") == 0o600
    made = [p for p in home.rglob("*") if p != home / "hpclaunch.sqlite3"]
    assert any(p.name.endswith(".out") for p in made)
    for path in made:
        assert _mode(path) == (0o700 if path.is_dir() else 0o600), path


def test_an_explicit_sqlite_file_is_created_0600(tmp_path, monkeypatch, open_umask):
    monkeypatch.setenv("HPCLAUNCH_HOME", str(tmp_path / "home"))
    db = tmp_path / "q.sqlite3"
    assert run_main("--database", f"sqlite:///{db}", "db", "upgrade").code == 0
    assert _mode(db) == 0o600


@pytest.mark.parametrize(
    "url, words",
    [
        ("sqlite://relative.db", "three slashes"),
        ("sqlite:////no/such/folder/q.db", "does not exist"),
        ("sqlite:////proc/q.db", "cannot create"),
        ("sqlite:///:memory:", "in-memory"),
    ],
)
def test_bad_sqlite_locations_are_one_line(tmp_path, monkeypatch, url, words):
    monkeypatch.setenv("HPCLAUNCH_HOME", str(tmp_path / "home"))
    assert words in one_error_line(run_main("--database", url, "tasks"))


def test_hpclaunch_home_pointing_at_a_file_is_one_line(tmp_path, monkeypatch):
    target = tmp_path / "afile"
    target.write_text("")
    monkeypatch.setenv("HPCLAUNCH_HOME", str(target))
    monkeypatch.delenv("HPCLAUNCH_DATABASE_URL", raising=False)
    assert "HPCLAUNCH_HOME" in one_error_line(run_main("tasks"))
    monkeypatch.setenv("HPCLAUNCH_HOME", str(target / "sub"))
    assert "HPCLAUNCH_HOME" in one_error_line(run_main("stats"))


@pytest.mark.parametrize(
    "argv", [["tasks"], ["db", "upgrade"], ["db", "current"], ["worker", "--singleflow"]]
)
def test_a_file_that_is_not_a_database_is_one_line(tmp_path, monkeypatch, argv):
    monkeypatch.setenv("HPCLAUNCH_HOME", str(tmp_path / "home"))
    db = tmp_path / "notes.txt"
    db.write_bytes(os.urandom(4096))
    line = one_error_line(run_main("--database", f"sqlite:///{db}", *argv))
    assert "not a database" in line


def test_the_local_sites_runs_live_under_hpclaunch_home(tmp_path, monkeypatch):
    """`submit --site local` writes its scripts and logs under HPCLAUNCH_HOME (a private
    folder), not under ~/.hpclaunch, when HPCLAUNCH_HOME moves the home."""
    import json
    import subprocess
    import sys
    import time

    home = tmp_path / "home"
    env = {**os.environ, "HPCLAUNCH_HOME": str(home)}
    env.pop("HPCLAUNCH_DATABASE_URL", None)
    hpclaunch = [sys.executable, "-P", "-m", "hpclaunch"]
    subprocess.run([*hpclaunch, "enqueue", "--", "true"], env=env, check=True)
    out = subprocess.run(
        [*hpclaunch, "submit", "--site", "local", "--workers", "1", "--json"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    submitted = json.loads(out.stdout)
    assert submitted["workdir"] == str(home / "local-runs")
    (job,) = submitted["jobs"]
    assert job["script_path"].startswith(str(home / "local-runs" / submitted["launch_id"]))
    assert not (Path.home() / ".hpclaunch" / "local-runs" / submitted["launch_id"]).exists()
    assert stat.S_IMODE((home / "local-runs").stat().st_mode) & 0o077 == 0
    end = time.monotonic() + 60
    while time.monotonic() < end:
        tasks = json.loads(
            subprocess.run(
                [*hpclaunch, "tasks", "--json"], env=env, check=True, capture_output=True
            ).stdout
        )
        if tasks[0]["status"] == "completed":
            break
        time.sleep(0.5)
    assert tasks[0]["status"] == "completed"
