"""Launch commands: submit, status, cancel, logs, launches."""

from __future__ import annotations

import time
from typing import Any

import click

from hpclaunch.cli.output import emit, fmt_time, print_json, print_table
from hpclaunch.cli.sites_cmds import collect_overrides, override_options, warn_shadowing
from hpclaunch.cli.validate import COUNT, Duration, worker_tags_option
from hpclaunch.errors import UserError


def _queue_and_url(ctx: click.Context):
    """The queue connection (``queue.driver``, the one runtime path) and its URL.

    It lives as long as the command; ``db.call`` re-opens it through an outage.
    """
    from hpclaunch.queue import db
    from hpclaunch.queue.urls import resolve_database_url

    url = resolve_database_url(ctx.obj["database_url"])
    return db.connect(url), url


@click.command()
@click.option("--site", default=None, metavar="NAME", help="Site profile (or a .yaml path).")
@click.option("--workers", "-n", default=None, type=COUNT, help="Number of workers to start.")
@click.option(
    "--resume",
    "resume_id",
    default=None,
    metavar="LAUNCH",
    help="Submit the jobs a partial launch could not (refused at a site's job limit).",
)
@click.option(
    "--keep", is_flag=True, help="Elastic: keep workers topped up until the queue drains."
)
@click.option("--max-workers", type=COUNT, default=None, help="--keep: at most this many workers.")
@click.option(
    "--drain-within",
    type=Duration(1.0),
    default=None,
    help="--keep: drain the pending work within this time (default: one walltime).",
)
@click.option(
    "--max-node-hours",
    type=click.FloatRange(min=0, min_open=True, max=1e9),
    default=None,
    help="--keep: stop submitting once the workers used this many node-hours.",
)
@click.option("--once", is_flag=True, help="--keep: one cycle, then exit (for cron).")
@click.option(
    "--every",
    type=Duration(1.0),
    default=30.0,
    show_default=True,
    help="--keep: seconds per cycle.",
)
@override_options
@click.option(
    "-t",
    "--tag",
    "tags",
    multiple=True,
    metavar="TAG",
    callback=worker_tags_option,
    help="Worker tags (replace the profile's).",
)
@click.option("--dry-run", is_flag=True, help="Show the plan and scripts; submit nothing.")
@click.option(
    "--force", is_flag=True, help="Submit even though the site's last launch was marked broken."
)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def submit(ctx, site, workers, resume_id, tags, dry_run, force, as_json, **kwargs):
    """Render, upload and submit worker job arrays to a site; record the launch.

    \b
      hpclaunch submit --site longleaf --workers 50
      hpclaunch submit --site local --workers 4        # no scheduler: 4 processes here
      hpclaunch submit --resume 3fa9c0d1e2             # the rest of a partial launch
    """
    from hpclaunch import sites as site_api
    from hpclaunch.launches import submit as submitting

    keep = {
        k: kwargs.pop(k)
        for k in ("keep", "max_workers", "drain_within", "max_node_hours", "once", "every")
    }
    if keep["keep"]:
        if (
            site is None
            or keep["max_workers"] is None
            or workers is not None
            or resume_id
            or dry_run
        ):
            raise UserError(
                "submit --keep needs --site NAME and --max-workers N (not --workers, --resume "
                "or --dry-run): it submits as many workers as the queue needs, up to N"
            )
        _keep(ctx, site, list(tags), keep, as_json, kwargs)
        return
    if (
        any(keep[k] not in (None, False) for k in ("max_workers", "drain_within", "max_node_hours"))
        or keep["once"]
    ):
        raise UserError("--max-workers, --drain-within, --max-node-hours and --once go with --keep")
    if resume_id is not None:
        if site or workers or tags or dry_run or any(v not in (None, ()) for v in kwargs.values()):
            raise UserError(
                "--resume LAUNCH takes no --site, --workers, overrides or --dry-run: it "
                "submits the rest of that launch as it was planned"
            )
        _resume(ctx, resume_id, as_json)
        return
    if site is None or workers is None:
        raise UserError(
            "submit needs --site NAME and --workers N (or --resume LAUNCH for a partial launch)"
        )

    profile = site_api.load_profile(site, collect_overrides(kwargs))
    warn_shadowing(site)
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
    conn, url = _queue_and_url(ctx)
    result = submitting.submit(conn, url, profile, workers, tags=list(tags) or None, force=force)
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
                "notes": result.notes,
                "counted_jobs": result.plan.counted_jobs,
            }
        )
        return
    for warning in result.plan.warnings:
        click.echo(f"warning: {warning}", err=True)
    for note in result.notes:
        click.echo(f"note: {note}", err=True)
    ids = ", ".join(j["job_id"] for j in result.jobs)
    click.echo(
        f"launch {result.plan.launch_id}: {workers} worker(s) on {profile.name} "
        f"({profile.host or 'this machine'}); job ID(s) {ids}"
    )
    click.echo(f"scripts and logs in {result.jobs[0]['script_path'].rsplit('/', 1)[0]}")


def _keep(
    ctx: click.Context, site: str, tags: list[str], keep: dict, as_json: bool, kwargs
) -> None:
    """``submit --keep``: the elastic loop, one line per cycle."""
    from hpclaunch import sites as site_api
    from hpclaunch.launches import elastic

    profile = site_api.load_profile(site, collect_overrides(kwargs))
    warn_shadowing(site)
    conn, url = _queue_and_url(ctx)
    settings = elastic.Settings(
        max_workers=keep["max_workers"],
        drain_within=keep["drain_within"] or float(profile.resources.walltime_seconds),
        max_node_hours=keep["max_node_hours"],
        every=keep["every"],
    )

    def report(c: elastic.Cycle) -> None:
        if as_json:
            print_json(
                {
                    "alive": c.alive,
                    "wanted": c.wanted,
                    "submitted": c.submitted,
                    "node_hours": round(c.node_hours, 4),
                    "stop": c.stop,
                    "held_elsewhere": c.held_elsewhere,
                    "notes": c.notes,
                }
            )
            return
        if c.held_elsewhere:
            click.echo(f"{profile.name}: another hpclaunch keeps this site; waiting")
            return
        click.echo(
            f"{profile.name}: {c.alive} worker(s) alive, {c.wanted} wanted, {c.submitted} "
            f"submitted" + (f"; stopped submitting: {c.stop}" if c.stop else "")
        )
        for note in c.notes:
            click.echo(f"note: {note}", err=True)

    tags = tags or list(profile.worker.tags)
    elastic.run(conn, url, profile, tags, settings, once=keep["once"], report=report)


def _resume(ctx: click.Context, launch_id: str, as_json: bool) -> None:
    """``submit --resume``: what was sent now, and what still waits."""
    from hpclaunch.launches.resume import resume

    conn, url = _queue_and_url(ctx)
    result = resume(conn, url, launch_id)
    if as_json:
        print_json(
            {
                "launch_id": launch_id,
                "jobs": [
                    {k: j[k] for k in ("chunk", "job_name", "job_id", "elements", "script_path")}
                    for j in result.jobs
                ],
                "scheduler_calls": result.scheduler_calls,
                "notes": result.notes,
            }
        )
        return
    for note in result.notes:
        click.echo(f"note: {note}", err=True)
    ids = ", ".join(j["job_id"] for j in result.jobs) or "none"
    click.echo(f"launch {launch_id}: submitted {len(result.jobs)} more job(s); job ID(s) {ids}")


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
    """Queue and scheduler state of launches, in one view (one scheduler call per site).

    The view is read first, then recorded (verdicts become task outcomes). A watch
    keeps one transport pool, so every refresh reuses the same SSH login.
    """
    from hpclaunch.launches import reconcile as reconciler
    from hpclaunch.launches import status as launch_status
    from hpclaunch.launches.pool import TransportPool
    from hpclaunch.queue import db, store

    conn, _ = _queue_and_url(ctx)
    with TransportPool() as pool:
        while True:
            report = db.call(
                conn,
                launch_status.observe,
                pool,
                site=site,
                launch_id=launch_id,
                include_finished=include_finished,
            )
            reconciled = db.call(conn, reconciler.apply, report, pool)
            stats = db.call(conn, store.stats)
            silent = db.call(conn, store.silent_owners)
            if as_json:
                print_json(
                    {
                        "launches": report.launches,
                        "queue": stats,
                        "reconciled": reconciler.to_dict(reconciled),
                        "scheduler_calls": report.scheduler_calls,
                        "ssh_connections": report.connections,
                        "notes": report.notes,
                        "silent_owners": silent,
                    }
                )
            else:
                _print_reconciled(reconciled)
                _print_status(report, stats, show_elements, silent)
            if not watch:
                return
            time.sleep(interval)
            if not as_json:
                click.clear()


def _print_status(
    report, stats: dict[str, Any], show_elements: bool, silent: list[dict] | None = None
) -> None:
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
    for row in silent or []:  # why a launch has not finished yet
        silent_for = (
            "gone" if row["silent_for"] is None else f"silent for {row['silent_for']:.0f} s"
        )
        waits = f"; worker {row['watcher_id']} waits for it" if row["watcher_id"] else ""
        console.print(
            f"task {row['task_id']}: owner worker {row['worker_id']} {silent_for}, "
            f"lease ends in {max(row['lease_ends_in'] or 0, 0):.0f} s{waits}",
            highlight=False,
        )
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
    from hpclaunch.launches.cancel import cancel as cancel_launch
    from hpclaunch.launches.pool import TransportPool

    conn, _ = _queue_and_url(ctx)
    with TransportPool() as pool:
        result = cancel_launch(conn, launch_id, pool, element=element)
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
    from hpclaunch.launches import logs as launch_logs
    from hpclaunch.launches.pool import TransportPool

    conn, _ = _queue_and_url(ctx)
    if follow and as_json:
        raise UserError("--follow prints output as it comes; it cannot be combined with --json")
    with TransportPool() as pool:
        if follow:

            def echo(number: int, data: bytes) -> None:
                click.echo(data.decode("utf-8", errors="replace"), nl=False, err=number == 1)

            try:
                launch_logs.follow(
                    conn,
                    launch_id,
                    pool,
                    echo,
                    element=element,
                    announce=lambda paths: click.echo(
                        f"==> {paths[0]} (stderr: {paths[1]}) <==", err=True
                    ),
                )
            except KeyboardInterrupt:
                pass
            return
        result = launch_logs.logs(conn, launch_id, pool, element=element, tail=tail)
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


@click.group(invoke_without_command=True)
@click.option("--site", default=None)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def launches(ctx, site, as_json):
    """List what was submitted, where, with which job IDs (or: clean)."""
    if ctx.invoked_subcommand is not None:
        return
    from hpclaunch.queue import launch_rows

    conn, _ = _queue_and_url(ctx)
    rows = launch_rows.list_launches(conn, site=site)
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
    from hpclaunch.launches import reconcile as reconciler
    from hpclaunch.launches import status as launch_status
    from hpclaunch.launches.pool import TransportPool

    conn, _ = _queue_and_url(ctx)
    with TransportPool() as pool:
        report = launch_status.observe(conn, pool, site=site)
        result = reconciler.apply(conn, report, pool)
    if as_json:
        print_json({**reconciler.to_dict(result), "scheduler_calls": report.scheduler_calls})
        return
    _print_reconciled(result)
    click.echo(
        f"{len(result.actions)} task(s) settled, {len(result.broken)} launch(es) marked "
        f"broken ({report.scheduler_calls} scheduler call(s))"
    )


@launches.command("clean")
@click.argument("launch_id", required=False)
@click.option(
    "--older-than",
    "days",
    type=click.FloatRange(0, 36500),
    default=None,
    metavar="DAYS",
    help="Every launch submitted more than DAYS days ago.",
)
@click.option("--dry-run", is_flag=True, help="Say what would be removed; remove nothing.")
@click.pass_context
def launches_clean(ctx, launch_id, days, dry_run):
    """Remove a finished launch's folder (scripts and logs) on the cluster.

    Refuses while any of its jobs is alive; never removes anything but
    <workdir>/<launch id>.
    """
    from hpclaunch.cli.results_cmds import size_text
    from hpclaunch.launches import clean
    from hpclaunch.launches.pool import TransportPool

    if (launch_id is None) == (days is None):
        raise UserError("give a LAUNCH or --older-than DAYS (one of them)")
    conn, _ = _queue_and_url(ctx)
    ids = [launch_id] if launch_id else clean.older_than(conn, days)
    total, refused = 0, 0
    with TransportPool() as pool:
        for one in ids:
            try:
                done = clean.clean(conn, one, pool, dry_run=dry_run)
            except UserError as exc:
                if launch_id:
                    raise
                refused += 1
                click.echo(f"skipped: {exc}", err=True)
                continue
            total += done["bytes"]
            if done["bytes"] or done["removed"]:
                verb = "would remove" if dry_run else "removed"
                click.echo(f"{verb} {done['path']} ({size_text(done['bytes'])})")
            else:
                click.echo(f"launch {one}: {done['path']} is already gone")
    cleaned, freed = ("would clean", "would free") if dry_run else ("cleaned", "freed")
    click.echo(f"{len(ids) - refused} launch(es) {cleaned}, {size_text(total)} {freed}")
