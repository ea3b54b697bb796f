"""The worker's side of the queue: register, claim, heartbeat, finish, release, reap.

Every statement runs over ``queue.driver`` (plain DB-API) and is short: no
transaction is ever held open while a task runs. Claiming is atomic (one
``UPDATE ... WHERE id = (SELECT ... FOR UPDATE SKIP LOCKED)`` on PostgreSQL, one
``BEGIN IMMEDIATE`` transaction on SQLite), and every write about a running
task presents the attempt's ``claim_token``, so a worker whose lease expired
cannot overwrite the attempt that replaced it (fencing).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from hpclaunch.queue.driver import Connection

REAP_BATCH = 200
# Release reason when the scheduler warned that the walltime is nearly spent (SIGUSR1).
WALLTIME_RELEASE = "walltime"


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
        f"VALUES ({', '.join(':' + c for c in columns)}, 'running', {{now}}, {{now}}) "
        "RETURNING id"
    )
    with conn.transaction():
        return int(conn.one(sql, params)[0])


def record_worker_exit(conn: Connection, worker_id: int, reason: str, detail: str | None) -> None:
    with conn.transaction():
        conn.execute(
            "UPDATE workers SET status = 'exited', stopped_at = {now}, exit_reason = :reason, "
            "exit_detail = :detail WHERE id = :id",
            {"id": worker_id, "reason": reason, "detail": detail},
        )


def heartbeat(conn: Connection, worker_id: int, lease: float, task: Claimed | None = None) -> bool:
    """Renew the worker's heartbeat and its task's lease; False if the task is no longer ours."""
    with conn.transaction():
        conn.execute(
            "UPDATE workers SET heartbeat_at = {now}, "
            "status = CASE WHEN status = 'lost' THEN 'running' ELSE status END WHERE id = :id",
            {"id": worker_id},
        )
        if task is None:
            return True
        cur = conn.execute(
            "UPDATE tasks SET lease_expires_at = {now} + :lease "
            "WHERE id = :id AND claim_token = :token AND status = 'running'",
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
            "status = 'pending'",
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
            "UPDATE tasks SET status = 'running', worker_id = :worker_id, "
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
    "status = CASE WHEN :ok = 1 THEN 'completed' "
    "  WHEN attempts < max_attempts THEN 'pending' ELSE 'failed' END, "
    "finished_at = CASE WHEN :ok = 0 AND attempts < max_attempts THEN NULL ELSE {now} END, "
    "worker_id = CASE WHEN :ok = 0 AND attempts < max_attempts THEN NULL ELSE worker_id END, "
    "reason = :reason, exit_code = :exit_code, result = :result, "
    "result_pickled = :result_pickled, error = :error, stdout_tail = :stdout_tail, "
    "stderr_tail = :stderr_tail, log_dir = :log_dir, claim_token = NULL, "
    "lease_expires_at = NULL "
    "WHERE id = :id AND claim_token = :token AND status = 'running' "
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
        "outcome": "completed" if outcome.ok else "failed",
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
        cur = conn.execute(
            "UPDATE tasks SET status = 'pending', attempts = attempts - 1, worker_id = NULL, "
            "claim_token = NULL, lease_expires_at = NULL, started_at = NULL, reason = :reason "
            "WHERE id = :id AND claim_token = :token AND status = 'running'",
            {"id": task.id, "token": task.token, "reason": reason},
        )
        if cur.rowcount != 1:
            return False
        conn.execute(
            _ATTEMPT,
            {
                "task_id": task.id,
                "attempt": task.attempt,
                "worker_id": worker_id,
                "started_at": task.started_at,
                "outcome": "released",
                "reason": reason,
                "exit_code": None,
                "error": None,
            },
        )
    return True


def reap(conn: Connection, reason: str = "lease_expired") -> list[tuple[int, str]]:
    """Requeue (or fail, when attempts are spent) tasks whose lease expired.

    Returns ``(task_id, new_status)`` pairs. Safe to run from many workers at once.
    """
    lock = " FOR UPDATE SKIP LOCKED" if conn.dialect == "postgresql" else ""
    with conn.transaction():
        rows = conn.execute(
            "SELECT id, worker_id, claim_token, attempts, max_attempts, started_at FROM tasks "
            f"WHERE status = 'running' AND lease_expires_at < {{now}} LIMIT {REAP_BATCH}{lock}"
        ).fetchall()
        done = _give_back(conn, rows, reason)
        conn.execute(
            "UPDATE workers SET status = 'lost', exit_reason = 'lease_expired', "
            "stopped_at = heartbeat_at WHERE status = 'running' "
            "AND heartbeat_at + 2 * lease < {now}"
        )
    return done


def _give_back(conn: Connection, rows, reason: str) -> list[tuple[int, str]]:
    """The fenced path shared by the reaper and ``lost --requeue``: each running
    attempt (identified by its claim token) ends as 'lost'; the task goes back to
    pending, or to failed when its attempts are spent. Call inside a transaction."""
    done: list[tuple[int, str]] = []
    for task_id, worker_id, token, attempts, max_attempts, started_at in rows:
        new_status = "pending" if attempts < max_attempts else "failed"
        cur = conn.execute(
            "UPDATE tasks SET status = :status, reason = :reason, claim_token = NULL, "
            "lease_expires_at = NULL, "
            "worker_id = CASE WHEN :requeue = 1 THEN NULL ELSE worker_id END, "
            "finished_at = CASE WHEN :requeue = 1 THEN NULL ELSE {now} END, "
            "error = CASE WHEN :requeue = 1 THEN error ELSE :error END "
            "WHERE id = :id AND claim_token = :token AND status = 'running'",
            {
                "status": new_status,
                "requeue": int(new_status == "pending"),
                "reason": reason,
                "id": task_id,
                "token": token,
                "error": f"worker {worker_id} stopped renewing its lease ({reason})",
            },
        )
        if cur.rowcount != 1:
            continue
        conn.execute(
            _ATTEMPT,
            {
                "task_id": task_id,
                "attempt": attempts,
                "worker_id": worker_id,
                "started_at": started_at,
                "outcome": "lost",
                "reason": reason,
                "exit_code": None,
                "error": None,
            },
        )
        done.append((int(task_id), new_status))
    return done


# Running tasks whose worker is gone: its row says it exited or was lost, its
# heartbeat is older than two leases, or the task's own lease has expired.
_LOST_WHERE = (
    "t.status = 'running' AND (w.id IS NULL OR w.status IN ('exited', 'lost') "
    "OR w.heartbeat_at + 2 * w.lease < {now} OR t.lease_expires_at < {now})"
)


def find_lost(conn: Connection) -> list[dict[str, Any]]:
    """Running tasks whose workers are gone, with where they were running."""
    cur = conn.execute(
        "SELECT t.id, t.attempts, t.max_attempts, t.started_at, t.lease_expires_at, "
        "t.worker_id, w.host, w.pid, w.status, w.exit_reason, w.heartbeat_at, w.scheduler, "
        "w.job_id, w.array_job_id, w.array_index, w.launch_id, {now} "
        f"FROM tasks t LEFT JOIN workers w ON w.id = t.worker_id WHERE {_LOST_WHERE} "
        "ORDER BY t.id"
    )
    names = [
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
    ]
    rows = [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
    for row in rows:
        now = row.pop("now")
        row["heartbeat_age"] = None if row["heartbeat_at"] is None else now - row["heartbeat_at"]
    return rows


def requeue_lost(
    conn: Connection, task_ids: list[int] | None = None, reason: str = "worker_gone"
) -> list[tuple[int, str]]:
    """Give back the running tasks whose workers are gone (all, or those named),
    through the reaper's fenced path: a 'lost' attempt each; spent -> failed."""
    lock = " FOR UPDATE OF t SKIP LOCKED" if conn.dialect == "postgresql" else ""
    with conn.transaction():
        rows = conn.execute(
            "SELECT t.id, t.worker_id, t.claim_token, t.attempts, t.max_attempts, "
            f"t.started_at FROM tasks t LEFT JOIN workers w ON w.id = t.worker_id "
            f"WHERE {_LOST_WHERE} ORDER BY t.id{lock}"
        ).fetchall()
        if task_ids is not None:
            wanted = set(task_ids)
            rows = [r for r in rows if r[0] in wanted]
        return _give_back(conn, rows, reason)


def recorded_status(conn: Connection, worker_id: int, task: Claimed) -> str | None:
    """After a finish whose reply was lost (the connection broke mid-commit): the
    task's status if this worker's attempt was in fact recorded, else None."""
    row = conn.one(
        "SELECT t.status FROM task_attempts a JOIN tasks t ON t.id = a.task_id "
        "WHERE a.task_id = :id AND a.attempt = :attempt AND a.worker_id = :worker_id "
        "AND a.outcome IN ('completed', 'failed')",
        {"id": task.id, "attempt": task.attempt, "worker_id": worker_id},
    )
    return row[0] if row else None


def release_orphans(conn: Connection, worker_id: int, reason: str = "orphaned_claim") -> list[int]:
    """Put back tasks this worker holds but does not know about.

    A claim whose commit succeeded but whose reply was lost (the connection
    broke) leaves a running task with a token nobody has; the worker calls this
    when it runs nothing, so such a task returns at once, uncounted, instead of
    waiting for its lease.
    """
    with conn.transaction():
        rows = conn.execute(
            "SELECT id, attempts, started_at FROM tasks "
            "WHERE worker_id = :worker_id AND status = 'running'",
            {"worker_id": worker_id},
        ).fetchall()
        freed = []
        for task_id, attempts, started_at in rows:
            cur = conn.execute(
                "UPDATE tasks SET status = 'pending', attempts = attempts - 1, "
                "worker_id = NULL, claim_token = NULL, lease_expires_at = NULL, "
                "started_at = NULL, reason = :reason "
                "WHERE id = :id AND worker_id = :worker_id AND status = 'running'",
                {"id": task_id, "worker_id": worker_id, "reason": reason},
            )
            if cur.rowcount != 1:
                continue
            conn.execute(
                _ATTEMPT,
                {
                    "task_id": task_id,
                    "attempt": attempts,
                    "worker_id": worker_id,
                    "started_at": started_at,
                    "outcome": "released",
                    "reason": reason,
                    "exit_code": None,
                    "error": None,
                },
            )
            freed.append(int(task_id))
    return freed


def completed_runtimes(
    conn: Connection, tag_sets: list[str], limit: int = 1000
) -> list[tuple[str, float]]:
    """(tags, seconds) of the most recent completed attempts of these tag sets."""
    params = {f"t{i}": t for i, t in enumerate(tag_sets)}
    cur = conn.execute(
        "SELECT t.tags, a.finished_at - a.started_at FROM task_attempts a "
        "JOIN tasks t ON t.id = a.task_id WHERE a.outcome = 'completed' "
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
        "SELECT COUNT(*) FROM tasks WHERE status = 'pending' "
        f"AND tags IN ({', '.join(':' + k for k in params)})",
        params,
    )
    return int(row[0])
