"""A thread that keeps one ``queue.wake`` listener open for the server, whatever happens.

Why one class: the wake-up hub (new work) and the identity cache (changed
tokens) each hold a listener for the server's whole life, and both must survive
a database that is down at start, restarts, or kills the listening backend. The
thread opens the listener (retrying while the database is down), reports each
wake, and reports a lost connection before it opens a new one: notifications
sent meanwhile are lost, so ``on_open`` tells the owner to look again.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable

from hpclaunch.queue import wake

log = logging.getLogger("hpclaunch.server")

LISTEN_SLICE = 30.0  # seconds per blocking wait (the thread checks for shutdown between)
RETRY_OPEN = 2.0  # seconds between attempts to open the listener while the database is down
RETRY_LOST = 0.5  # seconds before reopening a listener that failed


class ListeningThread:
    """``open_listener()`` kept open in a daemon thread; callbacks run in that thread."""

    def __init__(
        self,
        what: str,
        open_listener: Callable[[], wake.Listener],
        *,
        on_open: Callable[[], None],
        on_wake: Callable[[], None],
        on_lost: Callable[[], None] = lambda: None,
    ):
        self.what = what
        self.listener: wake.Listener | None = None  # the open one, if any
        self._open_listener = open_listener
        self._on_open = on_open
        self._on_wake = on_wake
        self._on_lost = on_lost
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._run, name=f"hpclaunch-{self.what}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        listener = self.listener
        if listener is not None:
            listener.close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def connected(self) -> bool:
        """Whether a listener is open and (as far as it knows) connected now."""
        listener = self.listener
        return listener is not None and getattr(listener, "connected", True)

    def _run(self) -> None:
        while not self._stopping.is_set():
            listener = self.listener
            if listener is None:
                try:
                    listener = self.listener = self._open_listener()
                except Exception as exc:  # noqa: BLE001 - the database is down: try again
                    log.warning(
                        "%s listener unavailable (%s); retrying", self.what, type(exc).__name__
                    )
                    self._stopping.wait(RETRY_OPEN)
                    continue
                self._on_open()  # missed notifications while it was closed: look again
            try:
                woke = listener.wait(LISTEN_SLICE)
            except Exception as exc:  # noqa: BLE001 - never let the thread die
                log.warning("%s listener failed (%s); reopening", self.what, type(exc).__name__)
                self._lose(listener)
                continue
            if not getattr(listener, "connected", True):
                self._lose(listener)  # lost mid-wait: notifications may have been missed
                continue
            if woke and not self._stopping.is_set():
                self._on_wake()
        listener, self.listener = self.listener, None
        if listener is not None:
            listener.close()

    def _lose(self, listener: wake.Listener) -> None:
        self.listener = None
        self._on_lost()
        with contextlib.suppress(Exception):
            listener.close()
        self._stopping.wait(RETRY_LOST)
