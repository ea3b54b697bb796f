"""What a worker needs from the queue, as an interface (``QueueSession``).

The worker loop talks only to this: no SQL, no connections, no driver. One
implementation runs over the database (``queue.db_session``), one over HTTP
through ``hpclaunch serve`` (``queue.http_session``); ``open_session`` picks. Stdlib only:
the worker's cold start imports this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from hpclaunch.errors import DatabaseError


@dataclass(frozen=True)
class Claimed:
    """A task this worker holds, with the token that proves it."""

    id: int
    kind: str
    payload: str
    pickled: bytes | None
    timeout: float | None
    expected_runtime: float | None
    attempt: int
    max_attempts: int
    tags: str
    token: str
    started_at: float


@dataclass(frozen=True)
class Outcome:
    """How an attempt ended, as the worker records it."""

    ok: bool
    reason: str | None = None  # why it failed: exit_code, exception, timeout, ...
    exit_code: int | None = None
    result: str | None = None  # JSON text
    result_pickled: bytes | None = None
    error: str | None = None
    stdout_tail: str | None = None
    stderr_tail: str | None = None
    log_dir: str | None = None


@dataclass(frozen=True)
class WorkerInfo:
    """Who the worker is and what it may claim, given once at registration."""

    host: str
    pid: int
    tags: str  # canonical tag string of the worker's row
    tag_sets: list[str]  # the task tag sets it accepts
    mode: str  # singleflow | draining
    lease: float
    allow_pickle: bool
    fit_deadline: bool  # claim only tasks whose estimate fits in the time left
    version: str
    # Stops at the walltime after which a task fails as TIMEOUT instead of going back.
    walltime_releases: int = 3
    launch_id: str | None = None
    scheduler: str | None = None
    job_id: str | None = None
    array_job_id: str | None = None
    array_index: int | None = None
    # The engines it has handlers for (SIMX): it also claims tasks of these. None
    # named: plain tasks only, so a registration never promises what it cannot run.
    engines: tuple[str, ...] = ()
    # The most tasks it will run (``--nitems-max``): a session that claims ahead
    # never claims more.
    nitems_max: int | None = None


@dataclass(frozen=True)
class Watch:
    """A task this idle worker waits for: running under an owner that stopped
    heart-beating, so it comes back to the queue when its lease ends."""

    task_id: int
    owner: int | None  # the silent worker's ID
    silent_for: float  # seconds since the owner's last heartbeat
    lease_ends_in: float  # seconds until the reaper may take it back (<= 0: now)


class QueueUnavailable(DatabaseError):
    """The queue stayed unreachable for as long as the worker was willing to wait."""


class QueueSession(Protocol):
    """One worker's conversation with the queue.

    ``long_poll``: True when ``claim`` can wait for work itself (the server's
    long-poll); the loop then asks it to, instead of sleeping between claims.

    Every method but ``heartbeat`` is called from the worker's main thread and
    retries through outages itself, for up to the ``wait`` it is given (else the
    session's default), then raises ``QueueUnavailable``. Writes about a held
    task are fenced by its claim token: they return False/None when the attempt
    is no longer this worker's.
    """

    long_poll: bool

    def register(self, worker: WorkerInfo) -> int:
        """Create the worker's row; returns its ID."""
        ...

    def claim(self, remaining: float | None, wait: float = 0.0) -> Claimed | None:
        """The next task this worker may run (one that fits in ``remaining`` s).

        With ``long_poll``, waits up to ``wait`` s for one to come (a stop
        request ends the wait early); without, ``wait`` is ignored.
        A claim drops the worker's watch (``watch``): it is busy now."""
        ...

    def watch(self, within: float | None) -> Watch | None:
        """Before leaving an empty queue: a task it could run whose owner went
        silent and whose lease ends within ``within`` s, now watched by this
        worker alone; None when there is none, or live workers watch them all.

        At most one live worker watches each such task, so no more workers stay
        than there are tasks that may come back."""
        ...

    def heartbeat(self, task: Claimed | None) -> bool:
        """Renew the worker's and its task's lease (from the heartbeat thread,
        with no retry); False if the task is no longer ours."""
        ...

    def finish(self, task: Claimed, outcome: Outcome, *, wait: float) -> str | None:
        """Record the attempt's end; the task's new status, or None if fenced off."""
        ...

    def release(self, task: Claimed, reason: str) -> str | None:
        """Put a task back without counting the attempt (stopped, walltime, ...);
        its new status (``failed`` when it was stopped at the walltime more than
        ``WorkerInfo.walltime_releases`` times), or None if fenced off."""
        ...

    def record_crash(self, task: Claimed, detail: str) -> None:
        """Best effort: fail the held task with the worker's traceback."""
        ...

    def release_orphans(self) -> list[int]:
        """Best effort: put back tasks held in this worker's name that it is not running."""
        ...

    def reap(self) -> list[tuple[int, str]]:
        """Requeue tasks whose lease expired: ``(task_id, new_status)``."""
        ...

    def refresh_estimates(self) -> None:
        """Update the runtime estimates per tag set that deadline-aware claims use."""
        ...

    def too_long_count(self, remaining: float) -> int:
        """Pending tasks this worker could take, but not in ``remaining`` seconds."""
        ...

    def record_exit(self, reason: str, detail: str | None, *, wait: float) -> None:
        """Mark the worker's row exited, with why."""
        ...

    def close(self) -> None: ...


def is_server_url(url: str) -> bool:
    """An ``http(s)://`` URL names a server (``hpclaunch serve``), anything else a database."""
    return url.lower().startswith(("http://", "https://"))
