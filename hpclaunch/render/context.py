"""Turn a checked profile and one chunk into the values a template prints.

Everything here is already shell-safe: words match a strict character set,
free text (env values, URLs) is single-quoted with :func:`shlex.quote`, and
paths under ``~`` become ``"$HOME"/...``.
"""

from __future__ import annotations

import posixpath
import shlex
from typing import Any

from hpclaunch.render.gpus import gpu_slots
from hpclaunch.render.planner import ChunkShape
from hpclaunch.schedulers import get_scheduler
from hpclaunch.schedulers.base import Scheduler
from hpclaunch.sites.model import Profile


def shell_path(path: str) -> str:
    """A checked path as a shell word; ``~`` and relative paths are under ``$HOME``."""
    if path == "~":
        return '"$HOME"'
    if path.startswith("~/"):
        return '"$HOME"/' + path[2:]
    if path.startswith("/"):
        return path
    return '"$HOME"/' + path


def directive_log_dir(workdir: str, launch_id: str) -> str:
    """The log folder as scheduler directives see it (no shell expansion there).

    Absolute workdirs are used as they are; ``~/...`` ones become relative to the
    submission folder, which is why jobs are submitted from inside the workdir.
    """
    if workdir.startswith("/"):
        return posixpath.join(workdir, launch_id)
    return launch_id


def worker_command(profile: Profile, launch_id: str, tags: tuple[str, ...], log_dir: str) -> str:
    """The ``hpclaunch worker ...`` command line of one worker (see ARCHITECTURE.md)."""
    w = profile.worker
    argv = [w.command, "worker"]
    if w.mode == "singleflow":
        argv.append("--singleflow")
    elif w.nitems_max is not None:
        argv += ["--nitems-max", str(w.nitems_max)]
    if w.close_on_empty_queue:
        argv.append("--close-on-empty-queue")
    if w.wait_timeout is not None:
        argv += ["--wait-timeout", str(w.wait_timeout)]
    for tag in tags:
        argv += ["-t", tag]
    if w.no_pickle:  # hardening: the profile forbids code from the database
        argv.append("--no-pickle")
    for name, spec in w.engines:  # checked one-line values, quoted as one shell word
        argv += ["--engine-handler", shlex.quote(f"{name}={spec}")]
    if w.db_wait is not None:
        argv += ["--db-wait", str(w.db_wait)]
    argv += [
        "--walltime",
        profile.resources.walltime_hms,
        "--launch-id",
        launch_id,
        "--grace",
        str(w.grace),
        "--log-dir",
        log_dir,
    ]
    return " ".join(argv)


def array_range(scheduler: Scheduler, shape: ChunkShape, max_concurrent: int | None) -> str | None:
    """The array directive's value in the scheduler's syntax; None for a plain job."""
    if not shape.array:
        return None
    return scheduler.array_range(shape.elements, max_concurrent)


def _database_value(profile: Profile) -> str | None:
    """How the script names the database: a path, a quoted URL, or a variable's name."""
    kind, value = profile.database.kind, profile.database.value
    if value is None:  # database: {local: true}
        return None
    if kind == "file":
        return shell_path(value)
    return shlex.quote(value) if kind in ("url", "server") else value


def _server_access(profile: Profile) -> dict[str, str | None]:
    """A server's token source and CAs as the script names them (never the token)."""
    db = profile.database
    return {
        "token_env": db.token_env,
        "token_file": shell_path(db.token_file) if db.token_file else None,
        "ca_bundle": shell_path(db.ca_bundle) if db.ca_bundle else None,
    }


def build(
    profile: Profile, shape: ChunkShape, *, launch_id: str, job_name: str, tags: tuple[str, ...]
) -> dict[str, Any]:
    """The template context for one chunk."""
    r = profile.resources
    scheduler = get_scheduler(profile.scheduler)
    # A node-exclusive site charges the whole node whatever a job asks: the remainder job
    # (fewer workers) asks for all its cpus too.
    per_job_cpus = max(r.cpus * shape.workers, r.node_cpus or 0)
    log_dir_shell = shell_path(posixpath.join(profile.workdir, launch_id))
    gpu = gpu_slots(profile)
    return {
        "site": profile.name,
        "scheduler": profile.scheduler,
        "launch_id": launch_id,
        "job_name": job_name,
        "chunk_index": shape.index,
        "elements": shape.elements,
        "workers_per_element": shape.workers,
        "array": shape.array,
        "array_range": array_range(scheduler, shape, profile.arrays.max_concurrent),
        "array_throttle": (
            scheduler.array_throttle(profile.arrays.max_concurrent) if shape.array else None
        ),
        "r": {
            "partition": r.partition,
            "account": r.account,
            "qos": r.qos,
            "constraint": r.constraint,
            "walltime": scheduler.format_walltime(r),
            "nodes": r.nodes,
            "cpus": per_job_cpus,
            "memory": scheduler.format_memory(r.memory),
            "gpus": r.gpus,
            "filesystems": r.filesystems,
            "place": r.place,
        },
        "grace": profile.worker.grace,
        "extra_directives": list(profile.extra_directives),
        "setup": list(profile.setup),
        "env": [(name, shlex.quote(value)) for name, value in profile.env],
        "database": {
            "kind": profile.database.kind,
            "value": _database_value(profile),
            **_server_access(profile),
        },
        "log_dir": directive_log_dir(profile.workdir, launch_id),
        "log_dir_shell": log_dir_shell,
        "worker_command": worker_command(profile, launch_id, tags, log_dir_shell),
        "gpu": gpu,
        # jobs on one host (local: one job per worker) take the next slots, not slot 1 again
        "slot_offset": shape.index * shape.workers if scheduler.jobs_share_host else 0,
        "worker_prefix": (f'{gpu.variable}="$hpcl_mine" ' if gpu else "")
        + ('taskset -c "$hpcl_mine_cpus" ' if profile.worker.bind_cpus else ""),
        "bind_cpus": r.cpus if profile.worker.bind_cpus else None,
        "worker_logs": scheduler.worker_log_paths(
            log_dir_shell, job_name, scheduler.index_expression() if shape.array else None
        ),
    }
