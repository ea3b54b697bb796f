"""A draining worker's batching: claim several short tasks at once, record
their results in groups. Used by ``queue.db_session``; the loop never sees it.

Why: a no-op task costs two round trips (claim, finish); claiming ``k`` at a
time and writing results together divides that by ``k``. The guarantees stay:

* Size: ``k`` follows the runtimes this worker has seen (a batch is meant to
  run in about ``BATCH_SECONDS``), is 1 until a runtime is known, never more
  than fit in the time left, and never more than ``nitems_max`` allows. Tasks
  that take longer than half of ``BATCH_SECONDS`` are claimed one at a time.
* Hold bound: a prefetched task is started or given back (uncounted) within
  ``HOLD_MAX`` seconds of its claim. A long task therefore never holds others
  hostage, and a higher-priority task enqueued after a batch was claimed waits
  at most ``HOLD_MAX`` plus the running task for this worker's next claim.
* Stop: on a stop signal the prefetched tasks go back at once, uncounted.
* Results: successful results are buffered and written within ``FLUSH_EVERY``
  seconds (a side thread does it when the main thread is busy), before any
  claim, idle wait or exit; each write is fenced by its claim token as a
  single finish is. Failures are written at once.
* Leases: the heartbeat renews prefetched and buffered tasks with the running one.

The side thread uses its own connection (the session's heartbeat connection,
under a lock), never the main thread's.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from hpclaunch.queue import claims, driver
from hpclaunch.queue.session import Claimed, Outcome

PREFETCH_MAX = 16  # tasks claimed in one statement, at most
BATCH_SECONDS = 0.05  # a batch is sized to run in about this long
HOLD_MAX = 0.5  # a prefetched task is started or given back within this (s)
FLUSH_EVERY = 0.005  # buffered results are written within this (s)
FLUSH_MAX = 64  # ... or as soon as this many are buffered
SMOOTHING = 0.2  # weight of the newest runtime in the running average

# Runs ``fn(conn)`` on a connection (with the caller's retries and locking).
Runner = Callable[[Callable[[driver.Connection], Any]], Any]


class Prefetch:
    """The prefetched tasks and buffered results of one worker, and the side
    thread that keeps their promises (hold bound, stop, flush) while the main
    thread runs a task."""

    def __init__(
        self,
        *,
        worker_id: int,
        side: Runner,
        stop: Callable[[], bool],
        log: Callable[[str], None],
        nitems_max: int | None,
    ):
        self.worker_id = worker_id
        self._side = side  # runs fn(conn) on the side connection
        self._stop = stop
        self._log = log
        self._left = nitems_max  # claims this worker may still make, if bounded
        self._lock = threading.Lock()
        self._ready: deque[Claimed] = deque()
        self._held_since = 0.0  # monotonic time of the batch's claim
        self._done: list[tuple[Claimed, Outcome]] = []
        self._done_since = 0.0
        self._unsure = False  # a write failed: it may have committed before its reply was lost
        self._started: dict[int, float] = {}  # task id -> monotonic start
        self._average: float | None = None  # seconds per task, start to result
        self._wake = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None
        self.claims = 0  # claim statements that returned tasks
        self.claimed = 0  # tasks they returned

    # --- sizing -------------------------------------------------------------
    def size(self, remaining: float | None) -> int:
        """How many tasks the next claim may take."""
        if self._average is None:
            return 1
        k = int(BATCH_SECONDS / max(self._average, 1e-4))
        if remaining is not None:
            k = min(k, int((remaining - HOLD_MAX) / max(self._average, 1e-4)))
        with self._lock:
            if self._left is not None:
                k = min(k, self._left)
        return max(1, min(k, PREFETCH_MAX))

    def summary(self) -> str | None:
        """One line for the worker's log: how much batching happened."""
        if self.claims == 0 or self.claimed == self.claims:
            return None
        return f"{self.claimed} tasks claimed in {self.claims} claims (prefetch)"

    def keep(self, tasks: list[Claimed]) -> Claimed | None:
        """Keep all but the first of a fresh claim; the first starts now."""
        if not tasks:
            return None
        now = time.monotonic()
        self.claims += 1
        self.claimed += len(tasks)
        with self._lock:
            if self._left is not None:
                self._left -= len(tasks)
            self._ready.extend(tasks[1:])
            self._held_since = now
        if len(tasks) > 1:
            self._ensure_thread()
            self._wake.set()
        self._started[tasks[0].id] = now
        return tasks[0]

    def take(self) -> Claimed | None:
        """The next prefetched task, if it is still within the hold bound."""
        with self._lock:
            if not self._ready:
                return None
            if self._stop() or time.monotonic() - self._held_since > HOLD_MAX:
                return None  # the side thread gives them back
            task = self._ready.popleft()
        self._started[task.id] = time.monotonic()
        return task

    def has_ready(self) -> bool:
        """True while prefetched tasks wait (given back before a claim or an exit)."""
        with self._lock:
            return bool(self._ready)

    # --- results ------------------------------------------------------------
    def buffer(self, task: Claimed, outcome: Outcome) -> bool:
        """Keep a successful result to write with others; False: write it now."""
        started = self._started.pop(task.id, None)
        if started is not None:
            runtime = time.monotonic() - started
            self._average = (
                runtime
                if self._average is None
                else (1 - SMOOTHING) * self._average + SMOOTHING * runtime
            )
        if not outcome.ok or self._thread is None:
            return False  # failures at once; no batching seen yet: nothing to group with
        with self._lock:
            if not self._done:
                self._done_since = time.monotonic()
            self._done.append((task, outcome))
        self._wake.set()
        return True

    def due(self) -> bool:
        """Enough results are buffered to write them now."""
        with self._lock:
            return len(self._done) >= FLUSH_MAX

    def take_done(self) -> list[tuple[Claimed, Outcome]]:
        with self._lock:
            done, self._done = self._done, []
        return done

    def held(self) -> list[Claimed]:
        """Tasks held in this worker's name but not running: their leases need renewing."""
        with self._lock:
            return [*self._ready, *(task for task, _ in self._done)]

    def take_ready(self) -> list[Claimed]:
        with self._lock:
            ready = list(self._ready)
            self._ready.clear()
            if self._left is not None:
                self._left += len(ready)
        for task in ready:
            self._started.pop(task.id, None)
        return ready

    # --- the side thread ----------------------------------------------------
    def _ensure_thread(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._watch, name="prefetch", daemon=True)
            self._thread.start()

    def _watch(self) -> None:
        while not self._closed:
            with self._lock:
                ready, done = bool(self._ready), bool(self._done)
                since, done_since = self._held_since, self._done_since
            if not ready and not done:
                self._wake.wait()
                self._wake.clear()
                continue
            now = time.monotonic()
            give = ready and (self._stop() or now - since > HOLD_MAX)
            flush = done and now - done_since >= FLUSH_EVERY
            try:
                if give:
                    why = "stop signal" if self._stop() else f"held over {HOLD_MAX:g} s"
                    self.give_back_on(self._side, why)
                if flush:
                    self.flush_on(self._side)
            except Exception as exc:  # noqa: BLE001 - the main thread's next write retries
                self._log(f"prefetch: {str(exc).splitlines()[0] if str(exc) else exc}")
                time.sleep(0.5)
            waits = []
            if ready and not give:
                waits.append(min(since + HOLD_MAX - now, 0.05))
            if done and not flush:
                waits.append(done_since + FLUSH_EVERY - now)
            self._wake.wait(max(min(waits), 0.001) if waits else 0.05)
            self._wake.clear()

    def give_back_on(self, run: Runner, why: str) -> list[int]:
        """Give every prefetched task back, uncounted, through ``run(fn)``."""
        ready = self.take_ready()
        if not ready:
            return []
        try:
            given = run(lambda conn: claims.give_back(conn, self.worker_id, ready))
        except BaseException:
            with self._lock:  # not given back: still ours (the lease returns them at worst)
                self._ready.extendleft(reversed(ready))
            raise
        ids = list(given) if isinstance(given, list) else []
        self._log(f"{len(ids)} prefetched task(s) given back ({why})")
        return ids

    def flush_on(self, run: Runner) -> None:
        """Write the buffered results through ``run(fn)``."""
        done = self.take_done()
        if not done:
            return

        def write(conn: driver.Connection) -> list[str | None]:
            todo = done
            if self._unsure:  # the last try may have committed before its reply was lost
                todo = [
                    d for d in done if claims.recorded_status(conn, self.worker_id, d[0]) is None
                ]
            try:
                written = dict(
                    zip(
                        (t.id for t, _ in todo),
                        claims.finish_many(conn, self.worker_id, todo),
                        strict=True,
                    )
                )
            except Exception:
                self._unsure = True
                raise
            self._unsure = False
            return [written.get(t.id, "recorded") for t, _ in done]

        try:
            statuses = run(write)
        except BaseException:
            with self._lock:  # keep them for the next flush (fenced, so never twice)
                self._done[:0] = done
            raise
        if isinstance(statuses, list):
            for (task, _), status in zip(done, statuses, strict=True):
                if status is None:
                    self._log(f"task {task.id}: result discarded, the attempt was replaced")

    def close(self) -> None:
        self._closed = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
