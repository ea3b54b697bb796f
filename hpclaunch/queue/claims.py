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
from collections.abc import Sequence
from typing import Any

from hpclaunch.queue import transitions as tr
from hpclaunch.queue.driver import Connection, in_list
from hpclaunch.queue.session import Claimed, Outcome, Watch
from hpclaunch.states import AttemptOutcome, JobStateName, TaskStatus, WorkerStatus

WALLTIME_RELEASE = tr.WALLTIME_RELEASE
# Why a prefetched task went back unstarted (a stop, or held too long behind a slow task).
PREFETCH_RETURNED = "prefetch_returned"
WALLTIME_RELEASES = 3  # default: stops at the walltime before a task fails as TIMEOUT

# A worker heart-beats every lease/4 s; after two missed beats (half its lease)
# it is "silent": its task may come back when its lease ends. Well below the
# lease, so a waiter is chosen long before the reaper may act.
SILENT_LEASES = 0.5
# ``w`` is the owner's row (LEFT JOINed): gone, exited, lost or silent.
SILENT_OWNER = (
    f"(w.id IS NULL OR w.status <> '{WorkerStatus.RUNNING}' "
    f"OR w.heartbeat_at + w.lease * {SILENT_LEASES} < {{now}})"
)


def owner_match(owner: str | None, owner_group: str | None, prefix: str = "") -> tuple[str, dict]:
    """The owner filter of a server's worker token, as SQL and parameters.

    ``owner_group`` (a token with share-group): its group's tasks; else
    ``owner``: its user's tasks only. Both None (a direct-database worker,
    whose database user is the administrator): no filter, ``("", {})``.
    """
    if owner_group is not None:
        return f"{prefix}owner_group = :match_group", {"match_group": owner_group}
    if owner is not None:
        return f"{prefix}owner = :match_owner", {"match_owner": owner}
    return "", {}


_LIVE_WORKERS = (
    f"SELECT id FROM workers WHERE status = '{WorkerStatus.RUNNING}' "
    f"AND heartbeat_at + lease * {SILENT_LEASES} >= {{now}}"
)


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
        "token_id",  # the server's worker token that registered it (None: direct)
        "engines",
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


def engine_condition(engines: Sequence[str], column: str = "engine") -> tuple[str, dict[str, str]]:
    """The claim's engine match (separate from tags): plain tasks, or one of ``engines``.

    A task of engine E is claimed only by a worker that provides E (SIMX matches
    workers to runs by engine); a worker without engines claims plain tasks only.
    """
    params = {f"g{i}": name for i, name in enumerate(sorted(set(engines)))}
    if not params:
        return f"{column} IS NULL", {}
    names = ", ".join(":" + k for k in params)
    return f"({column} IS NULL OR {column} IN ({names}))", params


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


def renew(conn: Connection, lease: float, tasks: list[Claimed]) -> None:
    """Renew the leases of held tasks not yet started (prefetched) or not yet
    recorded (buffered results): fenced by token, one statement per claim."""
    by_token: dict[str, list[int]] = {}
    for task in tasks:
        by_token.setdefault(task.token, []).append(task.id)
    with conn.transaction():
        for token, ids in by_token.items():
            listed, params = in_list("i", ids)
            conn.execute(
                "UPDATE tasks SET lease_expires_at = {now} + :lease "
                f"WHERE id IN {listed} AND claim_token = :token "
                f"AND status = '{TaskStatus.RUNNING}'",
                {**params, "token": token, "lease": lease},
            )


def give_back(
    conn: Connection, worker_id: int, tasks: list[Claimed], reason: str = PREFETCH_RETURNED
) -> list[int]:
    """Put prefetched tasks that never started back on the queue, uncounted, in
    one transaction; the IDs given back (a task reaped meanwhile is fenced off)."""
    if not tasks:
        return []
    with conn.transaction():
        return [t.id for t in tasks if tr.release_uncounted(conn, _held(worker_id, t), reason)]


# What a claim returns, in ``to_claimed``'s order (a retried claim reads the same).
CLAIMED_COLUMNS = (
    "id, kind, payload, pickled, timeout, expected_runtime, attempts, max_attempts, tags, "
    "started_at"
)


def to_claimed(row: Sequence[Any], token: str) -> Claimed:
    """A ``CLAIMED_COLUMNS`` row as the ``Claimed`` the worker holds."""
    return Claimed(
        id=int(row[0]),
        kind=row[1],
        payload=row[2],
        pickled=bytes(row[3]) if row[3] is not None else None,
        timeout=row[4],
        expected_runtime=row[5],
        attempt=int(row[6]),
        max_attempts=int(row[7]),
        tags=row[8],
        token=token,
        started_at=float(row[9]),
    )


class Claimer:
    """Builds the claim statement once for a worker's fixed tags and options.

    With ``fit_deadline`` a task is claimed only if its estimate fits in the
    time left: its ``expected_runtime``, else the worker's runtime estimate for
    its tag set (``set_estimates``: a CASE over the tag sets, so the claim stays
    one statement), else its ``timeout``.

    ``owner`` / ``owner_group`` (a server's worker token, see ``owner_match``)
    restrict it to one user's or one group's tasks; a direct worker has neither.
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
        owner: str | None = None,
        owner_group: str | None = None,
        engines: Sequence[str] = (),
    ):
        self.conn = conn
        self.worker_id = worker_id
        self.lease = lease
        self.tag_params = {f"t{i}": t for i, t in enumerate(tag_sets)}
        engine_match, self.engine_params = engine_condition(engines)
        self.estimate_params: dict[str, float | None] = {}
        conditions = [
            f"status = '{TaskStatus.PENDING}'",
            f"tags IN ({', '.join(':' + k for k in self.tag_params)})",
            engine_match,
        ]
        if not allow_pickle:
            conditions.append("kind <> 'pickle'")
        # Owner filter (server worker tokens only).
        match, self.match_params = owner_match(owner, owner_group)
        if match:
            conditions.append(match)
        self.estimate_params = {f"e{i}": None for i in range(len(tag_sets))}
        case = " ".join(
            f"WHEN :t{i} THEN CAST(:e{i} AS DOUBLE PRECISION)" for i in range(len(tag_sets))
        )
        estimate = f"COALESCE(expected_runtime, CASE tags {case} END, timeout, 0)"
        # Pending tasks this worker could run but not in the time left (why it stops).
        self.too_long_sql = "SELECT COUNT(*) FROM tasks WHERE " + " AND ".join(
            [*conditions, f"{estimate} > :remaining"]
        )
        if fit_deadline:
            conditions.append(f"{estimate} <= :remaining")
        self._conditions = conditions
        self.sql = self._statement(conditions)

    def _statement(self, conditions: list[str]) -> str:
        pg = self.conn.dialect == "postgresql"
        lock = " FOR UPDATE SKIP LOCKED" if pg else ""
        # SQLite has no statistics to prefer the partial index over ix_tasks_status.
        source = "tasks" if pg else "tasks INDEXED BY ix_tasks_pending"
        return (
            f"UPDATE tasks SET status = '{TaskStatus.RUNNING}', worker_id = :worker_id, "
            "attempts = attempts + 1, claim_token = :token, watcher_id = NULL, "
            "started_at = {now}, "
            "finished_at = NULL, lease_expires_at = {now} + :lease "
            # Only the primary key here: an extra `status = 'pending'` makes PostgreSQL
            # scan every pending row. The row lock taken by the subquery (re-checked
            # against the newest row version) or SQLite's write lock keeps it exact.
            f"WHERE id = (SELECT id FROM {source} WHERE "
            + " AND ".join(conditions)
            + f" ORDER BY priority DESC, id LIMIT 1{lock}) "
            f"RETURNING {CLAIMED_COLUMNS}"
        )

    _many_sql: str | None = None  # claim_many's statement, derived from ``sql`` on first use

    def filter_params(self) -> dict[str, object]:
        """The parameters of every statement built from the claim's conditions (tag
        sets, owner match, engines, estimates): one place, so no statement misses one."""
        return {
            **self.tag_params,
            **self.match_params,
            **self.engine_params,
            **self.estimate_params,
        }

    def set_estimates(self, estimates: dict[str, float]) -> None:
        """Runtime estimates (seconds) per canonical tag set, for tasks without one."""
        tag_index = {tags: key[1:] for key, tags in self.tag_params.items()}
        for key in self.estimate_params:
            self.estimate_params[key] = None
        for tags, seconds in estimates.items():
            if tags in tag_index:
                self.estimate_params[f"e{tag_index[tags]}"] = float(seconds)

    def too_long(self, remaining: float) -> int:
        """How many pending tasks it could take do not fit in ``remaining`` seconds.

        Tasks that fit but were locked by other workers' claims are not counted:
        they are being taken, which is not a reason to say the deadline stopped us.
        """
        row = self.conn.one(
            self.too_long_sql,
            {
                **self.filter_params(),
                "remaining": remaining,
            },
        )
        return int(row[0]) if row else 0

    def statement(
        self, remaining: float | None, also: str | None = None
    ) -> tuple[str, dict[str, object], str]:
        """The one-task claim: its statement, its parameters and the fresh claim token.

        ``also``: one more SQL condition a task must meet (``replies`` adds its
        guard, and wraps the statement with the request's record so both commit
        together)."""
        token = secrets.token_hex(16)
        params = {
            **self.filter_params(),
            "worker_id": self.worker_id,
            "token": token,
            "lease": self.lease,
            "remaining": remaining,
        }
        sql = self.sql if also is None else self._statement([*self._conditions, also])
        return sql, params, token

    def claim(self, remaining: float | None = None) -> Claimed | None:
        sql, params, token = self.statement(remaining)
        if self.conn.dialect == "postgresql":
            # One statement in autocommit mode is atomic: no BEGIN/COMMIT round trips.
            row = self.conn.one(sql, params)
        else:
            with self.conn.transaction():
                row = self.conn.one(sql, params)
        if row is None:
            return None
        return to_claimed(row, token)

    def claim_many(self, remaining: float | None, k: int) -> list[Claimed]:
        """Up to ``k`` tasks in one statement (a draining worker's prefetch), in
        the queue's order (priority, then age). The statement is ``claim``'s with
        ``id IN (... LIMIT :k)``, so every filter of the one-task claim applies.
        All share one fresh claim token: fencing goes by (id, token)."""
        if k <= 1:
            one = self.claim(remaining)
            return [] if one is None else [one]
        if self._many_sql is None:
            sql = self.sql.replace("WHERE id = (SELECT", "WHERE id IN (SELECT", 1)
            sql = sql.replace(" LIMIT 1", " LIMIT :k", 1)
            assert sql.count(":k") == 1 and "id IN (SELECT" in sql, "claim statement changed"
            self._many_sql = sql + ", priority"
        token = secrets.token_hex(16)
        params = {
            **self.filter_params(),
            "worker_id": self.worker_id,
            "token": token,
            "lease": self.lease,
            "remaining": remaining,
            "k": int(k),
        }
        if self.conn.dialect == "postgresql":
            rows = self.conn.execute(self._many_sql, params).fetchall()
        else:
            with self.conn.transaction():
                rows = self.conn.execute(self._many_sql, params).fetchall()
        rows.sort(key=lambda r: (-int(r[10]), int(r[0])))
        return [to_claimed(row, token) for row in rows]


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
# PostgreSQL: the fenced update (``done``, returning the new status) and the
# attempt's log row in one statement; ``replies`` adds its record as a third part.
FINISH_PG_PARTS = (
    f"WITH done AS ({_FINISH}), "
    f"logged AS (INSERT INTO {_ATTEMPT_COLUMNS} SELECT {_ATTEMPT_VALUES} FROM done)"
)
_FINISH_PG = FINISH_PG_PARTS + " SELECT status FROM done"


def finish(conn: Connection, worker_id: int, task: Claimed, outcome: Outcome) -> str | None:
    """Record an attempt's end; returns the task's new status, or None if fenced off.

    A failed attempt goes back to ``pending`` while attempts remain.
    """
    if conn.dialect == "postgresql":
        row = conn.one(_FINISH_PG, finish_params(worker_id, task, outcome))
        return row[0] if row else None
    with conn.transaction():
        return finish_in_transaction(conn, worker_id, task, outcome)


def finish_in_transaction(
    conn: Connection, worker_id: int, task: Claimed, outcome: Outcome
) -> str | None:
    """``finish``'s statements inside the caller's transaction (SQLite's path)."""
    params, attempt = _finish_params(worker_id, task, outcome)
    return _finish_sqlite(conn, params, attempt)


def finish_params(worker_id: int, task: Claimed, outcome: Outcome) -> dict[str, Any]:
    """The parameters of ``FINISH_PG_PARTS``."""
    params, attempt = _finish_params(worker_id, task, outcome)
    return {**params, **attempt}


def finish_many(
    conn: Connection, worker_id: int, done: list[tuple[Claimed, Outcome]]
) -> list[str | None]:
    """Record several successful attempts in one go, each fenced like ``finish``:
    one statement over arrays on PostgreSQL (one round trip, atomic), one
    transaction on SQLite. The new statuses, in order (None where fenced off)."""
    if not done:
        return []
    assert all(outcome.ok for _, outcome in done), "only successes are grouped"
    rows = []
    for task, outcome in done:
        params, attempt = _finish_params(worker_id, task, outcome)
        rows.append({**params, **attempt})
    if conn.dialect == "postgresql":
        arrays = {f"a_{name}": [row[name] for row in rows] for name in _MANY_COLUMNS}
        found = dict(conn.execute(_FINISH_MANY_PG, {**arrays, "worker_id": worker_id}).fetchall())
        return [found.get(task.id) for task, _ in done]
    with conn.transaction():
        return [_finish_sqlite(conn, row, row) for row in rows]


# The per-attempt values ``finish_many`` passes as arrays, with their SQL types.
_MANY_COLUMNS = {
    "id": "BIGINT",
    "token": "TEXT",
    "reason": "TEXT",
    "exit_code": "INTEGER",
    "result": "TEXT",
    "result_pickled": "BYTEA",
    "error": "TEXT",
    "stdout_tail": "TEXT",
    "stderr_tail": "TEXT",
    "log_dir": "TEXT",
    "attempt": "INTEGER",
    "started_at": "DOUBLE PRECISION",
}
_FINISH_MANY_PG = (
    "WITH v AS (SELECT * FROM unnest("
    + ", ".join(f"CAST(:a_{name} AS {kind}[])" for name, kind in _MANY_COLUMNS.items())
    + f") AS v({', '.join(_MANY_COLUMNS)})), "
    f"done AS (UPDATE tasks t SET status = '{TaskStatus.COMPLETED}', finished_at = {{now}}, "
    "reason = v.reason, exit_code = v.exit_code, result = v.result, "
    "result_pickled = v.result_pickled, error = v.error, stdout_tail = v.stdout_tail, "
    "stderr_tail = v.stderr_tail, log_dir = v.log_dir, claim_token = NULL, "
    "lease_expires_at = NULL FROM v "
    f"WHERE t.id = v.id AND t.claim_token = v.token AND t.status = '{TaskStatus.RUNNING}' "
    "RETURNING t.id, t.status, v.attempt, v.started_at, v.reason, v.exit_code, v.error), "
    f"logged AS (INSERT INTO {_ATTEMPT_COLUMNS} SELECT id, attempt, :worker_id, started_at, "
    f"{{now}}, '{AttemptOutcome.COMPLETED}', reason, exit_code, error FROM done) "
    "SELECT id, status FROM done"
)


def _finish_sqlite(conn: Connection, params: dict[str, Any], attempt: dict[str, Any]) -> str | None:
    row = conn.one(_FINISH, params)
    if row is None:
        return None
    conn.execute(_ATTEMPT, {**attempt, **{k: params[k] for k in ("reason", "exit_code", "error")}})
    return row[0]


def _finish_params(
    worker_id: int, task: Claimed, outcome: Outcome
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The fenced update's parameters and its attempt row's."""
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
    return params, attempt


def release(
    conn: Connection,
    worker_id: int,
    task: Claimed,
    reason: str,
    walltime_releases: int = WALLTIME_RELEASES,
) -> str | None:
    """Put an unfinished task back on the queue without counting the attempt.

    A task stopped at the walltime more than ``walltime_releases`` times (its
    walltime releases, and the ones the reconciler typed TIMEOUT) would loop
    forever: it fails as TIMEOUT instead, saying it never fits. Returns the
    task's new status, or None if fenced off.
    """
    held = _held(worker_id, task)
    with conn.transaction():
        if reason == WALLTIME_RELEASE:
            before = int(
                conn.one(
                    "SELECT COUNT(*) FROM task_attempts WHERE task_id = :id "
                    "AND reason IN (:walltime, :timeout)",
                    {"id": task.id, "walltime": WALLTIME_RELEASE, "timeout": JobStateName.TIMEOUT},
                )[0]
            )
            if before >= walltime_releases:
                error = (
                    f"stopped at the walltime {before + 1} times: it never fits in a "
                    "worker's time (give it a longer walltime, or split it)"
                )
                status = tr.requeue_or_fail(
                    conn,
                    held,
                    outcome=AttemptOutcome.FAILED,
                    reason=JobStateName.TIMEOUT.value,
                    error=error,
                    attempt_error=error,
                    fail=True,
                )
                return None if status is None else status.value
        released = tr.release_uncounted(conn, held, reason)
    return TaskStatus.PENDING.value if released else None


def watch(
    conn: Connection,
    worker_id: int,
    tag_sets: list[str],
    *,
    allow_pickle: bool,
    within: float | None,
    owner: str | None = None,
    owner_group: str | None = None,
    engines: Sequence[str] = (),
) -> Watch | None:
    """Register this idle worker as the one waiting for a silent owner's task.

    Candidates: running tasks of its tag sets whose owner is silent and whose
    lease ends within ``within`` s, not watched by another live worker. The
    watch is a compare-and-set on the row as read (its claim token and its
    watcher), like a claim: of two workers racing for one task, one wins and
    the other looks at the next. A new claim of the task clears it; the watch
    also lapses when its worker exits or stops heart-beating.
    """
    params: dict[str, Any] = {f"t{i}": t for i, t in enumerate(tag_sets)}
    engine_match, engine_params = engine_condition(engines, "t.engine")
    conditions = [
        f"t.status = '{TaskStatus.RUNNING}'",
        f"t.tags IN ({', '.join(':' + k for k in params)})",
        engine_match,
        "t.worker_id <> :me",
        SILENT_OWNER,
        f"(t.watcher_id IS NULL OR t.watcher_id = :me OR t.watcher_id NOT IN ({_LIVE_WORKERS}))",
    ]
    if not allow_pickle:
        conditions.append("t.kind <> 'pickle'")
    match, match_params = owner_match(owner, owner_group, "t.")
    if match:  # a server's worker token watches only what it may claim
        conditions.append(match)
        params.update(match_params)
    if within is not None:
        conditions.append("t.lease_expires_at <= {now} + :within")
        params["within"] = within
    params["me"] = worker_id
    params.update(engine_params)
    with conn.transaction():
        rows = conn.execute(
            "SELECT t.id, t.claim_token, t.watcher_id, t.worker_id, "
            "{now} - w.heartbeat_at, t.lease_expires_at - {now} "
            "FROM tasks t LEFT JOIN workers w ON w.id = t.worker_id "
            f"WHERE {' AND '.join(conditions)} "
            "ORDER BY CASE WHEN t.watcher_id = :me THEN 0 ELSE 1 END, t.lease_expires_at "
            "LIMIT 20",
            params,
        ).fetchall()
        for task_id, token, watcher, owner, silent_for, ends_in in rows:
            seen = "watcher_id IS NULL" if watcher is None else "watcher_id = :seen"
            cur = conn.execute(
                "UPDATE tasks SET watcher_id = :me WHERE id = :id AND claim_token = :token "
                f"AND status = '{TaskStatus.RUNNING}' AND {seen}",
                {"me": worker_id, "id": task_id, "token": token, "seen": watcher},
            )
            if cur.rowcount != 1:
                continue  # another worker got there first
            _unwatch(conn, worker_id, but=int(task_id))
            return Watch(
                task_id=int(task_id),
                owner=None if owner is None else int(owner),
                silent_for=float(silent_for or 0.0),
                lease_ends_in=float(ends_in or 0.0),
            )
        _unwatch(conn, worker_id)
    return None


def unwatch(conn: Connection, worker_id: int) -> None:
    """Drop this worker's watch (it took other work, or leaves)."""
    with conn.transaction():
        _unwatch(conn, worker_id)


def _unwatch(conn: Connection, worker_id: int, but: int | None = None) -> None:
    conn.execute(
        "UPDATE tasks SET watcher_id = NULL "
        f"WHERE status = '{TaskStatus.RUNNING}' AND watcher_id = :me AND id <> :but",
        {"me": worker_id, "but": -1 if but is None else but},
    )


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
