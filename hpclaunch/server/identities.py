"""Valid tokens' identities, kept in memory while the database says nothing changed.

Why: every request names its token, and looking it up costs a database round
trip and a thread hop, a sixth of a busy worker fleet's load on the server.
Revocation must still take effect at once, so on PostgreSQL a thread listens on
``hpclaunch_accounts`` (the triggers of migration 0009 notify it on any change
to ``tokens`` or ``users``) and every notification forgets every identity.
While that listener is not connected (starting, the database restarting) nothing
is cached, and reconnecting forgets everything, since notifications sent
meanwhile are lost. A lookup that started before a notification is never
cached after it (``generation``). Only valid tokens are cached, with their
expiry checked on each use; SQLite has no notifications, so there every
request looks its token up.
"""

from __future__ import annotations

import threading
import time

from hpclaunch.queue.accounts import Identity, hash_token
from hpclaunch.queue.urls import is_sqlite
from hpclaunch.queue.wake import PostgresListener
from hpclaunch.server.listening import ListeningThread

CHANNEL = "hpclaunch_accounts"
MAX_ENTRIES = 10_000  # tokens remembered at most; beyond, everything is forgotten
MAX_AGE = 300.0  # seconds an identity is trusted without a lookup, however quiet


class IdentityCache:
    """``get``/``put`` from the event loop; a listener thread forgets on change."""

    def __init__(self, url: str):
        self.url = url
        self.enabled = not is_sqlite(url)
        self.generation = 0
        self._entries: dict[str, tuple[Identity, float | None, float]] = {}
        self._live = False  # the listener has opened and not been lost since
        self._lock = threading.RLock()  # forget() may run inside put()'s check
        self._thread = ListeningThread(
            "accounts",
            lambda: PostgresListener(url, channel=CHANNEL),
            on_open=self._opened,
            on_wake=self.forget,
            on_lost=self._lost,
        )

    def start(self) -> None:
        if self.enabled:
            self._thread.start()

    def stop(self) -> None:
        self._live = False
        self._thread.stop()

    def get(self, secret: str) -> Identity | None:
        """The cached identity of ``secret`` if still trusted, else None (look it up)."""
        if not self._trusted():
            return None
        entry = self._entries.get(hash_token(secret))
        if entry is None:
            return None
        identity, expires_at, cached_at = entry
        if (expires_at is not None and expires_at <= time.time()) or (
            time.monotonic() - cached_at > MAX_AGE
        ):
            return None
        return identity

    def put(self, secret: str, identity: Identity, expires_at: float | None, seen: int) -> None:
        """Remember a lookup made at generation ``seen`` (dropped if anything changed since)."""
        key = hash_token(secret)
        with self._lock:  # not between a forget's two steps
            if not self._trusted() or seen != self.generation:
                return
            if len(self._entries) >= MAX_ENTRIES:
                self._entries.clear()
            self._entries[key] = (identity, expires_at, time.monotonic())

    def _trusted(self) -> bool:
        """Whether cached identities may be used: the listener is connected now."""
        if self._live and self._thread.connected():
            return True
        if self._entries:
            self.forget()  # whatever changed while it was away, nobody told us
        return False

    def forget(self) -> None:
        """Forget every identity (a token or user changed, or notifications were lost)."""
        with self._lock:  # the listener thread and the event loop both forget
            self.generation += 1
            self._entries.clear()

    def _opened(self) -> None:
        self.forget()  # changes while nobody listened went unheard
        self._live = True

    def _lost(self) -> None:
        self._live = False
        self.forget()
