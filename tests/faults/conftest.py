"""Fault-test fixtures. PostgreSQL tests use a private database on the shared
server (created and dropped here): other engineers' runs share the server and
``HPCLAUNCH_TEST_PG_URL``, and these tests truncate and restart things."""

from __future__ import annotations

import os
import uuid

import pytest
from queue_fixtures import TABLES  # one list of the tables a test empties


@pytest.fixture(scope="session")
def faults_pg_url(request):
    base = request.getfixturevalue("pg_url")  # skips/fails per the testenv contract
    import psycopg

    from hpclaunch.queue import migrate

    server = base.rsplit("/", 1)[0]
    name = f"hpclaunch_faults_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(server + "/postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = f"{server}/{name}"
    migrate.upgrade(url)
    yield url
    from fault_helpers import ensure_pg_up

    ensure_pg_up(url)
    with psycopg.connect(server + "/postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _fresh_pg(url: str) -> str:
    from hpclaunch.queue import driver

    conn = driver.connect(url)
    try:
        conn.execute(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")
    finally:
        conn.close()
    return url


def _use(url: str, tmp_path, monkeypatch) -> str:
    monkeypatch.setenv("HPCLAUNCH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HPCLAUNCH_LOG_DIR", str(tmp_path / "logs"))
    monkeypatch.setenv("HPCLAUNCH_DATABASE_URL", url)
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path, monkeypatch) -> str:
    """A fresh, migrated queue on SQLite and on the real PostgreSQL (exported
    as HPCLAUNCH_DATABASE_URL for the worker processes)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'queue.sqlite3'}"
        from hpclaunch.queue.migrate import open_ready

        open_ready(url).close()
    else:
        url = _fresh_pg(request.getfixturevalue("faults_pg_url"))
    return _use(url, tmp_path, monkeypatch)


@pytest.fixture
def pg_only_url(faults_pg_url, tmp_path, monkeypatch) -> str:
    return _use(_fresh_pg(faults_pg_url), tmp_path, monkeypatch)


@pytest.fixture
def queue(db_url):
    from hpclaunch import Queue

    return Queue(db_url)


@pytest.fixture
def queue_on_pg(pg_only_url):
    from hpclaunch import Queue

    return Queue(pg_only_url)
