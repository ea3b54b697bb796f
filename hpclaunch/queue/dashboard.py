"""The dashboard's reads about work: overview counts, batches, task tables, one task.

Every read is bounded (aggregates, ``LIMIT``, keyset pages on ``id``, indexes of
migration 0007), so no page reads all tasks however large the queue is. ``group``
scopes a read to one group's rows; ``None`` (an admin) sees every group.
Workers, launches and runtimes are in ``queue.dashboard_infra``.
"""

from __future__ import annotations

import json
from typing import Any

from hpclaunch.errors import NotFound
from hpclaunch.queue import results
from hpclaunch.queue.driver import Connection, in_list
from hpclaunch.queue.scope import Scope, launch_condition, worker_condition
from hpclaunch.queue.store import _like, attempts
from hpclaunch.states import FAILURE_JOB_STATES, TaskStatus

PAGE = 50
MAX_PAGE = 200
CHART_MINUTES = 180
TEXT_LIMIT = 20_000  # characters of a result or payload shown on a page
ATTENTION = ("broken", "partial", "failed")
_FAILING = tuple(sorted(s.value for s in FAILURE_JOB_STATES))


def _scope(group: str | None, column: str = "owner_group") -> tuple[str, dict[str, Any]]:
    """`` AND <column> = :grp`` for a user, nothing for an admin."""
    if group is None:
        return "", {}
    return f" AND {column} = :grp", {"grp": group}


def overview(
    conn: Connection, group: str | None, now: float, reach: Scope | None = None
) -> dict[str, Any]:
    """Counts per status and tag, tasks finished per minute (``group``'s tasks), workers
    per site and launches that need attention (those in ``reach``, as the API scopes
    them; ``None``: an admin's view)."""
    scope, params = _scope(group)
    by_status = {s.value: 0 for s in TaskStatus}
    by_tag: dict[str, dict[str, int]] = {}
    # SQLite: grouped in the order of ix_tasks_group_tags (group, tags, status), the
    # counts stream from the index with no sort; PostgreSQL hashes (tags, status).
    group_by = "tags, status" if conn.dialect == "postgresql" else "owner_group, tags, status"
    for tagset, status, n in conn.execute(
        f"SELECT tags, status, COUNT(*) FROM tasks WHERE 1 = 1{scope} GROUP BY {group_by}",
        params,
    ).fetchall():
        by_status[status] = by_status.get(status, 0) + int(n)
        for tag in tagset.split(","):
            counts = by_tag.setdefault(tag, {s.value: 0 for s in TaskStatus})
            counts[status] = counts.get(status, 0) + int(n)
    since = (int(now // 60) - CHART_MINUTES + 1) * 60.0
    per_minute = [{"completed": 0, "failed": 0} for _ in range(CHART_MINUTES)]
    for m, completed, failed in conn.execute(
        per_minute_sql(scope, conn.dialect), {**params, "since": since, "last": CHART_MINUTES - 1}
    ).fetchall():
        if 0 <= int(m) < CHART_MINUTES:
            per_minute[int(m)] = {"completed": int(completed), "failed": int(failed)}
    visible, visible_params = worker_condition(reach, "w")
    sites = conn.execute(
        "SELECT COALESCE(l.site, ''), COUNT(*) FROM workers w "
        f"LEFT JOIN launches l ON l.id = w.launch_id WHERE w.status = 'running' AND {visible} "
        "GROUP BY l.site ORDER BY 2 DESC",
        visible_params,
    ).fetchall()
    return {
        "by_status": by_status,
        "by_tag": dict(sorted(by_tag.items())),
        "per_minute": per_minute,
        "chart_start": since,
        "sites": [{"site": s or None, "running": int(n)} for s, n in sites],
        "attention": attention(conn, reach),
    }


def per_minute_sql(scope: str, dialect: str) -> str:
    """Finished tasks per minute since ``:since`` as (minute, completed, failed) rows.

    SQLite: one range count per minute and status on ``ix_tasks_finished``
    (finished_at, status, group), no sort of the window's rows (about 4 times faster
    than grouping them). PostgreSQL groups the window's rows in one pass (hash
    aggregate), faster there than 360 small index scans.
    """
    if dialect == "postgresql":
        done = (TaskStatus.COMPLETED, TaskStatus.FAILED)
        return (
            "SELECT CAST(FLOOR((finished_at - :since) / 60) AS INTEGER) AS m, "
            f"COUNT(*) FILTER (WHERE status = '{done[0]}'), "
            f"COUNT(*) FILTER (WHERE status = '{done[1]}') FROM tasks "
            f"WHERE finished_at >= :since AND status IN ('{done[0]}', '{done[1]}'){scope} "
            "GROUP BY 1"
        )
    count = (
        "(SELECT COUNT(*) FROM tasks WHERE finished_at >= :since + m * 60 "
        "AND finished_at < :since + (m + 1) * 60 AND status = '{status}'" + scope + ")"
    )
    return (
        "WITH RECURSIVE minutes(m) AS (SELECT 0 UNION ALL SELECT m + 1 FROM minutes "
        f"WHERE m < :last) SELECT m, {count.format(status=TaskStatus.COMPLETED)}, "
        f"{count.format(status=TaskStatus.FAILED)} FROM minutes"
    )


def attention(conn: Connection, reach: Scope | None, limit: int = 8) -> dict[str, Any]:
    """Launches in ``reach`` that are broken, partial or failed, or have elements that
    ended badly and were not yet acted on: the first ``limit`` (broken first, then
    newest) and how many there are."""
    states_sql, states = in_list("s", _FAILING)
    kinds_sql, kinds = in_list("k", ATTENTION)
    failing = dict(
        conn.execute(
            "SELECT launch_id, COUNT(*) FROM launch_elements "
            f"WHERE state IN {states_sql} AND settled = 0 GROUP BY launch_id",
            states,
        ).fetchall()
    )
    ids_sql, ids = in_list("l", list(failing))
    mine, mine_params = launch_condition(reach)
    where = f"WHERE (status IN {kinds_sql} OR id IN {ids_sql}) AND {mine}"
    params = {**kinds, **ids, **mine_params}
    total = int(conn.one(f"SELECT COUNT(*) FROM launches {where}", params)[0])
    rows = conn.dicts(
        f"SELECT id, site, status, submitted_at, broken_reason FROM launches {where} "
        "ORDER BY CASE WHEN status = 'broken' THEN 0 ELSE 1 END, submitted_at DESC "
        f"LIMIT {int(limit)}",
        params,
    )
    for row in rows:
        row["failing_elements"] = int(failing.get(row["id"], 0))
    return {"rows": rows, "total": total}


def batches(
    conn: Connection,
    group: str | None,
    *,
    name: str | None = None,
    show: str = "all",
    before: int | None = None,
    limit: int = PAGE,
) -> dict[str, Any]:
    """One page of batches, newest first, each with its counts per status.

    ``show``: ``all``, ``active`` (pending or running tasks, not canceled) or
    ``canceled``; ``before``: the keyset cursor (batch IDs below it).
    """
    scope, params = _scope(group, "b.owner_group")
    where = f"WHERE 1 = 1{scope}"
    if name:
        where += " AND b.name LIKE :name ESCAPE '/'"
        params["name"] = f"%{_like(name)}%"
    if show == "canceled":
        where += " AND b.canceled_at IS NOT NULL"
    elif show == "active":
        where += (
            " AND b.canceled_at IS NULL AND EXISTS (SELECT 1 FROM tasks t WHERE "
            f"t.batch_id = b.id AND t.status IN ('{TaskStatus.PENDING}', '{TaskStatus.RUNNING}'))"
        )
    if before is not None:
        where += " AND b.id < :before"
        params["before"] = before
    limit = max(1, min(limit, MAX_PAGE))
    rows = conn.dicts(
        "SELECT b.id, b.name, b.created_at, b.owner, b.owner_group, b.n_tasks, b.canceled_at "
        f"FROM batches b {where} ORDER BY b.id DESC LIMIT {limit + 1}",
        params,
    )
    more = len(rows) > limit
    rows = rows[:limit]
    counts = batch_counts(conn, [r["id"] for r in rows])
    for row in rows:
        row["counts"] = counts.get(row["id"], {s.value: 0 for s in TaskStatus})
    return {"rows": rows, "next": rows[-1]["id"] if more else None}


def batch_counts(conn: Connection, batch_ids: list[int]) -> dict[int, dict[str, int]]:
    """Counts per status for these batches (the ``ix_tasks_batch_status`` index)."""
    if not batch_ids:
        return {}
    ids_sql, params = in_list("b", batch_ids)
    out: dict[int, dict[str, int]] = {i: {s.value: 0 for s in TaskStatus} for i in batch_ids}
    for batch_id, status, n in conn.execute(
        f"SELECT batch_id, status, COUNT(*) FROM tasks WHERE batch_id IN {ids_sql} "
        "GROUP BY batch_id, status",
        params,
    ).fetchall():
        out[int(batch_id)][status] = int(n)
    return out


def batch(conn: Connection, group: str | None, batch_id: int) -> dict[str, Any]:
    """One batch with its spec and counts; NotFound if absent or another group's."""
    scope, params = _scope(group)
    rows = conn.dicts(f"SELECT * FROM batches WHERE id = :id{scope}", {**params, "id": batch_id})
    if not rows:
        raise NotFound(f"no batch {batch_id} in your view")
    row = rows[0]
    row["spec"] = json.loads(row["spec"])
    row["counts"] = results.progress(conn, batch_id)
    return row


def batch_group(conn: Connection, batch_id: int) -> str:
    """The group that owns a batch (actions check it); NotFound if there is none."""
    row = conn.one("SELECT owner_group FROM batches WHERE id = :id", {"id": batch_id})
    if row is None:
        raise NotFound(f"no batch {batch_id}")
    return str(row[0])


def tasks(
    conn: Connection,
    group: str | None,
    *,
    batch_id: int | None = None,
    status: str | None = None,
    tag: str | None = None,
    name: str | None = None,
    after: int = 0,
    limit: int = PAGE,
) -> dict[str, Any]:
    """One keyset page of tasks (``id > after``) matching the filters, and how many match."""
    scope, params = _scope(group)
    where = f"WHERE 1 = 1{scope}"
    if batch_id is not None:
        where += " AND batch_id = :batch"
        params["batch"] = batch_id
    if status:
        where += " AND status = :status"
        params["status"] = status
    if tag:
        escaped = _like(tag)
        where += (
            " AND (tags = :tag OR tags LIKE :first ESCAPE '/' OR tags LIKE :last ESCAPE '/' "
            "OR tags LIKE :middle ESCAPE '/')"
        )
        params.update(tag=tag, first=f"{escaped},%", last=f"%,{escaped}", middle=f"%,{escaped},%")
    if name:
        where += " AND name LIKE :name ESCAPE '/'"
        params["name"] = f"%{_like(name)}%"
    total = int(conn.one(f"SELECT COUNT(*) FROM tasks {where}", params)[0])
    limit = max(1, min(limit, MAX_PAGE))
    rows = conn.dicts(
        "SELECT id, name, status, tags, attempts, max_attempts, batch_id, worker_id, "
        f"exit_code, reason, created_at, started_at, finished_at FROM tasks {where} "
        f"AND id > :after ORDER BY id LIMIT {limit + 1}",
        {**params, "after": after},
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return {"rows": rows, "total": total, "next": rows[-1]["id"] if more else None}


def task(conn: Connection, group: str | None, task_id: int) -> dict[str, Any]:
    """One task for its page: the row (no pickles), its attempts with where each ran,
    its grid parameters when it belongs to a batch; NotFound if not visible."""
    scope, params = _scope(group)
    rows = conn.dicts(
        "SELECT id, batch_id, name, kind, payload, tags, priority, max_attempts, attempts, "
        "timeout, status, reason, created_at, started_at, finished_at, worker_id, "
        "lease_expires_at, exit_code, result, CASE WHEN result_pickled IS NULL THEN 0 ELSE 1 "
        "END AS result_is_pickled, error, stdout_tail, stderr_tail, log_dir, owner, owner_group "
        f"FROM tasks WHERE id = :id{scope}",
        {**params, "id": task_id},
    )
    if not rows:
        raise NotFound(f"no task {task_id} in your view")
    row = rows[0]
    for key in ("payload", "result"):
        if row[key] is not None and len(row[key]) > TEXT_LIMIT:
            row[key] = row[key][:TEXT_LIMIT] + " …(truncated)"
    row["params"] = _grid_point(conn, row["batch_id"], row["name"])
    row["attempt_rows"] = attempts(conn, task_id)
    return row


def _grid_point(conn: Connection, batch_id: int | None, name: str | None) -> dict[str, Any]:
    if batch_id is None:
        return {}
    spec_row = conn.one("SELECT spec FROM batches WHERE id = :id", {"id": batch_id})
    if spec_row is None:
        return {}
    axes = results.grid(json.loads(spec_row[0]))
    match = results._INDEX.search(name or "")
    if not axes or match is None:
        return {}
    return results.params_at(axes, int(match.group(1)))
