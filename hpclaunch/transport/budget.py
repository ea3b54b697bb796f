"""A per-user budget for read-only scheduler queries, shared by every process.

Centres throttle or ban users whose scripts hammer the login node: two
``status --watch`` loops and a cron job must not each run ``squeue`` every few
seconds. ``cached(key, interval, fetch)`` runs ``fetch`` at most once per
``interval`` for ``key`` across all processes of the user: the answer is kept
in a 0600 JSON file under ``HPCLAUNCH_HOME/budget`` and an exclusive
``fcntl.flock`` makes a second process wait for the first one's answer instead
of asking too. What must be exact (submit, cancel, limits) never reads the
cache and calls ``invalidate(key)`` so the next view is fresh. A failed fetch
is not cached. Stdlib only: it runs wherever hpclaunch does.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from hpclaunch import paths

T = TypeVar("T")


@dataclass(frozen=True)
class Reading:
    """A cached answer and when it was fetched (``time.time()``)."""

    value: Any
    fetched_at: float
    fetched_now: bool = False  # this call ran fetch (count it as a scheduler call)

    @property
    def age(self) -> float:
        return max(0.0, time.time() - self.fetched_at)


def _folder() -> Path:
    folder = paths.home() / "budget"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    return folder


def _file(key: str) -> Path:
    return _folder() / (hashlib.sha256(key.encode()).hexdigest()[:24] + ".json")


@contextlib.contextmanager
def _locked(key: str) -> Iterator[Path]:
    path = _file(key)
    fd = os.open(path.with_suffix(".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield path
    finally:
        os.close(fd)  # releases the lock


def _read(path: Path, key: str) -> Reading | None:
    try:
        data = json.loads(path.read_text())
        if data["key"] != key:
            return None
        return Reading(data["value"], float(data["fetched_at"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None  # missing or damaged: fetch again


def _write(path: Path, key: str, reading: Reading) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"key": key, "value": reading.value, "fetched_at": reading.fetched_at}, f)
    os.replace(tmp, path)


def cached(key: str, interval: float, fetch: Callable[[], T]) -> T:
    """``fetch()``'s answer, from the shared cache if it is under ``interval`` s old.

    ``fetch`` must return JSON-serialisable data (e.g. the scheduler's text
    output); what comes back from the cache is what JSON gives back.
    """
    return reading(key, interval, fetch).value


def reading(key: str, interval: float, fetch: Callable[[], Any]) -> Reading:
    """Like :func:`cached`, with the fetch time (for "as of 12 s ago" in a view)."""
    with _locked(key) as path:
        found = _read(path, key)
        now = time.time()
        if found is not None and 0 <= now - found.fetched_at < interval:
            return found
        value = fetch()
        fresh = Reading(value, time.time(), fetched_now=True)
        _write(path, key, fresh)
        return fresh


def last(key: str) -> Reading | None:
    """The last cached answer for ``key`` however old, without fetching."""
    with _locked(key) as path:
        return _read(path, key)


def invalidate(key: str) -> None:
    """Forget ``key``'s answer: the next view asks the scheduler (after submit, cancel)."""
    with _locked(key) as path, contextlib.suppress(FileNotFoundError):
        path.unlink()
