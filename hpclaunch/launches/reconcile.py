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
from dataclasses import dataclass, field
from typing import Any

from hpclaunch.errors import UserError
from hpclaunch.launches import records
from hpclaunch.queue import operations
from hpclaunch.states import (
    FAILURE_JOB_STATES,
    ExitReason,
    JobStateName,
    LaunchStatus,
    TaskStatus,
)

FAILURE_STATES = FAILURE_JOB_STATES
TERMINAL = FAILURE_STATES | {JobStateName.COMPLETED, JobStateName.UNKNOWN}
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
    settled = records.settled_keys(engine, [v["id"] for v in views])
    for view in views:
        launch = launch_rows[view["id"]]
        if view["status"] == LaunchStatus.CANCELED:
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
                state, only_walltime = JobStateName.TIMEOUT, True
            typed = _type_tasks(engine, launch, state, worker_ids, only_walltime=only_walltime)
            for task_id, outcome in typed:
                result.actions.append(
                    Action(view["id"], element["element"], element["state"], task_id, outcome)
                )
            records.mark_settled(engine, view["id"], element["job_id"], element["index"])
        if view["status"] not in (LaunchStatus.BROKEN, LaunchStatus.CANCELED) and _is_broken(view):
            reason = _broken_reason(view, fetch_stderr)
            records.set_status(engine, view["id"], LaunchStatus.BROKEN, reason=reason)
            view["status"], view["broken_reason"] = LaunchStatus.BROKEN.value, reason
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
    if element["state"] == JobStateName.COMPLETED and element["workers"]:
        return False  # workers started and found nothing to do: not broken
    return all(w["exit_reason"] in (None, ExitReason.CRASH) for w in element["workers"]) and (
        element["state"] != JobStateName.COMPLETED or not element["workers"]
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


def _type_tasks(
    engine, launch: dict, state: str, worker_ids: list[int], *, only_walltime: bool = False
) -> list[tuple[int, str]]:
    """Give the element's tasks the scheduler's reason and apply the retry policy
    (through ``queue.operations.type_verdict``).

    ``only_walltime``: the element ended cleanly; type only tasks its workers put
    back on the walltime warning.
    """
    if not worker_ids:
        return []
    action, site = policy(launch, state)
    new_tags = _site_tags(site) if action == "requeue_on" else None
    typed = operations.type_verdict(
        engine,
        worker_ids,
        state,
        fail=action == "fail",
        new_tags=new_tags,
        only_walltime=only_walltime,
    )
    return [
        (
            task_id,
            TaskStatus.FAILED.value
            if status == TaskStatus.FAILED
            else (f"requeued_for:{site}" if new_tags else "requeued"),
        )
        for task_id, status in typed
    ]


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
    row = records.newest_launch(engine, profile.name)
    if row is None or row["status"] != LaunchStatus.BROKEN:
        return  # the site's newest launch decides (a later --force launch clears it)
    current = json.dumps(profile.to_dict(), sort_keys=True, default=str)
    if current != row["profile"]:
        return  # the profile was fixed since
    raise UserError(
        f"site {profile.name} is marked broken by launch {row['id']}: {row['broken_reason']}. "
        "Fix the profile (or its overrides), or pass --force to submit anyway",
        exit_code=7,
    )


def to_dict(result: ReconcileResult) -> dict[str, Any]:
    return {"actions": [a.__dict__ for a in result.actions], "broken": result.broken}
