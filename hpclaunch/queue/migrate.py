"""Schema migrations (Alembic) and the cheap "is this database ready?" check.

A fresh SQLite file is migrated automatically (under a file lock, since a
``cluster`` starts many workers at once). A PostgreSQL database is never changed
silently: ``hpclaunch db upgrade`` does it.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

from hpclaunch.errors import DatabaseError
from hpclaunch.queue import driver
from hpclaunch.queue.urls import is_sqlite, redact, sqlite_path
from hpclaunch.queue.version import SCHEMA_HEAD

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def current_revision(conn: driver.Connection) -> str | None:
    """The database's Alembic revision, or None when it has no hpclaunch tables."""
    try:
        row = conn.one("SELECT version_num FROM alembic_version")
    except Exception as exc:  # noqa: BLE001 - each driver names "no such table" differently
        text = str(exc).lower()
        if "alembic_version" in text and ("no such table" in text or "does not exist" in text):
            return None
        raise
    return row[0] if row else None


def upgrade(url: str, revision: str = "head") -> None:
    """Run Alembic migrations up to ``revision``."""
    from alembic import command
    from alembic.config import Config

    _prepare_sqlite_file(url)
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", _sqlalchemy_url(url).replace("%", "%%"))
    command.upgrade(cfg, revision)


def ensure_ready(conn: driver.Connection) -> None:
    """Raise a clear error unless the database is at the schema this code expects."""
    rev = current_revision(conn)
    if rev == SCHEMA_HEAD:
        return
    if rev is None and conn.dialect == "sqlite":
        with _migration_lock(conn.url):
            if current_revision(conn) is None:
                upgrade(conn.url)
        return
    where = redact(conn.url)
    if rev is None:
        raise DatabaseError(
            f"the database {where} has no hpclaunch tables yet; create them with "
            f"`hpclaunch --database URL db upgrade` (shared databases are never changed silently)"
        )
    if _is_known_revision(rev):
        raise DatabaseError(
            f"the database {where} is at schema {rev}, this hpclaunch needs {SCHEMA_HEAD}; "
            "run `hpclaunch db upgrade`"
        )
    raise DatabaseError(
        f"the database {where} is at schema {rev}, newer than this hpclaunch knows "
        f"({SCHEMA_HEAD}); upgrade hpclaunch"
    )


def open_ready(url: str) -> driver.Connection:
    """Connect and check the schema; the worker's and CLI's way in."""
    _prepare_sqlite_file(url)
    conn = driver.connect(url)
    try:
        ensure_ready(conn)
    except BaseException:
        conn.close()
        raise
    return conn


def _is_known_revision(rev: str) -> bool:
    return any(p.name.startswith(f"{rev}_") for p in (MIGRATIONS_DIR / "versions").glob("*.py"))


def _sqlalchemy_url(url: str) -> str:
    """Make SQLAlchemy use psycopg 3 for plain postgresql:// URLs."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def _prepare_sqlite_file(url: str) -> None:
    if is_sqlite(url):
        parent = Path(sqlite_path(url)).expanduser().parent
        if not parent.exists():
            parent.mkdir(parents=True, mode=0o700, exist_ok=True)


@contextmanager
def _migration_lock(url: str):
    import fcntl

    lock_path = sqlite_path(url) + ".migrate-lock"
    fd = os.open(lock_path, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
