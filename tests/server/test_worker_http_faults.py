"""Workers over HTTP through faults: the server killed and restarted, PostgreSQL restarted
under the server, and replies lost after the server did the work. Every task still
completes exactly once (marker files counted)."""

from __future__ import annotations

import pytest
from waiting import wait_until
from worker_http_helpers import (
    ReplyDropper,
    Server,
    assert_each_ran_once,
    completed_count,
    enqueue_markers,
    sql,
    start_http_worker,
    stop,
    worker_token,
)

N_TASKS = 300


def _start_four(base: str, token: str, tmp_path) -> tuple[list, list]:
    errs = [tmp_path / f"w{i}.err" for i in range(4)]
    procs = [
        start_http_worker(
            base,
            token,
            "--close-on-empty-queue",
            "--wait-timeout",
            "5",
            "--db-wait",
            "120",
            err=e,
        )
        for e in errs
    ]
    return procs, errs


def test_server_killed_and_restarted_while_four_workers_run(queue_url, tmp_path):
    token = worker_token()
    markers = tmp_path / "markers"
    markers.mkdir()
    enqueue_markers(queue_url, markers, N_TASKS, sleep=0.05)
    server = Server(tmp_path / "serve")
    server.start()
    procs, errs = _start_four(server.base, token, tmp_path)
    try:
        wait_until(lambda: completed_count(queue_url) >= 60, timeout=120, what="60 done")
        server.kill()  # SIGKILL: no graceful shutdown, replies in flight are lost
        wait_until(lambda: all("server unavailable" in e.read_text() for e in errs), timeout=60)
        server.start()
        codes = [p.wait(timeout=300) for p in procs]
    finally:
        for p in procs:
            stop(p)
        server.stop()
    logs = [e.read_text() for e in errs]
    assert codes == [0, 0, 0, 0], logs
    assert all("server reachable again" in log for log in logs), logs
    assert_each_ran_once(queue_url, markers, N_TASKS)


@pytest.mark.postgres
def test_postgres_restarted_under_the_server(pg_queue_url, tmp_path):
    from faults.fault_helpers import ensure_pg_up, pg_ctl

    url = pg_queue_url
    token = worker_token()
    markers = tmp_path / "markers"
    markers.mkdir()
    enqueue_markers(url, markers, N_TASKS, sleep=0.05)
    server = Server(tmp_path / "serve")
    server.start()
    procs, errs = _start_four(server.base, token, tmp_path)
    try:
        wait_until(lambda: completed_count(url) >= 60, timeout=120, what="60 done")
        restart = pg_ctl("restart")
        assert restart.returncode == 0, restart.stderr
        codes = [p.wait(timeout=300) for p in procs]
    finally:
        ensure_pg_up(url)
        for p in procs:
            stop(p)
        server.stop()
    logs = [e.read_text() for e in errs]
    assert codes == [0, 0, 0, 0], logs
    assert_each_ran_once(url, markers, N_TASKS)
    assert server.proc is not None and server.starts == 1  # the same server rode it out


def test_lost_claim_and_finish_replies_are_retried_without_loss_or_repeat(queue_url, tmp_path):
    token = worker_token()
    markers = tmp_path / "markers"
    markers.mkdir()
    enqueue_markers(queue_url, markers, 3)
    server = Server(tmp_path / "serve")
    server.start()
    # The first claim that got a task, and the first finish, lose their replies.
    dropper = ReplyDropper(
        server.port, {"/api/v1/claim": (1, b'"token"'), "/finish": (1, b'"completed"')}
    )
    err = tmp_path / "w.err"
    try:
        worker = start_http_worker(dropper.base, token, "--close-on-empty-queue", err=err)
        assert worker.wait(timeout=120) == 0, err.read_text()
    finally:
        dropper.close()
        server.stop()
    log = err.read_text()
    assert len(dropper.dropped) == 2, dropper.dropped
    assert "server unavailable during claim" in log
    assert "server unavailable during recording task" in log
    assert_each_ran_once(queue_url, markers, 3)
    # Nothing was claimed twice, nothing released as an orphan: one attempt per task.
    assert sql(queue_url, "SELECT outcome, COUNT(*) FROM task_attempts GROUP BY outcome") == [
        ("completed", 3)
    ]
    assert sql(queue_url, "SELECT DISTINCT attempts FROM tasks") == [(1,)]
