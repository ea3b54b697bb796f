"""``hpclaunch doctor``: check a site end to end, each failure one line with a fix.

First the local checks (profile, required values, SSH, remote workdir, remote
hpclaunch, scheduler commands, queue/partition, room under the job limits, the
database from here); then one tiny probe job whose worker runs the reserved
probe task (``tasks.probe``) on a compute node and answers through the queue.
A probe that never reaches the queue is reported from the job's own stderr.
"""

from __future__ import annotations

import dataclasses
import platform
import posixpath
import secrets
import shlex
import time
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from hpclaunch.errors import UserError
from hpclaunch.sites.model import Profile

PROBE_WALLTIME = 300  # seconds: the probe job's walltime
PROBE_DB_WAIT = 20  # seconds the probe worker waits for the database before it gives up


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool | None  # None: skipped
    detail: str
    fix: str = ""


def _run(transport: Any, argv: list[str]) -> Any:
    return transport.run(argv, idempotent=True)


def local_checks(profile: Profile, conn: Any, transport: Any) -> list[Check]:
    """Everything that can be checked from here, in order; later checks need earlier ones."""
    from hpclaunch.launches.quota import count_queued
    from hpclaunch.render import plan_launch
    from hpclaunch.schedulers import get_scheduler

    out = [Check("profile", True, f"{profile.name} ({profile.path})")]
    try:
        plan_launch(profile, 1, "doctor")
        out.append(Check("required values", True, "set"))
    except UserError as exc:
        out.append(Check("required values", False, str(exc), "set the value named above"))
        return out
    where = profile.host or "this machine"
    try:
        home = _run(transport, ["sh", "-c", 'printf %s "$HOME"'])
        if not home.ok:
            raise UserError(home.stderr.strip() or "no answer")
    except Exception as exc:  # SSH refusals come as several exception types: one line each
        out.append(
            Check("ssh", False, f"{where}: {exc}", "check host, ssh.user and the known host key")
        )
        return out
    out.append(Check("ssh", True, f"{where} reached" if profile.host else "local (no SSH)"))
    workdir = profile.workdir.replace("~", home.stdout.strip(), 1)
    probe = posixpath.join(workdir, f".hpclaunch-doctor-{secrets.token_hex(3)}")
    wrote = _run(
        transport, ["sh", "-c", f"mkdir -p {shlex.quote(workdir)} && : > {probe} && rm {probe}"]
    )
    out.append(
        Check("workdir", True, f"{workdir} is writable")
        if wrote.ok
        else Check(
            "workdir", False, f"{workdir}: {wrote.stderr.strip()[:200]}", "set a writable workdir"
        )
    )
    mine = metadata.version("hpclaunch")
    remote = _run(transport, ["sh", "-c", f"{profile.worker.command} --version"])
    theirs = remote.stdout.strip().split()[-1] if remote.ok and remote.stdout.strip() else None
    if theirs is None:
        out.append(
            Check(
                "remote hpclaunch",
                False,
                f"`{profile.worker.command} --version` failed on {where}",
                "install hpclaunch there, or set worker.command / setup lines",
            )
        )
    else:
        same = theirs == mine
        out.append(
            Check(
                "remote hpclaunch",
                same,
                f"{theirs} there, {mine} here",
                "" if same else f"install hpclaunch {mine} there",
            )
        )
    scheduler = get_scheduler(profile.scheduler)
    names = sorted({scheduler.submit_argv("x")[0], scheduler.status_argv(["1"])[0]})
    found = _run(transport, ["sh", "-c", " && ".join(f"command -v {n}" for n in names)])
    out.append(
        Check("scheduler commands", found.ok, ", ".join(names), "" if found.ok else "load them")
    )
    part = profile.resources.partition
    argv = scheduler.queue_exists_argv(part) if part else None
    if argv is not None:
        exists = _run(transport, argv)
        known = exists.ok and bool(exists.stdout.strip())
        out.append(
            Check(
                "queue",
                known,
                f"{part}" if known else f"unknown queue {part} on {where}",
                "" if known else "set resources.partition to one `sinfo`/`qstat -Q` lists",
            )
        )
    limits = profile.limits
    if limits.max_queued_jobs is not None:
        queued = count_queued(
            transport,
            scheduler,
            site=profile.name,
            max_queued=limits.max_queued_jobs,
            scope=limits.scope,
            array_elements_count=limits.array_elements_count,
            account=profile.resources.account,
        )
        room = limits.max_queued_jobs - queued.jobs
        out.append(
            Check(
                "job limit",
                room > 0,
                f"{queued.jobs} of {limits.max_queued_jobs} queued jobs used",
                "" if room > 0 else "wait for jobs to end, or cancel some",
            )
        )
    try:
        from hpclaunch.queue.health import ping

        ping(conn)
        out.append(Check("database", True, "reachable from here"))
    except Exception as exc:  # one line, whatever the driver raised
        out.append(Check("database", False, str(exc).splitlines()[0], "check the database URL"))
    return out


def probe(
    conn: Any, url: str, profile: Profile, imports: list[str], *, transport: Any = None
) -> list[Check]:
    """Submit the probe job, wait for its answer through the queue (or its stderr)."""
    from hpclaunch.launches.logs import read_logs
    from hpclaunch.launches.model import Launch
    from hpclaunch.launches.pool import TransportPool
    from hpclaunch.launches.status import observe
    from hpclaunch.launches.submit import submit
    from hpclaunch.queue import db, launch_rows, store
    from hpclaunch.queue.api import Queue
    from hpclaunch.queue.batches import TaskSpec
    from hpclaunch.states import ACTIVE_JOB_STATES
    from hpclaunch.tasks.payloads import call_payload
    from hpclaunch.tasks.probe import PROBE_TAG

    small = dataclasses.replace(
        profile,
        resources=dataclasses.replace(profile.resources, walltime=f"00:0{PROBE_WALLTIME // 60}:00"),
        worker=dataclasses.replace(
            profile.worker,
            mode="singleflow",
            close_on_empty_queue=True,
            workers_per_job=1,
            db_wait=PROBE_DB_WAIT,
            grace=min(profile.worker.grace, 30),
        ),
        limits=dataclasses.replace(profile.limits, max_queued_jobs=None),
    )
    # Inserted as it is (its tag is reserved: no user task carries it, and
    # ``canonical_tags`` refuses it), so only the probe worker below claims it.
    spec = TaskSpec(
        kind="call",
        payload=call_payload("hpclaunch.tasks.probe:run", [imports], {}),
        tags=PROBE_TAG,
        priority=0,
        max_attempts=1,
        timeout=None,
        expected_runtime=None,
        name="hpclaunch-probe",
    )
    queue = Queue(url)
    task = queue.task(db.call(queue.conn, store.insert_tasks, [spec])[0])
    done = submit(conn, url, small, 1, tags=[PROBE_TAG], transport=transport)
    launch_id = done.plan.launch_id
    deadline = time.time() + PROBE_WALLTIME + 60
    out: list[Check] = []
    with TransportPool() as pool:
        while time.time() < deadline:
            state = task.status
            if state in ("completed", "failed"):
                break
            report = observe(conn, pool, launch_id=launch_id)
            elements = report.launches[0]["elements"] if report.launches else []
            if elements and not any(e["state"] in ACTIVE_JOB_STATES for e in elements):
                time.sleep(2)  # the task may have completed as the job ended
                if task.status in ("completed", "failed"):
                    break
                launch = Launch.from_row(launch_rows.get_launch(conn, launch_id))
                logs = read_logs(launch, launch.elements[0], 5, pool)
                tail = (logs.get("stderr") or "").strip().splitlines()
                task.cancel()  # never left for an ordinary worker: none claims its tag
                return [
                    Check(
                        "probe job",
                        False,
                        f"ended without reaching the queue: {tail[-1] if tail else 'no stderr'}",
                        "make the database reachable from compute nodes (database: in the "
                        "profile; a proxy if they have no direct route)",
                    )
                ]
            time.sleep(2)
        else:
            return [Check("probe job", False, "no answer within its walltime", "see `status`")]
    if task.status != "completed":
        return [Check("probe job", False, f"the probe task {task.status}", "see `tasks why`")]
    result = task.result()
    out.append(Check("probe job", True, f"answered from {result['host']}"))
    here = platform.python_version()
    same_python = result["python"].split(".")[:2] == here.split(".")[:2]
    out.append(
        Check(
            "Python on the node",
            same_python,
            f"{result['python']} there, {here} here",
            "" if same_python else f"use Python {here.rsplit('.', 1)[0]} in the jobs (setup:)",
        )
    )
    for what in ("hpclaunch", "cloudpickle"):
        mine = _local_version(what)
        same = result[what] == mine
        out.append(
            Check(
                f"{what} on the node",
                same,
                f"{result[what]} there, {mine} here",
                "" if same else f"install {what} {mine} in the jobs' environment",
            )
        )
    for name, verdict in result["imports"].items():
        ok = verdict == "ok"
        out.append(
            Check(
                f"import {name}",
                ok,
                "ok" if ok else verdict,
                "" if ok else f"install {name} where the jobs run (setup: lines)",
            )
        )
    devices = ", ".join(f"{k}={v}" for k, v in result["devices"].items()) or "none set"
    out.append(Check("GPUs per worker slot", None, devices))
    return out


def _local_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None
