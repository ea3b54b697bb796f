"""The migrations and ``queue.schema`` describe the same database."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine

from hpclaunch.queue import driver, migrate
from hpclaunch.queue.schema import metadata
from hpclaunch.queue.version import SCHEMA_HEAD


def test_schema_head_matches_the_newest_migration():
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(migrate.MIGRATIONS_DIR))
    assert ScriptDirectory.from_config(cfg).get_current_head() == SCHEMA_HEAD


def test_migrated_database_matches_schema_module(queue_url):
    migrate.open_ready(queue_url).close()
    engine = create_engine(migrate._sqlalchemy_url(queue_url))
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
        indexes = _index_sql(conn)
    engine.dispose()
    # Reflection cannot compare expression indexes (SQLite): check their SQL instead.
    expression_indexes = {"ix_tasks_pending"}
    diff = [
        d
        for d in diff
        if not (d[0] in ("add_index", "remove_index") and d[1].name in expression_indexes)
    ]
    assert diff == []
    pending = re.sub(r"[()]|::text", "", indexes["ix_tasks_pending"].lower())
    assert "priority desc, id" in pending and "where status = 'pending'" in pending


def _index_sql(conn) -> dict[str, str]:
    from sqlalchemy import text

    if conn.dialect.name == "sqlite":
        rows = conn.execute(
            text("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")
        )
    else:
        rows = conn.execute(
            text("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'tasks'")
        )
    return dict(rows.all())


def test_fresh_sqlite_file_is_migrated_on_first_use(tmp_path):
    url = f"sqlite:///{tmp_path / 'sub' / 'new.sqlite3'}"
    conn = migrate.open_ready(url)
    try:
        assert migrate.current_revision(conn) == SCHEMA_HEAD
        assert conn.one("PRAGMA journal_mode")[0] == "wal"
    finally:
        conn.close()


def test_worker_path_never_imports_heavy_modules():
    """The cold start of every array element must not pay for these."""
    import subprocess
    import sys

    code = (
        "import sys, hpclaunch.cli as c\n"
        "try:\n    c.main(['worker', '--help'])\nexcept SystemExit:\n    pass\n"
        "import hpclaunch.worker.loop, hpclaunch.queue.claims\n"
        "heavy = [m for m in ('sqlalchemy', 'alembic', 'rich', 'jinja2', 'paramiko', "
        "'cloudpickle') if m in sys.modules]\n"
        "print('HEAVY:' + ','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "HEAVY:"


@pytest.mark.parametrize(
    "argv",
    [
        ["enqueue", "--", "true"],
        ["tasks"],
        ["stats"],
        ["tasks", "retry", "--failed"],
        ["tasks", "why", "1"],
        ["worker", "--singleflow", "-q"],
    ],
)
def test_runtime_commands_run_without_sqlalchemy(queue_url, argv):
    """One runtime access path: with the schema current, neither the CLI's queue
    commands nor the worker import SQLAlchemy or Alembic."""
    import subprocess
    import sys

    code = (
        "import sys, hpclaunch.cli as c\n"
        f"try:\n    c.main({argv!r})\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "heavy = [m for m in ('sqlalchemy', 'alembic') if m in sys.modules]\n"
        "print('HEAVY:' + ','.join(heavy))"
    )
    from hpclaunch import Queue

    Queue(queue_url).enqueue_command(["true"])  # task 1; the schema is current
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "HPCLAUNCH_DATABASE_URL": queue_url},
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "HEAVY:"


def test_worker_loop_reaches_the_queue_only_through_its_session():
    """The loop imports the session interface, not the driver, SQL or retries:
    another QueueSession (over HTTP) needs no change to it."""
    import subprocess
    import sys

    code = (
        "import sys, hpclaunch.worker.loop\n"
        "print('QUEUE:' + ','.join(sorted(m for m in sys.modules "
        "if m.startswith('hpclaunch.queue.'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "QUEUE:hpclaunch.queue.session"


def test_migration_files_are_numbered_like_their_revision():
    for path in (migrate.MIGRATIONS_DIR / "versions").glob("*.py"):
        revision = re.search(r'^revision = "(\w+)"', Path(path).read_text(), re.M).group(1)
        assert path.name.startswith(revision + "_")


def test_bare_postgres_is_refused_not_migrated(pg_url):
    import psycopg
    import pytest

    from hpclaunch.errors import DatabaseError

    base, _, _ = pg_url.rpartition("/")
    with psycopg.connect(f"{base}/postgres", autocommit=True) as admin:
        admin.execute("DROP DATABASE IF EXISTS hpclaunch_bare_test")
        admin.execute("CREATE DATABASE hpclaunch_bare_test")
    try:
        with pytest.raises(DatabaseError, match="db upgrade"):
            migrate.open_ready(f"{base}/hpclaunch_bare_test")
        conn = driver.connect(f"{base}/hpclaunch_bare_test")
        try:
            assert migrate.current_revision(conn) is None
        finally:
            conn.close()
    finally:
        with psycopg.connect(f"{base}/postgres", autocommit=True) as admin:
            admin.execute("DROP DATABASE hpclaunch_bare_test WITH (FORCE)")


def test_rows_before_accounts_belong_to_the_local_user_and_group(tmp_path):
    from hpclaunch.queue import driver

    url = f"sqlite:///{tmp_path / 'old.sqlite3'}"
    migrate.upgrade(url, "0003")
    conn = driver.connect(url)
    try:
        conn.execute(
            "INSERT INTO batches (name, created_at, spec, n_tasks) VALUES ('b', 1.0, '{}', 1)"
        )
        conn.execute(
            "INSERT INTO tasks (batch_id, kind, payload, tags, status, created_at)"
            " VALUES (1, 'command', '{}', '', 'pending', 1.0)"
        )
    finally:
        conn.close()
    migrate.upgrade(url)
    conn = driver.connect(url)
    try:
        for table in ("batches", "tasks"):
            assert conn.one(f"SELECT owner, owner_group FROM {table}") == ("local", "local")
        assert conn.one("SELECT COUNT(*) FROM users")[0] == 0
    finally:
        conn.close()
