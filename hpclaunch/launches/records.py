"""The launches tables: what was submitted, where, with which job IDs."""

from __future__ import annotations

import json
import time
from typing import Any

from sqlalchemy import and_, insert, select, update
from sqlalchemy.engine import Engine

from hpclaunch.errors import NotFound
from hpclaunch.queue.schema import (
    launch_elements,
    launch_jobs,
    launches,
    task_attempts,
    tasks,
    workers,
)
from hpclaunch.queue.store import current_user

LIVE = ("submitting", "submitted", "partial")


def create_launch(
    engine: Engine,
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
) -> None:
    """Record the launch and its chunks (without job IDs) before anything is submitted.

    A crash mid-submission then leaves a trace that `status` shows, instead of
    jobs nobody knows about.
    """
    with engine.begin() as conn:
        conn.execute(
            insert(launches).values(
                id=launch_id,
                site=site,
                host=host,
                scheduler=scheduler,
                workdir=workdir,
                log_dir=log_dir,
                workers=workers_count,
                tags=tags,
                status="submitting",
                submitted_at=time.time(),
                submitted_by=current_user(),
                profile=json.dumps(profile, sort_keys=True, default=str),
            )
        )
        conn.execute(insert(launch_jobs), [{**c, "launch_id": launch_id} for c in chunks])


def set_job_id(engine: Engine, launch_id: str, chunk: int, job_id: str) -> None:
    with engine.begin() as conn:
        conn.execute(
            update(launch_jobs)
            .where(and_(launch_jobs.c.launch_id == launch_id, launch_jobs.c.chunk == chunk))
            .values(job_id=job_id, submitted_at=time.time())
        )


def set_status(engine: Engine, launch_id: str, status: str, *, reason: str | None = None) -> None:
    values: dict[str, Any] = {"status": status}
    if status == "canceled":
        values["canceled_at"] = time.time()
    if reason is not None:
        values["broken_reason"] = reason
    with engine.begin() as conn:
        conn.execute(update(launches).where(launches.c.id == launch_id).values(**values))


def get_launch(engine: Engine, launch_id: str) -> dict[str, Any]:
    with engine.connect() as conn:
        row = conn.execute(select(launches).where(launches.c.id == launch_id)).mappings().first()
        if row is None:
            raise NotFound(f"no launch {launch_id!r}; `hpclaunch launches` lists them")
        jobs = (
            conn.execute(
                select(launch_jobs)
                .where(launch_jobs.c.launch_id == launch_id)
                .order_by(launch_jobs.c.chunk)
            )
            .mappings()
            .all()
        )
    return {**dict(row), "jobs": [dict(j) for j in jobs]}


def list_launches(
    engine: Engine,
    *,
    site: str | None = None,
    live_only: bool = False,
    launch_id: str | None = None,
) -> list[dict[str, Any]]:
    query = select(launches).order_by(launches.c.submitted_at)
    if site:
        query = query.where(launches.c.site == site)
    if live_only:
        query = query.where(launches.c.status.in_(LIVE))
    if launch_id:
        query = query.where(launches.c.id == launch_id)
    with engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(query).mappings()]
        ids = [r["id"] for r in rows]
        jobs = (
            conn.execute(
                select(launch_jobs)
                .where(launch_jobs.c.launch_id.in_(ids))
                .order_by(launch_jobs.c.launch_id, launch_jobs.c.chunk)
            )
            .mappings()
            .all()
            if ids
            else []
        )
    by_launch: dict[str, list] = {}
    for job in jobs:
        by_launch.setdefault(job["launch_id"], []).append(dict(job))
    for row in rows:
        row["jobs"] = by_launch.get(row["id"], [])
    if launch_id and not rows:
        raise NotFound(f"no launch {launch_id!r}; `hpclaunch launches` lists them")
    return rows


def launch_workers(engine: Engine, launch_ids: list[str]) -> list[dict[str, Any]]:
    """Workers of these launches, with what each completed, failed and holds now."""
    if not launch_ids:
        return []
    with engine.connect() as conn:
        rows = [
            dict(r)
            for r in conn.execute(
                select(workers).where(workers.c.launch_id.in_(launch_ids)).order_by(workers.c.id)
            ).mappings()
        ]
        ids = [r["id"] for r in rows]
        outcomes = (
            conn.execute(
                select(
                    task_attempts.c.worker_id, task_attempts.c.outcome, task_attempts.c.task_id
                ).where(task_attempts.c.worker_id.in_(ids))
            ).all()
            if ids
            else []
        )
        holding = (
            conn.execute(
                select(tasks.c.worker_id, tasks.c.id).where(
                    and_(tasks.c.status == "running", tasks.c.worker_id.in_(ids))
                )
            ).all()
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


def record_elements(
    engine: Engine, launch_id: str, states: list[dict[str, Any]], *, settled: bool = False
) -> None:
    """Keep the scheduler's newest verdict on each element (for status and reconcile).

    An element once settled stays settled (the reconciler acted on it, or the user
    canceled it with hpclaunch). The launch row is locked first so two concurrent
    `status` runs cannot interleave their writes.
    """
    if not states:
        return
    now = time.time()
    with engine.begin() as conn:
        conn.execute(select(launches.c.id).where(launches.c.id == launch_id).with_for_update())
        for state in states:
            key = and_(
                launch_elements.c.launch_id == launch_id,
                launch_elements.c.job_id == state["job_id"],
                launch_elements.c.array_index.is_(None)
                if state["array_index"] is None
                else launch_elements.c.array_index == state["array_index"],
            )
            values = {
                "state": state["state"],
                "reason": state.get("reason"),
                "exit_code": state.get("exit_code"),
                "seen_at": now,
            }
            raise_flag = {"settled": 1} if settled else {}  # never lowered here
            updated = conn.execute(
                update(launch_elements).where(key).values(**values, **raise_flag)
            )
            if updated.rowcount == 0:
                conn.execute(
                    insert(launch_elements).values(
                        launch_id=launch_id,
                        job_id=state["job_id"],
                        array_index=state["array_index"],
                        settled=int(settled),
                        **values,
                    )
                )


def element_states(engine: Engine, launch_ids: list[str]) -> dict[str, dict[tuple, dict]]:
    """The last verdict recorded for each element, per launch."""
    if not launch_ids:
        return {}
    with engine.connect() as conn:
        rows = conn.execute(
            select(launch_elements).where(launch_elements.c.launch_id.in_(launch_ids))
        ).mappings()
        out: dict[str, dict[tuple, dict]] = {}
        for row in rows:
            out.setdefault(row["launch_id"], {})[(row["job_id"], row["array_index"])] = dict(row)
    return out
