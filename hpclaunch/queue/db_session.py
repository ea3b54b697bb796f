"""``QueueSession`` over the database: the worker's operations of ``queue.claims``
and ``queue.operations`` on a ``queue.driver`` connection, retried through outages.

Database outages: every statement is retried through ``queue.retry`` (the
connection is re-opened in place). A claim or a finish whose reply was lost may
have committed: the retry first puts back what was claimed under the worker's
name (``release_orphans``) or reads whether the attempt was recorded
(``recorded_status``). The heartbeat thread has its own connection, opened on
first use and dropped after an error.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from hpclaunch.queue import claims, driver, estimates, operations, retry, wake
from hpclaunch.queue.migrate import open_ready
from hpclaunch.queue.prefetch import HOLD_MAX, Prefetch
from hpclaunch.queue.session import Claimed, Outcome, QueueUnavailable, Watch, WorkerInfo
from hpclaunch.queue.urls import is_sqlite

T = TypeVar("T")

# An idle worker claims when woken (PostgreSQL NOTIFY, SQLite's data_version),
# and every FALLBACK_POLL s regardless: a lost notification delays, never loses.
FALLBACK_POLL = 2.0
SQLITE_POLL = 0.02  # seconds between SQLite change checks (one PRAGMA each)
STOP_CHECK = 0.25  # an idle wait notices a stop request within this (s)


class DatabaseSession:
    """A worker's session on the queue database (see ``queue.session.QueueSession``)."""

    long_poll = True  # an idle claim waits for work itself (``queue.wake``)

    def __init__(
        self, url: str, *, wait: float, log: Callable[[str], None], stop: Callable[[], bool]
    ):
        self.url = url
        self.wait = wait  # how long an idle worker waits for the database
        self.log = log
        self.stop = stop
        self.conn: driver.Connection | None = None
        self.worker_id: int | None = None
        self.lease = 0.0
        self.tag_sets: list[str] = []
        self.allow_pickle = True
        self.walltime_releases = claims.WALLTIME_RELEASES
        self.engines: tuple[str, ...] = ()
        self._watching: int | None = None  # the task this worker watches, if any
        self._claimer: claims.Claimer | None = None
        self._beat: driver.Connection | None = None
        self._side_lock = threading.Lock()  # the heartbeat and prefetch threads share _beat
        self._prefetch: Prefetch | None = None  # a draining worker's batching
        self._listener: wake.Listener | None = None  # an idle worker's wake-up
        self._listener_failed = False
        self._last_estimates = float("-inf")

    def _call(
        self,
        fn: Callable[..., T],
        *args: Any,
        wait: float | None = None,
        what: str | None = None,
        stoppable: bool = False,
        **kwargs: Any,
    ) -> T:
        """``fn(conn, ...)`` retried through outages; ``QueueUnavailable`` after ``wait``."""
        try:
            return retry.call(
                self.conn,
                fn,
                *args,
                wait=self.wait if wait is None else wait,
                log=self.log,
                what=what,
                stop=self.stop if stoppable else None,
                **kwargs,
            )
        except Exception as exc:
            if retry.is_transient(exc):
                raise QueueUnavailable(retry.first_line(exc)) from exc
            raise

    def register(self, worker: WorkerInfo) -> int:
        self.conn = self._call(open_ready, self.url, what="connect", stoppable=True)
        self.lease, self.tag_sets = worker.lease, worker.tag_sets
        self.allow_pickle = worker.allow_pickle
        self.walltime_releases = worker.walltime_releases
        self.engines = tuple(worker.engines)
        worker_id = self._call(
            claims.register_worker,
            what="register",
            host=worker.host,
            pid=worker.pid,
            tags=worker.tags,
            mode=worker.mode,
            lease=worker.lease,
            launch_id=worker.launch_id,
            version=worker.version,
            scheduler=worker.scheduler,
            job_id=worker.job_id,
            array_job_id=worker.array_job_id,
            array_index=worker.array_index,
            engines=",".join(sorted(set(worker.engines))) or None,
        )
        self.worker_id = worker_id
        self._claimer = claims.Claimer(
            self.conn,
            worker_id=worker_id,
            tag_sets=worker.tag_sets,
            lease=worker.lease,
            allow_pickle=worker.allow_pickle,
            fit_deadline=worker.fit_deadline,
            engines=self.engines,
        )
        if worker.mode == "draining":
            self._prefetch = Prefetch(
                worker_id=worker_id,
                side=self._on_side,
                stop=self.stop,
                log=self.log,
                nitems_max=worker.nitems_max,
            )
        return worker_id

    def _on_side(self, fn: Callable[[driver.Connection], T]) -> T:
        """``fn(conn)`` on the side connection (heartbeat and prefetch threads),
        opened on first use and dropped after an error; no retry."""
        with self._side_lock:
            try:
                if self._beat is None:
                    self._beat = driver.connect(self.url)
                return fn(self._beat)
            except Exception:
                if self._beat is not None:
                    self._beat.close()
                self._beat = None
                raise

    def _on_main(self, fn: Callable[[driver.Connection], T]) -> T:
        """``fn(conn)`` on the main connection, retried through outages."""
        return self._call(fn, what="recording results")

    def _settle(self) -> None:
        """Before a claim, an idle wait or an exit: write buffered results and
        give back prefetched tasks that may no longer start."""
        pf = self._prefetch
        if pf is None:
            return
        if pf.has_ready():
            pf.give_back_on(self._on_main, "held too long")
        pf.flush_on(self._on_main)

    def claim(self, remaining: float | None, wait: float = 0.0) -> Claimed | None:
        task = self._claim_now(remaining)
        if task is not None or wait <= 0:
            return task
        return self._claim_waiting(remaining, wait)

    def _claim_waiting(self, remaining: float | None, wait: float) -> Claimed | None:
        """Idle: claim again when the database says a task may be pending
        (``queue.wake``), and every ``FALLBACK_POLL`` s regardless, so a lost
        notification only delays. A stop request ends the wait within ``STOP_CHECK`` s."""
        asked = time.monotonic()
        end = asked + wait
        fresh = self._listener is None
        listener = self._wake_listener()
        if fresh and listener is not None:
            # A task enqueued between the last claim and the LISTEN went unheard.
            task = self._claim_now(remaining)
            if task is not None:
                return task
        last = asked
        while not self.stop():
            now = time.monotonic()
            if now >= end:
                return None
            step = min(end - now, STOP_CHECK, last + FALLBACK_POLL - now)
            woke = False
            if listener is not None:
                try:
                    woke = listener.wait(max(step, 0.0))
                except Exception as exc:  # noqa: BLE001 - poll without it
                    self.log(f"wake-up listener failed ({retry.first_line(exc)}); polling")
                    self._close_listener()
                    listener = None
            else:
                time.sleep(max(step, 0.0))
            now = time.monotonic()
            if not woke and now - last < FALLBACK_POLL:
                continue
            last = now
            left = None if remaining is None else remaining - (now - asked)
            if left is not None and left <= 0:
                return None
            task = self._claim_now(left)
            if task is not None:
                return task
        return None

    def _wake_listener(self) -> wake.Listener | None:
        """The idle worker's listener, opened on first idle wait (a busy worker
        never pays for it); None (poll) when it cannot be opened."""
        if self._listener is None and not self._listener_failed:
            try:
                if is_sqlite(self.url):
                    self._listener = wake.SqliteListener(self.url, slow_poll=SQLITE_POLL)
                else:
                    self._listener = wake.open_listener(self.url)
            except Exception as exc:  # noqa: BLE001 - polling still finds the work
                self._listener_failed = True
                self.log(f"no wake-up listener ({retry.first_line(exc)}); polling")
        return self._listener

    def _close_listener(self) -> None:
        if self._listener is not None:
            self._listener.close()
        self._listener = None

    def _claim_now(self, remaining: float | None) -> Claimed | None:
        claimer, worker_id = self._claimer, self.worker_id
        assert claimer is not None and worker_id is not None, "register first"
        pf = self._prefetch
        k = 1
        if pf is not None:
            ready = pf.take()
            if ready is not None:
                return ready  # claimed with the batch before it (no watch then)
            self._settle()
            if self.stop():
                return None  # told to stop: claim nothing more
            k = pf.size(remaining)
        broke = False
        asked = time.monotonic()

        def attempt(conn: driver.Connection) -> Claimed | None:
            nonlocal broke
            if broke:
                # A claim may have committed before the connection broke: give
                # back anything held under our name that we are not running
                # (nothing is prefetched or buffered now; the side lock waits
                # out a flush in flight).
                with self._side_lock:
                    for task_id in claims.release_orphans(conn, worker_id):
                        self.log(f"task {task_id} put back (claimed while the connection broke)")
            left = None if remaining is None else remaining - (time.monotonic() - asked)
            if left is not None and left <= 0:
                return None  # the outage ate the time that was left
            try:
                if pf is None:
                    return claimer.claim(left)
                if k > 1 and left is not None:
                    left -= HOLD_MAX  # a prefetched task may start that much later
                return pf.keep(claimer.claim_many(left, k))
            except Exception:
                broke = True
                raise

        task = self._call(attempt, what="claim", stoppable=True)
        if task is not None and self._watching is not None:
            if task.id != self._watching:
                # Busy now: let another idle worker wait for the silent task.
                self._call(claims.unwatch, worker_id, what="unwatch")
            self._watching = None
        return task

    def watch(self, within: float | None) -> Watch | None:
        worker_id = self.worker_id
        assert worker_id is not None, "register first"
        found = self._call(
            claims.watch,
            worker_id,
            self.tag_sets,
            allow_pickle=self.allow_pickle,
            within=within,
            engines=self.engines,
            what="watch",
            stoppable=True,
        )
        self._watching = None if found is None else found.task_id
        return found

    def heartbeat(self, task: Claimed | None) -> bool:
        worker_id = self.worker_id
        assert worker_id is not None, "register first"
        ours = self._on_side(lambda conn: claims.heartbeat(conn, worker_id, self.lease, task))
        held = [] if self._prefetch is None else self._prefetch.held()
        if held:
            self._on_side(lambda conn: claims.renew(conn, self.lease, held))
        return ours

    def finish(self, task: Claimed, outcome: Outcome, *, wait: float) -> str | None:
        worker_id = self.worker_id
        assert worker_id is not None, "register first"
        pf = self._prefetch
        if pf is not None and pf.buffer(task, outcome):
            if pf.due():
                pf.flush_on(lambda fn: self._call(fn, wait=wait, what="recording results"))
            return "completed"  # written within prefetch.FLUSH_EVERY, fenced like below
        broke = False

        def attempt(conn: driver.Connection) -> str | None:
            nonlocal broke
            if broke:
                # The last try may have committed before its reply was lost.
                status = claims.recorded_status(conn, worker_id, task)
                if status is not None:
                    return status
            try:
                return claims.finish(conn, worker_id, task, outcome)
            except Exception:
                broke = True
                raise

        return self._call(attempt, wait=wait, what=f"recording task {task.id}")

    def release(self, task: Claimed, reason: str) -> str | None:
        return self._call(
            claims.release,
            self.worker_id,
            task,
            reason,
            self.walltime_releases,
            what="release",
        )

    def record_crash(self, task: Claimed, detail: str) -> None:
        if self.conn is None or self.worker_id is None:
            return
        try:
            claims.finish(
                self.conn,
                self.worker_id,
                task,
                Outcome(ok=False, reason="worker_crash", error=detail),
            )
        except Exception:  # noqa: BLE001 - the lease will return the task if this fails
            pass

    def release_orphans(self) -> list[int]:
        if self.conn is None or self.worker_id is None:
            return []
        try:
            self._settle()  # results first: a buffered one is not an orphan
            with self._side_lock:
                return claims.release_orphans(self.conn, self.worker_id)
        except Exception:  # noqa: BLE001 - the lease returns them otherwise
            return []

    def reap(self) -> list[tuple[int, str]]:
        return self._call(operations.reap, what="reap", stoppable=True)

    def refresh_estimates(self) -> None:
        """At most every ``estimates.REFRESH`` s: one small query; stale is fine."""
        now = time.monotonic()
        if self._claimer is None or now - self._last_estimates < estimates.REFRESH:
            return
        self._last_estimates = now
        try:
            samples = claims.completed_runtimes(self.conn, self.tag_sets)  # type: ignore[arg-type]
        except Exception as exc:  # noqa: BLE001 - the claim that follows retries
            if not retry.is_transient(exc):
                raise
            return
        self._claimer.set_estimates(estimates.estimates(samples))

    def too_long_count(self, remaining: float) -> int:
        claimer = self._claimer
        assert claimer is not None, "register first"
        return self._call(lambda _conn: claimer.too_long(remaining), what="count")

    def record_exit(self, reason: str, detail: str | None, *, wait: float) -> None:
        if self.conn is None or self.worker_id is None:
            return
        self._settle()
        self._call(
            claims.record_worker_exit,
            self.worker_id,
            reason,
            detail,
            wait=wait,
            what="recording the exit",
        )

    def close(self) -> None:
        if self._prefetch is not None:
            self._prefetch.close()
            summary = self._prefetch.summary()
            if summary:
                self.log(summary)
        self._close_listener()
        for conn in (self.conn, self._beat):
            if conn is not None:
                conn.close()
