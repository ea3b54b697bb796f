"""Turn a checked profile and one chunk into the values a template prints.

Everything here is already shell-safe: words match a strict character set,
free text (env values, URLs) is single-quoted with :func:`shlex.quote`, and
paths under ``~`` become ``"$HOME"/...``.
"""

from __future__ import annotations

import posixpath
import shlex
from typing import Any

from hpclaunch.render.planner import ChunkShape
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


def pbs_memory(memory: str | None) -> str | None:
    """``4G`` -> ``4gb`` (PBS size units)."""
    return None if memory is None else memory[:-1] + memory[-1].lower() + "b"


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


def array_range(shape: ChunkShape, max_concurrent: int | None) -> str | None:
    if not shape.array:
        return None
    spec = "0" if shape.elements == 1 else f"0-{shape.elements - 1}"
    return f"{spec}%{max_concurrent}" if max_concurrent else spec


def build(
    profile: Profile, shape: ChunkShape, *, launch_id: str, job_name: str, tags: tuple[str, ...]
) -> dict[str, Any]:
    """The template context for one chunk."""
    r = profile.resources
    per_job_cpus = r.cpus * shape.workers
    log_dir_shell = shell_path(posixpath.join(profile.workdir, launch_id))
    memory = r.memory if profile.scheduler == "slurm" else pbs_memory(r.memory)
    return {
        "site": profile.name,
        "scheduler": profile.scheduler,
        "launch_id": launch_id,
        "job_name": job_name,
        "chunk_index": shape.index,
        "elements": shape.elements,
        "workers_per_element": shape.workers,
        "array": shape.array,
        "array_range": array_range(shape, profile.arrays.max_concurrent),
        "r": {
            "partition": r.partition,
            "account": r.account,
            "qos": r.qos,
            "constraint": r.constraint,
            "walltime": r.walltime_slurm if profile.scheduler == "slurm" else r.walltime_hms,
            "nodes": r.nodes,
            "cpus": per_job_cpus,
            "memory": memory,
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
            "value": (
                shell_path(profile.database.value)
                if profile.database.kind == "file"
                else shlex.quote(profile.database.value)
                if profile.database.kind == "url"
                else profile.database.value
            ),
        },
        "log_dir": directive_log_dir(profile.workdir, launch_id),
        "log_dir_shell": log_dir_shell,
        "worker_command": worker_command(profile, launch_id, tags, log_dir_shell),
    }
