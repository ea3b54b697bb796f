"""The worker loop: claim a task, run it, record it; repeat until told to stop.

Exit reasons recorded on the worker's row: ``done`` (singleflow ran its task),
``empty_queue``, ``nitems_max``, ``deadline`` (also when tasks wait but none fits
in the time left: the detail says so), ``signal``, ``database_unreachable``,
``crash``.

Database outages: every statement is retried through ``queue.retry`` (the
connection is re-opened in place). An idle worker waits up to ``db_wait``
seconds for the database, then exits with code 4 (``DatabaseError``) after
recording ``database_unreachable`` when it can. A worker holding a task keeps
running it and retries recording the result until it succeeds or its deadline
(else ``FINISH_WAIT``) passes; fencing still applies, so a result that arrives
after another worker took the task over is discarded.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from hpclaunch import __version__
from hpclaunch.errors import DatabaseError
from hpclaunch.queue import claims, driver, operations, retry
from hpclaunch.queue.migrate import open_ready
from hpclaunch.tasks.payloads import canonical_tags, worker_tag_sets
from hpclaunch.tasks.run import CallInterrupted, Control, run
from hpclaunch.worker import estimates
from hpclaunch.worker.deadline import deadline_from_environment
from hpclaunch.worker.identity import hostname, scheduler_identity

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)
FINISH_WAIT = 3600.0  # how long a result is retried without a deadline (seconds)
EXIT_RECORD_WAIT = 10.0  # how long recording the worker's exit is retried


@dataclass
class WorkerOptions:
    database_url: str
    tags: list[str] = field(default_factory=lambda: ["default"])
    singleflow: bool = False
    nitems_max: int | None = None
    close_on_empty_queue: bool = False
    wait_timeout: float | None = None
    deadline: float | None = None  # epoch seconds
    launch_id: str | None = None
    grace: float = 30.0
    lease: float = 120.0
    allow_pickle: bool = True
    log_dir: Path | None = None
    quiet: bool = False
    max_poll: float = 2.0
    db_wait: float = 300.0  # seconds an idle worker waits for an unreachable database


def log(opts: WorkerOptions, message: str) -> None:
    if not opts.quiet:
        print(f"hpclaunch worker: {message}", file=sys.stderr, flush=True)


class Worker:
    def __init__(self, opts: WorkerOptions):
        self.opts = opts
        self.control = Control()
        self.current: claims.Claimed | None = None
        self.worker_id: int | None = None
        self._stop_heartbeat = threading.Event()
        self._last_reap = 0.0
        self._last_estimates = float("-inf")
        self.conn: driver.Connection | None = None
        self.exit_detail: str | None = None
        self.tag_sets: list[str] = []

    # --- signals -------------------------------------------------------------
    def _on_stop(self, signum, frame) -> None:
        control = self.control
        if control.stop_signal is not None:
            return
        control.stop_signal = signum
        control.grace_deadline = time.monotonic() + self.opts.grace
        if control.call_running:
            remaining = signal.getitimer(signal.ITIMER_REAL)[0]
            delay = self.opts.grace if remaining == 0 else min(remaining, self.opts.grace)
            signal.setitimer(signal.ITIMER_REAL, max(delay, 0.001))

    def _on_alarm(self, signum, frame) -> None:
        control = self.control
        if not control.call_running:
            return
        task = self.current
        if task is not None and control.lease_lost == task.token:
            raise CallInterrupted("lease_lost")
        raise CallInterrupted("stopped" if control.grace_over() else "timeout")

    def _install_signals(self) -> None:
        for sig in STOP_SIGNALS:
            signal.signal(sig, self._on_stop)
        signal.signal(signal.SIGALRM, self._on_alarm)

    # --- heartbeat -----------------------------------------------------------
    def _heartbeat_loop(self) -> None:
        interval = max(self.opts.lease / 4, 0.2)
        conn: driver.Connection | None = None
        while not self._stop_heartbeat.wait(interval):
            try:
                if conn is None:
                    conn = driver.connect(self.opts.database_url)
                task = self.current
                still_ours = claims.heartbeat(conn, self.worker_id, self.opts.lease, task)
                if task is not None and not still_ours and task is self.current:
                    # Per attempt: a late verdict on one task never touches the next.
                    self.control.lease_lost = task.token
                    log(self.opts, f"task {task.id} is no longer ours (canceled or reaped)")
                    if self.control.call_running and self.current is task:
                        # An in-process call is stopped like a timeout: no second copy
                        # keeps running next to the attempt that replaced it.
                        signal.pthread_kill(threading.main_thread().ident, signal.SIGALRM)
            except Exception as exc:  # noqa: BLE001 - keep running the task through outages
                log(self.opts, f"heartbeat failed: {str(exc).splitlines()[0] if str(exc) else exc}")
                if conn is not None:
                    conn.close()
                conn = None
        if conn is not None:
            conn.close()

    # --- database access through outages --------------------------------------
    def _log(self, message: str) -> None:
        log(self.opts, message)

    def _db(
        self,
        fn,
        *args,
        wait: float | None = None,
        what: str | None = None,
        stoppable: bool = False,
        **kwargs,
    ):
        """``fn(conn, ...)`` retried through outages (see ``queue.retry``)."""
        return retry.call(
            self.conn,
            fn,
            *args,
            wait=self.opts.db_wait if wait is None else wait,
            log=self._log,
            what=what,
            stop=self.control.stop_requested if stoppable else None,
            **kwargs,
        )

    def _claim(self, claimer: claims.Claimer) -> claims.Claimed | None:
        broke = False

        def attempt(conn):
            nonlocal broke
            if broke:
                # A claim may have committed before the connection broke: give
                # back anything held under our name that we are not running.
                for task_id in claims.release_orphans(conn, self.worker_id):
                    self._log(f"task {task_id} put back (claimed while the connection broke)")
            remaining = self._remaining()
            if remaining is not None and remaining <= 0:
                return None
            try:
                return claimer.claim(remaining)
            except Exception:
                broke = True
                raise

        self._refresh_estimates(claimer)
        return self._db(attempt, what="claim", stoppable=True)

    def _finish(self, task: claims.Claimed, outcome: claims.Outcome) -> str | None:
        broke = False

        def attempt(conn):
            nonlocal broke
            if broke:
                # The last try may have committed before its reply was lost.
                status = claims.recorded_status(conn, self.worker_id, task)
                if status is not None:
                    return status
            try:
                return claims.finish(conn, self.worker_id, task, outcome)
            except Exception:
                broke = True
                raise

        wait = FINISH_WAIT if self.opts.deadline is None else self.opts.deadline - time.time()
        return self._db(
            attempt, wait=max(wait, self.opts.db_wait), what=f"recording task {task.id}"
        )

    def _refresh_estimates(self, claimer: claims.Claimer) -> None:
        if self.opts.deadline is None:
            return
        now = time.monotonic()
        if now - self._last_estimates < estimates.REFRESH:
            return
        self._last_estimates = now
        try:
            samples = claims.completed_runtimes(self.conn, self.tag_sets)
        except Exception as exc:  # noqa: BLE001 - stale estimates are fine; the claim retries
            if not retry.is_transient(exc):
                raise
            return
        claimer.set_estimates(estimates.estimates(samples))

    # --- main loop -----------------------------------------------------------
    def run(self) -> str:
        opts = self.opts
        self.tag_sets = tag_sets = worker_tag_sets(opts.tags)
        self._install_signals()
        if opts.deadline is None:
            opts.deadline, note = deadline_from_environment(os.environ)
            if note:
                log(
                    opts,
                    f"deadline {_fmt_epoch(opts.deadline)} {note}"
                    if opts.deadline is not None
                    else note,
                )
        try:
            self.conn = conn = retry.call(
                None,
                open_ready,
                opts.database_url,
                wait=opts.db_wait,
                log=self._log,
                what="connect",
                stop=self.control.stop_requested,
            )
            identity = scheduler_identity()
            self.worker_id = self._db(
                claims.register_worker,
                what="register",
                host=hostname(),
                pid=os.getpid(),
                tags=canonical_tags(opts.tags),
                mode="singleflow" if opts.singleflow else "draining",
                lease=opts.lease,
                launch_id=opts.launch_id or os.environ.get("HPCLAUNCH_LAUNCH_ID") or None,
                version=__version__,
                **identity,
            )
        except Exception as exc:
            if not retry.is_transient(exc):
                raise
            raise DatabaseError(
                f"the database was unreachable for {opts.db_wait:g} s at start-up: "
                f"{retry.first_line(exc)}"
            ) from exc
        log(opts, f"worker {self.worker_id} started (tags {canonical_tags(opts.tags)})")
        beat = threading.Thread(target=self._heartbeat_loop, name="heartbeat", daemon=True)
        beat.start()
        claimer = claims.Claimer(
            conn,
            worker_id=self.worker_id,
            tag_sets=tag_sets,
            lease=opts.lease,
            allow_pickle=opts.allow_pickle,
            fit_deadline=opts.deadline is not None,
        )
        log_root = opts.log_dir or _default_log_root()
        reason, detail, error = "crash", None, None
        try:
            reason = self._loop(conn, claimer, log_root)
            detail = self.exit_detail
        except Exception as exc:
            if not retry.is_transient(exc):
                detail = "".join(traceback.format_exception(exc))[-4000:]
                if self.current is not None:
                    _record_crash(conn, self.worker_id, self.current, detail)
                raise
            if self.current is None and self.control.stop_requested():
                reason = "signal"
            else:
                reason, detail = "database_unreachable", retry.first_line(exc)
                if self.current is not None:
                    log(
                        opts,
                        f"could not record task {self.current.id}: its lease will "
                        "return it to the queue",
                    )
                error = DatabaseError(
                    f"worker {self.worker_id} stopped: the database stayed unreachable ({detail})"
                )
        except BaseException as exc:
            detail = "".join(traceback.format_exception(exc))[-4000:]
            if self.current is not None:
                _record_crash(conn, self.worker_id, self.current, detail)
            raise
        finally:
            self._stop_heartbeat.set()
            if self.current is None:
                # A claim whose reply was lost must not wait for its lease to expire.
                try:
                    claims.release_orphans(self.conn or conn, self.worker_id)
                except Exception:  # noqa: BLE001 - the lease returns it otherwise
                    pass
            try:
                self._db(
                    claims.record_worker_exit,
                    self.worker_id,
                    reason,
                    detail,
                    wait=min(EXIT_RECORD_WAIT, opts.db_wait),
                    what="recording the exit",
                )
            except Exception as exc:  # noqa: BLE001 - the row then shows a stale heartbeat
                if not retry.is_transient(exc):
                    raise
                log(opts, f"could not record the exit ({retry.first_line(exc)})")
            finally:
                conn.close()
            log(opts, f"worker {self.worker_id} stopped: {reason}")
        if error is not None:
            raise error
        return reason

    def _loop(self, conn: driver.Connection, claimer: claims.Claimer, log_root: Path) -> str:
        opts = self.opts
        done = 0
        self._maybe_reap(force=True)
        while True:
            if self.control.stop_requested():
                return "signal"
            if opts.nitems_max is not None and done >= opts.nitems_max:
                return "nitems_max"
            remaining = self._remaining()
            if remaining is not None and remaining <= 0:
                return "deadline"
            self._maybe_reap()
            task = self._claim(claimer)
            if task is None:
                task = self._wait_for_task(claimer)
                if task is None:
                    return self._why_idle()
            if self.control.stop_requested():
                # Told to stop while claiming (or idle-polling): don't start it.
                self._db(claims.release, self.worker_id, task, "stopped", what="release")
                return "signal"
            self.current = task
            started = time.monotonic()
            result = run(task, self.control, log_root)
            if result.outcome is None:
                why = result.released or "stopped"
                if self.control.stop_signal == signal.SIGUSR1:
                    # The scheduler's warning before the walltime (B:USR1@grace): the
                    # reconciler reads this as the task running out of time.
                    why = claims.WALLTIME_RELEASE
                self._db(claims.release, self.worker_id, task, why, what="release")
                self.current = None
                log(opts, f"task {task.id} put back on the queue ({result.released})")
                return "signal"
            status = self._finish(task, result.outcome)
            self.current = None
            elapsed = time.monotonic() - started
            if status is None:
                log(opts, f"task {task.id}: result discarded, the attempt was replaced")
            else:
                log(opts, f"task {task.id} {status} in {elapsed:.2f} s")
            done += 1
            if opts.singleflow:
                return "done"

    def _why_idle(self) -> str:
        """The exit reason when no task could be claimed."""
        if self.control.stop_requested():
            return "signal"
        remaining = self._remaining()
        if remaining is None:
            return "empty_queue"
        if remaining <= 0:
            return "deadline"
        waiting = self._db(claims.waiting_count, self.tag_sets, what="count")
        if waiting:
            self.exit_detail = (
                f"{waiting} pending task(s) do not fit in the {remaining:.0f} s "
                "left before the deadline"
            )
            log(self.opts, self.exit_detail)
            return "deadline"
        return "empty_queue"

    def _wait_for_task(self, claimer) -> claims.Claimed | None:
        """Poll with backoff until a task comes, the wait times out or a stop arrives."""
        opts = self.opts
        if self._maybe_reap(force=True):
            task = self._claim(claimer)
            if task is not None:
                return task
        exits_when_empty = opts.singleflow or opts.close_on_empty_queue
        limit = (
            opts.wait_timeout
            if opts.wait_timeout is not None
            else (0.0 if exits_when_empty else None)
        )
        start = time.monotonic()
        delay = 0.05
        while limit is None or time.monotonic() - start < limit:
            if self.control.stop_requested():
                return None
            remaining = self._remaining()
            if remaining is not None and remaining <= 0:
                return None
            time.sleep(delay)
            delay = min(delay * 2, opts.max_poll)
            self._maybe_reap()
            task = self._claim(claimer)
            if task is not None:
                return task
        return None

    def _remaining(self) -> float | None:
        if self.opts.deadline is None:
            return None
        return self.opts.deadline - time.time() - self.opts.grace

    def _maybe_reap(self, *, force: bool = False) -> int:
        now = time.monotonic()
        if not force and now - self._last_reap < max(self.opts.lease / 2, 1.0):
            return 0
        self._last_reap = now
        reaped = self._db(operations.reap, what="reap", stoppable=True)
        for task_id, status in reaped:
            log(self.opts, f"reaped task {task_id} (lease expired): now {status}")
        return len(reaped)


def _fmt_epoch(epoch: float | None) -> str:
    if epoch is None:
        return "none"
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(epoch))


def _record_crash(conn, worker_id: int, task: claims.Claimed, detail: str) -> None:
    try:
        claims.finish(
            conn, worker_id, task, claims.Outcome(ok=False, reason="worker_crash", error=detail)
        )
    except Exception:  # noqa: BLE001 - the lease will return the task if this fails
        pass


def _default_log_root() -> Path:
    env = os.environ.get("HPCLAUNCH_LOG_DIR")
    if env:
        return Path(env).expanduser()
    from hpclaunch.paths import home

    return home() / "logs" / "tasks"


def run_worker(opts: WorkerOptions) -> str:
    return Worker(opts).run()
