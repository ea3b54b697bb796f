"""After a sweep: ``batches wait``, ``results`` and ``purge``.

Parsing and printing only; the work is in ``queue.results``, ``queue.purge`` and
``Queue.batch()``.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterator
from typing import IO, Any

import click

from hpclaunch.cli.output import json_safe
from hpclaunch.cli.validate import ROW_ID, Seconds
from hpclaunch.errors import UserError
from hpclaunch.states import FINISHED_TASK_STATUSES, TaskStatus

#: ``batches wait`` exit codes: all completed, some failed or canceled, timed out.
EXIT_ALL_COMPLETED = 0
EXIT_NOT_ALL_COMPLETED = 1
EXIT_TIMEOUT = 124


def _summary(batch_id: int, counts: dict[str, int]) -> str:
    total = sum(counts.values())
    parts = ", ".join(f"{counts[s]} {s}" for s in TaskStatus if counts[s])
    return f"batch {batch_id}: {total} task(s): {parts or 'none'}"


@click.command("wait")
@click.argument("batch_id", type=ROW_ID)
@click.option(
    "--timeout",
    type=Seconds(allow_zero=True),
    default=None,
    help="Give up after this many seconds (exit 124).",
)
@click.pass_context
def wait(ctx, batch_id, timeout):
    """Wait until every task of a batch is completed, failed or canceled.

    Exit 0 if all completed, 1 if some failed or were canceled, 124 on timeout.
    """
    from hpclaunch.queue.api import Queue

    queue = Queue(ctx.obj["database_url"])
    try:
        batch = queue.batch(batch_id)
        show = _progress_line if sys.stderr.isatty() else None
        try:
            counts = batch.wait(timeout, on_progress=show and (lambda c: show(batch_id, c)))
        except TimeoutError:
            counts = batch.counts()
            _clear(show)
            live = counts[TaskStatus.PENDING] + counts[TaskStatus.RUNNING]
            click.echo(f"{_summary(batch_id, counts)} ({live} not finished after {timeout:g} s)")
            ctx.exit(EXIT_TIMEOUT)
    finally:
        queue.close()
    _clear(show)
    click.echo(_summary(batch_id, counts))
    ok = counts[TaskStatus.COMPLETED] == sum(counts.values())
    ctx.exit(EXIT_ALL_COMPLETED if ok else EXIT_NOT_ALL_COMPLETED)


def _progress_line(batch_id: int, counts: dict[str, int]) -> None:
    total = sum(counts.values()) or 1
    done = sum(counts[s] for s in FINISHED_TASK_STATUSES)
    sys.stderr.write(f"\r{_summary(batch_id, counts)} [{100 * done // total}%]\x1b[K")
    sys.stderr.flush()


def _clear(show) -> None:
    if show is not None:
        sys.stderr.write("\r\x1b[K")
        sys.stderr.flush()


@click.command()
@click.argument("batch_id", type=ROW_ID)
@click.option(
    "--format", "fmt", type=click.Choice(["csv", "json", "jsonl"]), default="csv", show_default=True
)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, writable=True),
    default=None,
    help="Write to FILE instead of standard output.",
)
@click.pass_context
def results(ctx, batch_id, fmt, output):
    """One row per task of a batch: parameters, status, attempts, runtime, exit code,
    result (a flat JSON object becomes columns) and the error line of failures."""
    from hpclaunch.queue import db
    from hpclaunch.queue import results as rows_of

    conn = db.connect(ctx.obj["database_url"])
    try:
        info = db.call(conn, rows_of.batch_info, batch_id)
        header = rows_of.columns(rows_of.grid(info["spec"]))
        extra = rows_of.all_result_keys(conn, batch_id, call=db.call) if fmt == "csv" else []
        stream = rows_of.iter_rows(conn, batch_id, call=db.call)
        if output is None:
            n = _write(fmt, stream, [*header, *extra, "error"], sys.stdout)
        else:
            try:
                handle = open(output, "w", newline="", encoding="utf-8")  # noqa: SIM115
            except OSError as exc:
                raise UserError(f"cannot write {output}: {exc.strerror}") from None
            with handle:
                n = _write(fmt, stream, [*header, *extra, "error"], handle)
            click.echo(f"batch {batch_id}: {n} row(s) written to {output}", err=True)
    finally:
        conn.close()


def _write(fmt: str, rows: Iterator[dict[str, Any]], header: list[str], out: IO[str]) -> int:
    n = 0
    if fmt == "csv":
        writer = csv.DictWriter(out, fieldnames=header, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _cell(v) for k, v in row.items()})
            n += 1
        return n
    if fmt == "json":
        out.write("[")
    for row in rows:
        if fmt == "json":
            out.write(",\n" if n else "\n")
        out.write(json.dumps(json_safe(row), default=str, allow_nan=False))
        if fmt == "jsonl":
            out.write("\n")
        n += 1
    if fmt == "json":
        out.write("\n]\n" if n else "]\n")
    return n


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(json_safe(value), allow_nan=False)
    return json_safe(value)


def size_text(n: int) -> str:
    """Bytes for people: ``512 B``, ``3.2 KiB``, ``1.0 GiB``."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"


@click.command()
@click.option(
    "--older-than",
    "days",
    type=click.FloatRange(0, 36500),
    default=None,
    metavar="DAYS",
    help="Only tasks finished more than DAYS days ago.",
)
@click.option(
    "--status",
    "statuses",
    default="completed,failed,canceled",
    show_default=True,
    help="Comma-separated finished statuses to purge.",
)
@click.option("--batch", "batch_id", type=ROW_ID, default=None, help="Only this batch's tasks.")
@click.option("--dry-run", is_flag=True, help="Say what would be removed; change nothing.")
@click.pass_context
def purge(ctx, days, statuses, batch_id, dry_run):
    """Delete finished tasks, their attempts and their log folders on this machine.

    Never a pending or running task, never a batch with live tasks.
    """
    from hpclaunch.queue import db
    from hpclaunch.queue import purge as purging

    wanted = tuple(dict.fromkeys(s.strip() for s in statuses.split(",") if s.strip()))
    flt = purging.Filter(statuses=wanted, older_than_days=days, batch_id=batch_id)
    conn = db.connect(ctx.obj["database_url"])
    try:
        done = purging.run(conn, flt, dry_run=dry_run, call=db.call)
    finally:
        conn.close()
    verb = "would purge" if dry_run else "purged"
    emptied = f", {done.batches} emptied batch(es)" if done.batches else ""
    click.echo(
        f"{verb} {done.tasks} task(s), {done.attempts} attempt(s){emptied}, "
        f"{done.log_dirs} log folder(s) ({size_text(done.bytes)}"
        f"{' to free' if dry_run else ' freed'})"
    )
    for path in done.failed_dirs:
        click.echo(f"warning: could not remove {path}", err=True)
