"""Enqueueing and the listings (tasks, attempts, batches, workers, stats).

Plain DB-API over ``queue.driver``, like the worker's statements: the CLI, the
Python API and ``launches`` share one access path and never import SQLAlchemy.
Task transitions (retry, cancel, ...) are in ``queue.operations``.
"""

from __future__ import annotations

import getpass
import json
import time
from collections.abc import Sequence
from typing import Any

from hpclaunch.errors import NotFound
from hpclaunch.queue.batches import Batch, TaskSpec
from hpclaunch.queue.claims import SILENT_OWNER
from hpclaunch.queue.driver import Connection
from hpclaunch.queue.scope import Scope, condition, worker_condition
from hpclaunch.states import AttemptOutcome, TaskStatus, WorkerStatus

SUMMARY_COLUMNS = (
    "id, name, kind, engine, status, tags, priority, attempts, max_attempts, batch_id, worker_id, "
    "exit_code, reason, created_at, started_at, finished_at"
)
_INSERT_TASK = (
    "INSERT INTO tasks (batch_id, name, kind, engine, payload, pickled, tags, priority, "
    "max_attempts, attempts, timeout, expected_runtime, status, created_at, owner, "
    "owner_group) VALUES "
    "(:batch_id, :name, :kind, :engine, :payload, :pickled, :tags, :priority, :max_attempts, 0, "
    ":timeout, :expected_runtime, :status, :created_at, :owner, :owner_group) RETURNING id"
)
LOCAL = ("local", "local")  # the owner (user, group) of work enqueued straight into the database


def _row(
    spec: TaskSpec,
    now: float,
    batch_id: int | None = None,
    pickled: bytes | None = None,
    owner: tuple[str, str] = LOCAL,
) -> dict[str, Any]:
    return {
        "owner": owner[0],
        "owner_group": owner[1],
        "batch_id": batch_id,
        "name": spec.name,
        "kind": spec.kind,
        "engine": spec.engine,
        "payload": json.dumps(spec.payload),
        "pickled": pickled,
        "tags": spec.tags,
        "priority": spec.priority,
        "max_attempts": spec.max_attempts,
        "timeout": spec.timeout,
        "expected_runtime": spec.expected_runtime,
        "status": TaskStatus.PENDING.value,
        "created_at": now,
    }


def insert_tasks(
    conn: Connection,
    specs: Sequence[TaskSpec],
    *,
    pickled: bytes | None = None,
    owner: tuple[str, str] = LOCAL,
) -> list[int]:
    """Insert tasks (owned by ``owner``: user, group) in one transaction; their IDs in order."""
    now = time.time()
    with conn.transaction():
        ids = conn.many_returning(
            _INSERT_TASK, [_row(s, now, pickled=pickled, owner=owner) for s in specs]
        )
    return [int(i) for i in ids]


def insert_batch(
    conn: Connection,
    batch: Batch,
    *,
    owner: tuple[str, str] = LOCAL,
    created_by: str | None = None,
) -> tuple[int, list[int]]:
    """A batch and all its tasks, in one transaction: all or nothing.

    ``owner`` is the (user, group) the batch and its tasks belong to, already
    checked against the caller; ``created_by`` defaults to the Unix account
    running the command.
    """
    now = time.time()
    with conn.transaction():
        batch_id = int(
            conn.one(
                "INSERT INTO batches (name, created_at, created_by, spec, n_tasks, owner, "
                "owner_group) VALUES (:name, :created_at, :created_by, :spec, :n_tasks, "
                ":owner, :owner_group) RETURNING id",
                {
                    "name": batch.name,
                    "created_at": now,
                    "created_by": created_by or current_user(),
                    "spec": json.dumps(batch.spec, default=str),
                    "n_tasks": len(batch.tasks),
                    "owner": owner[0],
                    "owner_group": owner[1],
                },
            )[0]
        )
        ids = conn.many_returning(
            _INSERT_TASK, [_row(s, now, batch_id, owner=owner) for s in batch.tasks]
        )
    return batch_id, [int(i) for i in ids]


def current_user() -> str | None:
    """Who is enqueueing or submitting (recorded on batches and launches)."""
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name is not an error
        return None


def get_task(conn: Connection, task_id: int, *, scope: Scope | None = None) -> dict[str, Any]:
    """A task row in full; NotFound when absent or outside ``scope`` (the same answer)."""
    where, params = condition(scope)
    rows = conn.dicts(f"SELECT * FROM tasks WHERE id = :id AND {where}", {"id": task_id, **params})
    if not rows:
        raise NotFound(f"no task with ID {task_id}; `hpclaunch tasks` lists them")
    return rows[0]


def task_status(conn: Connection, task_id: int) -> str:
    row = conn.one("SELECT status FROM tasks WHERE id = :id", {"id": task_id})
    if row is None:
        raise NotFound(f"no task with ID {task_id}")
    return row[0]


def _like(text: str) -> str:
    """``text`` for a LIKE pattern, with its own wildcards escaped (ESCAPE '/')."""
    return text.replace("/", "//").replace("%", "/%").replace("_", "/_")


def list_tasks(
    conn: Connection,
    *,
    status: str | None = None,
    tag: str | None = None,
    batch_id: int | None = None,
    limit: int | None = None,
    after: int | None = None,
    scope: Scope | None = None,
    newest: bool = False,
) -> list[dict[str, Any]]:
    """Task summaries by ID; ``after`` (an ID) and ``limit`` page through them
    (``newest``: the last ``limit`` instead of the first, as ``tasks`` shows)."""
    visible, params = condition(scope)
    where: list[str] = [visible]
    if after is not None:
        where.append("id > :after")
        params["after"] = after
    if status:
        where.append("status = :status")
        params["status"] = str(status)
    if tag:
        where.append(
            "(tags = :tag OR tags LIKE :first ESCAPE '/' OR tags LIKE :last ESCAPE '/' "
            "OR tags LIKE :middle ESCAPE '/')"
        )
        escaped = _like(tag)
        params.update(tag=tag, first=f"{escaped},%", last=f"%,{escaped}", middle=f"%,{escaped},%")
    if batch_id is not None:
        where.append("batch_id = :batch_id")
        params["batch_id"] = batch_id
    sql = f"SELECT {SUMMARY_COLUMNS} FROM tasks WHERE " + " AND ".join(where)
    if newest and limit:
        # The newest ``limit`` (an index walk from the end), shown oldest first.
        return conn.dicts(sql + f" ORDER BY id DESC LIMIT {int(limit)}", params)[::-1]
    sql += " ORDER BY id"
    if limit:
        sql += f" LIMIT {int(limit)}"
    return conn.dicts(sql, params)


def task_and_attempts(
    conn: Connection, task_id: int
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A task in full and its attempts (``tasks show``)."""
    return get_task(conn, task_id), attempts(conn, task_id)


def attempts(conn: Connection, task_id: int) -> list[dict[str, Any]]:
    """A task's attempts, oldest first, with where each ran."""
    return conn.dicts(
        "SELECT a.*, w.host, w.scheduler, w.job_id, w.array_index, w.launch_id "
        "FROM task_attempts a LEFT JOIN workers w ON a.worker_id = w.id "
        "WHERE a.task_id = :id ORDER BY a.id",
        {"id": task_id},
    )


def list_batches(
    conn: Connection,
    *,
    scope: Scope | None = None,
    after: int | None = None,
    limit: int | None = None,
    batch_id: int | None = None,
) -> list[dict[str, Any]]:
    """Batches with task counts per status; ``after``/``limit`` page, ``batch_id`` picks one."""
    visible, params = condition(scope)
    where = [visible]
    if after is not None:
        where.append("id > :after")
        params["after"] = after
    if batch_id is not None:
        where.append("id = :batch_id")
        params["batch_id"] = batch_id
    sql = "SELECT * FROM batches WHERE " + " AND ".join(where) + " ORDER BY id"
    if limit:
        sql += f" LIMIT {int(limit)}"
    rows = conn.dicts(sql, params)
    per: dict[int, dict[str, int]] = {}
    if not rows:
        return rows
    span = {"lo": rows[0]["id"], "hi": rows[-1]["id"]}
    for batch_id_, status, n in conn.execute(
        "SELECT batch_id, status, COUNT(*) FROM tasks WHERE batch_id BETWEEN :lo AND :hi "
        "GROUP BY batch_id, status",
        span,
    ).fetchall():
        per.setdefault(batch_id_, {})[status] = n
    for row in rows:
        row["counts"] = {s.value: per.get(row["id"], {}).get(s, 0) for s in TaskStatus}
        row["spec"] = json.loads(row["spec"])
    return rows


def list_workers(
    conn: Connection,
    *,
    include_gone: bool = False,
    scope: Scope | None = None,
    after: int | None = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """Workers with what each completed and failed (counts over the caller's ``scope``)."""
    visible, params = worker_condition(scope, "w")
    where = [visible]
    if not include_gone:
        where.append("w.status = :running")
        params["running"] = WorkerStatus.RUNNING.value
    if after is not None:
        where.append("w.id > :after")
        params["after"] = after
    sql = "SELECT w.* FROM workers w WHERE " + " AND ".join(where) + " ORDER BY w.id"
    if limit:
        sql += f" LIMIT {int(limit)}"
    rows = conn.dicts(sql, params)
    per: dict[int, dict[str, int]] = {}
    tasks_sql, tparams = condition(scope, "t")
    for worker_id, outcome, n in conn.execute(
        "SELECT a.worker_id, a.outcome, COUNT(*) FROM task_attempts a "
        f"JOIN tasks t ON t.id = a.task_id WHERE {tasks_sql} GROUP BY a.worker_id, a.outcome",
        tparams,
    ).fetchall():
        per.setdefault(worker_id, {})[outcome] = n
    current = dict(
        conn.execute(
            f"SELECT t.worker_id, t.id FROM tasks t WHERE t.status = :running AND {tasks_sql}",
            {"running": TaskStatus.RUNNING.value, **tparams},
        ).fetchall()
    )
    for row in rows:
        row["completed"] = per.get(row["id"], {}).get(AttemptOutcome.COMPLETED, 0)
        row["failed"] = per.get(row["id"], {}).get(AttemptOutcome.FAILED, 0)
        row["current_task"] = current.get(row["id"])
    return rows


def stats(conn: Connection, *, scope: Scope | None = None) -> dict[str, Any]:
    """Task counts per status and tag, and running workers (within ``scope``)."""
    visible, params = condition(scope)
    rows = conn.execute(
        f"SELECT tags, status, COUNT(*) FROM tasks WHERE {visible} GROUP BY tags, status", params
    ).fetchall()
    wvisible, wparams = worker_condition(scope, "w")
    live_workers = conn.one(
        f"SELECT COUNT(*) FROM workers w WHERE w.status = :running AND {wvisible}",
        {"running": WorkerStatus.RUNNING.value, **wparams},
    )[0]
    by_status: dict[str, int] = {s.value: 0 for s in TaskStatus}
    by_tag: dict[str, dict[str, int]] = {}
    for tagset, status, n in rows:
        by_status[status] = by_status.get(status, 0) + n
        for tag in tagset.split(","):
            by_tag.setdefault(tag, {s.value: 0 for s in TaskStatus})
            by_tag[tag][status] = by_tag[tag].get(status, 0) + n
    return {
        "total": sum(by_status.values()),
        "by_status": by_status,
        "by_tag": by_tag,
        "workers_running": int(live_workers),
    }


def silent_owners(conn: Connection) -> list[dict[str, Any]]:
    """Running tasks whose owner stopped heart-beating (or is gone): why a launch
    has not finished yet. ``silent_for`` (None when the owner's row is gone) and
    ``lease_ends_in`` are seconds; ``watcher_id`` is the idle worker waiting to
    rerun the task when its lease ends (``claims.watch``), if any."""
    rows = conn.execute(
        "SELECT t.id, t.worker_id, w.host, w.launch_id, {now} - w.heartbeat_at, "
        "t.lease_expires_at - {now}, t.watcher_id FROM tasks t "
        "LEFT JOIN workers w ON w.id = t.worker_id "
        f"WHERE t.status = '{TaskStatus.RUNNING}' AND {SILENT_OWNER} ORDER BY t.id"
    ).fetchall()
    return [
        {
            "task_id": int(task_id),
            "worker_id": worker_id,
            "host": host,
            "launch_id": launch_id,
            "silent_for": None if silent is None else round(float(silent), 1),
            "lease_ends_in": None if ends is None else round(float(ends), 1),
            "watcher_id": watcher,
        }
        for task_id, worker_id, host, launch_id, silent, ends, watcher in rows
    ]
