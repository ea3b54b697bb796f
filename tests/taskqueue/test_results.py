"""After a sweep: wait for a batch, read its results as a table, purge what is done."""

from __future__ import annotations

import csv
import io
import json
import os
import time
import tracemalloc
from pathlib import Path

import pytest
from queue_helpers import run_cli, start_worker

GRID = "name: grid\ncall: builtins:dict\ntags: [default]\nparams:\n  a: [1, 2, 3]\n  b: [x, y]\n"
SQRT = "name: parse\ncall: json:loads\nmax_attempts: 1\nparams:\n  s: ['4', '{bad']\n"


def drain():
    assert start_worker("--close-on-empty-queue", "-q").wait(timeout=120) == 0


def enqueue(tmp_path: Path, text: str, name: str = "batch.yaml") -> None:
    path = tmp_path / name
    path.write_text(text)
    run_cli("enqueue", "--file", str(path), check=True)


def test_wait_and_results_of_a_grid(queue_url, tmp_path):
    enqueue(tmp_path, GRID)
    drain()
    waited = run_cli("batches", "wait", "1", "--timeout", "30")
    assert waited.returncode == 0, waited.stderr
    assert waited.stdout.strip() == "batch 1: 6 task(s): 6 completed"

    out = run_cli("results", "1", check=True).stdout
    rows = list(csv.DictReader(io.StringIO(out)))
    assert list(rows[0]) == [
        "task_id", "name", "run", "a", "b", "status", "attempts", "runtime", "exit_code",
        "result.a", "result.b", "error",
    ]  # fmt: skip
    got = [(r["run"], r["a"], r["b"], r["status"], r["result.a"], r["result.b"]) for r in rows]
    expected = [(str(i), str(a), b, "completed", str(a), b) for i, (a, b) in enumerate(
        [(1, "x"), (1, "y"), (2, "x"), (2, "y"), (3, "x"), (3, "y")]
    )]  # fmt: skip
    assert got == expected
    assert all(r["attempts"] == "1" and float(r["runtime"]) >= 0 and not r["error"] for r in rows)

    as_json = json.loads(run_cli("results", "1", "--format", "json", check=True).stdout)
    assert [(r["a"], r["b"], r["result.a"], r["result.b"]) for r in as_json] == [
        (a, b, a, b) for a in (1, 2, 3) for b in ("x", "y")
    ]
    target = tmp_path / "out.jsonl"
    written = run_cli("results", "1", "--format", "jsonl", "--output", str(target), check=True)
    assert "6 row(s) written" in written.stderr
    lines = target.read_text().splitlines()
    assert [json.loads(line) for line in lines] == as_json


def test_wait_on_a_partly_failed_batch(queue_url, tmp_path, queue):
    enqueue(tmp_path, SQRT)
    drain()
    waited = run_cli("batches", "wait", "1")
    assert waited.returncode == 1
    assert waited.stdout.strip() == "batch 1: 2 task(s): 1 completed, 1 failed"
    rows = list(queue.batch(1).results())
    assert [(r["s"], r["status"], r.get("result")) for r in rows] == [
        ("4", "completed", 4),
        ("{bad", "failed", None),
    ]
    assert "Expecting property name" in rows[1]["error"] and "\n" not in rows[1]["error"]
    assert queue.batch(1).wait(timeout=1)["failed"] == 1


def test_wait_times_out(queue_url, tmp_path, queue):
    enqueue(tmp_path, SQRT)
    started = time.monotonic()
    waited = run_cli("batches", "wait", "1", "--timeout", "0.5")
    assert waited.returncode == 124
    assert "2 not finished after 0.5 s" in waited.stdout
    assert time.monotonic() - started < 30
    with pytest.raises(TimeoutError, match="2 task"):
        queue.batch(1).wait(timeout=0.2)
    # and finishes once a worker drains it, while waiting
    waiter = start_worker("--close-on-empty-queue", "-q")
    assert run_cli("batches", "wait", "1", "--timeout", "60").returncode == 1
    assert waiter.wait(timeout=60) == 0


@pytest.mark.parametrize(
    "args, message, code",
    [
        (["batches", "wait", "9"], "no batch with ID 9", 3),
        (["results", "9"], "no batch with ID 9", 3),
        (["results", "1", "--format", "xml"], "'xml' is not one of", 2),
        (["purge", "--status", "running"], "purge removes only finished tasks", 2),
        (["purge", "--batch", "9"], "no batch with ID 9", 3),
        (["purge", "--older-than", "-1"], "--older-than", 2),
        (["batches", "wait", "1", "--timeout", "inf"], "--timeout", 2),
    ],
)
def test_bad_input_is_one_line_and_changes_nothing(queue_url, tmp_path, args, message, code):
    enqueue(tmp_path, SQRT)
    out = run_cli(*args)
    assert out.returncode == code, out
    assert message in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert "Traceback" not in out.stderr
    rows = json.loads(run_cli("tasks", "--json", check=True).stdout)
    assert [r["status"] for r in rows] == ["pending", "pending"]


def test_results_of_100000_tasks_stream_in_bounded_memory(queue_url, tmp_path):
    from click.testing import CliRunner

    from hpclaunch.cli import cli
    from hpclaunch.queue import db, store
    from hpclaunch.queue.batches import parse_batch

    n = 100_000
    conn = db.connect(queue_url)
    try:
        store.insert_batch(conn, parse_batch(f"name: big\ncommand: 'true'\nn_runs: {n}\n"))
        with conn.transaction():  # as if workers had run them: each result a flat object
            conn.execute(
                "UPDATE tasks SET status = 'completed', attempts = 1, exit_code = 0, "
                "started_at = created_at, finished_at = created_at + 1, "
                "result = '{\"v\": ' || CAST(id AS TEXT) || '}'"
            )
    finally:
        conn.close()
    target = tmp_path / "big.csv"
    tracemalloc.start()
    try:
        outcome = CliRunner().invoke(
            cli, ["results", "1", "--output", str(target)], catch_exceptions=False
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert outcome.exit_code == 0, outcome.output
    # 100,000 rows as dicts would take well over 50 MB; a page takes a few.
    assert peak < 20 * 2**20, f"peak {peak / 2**20:.1f} MiB"
    with target.open(newline="") as handle:
        rows = csv.DictReader(handle)
        count = 0
        for count, row in enumerate(rows, 1):  # noqa: B007
            assert row["run"] == str(count - 1) and row["result.v"] == row["task_id"]
    assert count == n


def _log_dirs(queue, ids):
    return [queue.task(i).info()["log_dir"] for i in ids]


def test_purge_dry_run_then_purge(queue_url, tmp_path, queue):
    enqueue(tmp_path, "name: echo\ncommand: [echo, '{run}']\nn_runs: 3\n")
    drain()
    dirs = _log_dirs(queue, [1, 2, 3])
    assert all(os.path.isdir(d) for d in dirs)
    dry = run_cli("purge", "--dry-run", check=True).stdout
    assert dry.startswith("would purge 3 task(s), 3 attempt(s), 3 log folder(s) (")
    assert len(json.loads(run_cli("tasks", "--json", check=True).stdout)) == 3
    assert all(os.path.isdir(d) for d in dirs)
    assert "purged 0 task(s)" in run_cli("purge", "--older-than", "1", check=True).stdout
    done = run_cli("purge", "--batch", "1", check=True).stdout
    assert done.startswith("purged 3 task(s), 3 attempt(s), 1 emptied batch(es), 3 log folder(s)")
    assert "freed" in done
    assert json.loads(run_cli("tasks", "--json", check=True).stdout) == []
    assert json.loads(run_cli("batches", "--json", check=True).stdout) == []
    assert not any(os.path.exists(d) for d in dirs)


def test_purge_never_touches_live_work(queue_url, tmp_path, queue):
    from hpclaunch.queue import store

    enqueue(tmp_path, "name: done\ncommand: 'true'\nn_runs: 3\n", "done.yaml")
    drain()
    enqueue(tmp_path, "name: live\ncommand: 'sleep 0.2'\nn_runs: 8\n", "live.yaml")
    alone = queue.enqueue_command(["sleep", "0.3"])
    refused = run_cli("purge", "--batch", "2")
    assert refused.returncode == 2 and "still has 8 pending or running" in refused.stderr
    worker = start_worker("--close-on-empty-queue", "-q")
    purged, seen_live = 0, False
    while worker.poll() is None:
        out = run_cli("purge", check=True).stdout
        purged += int(out.split()[1])
        rows = store.list_tasks(queue.conn)
        live_batch = [r for r in rows if r["batch_id"] == 2]
        if any(r["status"] in ("pending", "running") for r in live_batch):
            seen_live = True
            assert len(live_batch) == 8, live_batch  # a live batch keeps every task
        for row in rows:
            if row["id"] == alone.id and row["status"] in ("pending", "running"):
                assert row["attempts"] <= 1
    assert worker.wait(timeout=60) == 0
    assert seen_live and purged >= 3  # the finished batch went while the other ran
    run_cli("purge", check=True)
    assert json.loads(run_cli("tasks", "--json", check=True).stdout) == []


@pytest.mark.parametrize(
    "argv",
    [
        ["batches", "wait", "1"],
        ["results", "1"],
        ["results", "1", "--format", "json"],
        ["purge", "--dry-run"],
        ["purge"],
    ],
)
def test_after_sweep_commands_run_without_sqlalchemy(queue_url, tmp_path, argv):
    """The one runtime access path: these commands import neither SQLAlchemy nor Alembic."""
    import subprocess
    import sys

    enqueue(tmp_path, GRID)
    drain()
    code = (
        "import sys, hpclaunch.cli as c\n"
        f"try:\n    c.main({argv!r})\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "heavy = [m for m in ('sqlalchemy', 'alembic') if m in sys.modules]\n"
        "print('HEAVY:' + ','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "HEAVY:"


def test_results_json_is_strict_even_for_a_nan_result(queue_url, tmp_path):
    """A call that returns NaN (or infinity) must not make `results` print invalid JSON."""
    enqueue(tmp_path, "name: odd\ncall: json:loads\nparams:\n  s: ['NaN', 'Infinity', '1.5']\n")
    drain()
    for fmt in ("json", "jsonl"):
        out = run_cli("results", "1", "--format", fmt, check=True).stdout
        text = out if fmt == "json" else "[" + ",".join(out.splitlines()) + "]"
        rows = json.loads(text, parse_constant=_refuse_constant)
        assert [r.get("result") for r in rows] == [None, None, 1.5]


def _refuse_constant(name: str):
    pytest.fail(f"results printed {name}, which is not JSON")
