"""`submit --site local`: the same commands on a laptop with no scheduler."""

from __future__ import annotations

import os

from launch_helpers import cli, cli_json, enqueue_markers, marker_counts, queue_counts, wait_until


def test_local_site_runs_the_queue_and_tracks_its_workers(queue_url, tmp_path):
    markers = enqueue_markers(tmp_path, 20)
    out = cli_json(
        "submit", "--site", "local", "--workers", "4", "--set", f"workdir={tmp_path / 'runs'}"
    )
    launch_id = out["launch_id"]
    pids = [j["job_id"] for j in out["jobs"]]
    assert len(pids) == 4 and all(p.isdigit() for p in pids)
    wait_until(lambda: queue_counts()["completed"] == 20, what="20 tasks completed")
    assert set(marker_counts(markers).values()) == {1} and len(marker_counts(markers)) == 20

    def settled():
        report = cli_json("status", "--launch", launch_id)
        (launch,) = report["launches"]
        return launch if launch["status"] == "finished" else None

    launch = wait_until(settled, what="launch finished")
    assert [e["state"] for e in launch["elements"]] == ["COMPLETED"] * 4
    assert sorted(e["job_id"] for e in launch["elements"]) == sorted(pids)
    assert sum(e["tasks_completed"] for e in launch["elements"]) == 20
    workers = cli_json("workers", "--all")
    assert {w["launch_id"] for w in workers} == {launch_id}
    assert sorted(w["job_id"] for w in workers) == sorted(pids)
    logs = cli("logs", launch_id, "--element", "0").stdout
    assert "worker" in logs and "stopped: empty_queue" in logs


def test_cancel_local_launch_returns_running_tasks(queue_url, tmp_path):
    started = tmp_path / "started"
    started.mkdir()
    batch = tmp_path / "slow.yaml"
    batch.write_text(f'name: slow\ncommand: "touch {started}/{{run}}; sleep 60"\nn_runs: 2\n')
    cli("enqueue", "--file", str(batch))
    out = cli_json(
        "submit",
        "--site",
        "local",
        "--workers",
        "2",
        "--set",
        f"workdir={tmp_path / 'runs'}",
        "--set",
        "worker.grace=1",
    )
    wait_until(lambda: len(os.listdir(started)) == 2, what="both tasks started")
    result = cli_json("cancel", out["launch_id"])
    assert result["gone"]
    counts = queue_counts()
    assert counts["pending"] == 2 and counts["running"] == 0
    tasks = cli_json("tasks")
    assert all(t["attempts"] == 0 for t in tasks)  # canceling is not the tasks' failure
    (launch,) = cli_json("launches")
    assert launch["status"] == "canceled"


def test_remote_site_refuses_a_sqlite_queue(tmp_path, monkeypatch):
    monkeypatch.setenv("HPCLAUNCH_HOME", str(tmp_path))
    monkeypatch.delenv("HPCLAUNCH_DATABASE_URL", raising=False)
    out = cli("submit", "--site", "tests-slurm-ssh", "--workers", "2", check=False)
    assert out.returncode != 0
    assert "workers on 127.0.0.1 cannot reach" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert cli_json("launches") == []


def test_a_typo_marks_the_launch_broken_and_blocks_resubmission(queue_url, tmp_path):
    enqueue_markers(tmp_path, 5)
    site = [
        "--site",
        "local",
        "--set",
        f"workdir={tmp_path / 'runs'}",
        "--set",
        "worker.command=/opt/nowhere/hpclaunch",
    ]
    out = cli_json("submit", *site, "--workers", "3")

    def broken():
        (launch,) = cli_json("status", "--launch", out["launch_id"])["launches"]
        return launch if launch["status"] == "broken" else None

    launch = wait_until(broken, what="launch marked broken")
    assert "ended before any worker claimed a task" in launch["broken_reason"]
    assert "/opt/nowhere/hpclaunch" in launch["broken_reason"]  # the element's stderr tail
    again = cli("submit", *site, "--workers", "3", check=False)
    assert again.returncode == 7
    assert "marked broken" in again.stderr and "--force" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1
    assert len(cli_json("launches")) == 1  # nothing was submitted
    forced = cli_json("submit", *site, "--workers", "1", "--force")
    assert forced["launch_id"] != out["launch_id"]
    # A fixed profile is accepted without --force.
    fixed = cli_json(
        "submit", "--site", "local", "--set", f"workdir={tmp_path / 'runs'}", "--workers", "1"
    )
    wait_until(lambda: queue_counts()["completed"] == 5, what="tasks done after the fix")
    assert fixed["launch_id"]


def test_a_forced_launch_that_works_clears_the_broken_mark(queue_url, tmp_path):
    """The site's newest launch decides: after a good --force launch, no more refusals."""
    from launch_helpers import hpclaunch_exe

    enqueue_markers(tmp_path, 2)
    exe = tmp_path / "bin" / "hpclaunch"  # missing at first: every element fails
    site = [
        "--site",
        "local",
        "--set",
        f"workdir={tmp_path / 'runs'}",
        "--set",
        f"worker.command={exe}",
    ]
    bad = cli_json("submit", *site, "--workers", "2")
    wait_until(
        lambda: (
            cli_json("status", "--launch", bad["launch_id"])["launches"][0]["status"] == "broken"
        ),
        what="launch marked broken",
    )
    assert cli("submit", *site, "--workers", "1", check=False).returncode == 7
    exe.parent.mkdir()
    exe.symlink_to(hpclaunch_exe())  # the cluster-side problem is fixed
    good = cli_json("submit", *site, "--workers", "1", "--force")
    wait_until(lambda: queue_counts()["completed"] == 2, what="tasks done by the forced launch")
    wait_until(
        lambda: (
            cli_json("status", "--launch", good["launch_id"])["launches"][0]["status"] == "finished"
        ),
        what="forced launch finished",
    )
    again = cli("submit", *site, "--workers", "1", check=False)
    assert again.returncode == 0, again.stderr


def test_tag_filter_takes_underscore_literally(queue_url):
    cli("enqueue", "-t", "gpu_a", "--", "true")
    cli("enqueue", "-t", "gpuXa", "--", "true")
    rows = cli_json("tasks", "--tag", "gpu_a")
    assert [r["tags"] for r in rows] == ["gpu_a"]
