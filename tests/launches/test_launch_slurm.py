"""End to end on the real local SLURM: submit arrays, run the queue, track, cancel.

Locally (no SSH) and over the real test sshd (paramiko), as a laptop would.
"""

from __future__ import annotations

import pytest
from launch_helpers import (
    cli,
    cli_json,
    enqueue_markers,
    hpclaunch_exe,
    marker_counts,
    queue_counts,
    wait_until,
)


@pytest.fixture
def ssh_site(sshd, tmp_path, monkeypatch):
    """`tests-slurm-ssh` reaching the test sshd through an ssh_config alias."""
    from testenv_fixtures import write_ssh_config

    home = tmp_path / "laptop-home"
    write_ssh_config(home / ".ssh" / "config", {"hpcl-test": sshd.config_options()})
    monkeypatch.setenv("HOME", str(home))  # the laptop's ~/.ssh/config
    return ["--site", "tests-slurm-ssh", "--set", "host=hpcl-test"]


def site_args(kind: str, request) -> list[str]:
    if kind == "ssh":
        return request.getfixturevalue("ssh_site")
    return ["--site", "tests-slurm"]


def common(tmp_path, pg_url: str) -> list[str]:
    return [
        "--set",
        f"workdir={tmp_path / 'work'}",
        "--set",
        f"worker.command={hpclaunch_exe()}",
        "--set",
        f"database.url={pg_url}",
    ]


def finished_launch(launch_id: str):
    report = cli_json("status", "--launch", launch_id)
    (launch,) = report["launches"]
    return launch if launch["status"] == "finished" else None


@pytest.mark.parametrize("kind", ["local", "ssh"])
def test_singleflow_array_runs_every_task_exactly_once(
    kind, request, slurm, pg_queue_url, tmp_path
):
    markers = enqueue_markers(tmp_path, 40)
    # 8 singleflow elements drain 40 tasks only if elements keep coming: use draining
    # workers capped at 5 tasks each (40 = 8 x 5), so the test is deterministic.
    out = cli_json(
        "submit",
        *site_args(kind, request),
        "--workers",
        "8",
        *common(tmp_path, pg_queue_url),
        "--set",
        "worker.mode=draining",
        "--set",
        "worker.nitems_max=5",
    )
    (job,) = out["jobs"]
    assert job["elements"] == 8 and job["job_id"].isdigit()
    wait_until(lambda: queue_counts()["completed"] == 40, timeout=240, what="40 completed")
    counts = marker_counts(markers)
    assert len(counts) == 40 and set(counts.values()) == {1}
    launch = wait_until(
        lambda: finished_launch(out["launch_id"]), timeout=120, what="array left the queue"
    )
    assert {e["job_id"] for e in launch["elements"]} == {job["job_id"]}
    assert sorted(e["index"] for e in launch["elements"]) == list(range(8))
    assert all(e["state"] == "COMPLETED" for e in launch["elements"]), launch["elements"]
    assert sum(e["tasks_completed"] for e in launch["elements"]) == 40
    logs = cli("logs", out["launch_id"], "--element", "3").stdout
    assert "stopped: nitems_max" in logs or "stopped: empty_queue" in logs


@pytest.mark.parametrize("kind", ["local", "ssh"])
def test_draining_workers_take_200_tasks_through_8_elements(
    kind, request, slurm, pg_queue_url, tmp_path
):
    markers = enqueue_markers(tmp_path, 200)
    out = cli_json(
        "submit",
        *site_args(kind, request),
        "--workers",
        "8",
        *common(tmp_path, pg_queue_url),
        "--set",
        "worker.mode=draining",
    )
    wait_until(lambda: queue_counts()["completed"] == 200, timeout=240, what="200 completed")
    assert set(marker_counts(markers).values()) == {1}
    launch = wait_until(
        lambda: finished_launch(out["launch_id"]), timeout=120, what="array left the queue"
    )
    assert sum(e["tasks_completed"] for e in launch["elements"]) == 200


def test_cancel_pending_array_removes_it_from_squeue(ssh_site, slurm, pg_queue_url, tmp_path):
    enqueue_markers(tmp_path, 3)
    out = cli_json(
        "submit",
        *ssh_site,
        "--workers",
        "5",
        *common(tmp_path, pg_queue_url),
        "--set",
        "extra_directives=[--begin=now+1hour]",
    )
    job_id = out["jobs"][0]["job_id"]
    squeue = slurm.run(["squeue", "-h", "-r", "-j", job_id, "-o", "%i %T"]).stdout
    assert squeue.count("PENDING") == 5
    result = cli_json("cancel", out["launch_id"])
    assert result["gone"] and result["job_ids"] == [job_id]
    assert slurm.run(["squeue", "-h", "-j", job_id]).stdout.strip() == ""
    assert queue_counts()["pending"] == 3
    (launch,) = cli_json("launches")
    assert launch["status"] == "canceled"


def test_1000_workers_make_one_connection_and_four_sbatch_calls(
    ssh_site, slurm, pg_queue_url, tmp_path
):
    out = cli_json(
        "submit",
        *ssh_site,
        "--workers",
        "1000",
        *common(tmp_path, pg_queue_url),
        "--set",
        "arrays.max_array_size=300",
        "--set",
        "extra_directives=[--begin=now+1hour]",
    )
    try:
        assert [j["elements"] for j in out["jobs"]] == [300, 300, 300, 100]
        assert out["ssh_connections"] == 1
        assert out["scheduler_calls"] == 4
        report = cli_json("status", "--launch", out["launch_id"])
        assert report["scheduler_calls"] == 1
        assert report["ssh_connections"] == 1
        (launch,) = report["launches"]
        assert launch["state_counts"] == {"PENDING": 1000}
    finally:
        cli("cancel", out["launch_id"], check=False)


def test_logs_shows_and_follows_the_workers_output_while_the_element_runs(
    slurm, pg_queue_url, tmp_path
):
    """The workers' output is in the launch folder while they run
    (PBS spools -o/-e until the end), here on the real local SLURM."""
    import subprocess

    cli("enqueue", "--", "sleep", "20")
    out = cli_json(
        "submit", "--site", "tests-slurm", "--workers", "1", *common(tmp_path, pg_queue_url)
    )
    launch_id = out["launch_id"]
    wait_until(lambda: queue_counts().get("running") == 1, timeout=120, what="task running")
    live = cli_json("logs", launch_id)
    assert live["workers_stderr_path"].startswith(str(tmp_path / "work"))
    assert "started" in (live["workers_stderr"] or ""), live
    followed = subprocess.run(
        [hpclaunch_exe(), "logs", launch_id, "--follow"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert followed.returncode == 0, followed.stderr
    assert "stopped:" in followed.stderr  # the worker's last line, printed as it came
    assert queue_counts()["completed"] == 1
