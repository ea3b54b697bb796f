"""``hpclaunch cancel``: stop a launch's jobs, then give their tasks back to the queue.

Tasks go back only once the jobs are gone: a worker still running its task must
not race a rerun (if the jobs do not leave in time, the leases return the tasks).
"""

from __future__ import annotations

from typing import Any

from hpclaunch.errors import UserError
from hpclaunch.launches.model import Element, Launch, worker_key
from hpclaunch.launches.poll import forget_view, wait_gone
from hpclaunch.launches.pool import TransportPool
from hpclaunch.queue import launch_rows, operations
from hpclaunch.queue.driver import Connection
from hpclaunch.schedulers import get_scheduler
from hpclaunch.states import JobStateName, LaunchStatus

CANCEL_WAIT_SECONDS = 60.0


def cancel(
    conn: Connection,
    launch_id: str,
    pool: TransportPool,
    *,
    element: int | None = None,
    wait: float = CANCEL_WAIT_SECONDS,
) -> dict[str, Any]:
    """Cancel through the scheduler, wait for the jobs to go, return the tasks they held."""
    launch = Launch.from_row(launch_rows.get_launch(conn, launch_id))
    targets = [launch.element(element)] if element is not None else list(launch.elements)
    job_ids = sorted({t.job_id for t in targets if t.job_id})
    calls = 0
    if job_ids:
        scheduler = get_scheduler(launch.scheduler)
        index = targets[0].index if element is not None else None
        calls += 1
        result = pool.get(launch).run(scheduler.cancel_argv(job_ids, index), idempotent=True)
        forget_view(launch.host, launch.scheduler)  # a cached view would still show them
        if not result.ok and not scheduler.already_gone(result.stderr + result.stdout):
            raise UserError(
                f"cancel of launch {launch_id} failed: {result.stderr.strip() or result.returncode}"
            )
    if element is None:
        launch_rows.set_status(conn, launch_id, LaunchStatus.CANCELED)
    gone, polls = wait_gone(launch, targets, pool, wait)
    calls += polls
    returned = return_tasks(conn, launch, targets if element is not None else None) if gone else []
    # The reconciler must not count these as CANCELLED failures: the user asked.
    launch_rows.record_elements(
        conn,
        launch_id,
        [
            {
                "job_id": t.job_id,
                "array_index": t.index,
                "state": JobStateName.CANCELLED.value,
                "reason": "canceled with hpclaunch cancel",
            }
            for t in targets
            if t.job_id
        ],
        settled=True,
    )
    return {
        "launch": launch_id,
        "job_ids": job_ids,
        "elements": len(targets),
        "tasks_returned": returned,
        "gone": gone,
        "scheduler_calls": calls,
    }


def return_tasks(conn: Connection, launch: Launch, targets: list[Element] | None) -> list[int]:
    """Put tasks held by the launch's (now gone) workers back on the queue, uncounted."""
    workers = launch_rows.launch_workers(conn, [launch.id])
    if targets is not None:
        wanted = {t.key for t in targets}
        workers = [w for w in workers if worker_key(w) in wanted]
    return operations.return_launch_tasks(conn, [w["id"] for w in workers])
