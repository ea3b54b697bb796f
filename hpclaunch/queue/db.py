"""Opening the queue for the CLI, the Python API and ``launches``.

One access path: the same DB-API connection (``queue.driver``) the worker uses,
opened after the cheap schema check and retried through a server restart.
SQLAlchemy is only for the schema and its migrations (``queue.migrate``).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, TypeVar

from hpclaunch.errors import DatabaseError
from hpclaunch.queue import retry
from hpclaunch.queue.driver import Connection
from hpclaunch.queue.urls import redact, resolve_database_url

T = TypeVar("T")


def connect(url: str | None = None) -> Connection:
    """A connection on a database known to be at the expected schema.

    Migrates a fresh SQLite file, refuses a bare PostgreSQL, waits out a restart.
    """
    try:
        return retry.open_conn(resolve_database_url(url), log=say)
    except DatabaseError as exc:
        if getattr(exc, "transient", False):
            raise DatabaseError(f"{exc} (kept trying for {retry.CLI_WAIT:g} s)") from exc
        raise


def call(conn: Connection, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(conn, *args, **kwargs)``, retried through an outage as long as a CLI waits."""
    return retry.call(conn, fn, *args, wait=retry.CLI_WAIT, log=say, **kwargs)


def run(url: str | None, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """One CLI operation: connect, ``fn(conn, ...)`` retried through outages, close."""
    conn = connect(url)
    try:
        return call(conn, fn, *args, **kwargs)
    finally:
        conn.close()


def say(message: str) -> None:
    """Retry progress for a person at a terminal; scripts get only the final error line."""
    if sys.stderr.isatty():
        print(f"hpclaunch: {message}", file=sys.stderr, flush=True)


def describe_db_error(exc: BaseException) -> str | None:
    """One line for database failures a user can act on (unreachable, refused, ...)."""
    if type(exc).__name__ not in ("OperationalError", "InterfaceError"):
        return None
    first = redact(retry.first_line(exc))
    return f"database error: {first} (check the URL and that the server is up)"
