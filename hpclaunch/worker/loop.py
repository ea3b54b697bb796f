"""The worker loop: claim a task, run it, record it; repeat until told to stop.

Exit reasons recorded on the worker's row: ``done`` (singleflow ran its task),
``empty_queue``, ``nitems_max``, ``deadline`` (also when tasks wait but none fits
in the time left: the detail says so), ``signal``, ``database_unreachable``,
``crash``.

The loop talks to the queue only through a ``QueueSession`` (``queue.session``):
no SQL and no connections here, so a session over HTTP needs no change below.

Outages: the session retries each operation. An idle worker waits up to
``db_wait`` seconds for the queue, then exits with code 4 (``DatabaseError``)
after recording ``database_unreachable`` when it can. A worker holding a task
keeps running it and retries recording the result until it succeeds or its
deadline (else ``FINISH_WAIT``) passes; fencing still applies, so a result that
arrives after another worker took the task over is discarded.
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
from hpclaunch.queue.session import (
    Claimed,
    Outcome,
    QueueSession,
    QueueUnavailable,
    WorkerInfo,
)
from hpclaunch.states import ExitReason
from hpclaunch.tasks.engines import Handler, available
from hpclaunch.tasks.payloads import canonical_tags, worker_tag_sets
from hpclaunch.tasks.run import CallInterrupted, Control, run
from hpclaunch.worker.connect import open_session
from hpclaunch.worker.deadline import deadline_from_environment
from hpclaunch.worker.identity import hostname, scheduler_identity

# Release reason when the scheduler warned that the walltime is nearly spent (SIGUSR1);
# the reconciler reads it as the task running out of time.
WALLTIME_RELEASE = "walltime"
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)
FINISH_WAIT = 3600.0  # how long a result is retried without a deadline (seconds)
EXIT_RECORD_WAIT = 10.0  # how long recording the worker's exit is retried
WATCH_MARGIN = 5.0  # seconds past a watched task's lease before looking again


@dataclass
class WorkerOptions:
    database_url: str  # the queue: a database URL, or a server's http(s):// URL
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
    walltime_releases: int = 3  # walltime stops before a task fails as TIMEOUT
    insecure_http: bool = False  # a server URL: allow plain http:// to a non-loopback host
    ca_bundle: str | None = None  # a server URL: the CAs to trust (else the system's)
    engines: list[str] = field(default_factory=list)  # --engine: only these (default: all)
    engine_handlers: dict[str, str] = field(default_factory=dict)  # the profile's mapping


def log(opts: WorkerOptions, message: str) -> None:
    if not opts.quiet:
        print(f"hpclaunch worker: {message}", file=sys.stderr, flush=True)


class Worker:
    def __init__(self, opts: WorkerOptions, session: QueueSession | None = None):
        self.opts = opts
        self.control = Control()
        self.session = session or open_session(
            opts.database_url,
            wait=opts.db_wait,
            log=self._log,
            stop=self.control.stop_requested,
            insecure_http=opts.insecure_http,
            ca_bundle=opts.ca_bundle,
        )
        self.current: Claimed | None = None
        self.worker_id: int | None = None
        self._stop_heartbeat = threading.Event()
        self._last_reap = 0.0
        self.exit_detail: str | None = None
        self.tag_sets: list[str] = []
        self.engines: dict[str, Handler] = {}
        self._deadline_stop = False  # the worker stopped its task at deadline - grace

    # --- signals -------------------------------------------------------------
    def _on_stop(self, signum, frame) -> None:
        control = self.control
        if control.stop_signal is not None:
            return
        control.stop_signal = signum
        # Stopped by its own deadline watch, the task gets half the grace: the
        # other half records the release before the scheduler's kill.
        grace = self.opts.grace / 2 if self._deadline_stop else self.opts.grace
        control.grace_deadline = time.monotonic() + grace
        if control.call_running:
            remaining = signal.getitimer(signal.ITIMER_REAL)[0]
            delay = grace if remaining == 0 else min(remaining, grace)
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
        while not self._stop_heartbeat.wait(interval):
            try:
                task = self.current
                still_ours = self.session.heartbeat(task)
                if task is not None and not still_ours and task is self.current:
                    # Per attempt: a late verdict on one task never touches the next.
                    self.control.lease_lost = task.token
                    log(self.opts, f"task {task.id} is no longer ours (canceled or reaped)")
                    if self.control.call_running and self.current is task:
                        # An in-process call is stopped like a timeout: no second copy
                        # keeps running next to the attempt that replaced it.
                        signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGALRM)
            except Exception as exc:  # noqa: BLE001 - keep running the task through outages
                log(self.opts, f"heartbeat failed: {str(exc).splitlines()[0] if str(exc) else exc}")

    def _deadline_watch(self, deadline: float) -> None:
        """At the deadline minus the grace, stop a running task as the scheduler's
        USR1 would, on every scheduler: only SLURM sends one (``--signal``); PBS and
        Grid Engine send SIGTERM at the limit and SIGKILL soon after. The task is
        put back as ``walltime``, which the reconciler types TIMEOUT."""
        at = deadline - self.opts.grace
        while not self._stop_heartbeat.wait(min(max(at - time.time(), 0.05), 1.0)):
            if time.time() < at or self.control.stop_signal is not None:
                continue
            task = self.current
            if task is None:
                continue  # idle: the loop's own deadline check ends it
            self._deadline_stop = True
            log(self.opts, f"deadline minus the grace reached: stopping task {task.id}")
            signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGUSR1)
            return

    def _log(self, message: str) -> None:
        log(self.opts, message)

    def _claim(self, wait: float = 0.0) -> Claimed | None:
        remaining = self._remaining()
        if remaining is not None and remaining <= 0:
            return None
        if self.opts.deadline is not None:
            self.session.refresh_estimates()
        return self.session.claim(remaining, wait) if wait > 0 else self.session.claim(remaining)

    def _finish(self, task: Claimed, outcome: Outcome) -> str | None:
        wait = FINISH_WAIT if self.opts.deadline is None else self.opts.deadline - time.time()
        return self.session.finish(task, outcome, wait=max(wait, self.opts.db_wait))

    # --- main loop -----------------------------------------------------------
    def run(self) -> str:
        opts = self.opts
        self.tag_sets = worker_tag_sets(opts.tags)
        try:
            self.engines = available(opts.engine_handlers, opts.engines)
        except BaseException:
            self.session.close()
            raise
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
        identity = scheduler_identity()
        try:
            self.worker_id = self.session.register(
                WorkerInfo(
                    host=hostname(),
                    pid=os.getpid(),
                    tags=canonical_tags(opts.tags, reserved_ok=True),
                    tag_sets=self.tag_sets,
                    mode="singleflow" if opts.singleflow else "draining",
                    lease=opts.lease,
                    allow_pickle=opts.allow_pickle,
                    fit_deadline=opts.deadline is not None,
                    version=__version__,
                    walltime_releases=opts.walltime_releases,
                    launch_id=opts.launch_id or os.environ.get("HPCLAUNCH_LAUNCH_ID") or None,
                    engines=tuple(sorted(self.engines)),
                    nitems_max=opts.nitems_max,
                    **identity,
                )
            )
        except QueueUnavailable as exc:
            self.session.close()
            raise DatabaseError(
                f"the database was unreachable for {opts.db_wait:g} s at start-up: {exc}"
            ) from exc
        except BaseException:
            self.session.close()
            raise
        log(
            opts,
            f"worker {self.worker_id} started (tags {canonical_tags(opts.tags, reserved_ok=True)}; "
            f"engines {', '.join(sorted(self.engines)) or 'none'})",
        )
        beat = threading.Thread(target=self._heartbeat_loop, name="heartbeat", daemon=True)
        beat.start()
        if opts.deadline is not None:
            threading.Thread(
                target=self._deadline_watch, args=(opts.deadline,), name="deadline", daemon=True
            ).start()
        log_root = opts.log_dir or _default_log_root()
        reason, detail, error = ExitReason.CRASH, None, None
        try:
            reason = self._loop(log_root)
            detail = self.exit_detail
        except QueueUnavailable as exc:
            if self.current is None and self.control.stop_requested():
                reason = ExitReason.SIGNAL
            else:
                reason, detail = ExitReason.DATABASE_UNREACHABLE, str(exc)
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
                self.session.record_crash(self.current, detail)
            raise
        finally:
            self._stop_heartbeat.set()
            beat.join(timeout=10)
            if self.current is None:
                # A claim whose reply was lost must not wait for its lease to expire.
                self.session.release_orphans()
            try:
                self.session.record_exit(reason, detail, wait=min(EXIT_RECORD_WAIT, opts.db_wait))
            except QueueUnavailable as exc:  # the row then shows a stale heartbeat
                log(opts, f"could not record the exit ({exc})")
            finally:
                self.session.close()
            log(opts, f"worker {self.worker_id} stopped: {reason}")
        if error is not None:
            raise error
        return reason

    def _loop(self, log_root: Path) -> ExitReason:
        opts = self.opts
        done = 0
        self._maybe_reap(force=True)
        while True:
            if self.control.stop_requested():
                # The deadline watch fired just as a task ended: it is the deadline.
                return ExitReason.DEADLINE if self._deadline_stop else ExitReason.SIGNAL
            if opts.nitems_max is not None and done >= opts.nitems_max:
                return ExitReason.NITEMS_MAX
            remaining = self._remaining()
            if remaining is not None and remaining <= 0:
                return ExitReason.DEADLINE
            self._maybe_reap()
            task = self._claim()
            if task is None:
                task = self._wait_for_task()
                if task is None:
                    return self._why_idle()
            if self.control.stop_requested():
                # Told to stop while claiming (or idle-polling): don't start it.
                self.session.release(task, "stopped")
                return ExitReason.SIGNAL
            self.current = task
            started = time.monotonic()
            result = run(task, self.control, log_root, self.engines)
            if result.outcome is None:
                why = result.released or "stopped"
                if self.control.stop_signal == signal.SIGUSR1:
                    # The scheduler's warning before the walltime (B:USR1@grace): the
                    # reconciler reads this as the task running out of time.
                    why = WALLTIME_RELEASE
                status = self.session.release(task, why)
                self.current = None
                if status == "failed":
                    log(opts, f"task {task.id} failed as TIMEOUT: it never fits in the walltime")
                else:
                    log(opts, f"task {task.id} put back on the queue ({why})")
                if self._deadline_stop:
                    self.exit_detail = f"task {task.id} stopped at the deadline minus the grace"
                    return ExitReason.DEADLINE
                return ExitReason.SIGNAL
            status = self._finish(task, result.outcome)
            self.current = None
            elapsed = time.monotonic() - started
            if status is None:
                log(opts, f"task {task.id}: result discarded, the attempt was replaced")
            else:
                log(opts, f"task {task.id} {status} in {elapsed:.2f} s")
            done += 1
            if opts.singleflow:
                return ExitReason.DONE

    def _why_idle(self) -> ExitReason:
        """The exit reason when no task could be claimed."""
        if self.control.stop_requested():
            return ExitReason.SIGNAL
        remaining = self._remaining()
        if remaining is None:
            return ExitReason.EMPTY_QUEUE
        if remaining <= 0:
            return ExitReason.DEADLINE
        waiting = self.session.too_long_count(remaining)
        if waiting:
            self.exit_detail = (
                f"{waiting} pending task(s) do not fit in the {remaining:.0f} s "
                "left before the deadline"
            )
            log(self.opts, self.exit_detail)
            return ExitReason.DEADLINE
        return ExitReason.EMPTY_QUEUE

    def _wait_for_task(self) -> Claimed | None:
        """Poll with backoff until a task comes, the wait times out or a stop arrives."""
        opts = self.opts
        if self._maybe_reap(force=True):
            task = self._claim()
            if task is not None:
                return task
        exits_when_empty = opts.singleflow or opts.close_on_empty_queue
        limit = (
            opts.wait_timeout
            if opts.wait_timeout is not None
            else (0.0 if exits_when_empty else None)
        )
        end = None if limit is None else time.monotonic() + limit
        lease_end: float | None = None  # when the watched task's lease ends
        announced: int | None = None
        delay = 0.05
        while True:
            if end is not None and time.monotonic() >= end:
                # About to leave: not while a task may still come back.
                watch = self.session.watch(self._remaining())
                if watch is None:
                    return None
                if announced != watch.task_id:
                    announced = watch.task_id
                    log(
                        opts,
                        f"waiting for task {watch.task_id}: its worker {watch.owner} is silent "
                        f"for {watch.silent_for:.0f} s, its lease ends in "
                        f"{max(watch.lease_ends_in, 0):.0f} s",
                    )
                lease_end = time.monotonic() + max(watch.lease_ends_in, 0.0)
                # Look again after a heartbeat interval: an owner that beats again
                # (it was only stopped) releases the waiter early.
                end = min(lease_end + WATCH_MARGIN, time.monotonic() + max(opts.lease / 4, 1.0))
            if self.control.stop_requested():
                return None
            remaining = self._remaining()
            if remaining is not None and remaining <= 0:
                return None
            if not self.session.long_poll:
                time.sleep(delay)
                delay = min(delay * 2, opts.max_poll)
            due = lease_end is not None and time.monotonic() >= lease_end
            if due:
                lease_end = None if self._maybe_reap(force=True) else lease_end
            else:
                self._maybe_reap()
            # A long-polling session waits in the claim, until the next thing to do.
            wait = self._poll_wait(end, lease_end) if self.session.long_poll else 0.0
            task = self._claim(wait)
            if task is not None:
                return task

    def _poll_wait(self, end: float | None, lease_end: float | None) -> float:
        """How long a long-poll may hold: until the wait ends, a watched lease ends,
        the next reap is due, or the deadline (at least a moment, so it never spins)."""
        now = time.monotonic()
        limits = [self._last_reap + max(self.opts.lease / 2, 1.0) - now]
        if end is not None:
            limits.append(end - now)
        if lease_end is not None:
            limits.append(lease_end - now)
        remaining = self._remaining()
        if remaining is not None:
            limits.append(remaining)
        return max(min(limits), 0.05)

    def _remaining(self) -> float | None:
        if self.opts.deadline is None:
            return None
        return self.opts.deadline - time.time() - self.opts.grace

    def _maybe_reap(self, *, force: bool = False) -> int:
        now = time.monotonic()
        if not force and now - self._last_reap < max(self.opts.lease / 2, 1.0):
            return 0
        self._last_reap = now
        reaped = self.session.reap()
        for task_id, status in reaped:
            log(self.opts, f"reaped task {task_id} (lease expired): now {status}")
        return len(reaped)


def _fmt_epoch(epoch: float | None) -> str:
    if epoch is None:
        return "none"
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(epoch))


def _default_log_root() -> Path:
    env = os.environ.get("HPCLAUNCH_LOG_DIR")
    if env:
        return Path(env).expanduser()
    from hpclaunch.paths import home

    return home() / "logs" / "tasks"


def run_worker(opts: WorkerOptions) -> str:
    return Worker(opts).run()
