"""The dashboard's reads about the machinery: workers, launches, runtimes.

Bounded like ``queue.dashboard``: pages of at most a few hundred rows, per-row
facts fetched for that page only (``IN`` over its IDs, through indexes).
Workers and launches are scoped as the API scopes them (``queue.scope``): a
user sees the workers that hold or ran a task of its reach and the launches it
submitted; an admin (``scope=None``) sees all.
"""

from __future__ import annotations

from typing import Any

from hpclaunch.errors import NotFound
from hpclaunch.queue.driver import Connection, in_list
from hpclaunch.queue.estimates import RECENT, p95
from hpclaunch.queue.scope import Scope, launch_condition, worker_condition
from hpclaunch.states import AttemptOutcome, TaskStatus, WorkerStatus

WORKERS_PAGE = 100
LAUNCHES_PAGE = 100
ELEMENTS_LIMIT = 1000
TIMELINE_WORKERS = 200
TIMELINE_ATTEMPTS = 5000
RUNTIME_SAMPLES = 5000
_WORKER_COLUMNS = (
    "id, host, pid, tags, mode, status, started_at, heartbeat_at, stopped_at, exit_reason, "
    "exit_detail, lease, scheduler, job_id, array_job_id, array_index, launch_id"
)


def workers(
    conn: Connection,
    scope: Scope | None,
    *,
    show: str = "live",
    before: int | None = None,
    limit: int = WORKERS_PAGE,
) -> dict[str, Any]:
    """One page of workers in ``scope``, newest first: ``live`` (running), ``gone``
    or ``all``; each with the task it runs now; and how many are live and gone."""
    visible, visible_params = worker_condition(scope, "w")
    where = f"WHERE {visible}"
    params: dict[str, Any] = {"running": WorkerStatus.RUNNING.value, **visible_params}
    if show == "live":
        where += " AND status = :running"
    elif show == "gone":
        where += " AND status <> :running"
    if before is not None:
        where += " AND id < :before"
        params["before"] = before
    rows = conn.dicts(
        f"SELECT {_WORKER_COLUMNS} FROM workers w {where} ORDER BY id DESC LIMIT {int(limit) + 1}",
        params,
    )
    more = len(rows) > limit
    rows = rows[:limit]
    ids_sql, ids = in_list("w", [r["id"] for r in rows])
    current = dict(
        conn.execute(
            f"SELECT worker_id, id FROM tasks WHERE worker_id IN {ids_sql} AND status = :running",
            {**ids, "running": TaskStatus.RUNNING.value},
        ).fetchall()
        if ids
        else []
    )
    for row in rows:
        row["current_task"] = current.get(row["id"])
    counts = dict(
        conn.execute(
            "SELECT CASE WHEN status = :running THEN 'live' ELSE 'gone' END, COUNT(*) "
            f"FROM workers w WHERE {visible} GROUP BY 1",
            {"running": WorkerStatus.RUNNING.value, **visible_params},
        ).fetchall()
    )
    return {
        "rows": rows,
        "next": rows[-1]["id"] if more else None,
        "live": int(counts.get("live", 0)),
        "gone": int(counts.get("gone", 0)),
    }


def launches(
    conn: Connection, scope: Scope | None, *, limit: int = LAUNCHES_PAGE
) -> list[dict[str, Any]]:
    """The newest launches in ``scope`` with their chunks' job IDs, element states and
    live workers."""
    visible, params = launch_condition(scope)
    rows = conn.dicts(
        "SELECT id, site, host, scheduler, workers, tags, status, submitted_at, submitted_by, "
        f"broken_reason, canceled_at FROM launches WHERE {visible} "
        f"ORDER BY submitted_at DESC LIMIT {int(limit)}",
        params,
    )
    ids_sql, ids = in_list("l", [r["id"] for r in rows])
    if not ids:
        return rows
    jobs: dict[str, list[dict[str, Any]]] = {}
    for job in conn.dicts(
        "SELECT launch_id, chunk, job_id, elements FROM launch_jobs "
        f"WHERE launch_id IN {ids_sql} ORDER BY launch_id, chunk",
        ids,
    ):
        jobs.setdefault(job["launch_id"], []).append(job)
    states: dict[str, dict[str, int]] = {}
    for launch_id, state, n in conn.execute(
        "SELECT launch_id, state, COUNT(*) FROM launch_elements "
        f"WHERE launch_id IN {ids_sql} GROUP BY launch_id, state",
        ids,
    ).fetchall():
        states.setdefault(launch_id, {})[state] = int(n)
    running = dict(
        conn.execute(
            f"SELECT launch_id, COUNT(*) FROM workers WHERE launch_id IN {ids_sql} "
            "AND status = :running GROUP BY launch_id",
            {**ids, "running": WorkerStatus.RUNNING.value},
        ).fetchall()
    )
    for row in rows:
        row["jobs"] = jobs.get(row["id"], [])
        row["element_states"] = dict(sorted(states.get(row["id"], {}).items()))
        row["running_workers"] = int(running.get(row["id"], 0))
    return rows


def launch(conn: Connection, launch_id: str, scope: Scope | None) -> dict[str, Any]:
    """One launch in ``scope``: its row, chunks with scripts, element verdicts, and its
    workers with their attempts (the timeline), all bounded."""
    visible, params = launch_condition(scope)
    rows = conn.dicts(
        f"SELECT * FROM launches WHERE id = :id AND {visible}", {"id": launch_id, **params}
    )
    if not rows:
        raise NotFound(f"no launch {launch_id!r}")
    row = rows[0]
    row["jobs"] = conn.dicts(
        "SELECT chunk, job_name, job_id, elements, workers_per_element, script, script_path, "
        "submitted_at FROM launch_jobs WHERE launch_id = :id ORDER BY chunk",
        {"id": launch_id},
    )
    row["elements"] = conn.dicts(
        "SELECT job_id, array_index, state, reason, exit_code, seen_at, settled "
        "FROM launch_elements WHERE launch_id = :id ORDER BY job_id, array_index "
        f"LIMIT {ELEMENTS_LIMIT}",
        {"id": launch_id},
    )
    workers_rows = conn.dicts(
        f"SELECT {_WORKER_COLUMNS} FROM workers WHERE launch_id = :id ORDER BY id "
        f"LIMIT {TIMELINE_WORKERS}",
        {"id": launch_id},
    )
    ids_sql, ids = in_list("w", [w["id"] for w in workers_rows])
    spans: dict[int, list[dict[str, Any]]] = {}
    if ids:
        for worker_id, task_id, started, finished, outcome in conn.execute(
            "SELECT worker_id, task_id, started_at, finished_at, outcome FROM task_attempts "
            f"WHERE worker_id IN {ids_sql} ORDER BY id LIMIT {TIMELINE_ATTEMPTS}",
            ids,
        ).fetchall():
            spans.setdefault(worker_id, []).append(
                {"task": task_id, "start": started, "end": finished, "outcome": outcome}
            )
        for worker_id, task_id, started in conn.execute(
            f"SELECT worker_id, id, started_at FROM tasks WHERE worker_id IN {ids_sql} "
            "AND status = :running",
            {**ids, "running": TaskStatus.RUNNING.value},
        ).fetchall():
            spans.setdefault(worker_id, []).append(
                {"task": task_id, "start": started, "end": None, "outcome": "running"}
            )
    for worker in workers_rows:
        worker["spans"] = spans.get(worker["id"], [])
    row["workers_rows"] = workers_rows
    return row


def runtimes(conn: Connection, group: str | None) -> list[dict[str, Any]]:
    """Per tag set: the recent completed runtimes (seconds, newest first) and their
    p95 over the ``RECENT`` newest, as deadline-aware claiming computes it."""
    scope, params = ("", {}) if group is None else (" AND t.owner_group = :grp", {"grp": group})
    per: dict[str, list[float]] = {}
    for tags, seconds in conn.execute(
        "SELECT t.tags, a.finished_at - a.started_at FROM task_attempts a "
        "JOIN tasks t ON t.id = a.task_id WHERE a.outcome = :completed "
        f"AND a.started_at IS NOT NULL{scope} ORDER BY a.id DESC LIMIT {RUNTIME_SAMPLES}",
        {**params, "completed": AttemptOutcome.COMPLETED.value},
    ).fetchall():
        per.setdefault(tags, []).append(max(float(seconds), 0.0))
    return [
        {"tags": tags, "samples": values, "p95": p95(values[:RECENT])}
        for tags, values in sorted(per.items())
    ]
