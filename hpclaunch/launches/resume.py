"""``hpclaunch submit --resume LAUNCH``: submit the jobs a partial launch could not.

The launch's own record says what is left (chunks without a job ID) and with
which profile (the snapshot taken at submit time: host, SSH options, limits).
The jobs already queued are counted once; the chunks that fit under the limit
are sent in order, the rest stay recorded for a later ``--resume``. A chunk
whose earlier reply was lost is looked up by its unique name first, so no job
is ever submitted twice.
"""

from __future__ import annotations

import os
from typing import Any

from hpclaunch.errors import UserError
from hpclaunch.launches.model import Launch
from hpclaunch.launches.poll import forget_view
from hpclaunch.launches.quota import count_queued
from hpclaunch.launches.send import send_chunks
from hpclaunch.queue import launch_rows
from hpclaunch.queue.driver import Connection
from hpclaunch.render.planner import ChunkShape, jobs_counted
from hpclaunch.schedulers import get_scheduler
from hpclaunch.states import LaunchStatus


def chunks_that_fit(
    rows: list[dict[str, Any]], room: int | None, array_elements_count: bool
) -> list[dict[str, Any]]:
    """The leading chunks whose jobs, counted as the centre counts, fit in ``room`` (pure)."""
    if room is None:
        return list(rows)
    out: list[dict[str, Any]] = []
    used = 0
    for row in rows:
        shape = ChunkShape(row["chunk"], row["elements"], row["workers_per_element"], row["array"])
        need = jobs_counted([shape], array_elements_count)
        if used + need > room:
            break
        out.append(row)
        used += need
    return out


def resume(conn: Connection, url: str, launch_id: str, *, transport: Any = None) -> Any:
    """Submit what ``launch_id`` still lacks; returns a ``Submitted`` (jobs sent now)."""
    from hpclaunch.launches.submit import Submitted

    row = launch_rows.get_launch(conn, launch_id)
    launch = Launch.from_row(row)
    if launch.status in (LaunchStatus.CANCELED, LaunchStatus.BROKEN):
        raise UserError(f"launch {launch_id} is {launch.status}: nothing is resumed")
    rest = [j for j in row["jobs"] if not j["job_id"]]
    if not rest:
        raise UserError(
            f"launch {launch_id} has nothing left to submit: all {len(row['jobs'])} job(s) were "
            "submitted"
        )
    before = len(row["jobs"]) - len(rest)
    profile = launch.profile
    limits = profile.get("limits") or {}
    elements_count = bool(limits.get("array_elements_count", True))
    scheduler = get_scheduler(launch.scheduler)
    if transport is None:
        from hpclaunch.transport import open_transport

        transport = open_transport(launch.host, launch.ssh_options)
    if "local" in (profile.get("database") or {}):
        os.environ["HPCLAUNCH_DATABASE_URL"] = url  # as submit: inherited, never in a script
    result = Submitted(plan=None, workdir=launch.workdir)  # type: ignore[arg-type]
    with transport:
        queued = count_queued(
            transport,
            scheduler,
            site=launch.site,
            max_queued=limits.get("max_queued_jobs"),
            scope=limits.get("scope") or "user",
            array_elements_count=elements_count,
            account=(profile.get("resources") or {}).get("account"),
        )
        result.scheduler_calls += queued.calls
        result.notes = list(queued.notes)
        found = _already_there(transport, scheduler, conn, launch_id, rest, result)
        rest = [r for r in rest if r["chunk"] not in found]
        maximum = limits.get("max_queued_jobs")
        room = None if maximum is None else max(0, maximum - queued.jobs)
        sending = chunks_that_fit(rest, room, elements_count)
        if rest and not sending:
            raise UserError(
                f"launch {launch_id}: {launch.site} accepts {maximum} queued jobs per "
                f"{limits.get('scope') or 'user'} and {queued.jobs} are queued; the next job "
                "needs more room: resume again once jobs drain",
                exit_code=7,
            )
        transport.makedirs(launch.log_dir)
        for r in sending:  # the folder may have been cleaned since: write the scripts again
            transport.write_file(r["script_path"], r["script"].encode(), mode=0o755)
        try:
            send_chunks(
                conn,
                transport,
                scheduler,
                launch_id,
                launch.workdir,
                sending,
                result,
                submitted_before=before,
            )
        finally:
            forget_view(launch.host, launch.scheduler)
        if len(sending) < len(rest):
            left = len(rest) - len(sending)
            launch_rows.set_refused(
                conn,
                launch_id,
                LaunchStatus.PARTIAL,
                f"{left} job(s) wait for room under limits.max_queued_jobs {maximum} "
                f"({queued.jobs} were queued)",
            )
            result.notes.append(
                f"{left} job(s) of launch {launch_id} still wait for room under the limit: "
                f"`hpclaunch submit --resume {launch_id}` again later"
            )
        result.connections = transport.connections_opened
    return result


def _already_there(transport, scheduler, conn, launch_id, rest, result) -> set[int]:
    """Chunks the scheduler knows by name (an earlier reply was lost): record, never resend."""
    found: set[int] = set()
    for r in rest:
        answer = transport.run(scheduler.find_by_name_argv(r["job_name"]), idempotent=True)
        result.scheduler_calls += 1
        if not answer.ok:
            detail = (answer.stderr or answer.stdout).strip().splitlines()
            raise UserError(
                f"cannot ask {scheduler.name} whether {r['job_name']} is already there "
                f"({detail[-1] if detail else answer.returncode}); nothing was submitted"
            )
        ids = scheduler.parse_find_by_name(answer.stdout)
        if ids:
            launch_rows.set_job_id(conn, launch_id, r["chunk"], ids[0])
            result.jobs.append({**r, "job_id": ids[0]})
            found.add(r["chunk"])
    return found
