"""The queue operations behind "no task left behind" and the walltime
bound, on SQLite and PostgreSQL: at most one live watcher per
silent owner's task, fenced by the attempt; a task that never fits stops coming
back. The end-to-end runs with real processes are in tests/faults/."""

from __future__ import annotations

import threading

import pytest

from hpclaunch.queue import claims, driver, operations, store
from hpclaunch.tasks.payloads import worker_tag_sets

TAGS = worker_tag_sets(["default"])


@pytest.fixture
def conn(queue_url):
    c = driver.connect(queue_url)
    yield c
    c.close()


def register(conn, lease: float = 30) -> int:
    return claims.register_worker(
        conn, host="h", pid=1, tags="default", mode="draining", lease=lease
    )


def claimer(conn, worker_id: int) -> claims.Claimer:
    return claims.Claimer(
        conn, worker_id=worker_id, tag_sets=TAGS, lease=30, allow_pickle=True, fit_deadline=False
    )


def silence(conn, worker_id: int, seconds: float) -> None:
    """The worker's last heartbeat was ``seconds`` ago (it was SIGKILLed then)."""
    conn.execute(
        "UPDATE workers SET heartbeat_at = heartbeat_at - :s WHERE id = :id",
        {"s": seconds, "id": worker_id},
    )


def watch(conn, worker_id: int, within: float | None = None):
    return claims.watch(conn, worker_id, TAGS, allow_pickle=True, within=within)


def test_one_watcher_per_silent_task_and_none_for_a_live_owner(queue, conn):
    handle = queue.enqueue_command(["true"])
    owner = register(conn)
    claimer(conn, owner).claim()
    a, b = register(conn), register(conn)
    assert watch(conn, a) is None  # the owner heart-beats: nobody waits
    assert store.silent_owners(conn) == []
    silence(conn, owner, 20)  # two heartbeats (of lease/4) missed
    found = watch(conn, a)
    assert found is not None and (found.task_id, found.owner) == (handle.id, owner)
    assert found.silent_for >= 20 and found.lease_ends_in <= 30
    assert watch(conn, b) is None  # a watches it: b may leave
    assert watch(conn, a).task_id == handle.id  # a keeps its watch
    (row,) = store.silent_owners(conn)
    assert (row["task_id"], row["worker_id"], row["watcher_id"]) == (handle.id, owner, a)
    # The watcher left: b takes over.
    claims.record_worker_exit(conn, a, "empty_queue", None)
    assert watch(conn, b).task_id == handle.id
    # Not within b's time left: nothing to wait for.
    assert watch(conn, b, within=1) is None


def test_a_new_attempt_has_no_watcher_and_a_busy_watcher_lets_go(queue, conn):
    handle = queue.enqueue_command(["true"])
    owner = register(conn)
    claimer(conn, owner).claim()
    silence(conn, owner, 20)
    a, b = register(conn), register(conn)
    assert watch(conn, a).task_id == handle.id
    conn.execute("UPDATE tasks SET lease_expires_at = 0 WHERE id = :id", {"id": handle.id})
    assert operations.reap(conn) == [(handle.id, "pending")]
    second = register(conn)
    claimer(conn, second).claim()  # the next attempt: a's watch was for the last one
    silence(conn, second, 20)
    assert watch(conn, b).task_id == handle.id
    claims.unwatch(conn, b)  # b took other work
    assert watch(conn, a).task_id == handle.id


def test_racing_watchers_one_wins(queue, queue_url):
    handle = queue.enqueue_command(["true"])
    setup = driver.connect(queue_url)
    owner = register(setup)
    claimer(setup, owner).claim()
    silence(setup, owner, 20)
    ids = [register(setup) for _ in range(6)]
    setup.close()
    barrier = threading.Barrier(len(ids))
    won: list[int] = []

    def race(worker_id: int) -> None:
        c = driver.connect(queue_url)
        try:
            barrier.wait()
            found = None
            for _ in range(50):  # SQLite: a locked file is retried, as the session does
                try:
                    found = watch(c, worker_id)
                    break
                except Exception as exc:  # noqa: BLE001
                    if "locked" not in str(exc).lower():
                        raise
            if found is not None:
                won.append(found.task_id)
        finally:
            c.close()

    threads = [threading.Thread(target=race, args=(i,)) for i in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert won == [handle.id]


def test_a_task_stopped_at_the_walltime_too_often_fails_as_timeout(queue, conn):
    handle = queue.enqueue_command(["sleep", "100"])
    worker_id = register(conn)
    take = claimer(conn, worker_id)
    for _ in range(3):
        assert claims.release(conn, worker_id, take.claim(), claims.WALLTIME_RELEASE) == "pending"
    assert claims.release(conn, worker_id, take.claim(), claims.WALLTIME_RELEASE) == "failed"
    row = store.get_task(conn, handle.id)
    assert (row["status"], row["reason"], row["attempts"]) == ("failed", "TIMEOUT", 1)
    assert "never fits" in row["error"]
    outcomes = [(a["outcome"], a["reason"]) for a in store.attempts(conn, handle.id)]
    assert outcomes == [("released", "walltime")] * 3 + [("failed", "TIMEOUT")]
    # Other stops are not bounded: they are not the task's fault.
    other = queue.enqueue_command(["true"])
    for _ in range(5):
        assert claims.release(conn, worker_id, take.claim(), "stopped") == "pending"
    assert store.get_task(conn, other.id)["status"] == "pending"


def test_a_deadline_stop_counts_only_tasks_that_do_not_fit(queue, conn):
    """A worker stopping at its deadline says how many tasks do not fit; a task that
    fits but is held by another worker's claim is not one of them (with 16 workers
    draining 200 tasks, the last ones said "N pending task(s) do not fit")."""
    queue.enqueue_command(["true"], expected_runtime=5)
    queue.enqueue_command(["true"], expected_runtime=500)
    worker = register(conn)
    deadline_aware = claims.Claimer(
        conn, worker_id=worker, tag_sets=TAGS, lease=30, allow_pickle=True, fit_deadline=True
    )
    assert deadline_aware.too_long(60) == 1  # the 500 s task; the 5 s one fits
    assert deadline_aware.too_long(1000) == 0
    assert deadline_aware.claim(60) is not None  # the 5 s task
    assert deadline_aware.claim(60) is None  # only the 500 s one is left, and it does not fit
    assert deadline_aware.too_long(60) == 1
