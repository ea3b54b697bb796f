"""``hpclaunch worker`` and ``hpclaunch cluster``: kept free of rich/Jinja/paramiko."""

from __future__ import annotations

import time

import click

from hpclaunch.cli.validate import COUNT, Seconds, worker_tags_option
from hpclaunch.errors import UserError


def worker_options(func):
    """Options shared by ``worker`` and ``cluster`` (cluster passes them through)."""
    options = [
        click.option(
            "--singleflow",
            is_flag=True,
            help="Run one task, then exit (exit 0 if the queue is empty).",
        ),
        click.option(
            "--nitems-max",
            type=COUNT,
            default=None,
            help="Exit after this many tasks.",
        ),
        click.option(
            "--close-on-empty-queue",
            is_flag=True,
            help="Exit when no task is waiting (after --wait-timeout).",
        ),
        click.option(
            "--wait-timeout",
            type=Seconds(),
            default=None,
            metavar="SECONDS",
            help="How long to wait for work before exiting.",
        ),
        click.option(
            "-t",
            "--tag",
            "tags",
            multiple=True,
            callback=worker_tags_option,
            help="Tags this worker accepts (repeatable; default: default).",
        ),
        click.option(
            "--deadline",
            default=None,
            metavar="ISO8601",
            help="Stop claiming tasks that would not finish before this time.",
        ),
        click.option(
            "--walltime",
            default=None,
            metavar="HH:MM:SS",
            help="Deadline as a duration from start (the job's walltime).",
        ),
        click.option("--launch-id", default=None, help="The launch this worker belongs to."),
        click.option(
            "--grace",
            type=Seconds(),
            default=30.0,
            show_default=True,
            help="Seconds a running task gets after SIGTERM/SIGINT/SIGUSR1.",
        ),
        click.option(
            "--lease",
            type=Seconds(1),
            default=120.0,
            show_default=True,
            help="Seconds without a heartbeat after which a task is reclaimed.",
        ),
        click.option(
            "--no-pickle",
            is_flag=True,
            help="Refuse pickled payloads (only commands and calls run).",
        ),
        click.option(
            "--log-dir",
            type=click.Path(file_okay=False),
            default=None,
            help="Where per-task logs go (default: ~/.hpclaunch/logs/tasks).",
        ),
        click.option(
            "--db-wait",
            type=Seconds(),
            default=300.0,
            show_default=True,
            metavar="SECONDS",
            help="How long an idle worker waits for an unreachable database before "
            "exiting (code 4); a running task's result is retried longer.",
        ),
        click.option(
            "--walltime-releases",
            type=click.IntRange(min=0),
            default=3,
            show_default=True,
            metavar="N",
            help="A task stopped at the walltime more than N times fails as TIMEOUT.",
        ),
        click.option(
            "--server",
            default=None,
            metavar="URL",
            help="Reach the queue through `hpclaunch serve` at this URL (or HPCLAUNCH_SERVER) "
            "instead of the database; the token comes from HPCLAUNCH_TOKEN or "
            "HPCLAUNCH_TOKEN_FILE.",
        ),
        click.option(
            "--ca-bundle",
            type=click.Path(dir_okay=False),
            default=None,
            metavar="FILE",
            help="CA certificates to trust for the server's TLS (or HPCLAUNCH_CA_BUNDLE).",
        ),
        click.option(
            "--insecure-http",
            is_flag=True,
            help="Allow plain http:// to a server that is not on this machine.",
        ),
        click.option("-q", "--quiet", is_flag=True, help="Only print errors."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def build_options(
    database_url,
    *,
    singleflow,
    nitems_max,
    close_on_empty_queue,
    wait_timeout,
    tags,
    deadline,
    walltime,
    launch_id,
    grace,
    lease,
    no_pickle,
    log_dir,
    quiet,
    db_wait=300.0,
    walltime_releases=3,
    server=None,
    ca_bundle=None,
    insecure_http=False,
):
    import os
    from pathlib import Path

    from hpclaunch.worker.deadline import parse_deadline, walltime_seconds
    from hpclaunch.worker.loop import WorkerOptions

    if deadline and walltime:
        raise UserError("give --deadline or --walltime, not both")
    end = None
    if deadline:
        end = parse_deadline(deadline)
    elif walltime:
        end = time.time() + walltime_seconds(walltime)
    return WorkerOptions(
        database_url=queue_url(database_url, server),
        tags=list(tags) or ["default"],
        singleflow=singleflow,
        nitems_max=nitems_max,
        close_on_empty_queue=close_on_empty_queue,
        wait_timeout=wait_timeout,
        deadline=end,
        launch_id=launch_id,
        grace=grace,
        lease=lease,
        allow_pickle=not no_pickle,
        log_dir=Path(log_dir) if log_dir else None,
        quiet=quiet,
        db_wait=db_wait,
        walltime_releases=walltime_releases,
        insecure_http=insecure_http,
        ca_bundle=ca_bundle or os.environ.get("HPCLAUNCH_CA_BUNDLE") or None,
    )


def queue_url(database_url: str | None, server: str | None) -> str:
    """The worker's queue: ``--server`` (or HPCLAUNCH_SERVER), else the database.

    ``--server`` with ``--database`` is a mistake; an explicit ``--database``
    beats an HPCLAUNCH_SERVER left in the environment."""
    import os

    from hpclaunch.queue.session import is_server_url

    if server and database_url:
        raise UserError("give --server or --database, not both")
    chosen = server or (None if database_url else os.environ.get("HPCLAUNCH_SERVER") or None)
    if chosen:
        if not is_server_url(chosen):
            raise UserError(f"--server takes an https:// (or http://) URL, not {chosen[:60]!r}")
        return chosen
    from hpclaunch.queue.urls import resolve_database_url

    return resolve_database_url(database_url)


@click.command()
@worker_options
@click.pass_context
def worker(ctx: click.Context, **kwargs) -> int:
    """Run a worker that pulls tasks from the queue.

    By default it drains the queue forever; --singleflow runs one task, and
    --nitems-max / --close-on-empty-queue / --wait-timeout / a deadline make it stop.
    """
    from hpclaunch.worker.loop import run_worker

    opts = build_options(ctx.obj["database_url"], **_with_server(ctx, kwargs))
    run_worker(opts)
    return 0


@click.command()
@click.argument("count", type=click.IntRange(min=1))
@worker_options
@click.pass_context
def cluster(ctx: click.Context, count: int, **kwargs) -> int:
    """Run COUNT local workers under one supervisor; Ctrl-C stops them all gracefully."""
    from hpclaunch.worker.cluster import run_cluster

    kwargs = _with_server(ctx, kwargs)
    opts = build_options(ctx.obj["database_url"], **kwargs)  # validate before starting any
    if opts.database_url.lower().startswith(("http://", "https://")):
        kwargs["server"] = opts.database_url  # the workers get it as --server (no secret)
        return run_cluster(count, None, _worker_argv(kwargs))
    return run_cluster(count, ctx.obj["database_url"], _worker_argv(kwargs))


def _with_server(ctx: click.Context, kwargs: dict) -> dict:
    """A top-level ``--server`` (if the group has one) counts as the command's own."""
    top = (ctx.obj or {}).get("server_url")
    if top and not kwargs.get("server"):
        return {**kwargs, "server": top}
    return kwargs


def _worker_argv(kwargs: dict) -> list[str]:
    """Turn parsed options back into ``hpclaunch worker`` arguments."""
    argv: list[str] = []
    for name, value in kwargs.items():
        flag = "--" + name.replace("_", "-")
        if name == "tags":
            for tag in value:
                argv += ["-t", tag]
        elif name == "no_pickle":
            if value:
                argv.append("--no-pickle")
        elif isinstance(value, bool):
            if value:
                argv.append(flag)
        elif value is not None:
            argv += [flag, str(value)]
    return argv
