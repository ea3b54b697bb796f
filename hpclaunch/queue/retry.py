"""Bounded retries of database operations through outages (server restart, partition).

The happy path costs nothing: an operation is first tried directly, and
tenacity (about 40 ms of imports) is loaded only after a transient failure,
so the worker's cold start does not pay for it. Each retry is logged as one
line. Only errors that waiting can fix are retried: a lost or refused
connection, a server shutting down or starting up, a locked SQLite file; a
wrong password or a missing database fails at once.

Usage, worker side (plain DB-API; the connection is re-opened in place
before each retry so everything holding it keeps working)::

    retry.call(conn, operations.reap, wait=300, log=print)

CLI side (the same driver connection, opened by ``queue.db.connect``)::

    retry.call(conn, store.get_task, 7, wait=15, log=print)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

CLI_WAIT = 15.0  # how long a CLI command waits for an unreachable database (seconds)
FIRST_DELAY = 0.25  # seconds before the first retry
MAX_DELAY = 5.0  # the exponential backoff's ceiling


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def is_transient(exc: BaseException) -> bool:
    """True for database errors that may go away by waiting and reconnecting."""
    from hpclaunch.queue.driver import Unreachable, is_permanent_message

    if isinstance(exc, Unreachable):
        return exc.transient
    orig = getattr(exc, "orig", None)  # SQLAlchemy wraps the DB-API error
    if getattr(exc, "connection_invalidated", False):
        return True
    if isinstance(orig, BaseException) and orig is not exc:
        exc = orig
    module = type(exc).__module__
    if module.startswith("psycopg"):
        import psycopg

        if isinstance(exc, psycopg.InterfaceError):
            return True  # "the connection is closed"
        return isinstance(exc, psycopg.OperationalError) and not is_permanent_message(str(exc))
    if module == "sqlite3":
        import sqlite3

        text = str(exc).lower()
        return isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text)
    return False


def open_conn(url: str, *, wait: float = CLI_WAIT, log: Callable[[str], None] | None = None):
    """``migrate.open_ready(url)`` retried through an outage (the CLI's way in)."""
    from hpclaunch.queue.migrate import open_ready

    return call(None, open_ready, url, wait=wait, log=log, what="connect")


def call(
    conn: Any,
    fn: Callable[..., T],
    *args: Any,
    wait: float,
    log: Callable[[str], None] | None = None,
    what: str | None = None,
    stop: Callable[[], bool] | None = None,
    **kwargs: Any,
) -> T:
    """``fn(conn, *args, **kwargs)`` (or ``fn(*args, **kwargs)`` when ``conn`` is None),
    retried with exponential backoff for up to ``wait`` seconds on transient errors.

    ``conn`` (a ``driver.Connection``) is re-opened before each retry. ``stop``
    ends the retrying early (e.g. the worker was told to stop). After the last
    try the last error is raised.
    """
    full = (conn, *args) if conn is not None else args
    try:
        return fn(*full, **kwargs)
    except Exception as exc:
        if wait <= 0 or not is_transient(exc):
            raise
        first = exc
    return _retry(
        conn,
        fn,
        full,
        kwargs,
        first,
        wait=wait,
        log=log,
        what=what or getattr(fn, "__name__", "database operation"),
        stop=stop,
    )


def _retry(conn, fn, full, kwargs, first, *, wait, log, what, stop):
    from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_exponential

    say = log or (lambda message: None)
    say(f"database unavailable during {what} ({first_line(first)}); retrying for up to {wait:g} s")
    started = time.monotonic()
    time.sleep(FIRST_DELAY)

    def before_sleep(state) -> None:
        exc = state.outcome.exception()
        say(
            f"{what}: retry {state.attempt_number} failed ({first_line(exc)}); "
            f"next in {state.next_action.sleep:.1f} s"
        )

    stop_rule: Any = stop_after_delay(max(wait - (time.monotonic() - started), 0))
    if stop is not None:
        stop_rule = stop_rule | (lambda state: stop())
    for attempt in Retrying(
        retry=retry_if_exception(is_transient),
        stop=stop_rule,
        wait=wait_exponential(multiplier=FIRST_DELAY, min=FIRST_DELAY, max=MAX_DELAY),
        before_sleep=before_sleep,
        reraise=True,
    ):
        with attempt:
            if conn is not None:
                conn.reconnect()
            result = fn(*full, **kwargs)
            say(f"{what}: database reachable again after {time.monotonic() - started:.1f} s")
            return result
    raise AssertionError("unreachable: tenacity either returns or re-raises")  # pragma: no cover
