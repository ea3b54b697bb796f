"""Workers that die or are told to stop lose nothing."""

from __future__ import annotations

import os
import signal
import time

import pytest
from queue_helpers import start_worker
from waiting import wait_until


def test_sigkilled_worker_task_is_reaped_and_rerun(queue, tmp_path):
    starts = tmp_path / "starts"
    handle = queue.enqueue_command(f"echo start >> {starts}; sleep 2", max_attempts=3)
    first = start_worker("--lease", "1", "--singleflow", "-q", start_new_session=True)
    wait_until(lambda: starts.exists())
    # The node dies: the worker and everything it started are killed at once.
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    assert handle.status == "running"  # nobody has noticed yet

    second = start_worker("--lease", "1", "--close-on-empty-queue", "--wait-timeout", "10", "-q")
    _, err = second.communicate(timeout=60)
    assert second.returncode == 0, err
    task = handle.info()
    assert task["status"] == "completed"
    assert task["attempts"] == 2
    assert len(starts.read_text().splitlines()) == 2
    outcomes = [a["outcome"] for a in queue_attempts(queue, handle.id)]
    assert outcomes == ["lost", "completed"]


def test_lease_expiry_with_attempts_spent_fails_the_task(queue, tmp_path):
    marker = tmp_path / "started"
    handle = queue.enqueue_command(f"touch {marker}; sleep 5", max_attempts=1)
    first = start_worker("--lease", "1", "--singleflow", "-q", start_new_session=True)
    wait_until(marker.exists)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    time.sleep(1.5)
    from queue_helpers import run_cli

    out = run_cli("tasks", "reap", check=True)
    assert "1 task(s) reaped: 0 back to pending, 1 failed" in out.stdout
    task = handle.info()
    assert task["status"] == "failed" and task["reason"] == "lease_expired"


def test_sigterm_gives_running_command_back_to_queue(queue, tmp_path):
    marker = tmp_path / "started"
    handle = queue.enqueue_command(f"touch {marker}; sleep 30")
    proc = start_worker("--grace", "1", "--singleflow")
    wait_until(marker.exists)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    task = handle.info()
    assert task["status"] == "pending"
    assert task["attempts"] == 0  # an interruption is not a failure
    assert [a["outcome"] for a in queue_attempts(queue, handle.id)] == ["released"]
    workers = worker_rows(queue)
    assert workers[0]["exit_reason"] == "signal"


def test_sigterm_lets_a_task_finish_within_grace(queue, tmp_path):
    marker = tmp_path / "started"
    # A command that handles TERM itself and finishes cleanly.
    handle = queue.enqueue_command(
        f"trap 'echo cleaning up; sleep 0.5; exit 0' TERM; touch {marker}; sleep 30 & wait"
    )
    proc = start_worker("--grace", "10", "--singleflow")
    wait_until(marker.exists)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    task = handle.info()
    assert task["status"] == "completed"
    assert "cleaning up" in task["stdout_tail"]


def test_sigterm_during_a_call_lets_it_finish_or_requeues(queue):
    finishes = queue.enqueue_call("time:sleep", [1.0])
    proc = start_worker("--grace", "5", "--close-on-empty-queue")
    wait_until(lambda: finishes.status == "running")
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 0
    assert finishes.status == "completed"

    too_long = queue.enqueue_call("time:sleep", [60])
    proc = start_worker("--grace", "0.5", "--close-on-empty-queue")
    wait_until(lambda: too_long.status == "running")
    proc.send_signal(signal.SIGUSR1)
    assert proc.wait(timeout=30) == 0
    assert too_long.status == "pending"


@pytest.mark.parametrize("kind", ["command", "call"])
def test_timeout_fails_the_attempt_and_retries(queue, kind):
    if kind == "command":
        handle = queue.enqueue_command(["sleep", "30"], timeout=0.5, max_attempts=2)
    else:
        handle = queue.enqueue_call("time:sleep", [30], timeout=0.5, max_attempts=2)
    proc = start_worker("--close-on-empty-queue", "-q")
    assert proc.wait(timeout=60) == 0
    task = handle.info()
    assert task["status"] == "failed" and task["reason"] == "timeout"
    assert [a["outcome"] for a in queue_attempts(queue, handle.id)] == ["failed", "failed"]


def test_failing_task_keeps_each_attempts_error(queue):
    handle = queue.enqueue_command("echo boom >&2; exit 7", max_attempts=3)
    assert start_worker("--close-on-empty-queue", "-q").wait(timeout=60) == 0
    task = handle.info()
    assert task["status"] == "failed" and task["attempts"] == 3 and task["exit_code"] == 7
    assert "boom" in task["stderr_tail"]
    history = queue_attempts(queue, handle.id)
    assert [(a["outcome"], a["exit_code"]) for a in history] == [("failed", 7)] * 3


def test_late_result_of_a_replaced_attempt_is_rejected(queue_url, queue):
    """Fencing: a worker whose lease expired cannot overwrite its successor."""
    from hpclaunch.queue import claims, driver, operations

    handle = queue.enqueue_command(["true"])
    conn = driver.connect(queue_url)
    try:
        w1 = claims.register_worker(
            conn, host="a", pid=1, tags="default", mode="draining", lease=0.01
        )
        w2 = claims.register_worker(
            conn, host="b", pid=2, tags="default", mode="draining", lease=30
        )
        stale = claims.Claimer(
            conn,
            worker_id=w1,
            tag_sets=["default"],
            lease=0.01,
            allow_pickle=True,
            fit_deadline=False,
        ).claim()
        time.sleep(0.05)
        assert operations.reap(conn) == [(handle.id, "pending")]
        fresh = claims.Claimer(
            conn,
            worker_id=w2,
            tag_sets=["default"],
            lease=30,
            allow_pickle=True,
            fit_deadline=False,
        ).claim()
        assert fresh.id == stale.id and fresh.attempt == 2
        assert claims.finish(conn, w1, stale, claims.Outcome(ok=False, reason="late")) is None
        assert claims.heartbeat(conn, w1, 30, stale) is False
        assert claims.finish(conn, w2, fresh, claims.Outcome(ok=True, exit_code=0)) == "completed"
    finally:
        conn.close()
    assert handle.info()["reason"] is None


def test_canceling_a_running_task_stops_its_command(queue, tmp_path):
    marker = tmp_path / "started"
    handle = queue.enqueue_command(f"touch {marker}; sleep 60")
    proc = start_worker("--lease", "1", "--singleflow", "-q")
    wait_until(marker.exists)
    assert handle.cancel()
    assert proc.wait(timeout=30) == 0  # the heartbeat noticed and killed the command
    assert handle.status == "canceled"


def queue_attempts(queue, task_id):
    from hpclaunch.queue import store

    return store.attempts(queue.conn, task_id)


def worker_rows(queue):
    from hpclaunch.queue import store

    return store.list_workers(queue.conn, include_gone=True)


def test_binary_output_is_stored_not_fatal(queue):
    """A NUL byte in output must not crash the worker (PostgreSQL refuses NUL in text)."""
    command = queue.enqueue_command(["printf", "a\\000b"])
    call = queue.enqueue_call("builtins:print", ["x\x00y"])
    after = queue.enqueue_command(["true"])
    assert start_worker("--close-on-empty-queue", "-q").wait(timeout=60) == 0
    assert [h.status for h in (command, call, after)] == ["completed"] * 3
    assert command.info()["stdout_tail"] == "a\ufffdb"
    assert call.info()["stdout_tail"] == "x\ufffdy\n"


def test_canceling_a_running_call_stops_it(queue):
    handle = queue.enqueue_call("time:sleep", [120])
    proc = start_worker("--lease", "1", "--singleflow", "-q")
    wait_until(lambda: handle.status == "running")
    started = time.monotonic()
    assert handle.cancel()
    assert proc.wait(timeout=30) == 0  # not 120 s: the call was interrupted
    assert time.monotonic() - started < 20
    assert handle.status == "canceled"


def test_a_malformed_payload_fails_its_task_not_the_worker(queue_url, queue):
    from hpclaunch.queue import driver

    broken = queue.enqueue_command(["true"], max_attempts=1)
    fine = queue.enqueue_command(["true"])
    conn = driver.connect(queue_url)
    try:
        conn.execute(
            "UPDATE tasks SET payload = :p WHERE id = :id", {"p": "{not json", "id": broken.id}
        )
    finally:
        conn.close()
    assert start_worker("--close-on-empty-queue", "-q").wait(timeout=60) == 0
    info = broken.info()
    assert info["status"] == "failed" and info["reason"] == "bad_payload"
    assert fine.status == "completed"
