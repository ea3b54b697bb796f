"""Queue operations for the CLI and the Python API (SQLAlchemy Core).

The worker's own statements live in ``queue.claims``; everything a person or a
script does to the queue lives here.
"""

from __future__ import annotations

import getpass
import json
import time
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import and_, func, insert, or_, select, update
from sqlalchemy.engine import Engine

from hpclaunch.errors import NotFound, UserError
from hpclaunch.queue.batches import Batch, TaskSpec
from hpclaunch.queue.schema import batches, task_attempts, tasks, workers

STATUSES = ("pending", "running", "completed", "failed", "canceled")
SUMMARY_COLUMNS = [
    tasks.c.id,
    tasks.c.name,
    tasks.c.kind,
    tasks.c.status,
    tasks.c.tags,
    tasks.c.priority,
    tasks.c.attempts,
    tasks.c.max_attempts,
    tasks.c.batch_id,
    tasks.c.worker_id,
    tasks.c.exit_code,
    tasks.c.reason,
    tasks.c.created_at,
    tasks.c.started_at,
    tasks.c.finished_at,
]


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
        "attempts": 0,
        "timeout": spec.timeout,
        "expected_runtime": spec.expected_runtime,
        "status": "pending",
        "created_at": now,
    }


def insert_tasks(
    engine: Engine, specs: Sequence[TaskSpec], *, pickled: bytes | None = None
) -> list[int]:
    """Insert tasks in one transaction; returns their IDs in order."""
    now = time.time()
    rows = [_row(s, now, pickled=pickled) for s in specs]
    with engine.begin() as conn:
        result = conn.execute(
            insert(tasks).returning(tasks.c.id, sort_by_parameter_order=True), rows
        )
        return [r[0] for r in result]


def insert_batch(engine: Engine, batch: Batch) -> tuple[int, list[int]]:
    """A batch and all its tasks, in one transaction: all or nothing."""
    now = time.time()
    with engine.begin() as conn:
        batch_id = conn.execute(
            insert(batches).returning(batches.c.id),
            {
                "name": batch.name,
                "created_at": now,
                "created_by": current_user(),
                "spec": json.dumps(batch.spec, default=str),
                "n_tasks": len(batch.tasks),
            },
        ).scalar_one()
        result = conn.execute(
            insert(tasks).returning(tasks.c.id, sort_by_parameter_order=True),
            [_row(s, now, batch_id) for s in batch.tasks],
        )
        return batch_id, [r[0] for r in result]


def current_user() -> str | None:
    """Who is enqueueing or submitting (recorded on batches and launches)."""
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name is not an error
        return None


def get_task(engine: Engine, task_id: int) -> dict[str, Any]:
    with engine.connect() as conn:
        row = conn.execute(select(tasks).where(tasks.c.id == task_id)).mappings().first()
    if row is None:
        raise NotFound(f"no task with ID {task_id}; `hpclaunch tasks` lists them")
    return dict(row)


def task_status(engine: Engine, task_id: int) -> str:
    with engine.connect() as conn:
        status = conn.execute(select(tasks.c.status).where(tasks.c.id == task_id)).scalar()
    if status is None:
        raise NotFound(f"no task with ID {task_id}")
    return status


def list_tasks(
    engine: Engine,
    *,
    status: str | None = None,
    tag: str | None = None,
    batch_id: int | None = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    query = select(*SUMMARY_COLUMNS).order_by(tasks.c.id)
    if status:
        query = query.where(tasks.c.status == status)
    if tag:
        query = query.where(
            or_(
                tasks.c.tags == tag,
                tasks.c.tags.startswith(f"{tag},", autoescape=True),
                tasks.c.tags.endswith(f",{tag}", autoescape=True),
                tasks.c.tags.contains(f",{tag},", autoescape=True),
            )
        )
    if batch_id is not None:
        query = query.where(tasks.c.batch_id == batch_id)
    if limit:
        query = query.limit(limit)
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(query).mappings()]


def attempts(engine: Engine, task_id: int) -> list[dict[str, Any]]:
    query = (
        select(
            task_attempts,
            workers.c.host,
            workers.c.scheduler,
            workers.c.job_id,
            workers.c.array_index,
            workers.c.launch_id,
        )
        .select_from(task_attempts.outerjoin(workers, task_attempts.c.worker_id == workers.c.id))
        .where(task_attempts.c.task_id == task_id)
        .order_by(task_attempts.c.id)
    )
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(query).mappings()]


def retry(engine: Engine, task_ids: Iterable[int] = (), *, all_failed: bool = False) -> list[int]:
    """Put failed or canceled tasks back on the queue with a fresh attempt budget."""
    ids = list(task_ids)
    with engine.begin() as conn:
        if ids:
            found = dict(
                conn.execute(select(tasks.c.id, tasks.c.status).where(tasks.c.id.in_(ids))).all()
            )
            missing = [i for i in ids if i not in found]
            if missing:
                raise NotFound(f"no task with ID {missing[0]}")
            busy = [i for i in ids if found[i] not in ("failed", "canceled")]
            if busy:
                raise UserError(
                    f"task {busy[0]} is {found[busy[0]]}; only failed or canceled "
                    "tasks can be retried"
                )
            where = tasks.c.id.in_(ids)
        elif all_failed:
            where = tasks.c.status == "failed"
        else:
            raise UserError("name task IDs or pass --failed")
        retried = [r[0] for r in conn.execute(select(tasks.c.id).where(where))]
        conn.execute(
            update(tasks)
            .where(where)
            .values(
                status="pending",
                attempts=0,
                worker_id=None,
                claim_token=None,
                lease_expires_at=None,
                started_at=None,
                finished_at=None,
                reason="retried",
            )
        )
    return retried


def cancel(
    engine: Engine, task_ids: Iterable[int] = (), *, batch_id: int | None = None
) -> list[int]:
    """Cancel pending and running tasks (a running one's worker stops it)."""
    ids = list(task_ids)
    now = time.time()
    with engine.begin() as conn:
        if batch_id is not None:
            if conn.execute(select(batches.c.id).where(batches.c.id == batch_id)).first() is None:
                raise NotFound(f"no batch with ID {batch_id}; `hpclaunch batches` lists them")
            where = tasks.c.batch_id == batch_id
            conn.execute(update(batches).where(batches.c.id == batch_id).values(canceled_at=now))
        elif ids:
            found = {r[0] for r in conn.execute(select(tasks.c.id).where(tasks.c.id.in_(ids)))}
            missing = [i for i in ids if i not in found]
            if missing:
                raise NotFound(f"no task with ID {missing[0]}")
            where = tasks.c.id.in_(ids)
        else:
            raise UserError("name task IDs or pass --batch")
        live = and_(where, tasks.c.status.in_(("pending", "running")))
        running = conn.execute(
            select(tasks.c.id, tasks.c.attempts, tasks.c.worker_id, tasks.c.started_at).where(
                and_(where, tasks.c.status == "running")
            )
        ).all()
        canceled = [r[0] for r in conn.execute(select(tasks.c.id).where(live))]
        conn.execute(
            update(tasks)
            .where(live)
            .values(
                status="canceled",
                claim_token=None,
                lease_expires_at=None,
                finished_at=now,
                reason="canceled",
            )
        )
        if running:
            conn.execute(
                insert(task_attempts),
                [
                    {
                        "task_id": r.id,
                        "attempt": r.attempts,
                        "worker_id": r.worker_id,
                        "started_at": r.started_at,
                        "finished_at": now,
                        "outcome": "canceled",
                        "reason": "canceled",
                        "exit_code": None,
                        "error": None,
                    }
                    for r in running
                ],
            )
    return canceled


def list_batches(engine: Engine) -> list[dict[str, Any]]:
    counts = (
        select(tasks.c.batch_id, tasks.c.status, func.count().label("n"))
        .where(tasks.c.batch_id.is_not(None))
        .group_by(tasks.c.batch_id, tasks.c.status)
    )
    with engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(select(batches).order_by(batches.c.id)).mappings()]
        per = {}
        for batch_id, status, n in conn.execute(counts):
            per.setdefault(batch_id, {})[status] = n
    for row in rows:
        row["counts"] = {s: per.get(row["id"], {}).get(s, 0) for s in STATUSES}
        row["spec"] = json.loads(row["spec"])
    return rows


def list_workers(engine: Engine, *, include_gone: bool = False) -> list[dict[str, Any]]:
    done = select(
        task_attempts.c.worker_id, task_attempts.c.outcome, func.count().label("n")
    ).group_by(task_attempts.c.worker_id, task_attempts.c.outcome)
    query = select(workers).order_by(workers.c.id)
    if not include_gone:
        query = query.where(workers.c.status == "running")
    with engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(query).mappings()]
        per: dict[int, dict[str, int]] = {}
        for worker_id, outcome, n in conn.execute(done):
            per.setdefault(worker_id, {})[outcome] = n
        current = dict(
            conn.execute(
                select(tasks.c.worker_id, tasks.c.id).where(tasks.c.status == "running")
            ).all()
        )
    for row in rows:
        row["completed"] = per.get(row["id"], {}).get("completed", 0)
        row["failed"] = per.get(row["id"], {}).get("failed", 0)
        row["current_task"] = current.get(row["id"])
    return rows


def stats(engine: Engine) -> dict[str, Any]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(tasks.c.tags, tasks.c.status, func.count()).group_by(
                tasks.c.tags, tasks.c.status
            )
        ).all()
        live_workers = conn.execute(
            select(func.count()).select_from(workers).where(workers.c.status == "running")
        ).scalar_one()
    by_status = dict.fromkeys(STATUSES, 0)
    by_tag: dict[str, dict[str, int]] = {}
    for tagset, status, n in rows:
        by_status[status] = by_status.get(status, 0) + n
        for tag in tagset.split(","):
            by_tag.setdefault(tag, dict.fromkeys(STATUSES, 0))
            by_tag[tag][status] = by_tag[tag].get(status, 0) + n
    return {
        "total": sum(by_status.values()),
        "by_status": by_status,
        "by_tag": by_tag,
        "workers_running": live_workers,
    }
