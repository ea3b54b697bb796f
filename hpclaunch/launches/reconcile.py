"""Turn scheduler verdicts into typed task outcomes, and stop broken launches.

When an array element ends TIMEOUT, OUT_OF_MEMORY, PREEMPTED, NODE_FAIL,
BOOT_FAIL, CANCELLED or FAILED, the tasks its workers held (or had just put
back) get that reason at once instead of waiting for a lease to expire, and the
profile's ``retry`` policy decides what happens next (requeue, fail, or requeue
for another site's workers), always bounded by ``max_attempts``.

A launch whose elements end without ever claiming a task (the worker cannot
start: missing module, wrong Python, unreachable database) is marked broken, and
``submit`` refuses that site profile until it changes or ``--force`` is given.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, insert, select, update

from hpclaunch.errors import UserError
from hpclaunch.launches import records
from hpclaunch.queue.claims import WALLTIME_RELEASE
from hpclaunch.queue.schema import launch_elements, launches, task_attempts, tasks, workers

FAILURE_STATES = frozenset(
    {"TIMEOUT", "OUT_OF_MEMORY", "PREEMPTED", "NODE_FAIL", "BOOT_FAIL", "CANCELLED", "FAILED"}
)
TERMINAL = FAILURE_STATES | {"COMPLETED", "UNKNOWN"}
MIN_BAD_ELEMENTS = 2


@dataclass
class Action:
    launch_id: str
    element: int
    state: str
    task_id: int
    outcome: str  # requeued | failed | requeued_for:<site>


@dataclass
class ReconcileResult:
    actions: list[Action] = field(default_factory=list)
    broken: list[str] = field(default_factory=list)


def policy(launch: dict, reason: str) -> tuple[str, str | None]:
    """The profile's retry rule for ``reason``: (requeue|fail|requeue_on, site)."""
    rules = json.loads(launch["profile"]).get("retry") or {}
    rule = rules.get(reason, "requeue")
    if isinstance(rule, dict):
        return "requeue_on", rule.get("requeue_on")
    return rule, None


def reconcile_views(
    engine, launch_rows: dict[str, dict], views: list[dict], fetch_stderr=None
) -> ReconcileResult:
    """Apply verdicts for every element that ended badly and was not settled yet."""
    result = ReconcileResult()
    settled = _settled_keys(engine, [v["id"] for v in views])
    for view in views:
        launch = launch_rows[view["id"]]
        if view["status"] == "canceled":
            continue  # canceled through hpclaunch: its tasks were returned uncounted
        for element in view["elements"]:
            key = (element["job_id"], element["index"])
            if element["state"] not in TERMINAL or key in settled.get(view["id"], set()):
                continue
            worker_ids = [w["id"] for w in element["workers"]]
            if element["state"] in FAILURE_STATES:
                state, only_walltime = element["state"], False
            else:
                # Ended cleanly, but its workers may have put tasks back on the
                # walltime warning: those ran out of time, i.e. TIMEOUT.
                state, only_walltime = "TIMEOUT", True
            typed = _type_tasks(engine, launch, state, worker_ids, only_walltime=only_walltime)
            for task_id, outcome in typed:
                result.actions.append(
                    Action(view["id"], element["element"], element["state"], task_id, outcome)
                )
            _mark_settled(engine, view["id"], element)
        if view["status"] not in ("broken", "canceled") and _is_broken(view):
            reason = _broken_reason(view, fetch_stderr)
            records.set_status(engine, view["id"], "broken", reason=reason)
            view["status"], view["broken_reason"] = "broken", reason
            result.broken.append(view["id"])
    return result


def _is_broken(view: dict) -> bool:
    """Elements ended without any worker ever claiming a task."""
    elements = view["elements"]
    if any(e["tasks_completed"] or e["tasks_failed"] or e["current_tasks"] for e in elements):
        return False
    bad = [e for e in elements if e["state"] in TERMINAL and _never_worked(e)]
    needed = min(MIN_BAD_ELEMENTS, len(elements))
    return len(bad) >= needed


def _never_worked(element: dict) -> bool:
    if element["state"] == "CANCELLED":
        return False  # someone deleted it (e.g. never started): says nothing of the worker
    if element["state"] == "COMPLETED" and element["workers"]:
        return False  # workers started and found nothing to do: not broken
    return all(w["exit_reason"] in (None, "crash") for w in element["workers"]) and (
        element["state"] != "COMPLETED" or not element["workers"]
    )


def _broken_reason(view: dict, fetch_stderr) -> str:
    bad = [e for e in view["elements"] if e["state"] in TERMINAL and _never_worked(e)]
    first = bad[0]
    detail = f"{first['state']}" + (f" ({first['reason']})" if first["reason"] else "")
    text = (
        f"{len(bad)} element(s) ended before any worker claimed a task; first: element "
        f"{first['element']} {detail}"
    )
    if fetch_stderr is not None:
        try:
            tail = fetch_stderr(view["id"], first["element"])
        except Exception as exc:  # noqa: BLE001 - the verdict stands without the log
            tail = f"(stderr not readable: {str(exc).splitlines()[0] if str(exc) else exc})"
        if tail:
            text += "; its stderr ends: " + " | ".join(tail.strip().splitlines()[-5:])
    return text[:4000]


def _settled_keys(engine, launch_ids: list[str]) -> dict[str, set]:
    if not launch_ids:
        return {}
    out: dict[str, set] = {}
    with engine.connect() as conn:
        for row in conn.execute(
            select(
                launch_elements.c.launch_id, launch_elements.c.job_id, launch_elements.c.array_index
            ).where(
                and_(launch_elements.c.launch_id.in_(launch_ids), launch_elements.c.settled == 1)
            )
        ):
            out.setdefault(row[0], set()).add((row[1], row[2]))
    return out


def _mark_settled(engine, launch_id: str, element: dict) -> None:
    index = element["index"]
    with engine.begin() as conn:
        conn.execute(
            update(launch_elements)
            .where(
                and_(
                    launch_elements.c.launch_id == launch_id,
                    launch_elements.c.job_id == element["job_id"],
                    launch_elements.c.array_index.is_(None)
                    if index is None
                    else launch_elements.c.array_index == index,
                )
            )
            .values(settled=1)
        )


def _type_tasks(
    engine, launch: dict, state: str, worker_ids: list[int], *, only_walltime: bool = False
) -> list[tuple[int, str]]:
    """Give the element's tasks the scheduler's reason and apply the retry policy.

    ``only_walltime``: the element ended cleanly; type only tasks its workers put
    back on the walltime warning.
    """
    if not worker_ids:
        return []
    action, site = policy(launch, state)
    new_tags = _site_tags(site) if action == "requeue_on" else None
    now = time.time()
    done: list[tuple[int, str]] = []
    with engine.begin() as conn:
        held = (
            []
            if only_walltime
            else conn.execute(
                select(tasks).where(
                    and_(tasks.c.status == "running", tasks.c.worker_id.in_(worker_ids))
                )
            )
            .mappings()
            .all()
        )
        # Tasks its workers put back when the job was being stopped, not yet rerun.
        conditions = [
            task_attempts.c.worker_id.in_(worker_ids),
            task_attempts.c.outcome == "released",
            tasks.c.status == "pending",
        ]
        if only_walltime:
            conditions.append(task_attempts.c.reason == WALLTIME_RELEASE)
        released = (
            conn.execute(
                select(tasks)
                .select_from(tasks.join(task_attempts, task_attempts.c.task_id == tasks.c.id))
                .where(and_(*conditions))
            )
            .mappings()
            .all()
        )
        for task, was_running in [(t, True) for t in held] + [(t, False) for t in released]:
            attempts = task["attempts"] if was_running else task["attempts"] + 1
            spent = attempts >= task["max_attempts"]
            if action == "fail" or spent:
                values = {
                    "status": "failed",
                    "finished_at": now,
                    "error": f"array element ended {state}"
                    + (" (attempts spent)" if spent and action != "fail" else ""),
                }
                outcome = "failed"
            else:
                values = {"status": "pending", "worker_id": None, "started_at": None}
                outcome = "requeued"
                if new_tags:
                    values["tags"] = new_tags
                    outcome = f"requeued_for:{site}"
            cur = conn.execute(
                update(tasks)
                .where(
                    and_(
                        tasks.c.id == task["id"],
                        tasks.c.status == task["status"],
                        tasks.c.attempts == task["attempts"],
                    )
                )
                .values(
                    attempts=attempts,
                    reason=state,
                    claim_token=None,
                    lease_expires_at=None,
                    **values,
                )
            )
            if cur.rowcount != 1:
                continue
            if was_running:
                conn.execute(
                    insert(task_attempts).values(
                        task_id=task["id"],
                        attempt=attempts,
                        worker_id=task["worker_id"],
                        started_at=task["started_at"],
                        finished_at=now,
                        outcome="failed",
                        reason=state,
                        exit_code=None,
                        error=f"array element ended {state}",
                    )
                )
            else:
                conn.execute(
                    update(task_attempts)
                    .where(
                        and_(
                            task_attempts.c.task_id == task["id"],
                            task_attempts.c.worker_id.in_(worker_ids),
                            task_attempts.c.outcome == "released",
                        )
                    )
                    .values(outcome="failed", reason=state)
                )
            done.append((task["id"], outcome))
        conn.execute(
            update(workers)
            .where(and_(workers.c.id.in_(worker_ids), workers.c.status == "running"))
            .values(status="lost", exit_reason=state[:32], stopped_at=now)
        )
    return done


def _site_tags(site: str | None) -> str:
    from hpclaunch.sites import load_profile
    from hpclaunch.tasks.payloads import canonical_tags

    if not site:
        raise UserError("a retry rule `requeue_on` needs a site name")
    return canonical_tags(load_profile(site).worker.tags)


def check_not_broken(engine, profile, *, force: bool) -> None:
    """Refuse to submit a profile whose last launch is broken, unless it changed or --force."""
    if force:
        return
    with engine.connect() as conn:
        row = conn.execute(
            select(launches.c.id, launches.c.status, launches.c.broken_reason, launches.c.profile)
            .where(launches.c.site == profile.name)
            .order_by(launches.c.submitted_at.desc())
        ).first()
    if row is None or row.status != "broken":
        return  # the site's newest launch decides (a later --force launch clears it)
    current = json.dumps(profile.to_dict(), sort_keys=True, default=str)
    if current != row.profile:
        return  # the profile was fixed since
    raise UserError(
        f"site {profile.name} is marked broken by launch {row.id}: {row.broken_reason}. "
        "Fix the profile (or its overrides), or pass --force to submit anyway",
        exit_code=7,
    )


def to_dict(result: ReconcileResult) -> dict[str, Any]:
    return {"actions": [a.__dict__ for a in result.actions], "broken": result.broken}
