"""A short-lived, single-flight cache of page data, shared by every viewer.

Why: a page polled every few seconds by fifty open browsers must cost the
database one query burst per few seconds, not fifty. Callers with the same key
(page, scope, filters) within ``ttl`` share one result; while it is being read,
later callers await the same read instead of starting their own.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

TTL = 3.0  # seconds a page's data is served from memory
MAX_KEYS = 512


class PageCache:
    def __init__(self, ttl: float = TTL, max_keys: int = MAX_KEYS):
        self.ttl = ttl
        self.max_keys = max_keys
        self._entries: OrderedDict[tuple, tuple[float, asyncio.Future[Any]]] = OrderedDict()
        self.misses = 0  # reads started (for tests and the operator)

    async def get(self, key: tuple, load: Callable[[], Awaitable[Any]]) -> Any:
        """The cached value for ``key``, or ``await load()`` once for all waiting callers."""
        now = time.monotonic()
        entry = self._entries.get(key)
        if entry is not None and (now < entry[0] or not entry[1].done()):
            return await asyncio.shield(entry[1])
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._entries[key] = (now + self.ttl, future)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_keys:
            self._entries.popitem(last=False)
        self.misses += 1
        try:
            value = await load()
        except BaseException as exc:
            self._entries.pop(key, None)  # errors are not cached
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning when nobody waits
            raise
        future.set_result(value)
        return value

    def clear(self) -> None:
        """Forget everything (after an action changed rows the pages show)."""
        self._entries.clear()
