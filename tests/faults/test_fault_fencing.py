"""Fencing with real processes: a worker paused past its lease (SIGSTOP, as on
a frozen node or a partition) cannot overwrite the attempt that replaced it.

Side effects are at-least-once, results exactly-once: the paused worker's
command keeps running while the worker is stopped (it is only the worker that
is paused), so the command's marker is written twice (once per attempt), but
only the replacing attempt's result is recorded.
"""

from __future__ import annotations

import json
import os
import signal

from fault_helpers import fault_table_row, lines, run_cli, start_worker
from waiting import wait_until


def test_worker_paused_past_its_lease_has_its_late_result_rejected(queue, db_url, tmp_path):
    starts, ends = tmp_path / "starts", tmp_path / "ends"
    handle = queue.enqueue_command(
        f"echo $$ >> {starts}; sleep 2; echo $$ >> {ends}", max_attempts=3
    )
    paused_err = tmp_path / "paused.err"
    paused = start_worker("--lease", "1", "--singleflow", stderr_path=paused_err)
    try:
        wait_until(lambda: lines(starts))
        os.kill(paused.pid, signal.SIGSTOP)
        # Nobody renews the lease now: another worker reaps the task and runs it.
        other = start_worker("--lease", "1", "--nitems-max", "1", "--wait-timeout", "10", "-q")
        _, err = other.communicate(timeout=90)
        assert other.returncode == 0, err
        assert handle.info()["status"] == "completed"
        # The paused worker's own command finished meanwhile: both wrote their marker.
        wait_until(lambda: len(lines(ends)) == 2)
    finally:
        os.kill(paused.pid, signal.SIGCONT)
    assert paused.wait(timeout=60) == 0
    assert "result discarded, the attempt was replaced" in paused_err.read_text()

    task = handle.info()
    assert task["status"] == "completed" and task["attempts"] == 2
    first, second = lines(starts)
    assert lines(ends) == [first, second] or sorted(lines(ends)) == sorted([first, second])
    why = json.loads(run_cli("tasks", "why", str(handle.id), "--json", check=True).stdout)
    assert [(a["attempt"], a["outcome"]) for a in why["attempts"]] == [
        (1, "lost"),
        (2, "completed"),
    ]
    assert why["attempts"][0]["worker_id"] != why["attempts"][1]["worker_id"]
    assert task["worker_id"] == why["attempts"][1]["worker_id"]  # the replacing attempt's result
    assert why["verdict"].startswith("completed on attempt 2 after a lost lease on node ")
    row = fault_table_row(db_url, f"SIGSTOP past lease, then SIGCONT ({db_url.split(':')[0]})")
    assert (row["completed"], row["duplicated"], row["lost"]) == (1, 0, 0)
