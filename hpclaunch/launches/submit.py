"""``hpclaunch submit``: render the plan, upload the scripts, submit, record.

Order matters for "no surprise jobs": the launch and its chunks are recorded
before the first submission, each job ID right after its submission, and a
submission whose reply was lost is looked up by its unique job name before it
is ever sent again.
"""

from __future__ import annotations

import os
import posixpath
import secrets
from dataclasses import dataclass, field
from typing import Any

from hpclaunch.errors import UserError
from hpclaunch.launches.poll import forget_view
from hpclaunch.launches.quota import count_queued
from hpclaunch.launches.send import PartialLaunch, Refused, Unverified, send_chunks
from hpclaunch.queue import launch_rows
from hpclaunch.queue.driver import Connection
from hpclaunch.queue.urls import is_sqlite, sqlite_path
from hpclaunch.render import LaunchPlan, plan_launch
from hpclaunch.schedulers import get_scheduler
from hpclaunch.sites.model import Profile

__all__ = ["PartialLaunch", "Refused", "Submitted", "Unverified", "submit"]


@dataclass
class Submitted:
    """What ``submit`` did, for printing and for tests."""

    plan: LaunchPlan
    workdir: str
    jobs: list[dict[str, Any]] = field(default_factory=list)
    connections: int = 0
    scheduler_calls: int = 0
    notes: list[str] = field(default_factory=list)  # about the queued-job count


def new_launch_id() -> str:
    return secrets.token_hex(5)


def check_database_reachable(profile: Profile, url: str) -> None:
    """Refuse launches whose workers could not reach the queue (before anything runs)."""
    if profile.host is None or profile.database.kind == "server":
        return  # a server stands between the workers and the database
    if profile.database.kind == "local":
        raise UserError(
            f"site {profile.name} submits to {profile.host} over SSH but says `database: "
            "{local: true}`; say how workers there reach the queue: database: {env: VAR}, "
            "{file: PATH} or {url: ...} in the profile (or --set database.env=VAR)"
        )
    if is_sqlite(url):
        raise UserError(
            f"the queue is the SQLite file {sqlite_path(url)} on this machine, which workers on "
            f"{profile.host} cannot reach; use a shared PostgreSQL (--database "
            "postgresql://USER@HOST/DB or HPCLAUNCH_DATABASE_URL), or run submit on the cluster"
        )


def submit(
    conn: Connection,
    url: str,
    profile: Profile,
    workers: int,
    *,
    tags=None,
    transport=None,
    force: bool = False,
    keeper: str | None = None,
) -> Submitted:
    """Submit ``workers`` workers to ``profile``'s site and record the launch."""
    from hpclaunch.launches.breaker import check_not_broken

    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise UserError(f"--workers {workers!r}: give a whole number of workers, 1 or more")
    check_database_reachable(profile, url)
    check_not_broken(conn, profile, force=force)
    launch_id = new_launch_id()
    scheduler = get_scheduler(profile.scheduler)
    submitted = scheduler.submit_profile(profile)
    # Planned once before connecting: a launch over the limit even on an empty queue is
    # refused without a login; then again with the jobs already queued there.
    plan = plan_launch(submitted, workers, launch_id, tags=tags, submitting=True)
    if transport is None:
        from hpclaunch.transport import open_transport

        transport = open_transport(profile.host, profile.ssh)
    if profile.database.kind == "local":
        # Workers inherit the submitting environment (sbatch/qsub export it); the
        # URL itself never goes into a script.
        os.environ["HPCLAUNCH_DATABASE_URL"] = url
    result = Submitted(plan=plan, workdir="")
    with transport:
        queued = count_queued(
            transport,
            scheduler,
            site=profile.name,
            max_queued=profile.limits.max_queued_jobs,
            scope=profile.limits.scope,
            array_elements_count=profile.limits.array_elements_count,
            account=profile.resources.account,
        )
        result.scheduler_calls += queued.calls
        result.notes = list(queued.notes)
        if queued.jobs:
            plan = plan_launch(
                submitted, workers, launch_id, tags=tags, submitting=True, queued=queued.jobs
            )
            result.plan = plan
        workdir = _absolute(transport, plan.workdir)
        log_dir = _absolute(transport, plan.log_dir, base=workdir)
        result.workdir = workdir
        transport.makedirs(log_dir)
        chunk_rows = []
        for chunk in plan.chunks:
            script_path = posixpath.join(log_dir, chunk.filename)
            transport.write_file(script_path, chunk.script.encode(), mode=0o755)
            chunk_rows.append(
                {
                    "chunk": chunk.index,
                    "job_name": chunk.job_name,
                    "elements": chunk.elements,
                    "workers_per_element": chunk.workers_per_element,
                    "array": int(chunk.array),
                    "script": chunk.script,
                    "script_path": script_path,
                }
            )
        launch_rows.create_launch(
            conn,
            launch_id=launch_id,
            site=profile.name,
            host=profile.host,
            scheduler=profile.scheduler,
            workdir=workdir,
            log_dir=log_dir,
            workers_count=workers,
            tags=",".join(_tags(profile, tags)),
            profile=profile.to_dict(),
            chunks=chunk_rows,
            keeper=keeper,
        )
        try:
            send_chunks(conn, transport, scheduler, launch_id, workdir, chunk_rows, result)
        finally:
            forget_view(profile.host, profile.scheduler)  # the next status sees the new jobs
        result.connections = transport.connections_opened
    return result


def _tags(profile: Profile, tags) -> list[str]:
    return list(tags) if tags else list(profile.worker.tags)


def _absolute(transport, path: str, base: str | None = None) -> str:
    """Expand ``~`` (on the remote side) and make ``path`` absolute."""
    if path.startswith("~"):
        path = _remote_home(transport) + path[1:]
    elif not path.startswith("/") and base is not None:
        path = posixpath.join(base, path)
    return posixpath.normpath(path)


def _remote_home(transport) -> str:
    if transport.host is None:
        return os.path.expanduser("~")
    out = transport.run(["sh", "-c", 'printf %s "$HOME"'], idempotent=True)
    home = out.stdout.strip()
    if not out.ok or not home.startswith("/"):
        raise UserError(
            f"cannot find the home folder on {transport.host}: "
            f"{out.stderr.strip() or 'empty $HOME'}"
        )
    return home
