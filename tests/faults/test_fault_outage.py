"""Database outages on the real PostgreSQL.

* The shared server restarted while 4 workers drain 500 tasks (one short
  restart; the server is always brought back, even when the test fails).
* A network partition between one worker and the server (a TCP forwarder the
  test cuts and restores, so only that worker is affected): while it runs a
  task, and while it is idle.
"""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import pytest
from fault_helpers import (
    TcpProxy,
    ensure_pg_up,
    fault_table_row,
    lines,
    pg_ctl,
    run_cli,
    sql,
    start_worker,
)
from waiting import wait_until

from hpclaunch.queue import store
from hpclaunch.queue.batches import TaskSpec
from hpclaunch.queue.db import connect
from hpclaunch.tasks.payloads import command_payload


def _completed(url: str) -> int:
    try:
        return sql(url, "SELECT COUNT(*) FROM tasks WHERE status = 'completed'")[0][0]
    except Exception:  # noqa: BLE001 - the server may be restarting
        return 0


@pytest.mark.postgres
def test_postgres_restart_while_four_workers_drain_500_tasks(pg_only_url, tmp_path):
    url = pg_only_url
    markers = tmp_path / "markers"
    markers.mkdir()
    specs = [
        TaskSpec(
            kind="command",
            tags="default",
            priority=0,
            max_attempts=3,
            timeout=None,
            expected_runtime=None,
            payload=command_payload(f"sleep 0.05; echo $$ >> {markers}/{i}", shell=True),
        )
        for i in range(500)
    ]
    store.insert_tasks(connect(url), specs)
    errs = [tmp_path / f"worker{i}.err" for i in range(4)]
    workers = [
        start_worker(
            "--close-on-empty-queue", "--wait-timeout", "5", "--db-wait", "120", stderr_path=err
        )
        for err in errs
    ]
    try:
        wait_until(lambda: _completed(url) >= 100, timeout=120)
        restart = pg_ctl("restart")
        assert restart.returncode == 0, restart.stderr
        codes = [w.wait(timeout=240) for w in workers]
    finally:
        ensure_pg_up(url)
        for w in workers:
            if w.poll() is None:
                w.kill()
    logs = [err.read_text() for err in errs]
    assert codes == [0, 0, 0, 0], logs
    # The restart hit the workers mid-drain, and they rode it out.
    assert any("database unavailable during" in log for log in logs), logs
    assert all(
        "database reachable again" in log for log in logs if "database unavailable during" in log
    )

    assert sql(url, "SELECT status, COUNT(*) FROM tasks GROUP BY status") == [("completed", 500)]
    per_task = sql(
        url,
        "SELECT task_id, COUNT(*) FROM task_attempts WHERE outcome = 'completed' GROUP BY task_id",
    )
    assert len(per_task) == 500 and {n for _, n in per_task} == {1}
    assert sorted(int(p.name) for p in markers.iterdir()) == list(range(500))
    assert {len(lines(p)) for p in markers.iterdir()} == {1}  # every task ran exactly once
    row = fault_table_row(url, "PostgreSQL restarted while 4 workers drain 500 tasks", markers)
    assert row == {**row, "tasks": 500, "completed": 500, "duplicated": 0, "lost": 0}


def _proxy_for(url: str) -> TcpProxy:
    parts = urlsplit(url)
    return TcpProxy((parts.hostname or "127.0.0.1", parts.port or 5432))


@pytest.mark.postgres
def test_partition_during_a_task_its_result_is_recorded_when_back(
    pg_only_url, queue_on_pg, tmp_path
):
    starts, ends = tmp_path / "starts", tmp_path / "ends"
    handle = queue_on_pg.enqueue_command(f"echo go >> {starts}; sleep 2; echo done >> {ends}")
    proxy = _proxy_for(pg_only_url)
    err = tmp_path / "worker.err"
    try:
        worker = start_worker(
            "--singleflow",
            "--db-wait",
            "60",
            stderr_path=err,
            env={"HPCLAUNCH_DATABASE_URL": proxy.url(pg_only_url)},
        )
        wait_until(lambda: lines(starts))
        proxy.cut()
        # The task runs on; recording its result fails and is retried.
        wait_until(
            lambda: f"database unavailable during recording task {handle.id}" in err.read_text(),
            timeout=30,
        )
        assert lines(ends) == ["done"]
        proxy.restore()
        assert worker.wait(timeout=60) == 0, err.read_text()
    finally:
        proxy.cut()
    task = handle.info()
    assert task["status"] == "completed" and task["attempts"] == 1
    assert f"task {handle.id} completed" in err.read_text()
    why = json.loads(run_cli("tasks", "why", str(handle.id), "--json", check=True).stdout)
    assert [a["outcome"] for a in why["attempts"]] == ["completed"]
    row = fault_table_row(pg_only_url, "partition (worker<->PostgreSQL) during a task")
    assert (row["completed"], row["duplicated"], row["lost"]) == (1, 0, 0)


@pytest.mark.postgres
def test_idle_worker_waits_for_the_database_then_exits(pg_only_url, tmp_path):
    proxy = _proxy_for(pg_only_url)
    err = tmp_path / "worker.err"
    try:
        worker = start_worker(
            "--db-wait",
            "3",
            stderr_path=err,
            env={"HPCLAUNCH_DATABASE_URL": proxy.url(pg_only_url)},
        )
        wait_until(lambda: sql(pg_only_url, "SELECT id FROM workers"))
        proxy.cut()
        # It gives up waiting; the partition heals while it records why it stops.
        wait_until(
            lambda: "database unavailable during recording the exit" in err.read_text(), timeout=60
        )
        proxy.restore()
        assert worker.wait(timeout=60) == 4
    finally:
        proxy.cut()
    log = err.read_text().strip().splitlines()
    assert any("retry" in line for line in log)
    assert log[-1].startswith("error: worker 1 stopped: the database stayed unreachable")
    assert sql(pg_only_url, "SELECT status, exit_reason FROM workers") == [
        ("exited", "database_unreachable")
    ]


@pytest.mark.postgres
def test_worker_that_cannot_reach_the_database_at_start_exits_4(pg_only_url, tmp_path):
    proxy = _proxy_for(pg_only_url)
    proxy.cut()  # nothing listens on its port: connection refused
    done = run_cli(
        "worker", "--db-wait", "1", env={"HPCLAUNCH_DATABASE_URL": proxy.url(pg_only_url)}
    )
    assert done.returncode == 4
    log = done.stderr.strip().splitlines()
    assert "database unavailable during connect" in log[0]
    assert log[-1].startswith(
        "error: the database was unreachable for 1 s at start-up: cannot connect to postgresql://"
    )
    assert "Traceback" not in done.stderr
