"""Worker requests made safe to retry: the answer to each client request ID, recorded.

Why: over HTTP a reply can be lost after the database committed (the server
restarted, a proxy cut the connection). The worker then sends the same
request again, with the same request ID. The answers live in the
``worker_requests`` table, not in a server's memory, so a retry reaching
another server process, or the same one after a restart, gets the same answer:

* a claim or a finish commits together with its record (one statement on
  PostgreSQL, one transaction on SQLite): a task is never claimed in a request's
  name without the answer that request will get;
* a retried claim returns the same task and claim token while the worker still
  holds it (and nothing once it no longer does: the worker asks again); a task
  held in the worker's name without a recorded claim (claimed outside this
  module) is put back before the worker claims again;
* a retried finish or release returns the recorded status, never "fenced off"
  because of its own earlier success. A finish without a record falls back on
  the attempt's log row (``claims.recorded_status``).

Heartbeats are not recorded: renewing a lease twice is the same as once.
Rows older than ``KEEP`` seconds are deleted by ``expire`` (the server calls it
now and then); ``forget`` drops an exited worker's rows.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from hpclaunch.queue import claims
from hpclaunch.queue import transitions as tr
from hpclaunch.queue.driver import Connection
from hpclaunch.queue.session import Claimed, Outcome
from hpclaunch.states import TaskStatus

KEEP = 86400.0  # seconds a recorded answer is kept
EXPIRE_BATCH = 5000  # rows deleted per expire call: one short transaction
DUPLICATE_CLAIM = "duplicate_request"


def _recorded(conn: Connection, worker_id: int, request_id: str) -> tuple[str, Any] | None:
    row = conn.one(
        "SELECT op, answer FROM worker_requests WHERE worker_id = :w AND request_id = :r",
        {"w": worker_id, "r": request_id},
    )
    return None if row is None else (row[0], json.loads(row[1]))


_INSERT = (
    "INSERT INTO worker_requests "
    "(worker_id, request_id, op, task_id, claim_token, answer, created_at) "
)
_NO_DUPLICATE = " ON CONFLICT (worker_id, request_id) DO NOTHING RETURNING id"


def _record(
    conn: Connection,
    worker_id: int,
    request_id: str,
    op: str,
    task_id: int,
    answer: Any,
    token: str | None = None,
) -> bool:
    """Insert the answer; False when another try of the same request recorded one first."""
    row = conn.one(
        _INSERT
        + "VALUES (:rq_w, :rq_r, :rq_op, :rq_task, :rq_token, :rq_answer, {now})"
        + _NO_DUPLICATE,
        {
            "rq_w": worker_id,
            "rq_r": request_id,
            "rq_op": op,
            "rq_task": task_id,
            "rq_token": token,
            "rq_answer": json.dumps(answer),
        },
    )
    return row is not None


# A claim must not go ahead when its request ID already has an answer (a retry),
# nor while the worker holds a task no recorded claim gave it (``_release_unrecorded``).
_BLOCKED = (
    "EXISTS (SELECT 1 FROM worker_requests WHERE worker_id = :rq_w AND request_id = :rq_r) "
    "OR EXISTS (SELECT 1 FROM tasks t WHERE t.worker_id = :rq_w "
    f"AND t.status = '{TaskStatus.RUNNING}' AND NOT EXISTS (SELECT 1 FROM worker_requests q "
    "WHERE q.worker_id = t.worker_id AND q.claim_token = t.claim_token))"
)


def _release_unrecorded(conn: Connection, worker_id: int) -> None:
    """Put back tasks held in the worker's name by a claim whose answer was never
    recorded (a claim made outside this module, or by a server older than the
    one-statement claim): nobody can ever receive them, and a claiming worker
    holds nothing else."""
    with conn.transaction():
        for held in tr.held(
            conn,
            "t.worker_id = :w AND NOT EXISTS (SELECT 1 FROM worker_requests r "
            "WHERE r.worker_id = t.worker_id AND r.claim_token = t.claim_token)",
            {"w": worker_id},
        ):
            tr.release_uncounted(conn, held, tr.ORPHANED_CLAIM)


def _claim_and_record(
    conn: Connection,
    worker_id: int,
    request_id: str,
    claimer: claims.Claimer,
    remaining: float | None,
) -> tuple[bool, Claimed | None, bool]:
    """The guarded claim and its record, committed together: (blocked, the task or
    None, recorded). Blocked: nothing was claimed (see ``_BLOCKED``). Not recorded:
    another try of the same request recorded first."""
    record = {"rq_w": worker_id, "rq_r": request_id}
    if conn.dialect == "postgresql":
        # One statement, one round trip, one commit: the guard, the claim's UPDATE
        # and the record's INSERT (whose count says whether it won).
        sql, params, token = claimer.statement(remaining, "NOT (SELECT blocked FROM g)")
        row = conn.one(
            f"WITH g AS (SELECT {_BLOCKED} AS blocked), c AS ({sql}), "
            f"r AS ({_INSERT}SELECT :rq_w, :rq_r, 'claim', c.id, CAST(:token AS TEXT), "
            "json_build_object('task', c.id, 'token', CAST(:token AS TEXT))::text, {now} "
            f"FROM c{_NO_DUPLICATE}) "
            "SELECT g.blocked, (SELECT COUNT(*) FROM r), c.* FROM g LEFT JOIN c ON true",
            {**params, **record},
        )
        if row[0] or row[2] is None:
            return bool(row[0]), None, False
        return False, claims.to_claimed(row[2:], token), bool(row[1])
    with conn.transaction():
        if conn.one(f"SELECT {_BLOCKED}", record)[0]:
            return True, None, False
        sql, params, token = claimer.statement(remaining)
        row = conn.one(sql, params)
        if row is None:
            return False, None, False
        task = claims.to_claimed(row, token)
        answer = {"task": task.id, "token": token}
        return False, task, _record(conn, worker_id, request_id, "claim", task.id, answer, token)


def held_task(conn: Connection, worker_id: int, task_id: int, token: str) -> Claimed | None:
    """The task as a fresh claim would return it, if the worker still holds it with ``token``."""
    row = conn.one(
        f"SELECT {claims.CLAIMED_COLUMNS} FROM tasks "
        f"WHERE id = :id AND claim_token = :token AND worker_id = :w "
        f"AND status = '{TaskStatus.RUNNING}'",
        {"id": task_id, "token": token, "w": worker_id},
    )
    if row is None:
        return None
    return claims.to_claimed(row, token)


def claim(
    conn: Connection,
    worker_id: int,
    request_id: str,
    claimer: Callable[[Connection], claims.Claimer],
    remaining: float | None,
    *,
    watching: int | None = None,
) -> Claimed | None:
    """A claim under ``request_id``: the recorded task if this request already got one.

    ``claimer(conn)`` builds the worker's ``claims.Claimer`` on this connection.
    The claim and its record commit together. An empty answer is not recorded
    (asking again is harmless). Two tries of one request racing (a retry arriving
    while the first still waits): the one that records second puts its task back,
    uncounted, and returns the first's. ``watching``: the task the worker watches;
    a claim of another drops the watch.
    """
    for _ in range(2):
        blocked, task, recorded = _claim_and_record(
            conn, worker_id, request_id, claimer(conn), remaining
        )
        if not blocked:
            break
        prior = _recorded(conn, worker_id, request_id)
        if prior is not None:
            return _prior_claim(conn, worker_id, prior[1])
        _release_unrecorded(conn, worker_id)  # then claim again
    else:
        return None  # still blocked: the worker asks again
    if task is None:
        return None
    if not recorded:
        with conn.transaction():
            held = tr.Held(
                task.id, task.token, worker_id, task.attempt, task.max_attempts, task.started_at
            )
            tr.release_uncounted(conn, held, DUPLICATE_CLAIM)
        again = _recorded(conn, worker_id, request_id)
        return None if again is None else _prior_claim(conn, worker_id, again[1])
    if watching is not None and watching != task.id:
        claims.unwatch(conn, worker_id)  # busy now: another idle worker may watch it
    return task


def _prior_claim(conn: Connection, worker_id: int, answer: Any) -> Claimed | None:
    if not isinstance(answer, dict) or answer.get("task") is None:
        return None
    return held_task(conn, worker_id, int(answer["task"]), str(answer["token"]))


def finish(
    conn: Connection, worker_id: int, request_id: str, task: Claimed, outcome: Outcome
) -> str | None:
    """``claims.finish`` once per request ID; a retry returns the first answer.

    The finish and its record commit together. A retry's finish is fenced off
    (the first cleared the claim token), so the recorded answer is read only then."""
    status = _finish_and_record(conn, worker_id, request_id, task, outcome)
    if status is not None:
        return status
    prior = _recorded(conn, worker_id, request_id)
    if prior is not None:
        return prior[1]
    # Fenced off, or an earlier try committed and its record was lost.
    status = claims.recorded_status(conn, worker_id, task)
    _record(conn, worker_id, request_id, "finish", task.id, status)
    return status


def _finish_and_record(
    conn: Connection, worker_id: int, request_id: str, task: Claimed, outcome: Outcome
) -> str | None:
    """The task's new status, its answer recorded; None when the finish is fenced off."""
    if conn.dialect == "postgresql":
        row = conn.one(
            f"{claims.FINISH_PG_PARTS}, r AS ({_INSERT}SELECT :rq_w, :rq_r, 'finish', :id, "
            "NULL, to_json(status)::text, {now} FROM done" + _NO_DUPLICATE + ") "
            "SELECT status FROM done",
            {
                **claims.finish_params(worker_id, task, outcome),
                "rq_w": worker_id,
                "rq_r": request_id,
            },
        )
        return None if row is None else str(row[0])
    with conn.transaction():
        status = claims.finish_in_transaction(conn, worker_id, task, outcome)
        if status is not None:
            _record(conn, worker_id, request_id, "finish", task.id, status)
        return status


def release(
    conn: Connection,
    worker_id: int,
    request_id: str,
    task: Claimed,
    reason: str,
    walltime_releases: int,
) -> str | None:
    """``claims.release`` once per request ID; a retry returns the first answer."""
    prior = _recorded(conn, worker_id, request_id)
    if prior is not None:
        return prior[1]
    status = claims.release(conn, worker_id, task, reason, walltime_releases)
    _record(conn, worker_id, request_id, "release", task.id, status)
    return status


def expire(conn: Connection, keep: float = KEEP) -> int:
    """Delete up to ``EXPIRE_BATCH`` answers older than ``keep`` seconds (by index)."""
    with conn.transaction():
        cur = conn.execute(
            "DELETE FROM worker_requests WHERE id IN (SELECT id FROM worker_requests "
            f"WHERE created_at < {{now}} - :keep LIMIT {EXPIRE_BATCH})",
            {"keep": keep},
        )
        return max(cur.rowcount, 0)


def forget(conn: Connection, worker_id: int) -> None:
    """Drop an exited worker's answers (its requests are over)."""
    with conn.transaction():
        conn.execute("DELETE FROM worker_requests WHERE worker_id = :w", {"w": worker_id})


def worker_token(conn: Connection, worker_id: int) -> tuple[bool, int | None]:
    """(the worker row exists, the token that registered it)."""
    row = conn.one("SELECT token_id FROM workers WHERE id = :w", {"w": worker_id})
    if row is None:
        return False, None
    return True, None if row[0] is None else int(row[0])
