"""The reconciler: what ``status`` saw becomes recorded state and typed task outcomes.

When an array element ends TIMEOUT, OUT_OF_MEMORY, PREEMPTED, NODE_FAIL,
BOOT_FAIL, CANCELLED or FAILED, the tasks its workers held (or had just put
back) get that reason at once instead of waiting for a lease to expire, and the
profile's ``retry`` policy decides what happens next (requeue, fail, or requeue
for another site's workers), always bounded by ``max_attempts``. Launches whose
elements never worked are marked broken (``breaker``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hpclaunch.errors import UserError
from hpclaunch.launches import breaker
from hpclaunch.launches.logs import read_logs
from hpclaunch.launches.model import Launch
from hpclaunch.launches.pool import TransportPool
from hpclaunch.launches.status import StatusReport
from hpclaunch.queue import launch_rows, operations
from hpclaunch.queue.driver import Connection
from hpclaunch.states import (
    ACTIVE_JOB_STATES,
    FAILURE_JOB_STATES,
    JobStateName,
    LaunchStatus,
    TaskStatus,
)

STDERR_LINES = 20


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


def apply(conn: Connection, report: StatusReport, pool: TransportPool) -> ReconcileResult:
    """Record the verdicts in ``report``, finish launches that ended, type their tasks.

    Updates the report's views in place (a launch that ended shows ``finished``).
    """
    settling = []
    for view in report.launches:
        launch = report.records[view["id"]]
        if not launch.live:
            continue
        launch_rows.record_elements(
            conn,
            launch.id,
            [
                {
                    "job_id": e["job_id"],
                    "array_index": e["index"],
                    "state": e["state"],
                    "reason": e["reason"],
                    "exit_code": e["exit_code"],
                }
                for e in view["elements"]
                if e["job_id"]
            ],
        )
        if view["elements"] and not any(e["state"] in ACTIVE_JOB_STATES for e in view["elements"]):
            launch_rows.set_status(conn, launch.id, LaunchStatus.FINISHED)
            view["status"] = LaunchStatus.FINISHED.value
        settling.append(view)

    def stderr_tail(launch_id: str, element: int) -> str | None:
        launch = report.records[launch_id]
        return read_logs(launch, launch.elements[element], STDERR_LINES, pool).get("stderr")

    return reconcile_views(conn, report.records, settling, stderr_tail)


def reconcile_views(
    conn: Connection,
    launches: dict[str, Launch],
    views: list[dict[str, Any]],
    stderr_tail: breaker.StderrTail | None = None,
) -> ReconcileResult:
    """Apply verdicts for every element that ended and was not settled yet."""
    result = ReconcileResult()
    settled = launch_rows.settled_keys(conn, [v["id"] for v in views])
    for view in views:
        launch = launches[view["id"]]
        if view["status"] == LaunchStatus.CANCELED:
            continue  # canceled through hpclaunch: its tasks were returned uncounted
        for element in view["elements"]:
            key = (element["job_id"], element["index"])
            if element["state"] not in breaker.ENDED or key in settled.get(view["id"], set()):
                continue
            worker_ids = [w["id"] for w in element["workers"]]
            if element["state"] in FAILURE_JOB_STATES:
                state, only_walltime = element["state"], False
            else:
                # Ended cleanly, but its workers may have put tasks back on the
                # walltime warning: those ran out of time, i.e. TIMEOUT.
                state, only_walltime = JobStateName.TIMEOUT, True
            for task_id, outcome in _type_tasks(
                conn, launch, state, worker_ids, only_walltime=only_walltime
            ):
                result.actions.append(
                    Action(view["id"], element["element"], element["state"], task_id, outcome)
                )
            launch_rows.mark_settled(conn, view["id"], element["job_id"], element["index"])
        if view["status"] not in (LaunchStatus.BROKEN, LaunchStatus.CANCELED) and (
            breaker.is_broken(view)
        ):
            reason = breaker.broken_reason(view, stderr_tail)
            launch_rows.set_status(conn, view["id"], LaunchStatus.BROKEN, reason=reason)
            view["status"], view["broken_reason"] = LaunchStatus.BROKEN.value, reason
            result.broken.append(view["id"])
    return result


def policy(launch: Launch, reason: str) -> tuple[str, str | None]:
    """The profile's retry rule for ``reason``: (requeue|fail|requeue_on, site)."""
    rule = launch.retry_rules.get(reason, "requeue")
    if isinstance(rule, dict):
        return "requeue_on", rule.get("requeue_on")
    return rule, None


def _type_tasks(
    conn: Connection,
    launch: Launch,
    state: str,
    worker_ids: list[int],
    *,
    only_walltime: bool = False,
) -> list[tuple[int, str]]:
    """Give the element's tasks the scheduler's reason under the retry policy.

    ``only_walltime``: the element ended cleanly; type only tasks its workers put
    back on the walltime warning.
    """
    if not worker_ids:
        return []
    action, site = policy(launch, state)
    new_tags = _site_tags(site) if action == "requeue_on" else None
    typed = operations.type_verdict(
        conn,
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
    return canonical_tags(load_profile(site).worker.tags, reserved_ok=True)


def to_dict(result: ReconcileResult) -> dict[str, Any]:
    return {"actions": [a.__dict__ for a in result.actions], "broken": result.broken}
