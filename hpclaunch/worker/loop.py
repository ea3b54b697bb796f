"""The worker loop: claim a task, run it, record it; repeat until told to stop.

Exit reasons recorded on the worker's row: ``done`` (singleflow ran its task),
``empty_queue``, ``nitems_max``, ``deadline``, ``signal``, ``crash``.
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
from hpclaunch.queue import claims, driver
from hpclaunch.queue.migrate import open_ready
from hpclaunch.tasks.payloads import canonical_tags, worker_tag_sets
from hpclaunch.tasks.run import CallInterrupted, Control, run
from hpclaunch.worker.identity import hostname, scheduler_identity

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)


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
        if not self.control.call_running:
            return
        raise CallInterrupted("stopped" if self.control.grace_over() else "timeout")

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
                    self.control.lease_lost = True
                    log(self.opts, f"task {task.id} is no longer ours (canceled or reaped)")
            except Exception as exc:  # noqa: BLE001 - keep running the task through outages
                log(self.opts, f"heartbeat failed: {str(exc).splitlines()[0] if str(exc) else exc}")
                if conn is not None:
                    conn.close()
                conn = None
        if conn is not None:
            conn.close()

    # --- main loop -----------------------------------------------------------
    def run(self) -> str:
        opts = self.opts
        tag_sets = worker_tag_sets(opts.tags)
        conn = open_ready(opts.database_url)
        identity = scheduler_identity()
        self.worker_id = claims.register_worker(
            conn, host=hostname(), pid=os.getpid(), tags=canonical_tags(opts.tags),
            mode="singleflow" if opts.singleflow else "draining", lease=opts.lease,
            launch_id=opts.launch_id or os.environ.get("HPCLAUNCH_LAUNCH_ID") or None,
            version=__version__, **identity,
        )
        log(opts, f"worker {self.worker_id} started (tags {canonical_tags(opts.tags)})")
        self._install_signals()
        beat = threading.Thread(target=self._heartbeat_loop, name="heartbeat", daemon=True)
        beat.start()
        claimer = claims.Claimer(
            conn, worker_id=self.worker_id, tag_sets=tag_sets, lease=opts.lease,
            allow_pickle=opts.allow_pickle, fit_deadline=opts.deadline is not None,
        )
        log_root = opts.log_dir or _default_log_root()
        reason, detail = "crash", None
        try:
            reason = self._loop(conn, claimer, log_root)
        except BaseException as exc:
            detail = "".join(traceback.format_exception(exc))[-4000:]
            if self.current is not None:
                _record_crash(conn, self.worker_id, self.current, detail)
            raise
        finally:
            self._stop_heartbeat.set()
            try:
                claims.record_worker_exit(conn, self.worker_id, reason, detail)
            finally:
                conn.close()
            log(opts, f"worker {self.worker_id} stopped: {reason}")
        return reason

    def _loop(self, conn: driver.Connection, claimer: claims.Claimer, log_root: Path) -> str:
        opts = self.opts
        done = 0
        self._maybe_reap(conn, force=True)
        while True:
            if self.control.stop_requested():
                return "signal"
            if opts.nitems_max is not None and done >= opts.nitems_max:
                return "nitems_max"
            remaining = None
            if opts.deadline is not None:
                remaining = opts.deadline - time.time() - opts.grace
                if remaining <= 0:
                    return "deadline"
            self._maybe_reap(conn)
            task = claimer.claim(remaining)
            if task is None:
                task = self._wait_for_task(conn, claimer)
                if task is None:
                    return "signal" if self.control.stop_requested() else "empty_queue"
            self.current = task
            started = time.monotonic()
            result = run(task, self.control, log_root)
            if result.outcome is None:
                claims.release(conn, self.worker_id, task, result.released or "stopped")
                self.current = None
                log(opts, f"task {task.id} put back on the queue ({result.released})")
                return "signal"
            status = claims.finish(conn, self.worker_id, task, result.outcome)
            self.current = None
            self.control.lease_lost = False
            elapsed = time.monotonic() - started
            if status is None:
                log(opts, f"task {task.id}: result discarded, the attempt was replaced")
            else:
                log(opts, f"task {task.id} {status} in {elapsed:.2f} s")
            done += 1
            if opts.singleflow:
                return "done"

    def _wait_for_task(self, conn, claimer) -> claims.Claimed | None:
        """Poll with backoff until a task comes, the wait times out or a stop arrives."""
        opts = self.opts
        if self._maybe_reap(conn, force=True):
            task = claimer.claim(self._remaining())
            if task is not None:
                return task
        exits_when_empty = opts.singleflow or opts.close_on_empty_queue
        limit = opts.wait_timeout if opts.wait_timeout is not None else (
            0.0 if exits_when_empty else None)
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
            self._maybe_reap(conn)
            task = claimer.claim(remaining)
            if task is not None:
                return task
        return None

    def _remaining(self) -> float | None:
        if self.opts.deadline is None:
            return None
        return self.opts.deadline - time.time() - self.opts.grace

    def _maybe_reap(self, conn, *, force: bool = False) -> int:
        now = time.monotonic()
        if not force and now - self._last_reap < max(self.opts.lease / 2, 1.0):
            return 0
        self._last_reap = now
        reaped = claims.reap(conn)
        for task_id, status in reaped:
            log(self.opts, f"reaped task {task_id} (lease expired): now {status}")
        return len(reaped)


def _record_crash(conn, worker_id: int, task: claims.Claimed, detail: str) -> None:
    try:
        claims.finish(conn, worker_id, task, claims.Outcome(
            ok=False, reason="worker_crash", error=detail))
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
