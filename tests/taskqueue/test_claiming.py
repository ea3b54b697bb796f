"""Which task a worker takes: tags, priority, age, pickles, deadlines."""

from __future__ import annotations

import time

import pytest
from queue_helpers import run_cli, start_worker

from hpclaunch.errors import UserError
from hpclaunch.queue import claims, driver
from hpclaunch.tasks.payloads import worker_tag_sets


@pytest.fixture
def conn(queue_url):
    c = driver.connect(queue_url)
    yield c
    c.close()


def claimer(conn, tags=("default",), allow_pickle=True, fit_deadline=False):
    worker_id = claims.register_worker(
        conn, host="h", pid=1, tags=",".join(tags), mode="draining", lease=30
    )
    return claims.Claimer(
        conn,
        worker_id=worker_id,
        tag_sets=worker_tag_sets(tags),
        lease=30,
        allow_pickle=allow_pickle,
        fit_deadline=fit_deadline,
    )


def test_worker_takes_only_tasks_whose_tags_it_has(queue, conn):
    both = queue.enqueue_command(["true"], tags=["gpu", "big"])
    gpu = queue.enqueue_command(["true"], tags=["gpu"])
    plain = queue.enqueue_command(["true"])
    only_gpu = claimer(conn, ("gpu",))
    assert only_gpu.claim().id == gpu.id
    assert only_gpu.claim() is None  # not {gpu, big}, not {default}
    gpu_big = claimer(conn, ("big", "gpu"))
    assert gpu_big.claim().id == both.id
    assert claimer(conn).claim().id == plain.id


def test_higher_priority_first_then_oldest(queue, conn):
    low = queue.enqueue_command(["true"])
    high_old = queue.enqueue_command(["true"], priority=5)
    high_new = queue.enqueue_command(["true"], priority=5)
    c = claimer(conn)
    assert [c.claim().id for _ in range(3)] == [high_old.id, high_new.id, low.id]


def test_no_pickle_worker_leaves_pickled_tasks_alone(queue, queue_url):
    pickled = queue.run_cloud(sum, [1, 2])
    command = queue.enqueue_command(["true"])
    proc = start_worker("--no-pickle", "--close-on-empty-queue", "-q")
    assert proc.wait(timeout=60) == 0
    assert command.status == "completed"
    assert pickled.status == "pending"
    assert start_worker("--close-on-empty-queue", "-q").wait(timeout=60) == 0
    assert pickled.result() == 3


def test_deadline_worker_skips_tasks_that_would_not_fit(queue, conn):
    long = queue.enqueue_command(["true"], timeout=3600)
    expected = queue.enqueue_command(["true"], expected_runtime=600, timeout=7200)
    short = queue.enqueue_command(["true"], timeout=60)
    c = claimer(conn, fit_deadline=True)
    assert c.claim(remaining=900).id == expected.id  # expected_runtime wins over timeout
    assert c.claim(remaining=900).id == short.id
    assert c.claim(remaining=900) is None
    assert long.status == "pending"


def test_worker_with_deadline_exits_when_nothing_fits(queue):
    handle = queue.enqueue_command(["true"], timeout=3600)
    proc = start_worker("--walltime", "00:10:00", "--grace", "5", "--close-on-empty-queue")
    assert proc.wait(timeout=60) == 0
    assert handle.status == "pending"


def test_singleflow_on_empty_queue_exits_cleanly(queue_url):
    proc = start_worker("--singleflow")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert "stopped: empty_queue" in err


def test_nitems_max_stops_a_draining_worker(queue):
    handles = [queue.enqueue_command(["true"]) for _ in range(5)]
    assert start_worker("--nitems-max", "2", "-q").wait(timeout=60) == 0
    assert [h.status for h in handles].count("completed") == 2
    out = run_cli("workers", "--all", "--json", check=True)
    assert '"exit_reason": "nitems_max"' in out.stdout


def test_draining_worker_waits_for_work_then_times_out(queue):
    proc = start_worker("--wait-timeout", "3", "-q")
    time.sleep(1)
    handle = queue.enqueue_command(["true"])
    assert proc.wait(timeout=60) == 0
    assert handle.status == "completed"


def test_worker_records_its_scheduler_identity(queue_url):
    env = {"SLURM_JOB_ID": "4321", "SLURM_ARRAY_JOB_ID": "4300", "SLURM_ARRAY_TASK_ID": "21"}
    import os

    proc = start_worker("--singleflow", "--launch-id", "abc123", env={**os.environ, **env})
    assert proc.wait(timeout=60) == 0
    out = run_cli("workers", "--all", "--json", check=True)
    import json

    (row,) = json.loads(out.stdout)
    assert (
        row["scheduler"],
        row["job_id"],
        row["array_job_id"],
        row["array_index"],
        row["launch_id"],
    ) == ("slurm", "4321", "4300", 21, "abc123")


def test_too_many_worker_tags_is_a_clear_error():
    with pytest.raises(UserError, match="at most 8 tags"):
        worker_tag_sets([f"t{i}" for i in range(9)])


def test_cluster_runs_n_workers_and_ctrl_c_stops_them_gracefully(queue, tmp_path):
    import json
    import signal
    import subprocess

    from queue_helpers import hpclaunch_cmd
    from waiting import wait_until

    started = tmp_path / "started"
    started.mkdir()
    handles = [queue.enqueue_command(f"touch {started}/{i}; sleep 60") for i in range(3)]
    spare = queue.enqueue_command(["true"])
    cluster = subprocess.Popen(
        hpclaunch_cmd("cluster", "3", "--grace", "1", "-q"), stderr=subprocess.PIPE, text=True
    )
    wait_until(lambda: len(list(started.iterdir())) == 3, what="three tasks running")
    cluster.send_signal(signal.SIGINT)  # what Ctrl-C sends to the supervisor
    assert cluster.wait(timeout=60) == 0, cluster.stderr.read()
    assert [h.status for h in handles] == ["pending"] * 3  # put back, not lost, not failed
    assert spare.status == "pending"  # stopping workers claim nothing new
    assert all(h.info()["attempts"] == 0 for h in handles)
    workers = json.loads(run_cli("workers", "--all", "--json", check=True).stdout)
    assert len(workers) == 3 and {w["exit_reason"] for w in workers} == {"signal"}
