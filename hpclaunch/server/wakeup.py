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
from collections import deque
from collections.abc import Hashable

from hpclaunch.queue import wake
from hpclaunch.server.listening import ListeningThread


class WakeHub:
    """``queue.wake`` handed on to asyncio waiters; ``start`` in the loop, ``stop`` at exit."""

    def __init__(self, url: str):
        self.url = url
        self.generation = 0
        self._waiting: dict[Hashable | None, deque[asyncio.Future[None]]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = ListeningThread(
            "wake-up",
            lambda: wake.open_listener(url),
            on_open=self._poke_from_thread,
            on_wake=self._poke_from_thread,
        )

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread.start()

    def stop(self) -> None:
        self._thread.stop()

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
        listener = self._thread.listener
        if listener is not None:
            listener.notify()
        else:
            self._poke_from_thread()

    def _poke_from_thread(self) -> None:
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed at shutdown
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
