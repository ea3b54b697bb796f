"""Send a launch's recorded chunks to the scheduler, one by one, each job ID kept at once.

Shared by ``submit`` and ``submit --resume``. A refusal (the scheduler said no:
a submit limit lower than the profile says, say) stops the submission and is
recorded on the launch, which stays partial with what was submitted; a lost
reply is looked up by the job's unique name before anything is sent again.
"""

from __future__ import annotations

import shlex
from typing import Any

from hpclaunch.errors import UserError
from hpclaunch.queue import launch_rows
from hpclaunch.queue.driver import Connection
from hpclaunch.states import LaunchStatus

SUBMIT_TRIES = 3


class Unverified(UserError):
    """A submission's reply was lost and the scheduler could not say whether it arrived."""

    exit_code = 6


class PartialLaunch(UserError):
    """The scheduler refused a job half-way: the launch keeps what was submitted."""

    exit_code = 6


def send_chunks(
    conn: Connection,
    transport: Any,
    scheduler: Any,
    launch_id: str,
    workdir: str,
    rows: list[dict[str, Any]],
    result: Any,
    *,
    submitted_before: int = 0,
) -> None:
    """Submit ``rows`` in order, recording each job ID at once; stop at the first refusal.

    A refusal (the scheduler answered no: a submit limit lower than the profile
    said, say) leaves the launch partial with the reason recorded, so nothing
    runs unknown to hpclaunch and ``submit --resume`` sends the rest later.
    """
    from hpclaunch.transport.base import AmbiguousCommandError

    for row in rows:
        try:
            job_id, calls = submit_chunk(transport, scheduler, workdir, row)
        except Refused as exc:
            done = submitted_before + len(result.jobs)
            status = LaunchStatus.PARTIAL if done else LaunchStatus.FAILED
            launch_rows.set_refused(conn, launch_id, status, str(exc))
            left = len(rows) - len(result.jobs)
            raise PartialLaunch(
                f"launch {launch_id} is {status}: {done} job(s) submitted, {left} not: {exc}; "
                f"`hpclaunch submit --resume {launch_id}` submits the rest once jobs drain"
            ) from None
        except BaseException as exc:
            # A job may exist that we could not confirm: keep the launch live ("partial")
            # so status keeps an eye on it, rather than forgetting it as "failed".
            unsure = isinstance(exc, Unverified | AmbiguousCommandError)
            some = submitted_before + len(result.jobs)
            launch_rows.set_status(
                conn,
                launch_id,
                LaunchStatus.PARTIAL if some or unsure else LaunchStatus.FAILED,
            )
            raise
        result.scheduler_calls += calls
        launch_rows.set_job_id(conn, launch_id, row["chunk"], job_id)
        result.jobs.append({**row, "job_id": job_id})
    launch_rows.set_refused(conn, launch_id, LaunchStatus.SUBMITTED, None)


class Refused(UserError):
    """The scheduler answered a submission with a refusal: no job was created."""

    exit_code = 6


def submit_chunk(transport, scheduler, workdir: str, row: dict) -> tuple[str, int]:
    """Submit one chunk; after an ambiguous failure, find it by name before resubmitting."""
    from hpclaunch.transport.base import AmbiguousCommandError

    submit_line = f"cd {shlex.quote(workdir)} && " + shlex.join(
        scheduler.submit_argv(row["script_path"])
    )
    calls = 0
    for attempt in range(1, SUBMIT_TRIES + 1):
        calls += 1
        try:
            result = transport.run(submit_line, idempotent=False)
        except AmbiguousCommandError as lost:
            calls += 1
            found = transport.run(scheduler.find_by_name_argv(row["job_name"]), idempotent=True)
            if not found.ok:
                raise Unverified(
                    f"the reply to submitting {row['job_name']} was lost and the scheduler "
                    f"could not be asked whether it arrived ({found.stderr.strip()[:200]}); "
                    f"check `{shlex.join(scheduler.find_by_name_argv(row['job_name']))}` "
                    "before submitting again"
                ) from lost
            ids = scheduler.parse_find_by_name(found.stdout)
            if ids:
                return ids[0], calls
            if attempt == SUBMIT_TRIES:
                raise
            continue
        if not result.ok:
            detail = (result.stderr or result.stdout).strip().splitlines()
            raise Refused(
                f"{scheduler.name} refused {row['job_name']}: "
                f"{detail[-1] if detail else f'exit code {result.returncode}'} "
                f"(script kept at {row['script_path']})",
                exit_code=6,
            )
        return scheduler.parse_submit(result.stdout).job_id, calls
    raise AssertionError("unreachable")
