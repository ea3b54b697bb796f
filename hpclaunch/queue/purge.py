"""Purge: delete finished tasks, their attempts and their local log folders.

Finished work would otherwise pile up forever. Deletes run in bounded
transactions (``PAGE`` tasks each) and are fenced: the ``DELETE`` itself re-checks
that the task is finished and that its batch has no pending or running task, so a
task retried or a batch revived meanwhile is never touched. A log folder is removed
only if it is a real directory named after its task (what the worker creates).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hpclaunch.errors import UserError
from hpclaunch.queue.driver import Connection, in_list
from hpclaunch.queue.results import batch_info, progress
from hpclaunch.states import FINISHED_TASK_STATUSES, TaskStatus

PAGE = 500
DAY = 86400.0
_LIVE = f"('{TaskStatus.PENDING}', '{TaskStatus.RUNNING}')"


@dataclass
class Purged:
    """What a purge removed (or, dry, would remove)."""

    tasks: int = 0
    attempts: int = 0
    batches: int = 0
    log_dirs: int = 0
    bytes: int = 0
    failed_dirs: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Filter:
    """Which finished tasks to purge; ``where()`` is the fence every statement uses."""

    statuses: tuple[str, ...]
    older_than_days: float | None = None
    batch_id: int | None = None

    def __post_init__(self) -> None:
        finished = {s.value for s in FINISHED_TASK_STATUSES}
        bad = [s for s in self.statuses if s not in finished]
        if bad or not self.statuses:
            raise UserError(
                f"purge removes only finished tasks; --status takes "
                f"{', '.join(sorted(finished))} (got {', '.join(bad) or 'nothing'})"
            )

    def where(self) -> tuple[str, dict[str, Any]]:
        status_in, params = in_list("s", self.statuses)
        clauses = [
            f"tasks.status IN {status_in}",
            "(tasks.batch_id IS NULL OR NOT EXISTS (SELECT 1 FROM tasks live WHERE "
            f"live.batch_id = tasks.batch_id AND live.status IN {_LIVE}))",
        ]
        if self.older_than_days is not None:
            clauses.append("COALESCE(tasks.finished_at, tasks.created_at) < {now} - :age")
            params["age"] = self.older_than_days * DAY
        if self.batch_id is not None:
            clauses.append("tasks.batch_id = :batch")
            params["batch"] = self.batch_id
        return " AND ".join(clauses), params


def check_batch(conn: Connection, batch_id: int) -> None:
    """Refuse a batch that does not exist or still has live tasks."""
    batch_info(conn, batch_id)
    counts = progress(conn, batch_id)
    live = counts[TaskStatus.PENDING] + counts[TaskStatus.RUNNING]
    if live:
        raise UserError(
            f"batch {batch_id} still has {live} pending or running task(s); nothing purged "
            f"(wait for it: `hpclaunch batches wait {batch_id}`)"
        )


def survey(conn: Connection, flt: Filter, after: int, limit: int = PAGE) -> list[tuple]:
    """One page of what would be purged: (id, log_dir, attempts rows, batch_id)."""
    where, params = flt.where()
    return conn.execute(
        "SELECT tasks.id, tasks.log_dir, (SELECT COUNT(*) FROM task_attempts a "
        "WHERE a.task_id = tasks.id), tasks.batch_id FROM tasks "
        f"WHERE {where} AND tasks.id > :after ORDER BY tasks.id LIMIT {int(limit)}",
        {**params, "after": after},
    ).fetchall()


def delete_page(conn: Connection, flt: Filter, after: int, limit: int = PAGE) -> tuple[int, list]:
    """Delete one page in one transaction; returns (last id seen, deleted rows).

    The rows are locked first (PostgreSQL; SQLite's write lock covers it), then
    their attempts and the tasks are deleted under the same fence.
    """
    where, params = flt.where()
    with conn.transaction():
        picked = conn.execute(
            f"SELECT tasks.id FROM tasks WHERE {where} AND tasks.id > :after "
            f"ORDER BY tasks.id LIMIT {int(limit)}" + conn.lock_suffix(),
            {**params, "after": after},
        ).fetchall()
        if not picked:
            return 0, []
        ids, id_params = in_list("i", [int(r[0]) for r in picked])
        fenced = {**params, **id_params}
        attempts = conn.execute(
            f"DELETE FROM task_attempts WHERE task_id IN (SELECT tasks.id FROM tasks "
            f"WHERE tasks.id IN {ids} AND {where})",
            fenced,
        ).rowcount
        deleted = conn.execute(
            f"DELETE FROM tasks WHERE tasks.id IN {ids} AND {where} "
            "RETURNING id, log_dir, batch_id",
            fenced,
        ).fetchall()
        batches = {int(b) for _, _, b in deleted if b is not None}
        emptied = 0
        if batches:
            b_in, b_params = in_list("b", sorted(batches))
            emptied = conn.execute(
                f"DELETE FROM batches WHERE id IN {b_in} AND NOT EXISTS "
                "(SELECT 1 FROM tasks WHERE tasks.batch_id = batches.id)",
                b_params,
            ).rowcount
    return int(picked[-1][0]), [(deleted, max(attempts, 0), max(emptied, 0))]


def run(conn: Connection, flt: Filter, *, dry_run: bool, call=None, page: int = PAGE) -> Purged:
    """Purge (or, with ``dry_run``, count) page by page; ``call`` retries each page."""
    step = call or (lambda c, fn, *a, **k: fn(c, *a, **k))
    if flt.batch_id is not None:
        step(conn, check_batch, flt.batch_id)
    out = Purged()
    after = 0
    while True:
        if dry_run:
            rows = step(conn, survey, flt, after, page)
            if not rows:
                return out
            after = int(rows[-1][0])
            out.tasks += len(rows)
            out.attempts += sum(int(r[2]) for r in rows)
            for task_id, log_dir, _, _ in rows:
                _measure(out, task_id, log_dir)
            continue
        last, result = step(conn, delete_page, flt, after, page)
        if not last:
            return out
        after = last
        for deleted, attempts, emptied in result:
            out.tasks += len(deleted)
            out.attempts += attempts
            out.batches += emptied
            for task_id, log_dir, _ in deleted:
                size = _measure(out, task_id, log_dir)
                if size is not None:
                    try:
                        shutil.rmtree(log_dir)
                    except OSError:
                        out.failed_dirs.append(log_dir)


def task_log_dir(task_id: Any, log_dir: str | None) -> Path | None:
    """The task's own log folder on this machine, or None (elsewhere, gone, or not its own)."""
    if not log_dir:
        return None
    path = Path(log_dir)
    if path.name != str(task_id) or path.is_symlink() or not path.is_dir():
        return None
    return path


def _measure(out: Purged, task_id: Any, log_dir: str | None) -> int | None:
    path = task_log_dir(task_id, log_dir)
    if path is None:
        return None
    size = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                size += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    out.log_dirs += 1
    out.bytes += size
    return size
