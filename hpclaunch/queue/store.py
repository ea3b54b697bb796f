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
from hpclaunch.states import AttemptOutcome, TaskStatus, WorkerStatus

SUMMARY_COLUMNS = (
    "id, name, kind, status, tags, priority, attempts, max_attempts, batch_id, worker_id, "
    "exit_code, reason, created_at, started_at, finished_at"
)
_INSERT_TASK = (
    "INSERT INTO tasks (batch_id, name, kind, payload, pickled, tags, priority, "
    "max_attempts, attempts, timeout, expected_runtime, status, created_at) VALUES "
    "(:batch_id, :name, :kind, :payload, :pickled, :tags, :priority, :max_attempts, 0, "
    ":timeout, :expected_runtime, :status, :created_at) RETURNING id"
)


def _row(
    spec: TaskSpec, now: float, batch_id: int | None = None, pickled: bytes | None = None
) -> dict[str, Any]:
    return {
        "batch_id": batch_id,
        "name": spec.name,
        "kind": spec.kind,
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
    conn: Connection, specs: Sequence[TaskSpec], *, pickled: bytes | None = None
) -> list[int]:
    """Insert tasks in one transaction; returns their IDs in order."""
    now = time.time()
    with conn.transaction():
        ids = conn.many_returning(_INSERT_TASK, [_row(s, now, pickled=pickled) for s in specs])
    return [int(i) for i in ids]


def insert_batch(conn: Connection, batch: Batch) -> tuple[int, list[int]]:
    """A batch and all its tasks, in one transaction: all or nothing."""
    now = time.time()
    with conn.transaction():
        batch_id = int(
            conn.one(
                "INSERT INTO batches (name, created_at, created_by, spec, n_tasks) "
                "VALUES (:name, :created_at, :created_by, :spec, :n_tasks) RETURNING id",
                {
                    "name": batch.name,
                    "created_at": now,
                    "created_by": current_user(),
                    "spec": json.dumps(batch.spec, default=str),
                    "n_tasks": len(batch.tasks),
                },
            )[0]
        )
        ids = conn.many_returning(_INSERT_TASK, [_row(s, now, batch_id) for s in batch.tasks])
    return batch_id, [int(i) for i in ids]


def current_user() -> str | None:
    """Who is enqueueing or submitting (recorded on batches and launches)."""
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name is not an error
        return None


def get_task(conn: Connection, task_id: int) -> dict[str, Any]:
    rows = conn.dicts("SELECT * FROM tasks WHERE id = :id", {"id": task_id})
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
) -> list[dict[str, Any]]:
    where: list[str] = []
    params: dict[str, Any] = {}
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
    sql = f"SELECT {SUMMARY_COLUMNS} FROM tasks"
    if where:
        sql += " WHERE " + " AND ".join(where)
    if not limit:
        return conn.dicts(sql + " ORDER BY id", params)
    # The newest ``limit`` (an index walk from the end), shown oldest first.
    return conn.dicts(sql + f" ORDER BY id DESC LIMIT {int(limit)}", params)[::-1]


def attempts(conn: Connection, task_id: int) -> list[dict[str, Any]]:
    """A task's attempts, oldest first, with where each ran."""
    return conn.dicts(
        "SELECT a.*, w.host, w.scheduler, w.job_id, w.array_index, w.launch_id "
        "FROM task_attempts a LEFT JOIN workers w ON a.worker_id = w.id "
        "WHERE a.task_id = :id ORDER BY a.id",
        {"id": task_id},
    )


def list_batches(conn: Connection) -> list[dict[str, Any]]:
    rows = conn.dicts("SELECT * FROM batches ORDER BY id")
    per: dict[int, dict[str, int]] = {}
    for batch_id, status, n in conn.execute(
        "SELECT batch_id, status, COUNT(*) FROM tasks WHERE batch_id IS NOT NULL "
        "GROUP BY batch_id, status"
    ).fetchall():
        per.setdefault(batch_id, {})[status] = n
    for row in rows:
        row["counts"] = {s.value: per.get(row["id"], {}).get(s, 0) for s in TaskStatus}
        row["spec"] = json.loads(row["spec"])
    return rows


def list_workers(conn: Connection, *, include_gone: bool = False) -> list[dict[str, Any]]:
    sql = "SELECT * FROM workers"
    if not include_gone:
        sql += " WHERE status = :running"
    rows = conn.dicts(sql + " ORDER BY id", {"running": WorkerStatus.RUNNING.value})
    per: dict[int, dict[str, int]] = {}
    for worker_id, outcome, n in conn.execute(
        "SELECT worker_id, outcome, COUNT(*) FROM task_attempts GROUP BY worker_id, outcome"
    ).fetchall():
        per.setdefault(worker_id, {})[outcome] = n
    current = dict(
        conn.execute(
            "SELECT worker_id, id FROM tasks WHERE status = :running",
            {"running": TaskStatus.RUNNING.value},
        ).fetchall()
    )
    for row in rows:
        row["completed"] = per.get(row["id"], {}).get(AttemptOutcome.COMPLETED, 0)
        row["failed"] = per.get(row["id"], {}).get(AttemptOutcome.FAILED, 0)
        row["current_task"] = current.get(row["id"])
    return rows


def stats(conn: Connection) -> dict[str, Any]:
    rows = conn.execute("SELECT tags, status, COUNT(*) FROM tasks GROUP BY tags, status").fetchall()
    live_workers = conn.one(
        "SELECT COUNT(*) FROM workers WHERE status = :running",
        {"running": WorkerStatus.RUNNING.value},
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
