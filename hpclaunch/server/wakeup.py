"""One wake-up listener per server process, fanned out to every waiting long-poll.

Why: a thousand idle workers long-polling must cost the database one
connection (the listener's), not one each, and no polling of their own. A
thread blocks in ``queue.wake.Listener.wait``; each wake bumps ``generation``
and sets the current asyncio event (then replaces it), waking every waiter on
the event loop at once. A waiter reads ``generation`` before it tries to claim
and waits only while it has not moved, so a task arriving between its empty
claim and its wait is not missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time

from hpclaunch.queue import wake

log = logging.getLogger("hpclaunch.server")

LISTEN_SLICE = 30.0  # seconds per blocking wait (the thread checks for shutdown between)
RETRY_OPEN = 2.0  # seconds between attempts to open the listener while the database is down


class WakeHub:
    """Fan-out of ``queue.wake`` to asyncio waiters; ``start`` in the loop, ``stop`` at exit."""

    def __init__(self, url: str):
        self.url = url
        self.generation = 0
        self._event: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._listener: wake.Listener | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._event = asyncio.Event()
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
        """Wake every waiter now (called on the loop after a write that may make work)."""
        self.generation += 1
        if self._event is not None:
            self._event.set()
            self._event = asyncio.Event()

    def notify(self) -> None:
        """From any thread: the same as a database wake (the listener is interrupted)."""
        listener = self._listener
        if listener is not None:
            listener.notify()
        elif self._loop is not None:
            self._loop.call_soon_threadsafe(self.poke)

    async def wait(self, seen: int, timeout: float) -> bool:
        """Until a wake after generation ``seen``, or ``timeout`` s; True when woken."""
        if self.generation != seen:
            return True
        event = self._event
        if event is None or timeout <= 0:
            return False
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except TimeoutError:
            return False
        return True

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
