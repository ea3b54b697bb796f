"""Queue fixtures: every queue test runs on SQLite and on the real PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

TABLES = "launch_elements, launch_jobs, launches, task_attempts, tasks, workers, batches"


@pytest.fixture(scope="session")
def _pg_migrated(request):
    url = request.getfixturevalue("pg_url")
    from hpclaunch.queue import migrate

    migrate.upgrade(url)
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def queue_url(request, tmp_path, monkeypatch) -> str:
    """A fresh, migrated queue database; also exported for subprocesses."""
    monkeypatch.setenv("HPCLAUNCH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HPCLAUNCH_LOG_DIR", str(tmp_path / "logs"))
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'queue.sqlite3'}"
    else:
        url = request.getfixturevalue("_pg_migrated")
        from hpclaunch.queue import driver

        conn = driver.connect(url)
        try:
            conn.execute(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")
        finally:
            conn.close()
    monkeypatch.setenv("HPCLAUNCH_DATABASE_URL", url)
    from hpclaunch.queue.db import get_engine

    get_engine.cache_clear()
    return url


@pytest.fixture
def queue(queue_url):
    from hpclaunch import Queue

    return Queue(queue_url)


def hpclaunch_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "hpclaunch", *args]


def run_cli(*args: str, check: bool = False, timeout: float = 120, **kw):
    """Run the real CLI in a subprocess (the way a user does)."""
    return subprocess.run(hpclaunch_cmd(*args), capture_output=True, text=True, check=check,
                          timeout=timeout, env={**os.environ, **kw.pop("env", {})}, **kw)


def start_worker(*args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen(hpclaunch_cmd("worker", *args), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def marker_counts(folder: Path) -> dict[str, int]:
    return {p.name: len(p.read_text().splitlines()) for p in folder.iterdir()}
