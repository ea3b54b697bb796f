"""SIMX's views of the queue: batches, runs and workers as one user's group sees them.

The named operations behind runweb's routes (``server/simx_routes.py``) and the
owner check of every batch enqueue (the CLI's too). Each view filters its rows
with ``queue.scope``'s rule, the API's too, so a caller never sees another group's
rows: a user sees its own and its group's batches; a worker is visible to a user
once it has run or holds one of the tasks in that user's reach (workers started
straight on the database belong to no group). An admin sees everything.
"""

from __future__ import annotations

import json
from typing import Any

from hpclaunch.errors import NotFound
from hpclaunch.queue import store
from hpclaunch.queue.batches import Batch, batch_owner
from hpclaunch.queue.driver import Connection
from hpclaunch.queue.history import first_line
from hpclaunch.queue.scope import Scope, condition
from hpclaunch.states import AttemptOutcome, TaskStatus

# Whoever opens the database directly is its administrator (the CLI, the Queue API).
ADMINISTRATOR = Scope(*store.LOCAL, admin=True)


def enqueue_batch(conn: Connection, batch: Batch, caller: Scope) -> tuple[int, list[int]]:
    """Check the batch's user/group against the caller, then insert it in one transaction."""
    group_of = None
    if caller.admin and batch.user is not None and batch.group is None:
        row = conn.one("SELECT group_name FROM users WHERE name = :name", {"name": batch.user})
        group_of = None if row is None else row[0]
    owner = batch_owner(
        batch, user=caller.user, group=caller.group, admin=caller.admin, group_of=group_of
    )
    created_by = None if caller is ADMINISTRATOR else caller.user
    return store.insert_batch(conn, batch, owner=owner, created_by=created_by)


def batch_state(counts: dict[str, int]) -> str:
    """One word for a batch: pending, running, completed, or finished (some did not complete)."""
    total = sum(counts.values())
    if counts.get(TaskStatus.RUNNING, 0):
        return "running"
    if total and counts.get(TaskStatus.COMPLETED, 0) == total:
        return "completed"
    if counts.get(TaskStatus.PENDING, 0):
        return "pending"
    return "finished"


def _batch_view(row: dict[str, Any], counts: dict[str, int]) -> dict[str, Any]:
    spec = json.loads(row["spec"])
    return {
        "id": row["id"],
        "name": row["name"],
        "engine": spec.get("engine"),
        "user": row["owner"],
        "group": row["owner_group"],
        "n_runs": row["n_tasks"],
        "created_at": row["created_at"],
        "canceled_at": row["canceled_at"],
        "status": batch_state(counts),
        "counts": counts,
    }


_BATCH_COLUMNS = "id, name, spec, n_tasks, owner, owner_group, created_at, canceled_at"


def visible_batches(conn: Connection, caller: Scope, *, user: str | None = None) -> list[dict]:
    """The caller's group's batches (all for an admin), oldest first; ``user``: only theirs."""
    where, params = condition(caller, "b")
    if user is not None:
        where += " AND b.owner = :owner"
        params["owner"] = user
    rows = conn.dicts(
        f"SELECT {', '.join('b.' + c for c in _BATCH_COLUMNS.split(', '))} FROM batches b "
        f"WHERE {where} ORDER BY b.id",
        params,
    )
    per: dict[int, dict[str, int]] = {}
    for batch_id, status, n in conn.execute(
        "SELECT t.batch_id, t.status, COUNT(*) FROM tasks t JOIN batches b ON b.id = t.batch_id "
        f"WHERE {where} GROUP BY t.batch_id, t.status",
        params,
    ).fetchall():
        per.setdefault(batch_id, {})[status] = n
    return [
        _batch_view(r, {s.value: per.get(r["id"], {}).get(s, 0) for s in TaskStatus}) for r in rows
    ]


def visible_batch(conn: Connection, caller: Scope, batch_id: int) -> dict[str, Any]:
    """One batch with all its runs; NotFound when it is missing or another group's."""
    where, params = condition(caller)
    rows = conn.dicts(
        f"SELECT {_BATCH_COLUMNS} FROM batches WHERE id = :id AND {where}",
        {**params, "id": batch_id},
    )
    if not rows:
        raise NotFound(f"no batch {batch_id}")
    runs = []
    counts = {s.value: 0 for s in TaskStatus}
    cur = conn.execute(
        "SELECT id, name, status, attempts, worker_id, started_at, finished_at, exit_code, "
        "result, error, reason FROM tasks WHERE batch_id = :id ORDER BY id",
        {"id": batch_id},
    )
    for index, r in enumerate(cur.fetchall()):
        counts[r[2]] = counts.get(r[2], 0) + 1
        runs.append(
            {
                "run": index,
                "task_id": r[0],
                "name": r[1],
                "status": r[2],
                "attempts": r[3],
                "worker_id": r[4],
                "started_at": r[5],
                "finished_at": r[6],
                "exit_code": r[7],
                "result": _json_or_none(r[8]),
                "error": first_line(r[9]),
                "reason": r[10],
            }
        )
    view = _batch_view(rows[0], counts)
    view["param"] = json.loads(rows[0]["spec"]).get("param")
    view["runs"] = runs
    return view


def _json_or_none(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text, parse_constant=str)  # NaN stays readable, and valid JSON
    except ValueError:
        return text


def visible_workers(conn: Connection, caller: Scope) -> list[dict[str, Any]]:
    """Every worker the caller's group knows, even long-gone ones, oldest first.

    A group knows a worker that has run or holds one of its tasks; the counts
    are of the group's runs only, so nothing of another group leaks through.
    """
    where, params = condition(caller, "t")
    known = (
        "SELECT a.worker_id FROM task_attempts a JOIN tasks t ON t.id = a.task_id "
        f"WHERE {where} UNION SELECT t.worker_id FROM tasks t WHERE {where}"
    )
    rows = conn.dicts(
        "SELECT id, host, pid, tags, engines, mode, status, started_at, heartbeat_at, "
        "stopped_at, exit_reason, version, launch_id, scheduler, job_id, array_index "
        f"FROM workers WHERE {'1 = 1' if caller.admin else f'id IN ({known})'} ORDER BY id",
        params,
    )
    done: dict[int, dict[str, int]] = {}
    for worker_id, outcome, n in conn.execute(
        "SELECT a.worker_id, a.outcome, COUNT(*) FROM task_attempts a "
        f"JOIN tasks t ON t.id = a.task_id WHERE {where} GROUP BY a.worker_id, a.outcome",
        params,
    ).fetchall():
        done.setdefault(worker_id, {})[outcome] = n
    current = dict(
        conn.execute(
            f"SELECT t.worker_id, t.id FROM tasks t WHERE t.status = :running AND {where}",
            {**params, "running": TaskStatus.RUNNING.value},
        ).fetchall()
    )
    for row in rows:
        row["tags"] = row["tags"].split(",") if row["tags"] else []
        row["engines"] = row["engines"].split(",") if row["engines"] else []
        row["runs_completed"] = done.get(row["id"], {}).get(AttemptOutcome.COMPLETED, 0)
        row["runs_failed"] = done.get(row["id"], {}).get(AttemptOutcome.FAILED, 0)
        row["current_task"] = current.get(row["id"])
    return rows
