"""One wake-up listener per server process, handed on to the waiting long-polls.

Why: a thousand idle workers long-polling must cost the database one
connection (the listener's), not one each, and no polling of their own. A
thread blocks in ``queue.wake.Listener.wait``; each wake bumps ``generation``.
A waiter reads ``generation`` before it tries to claim and waits only while it
has not moved, so a task arriving between its empty claim and its wait is not
missed.

A wake does not wake every waiter: a thousand claims for one new task would
cost the server a thousand database statements, most of them finding nothing.
Waiters that claim alike (the same token reach, tags, engines and pickle rule:
the ``key``) are interchangeable, so a wake wakes the longest-waiting one of
each key. One that claims a task wakes two more of its key (more may be
pending: the woken grow as 1, 2, 4, ... while tasks last); one that finds
nothing wakes nobody (its key's queue is empty for now). A waiter woken but
gone before it could claim hands its wake on. Waiters without a key (a
deadline decides what each can take) are all woken, every time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Hashable

from hpclaunch.queue import wake

log = logging.getLogger("hpclaunch.server")

LISTEN_SLICE = 30.0  # seconds per blocking wait (the thread checks for shutdown between)
RETRY_OPEN = 2.0  # seconds between attempts to open the listener while the database is down


class WakeHub:
    """``queue.wake`` handed on to asyncio waiters; ``start`` in the loop, ``stop`` at exit."""

    def __init__(self, url: str):
        self.url = url
        self.generation = 0
        self._waiting: dict[Hashable | None, deque[asyncio.Future[None]]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._listener: wake.Listener | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._listen, name="hpclaunch-wake", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        listener = self._listener
        if listener is not None:
            listener.close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def poke(self) -> None:
        """Something may be pending (called on the loop): wake one waiter of each key,
        and every waiter without one."""
        self.generation += 1
        for key in list(self._waiting):
            self.pass_on(key, len(self._waiting[key]) if key is None else 1)

    def pass_on(self, key: Hashable | None, count: int = 1) -> None:
        """Wake up to ``count`` of ``key``'s longest-waiting waiters (after a claim
        that got a task, or for a waiter that can no longer use its wake)."""
        queue = self._waiting.get(key)
        while queue and count > 0:
            waiter = queue.popleft()
            if not waiter.done():
                waiter.set_result(None)
                count -= 1
        if queue is not None and not queue:
            del self._waiting[key]

    def notify(self) -> None:
        """From any thread: the same as a database wake (the listener is interrupted)."""
        listener = self._listener
        if listener is not None:
            listener.notify()
        elif self._loop is not None:
            self._loop.call_soon_threadsafe(self.poke)

    async def wait(self, seen: int, timeout: float, key: Hashable | None = None) -> bool:
        """Until woken, or a wake after generation ``seen`` happened already, or ``timeout``
        s; True when woken. Cancelled after being woken, it hands the wake on."""
        if self.generation != seen:
            return True
        if timeout <= 0 or self._loop is None:
            return False
        waiter: asyncio.Future[None] = self._loop.create_future()
        self._waiting.setdefault(key, deque()).append(waiter)
        delivered = False
        try:
            # Not wait_for: it may swallow a cancellation that comes with the wake.
            await asyncio.wait((waiter,), timeout=timeout)
            delivered = waiter.done()
            return delivered
        finally:
            if not waiter.done():
                waiter.cancel()  # pass_on skips it; it leaves the queue below
                queue = self._waiting.get(key)
                if queue is not None:
                    with contextlib.suppress(ValueError):
                        queue.remove(waiter)
                    if not queue:
                        del self._waiting[key]
            elif not delivered:
                self.pass_on(key)  # woken, then cancelled: someone else may claim

    def _listen(self) -> None:
        loop = self._loop
        assert loop is not None
        while not self._stopping.is_set():
            if self._listener is None:
                try:
                    self._listener = wake.open_listener(self.url)
                except Exception as exc:  # noqa: BLE001 - the database is down: try again
                    log.warning("wake-up listener unavailable (%s); retrying", type(exc).__name__)
                    self._stopping.wait(RETRY_OPEN)
                    continue
                loop.call_soon_threadsafe(self.poke)  # missed wakes while it was closed
            try:
                woke = self._listener.wait(LISTEN_SLICE)
            except Exception as exc:  # noqa: BLE001 - never let the thread die
                log.warning("wake-up listener failed (%s); reopening", type(exc).__name__)
                with contextlib.suppress(Exception):
                    self._listener.close()
                self._listener = None
                time.sleep(0.5)
                continue
            if woke and not self._stopping.is_set():
                with contextlib.suppress(RuntimeError):  # the loop closed at shutdown
                    loop.call_soon_threadsafe(self.poke)
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
