"""A small, bounded pool of DB-API connections shared by every request.

Why: a thousand long-polling workers must cost the database a handful of
connections, not two each. Operations run in the pool's own ``size`` threads
(the driver is blocking), so at most ``size`` run at once and at most ``size``
connections are open; the rest wait their turn in the threads' queue (a
request cancelled meanwhile never runs).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from hpclaunch.queue import retry
from hpclaunch.queue.driver import Connection

T = TypeVar("T")

DEFAULT_SIZE = 8  # bench/serve.py: 64 busy workers gain a fifth over 4; idle ones need none
MAX_SIZE = 64
OPERATION_WAIT = 15.0  # seconds an operation retries through a database outage


class Pool:
    """At most ``size`` connections, opened on demand and reused."""

    def __init__(self, url: str, size: int = DEFAULT_SIZE, *, first: Connection | None = None):
        if not 1 <= size <= MAX_SIZE:
            raise ValueError(f"pool size must be between 1 and {MAX_SIZE}")
        self.url = url
        self.size = size
        self._idle: list[Connection] = [first] if first is not None else []
        self._lock = threading.Lock()
        self._threads = ThreadPoolExecutor(max_workers=size, thread_name_prefix="hpclaunch-db")
        self._closed = False

    async def run(
        self, fn: Callable[..., T], *args: Any, wait: float = OPERATION_WAIT, **kwargs: Any
    ) -> T:
        """``fn(conn, *args, **kwargs)`` on a pooled connection, in one of the pool's threads."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._threads, self._call, fn, args, kwargs, wait)

    def open_count(self) -> int:
        """Idle connections held now (for tests and the operator)."""
        with self._lock:
            return len(self._idle)

    def close(self) -> None:
        """Close the idle connections; connections in use close when returned."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            _close_quietly(conn)
        self._threads.shutdown(wait=False, cancel_futures=True)

    def _call(
        self, fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any], wait: float
    ) -> T:
        with self._lock:
            conn = self._idle.pop() if self._idle else None
        try:
            if conn is None:
                conn = retry.open_conn(self.url, wait=wait)
            result = retry.call(conn, fn, *args, wait=wait, **kwargs)
        except BaseException:
            if conn is not None:  # its state is unknown: never hand it to the next request
                _close_quietly(conn)
            raise
        with self._lock:
            if not self._closed:
                self._idle.append(conn)
                return result
        _close_quietly(conn)
        return result


def _close_quietly(conn: Connection) -> None:
    try:
        conn.close()
    except Exception:
        pass
