"""The fenced building blocks every task transition is made of, each written once.

A running attempt is identified by its ``claim_token``: every statement that
ends one (put it back uncounted, requeue it or fail it) matches ``id``,
``claim_token`` and ``status = 'running'``, so a late writer (a worker whose
lease expired, a reconciler racing the reaper) changes nothing when another
transition got there first. Callers run these inside ``conn.transaction()``;
the named operations built from them are in ``queue.claims`` (the worker's) and
``queue.operations`` (everyone else's).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from hpclaunch.queue.driver import Connection, in_list
from hpclaunch.states import AttemptOutcome, TaskStatus, WorkerStatus

# Why a task was put back uncounted (``tasks.reason`` and the attempt's reason).
WALLTIME_RELEASE = "walltime"  # the scheduler's warning before the walltime (SIGUSR1)
LAUNCH_CANCELED = "launch_canceled"  # its launch was canceled with hpclaunch
ORPHANED_CLAIM = "orphaned_claim"  # claimed while the worker's connection broke

_RUNNING = TaskStatus.RUNNING.value
_PENDING = TaskStatus.PENDING.value
_FAILED = TaskStatus.FAILED.value

# The columns ``Held.from_row`` reads, in order (``t`` is the tasks table).
HELD_COLUMNS = "t.id, t.claim_token, t.worker_id, t.attempts, t.max_attempts, t.started_at"

_ATTEMPT = (
    "INSERT INTO task_attempts (task_id, attempt, worker_id, started_at, finished_at, "
    "outcome, reason, exit_code, error) VALUES (:task_id, :attempt, :worker_id, "
    ":started_at, {now}, :outcome, :reason, :exit_code, :error)"
)
_FENCE = f"WHERE id = :id AND claim_token = :token AND status = '{_RUNNING}'"


@dataclass(frozen=True)
class Held:
    """A running attempt as its row shows it: enough to end it, fenced by its token."""

    task_id: int
    token: str | None
    worker_id: int | None
    attempt: int
    max_attempts: int
    started_at: float | None

    @classmethod
    def from_row(cls, row: Any) -> Held:
        task_id, token, worker_id, attempts, max_attempts, started_at = row
        return cls(int(task_id), token, worker_id, int(attempts), int(max_attempts), started_at)


def held(conn: Connection, where: str, params: dict[str, Any], *, lock: bool = False) -> list[Held]:
    """The running attempts matching ``where`` (over ``tasks t LEFT JOIN workers w``)."""
    suffix = conn.lock_suffix("t") if lock else ""
    rows = conn.execute(
        f"SELECT {HELD_COLUMNS} FROM tasks t LEFT JOIN workers w ON w.id = t.worker_id "
        f"WHERE t.status = '{_RUNNING}' AND ({where}) ORDER BY t.id{suffix}",
        params,
    ).fetchall()
    return [Held.from_row(r) for r in rows]


def log_attempt(
    conn: Connection,
    attempt: Held,
    outcome: AttemptOutcome,
    reason: str | None,
    *,
    exit_code: int | None = None,
    error: str | None = None,
) -> None:
    """One ``task_attempts`` row: how this attempt ended (the history ``tasks why`` reads)."""
    conn.execute(
        _ATTEMPT,
        {
            "task_id": attempt.task_id,
            "attempt": attempt.attempt,
            "worker_id": attempt.worker_id,
            "started_at": attempt.started_at,
            "outcome": outcome.value,
            "reason": reason,
            "exit_code": exit_code,
            "error": error,
        },
    )


def release_uncounted(conn: Connection, attempt: Held, reason: str) -> bool:
    """Put a running task back on the queue without counting the attempt.

    For stops that are not the task's fault: a signal, the walltime warning, an
    orphaned claim, a launch canceled by its user. False if fenced off.
    """
    cur = conn.execute(
        f"UPDATE tasks SET status = '{_PENDING}', attempts = attempts - 1, worker_id = NULL, "
        "claim_token = NULL, lease_expires_at = NULL, started_at = NULL, reason = :reason "
        + _FENCE,
        {"id": attempt.task_id, "token": attempt.token, "reason": reason},
    )
    if cur.rowcount != 1:
        return False
    log_attempt(conn, attempt, AttemptOutcome.RELEASED, reason)
    return True


def requeue_or_fail(
    conn: Connection,
    attempt: Held,
    *,
    outcome: AttemptOutcome,
    reason: str,
    error: str,
    attempt_error: str | None = None,
    fail: bool = False,
    new_tags: str | None = None,
) -> TaskStatus | None:
    """End a counted attempt: back to pending while attempts remain, else failed.

    ``fail`` fails it regardless (a retry policy said so); ``new_tags`` requeues
    it for other workers. A requeued task keeps no worker or start time; its
    ``error`` is set only when it fails. Returns
    the new status, or None if fenced off.
    """
    requeue = not fail and attempt.attempt < attempt.max_attempts
    status = TaskStatus.PENDING if requeue else TaskStatus.FAILED
    cur = conn.execute(
        "UPDATE tasks SET status = :status, reason = :reason, claim_token = NULL, "
        "lease_expires_at = NULL, "
        "worker_id = CASE WHEN :requeue = 1 THEN NULL ELSE worker_id END, "
        "started_at = CASE WHEN :requeue = 1 THEN NULL ELSE started_at END, "
        "finished_at = CASE WHEN :requeue = 1 THEN NULL ELSE {now} END, "
        "error = CASE WHEN :requeue = 1 THEN error ELSE :error END, "
        "tags = COALESCE(:tags, tags) " + _FENCE,
        {
            "status": status.value,
            "requeue": int(requeue),
            "reason": reason,
            "error": error,
            "tags": new_tags if requeue else None,
            "id": attempt.task_id,
            "token": attempt.token,
        },
    )
    if cur.rowcount != 1:
        return None
    log_attempt(conn, attempt, outcome, reason, error=attempt_error)
    return status


def count_released(
    conn: Connection,
    task_id: int,
    attempts: int,
    max_attempts: int,
    *,
    worker_ids: list[int],
    reason: str,
    error: str,
    fail: bool = False,
    new_tags: str | None = None,
) -> TaskStatus | None:
    """Count an attempt that was put back uncounted after all (a scheduler verdict).

    The task is pending, so there is no token: it is fenced by its status and
    attempt count as read. Its ``released`` attempt rows by these workers become
    ``failed`` with the verdict as reason. Returns the new status, or None.
    """
    counted = attempts + 1
    requeue = not fail and counted < max_attempts
    status = TaskStatus.PENDING if requeue else TaskStatus.FAILED
    cur = conn.execute(
        "UPDATE tasks SET attempts = :counted, status = :status, reason = :reason, "
        "claim_token = NULL, lease_expires_at = NULL, "
        "finished_at = CASE WHEN :requeue = 1 THEN finished_at ELSE {now} END, "
        "error = CASE WHEN :requeue = 1 THEN error ELSE :error END, "
        "tags = COALESCE(:tags, tags) "
        f"WHERE id = :id AND status = '{_PENDING}' AND attempts = :attempts",
        {
            "counted": counted,
            "status": status.value,
            "requeue": int(requeue),
            "reason": reason,
            "error": error,
            "tags": new_tags if requeue else None,
            "id": task_id,
            "attempts": attempts,
        },
    )
    if cur.rowcount != 1:
        return None
    workers_sql, params = in_list("w", worker_ids)
    conn.execute(
        "UPDATE task_attempts SET outcome = :failed, reason = :reason "
        f"WHERE task_id = :id AND outcome = :released AND worker_id IN {workers_sql}",
        {
            **params,
            "id": task_id,
            "reason": reason,
            "failed": AttemptOutcome.FAILED.value,
            "released": AttemptOutcome.RELEASED.value,
        },
    )
    return status


def cancel_running(conn: Connection, attempt: Held) -> bool:
    """Cancel a running task; its worker learns it at the next heartbeat."""
    cur = conn.execute(
        "UPDATE tasks SET status = :canceled, claim_token = NULL, lease_expires_at = NULL, "
        "finished_at = {now}, reason = :canceled " + _FENCE,
        {"id": attempt.task_id, "token": attempt.token, "canceled": TaskStatus.CANCELED.value},
    )
    if cur.rowcount != 1:
        return False
    log_attempt(conn, attempt, AttemptOutcome.CANCELED, TaskStatus.CANCELED.value)
    return True


def cancel_pending(conn: Connection, where: str, params: dict[str, Any]) -> list[int]:
    """Cancel the pending tasks matching ``where`` (over ``tasks t``); their IDs."""
    rows = conn.execute(
        "UPDATE tasks SET status = :canceled, claim_token = NULL, lease_expires_at = NULL, "
        "finished_at = {now}, reason = :canceled "
        f"WHERE status = '{_PENDING}' AND id IN (SELECT t.id FROM tasks t WHERE {where}) "
        "RETURNING id",
        {**params, "canceled": TaskStatus.CANCELED.value},
    ).fetchall()
    return [int(r[0]) for r in rows]


def mark_workers_lost(
    conn: Connection, exit_reason: str, worker_ids: Iterable[int] | None = None
) -> None:
    """Mark running workers lost: the ones named (stopped now), or, without names,
    every worker whose heartbeat is older than two leases (stopped at that heartbeat)."""
    lost, running = WorkerStatus.LOST.value, WorkerStatus.RUNNING.value
    if worker_ids is None:
        conn.execute(
            "UPDATE workers SET status = :lost, exit_reason = :reason, stopped_at = heartbeat_at "
            "WHERE status = :running AND heartbeat_at + 2 * lease < {now}",
            {"lost": lost, "running": running, "reason": exit_reason},
        )
        return
    ids_sql, params = in_list("w", worker_ids)
    if not params:
        return
    conn.execute(
        "UPDATE workers SET status = :lost, exit_reason = :reason, stopped_at = {now} "
        f"WHERE status = :running AND id IN {ids_sql}",
        {**params, "lost": lost, "running": running, "reason": exit_reason[:32]},
    )


__all__ = [
    "HELD_COLUMNS",
    "LAUNCH_CANCELED",
    "ORPHANED_CLAIM",
    "WALLTIME_RELEASE",
    "Held",
    "cancel_pending",
    "cancel_running",
    "count_released",
    "held",
    "log_attempt",
    "mark_workers_lost",
    "release_uncounted",
    "requeue_or_fail",
]
