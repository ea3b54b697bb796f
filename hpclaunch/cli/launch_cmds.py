"""Launch commands: submit, status, cancel, logs, launches."""

from __future__ import annotations

import time
from typing import Any

import click

from hpclaunch.cli.output import emit, fmt_time, print_json, print_table
from hpclaunch.cli.sites_cmds import collect_overrides, override_options
from hpclaunch.errors import UserError


def _engine_and_url(ctx: click.Context):
    from hpclaunch.queue.db import get_engine
    from hpclaunch.queue.urls import resolve_database_url

    url = resolve_database_url(ctx.obj["database_url"])
    return get_engine(url), url


@click.command()
@click.option("--site", required=True, metavar="NAME", help="Site profile (or a .yaml path).")
@click.option("--workers", "-n", required=True, type=int, help="Number of workers to start.")
@override_options
@click.option(
    "-t", "--tag", "tags", multiple=True, metavar="TAG", help="Worker tags (replace the profile's)."
)
@click.option("--dry-run", is_flag=True, help="Show the plan and scripts; submit nothing.")
@click.option(
    "--force", is_flag=True, help="Submit even though the site's last launch was marked broken."
)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def submit(ctx, site, workers, tags, dry_run, force, as_json, **kwargs):
    """Render, upload and submit worker job arrays to a site; record the launch.

    \b
      hpclaunch submit --site longleaf --workers 50
      hpclaunch submit --site local --workers 4        # no scheduler: 4 processes here
    """
    from hpclaunch import sites as site_api
    from hpclaunch.launches import submit as submitting

    profile = site_api.load_profile(site, collect_overrides(kwargs))
    if dry_run:
        from hpclaunch.render import plan_launch

        plan = plan_launch(profile, workers, "dry-run", tags=list(tags) or None)
        if as_json:
            print_json(plan.to_dict())
            return
        click.echo(
            f"dry run: would submit {len(plan.chunks)} script(s) for {workers} "
            f"worker(s) to {profile.name} ({profile.host or 'this machine'})"
        )
        for warning in plan.warnings:
            click.echo(f"warning: {warning}", err=True)
        for chunk in plan.chunks:
            click.echo(f"# ==> {chunk.filename} ({chunk.elements} element(s)) <==")
            click.echo(chunk.script, nl=False)
        return
    engine, url = _engine_and_url(ctx)
    result = submitting.submit(engine, url, profile, workers, tags=list(tags) or None, force=force)
    if as_json:
        print_json(
            {
                "launch_id": result.plan.launch_id,
                "site": profile.name,
                "host": profile.host,
                "workdir": result.workdir,
                "jobs": [
                    {k: j[k] for k in ("chunk", "job_name", "job_id", "elements", "script_path")}
                    for j in result.jobs
                ],
                "ssh_connections": result.connections,
                "scheduler_calls": result.scheduler_calls,
                "warnings": list(result.plan.warnings),
            }
        )
        return
    for warning in result.plan.warnings:
        click.echo(f"warning: {warning}", err=True)
    ids = ", ".join(j["job_id"] for j in result.jobs)
    click.echo(
        f"launch {result.plan.launch_id}: {workers} worker(s) on {profile.name} "
        f"({profile.host or 'this machine'}); job ID(s) {ids}"
    )
    click.echo(f"scripts and logs in {result.jobs[0]['script_path'].rsplit('/', 1)[0]}")


@click.command()
@click.option("--site", default=None, help="Only launches to this site.")
@click.option("--launch", "launch_id", default=None, help="Only this launch.")
@click.option("--all", "include_finished", is_flag=True, help="Include finished launches.")
@click.option(
    "--elements",
    "show_elements",
    is_flag=True,
    help="One row per array element (default when there are few).",
)
@click.option("--watch", is_flag=True, help="Refresh every few seconds until Ctrl-C.")
@click.option("--interval", type=click.FloatRange(min=1), default=5.0, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def status(ctx, site, launch_id, include_finished, show_elements, watch, interval, as_json):
    """Queue and scheduler state of launches, in one view (one scheduler call per site)."""
    from hpclaunch.launches import track
    from hpclaunch.queue import store

    engine, _ = _engine_and_url(ctx)
    while True:
        report = track.status(
            engine, site=site, launch_id=launch_id, include_finished=include_finished
        )
        stats = store.stats(engine)
        if as_json:
            from hpclaunch.launches.reconcile import to_dict

            print_json(
                {
                    "launches": report.launches,
                    "queue": stats,
                    "reconciled": to_dict(report.reconciled) if report.reconciled else None,
                    "scheduler_calls": report.scheduler_calls,
                    "ssh_connections": report.connections,
                    "notes": report.notes,
                }
            )
        else:
            _print_reconciled(report.reconciled)
            _print_status(report, stats, show_elements)
        if not watch:
            return
        time.sleep(interval)
        if not as_json:
            click.clear()


def _print_status(report, stats: dict[str, Any], show_elements: bool) -> None:
    from rich.console import Console
    from rich.progress_bar import ProgressBar

    console = Console()
    if not report.launches:
        console.print("[dim]no live launches (--all shows finished ones)[/dim]")
    for launch in report.launches:
        counts = ", ".join(f"{n} {s.lower()}" for s, n in sorted(launch["state_counts"].items()))
        console.print(
            f"[bold]launch {launch['id']}[/bold]  {launch['site']} "
            f"({launch['host'] or 'this machine'}, {launch['scheduler']})  "
            f"{launch['status']}  submitted {fmt_time(launch['submitted_at'])}  "
            f"{launch['workers']} worker(s): {counts or 'none'}",
            highlight=False,
        )
        if launch["broken_reason"]:
            console.print(f"  [red]broken:[/red] {launch['broken_reason']}", highlight=False)
        job_rows = []
        for job in launch["jobs"]:
            els = [e for e in launch["elements"] if e["chunk"] == job["chunk"]]
            job_rows.append(
                (
                    job["chunk"],
                    job["job_name"],
                    job["job_id"] or "-",
                    job["elements"],
                    _count_states(els),
                    sum(e["tasks_completed"] for e in els),
                    sum(e["tasks_failed"] for e in els),
                    sum(len(e["current_tasks"]) for e in els),
                )
            )
        if len(job_rows) <= 20:
            print_table(
                None,
                ("chunk", "job name", "job ID", "elements", "states", "done", "failed", "running"),
                job_rows,
            )
        if show_elements or len(launch["elements"]) <= 16:
            print_table(
                None,
                (
                    "element",
                    "job ID",
                    "index",
                    "state",
                    "reason",
                    "workers",
                    "done",
                    "failed",
                    "running task",
                ),
                [
                    (
                        e["element"],
                        e["job_id"] or "-",
                        "" if e["index"] is None else e["index"],
                        e["state"],
                        e["reason"] or "",
                        _worker_summary(e["workers"]),
                        e["tasks_completed"],
                        e["tasks_failed"],
                        ",".join(map(str, e["current_tasks"])),
                    )
                    for e in launch["elements"]
                ],
            )
    by = stats["by_status"]
    total = stats["total"]
    done = by["completed"] + by["failed"] + by["canceled"]
    console.print(
        f"queue: {by['pending']} pending, {by['running']} running, "
        f"{by['completed']} completed, {by['failed']} failed, "
        f"{by['canceled']} canceled ({stats['workers_running']} worker(s) running)",
        highlight=False,
    )
    if total:
        console.print(ProgressBar(total=total, completed=done, width=50))
    for note in report.notes:
        console.print(f"[dim]note: {note}[/dim]", highlight=False)
    console.print(
        f"[dim]{report.scheduler_calls} scheduler call(s), "
        f"{report.connections} SSH connection(s)[/dim]",
        highlight=False,
    )


def _count_states(elements) -> str:
    counts: dict[str, int] = {}
    for e in elements:
        counts[e["state"]] = counts.get(e["state"], 0) + 1
    return ", ".join(f"{n} {s.lower()}" for s, n in sorted(counts.items()))


def _worker_summary(ws) -> str:
    return ", ".join(
        f"{w['id']}:{w['status']}" + (f"({w['exit_reason']})" if w["exit_reason"] else "")
        for w in ws
    )


@click.command()
@click.argument("launch_id")
@click.option(
    "--element",
    type=click.IntRange(min=0),
    default=None,
    help="Cancel only this array element (numbered across the launch's chunks).",
)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def cancel(ctx, launch_id, element, as_json):
    """Cancel a launch's jobs and return the tasks its workers held to the queue."""
    from hpclaunch.launches import track

    engine, _ = _engine_and_url(ctx)
    result = track.cancel(engine, launch_id, element=element)
    if as_json:
        print_json(result)
        return
    what = (
        f"element {element} of launch {launch_id}" if element is not None else f"launch {launch_id}"
    )
    click.echo(
        f"canceled {what} (job ID(s) {', '.join(result['job_ids']) or 'none'}); "
        f"{len(result['tasks_returned'])} task(s) back on the queue"
    )
    if not result["gone"]:
        click.echo(
            "note: some jobs had not left the scheduler's queue yet; their tasks "
            "return when their leases expire",
            err=True,
        )


@click.command()
@click.argument("launch_id")
@click.option(
    "--element",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Array element (numbered across the launch's chunks).",
)
@click.option("--tail", type=click.IntRange(min=1), default=None, help="Only the last N lines.")
@click.option(
    "--follow",
    "-f",
    is_flag=True,
    help="Keep printing the workers' output as it comes, until the element ends (or Ctrl-C).",
)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def logs(ctx, launch_id, element, tail, follow, as_json):
    """Show an array element's output: its workers', then the scheduler's -o/-e files.

    The workers write to files in the launch folder while they run (fetched over SFTP
    for remote sites); the scheduler's files hold the batch shell's own messages.
    """
    from hpclaunch.launches import track

    engine, _ = _engine_and_url(ctx)
    if follow:
        if as_json:
            raise UserError("--follow prints output as it comes; it cannot be combined with --json")
        _follow_logs(engine, launch_id, element)
        return
    result = track.logs(engine, launch_id, element=element, tail=tail)
    live = _read_worker_logs(engine, launch_id, element, tail)
    result = {**result, **live}
    if as_json:
        print_json(result)
        return
    labels = ("workers_stdout", "workers_stderr", "stdout", "stderr")
    if all(result[label] is None for label in labels):
        raise UserError(
            f"no output yet for element {element} of launch {launch_id} "
            f"(looked for {result['workers_stdout_path']} and {result['stdout_path']})"
        )
    for label in labels:
        click.echo(f"==> {result[label + '_path']} <==")
        click.echo(result[label] if result[label] is not None else "(missing)\n", nl=False)


def _worker_log_files(engine, launch_id: str, element: int) -> tuple[dict, tuple[str, str]]:
    """The launch row and where element ``element``'s workers write (Scheduler names them)."""
    from hpclaunch.launches import records, track
    from hpclaunch.schedulers import get_scheduler

    launch = records.get_launch(engine, launch_id)
    elements = track.expected_elements(launch)
    if not 0 <= element < len(elements):
        raise UserError(f"launch {launch_id} has elements 0-{len(elements) - 1}, not {element}")
    el = elements[element]
    scheduler = get_scheduler(launch["scheduler"])
    return launch, scheduler.worker_log_paths(launch["log_dir"], el["job_name"], el["index"])


def _read_files(launch: dict, paths: tuple[str, ...], pool) -> list[bytes | None]:
    from pathlib import Path

    transport = pool.get(launch) if launch["host"] else None
    out: list[bytes | None] = []
    for path in paths:
        try:
            out.append(transport.read_file(path) if transport else Path(path).read_bytes())
        except OSError:
            out.append(None)
    return out


def _read_worker_logs(engine, launch_id: str, element: int, tail: int | None) -> dict[str, Any]:
    from hpclaunch.launches import track

    launch, (out_path, err_path) = _worker_log_files(engine, launch_id, element)
    pool = track.TransportPool()
    try:
        data = _read_files(launch, (out_path, err_path), pool)
    finally:
        pool.close()
    result: dict[str, Any] = {"workers_stdout_path": out_path, "workers_stderr_path": err_path}
    for label, raw in zip(("workers_stdout", "workers_stderr"), data, strict=True):
        text = None if raw is None else raw.decode("utf-8", errors="replace")
        if text is not None and tail:
            text = "\n".join(text.splitlines()[-tail:]) + ("\n" if text else "")
        result[label] = text
    return result


def follow_output(read, ended, echo, *, interval: float = 2.0, sleep=time.sleep) -> None:
    """Print what was appended to the files since the last poll, until ``ended()``.

    ``read()`` returns each file's whole content (None while missing); ``ended()``
    is asked before reading, so what was written before the end is still printed.
    A file that shrank (rotated, truncated) is printed again from its start.
    """
    offsets: dict[int, int] = {}
    while True:
        finished = ended()
        for number, data in enumerate(read()):
            if data is None:
                continue
            seen = offsets.get(number, 0)
            if len(data) < seen:
                seen = 0
            if len(data) > seen:
                echo(number, data[seen:])
            offsets[number] = len(data)
        if finished:
            return
        sleep(interval)


def _follow_logs(engine, launch_id: str, element: int) -> None:
    """``logs --follow``: poll the workers' files over the transport; ask status now and then."""
    from hpclaunch.launches import track

    launch, paths = _worker_log_files(engine, launch_id, element)
    pool = track.TransportPool()
    polls = {"n": 0}

    def ended() -> bool:
        polls["n"] += 1
        if polls["n"] % 8 != 1:  # one scheduler call every ~16 s, not every poll
            return False
        report = track.status(engine, launch_id=launch_id)
        (view,) = [v for v in report.launches if v["id"] == launch_id]
        return view["elements"][element]["state"] not in track.ACTIVE

    def echo(number: int, data: bytes) -> None:
        click.echo(data.decode("utf-8", errors="replace"), nl=False, err=number == 1)

    click.echo(f"==> {paths[0]} (stderr: {paths[1]}) <==", err=True)
    try:
        follow_output(lambda: _read_files(launch, paths, pool), ended, echo)
    except KeyboardInterrupt:
        pass
    finally:
        pool.close()


@click.command()
@click.option("--site", default=None)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def launches(ctx, site, as_json):
    """List what was submitted, where, with which job IDs."""
    from hpclaunch.launches import records

    engine, _ = _engine_and_url(ctx)
    rows = records.list_launches(engine, site=site)
    for row in rows:
        for job in row["jobs"]:
            job.pop("script", None)
    table = [
        (
            r["id"],
            r["site"],
            r["host"] or "",
            r["scheduler"],
            r["status"],
            fmt_time(r["submitted_at"]),
            r["submitted_by"] or "",
            r["workers"],
            ", ".join(j["job_id"] or "-" for j in r["jobs"][:6])
            + (" ..." if len(r["jobs"]) > 6 else ""),
        )
        for r in rows
    ]
    emit(
        as_json,
        rows,
        lambda: print_table(
            None,
            (
                "launch",
                "site",
                "host",
                "scheduler",
                "status",
                "submitted",
                "by",
                "workers",
                "job IDs",
            ),
            table,
            empty="no launches yet",
        ),
    )


def _print_reconciled(result) -> None:
    if result is None:
        return
    for action in result.actions:
        click.echo(
            f"launch {action.launch_id} element {action.element} ended {action.state}: "
            f"task {action.task_id} {action.outcome}"
        )
    for launch_id in result.broken:
        click.echo(
            f"launch {launch_id} is broken: its elements end before any worker claims "
            "a task; `hpclaunch status --launch ID` shows why",
            err=True,
        )


@click.command()
@click.option("--site", default=None, help="Only launches to this site.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def reconcile(ctx, site, as_json):
    """Turn scheduler verdicts (TIMEOUT, OUT_OF_MEMORY, ...) into task outcomes now."""
    from hpclaunch.launches import track
    from hpclaunch.launches.reconcile import ReconcileResult, to_dict

    engine, _ = _engine_and_url(ctx)
    report = track.status(engine, site=site)
    result = report.reconciled or ReconcileResult()
    if as_json:
        print_json({**to_dict(result), "scheduler_calls": report.scheduler_calls})
        return
    _print_reconciled(result)
    click.echo(
        f"{len(result.actions)} task(s) settled, {len(result.broken)} launch(es) marked "
        f"broken ({report.scheduler_calls} scheduler call(s))"
    )
