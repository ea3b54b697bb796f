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

import time
from collections.abc import Callable
from typing import Any, TypeVar

from hpclaunch.queue import claims, driver, estimates, operations, retry
from hpclaunch.queue.migrate import open_ready
from hpclaunch.queue.session import Claimed, Outcome, QueueUnavailable, Watch, WorkerInfo

T = TypeVar("T")


class DatabaseSession:
    """A worker's session on the queue database (see ``queue.session.QueueSession``)."""

    long_poll = False  # the loop sleeps between claims

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
        return worker_id

    def claim(self, remaining: float | None, wait: float = 0.0) -> Claimed | None:
        claimer, worker_id = self._claimer, self.worker_id
        assert claimer is not None and worker_id is not None, "register first"
        broke = False
        asked = time.monotonic()

        def attempt(conn: driver.Connection) -> Claimed | None:
            nonlocal broke
            if broke:
                # A claim may have committed before the connection broke: give
                # back anything held under our name that we are not running.
                for task_id in claims.release_orphans(conn, worker_id):
                    self.log(f"task {task_id} put back (claimed while the connection broke)")
            left = None if remaining is None else remaining - (time.monotonic() - asked)
            if left is not None and left <= 0:
                return None  # the outage ate the time that was left
            try:
                return claimer.claim(left)
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
        assert self.worker_id is not None, "register first"
        try:
            if self._beat is None:
                self._beat = driver.connect(self.url)
            return claims.heartbeat(self._beat, self.worker_id, self.lease, task)
        except Exception:
            if self._beat is not None:
                self._beat.close()
            self._beat = None
            raise

    def finish(self, task: Claimed, outcome: Outcome, *, wait: float) -> str | None:
        worker_id = self.worker_id
        assert worker_id is not None, "register first"
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
        self._call(
            claims.record_worker_exit,
            self.worker_id,
            reason,
            detail,
            wait=wait,
            what="recording the exit",
        )

    def close(self) -> None:
        for conn in (self.conn, self._beat):
            if conn is not None:
                conn.close()
