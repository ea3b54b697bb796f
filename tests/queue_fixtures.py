"""Queue fixtures: queue tests run on SQLite and on the real PostgreSQL."""

from __future__ import annotations

import pytest

TABLES = (
    "launch_elements, launch_jobs, launches, task_attempts, tasks, workers, batches, tokens, "
    "users, worker_requests, ui_secrets, ui_sessions, keepers"
)


@pytest.fixture(scope="session")
def _pg_migrated(request):
    url = request.getfixturevalue("pg_url")
    from hpclaunch.queue import migrate

    migrate.upgrade(url)
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def queue_url(request, tmp_path, monkeypatch) -> str:
    """A fresh, migrated queue database; also exported for subprocesses."""
    return _fresh_queue(request, request.param, tmp_path, monkeypatch)


@pytest.fixture
def pg_queue_url(request, tmp_path, monkeypatch) -> str:
    """Like ``queue_url``, PostgreSQL only (workers on the cluster share it)."""
    return _fresh_queue(request, "postgresql", tmp_path, monkeypatch)


def _fresh_queue(request, kind: str, tmp_path, monkeypatch) -> str:
    monkeypatch.setenv("HPCLAUNCH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HPCLAUNCH_LOG_DIR", str(tmp_path / "logs"))
    if kind == "sqlite":
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
    return url


@pytest.fixture
def queue(queue_url):
    from hpclaunch import Queue

    return Queue(queue_url)
