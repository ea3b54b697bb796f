"""The named queue operations that end a running attempt: each leaves the task,
its attempt row and the worker row consistent, and each is fenced by the claim
token (a replaced attempt is left alone). SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from hpclaunch.queue import claims, driver, operations, store
from hpclaunch.tasks.payloads import worker_tag_sets


@pytest.fixture
def conn(queue_url):
    c = driver.connect(queue_url)
    yield c
    c.close()


def holder(conn):
    """A registered worker and a claim made in its name."""
    worker_id = claims.register_worker(
        conn, host="h", pid=1, tags="default", mode="draining", lease=30
    )
    claimer = claims.Claimer(
        conn,
        worker_id=worker_id,
        tag_sets=worker_tag_sets(["default"]),
        lease=30,
        allow_pickle=True,
        fit_deadline=False,
    )
    return worker_id, claimer


def attempts(conn, task_id):
    return [(a["outcome"], a["reason"]) for a in store.attempts(conn, task_id)]


def worker(conn, worker_id):
    return next(w for w in store.list_workers(conn, include_gone=True) if w["id"] == worker_id)


def test_return_launch_tasks_puts_them_back_uncounted(queue, conn):
    handle = queue.enqueue_command(["true"])
    worker_id, claimer = holder(conn)
    task = claimer.claim()
    assert operations.return_launch_tasks(conn, [worker_id]) == [handle.id]
    row = store.get_task(conn, handle.id)
    assert (row["status"], row["attempts"], row["worker_id"]) == ("pending", 0, None)
    assert attempts(conn, handle.id) == [("released", "launch_canceled")]
    assert (worker(conn, worker_id)["status"], worker(conn, worker_id)["exit_reason"]) == (
        "lost",
        "canceled",
    )
    assert claims.finish(conn, worker_id, task, claims.Outcome(ok=True)) is None  # fenced


def test_type_verdict_requeues_then_fails_when_spent(queue, conn):
    handle = queue.enqueue_command(["true"], max_attempts=2)
    first, claimer = holder(conn)
    claimer.claim()
    assert operations.type_verdict(conn, [first], "OUT_OF_MEMORY") == [(handle.id, "pending")]
    second, claimer = holder(conn)
    claimer.claim()
    assert operations.type_verdict(conn, [second], "OUT_OF_MEMORY") == [(handle.id, "failed")]
    row = store.get_task(conn, handle.id)
    assert (row["status"], row["attempts"], row["reason"]) == ("failed", 2, "OUT_OF_MEMORY")
    assert row["error"] == "array element ended OUT_OF_MEMORY (attempts spent)"
    assert attempts(conn, handle.id) == [("failed", "OUT_OF_MEMORY")] * 2
    assert worker(conn, first)["status"] == worker(conn, second)["status"] == "lost"


def test_type_verdict_counts_a_walltime_release_and_requeues_for_other_tags(queue, conn):
    handle = queue.enqueue_command(["true"])
    worker_id, claimer = holder(conn)
    task = claimer.claim()
    assert claims.release(conn, worker_id, task, claims.WALLTIME_RELEASE)
    typed = operations.type_verdict(
        conn, [worker_id], "TIMEOUT", new_tags="big", only_walltime=True
    )
    assert typed == [(handle.id, "pending")]
    row = store.get_task(conn, handle.id)
    assert (row["status"], row["attempts"], row["tags"]) == ("pending", 1, "big")
    assert attempts(conn, handle.id) == [("failed", "TIMEOUT")]


def test_a_replaced_attempt_is_left_alone(queue, conn):
    """The first worker's attempt was reaped and the task claimed again: a late
    verdict on the first worker changes nothing."""
    handle = queue.enqueue_command(["true"])
    first, claimer = holder(conn)
    stale = claimer.claim()
    conn.execute("UPDATE tasks SET lease_expires_at = 0 WHERE id = :id", {"id": handle.id})
    assert operations.reap(conn) == [(handle.id, "pending")]
    second, claimer = holder(conn)
    fresh = claimer.claim()
    assert operations.type_verdict(conn, [first], "NODE_FAIL") == []
    assert operations.return_launch_tasks(conn, [first]) == []
    assert not claims.release(conn, first, stale, "stopped")
    assert claims.heartbeat(conn, second, 30, fresh)
    assert store.get_task(conn, handle.id)["worker_id"] == second


def test_cancel_of_a_running_task_ends_its_attempt(queue, conn):
    handle = queue.enqueue_command(["true"])
    pending = queue.enqueue_command(["true"])
    worker_id, claimer = holder(conn)
    task = claimer.claim()
    assert operations.cancel(conn, [handle.id, pending.id]) == [handle.id, pending.id]
    assert attempts(conn, handle.id) == [("canceled", "canceled")]
    assert attempts(conn, pending.id) == []
    assert not claims.heartbeat(conn, worker_id, 30, task)  # its worker stops it
    assert operations.retry(conn, [handle.id]) == [handle.id]
    assert store.get_task(conn, handle.id)["status"] == "pending"


def test_release_orphans_returns_a_claim_nobody_holds(queue, conn):
    handle = queue.enqueue_command(["true"])
    worker_id, claimer = holder(conn)
    claimer.claim()  # as if the reply was lost
    assert claims.release_orphans(conn, worker_id) == [handle.id]
    row = store.get_task(conn, handle.id)
    assert (row["status"], row["attempts"]) == ("pending", 0)
    assert attempts(conn, handle.id) == [("released", "orphaned_claim")]
