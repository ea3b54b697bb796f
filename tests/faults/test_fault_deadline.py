"""Deadline-aware claiming: a worker near the end of its allocation does not
start a task that its history says will not finish in time."""

from __future__ import annotations

import json
import time

import pytest
from fault_helpers import run_cli, start_worker

from hpclaunch.queue.estimates import p95
from hpclaunch.worker.deadline import deadline_from_environment, parse_squeue_end_time


def test_worker_skips_a_task_whose_p95_runtime_does_not_fit(queue, tmp_path):
    # History: five "slow" tasks that each took about 4 s (run side by side).
    for _ in range(5):
        queue.enqueue_command(["sleep", "4"], tags=["slow"])
    drain = [start_worker("-t", "slow", "--close-on-empty-queue", "-q") for _ in range(5)]
    assert [w.wait(timeout=120) for w in drain] == [0] * 5

    ran = tmp_path / "ran"
    slow = queue.enqueue_command(f"echo slow >> {ran}", tags=["slow"])  # no estimate of its own
    quick = queue.enqueue_command(f"echo quick >> {ran}", tags=["quick"])  # no history: fits
    told = queue.enqueue_command(f"echo told >> {ran}", tags=["slow"], expected_runtime=0.5)
    # About 3 s left after the grace period: less than the slow tasks' p95 (>= 4 s).
    worker = start_worker(
        "-t",
        "slow",
        "-t",
        "quick",
        "--walltime",
        "00:00:33",
        "--grace",
        "30",
        "--close-on-empty-queue",
        stderr_path=tmp_path / "worker.err",
    )
    assert worker.wait(timeout=60) == 0
    assert quick.status == "completed"
    assert told.status == "completed"  # its own expected_runtime wins over the p95
    assert slow.status == "pending" and slow.info()["attempts"] == 0
    assert sorted(ran.read_text().split()) == ["quick", "told"]
    rows = json.loads(run_cli("workers", "--all", "--json", check=True).stdout)
    last = rows[-1]
    assert last["exit_reason"] == "deadline"
    assert "1 pending task(s) do not fit" in last["exit_detail"]

    # Without a deadline the same task is taken at once.
    assert start_worker("-t", "slow", "--close-on-empty-queue", "-q").wait(timeout=60) == 0
    assert slow.status == "completed"


def test_p95_needs_five_samples_and_is_nearest_rank():
    assert p95([1.0, 2.0, 3.0, 4.0]) is None
    assert p95([5.0, 1.0, 2.0, 3.0, 4.0]) == 5.0
    assert p95([float(i) for i in range(1, 101)]) == 95.0


def test_deadline_from_slurm_job_end_time_wins_over_squeue():
    calls = []
    end, note = deadline_from_environment(
        {"SLURM_JOB_ID": "7", "SLURM_JOB_END_TIME": "1795300000"}, squeue=calls.append
    )
    assert (end, note, calls) == (1795300000.0, "from SLURM_JOB_END_TIME", [])


def test_deadline_outside_a_job_is_none():
    assert deadline_from_environment({}) == (None, None)


def test_squeue_failure_leaves_no_deadline_and_says_why():
    def broken(job_id):
        raise RuntimeError("slurm_load_jobs error: Invalid job id specified")

    end, note = deadline_from_environment({"SLURM_JOB_ID": "42"}, squeue=broken)
    assert end is None
    assert note == (
        "no deadline: squeue -j 42 -o %e did not give one "
        "(slurm_load_jobs error: Invalid job id specified)"
    )


@pytest.mark.parametrize("text", ["", "Unknown\n", "N/A", "NONE"])
def test_squeue_end_time_that_is_not_a_date_is_refused(text):
    with pytest.raises(ValueError):
        parse_squeue_end_time(text)


def test_squeue_end_time_is_local_time():
    expected = time.mktime((2026, 11, 21, 18, 30, 0, 0, 0, -1))
    assert parse_squeue_end_time("2026-11-21T18:30:00\n") == expected
