"""``tasks`` shows the newest 100 by default, and a table printed to a pipe is
byte for byte what rich prints there, without rich's import and layout cost."""

from __future__ import annotations

import io

import pytest
from queue_helpers import run_cli
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from hpclaunch.cli import output
from hpclaunch.queue import db, store
from hpclaunch.queue.batches import TaskSpec
from hpclaunch.tasks.payloads import command_payload


def _rich(columns, cells, title=None) -> str:
    buffer = io.StringIO()
    table = Table(title=title, header_style="bold", show_lines=False)
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in cells:
        table.add_row(*(escape(v) for v in row))
    Console(file=buffer, width=output.PIPE_WIDTH).print(table)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "rows",
    [
        [(1, None, "pending", "")],
        [(22, "a [bold]b[/bold] c", "completed", "x" * 40), (3, "", "failed", 1.5)],
        [(i, f"sweep[{i}]", "running", "gpu,big") for i in range(30)],
    ],
)
def test_plain_table_is_what_rich_prints_to_a_pipe(rows):
    columns = ("ID", "name", "status", "tags")
    cells = [[output.printable(v) for v in row] for row in rows]
    assert output._plain_table(columns, cells, empty="none") == _rich(columns, cells)


@pytest.mark.parametrize("title", ["tasks by status", "tasks by tag", "t"])
def test_plain_table_with_a_title_is_what_rich_prints(title):
    columns = ("tag", "pending", "running", "completed")
    cells = [["default", "10000", "0", "3"], ["gpu", "1", "2", "3"]]
    assert output._plain_table(columns, cells, empty="-", title=title) == _rich(
        columns, cells, title
    )


def test_tables_rich_would_lay_out_differently_are_left_to_rich():
    columns = ("ID", "name")
    assert output._plain_table(columns, [["1", "ü"]], empty="-") is None  # width rules
    assert output._plain_table(columns, [["1", "y" * 200]], empty="-") is None  # folded
    assert output._plain_table(("a [b]",), [["1"]], empty="-") is None  # header markup
    assert output._plain_table(columns, [["1", "2"]], empty="-", title="x" * 40) is None  # wraps


def test_tasks_lists_the_newest_100_unless_told(queue_url):
    conn = db.connect(queue_url)
    spec = TaskSpec("command", command_payload(["true"]), "default", 0, 3, None, None)
    try:
        store.insert_tasks(conn, [spec] * 150)
    finally:
        conn.close()

    def ids(*args: str) -> list[int]:
        out = run_cli("tasks", *args)
        assert out.returncode == 0, out.stderr
        lines = [ln for ln in out.stdout.splitlines() if ln.startswith("│")]
        return [int(ln.split("│")[1]) for ln in lines]

    assert ids() == list(range(51, 151))
    assert ids("--limit", "5") == [146, 147, 148, 149, 150]
    assert ids("--all") == list(range(1, 151))
    out = run_cli("tasks", "--limit", "5")
    assert "the newest 5 tasks shown" in out.stderr
    assert run_cli("tasks", "--all").stderr == ""
    # Printed to a pipe without importing rich at all.
    out = run_cli("tasks", env={"PYTHONPROFILEIMPORTTIME": "1"})
    imported = {ln.split("|")[-1].strip() for ln in out.stderr.splitlines() if "|" in ln}
    assert "hpclaunch.cli.output" in imported and "rich" not in imported
