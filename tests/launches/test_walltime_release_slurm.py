"""Through a real launch: a task still running at the deadline
minus the grace is put back as `walltime`, and `status` types it TIMEOUT."""

from __future__ import annotations

from launch_helpers import cli, cli_json, hpclaunch_exe, queue_counts, wait_until


def test_task_running_at_deadline_minus_grace_is_typed_timeout(slurm, pg_queue_url, tmp_path):
    cli("enqueue", "--", "sleep", "300")
    out = cli_json(
        "submit",
        "--site",
        "tests-slurm",
        "--workers",
        "1",
        "--set",
        f"workdir={tmp_path / 'work'}",
        "--set",
        f"worker.command={hpclaunch_exe()}",
        "--set",
        f"database.url={pg_queue_url}",
        "--set",
        "worker.mode=draining",
        "--set",
        "resources.walltime=00:01:00",
        "--set",
        "worker.grace=30",  # at most half the walltime (render refuses more)
    )

    def typed():
        cli("status", "--launch", out["launch_id"])  # status runs the reconciler
        (task,) = cli_json("tasks")
        return task if task["reason"] == "TIMEOUT" else None

    task = wait_until(typed, timeout=150, interval=2, what="released and typed TIMEOUT")
    # Stopped about 30 s in (60 s walltime, 30 s grace), the element ended cleanly,
    # and the walltime release counts as one TIMEOUT attempt; two remain.
    assert (task["status"], task["attempts"]) == ("pending", 1)
    why = cli("tasks", "why", str(task["id"])).stdout
    assert "TIMEOUT" in why
    (worker,) = cli_json("workers", "--all")
    assert worker["exit_reason"] in ("deadline", "signal")
    assert queue_counts()["running"] == 0
