"""`hpclaunch tasks why` and `hpclaunch lost`: accounting for every task."""

from __future__ import annotations

import json
import os
import signal

from fault_helpers import fault_table_row, lines, run_cli, start_worker
from waiting import wait_until


def test_task_failing_every_time_is_explained_attempt_by_attempt(queue, db_url):
    handle = queue.enqueue_command("echo boom >&2; exit 7", max_attempts=3)
    assert start_worker("--close-on-empty-queue", "-q").wait(timeout=60) == 0
    shown = run_cli("tasks", "why", str(handle.id), check=True).stdout.splitlines()
    assert shown[0] == f"task {handle.id}: failed: 3 of 3 attempts spent: exit code 7"
    assert [line.split()[:4] for line in shown[1:] if line.lstrip().startswith("#")] == [
        [f"#{n}", "failed", "exit_code", "exit"] for n in (1, 2, 3)
    ]
    data = json.loads(run_cli("tasks", "why", str(handle.id), "--json", check=True).stdout)
    assert [(a["attempt"], a["exit_code"], a["error"]) for a in data["attempts"]] == [
        (n, 7, "exited with code 7") for n in (1, 2, 3)
    ]
    assert all(a["host"] and a["worker_id"] for a in data["attempts"])
    row = fault_table_row(db_url, f"task failing every time ({db_url.split(':')[0]})")
    assert (row["failed_with_reason"], row["lost"]) == (1, 0)


def test_why_of_an_unknown_task_is_one_line(db_url):
    done = run_cli("tasks", "why", "999")
    assert done.returncode == 3
    assert done.stderr.strip() == "error: no task with ID 999; `hpclaunch tasks` lists them"


def test_lost_lists_and_requeues_tasks_of_killed_workers(queue, db_url, tmp_path):
    starts = tmp_path / "starts"
    first = queue.enqueue_command(f"echo a >> {starts}; sleep 60", max_attempts=2)
    spent = queue.enqueue_command(f"echo b >> {starts}; sleep 60", max_attempts=1)
    killed = []
    for _ in range(2):
        proc = start_worker("--lease", "1", "--singleflow", "-q", start_new_session=True)
        killed.append(proc)
    wait_until(lambda: len(lines(starts)) == 2)
    for proc in killed:  # the nodes die with everything they started
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    # Once their leases lapse (1 s) and their heartbeats age, `lost` names them.
    listed = wait_until(lambda: _lost_if_exactly(first.id, spent.id), timeout=30, interval=0.5)
    assert sorted(r["id"] for r in listed) == [first.id, spent.id]
    assert all(r["where"].startswith("node ") for r in listed)

    out = run_cli("lost", "--requeue", check=True).stdout
    assert "2 task(s) requeued: 1 back to pending, 1 failed (attempts spent)" in out
    assert first.status == "pending" and spent.status == "failed"
    assert spent.info()["reason"] == "worker_gone"
    assert json.loads(run_cli("lost", "--json", check=True).stdout) == []
    why = json.loads(run_cli("tasks", "why", str(spent.id), "--json", check=True).stdout)
    assert [(a["outcome"], a["reason"]) for a in why["attempts"]] == [("lost", "worker_gone")]
    assert why["verdict"].startswith("failed: 1 of 1 attempts spent: lost lease on node ")

    first.cancel()  # (its rerun would sleep a minute)
    row = fault_table_row(db_url, f"SIGKILLed workers, `lost --requeue` ({db_url.split(':')[0]})")
    assert (row["failed_with_reason"], row["lost"]) == (1, 0)


def _lost_if_exactly(*task_ids):
    """`hpclaunch lost --json` once it lists exactly these tasks, else None."""
    rows = json.loads(run_cli("lost", "--json", check=True).stdout)
    return rows if sorted(r["id"] for r in rows) == sorted(task_ids) else None
