"""Waking idle claimers when a task becomes pending, from whatever enqueued it.

Why: an idle worker (or a server long-poll) should start a new task at once,
without polling the tasks table itself. Tasks arrive from anywhere: the CLI,
``psql``, another server process, a reaper putting a task back. So the signal
comes from the database, not from the code path that wrote the row.

PostgreSQL: the triggers of migration 0005 run ``pg_notify('hpclaunch_tasks',
tags)`` when a row of ``tasks`` becomes ``pending`` (inserted pending, or its
status changed to pending); identical notifications of one transaction are
delivered once, so a bulk enqueue costs one wake per tag set. A ``Listener``
holds one dedicated connection doing ``LISTEN``.

SQLite: there are no notifications. A ``Listener`` holds a read connection and
checks ``PRAGMA data_version`` (it changes when any other connection commits)
every ``SLOW_POLL`` seconds; on a change it looks whether any task is pending
(one read of the partial index ``ix_tasks_pending``). ``notify()`` wakes
waiters at once: a server calls it after its own writes that may make work
(enqueue, release, a failed attempt going back).

Interface (both databases)::

    listener = open_listener(url)      # its own connection, not a pooled one
    while True:
        if listener.wait(timeout=30):  # True: something may be pending now
            ...claim...
    listener.notify()                  # from any thread: wake wait() now
    listener.close()                   # from any thread: wait() returns False

``wait`` is blocking and meant for one thread (a worker's main thread, or a
server's single fan-out thread that wakes asyncio waiters); ``notify`` and
``close`` may be called from any thread. A lost database connection is
re-opened inside ``wait``; since notifications sent meanwhile are lost, the
first successful wait after a reconnect returns True ("look again"). ``wait``
may return True spuriously: callers always re-check by claiming.

``generation`` counts wakes, so a caller can avoid the lost-wakeup race: read
it, try to claim, and if nothing came, wait only if it has not moved since.
"""

from __future__ import annotations

import contextlib
import re
import select
import threading
import time
from typing import Any

from hpclaunch.queue.urls import is_sqlite, sqlite_path
from hpclaunch.states import TaskStatus

CHANNEL = "hpclaunch_tasks"
SLOW_POLL = 1.0  # seconds between SQLite change checks
RECONNECT_DELAY = 1.0  # seconds between attempts to re-open a lost listener connection
_ANY_PENDING = (
    f"SELECT 1 FROM tasks INDEXED BY ix_tasks_pending WHERE status = '{TaskStatus.PENDING}' LIMIT 1"
)


class Listener:
    """Wakes on "a task may be pending"; see the module docstring for the contract."""

    def __init__(self) -> None:
        self._event = threading.Event()  # set by notify() and close()
        self._closed = False
        self._lock = threading.Lock()
        self.generation = 0

    def wait(self, timeout: float) -> bool:
        """Block until a wake or ``timeout`` seconds; True when woken (not when closed)."""
        end = time.monotonic() + max(timeout, 0.0)
        while not self._closed:
            if self._event.is_set():
                self._event.clear()
                if self._closed:
                    return False
                return self._woke()
            left = end - time.monotonic()
            if left <= 0:
                return False
            if self._poll(left):
                return self._woke()
        return False

    def notify(self) -> None:
        """Wake ``wait`` now (an in-process write that may have made work)."""
        self._event.set()
        self._interrupt()

    def close(self) -> None:
        self._closed = True
        self._event.set()
        self._interrupt()
        with self._lock:
            self._close_conn()

    def _woke(self) -> bool:
        self.generation += 1
        return True

    # Implemented per database: block up to ``left`` s; True when the database
    # says a task may be pending.
    def _poll(self, left: float) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError

    def _interrupt(self) -> None:
        """Make a blocked ``_poll`` return early (it then sees the event)."""

    def _close_conn(self) -> None:
        """Close the listener's own connection."""


class PostgresListener(Listener):
    """``LISTEN hpclaunch_tasks`` (or another ``channel``) on a dedicated autocommit
    connection."""

    def __init__(self, url: str, channel: str = CHANNEL):
        super().__init__()
        self.channel = channel
        self.conninfo = re.sub(r"^postgres(ql)?(\+\w+)?://", "postgresql://", url)
        self._conn: Any = None
        self._pipe_r, self._pipe_w = _self_pipe()
        self._connect()  # a wrong URL fails here, at once

    def _connect(self) -> None:
        import psycopg

        conn = psycopg.connect(self.conninfo, autocommit=True, connect_timeout=10)
        conn.execute(f"LISTEN {self.channel}")
        self._conn = conn

    def _poll(self, left: float) -> bool:
        if self._conn is None:
            try:
                self._connect()
            except Exception:  # noqa: BLE001 - still down: wait, then try again
                self._sleep(min(left, RECONNECT_DELAY))
                return False
            return True  # notifications sent while we were away are lost: look again
        try:
            ready, _, _ = select.select([self._conn.fileno(), self._pipe_r], [], [], left)
            if self._pipe_r in ready:
                _drain(self._pipe_r)
            if self._conn.fileno() not in ready:
                return False
            got = False
            for _ in self._conn.notifies(timeout=0, stop_after=1000):
                got = True
            if not got:
                # Readable but no notification: a keepalive, or the server went away.
                self._conn.execute("SELECT 1")
            return got
        except Exception:  # noqa: BLE001 - lost connection: reopen on the next poll
            with self._lock:
                self._close_conn()
            return False

    @property
    def connected(self) -> bool:
        """Whether it listens now (notifications sent while it does not are lost)."""
        return self._conn is not None

    def _sleep(self, seconds: float) -> None:
        try:
            ready, _, _ = select.select([self._pipe_r], [], [], seconds)
        except (OSError, ValueError):  # closed meanwhile: wait() sees it and returns
            return
        if ready:
            _drain(self._pipe_r)

    def _interrupt(self) -> None:
        with contextlib.suppress(OSError):
            import os

            os.write(self._pipe_w, b"x")

    def _close_conn(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def close(self) -> None:
        super().close()
        import os

        for fd in (self._pipe_r, self._pipe_w):
            with contextlib.suppress(OSError):
                os.close(fd)


class SqliteListener(Listener):
    """``PRAGMA data_version`` every ``SLOW_POLL`` s on a held read connection."""

    def __init__(self, url: str, slow_poll: float = SLOW_POLL):
        super().__init__()
        import sqlite3

        self.slow_poll = slow_poll
        self._conn: Any = sqlite3.connect(
            sqlite_path(url), timeout=60, isolation_level=None, check_same_thread=False
        )
        self._version = self._data_version()
        self._wake = threading.Event()

    def _data_version(self) -> int:
        return int(self._conn.execute("PRAGMA data_version").fetchone()[0])

    def _poll(self, left: float) -> bool:
        self._wake.wait(min(left, self.slow_poll))
        self._wake.clear()
        with self._lock:
            if self._conn is None:
                return False
            try:
                version = self._data_version()
                if version == self._version:
                    return False
                self._version = version
                row = self._conn.execute(_ANY_PENDING).fetchone()
            except Exception:  # noqa: BLE001 - locked or not migrated yet: look next time
                return False
        return row is not None

    def _interrupt(self) -> None:
        self._wake.set()

    def _close_conn(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()


def open_listener(url: str) -> Listener:
    """The listener for a queue database URL (its own connection; close it when done)."""
    if is_sqlite(url):
        return SqliteListener(url)
    return PostgresListener(url)


def _self_pipe() -> tuple[int, int]:
    import os

    r, w = os.pipe()
    os.set_blocking(r, False)
    os.set_blocking(w, False)
    return r, w


def _drain(fd: int) -> None:
    import os

    with contextlib.suppress(OSError):
        while os.read(fd, 4096):
            pass
