"""What ``status`` shows for a launch: scheduler verdicts joined with the workers' records.

Pure: rows and scheduler states in, a plain-data view out (the same dict that
``status --json`` prints and the reconciler reads).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from hpclaunch.launches.model import ElementKey, Launch, worker_key
from hpclaunch.schedulers import JobState
from hpclaunch.states import ExitReason, JobStateName, LaunchStatus, TaskStatus, WorkerStatus

#: An element whose job was never submitted (the submission stopped before it).
NOT_SUBMITTED = "NOT_SUBMITTED"


def launch_view(
    launch: Launch,
    states: dict[ElementKey, JobState],
    workers: list[dict[str, Any]],
    recorded: dict[ElementKey, dict[str, Any]],
) -> dict[str, Any]:
    """One launch as a user sees it: each element's state, its workers and their tasks."""
    workers_by_el: dict[ElementKey, list[dict[str, Any]]] = defaultdict(list)
    for w in workers:
        workers_by_el[worker_key(w)].append(w)
    elements = []
    for el in launch.elements:
        key = el.key
        ws = workers_by_el.get(key, []) if key else []
        state = states.get(key) if key else None
        name: str
        if state is not None:
            name, reason, code = state.state, state.reason, state.exit_code
        elif key is None:
            name, reason, code = NOT_SUBMITTED, None, None
        elif key in recorded:
            last = recorded[key]
            name, reason, code = last["state"], last["reason"], last["exit_code"]
        elif launch.status == LaunchStatus.CANCELED:
            name, reason, code = JobStateName.CANCELLED, "launch canceled", None
        else:
            name, reason, code = settled_from_workers(ws)
        elements.append(
            {
                **el.to_dict(),
                "state": str(name),
                "reason": reason,
                "exit_code": code,
                "workers": [{k: w[k] for k in ("id", "host", "status", "exit_reason")} for w in ws],
                "tasks_completed": sum(len(w["tasks"].get(TaskStatus.COMPLETED, [])) for w in ws),
                "tasks_failed": sum(len(w["tasks"].get(TaskStatus.FAILED, [])) for w in ws),
                "current_tasks": [w["current_task"] for w in ws if w["current_task"]],
            }
        )
    counts: dict[str, int] = defaultdict(int)
    for e in elements:
        counts[e["state"]] += 1
    return {
        "id": launch.id,
        "site": launch.site,
        "host": launch.host,
        "scheduler": launch.scheduler,
        "status": str(launch.status),
        "submitted_at": launch.submitted_at,
        "workers": launch.workers,
        "broken_reason": launch.broken_reason,
        "jobs": [job.to_dict() for job in launch.jobs],
        "state_counts": dict(counts),
        "elements": elements,
    }


def settled_from_workers(
    workers: list[dict[str, Any]],
) -> tuple[JobStateName, str | None, int | None]:
    """An element that left the queue with no accounting: judge it by its workers."""
    if not workers:
        return JobStateName.UNKNOWN, "left the queue before any worker registered", None
    if any(w["status"] == WorkerStatus.RUNNING for w in workers):
        return JobStateName.RUNNING, "worker still heartbeating", None
    if any(w["status"] == WorkerStatus.LOST for w in workers):
        return JobStateName.FAILED, "worker lost (no heartbeat)", None
    reasons = sorted({w["exit_reason"] or "?" for w in workers})
    if ExitReason.CRASH in reasons:
        return JobStateName.FAILED, "worker crashed", None
    return JobStateName.COMPLETED, "workers exited: " + ", ".join(reasons), 0
