"""SQLAlchemy engines for the CLI and the Python API (not the worker's hot path)."""

from __future__ import annotations

import sys
from functools import lru_cache

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine

from hpclaunch.errors import DatabaseError
from hpclaunch.queue import retry
from hpclaunch.queue.migrate import _sqlalchemy_url
from hpclaunch.queue.urls import is_sqlite, redact, resolve_database_url


@lru_cache(maxsize=8)
def get_engine(url: str | None = None) -> Engine:
    """An engine on a database known to be at the expected schema."""
    url = resolve_database_url(url)
    # Migrates a fresh SQLite file, refuses a bare PostgreSQL, waits out a restart.
    try:
        retry.open_conn(url, log=_say).close()
    except DatabaseError as exc:
        if getattr(exc, "transient", False):
            raise DatabaseError(f"{exc} (kept trying for {retry.CLI_WAIT:g} s)") from exc
        raise
    if is_sqlite(url):
        engine = create_engine(url, connect_args={"timeout": 60})

        @event.listens_for(engine, "connect")
        def _sqlite_setup(dbapi_conn, _record):
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
            dbapi_conn.execute("PRAGMA busy_timeout = 60000")
            dbapi_conn.execute("PRAGMA synchronous = NORMAL")

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn):
            # Take the write lock up front: no deadlock when a read turns into a write.
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    engine = create_engine(_sqlalchemy_url(url), pool_pre_ping=True)

    @event.listens_for(engine, "do_connect")
    def _connect_through_outages(dialect, _record, cargs, cparams):
        # A server restarting ("the database system is starting up") is waited out.
        return retry.call(
            None, dialect.connect, *cargs, wait=retry.CLI_WAIT, log=_say, what="connect", **cparams
        )

    return engine


def _say(message: str) -> None:
    """Retry progress for a person at a terminal; scripts get only the final error line."""
    if sys.stderr.isatty():
        print(f"hpclaunch: {message}", file=sys.stderr, flush=True)


def describe_db_error(exc: BaseException) -> str | None:
    """One line for database failures a user can act on (unreachable, refused, ...)."""
    name = type(exc).__name__
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    first = text[0] if text else name
    if name in ("OperationalError", "InterfaceError"):
        return f"database error: {redact(first)} (check the URL and that the server is up)"
    return None
