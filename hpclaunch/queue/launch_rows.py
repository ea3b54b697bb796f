"""The launches tables: what was submitted, where, with which job IDs (all their SQL).

Plain DB-API over ``queue.driver`` (the one runtime access path).
"""

from __future__ import annotations

import json
import time
from typing import Any

from hpclaunch.errors import NotFound
from hpclaunch.queue.driver import Connection, in_list
from hpclaunch.queue.scope import Scope, launch_condition
from hpclaunch.queue.store import current_user
from hpclaunch.states import LIVE_LAUNCH_STATUSES, LaunchStatus, TaskStatus

LIVE = tuple(s.value for s in LIVE_LAUNCH_STATUSES)


def create_launch(
    conn: Connection,
    *,
    launch_id: str,
    site: str,
    host: str | None,
    scheduler: str,
    workdir: str,
    log_dir: str,
    workers_count: int,
    tags: str,
    profile: dict[str, Any],
    chunks: list[dict[str, Any]],
    keeper: str | None = None,
) -> None:
    """Record the launch and its chunks (without job IDs) before anything is submitted.

    A crash mid-submission then leaves a trace that `status` shows, instead of
    jobs nobody knows about.
    """
    with conn.transaction():
        conn.execute(
            "INSERT INTO launches (id, site, host, scheduler, workdir, log_dir, workers, tags, "
            "status, submitted_at, submitted_by, profile, keeper) VALUES (:id, :site, :host, "
            ":scheduler, :workdir, :log_dir, :workers, :tags, :status, :submitted_at, "
            ":submitted_by, :profile, :keeper)",
            {
                "id": launch_id,
                "site": site,
                "host": host,
                "scheduler": scheduler,
                "workdir": workdir,
                "log_dir": log_dir,
                "workers": workers_count,
                "tags": tags,
                "status": LaunchStatus.SUBMITTING.value,
                "submitted_at": time.time(),
                "submitted_by": current_user(),
                "profile": json.dumps(profile, sort_keys=True, default=str),
                "keeper": keeper,
            },
        )
        for chunk in chunks:
            row = {**chunk, "launch_id": launch_id}
            columns = ", ".join(f'"{c}"' for c in row)  # "array" is a reserved word
            values = ", ".join(":" + c for c in row)
            conn.execute(f"INSERT INTO launch_jobs ({columns}) VALUES ({values})", row)


def set_job_id(conn: Connection, launch_id: str, chunk: int, job_id: str) -> None:
    with conn.transaction():
        conn.execute(
            "UPDATE launch_jobs SET job_id = :job_id, submitted_at = :now "
            "WHERE launch_id = :launch_id AND chunk = :chunk",
            {"job_id": job_id, "now": time.time(), "launch_id": launch_id, "chunk": chunk},
        )


def set_status(conn: Connection, launch_id: str, status: str, *, reason: str | None = None) -> None:
    values: dict[str, Any] = {"status": str(status)}
    if status == LaunchStatus.CANCELED:
        values["canceled_at"] = time.time()
    if reason is not None:
        values["broken_reason"] = reason
    assignments = ", ".join(f"{k} = :{k}" for k in values)
    with conn.transaction():
        conn.execute(
            f"UPDATE launches SET {assignments} WHERE id = :id", {**values, "id": launch_id}
        )


def set_refused(conn: Connection, launch_id: str, status: str, refused: str | None) -> None:
    """The launch's status after a submission stopped (or resumed), and why the rest waits."""
    with conn.transaction():
        conn.execute(
            "UPDATE launches SET status = :status, refused = :refused WHERE id = :id",
            {"status": str(status), "refused": refused, "id": launch_id},
        )


def get_launch(conn: Connection, launch_id: str) -> dict[str, Any]:
    rows = conn.dicts("SELECT * FROM launches WHERE id = :id", {"id": launch_id})
    if not rows:
        raise NotFound(f"no launch {launch_id!r}; `hpclaunch launches` lists them")
    jobs = conn.dicts(
        "SELECT * FROM launch_jobs WHERE launch_id = :id ORDER BY chunk", {"id": launch_id}
    )
    return {**rows[0], "jobs": jobs}


def list_launches(
    conn: Connection,
    *,
    site: str | None = None,
    live_only: bool = False,
    launch_id: str | None = None,
    scope: Scope | None = None,
    after: str | None = None,
    limit: int | None = None,
    keeper: str | None = None,
) -> list[dict[str, Any]]:
    """Launches with their jobs; ``after``/``limit`` page by ID (else by submission time);
    ``keeper``: only those an elastic loop submitted."""
    visible, params = launch_condition(scope)
    where: list[str] = [visible]
    if after is not None:
        where.append("id > :after")
        params["after"] = after
    if keeper:
        where.append("keeper = :keeper")
        params["keeper"] = keeper
    if site:
        where.append("site = :site")
        params["site"] = site
    if live_only:
        live_sql, live_params = in_list("s", LIVE)
        where.append(f"status IN {live_sql}")
        params.update(live_params)
    if launch_id:
        where.append("id = :id")
        params["id"] = launch_id
    sql = "SELECT * FROM launches WHERE " + " AND ".join(where)
    if limit:
        sql += f" ORDER BY id LIMIT {int(limit)}"
    else:
        sql += " ORDER BY submitted_at"
    rows = conn.dicts(sql, params)
    ids_sql, ids = in_list("l", [r["id"] for r in rows])
    jobs = (
        conn.dicts(
            f"SELECT * FROM launch_jobs WHERE launch_id IN {ids_sql} ORDER BY launch_id, chunk",
            ids,
        )
        if ids
        else []
    )
    by_launch: dict[str, list] = {}
    for job in jobs:
        by_launch.setdefault(job["launch_id"], []).append(job)
    for row in rows:
        row["jobs"] = by_launch.get(row["id"], [])
    if launch_id and not rows:
        raise NotFound(f"no launch {launch_id!r}; `hpclaunch launches` lists them")
    return rows


def launch_workers(conn: Connection, launch_ids: list[str]) -> list[dict[str, Any]]:
    """Workers of these launches, with what each completed, failed and holds now."""
    if not launch_ids:
        return []
    launches_sql, params = in_list("l", launch_ids)
    rows = conn.dicts(
        f"SELECT * FROM workers WHERE launch_id IN {launches_sql} ORDER BY id", params
    )
    ids_sql, ids = in_list("w", [r["id"] for r in rows])
    outcomes = (
        conn.execute(
            f"SELECT worker_id, outcome, task_id FROM task_attempts WHERE worker_id IN {ids_sql}",
            ids,
        ).fetchall()
        if ids
        else []
    )
    holding = (
        conn.execute(
            f"SELECT worker_id, id FROM tasks WHERE status = :running AND worker_id IN {ids_sql}",
            {**ids, "running": TaskStatus.RUNNING.value},
        ).fetchall()
        if ids
        else []
    )
    done: dict[int, dict[str, list[int]]] = {}
    for worker_id, outcome, task_id in outcomes:
        done.setdefault(worker_id, {}).setdefault(outcome, []).append(task_id)
    held = dict(holding)
    for row in rows:
        row["tasks"] = done.get(row["id"], {})
        row["current_task"] = held.get(row["id"])
    return rows


def _element_key(state_index: int | None) -> str:
    """The element's WHERE clause (an unindexed job's array_index is NULL)."""
    index = "array_index IS NULL" if state_index is None else "array_index = :array_index"
    return f"launch_id = :launch_id AND job_id = :job_id AND {index}"


def record_elements(
    conn: Connection, launch_id: str, states: list[dict[str, Any]], *, settled: bool = False
) -> None:
    """Keep the scheduler's newest verdict on each element (for status and reconcile).

    An element once settled stays settled (the reconciler acted on it, or the user
    canceled it with hpclaunch). The launch row is locked first so two concurrent
    `status` runs cannot interleave their writes.
    """
    if not states:
        return
    now = time.time()
    lock = " FOR UPDATE" if conn.dialect == "postgresql" else ""
    with conn.transaction():
        conn.execute(f"SELECT id FROM launches WHERE id = :id{lock}", {"id": launch_id})
        for state in states:
            key = {
                "launch_id": launch_id,
                "job_id": state["job_id"],
                "array_index": state["array_index"],
            }
            values = {
                "state": str(state["state"]),
                "reason": state.get("reason"),
                "exit_code": state.get("exit_code"),
                "seen_at": now,
            }
            raise_flag = ", settled = 1" if settled else ""  # never lowered here
            updated = conn.execute(
                "UPDATE launch_elements SET state = :state, reason = :reason, "
                f"exit_code = :exit_code, seen_at = :seen_at{raise_flag} "
                f"WHERE {_element_key(state['array_index'])}",
                {**key, **values},
            )
            if updated.rowcount == 0:
                conn.execute(
                    "INSERT INTO launch_elements (launch_id, job_id, array_index, settled, "
                    "state, reason, exit_code, seen_at) VALUES (:launch_id, :job_id, "
                    ":array_index, :settled, :state, :reason, :exit_code, :seen_at)",
                    {**key, **values, "settled": int(settled)},
                )


def element_states(conn: Connection, launch_ids: list[str]) -> dict[str, dict[tuple, dict]]:
    """The last verdict recorded for each element, per launch."""
    if not launch_ids:
        return {}
    launches_sql, params = in_list("l", launch_ids)
    out: dict[str, dict[tuple, dict]] = {}
    for row in conn.dicts(
        f"SELECT * FROM launch_elements WHERE launch_id IN {launches_sql}", params
    ):
        out.setdefault(row["launch_id"], {})[(row["job_id"], row["array_index"])] = row
    return out


def settled_keys(conn: Connection, launch_ids: list[str]) -> dict[str, set]:
    """The elements the reconciler already acted on (or the user canceled), per launch."""
    if not launch_ids:
        return {}
    launches_sql, params = in_list("l", launch_ids)
    out: dict[str, set] = {}
    for launch_id, job_id, array_index in conn.execute(
        "SELECT launch_id, job_id, array_index FROM launch_elements "
        f"WHERE launch_id IN {launches_sql} AND settled = 1",
        params,
    ).fetchall():
        out.setdefault(launch_id, set()).add((job_id, array_index))
    return out


def mark_settled(conn: Connection, launch_id: str, job_id: str, index: int | None) -> None:
    with conn.transaction():
        conn.execute(
            f"UPDATE launch_elements SET settled = 1 WHERE {_element_key(index)}",
            {"launch_id": launch_id, "job_id": job_id, "array_index": index},
        )


def newest_launch(conn: Connection, site: str) -> dict[str, Any] | None:
    """The site's most recent launch (id, status, broken_reason, profile)."""
    rows = conn.dicts(
        "SELECT id, status, broken_reason, profile FROM launches WHERE site = :site "
        "ORDER BY submitted_at DESC LIMIT 1",
        {"site": site},
    )
    return rows[0] if rows else None
