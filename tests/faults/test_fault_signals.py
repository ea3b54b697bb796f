"""The scheduler's warning signal (SIGUSR1, e.g. ``--signal=B:USR1@60``): the
worker stops claiming and puts its running task back without counting it."""

from __future__ import annotations

import json
import signal

from fault_helpers import fault_table_row, lines, run_cli, start_worker
from waiting import wait_until


def test_usr1_mid_task_puts_it_back_uncounted(queue, db_url, tmp_path):
    runs = tmp_path / "runs"
    # Long the first time, instant the second: a rerun is visible.
    handle = queue.enqueue_command(
        f"if [ -e {runs} ]; then echo again >> {runs}; exit 0; fi; echo first >> {runs}; sleep 60",
        max_attempts=1,
    )
    other = queue.enqueue_command(["true"])  # must not be claimed by the stopping worker
    worker = start_worker("--grace", "1", "--close-on-empty-queue", stderr_path=tmp_path / "w1")
    wait_until(lambda: lines(runs))
    worker.send_signal(signal.SIGUSR1)
    assert worker.wait(timeout=60) == 0
    task = handle.info()
    # max_attempts is 1: had the interruption counted, the task would be failed now.
    assert task["status"] == "pending" and task["attempts"] == 0
    assert other.status == "pending"
    workers = json.loads(run_cli("workers", "--all", "--json", check=True).stdout)
    assert [w["exit_reason"] for w in workers] == ["signal"]

    assert start_worker("--close-on-empty-queue", "-q").wait(timeout=60) == 0
    assert lines(runs) == ["first", "again"]
    why = json.loads(run_cli("tasks", "why", str(handle.id), "--json", check=True).stdout)
    assert [(a["attempt"], a["outcome"], a["reason"]) for a in why["attempts"]] == [
        (1, "released", "walltime"),
        (1, "completed", None),
    ]  # USR1: the walltime warning
    assert why["verdict"].startswith("completed on attempt 1 after being put back uncounted")
    row = fault_table_row(db_url, f"SIGUSR1 mid-task ({db_url.split(':')[0]})")
    assert (row["completed"], row["duplicated"], row["lost"]) == (2, 0, 0)
