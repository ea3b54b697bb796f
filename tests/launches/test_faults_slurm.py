"""Faults on the real local SLURM: every task ends completed, or failed/requeued with a
reason, none completed twice, none left running."""

from __future__ import annotations

from pathlib import Path

from launch_helpers import cli, cli_json, hpclaunch_exe, queue_counts, wait_until

FIXTURES = Path(__file__).resolve().parents[1] / "schedulers" / "fixtures" / "slurm"


def common(tmp_path, pg_url):
    return [
        "--set",
        f"workdir={tmp_path / 'work'}",
        "--set",
        f"worker.command={hpclaunch_exe()}",
        "--set",
        f"database.url={pg_url}",
        "--set",
        "worker.mode=draining",
    ]


def only_task():
    (task,) = cli_json("tasks")
    return task


def test_walltime_gives_the_task_timeout_and_the_policy_decides(slurm, pg_queue_url, tmp_path):
    cli("enqueue", "--max-attempts", "1", "--", "sleep", "300")
    out = cli_json(
        "submit",
        "--site",
        "tests-slurm",
        "--workers",
        "1",
        *common(tmp_path, pg_queue_url),
        "--set",
        "resources.walltime=00:01:00",
        "--set",
        "worker.grace=10",
    )
    wait_until(lambda: only_task()["status"] == "running", what="task running")

    def settled():
        cli("status", "--launch", out["launch_id"])  # status runs the reconciler
        task = only_task()
        return task if task["status"] != "running" and task["reason"] == "TIMEOUT" else None

    task = wait_until(settled, timeout=150, interval=2, what="walltime reached and reconciled")
    # One attempt allowed, spent by the walltime: failed, with the scheduler's reason.
    assert task["status"] == "failed" and task["attempts"] == 1
    why = cli("tasks", "show", str(task["id"])).stdout
    assert "TIMEOUT" in why
    assert queue_counts()["running"] == 0


def test_scancel_of_a_running_element_gives_cancelled(slurm, pg_queue_url, tmp_path):
    cli("enqueue", "--", "sleep", "300")
    out = cli_json(
        "submit", "--site", "tests-slurm", "--workers", "1", *common(tmp_path, pg_queue_url)
    )
    wait_until(lambda: only_task()["status"] == "running", what="task running")
    slurm.run(["scancel", out["jobs"][0]["job_id"]])

    def settled():
        cli("status", "--launch", out["launch_id"])
        task = only_task()
        return task if task["reason"] == "CANCELLED" else None

    task = wait_until(settled, timeout=60, interval=1, what="scancel reconciled")
    assert task["status"] == "pending" and task["attempts"] == 1  # requeued, attempt counted
    (launch,) = cli_json("status", "--launch", out["launch_id"])["launches"]
    assert launch["elements"][0]["state"] == "CANCELLED"


def test_failing_setup_marks_the_launch_broken(slurm, pg_queue_url, tmp_path):
    cli("enqueue", "--", "true")
    site = tmp_path / "typo.yaml"
    site.write_text("extends: tests-slurm\nsetup:\n  - module load doesnotexist/1.0\n")
    args = ["--site", str(site), *common(tmp_path, pg_queue_url)]
    out = cli_json("submit", *args, "--workers", "4")

    def broken():
        (launch,) = cli_json("status", "--launch", out["launch_id"])["launches"]
        return launch if launch["status"] == "broken" else None

    launch = wait_until(broken, timeout=60, interval=1, what="launch marked broken")
    assert "module" in launch["broken_reason"]  # the first failing element's stderr
    refused = cli("submit", *args, "--workers", "4", check=False)
    assert refused.returncode == 7 and "--force" in refused.stderr
    assert len(cli_json("launches")) == 1
    assert queue_counts()["pending"] == 1  # the task waits for a working launch


def oom_verdict(pg_queue_url, launch_id: str, retry_policy: dict):
    """A launch whose element 1 holds a task and ended OUT_OF_MEMORY per the sacct sample.

    Returns (engine, launch row, element view, the held task).
    """
    from hpclaunch.launches.model import Launch, element_key
    from hpclaunch.launches.views import launch_view
    from hpclaunch.queue import claims, driver
    from hpclaunch.queue import launch_rows as records
    from hpclaunch.queue.db import connect
    from hpclaunch.schedulers import slurm as slurm_adapter

    engine = connect(pg_queue_url)
    records.create_launch(
        engine,
        launch_id=launch_id,
        site="tests-slurm",
        host=None,
        scheduler="slurm",
        workdir="/w",
        log_dir=f"/w/{launch_id}",
        workers_count=2,
        tags="default",
        profile={"retry": retry_policy},
        chunks=[
            {
                "chunk": 0,
                "job_name": f"hpcl-{launch_id}-0",
                "elements": 2,
                "workers_per_element": 1,
                "array": 1,
                "script": "#!",
                "script_path": f"/w/{launch_id}/hpcl-{launch_id}-0.sh",
            }
        ],
    )
    records.set_job_id(engine, launch_id, 0, "5000")
    records.set_status(engine, launch_id, "submitted")
    conn = driver.connect(pg_queue_url)
    worker = claims.register_worker(
        conn,
        host="node7",
        pid=1,
        tags="default",
        mode="draining",
        lease=60,
        scheduler="slurm",
        job_id="5002",
        array_job_id="5000",
        array_index=1,
        launch_id=launch_id,
    )
    held = claims.Claimer(
        conn,
        worker_id=worker,
        tag_sets=["default"],
        lease=60,
        allow_pickle=True,
        fit_deadline=False,
    ).claim()
    conn.close()
    lines = (FIXTURES / "sacct_documented_reconstructed.txt").read_text().splitlines()
    text = "\n".join(line for line in lines if not line.startswith("#")) + "\n"
    states = {
        element_key(s.array_job_id or s.job_id, s.array_index): s
        for s in slurm_adapter.parse_accounting(text)
    }
    launch = Launch.from_row(records.list_launches(engine, launch_id=launch_id)[0])
    view = launch_view(launch, states, records.launch_workers(engine, [launch_id]), {})
    return engine, launch, view, held


def test_out_of_memory_verdict_from_accounting_requeues_the_held_task(pg_queue_url):
    """This SLURM cannot enforce memory (no cgroups): the verdict comes from the
    documented sacct sample, through the parser, into the reconciler."""
    from hpclaunch.launches import reconcile

    cli("enqueue", "--", "sleep", "1")
    engine, launch, view, held = oom_verdict(pg_queue_url, "oom", {})
    assert [e["state"] for e in view["elements"]] == ["COMPLETED", "OUT_OF_MEMORY"]
    result = reconcile.reconcile_views(engine, {"oom": launch}, [view])
    assert [(a.task_id, a.state, a.outcome) for a in result.actions] == [
        (held.id, "OUT_OF_MEMORY", "requeued")
    ]
    task = only_task()
    assert task["status"] == "pending" and task["reason"] == "OUT_OF_MEMORY"
    # Reconciling again changes nothing: the element is settled.
    again = reconcile.reconcile_views(engine, {"oom": launch}, [view])
    assert again.actions == []


def test_retry_policy_fail(pg_queue_url):
    from hpclaunch.launches import reconcile

    cli("enqueue", "--", "sleep", "1")
    engine, launch, view, _ = oom_verdict(pg_queue_url, "oomfail", {"OUT_OF_MEMORY": "fail"})
    reconcile.reconcile_views(engine, {"oomfail": launch}, [view])
    task = only_task()
    assert task["status"] == "failed" and task["reason"] == "OUT_OF_MEMORY"
    assert task["attempts"] == 1  # of 3: the policy, not the budget, failed it


def test_retry_policy_requeue_on_a_bigger_site(pg_queue_url):
    """`requeue_on: bigmem` hands the task to the workers of the bigmem profile."""
    import os

    from hpclaunch.launches import reconcile

    sites = Path(os.environ["HPCLAUNCH_HOME"]) / "sites"
    sites.mkdir(parents=True, exist_ok=True)
    (sites / "bigmem.yaml").write_text(
        "extends: tests-slurm\nresources:\n  memory: 64G\nworker:\n  tags: [bigmem]\n"
    )
    cli("enqueue", "--", "sleep", "1")
    engine, launch, view, _ = oom_verdict(
        pg_queue_url, "oombig", {"OUT_OF_MEMORY": {"requeue_on": "bigmem"}}
    )
    result = reconcile.reconcile_views(engine, {"oombig": launch}, [view])
    assert [a.outcome for a in result.actions] == ["requeued_for:bigmem"]
    task = only_task()
    assert (task["status"], task["tags"], task["reason"]) == ("pending", "bigmem", "OUT_OF_MEMORY")
