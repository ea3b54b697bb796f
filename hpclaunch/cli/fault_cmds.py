"""``hpclaunch lost`` and ``hpclaunch tasks why``: where work went and why."""

from __future__ import annotations

import click

from hpclaunch.cli.validate import ROW_ID
from hpclaunch.states import TaskStatus


def _connect(ctx: click.Context):
    from hpclaunch.queue import db

    return db.connect(ctx.obj["database_url"])


def _db(conn, fn, *args, **kwargs):
    from hpclaunch.queue import db

    return db.call(conn, fn, *args, **kwargs)


@click.command()
@click.option(
    "--requeue",
    is_flag=True,
    help="Put them back on the queue (a 'lost' attempt each; spent -> failed).",
)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def lost(ctx: click.Context, requeue: bool, as_json: bool) -> None:
    """Running tasks whose workers are gone.

    A worker is gone when its row says it exited or was lost, or its heartbeat
    is older than two leases; a task whose lease expired counts too. --requeue
    gives them back through the same fenced path as the lease reaper.
    """
    from hpclaunch.cli.output import fmt_time, print_json, print_table
    from hpclaunch.queue import history, operations

    conn = _connect(ctx)
    try:
        rows = _db(conn, operations.find_lost)
        requeued: dict[int, str] = {}
        if requeue and rows:
            requeued = dict(_db(conn, operations.requeue_lost, [r["id"] for r in rows]))
    finally:
        conn.close()
    for row in rows:
        row["where"] = history.where(row)
        if requeue:
            row["now"] = requeued.get(row["id"], "already moved")
    if as_json:
        print_json(rows)
        return
    columns = ["task", "attempt", "worker", "where", "worker status", "heartbeat", "since"]
    if requeue:
        columns.append("now")
    table = []
    for r in rows:
        age = "" if r["heartbeat_age"] is None else f"{r['heartbeat_age']:.0f} s ago"
        status = r["worker_status"] or "unknown"
        if r["worker_exit_reason"]:
            status += f" ({r['worker_exit_reason']})"
        line = [
            r["id"],
            f"{r['attempts']}/{r['max_attempts']}",
            r["worker_id"],
            r["where"],
            status,
            age,
            fmt_time(r["started_at"]),
        ]
        if requeue:
            line.append(r["now"])
        table.append(line)
    print_table(None, columns, table, empty="no lost tasks")
    if requeue and rows:
        back = sum(1 for s in requeued.values() if s == TaskStatus.PENDING)
        click.echo(
            f"{len(requeued)} task(s) requeued: {back} back to pending, "
            f"{len(requeued) - back} failed (attempts spent)"
        )


@click.command("why")
@click.argument("task_id", type=ROW_ID)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def why(ctx: click.Context, task_id: int, as_json: bool) -> None:
    """A task's history attempt by attempt, and a one-line verdict."""
    from hpclaunch.cli.output import fmt_duration, fmt_time, print_json
    from hpclaunch.cli.queue_access import run
    from hpclaunch.queue import history

    data = run(ctx, history.explain, task_id)
    if as_json:
        print_json(data)
        return
    task = data["task"]
    click.echo(
        f"task {task['id']}"
        + (f" ({task['name']})" if task["name"] else "")
        + f": {data['verdict']}"
    )
    for a in data["attempts"]:
        parts = [f"  #{a['attempt']} {a['outcome']:<9}", a["reason"] or "-"]
        if a["exit_code"] is not None:
            parts.append(f"exit {a['exit_code']}")
        parts.append(f"worker {a['worker_id'] or '?'} on {a['host'] or '?'}")
        if a["job_id"]:
            index = "" if a["array_index"] is None else f"[{a['array_index']}]"
            parts.append(f"{a['scheduler'] or 'job'} {a['array_job_id'] or a['job_id']}{index}")
        if a["launch_id"]:
            parts.append(f"launch {a['launch_id']}")
        parts.append(
            f"{fmt_time(a['started_at'])} -> {fmt_time(a['finished_at'])}"
            f" ({fmt_duration(a['started_at'], a['finished_at'])})"
        )
        click.echo("  ".join(parts))
        if a["error"]:
            click.echo(f"       {a['error']}")
    if not data["attempts"]:
        click.echo("  no attempt yet")
