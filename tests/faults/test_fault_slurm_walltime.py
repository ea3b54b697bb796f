"""A worker stops its task itself at the deadline minus the
grace, on every scheduler (here a SLURM job with no ``--signal``, as on PBS),
and a task that never fits stops coming back after a bounded number of tries."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time

import pytest
from fault_helpers import run_cli, sql
from waiting import wait_until


def _sbatch(slurm, tmp_path, url: str, worker_args: list[str], *extra: str) -> str:
    """A plain job (no ``--signal``): the worker finds its deadline with squeue."""
    worker = shlex.join([sys.executable, "-P", "-m", "hpclaunch", "worker", *worker_args])
    env = {**slurm.env, "HPCLAUNCH_DATABASE_URL": url, "HPCLAUNCH_HOME": str(tmp_path / "home")}
    done = subprocess.run(
        [
            "sbatch",
            "--parsable",
            "--time=00:01:00",
            "-p",
            slurm.partition,
            "-o",
            str(tmp_path / "job-%a.out"),
            *extra,
            "--wrap",
            f"unset SLURM_JOB_END_TIME; {worker}",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return done.stdout.strip().split(";")[0]


def _task(task_id: int) -> dict:
    (task,) = [
        t for t in json.loads(run_cli("tasks", "--json", check=True).stdout) if t["id"] == task_id
    ]
    return task


def _outcomes(url: str, task_id: int) -> list[tuple[str, str]]:
    return [
        (outcome, reason)
        for outcome, reason in sql(
            url,
            "SELECT outcome, reason FROM task_attempts WHERE task_id = :id ORDER BY id",
            {"id": task_id},
        )
    ]


@pytest.fixture
def sqlite_url(tmp_path, monkeypatch) -> str:
    url = f"sqlite:///{tmp_path / 'queue.sqlite3'}"
    monkeypatch.setenv("HPCLAUNCH_DATABASE_URL", url)
    monkeypatch.setenv("HPCLAUNCH_HOME", str(tmp_path / "home"))
    return url


@pytest.mark.slurm
def test_a_task_running_at_deadline_minus_grace_is_released_as_walltime(
    slurm, sqlite_url, tmp_path
):
    assert run_cli("enqueue", "--", "sleep", "300").returncode == 0
    started = time.time()
    # 60 s of walltime, 40 s of grace: the task is stopped about 20 s in, long
    # before SLURM would kill the job.
    _sbatch(slurm, tmp_path, sqlite_url, ["--close-on-empty-queue", "--grace", "40"])
    wait_until(lambda: _outcomes(sqlite_url, 1), timeout=120, interval=0.5, what="released")
    assert time.time() - started < 55
    assert _outcomes(sqlite_url, 1) == [("released", "walltime")]
    task = _task(1)
    assert (task["status"], task["attempts"], task["reason"]) == ("pending", 0, "walltime")
    wait_until(
        lambda: any(
            w["exit_reason"]
            for w in json.loads(run_cli("workers", "--all", "--json", check=True).stdout)
        ),
        timeout=60,
    )
    (worker,) = json.loads(run_cli("workers", "--all", "--json", check=True).stdout)
    assert worker["exit_reason"] == "deadline"
    assert "stopped at the deadline minus the grace" in worker["exit_detail"]
    logs = "".join(p.read_text() for p in tmp_path.glob("job-*.out"))
    assert "deadline minus the grace reached: stopping task 1" in logs


@pytest.mark.slurm
def test_a_task_that_never_fits_fails_as_timeout_after_three_walltime_releases(
    slurm, sqlite_url, tmp_path
):
    assert run_cli("enqueue", "--", "sleep", "300").returncode == 0
    # Four jobs one after another (an array throttled to 1), 10 s of work each.
    _sbatch(
        slurm,
        tmp_path,
        sqlite_url,
        ["--close-on-empty-queue", "--grace", "50"],
        "--array=0-3%1",
    )
    wait_until(
        lambda: _task(1)["status"] == "failed", timeout=400, interval=1, what="the task failed"
    )
    assert _outcomes(sqlite_url, 1) == [("released", "walltime")] * 3 + [("failed", "TIMEOUT")]
    task = _task(1)
    assert task["reason"] == "TIMEOUT"
    why = run_cli("tasks", "why", "1", check=True).stdout
    assert "never fits" in why
