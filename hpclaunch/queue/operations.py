"""The named task transitions that are not the worker's own: reap, requeue lost
tasks, retry, cancel, type a scheduler verdict, return a canceled launch's tasks.

Each is one short transaction built from ``queue.transitions`` (so every running
attempt is ended through the same token-fenced statements) and is called alike
by the worker (``reap``), the CLI and ``launches``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from hpclaunch.errors import NotFound, UserError
from hpclaunch.queue import transitions as tr
from hpclaunch.queue.driver import Connection, in_list
from hpclaunch.queue.scope import Scope, condition
from hpclaunch.states import AttemptOutcome, TaskStatus, WorkerStatus

REAP_BATCH = 200
LEASE_EXPIRED = "lease_expired"

# Running tasks whose worker is gone: its row says it exited or was lost, its
# heartbeat is older than two leases, or the task's own lease has expired.
_LOST_WHERE = (
    f"w.id IS NULL OR w.status IN ('{WorkerStatus.EXITED}', '{WorkerStatus.LOST}') "
    "OR w.heartbeat_at + 2 * w.lease < {now} OR t.lease_expires_at < {now}"
)
_LOST_COLUMNS = (
    "id",
    "attempts",
    "max_attempts",
    "started_at",
    "lease_expires_at",
    "worker_id",
    "host",
    "pid",
    "worker_status",
    "worker_exit_reason",
    "heartbeat_at",
    "scheduler",
    "job_id",
    "array_job_id",
    "array_index",
    "launch_id",
    "now",
)


def _give_back(conn: Connection, attempts: list[tr.Held], reason: str) -> list[tuple[int, str]]:
    """End each attempt as 'lost': requeued, or failed when its attempts are spent."""
    done: list[tuple[int, str]] = []
    for attempt in attempts:
        status = tr.requeue_or_fail(
            conn,
            attempt,
            outcome=AttemptOutcome.LOST,
            reason=reason,
            error=f"worker {attempt.worker_id} stopped renewing its lease ({reason})",
        )
        if status is not None:
            done.append((attempt.task_id, status))
    return done


def reap(conn: Connection, reason: str = LEASE_EXPIRED) -> list[tuple[int, str]]:
    """Requeue (or fail, when attempts are spent) up to ``REAP_BATCH`` tasks whose
    lease expired, and mark workers silent for two leases lost.

    Returns ``(task_id, new_status)`` pairs. Safe to run from many workers at once.
    """
    with conn.transaction():
        rows = conn.execute(
            f"SELECT {tr.HELD_COLUMNS} FROM tasks t WHERE t.status = '{TaskStatus.RUNNING}' "
            f"AND t.lease_expires_at < {{now}} LIMIT {REAP_BATCH}{conn.lock_suffix()}"
        ).fetchall()
        done = _give_back(conn, [tr.Held.from_row(r) for r in rows], reason)
        tr.mark_workers_lost(conn, LEASE_EXPIRED)
    return done


def find_lost(conn: Connection) -> list[dict[str, Any]]:
    """Running tasks whose workers are gone, with where they were running."""
    cur = conn.execute(
        "SELECT t.id, t.attempts, t.max_attempts, t.started_at, t.lease_expires_at, "
        "t.worker_id, w.host, w.pid, w.status, w.exit_reason, w.heartbeat_at, w.scheduler, "
        "w.job_id, w.array_job_id, w.array_index, w.launch_id, {now} "
        "FROM tasks t LEFT JOIN workers w ON w.id = t.worker_id "
        f"WHERE t.status = '{TaskStatus.RUNNING}' AND ({_LOST_WHERE}) ORDER BY t.id"
    )
    rows = [dict(zip(_LOST_COLUMNS, row, strict=True)) for row in cur.fetchall()]
    for row in rows:
        now = row.pop("now")
        row["heartbeat_age"] = None if row["heartbeat_at"] is None else now - row["heartbeat_at"]
    return rows


def requeue_lost(
    conn: Connection, task_ids: list[int] | None = None, reason: str = "worker_gone"
) -> list[tuple[int, str]]:
    """Give back the running tasks whose workers are gone (all, or those named),
    through the reaper's fenced path: a 'lost' attempt each; spent -> failed."""
    with conn.transaction():
        attempts = tr.held(conn, _LOST_WHERE, {}, lock=True)
        if task_ids is not None:
            wanted = set(task_ids)
            attempts = [a for a in attempts if a.task_id in wanted]
        return _give_back(conn, attempts, reason)


def retry(
    conn: Connection,
    task_ids: Iterable[int] = (),
    *,
    all_failed: bool = False,
    batch_id: int | None = None,
    scope: Scope | None = None,
) -> list[int]:
    """Put failed or canceled tasks back on the queue with a fresh attempt budget.

    Named tasks must all be retryable; ``batch_id`` retries a batch's failed and
    canceled tasks (with ``all_failed``: its failed ones only). A row outside
    ``scope`` is "not found", like a missing one.
    """
    ids = list(task_ids)
    visible, params = condition(scope)
    done = (TaskStatus.FAILED.value, TaskStatus.CANCELED.value)
    with conn.transaction():
        if ids:
            ids_sql, id_params = in_list("i", ids)
            params.update(id_params)
            found = dict(
                conn.execute(
                    f"SELECT id, status FROM tasks WHERE id IN {ids_sql} AND {visible}", params
                ).fetchall()
            )
            missing = [i for i in ids if i not in found]
            if missing:
                raise NotFound(f"no task with ID {missing[0]}")
            busy = [i for i in ids if found[i] not in done]
            if busy:
                raise UserError(
                    f"task {busy[0]} is {found[busy[0]]}; only failed or canceled "
                    "tasks can be retried"
                )
            where = f"id IN {ids_sql}"
        elif batch_id is not None:
            _visible_batch(conn, batch_id, scope)
            if all_failed:
                where = "batch_id = :batch AND status = :failed"
                params.update(batch=batch_id, failed=done[0])
            else:
                where = "batch_id = :batch AND status IN (:failed, :canceled)"
                params.update(batch=batch_id, failed=done[0], canceled=done[1])
        elif all_failed:
            where = "status = :failed"
            params["failed"] = TaskStatus.FAILED.value
        else:
            raise UserError("name task IDs or pass --failed")
        where = f"{where} AND {visible}"
        retried = [int(r[0]) for r in conn.execute(f"SELECT id FROM tasks WHERE {where}", params)]
        conn.execute(
            "UPDATE tasks SET status = :pending, attempts = 0, worker_id = NULL, "
            "claim_token = NULL, lease_expires_at = NULL, started_at = NULL, "
            f"finished_at = NULL, reason = 'retried' WHERE {where}",
            {**params, "pending": TaskStatus.PENDING.value},
        )
        if batch_id is not None and retried:
            conn.execute("UPDATE batches SET canceled_at = NULL WHERE id = :id", {"id": batch_id})
    return sorted(retried)


def _visible_batch(conn: Connection, batch_id: int, scope: Scope | None) -> None:
    visible, params = condition(scope)
    row = conn.one(
        f"SELECT id FROM batches WHERE id = :id AND {visible}", {"id": batch_id, **params}
    )
    if row is None:
        raise NotFound(f"no batch with ID {batch_id}; `hpclaunch batches` lists them")


def cancel(
    conn: Connection,
    task_ids: Iterable[int] = (),
    *,
    batch_id: int | None = None,
    scope: Scope | None = None,
) -> list[int]:
    """Cancel pending and running tasks (a running one's worker sees its lease
    refused at the next heartbeat and stops it). Rows outside ``scope`` are "not found"."""
    ids = list(task_ids)
    visible, scope_params = condition(scope, "t")
    with conn.transaction():
        if batch_id is not None:
            _visible_batch(conn, batch_id, scope)
            where, params = "t.batch_id = :batch", {"batch": batch_id}
            conn.execute("UPDATE batches SET canceled_at = {now} WHERE id = :id", {"id": batch_id})
        elif ids:
            ids_sql, params = in_list("i", ids)
            params.update(scope_params)
            found = {
                r[0]
                for r in conn.execute(
                    f"SELECT t.id FROM tasks t WHERE t.id IN {ids_sql} AND {visible}", params
                )
            }
            missing = [i for i in ids if i not in found]
            if missing:
                raise NotFound(f"no task with ID {missing[0]}")
            where = f"t.id IN {ids_sql}"
        else:
            raise UserError("name task IDs or pass --batch")
        canceled: list[int] = []
        for attempt in tr.held(conn, where, params):
            if tr.cancel_running(conn, attempt):
                canceled.append(attempt.task_id)
        canceled += tr.cancel_pending(conn, where, params)
    return sorted(canceled)


def type_verdict(
    conn: Connection,
    worker_ids: list[int],
    state: str,
    *,
    fail: bool = False,
    new_tags: str | None = None,
    only_walltime: bool = False,
) -> list[tuple[int, TaskStatus]]:
    """Give the tasks of a job element that ended ``state`` that reason, at once.

    The tasks its workers still hold, and those they put back uncounted when the
    job was being stopped (only those put back on the walltime warning when
    ``only_walltime``: the element itself ended cleanly), count an attempt and
    are requeued (for ``new_tags`` workers, when given) or failed (``fail``, or
    their attempts are spent). The element's workers are marked lost.
    """
    if not worker_ids:
        return []
    state = str(state)  # a JobStateName is stored as its plain name
    error = f"array element ended {state}"
    done: list[tuple[int, TaskStatus]] = []
    workers_sql, params = in_list("w", worker_ids)
    with conn.transaction():
        running = [] if only_walltime else tr.held(conn, f"t.worker_id IN {workers_sql}", params)
        for attempt in running:
            spent = attempt.attempt >= attempt.max_attempts and not fail
            status = tr.requeue_or_fail(
                conn,
                attempt,
                outcome=AttemptOutcome.FAILED,
                reason=state,
                error=error + (" (attempts spent)" if spent else ""),
                attempt_error=error,
                fail=fail,
                new_tags=new_tags,
            )
            if status is not None:
                done.append((attempt.task_id, status))
        # Tasks its workers put back when the job was being stopped, not yet rerun.
        walltime = " AND a.reason = :walltime" if only_walltime else ""
        released = conn.execute(
            "SELECT t.id, t.attempts, t.max_attempts FROM tasks t "
            "JOIN task_attempts a ON a.task_id = t.id "
            f"WHERE a.worker_id IN {workers_sql} AND a.outcome = :released "
            f"AND t.status = :pending{walltime}",
            {
                **params,
                "released": AttemptOutcome.RELEASED.value,
                "pending": TaskStatus.PENDING.value,
                "walltime": tr.WALLTIME_RELEASE,
            },
        ).fetchall()
        for task_id, attempts, max_attempts in released:
            spent = attempts + 1 >= max_attempts and not fail
            status = tr.count_released(
                conn,
                int(task_id),
                int(attempts),
                int(max_attempts),
                worker_ids=worker_ids,
                reason=state,
                error=error + (" (attempts spent)" if spent else ""),
                fail=fail,
                new_tags=new_tags,
            )
            if status is not None:
                done.append((int(task_id), status))
        tr.mark_workers_lost(conn, state, worker_ids)
    return done


def return_launch_tasks(conn: Connection, worker_ids: list[int]) -> list[int]:
    """Put the tasks held by a canceled launch's (now gone) workers back on the
    queue, uncounted: canceling is not the tasks' failure. Marks the workers lost."""
    if not worker_ids:
        return []
    workers_sql, params = in_list("w", worker_ids)
    with conn.transaction():
        returned = [
            a.task_id
            for a in tr.held(conn, f"t.worker_id IN {workers_sql}", params)
            if tr.release_uncounted(conn, a, tr.LAUNCH_CANCELED)
        ]
        tr.mark_workers_lost(conn, TaskStatus.CANCELED.value, worker_ids)
    return returned
