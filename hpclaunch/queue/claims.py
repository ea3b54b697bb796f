"""The worker's side of the queue: register, claim, heartbeat, finish, release, exit.

Every statement runs over ``queue.driver`` (plain DB-API) and is short: no
transaction is ever held open while a task runs. Claiming is atomic (one
``UPDATE ... WHERE id = (SELECT ... FOR UPDATE SKIP LOCKED)`` on PostgreSQL, one
``BEGIN IMMEDIATE`` transaction on SQLite), and every write about a running
task presents the attempt's ``claim_token``, so a worker whose lease expired
cannot overwrite the attempt that replaced it (fencing).
"""

from __future__ import annotations

import secrets
from typing import Any

from hpclaunch.queue import transitions as tr
from hpclaunch.queue.driver import Connection
from hpclaunch.queue.session import Claimed, Outcome
from hpclaunch.states import AttemptOutcome, TaskStatus, WorkerStatus

WALLTIME_RELEASE = tr.WALLTIME_RELEASE


def register_worker(conn: Connection, **fields: Any) -> int:
    """Insert the worker's row (host, pid, tags, mode, lease, scheduler identity)."""
    columns = [
        "host",
        "pid",
        "tags",
        "mode",
        "lease",
        "scheduler",
        "job_id",
        "array_job_id",
        "array_index",
        "launch_id",
        "version",
    ]
    params = {c: fields.get(c) for c in columns}
    sql = (
        f"INSERT INTO workers ({', '.join(columns)}, status, started_at, heartbeat_at) "
        f"VALUES ({', '.join(':' + c for c in columns)}, '{WorkerStatus.RUNNING}', "
        "{now}, {now}) "
        "RETURNING id"
    )
    with conn.transaction():
        return int(conn.one(sql, params)[0])


def record_worker_exit(conn: Connection, worker_id: int, reason: str, detail: str | None) -> None:
    with conn.transaction():
        conn.execute(
            "UPDATE workers SET status = :exited, stopped_at = {now}, exit_reason = :reason, "
            "exit_detail = :detail WHERE id = :id",
            {
                "id": worker_id,
                "reason": str(reason),
                "detail": detail,
                "exited": WorkerStatus.EXITED.value,
            },
        )


def heartbeat(conn: Connection, worker_id: int, lease: float, task: Claimed | None = None) -> bool:
    """Renew the worker's heartbeat and its task's lease; False if the task is no longer ours."""
    with conn.transaction():
        conn.execute(
            "UPDATE workers SET heartbeat_at = {now}, "
            "status = CASE WHEN status = :lost THEN :running ELSE status END WHERE id = :id",
            {
                "id": worker_id,
                "lost": WorkerStatus.LOST.value,
                "running": WorkerStatus.RUNNING.value,
            },
        )
        if task is None:
            return True
        cur = conn.execute(
            "UPDATE tasks SET lease_expires_at = {now} + :lease "
            f"WHERE id = :id AND claim_token = :token AND status = '{TaskStatus.RUNNING}'",
            {"id": task.id, "token": task.token, "lease": lease},
        )
        return cur.rowcount == 1


class Claimer:
    """Builds the claim statement once for a worker's fixed tags and options.

    With ``fit_deadline`` a task is claimed only if its estimate fits in the
    time left: its ``expected_runtime``, else the worker's runtime estimate for
    its tag set (``set_estimates``: a CASE over the tag sets, so the claim stays
    one statement), else its ``timeout``.
    """

    def __init__(
        self,
        conn: Connection,
        *,
        worker_id: int,
        tag_sets: list[str],
        lease: float,
        allow_pickle: bool,
        fit_deadline: bool,
    ):
        self.conn = conn
        self.worker_id = worker_id
        self.lease = lease
        self.tag_params = {f"t{i}": t for i, t in enumerate(tag_sets)}
        self.estimate_params: dict[str, float | None] = {}
        conditions = [
            f"status = '{TaskStatus.PENDING}'",
            f"tags IN ({', '.join(':' + k for k in self.tag_params)})",
        ]
        if not allow_pickle:
            conditions.append("kind <> 'pickle'")
        if fit_deadline:
            self.estimate_params = {f"e{i}": None for i in range(len(tag_sets))}
            case = " ".join(
                f"WHEN :t{i} THEN CAST(:e{i} AS DOUBLE PRECISION)" for i in range(len(tag_sets))
            )
            conditions.append(
                f"COALESCE(expected_runtime, CASE tags {case} END, timeout, 0) <= :remaining"
            )
        lock = " FOR UPDATE SKIP LOCKED" if conn.dialect == "postgresql" else ""
        # SQLite has no statistics to prefer the partial index over ix_tasks_status.
        source = "tasks" if conn.dialect == "postgresql" else "tasks INDEXED BY ix_tasks_pending"
        self.sql = (
            f"UPDATE tasks SET status = '{TaskStatus.RUNNING}', worker_id = :worker_id, "
            "attempts = attempts + 1, claim_token = :token, started_at = {now}, "
            "finished_at = NULL, lease_expires_at = {now} + :lease "
            # Only the primary key here: an extra `status = 'pending'` makes PostgreSQL
            # scan every pending row. The row lock taken by the subquery (re-checked
            # against the newest row version) or SQLite's write lock keeps it exact.
            f"WHERE id = (SELECT id FROM {source} WHERE "
            + " AND ".join(conditions)
            + f" ORDER BY priority DESC, id LIMIT 1{lock}) "
            "RETURNING id, kind, payload, pickled, timeout, expected_runtime, attempts, "
            "max_attempts, tags, started_at"
        )

    def set_estimates(self, estimates: dict[str, float]) -> None:
        """Runtime estimates (seconds) per canonical tag set, for tasks without one."""
        tag_index = {tags: key[1:] for key, tags in self.tag_params.items()}
        for key in self.estimate_params:
            self.estimate_params[key] = None
        for tags, seconds in estimates.items():
            if tags in tag_index:
                self.estimate_params[f"e{tag_index[tags]}"] = float(seconds)

    def claim(self, remaining: float | None = None) -> Claimed | None:
        token = secrets.token_hex(16)
        params = {
            **self.tag_params,
            **self.estimate_params,
            "worker_id": self.worker_id,
            "token": token,
            "lease": self.lease,
            "remaining": remaining,
        }
        if self.conn.dialect == "postgresql":
            # One statement in autocommit mode is atomic: no BEGIN/COMMIT round trips.
            row = self.conn.one(self.sql, params)
        else:
            with self.conn.transaction():
                row = self.conn.one(self.sql, params)
        if row is None:
            return None
        pickled = bytes(row[3]) if row[3] is not None else None
        return Claimed(
            id=int(row[0]),
            kind=row[1],
            payload=row[2],
            pickled=pickled,
            timeout=row[4],
            expected_runtime=row[5],
            attempt=int(row[6]),
            max_attempts=int(row[7]),
            tags=row[8],
            token=token,
            started_at=float(row[9]),
        )


_FINISH = (
    "UPDATE tasks SET "
    f"status = CASE WHEN :ok = 1 THEN '{TaskStatus.COMPLETED}' "
    f"  WHEN attempts < max_attempts THEN '{TaskStatus.PENDING}' ELSE '{TaskStatus.FAILED}' END, "
    "finished_at = CASE WHEN :ok = 0 AND attempts < max_attempts THEN NULL ELSE {now} END, "
    "worker_id = CASE WHEN :ok = 0 AND attempts < max_attempts THEN NULL ELSE worker_id END, "
    "reason = :reason, exit_code = :exit_code, result = :result, "
    "result_pickled = :result_pickled, error = :error, stdout_tail = :stdout_tail, "
    "stderr_tail = :stderr_tail, log_dir = :log_dir, claim_token = NULL, "
    "lease_expires_at = NULL "
    f"WHERE id = :id AND claim_token = :token AND status = '{TaskStatus.RUNNING}' "
    "RETURNING status"
)
_ATTEMPT_COLUMNS = (
    "task_attempts (task_id, attempt, worker_id, started_at, finished_at, "
    "outcome, reason, exit_code, error)"
)
_ATTEMPT_VALUES = (
    ":task_id, :attempt, :worker_id, :started_at, {now}, :outcome, :reason, :exit_code, :error"
)
_ATTEMPT = f"INSERT INTO {_ATTEMPT_COLUMNS} VALUES ({_ATTEMPT_VALUES})"
# PostgreSQL: the fenced update and the attempt's log row in one statement.
_FINISH_PG = (
    f"WITH done AS ({_FINISH}), "
    f"logged AS (INSERT INTO {_ATTEMPT_COLUMNS} SELECT {_ATTEMPT_VALUES} FROM done) "
    "SELECT status FROM done"
)


def finish(conn: Connection, worker_id: int, task: Claimed, outcome: Outcome) -> str | None:
    """Record an attempt's end; returns the task's new status, or None if fenced off.

    A failed attempt goes back to ``pending`` while attempts remain.
    """
    params = {
        "id": task.id,
        "token": task.token,
        "ok": 1 if outcome.ok else 0,
        "reason": outcome.reason,
        "exit_code": outcome.exit_code,
        "result": outcome.result,
        "result_pickled": outcome.result_pickled,
        "error": outcome.error,
        "stdout_tail": outcome.stdout_tail,
        "stderr_tail": outcome.stderr_tail,
        "log_dir": outcome.log_dir,
    }
    attempt = {
        "task_id": task.id,
        "attempt": task.attempt,
        "worker_id": worker_id,
        "started_at": task.started_at,
        "outcome": (AttemptOutcome.COMPLETED if outcome.ok else AttemptOutcome.FAILED).value,
    }
    if conn.dialect == "postgresql":
        row = conn.one(_FINISH_PG, {**params, **attempt})
        return row[0] if row else None
    with conn.transaction():
        row = conn.one(_FINISH, params)
        if row is None:
            return None
        conn.execute(
            _ATTEMPT,
            {
                **attempt,
                "reason": outcome.reason,
                "exit_code": outcome.exit_code,
                "error": outcome.error,
            },
        )
    return row[0]


def release(conn: Connection, worker_id: int, task: Claimed, reason: str) -> bool:
    """Put an unfinished task back on the queue without counting the attempt."""
    with conn.transaction():
        return tr.release_uncounted(conn, _held(worker_id, task), reason)


def _held(worker_id: int, task: Claimed) -> tr.Held:
    return tr.Held(task.id, task.token, worker_id, task.attempt, task.max_attempts, task.started_at)


def recorded_status(conn: Connection, worker_id: int, task: Claimed) -> str | None:
    """After a finish whose reply was lost (the connection broke mid-commit): the
    task's status if this worker's attempt was in fact recorded, else None."""
    row = conn.one(
        "SELECT t.status FROM task_attempts a JOIN tasks t ON t.id = a.task_id "
        "WHERE a.task_id = :id AND a.attempt = :attempt AND a.worker_id = :worker_id "
        f"AND a.outcome IN ('{AttemptOutcome.COMPLETED}', '{AttemptOutcome.FAILED}')",
        {"id": task.id, "attempt": task.attempt, "worker_id": worker_id},
    )
    return row[0] if row else None


def release_orphans(conn: Connection, worker_id: int, reason: str = tr.ORPHANED_CLAIM) -> list[int]:
    """Put back tasks this worker holds but does not know about.

    A claim whose commit succeeded but whose reply was lost (the connection
    broke) leaves a running task with a token nobody has; the worker calls this
    when it runs nothing, so such a task returns at once, uncounted, instead of
    waiting for its lease.
    """
    with conn.transaction():
        held = tr.held(conn, "t.worker_id = :worker_id", {"worker_id": worker_id})
        return [a.task_id for a in held if tr.release_uncounted(conn, a, reason)]


def completed_runtimes(
    conn: Connection, tag_sets: list[str], limit: int = 1000
) -> list[tuple[str, float]]:
    """(tags, seconds) of the most recent completed attempts of these tag sets."""
    params = {f"t{i}": t for i, t in enumerate(tag_sets)}
    cur = conn.execute(
        "SELECT t.tags, a.finished_at - a.started_at FROM task_attempts a "
        f"JOIN tasks t ON t.id = a.task_id WHERE a.outcome = '{AttemptOutcome.COMPLETED}' "
        "AND a.started_at IS NOT NULL "
        f"AND t.tags IN ({', '.join(':' + k for k in params)}) "
        f"ORDER BY a.id DESC LIMIT {int(limit)}",
        params,
    )
    return [(tags, float(seconds)) for tags, seconds in cur.fetchall()]


def waiting_count(conn: Connection, tag_sets: list[str]) -> int:
    """Pending tasks this worker could take if time allowed."""
    params = {f"t{i}": t for i, t in enumerate(tag_sets)}
    row = conn.one(
        f"SELECT COUNT(*) FROM tasks WHERE status = '{TaskStatus.PENDING}' "
        f"AND tags IN ({', '.join(':' + k for k in params)})",
        params,
    )
    return int(row[0])
