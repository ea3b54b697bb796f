"""Queue commands: enqueue, tasks, batches, workers, stats, db."""

from __future__ import annotations

import click

from hpclaunch.cli.output import emit, fmt_duration, fmt_time, print_table, printable
from hpclaunch.cli.validate import ATTEMPTS, COUNT, PRIORITY, ROW_ID, Seconds, tags_option
from hpclaunch.errors import UserError
from hpclaunch.states import TaskStatus


def _run(ctx: click.Context, fn, *args, **kwargs):
    """``fn(conn, ...)`` on the queue, or asked of the server (see ``cli.queue_access``)."""
    from hpclaunch.cli.queue_access import run

    return run(ctx, fn, *args, **kwargs)


@click.command(context_settings={"ignore_unknown_options": True})
@click.option(
    "-t",
    "--tag",
    "tags",
    multiple=True,
    callback=tags_option,
    help="Task tag (repeatable; default: default).",
)
@click.option("--priority", type=PRIORITY, default=0, show_default=True, help="Higher runs first.")
@click.option("--max-attempts", type=ATTEMPTS, default=3, show_default=True)
@click.option(
    "--timeout",
    type=Seconds(allow_zero=False),
    default=None,
    metavar="SECONDS",
    help="Kill the task after this long.",
)
@click.option(
    "--expected-runtime",
    type=Seconds(allow_zero=False),
    default=None,
    metavar="SECONDS",
    help="How long it should take (deadline-aware workers use it).",
)
@click.option("--name", default=None, help="A label for the task.")
@click.option("--shell", is_flag=True, help="Run COMMAND as one shell string.")
@click.option("--cwd", default=None, help="Working directory of the command.")
@click.option(
    "-e",
    "--env",
    "env",
    multiple=True,
    metavar="NAME=VALUE",
    help="Environment variable for the command (repeatable).",
)
@click.option(
    "--call",
    "target",
    default=None,
    metavar="PKG.MOD:FUNC",
    help="Enqueue a Python call instead of a command.",
)
@click.option("--args", "args_json", default=None, metavar="JSON", help="JSON list for --call.")
@click.option(
    "--kwargs", "kwargs_json", default=None, metavar="JSON", help="JSON object for --call."
)
@click.option(
    "--engine",
    default=None,
    metavar="NAME",
    help="Enqueue one engine task (like one run of a batch file's engine).",
)
@click.option(
    "--param", "param_json", default=None, metavar="JSON", help="Any JSON value for --engine."
)
@click.option(
    "-f",
    "--file",
    "batch_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="A batch file (YAML): many tasks in one transaction.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the new IDs as JSON.")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def enqueue(
    ctx,
    tags,
    priority,
    max_attempts,
    timeout,
    expected_runtime,
    name,
    shell,
    cwd,
    env,
    target,
    args_json,
    kwargs_json,
    engine,
    param_json,
    batch_file,
    as_json,
    command,
):
    """Put tasks on the queue.

    \b
      hpclaunch enqueue -t small -- python simulate.py --seed 3
      hpclaunch enqueue --call mypkg.mod:func --args '[1, 2]'
      hpclaunch enqueue --engine dummy --param '{"step_count": 3}'
      hpclaunch enqueue --file sweep.yaml
    """
    from hpclaunch.queue import store
    from hpclaunch.queue.batches import TaskSpec, load_batch_file
    from hpclaunch.tasks.payloads import (
        call_payload,
        canonical_tags,
        check_limits,
        command_payload,
        engine_payload,
        parse_json_arg,
    )

    if command and command[0].startswith("-"):
        raise UserError(
            f"{command[0]!r} is not an option of enqueue (see `hpclaunch enqueue --help`); "
            "a command goes after `--`, e.g. enqueue -t small -- python sim.py"
        )
    modes = sum(bool(x) for x in (command, target, engine is not None, batch_file))
    if modes != 1:
        raise UserError("give exactly one of: a command after `--`, --call, --engine or --file")
    if param_json is not None and engine is None:
        raise UserError("--param goes with --engine (a call takes --args/--kwargs)")
    if batch_file:
        from hpclaunch.queue import simx

        batch = load_batch_file(batch_file)
        for warning in batch.warnings:
            click.echo(f"warning: {warning}", err=True)
        # The direct-database CLI is the administrator: any user/group is allowed.
        batch_id, ids = _run(ctx, simx.enqueue_batch, batch, simx.ADMINISTRATOR)
        if as_json:
            from hpclaunch.cli.output import print_json

            print_json({"batch_id": batch_id, "task_ids": ids})
        else:
            click.echo(
                f"batch {batch_id} ({batch.name}): {len(ids)} tasks enqueued "
                f"(IDs {ids[0]}-{ids[-1]})"
            )
        return
    check_limits(
        priority=priority,
        max_attempts=max_attempts,
        timeout=timeout,
        expected_runtime=expected_runtime,
    )
    if target:
        payload = call_payload(
            target,
            parse_json_arg(args_json, name="--args", expect=list),
            parse_json_arg(kwargs_json, name="--kwargs", expect=dict),
        )
        kind = "call"
    elif engine is not None:
        if args_json or kwargs_json:
            raise UserError("--args/--kwargs go with --call; an engine takes --param")
        if shell or cwd or env:
            raise UserError("--shell, --cwd and --env go with a command, not --engine")
        param = (
            None
            if param_json is None
            else parse_json_arg(param_json, name="--param", expect=object)
        )
        # The batch loader's builder: the same payload as one run of a batch file.
        payload = engine_payload(engine, param, 0)
        kind = "engine"
    else:
        if args_json or kwargs_json:
            raise UserError("--args/--kwargs go with --call")
        env_map = {}
        for item in env:
            key, sep, value = item.partition("=")
            if not sep:
                raise UserError(f"--env {item!r}: expected NAME=VALUE")
            env_map[key] = value
        payload = command_payload(list(command), shell=shell, cwd=cwd, env=env_map)
        kind = "command"
    spec = TaskSpec(
        kind=kind,
        payload=payload,
        tags=canonical_tags(tags),
        priority=priority,
        max_attempts=max_attempts,
        timeout=timeout,
        expected_runtime=expected_runtime,
        name=name,
        engine=engine,
    )
    task_id = _run(ctx, store.insert_tasks, [spec])[0]
    if as_json:
        from hpclaunch.cli.output import print_json

        print_json({"task_ids": [task_id]})
    else:
        click.echo(f"task {task_id} enqueued (tags {spec.tags})")


def _task_rows(rows):
    return [
        (
            r["id"],
            r["name"] or "",
            f"engine:{r['engine']}" if r.get("engine") else r["kind"],
            r["status"],
            r["tags"],
            f"{r['attempts']}/{r['max_attempts']}",
            r["worker_id"],
            r["exit_code"],
            r["reason"],
            fmt_duration(r["started_at"], r["finished_at"]),
        )
        for r in rows
    ]


TASKS_SHOWN = 100  # a listing reads and prints this many rows unless told otherwise

TASK_COLUMNS = (
    "ID",
    "name",
    "kind",
    "status",
    "tags",
    "attempts",
    "worker",
    "exit",
    "reason",
    "runtime",
)


@click.group(invoke_without_command=True)
@click.option(
    "--status",
    type=click.Choice([s.value for s in TaskStatus]),
    default=None,
)
@click.option("--tag", default=None, help="Only tasks with this tag.")
@click.option("--batch", "batch_id", type=ROW_ID, default=None, help="Only tasks of this batch.")
@click.option(
    "--limit",
    type=COUNT,
    default=TASKS_SHOWN,
    show_default=True,
    help="Show the newest N matching tasks.",
)
@click.option("--all", "show_all", is_flag=True, help="Show every matching task.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def tasks(ctx, status, tag, batch_id, limit, show_all, as_json):
    """List tasks, the newest 100 by default (or: show, retry, cancel, reap)."""
    if ctx.invoked_subcommand is not None:
        return
    from hpclaunch.queue import store

    fetch = None if show_all else limit + 1  # one more: was anything left out?
    rows = _run(
        ctx, store.list_tasks, status=status, tag=tag, batch_id=batch_id, limit=fetch, newest=True
    )
    if fetch is not None and len(rows) == fetch:
        rows = rows[1:]
        click.echo(f"(the newest {limit} tasks shown: --limit N or --all for more)", err=True)
    emit(as_json, rows, lambda: print_table(None, TASK_COLUMNS, _task_rows(rows), empty="no tasks"))


@tasks.command("show")
@click.argument("task_id", type=ROW_ID)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def tasks_show(ctx, task_id, as_json):
    """One task in full: payload, result, error and the tail of its output."""
    import json

    from hpclaunch.queue import store

    task, history = _run(ctx, store.task_and_attempts, task_id)
    task.pop("pickled", None)
    has_pickle = task.pop("result_pickled", None) is not None
    has_pickle = task.pop("has_pickled_result", has_pickle)  # the server's word for it
    task.pop("claim_token", None)
    if as_json:
        from hpclaunch.cli.output import print_json

        print_json({**task, "attempt_history": history})
        return
    lines = [
        f"task {task['id']}" + (f" ({printable(task['name'])})" if task["name"] else ""),
        f"  status      {task['status']}" + (f" ({task['reason']})" if task["reason"] else ""),
        f"  kind        {task['kind']}",
        f"  payload     {json.dumps(json.loads(task['payload']))}",
        f"  tags        {task['tags']}    priority {task['priority']}",
        f"  attempts    {task['attempts']}/{task['max_attempts']}",
        f"  created     {fmt_time(task['created_at'])}",
        f"  started     {fmt_time(task['started_at'])}",
        f"  finished    {fmt_time(task['finished_at'])}",
        f"  worker      {task['worker_id'] or ''}",
        f"  exit code   {'' if task['exit_code'] is None else task['exit_code']}",
    ]
    if task["result"] is not None:
        lines.append(f"  result      {printable(task['result'])}")
    elif has_pickle:
        lines.append("  result      (pickled; fetch it with Queue().task(ID).result())")
    if task["log_dir"]:
        lines.append(f"  logs        {task['log_dir']}")
    click.echo("\n".join(lines))
    for label, key in (
        ("error", "error"),
        ("stdout (tail)", "stdout_tail"),
        ("stderr (tail)", "stderr_tail"),
    ):
        if task[key]:
            click.echo(f"--- {label} ---")
            click.echo(printable(task[key].rstrip("\n")[-4000:]))
    if history:
        click.echo("--- attempts ---")
        for a in history:
            where = a["host"] or "?"
            if a["job_id"]:
                where += f" job {a['job_id']}"
                if a["array_index"] is not None:
                    where += f"[{a['array_index']}]"
            click.echo(
                f"  #{a['attempt']} {a['outcome']:<9} {a['reason'] or '':<14} "
                f"worker {a['worker_id']} on {where}  ended {fmt_time(a['finished_at'])}"
            )


def _register_why() -> None:
    from hpclaunch.cli.fault_cmds import why

    tasks.add_command(why)


_register_why()


@tasks.command("retry")
@click.argument("task_ids", type=ROW_ID, nargs=-1)
@click.option("--failed", "all_failed", is_flag=True, help="Retry every failed task.")
@click.pass_context
def tasks_retry(ctx, task_ids, all_failed):
    """Put failed or canceled tasks back on the queue (with a fresh attempt budget)."""
    from hpclaunch.queue import operations

    if task_ids and all_failed:
        raise UserError("name task IDs or pass --failed, not both")
    retried = _run(ctx, operations.retry, task_ids, all_failed=all_failed)
    click.echo(f"{len(retried)} task(s) back on the queue")


@tasks.command("cancel")
@click.argument("task_ids", type=ROW_ID, nargs=-1)
@click.option("--batch", "batch_id", type=ROW_ID, default=None, help="Cancel a whole batch.")
@click.pass_context
def tasks_cancel(ctx, task_ids, batch_id):
    """Cancel pending or running tasks (running ones are stopped by their worker)."""
    from hpclaunch.queue import operations, store

    if task_ids and batch_id is not None:
        raise UserError("name task IDs or pass --batch, not both")
    canceled = _run(ctx, operations.cancel, task_ids, batch_id=batch_id)
    click.echo(f"{len(canceled)} task(s) canceled")
    # Say why a named task was not canceled: only pending and running tasks can be.
    done = set(canceled)
    for task_id in [t for t in dict.fromkeys(task_ids) if t not in done][:20]:
        status = _run(ctx, store.task_status, task_id)
        click.echo(f"task {task_id}: not canceled, it is already {status}", err=True)
    if batch_id is not None and not canceled:
        click.echo(f"batch {batch_id}: no pending or running task left to cancel", err=True)


@tasks.command("reap")
@click.pass_context
def tasks_reap(ctx):
    """Requeue tasks whose worker stopped renewing its lease (or fail them if spent)."""
    from hpclaunch.queue import operations

    def reap_all(conn):
        total = []
        while True:
            reaped = operations.reap(conn)
            total += reaped
            if len(reaped) < operations.REAP_BATCH:
                return total

    total = _run(ctx, reap_all)
    pending = sum(1 for _, s in total if s == TaskStatus.PENDING)
    click.echo(
        f"{len(total)} task(s) reaped: {pending} back to pending, "
        f"{len(total) - pending} failed (attempts spent)"
    )


@click.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def batches(ctx, as_json):
    """List batches with their task counts (or: wait)."""
    if ctx.invoked_subcommand is not None:
        return
    from hpclaunch.queue import store

    rows = _run(ctx, store.list_batches)
    table_rows = [
        (
            b["id"],
            b["name"],
            b["created_by"] or "",
            fmt_time(b["created_at"]),
            b["n_tasks"],
            *[b["counts"][s] for s in TaskStatus],
            "yes" if b["canceled_at"] else "",
        )
        for b in rows
    ]
    emit(
        as_json,
        rows,
        lambda: print_table(
            None,
            (
                "ID",
                "name",
                "user",
                "created",
                "tasks",
                *(s.value for s in TaskStatus),
                "batch canceled",
            ),
            table_rows,
            empty="no batches",
        ),
    )


def _register_wait() -> None:
    from hpclaunch.cli.results_cmds import wait

    batches.add_command(wait)


_register_wait()


@click.command()
@click.option("--all", "include_gone", is_flag=True, help="Include workers long gone.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def workers(ctx, include_gone, as_json):
    """List running workers (with --all, every worker ever registered)."""
    from hpclaunch.queue import store

    rows = _run(ctx, store.list_workers, include_gone=include_gone)

    def job(r):
        if not r["job_id"]:
            return ""
        index = "" if r["array_index"] is None else f"[{r['array_index']}]"
        return f"{r['scheduler']} {r['array_job_id'] or r['job_id']}{index}"

    table_rows = [
        (
            r["id"],
            r["host"],
            r["pid"],
            r["status"],
            r["exit_reason"] or "",
            r["tags"],
            r["mode"],
            job(r),
            r["launch_id"] or "",
            r["completed"],
            r["failed"],
            r["current_task"] or "",
            fmt_time(r["started_at"]),
            fmt_time(r["heartbeat_at"]),
        )
        for r in rows
    ]
    emit(
        as_json,
        rows,
        lambda: print_table(
            None,
            (
                "ID",
                "host",
                "pid",
                "status",
                "exit",
                "tags",
                "mode",
                "job",
                "launch",
                "done",
                "failed",
                "task",
                "started",
                "heartbeat",
            ),
            table_rows,
            empty="no running workers (--all shows past ones)"
            if not include_gone
            else "no workers",
        ),
    )


@click.command()
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def stats(ctx, as_json):
    """Task counts per status and per tag."""
    from hpclaunch.queue import store

    data = _run(ctx, store.stats)

    def show():
        print_table(
            "tasks by status",
            ("status", "count"),
            [*data["by_status"].items(), ("total", data["total"])],
        )
        print_table(
            "tasks by tag",
            ("tag", *(s.value for s in TaskStatus)),
            [(tag, *[c[s] for s in TaskStatus]) for tag, c in sorted(data["by_tag"].items())],
            empty="no tasks",
        )
        click.echo(f"running workers: {data['workers_running']}")

    emit(as_json, data, show)


@click.group()
def db():
    """Create or upgrade the queue database."""


def _revision(url: str) -> str | None:
    from hpclaunch.queue import driver, migrate

    conn = driver.connect(url)
    try:
        return migrate.current_revision(conn)
    finally:
        conn.close()


@db.command("upgrade")
@click.pass_context
def db_upgrade(ctx):
    """Create the tables, or migrate them to this version's schema."""
    from hpclaunch.queue import migrate
    from hpclaunch.queue.urls import redact, resolve_database_url

    url = resolve_database_url(ctx.obj["database_url"])
    migrate.upgrade(url)
    click.echo(f"{redact(url)} is at schema {_revision(url)}")


@db.command("current")
@click.pass_context
def db_current(ctx):
    """Show the database URL (password hidden) and its schema revision."""
    import os

    from hpclaunch.queue.urls import is_sqlite, redact, resolve_database_url, sqlite_path
    from hpclaunch.queue.version import SCHEMA_HEAD

    url = resolve_database_url(ctx.obj["database_url"])
    if is_sqlite(url) and not os.path.getsize(sqlite_path(url)):
        click.echo(f"{redact(url)}: not created yet (any command creates it)")
        return
    rev = _revision(url)
    click.echo(f"{redact(url)}: schema {rev or 'none'} (this hpclaunch needs {SCHEMA_HEAD})")
