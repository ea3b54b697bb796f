"""Worker requests safe to retry (``queue.replies``): the same request ID gets the
first answer, from any connection, and old answers expire."""

from __future__ import annotations

from hpclaunch import Queue
from hpclaunch.queue import claims, replies
from hpclaunch.queue.session import Outcome


def _setup(url: str):
    queue = Queue(url)
    first = queue.enqueue_command(["true"]).id
    second = queue.enqueue_command(["true"]).id
    conn = queue.conn
    worker = claims.register_worker(conn, host="h", pid=1, tags="default", mode="d", lease=60)

    def claimer(c):
        return claims.Claimer(
            c,
            worker_id=worker,
            tag_sets=["default"],
            lease=60,
            allow_pickle=True,
            fit_deadline=False,
        )

    return queue, conn, worker, claimer, (first, second)


def test_a_retried_claim_returns_the_same_task_and_token(queue_url):
    queue, conn, worker, claimer, (first, second) = _setup(queue_url)
    task = replies.claim(conn, worker, "req-1", claimer, None)
    assert task is not None and task.id == first
    again = replies.claim(conn, worker, "req-1", claimer, None)  # its reply was lost
    assert again == task  # same task, same token, same attempt: nothing else claimed
    other = Queue(queue_url).conn  # another server process
    assert replies.claim(other, worker, "req-1", claimer, None) == task
    assert replies.claim(conn, worker, "req-2", claimer, None).id == second
    # Once the task is no longer held (finished), the old request gets nothing.
    assert replies.finish(conn, worker, "fin-1", task, Outcome(ok=True)) == "completed"
    assert replies.claim(conn, worker, "req-1", claimer, None) is None
    queue.close()


def test_a_retried_finish_or_release_gets_the_recorded_answer(queue_url):
    queue, conn, worker, claimer, _ = _setup(queue_url)
    task = replies.claim(conn, worker, "c1", claimer, None)
    failed = Outcome(ok=False, reason="exit_code", exit_code=1)
    assert replies.finish(conn, worker, "f1", task, failed) == "pending"  # retried later
    assert replies.finish(conn, worker, "f1", task, failed) == "pending"  # not "fenced off"
    assert conn.one("SELECT attempts FROM tasks WHERE id = :i", {"i": task.id})[0] == 1
    # The record lost (a crash between the two writes): the attempt's log answers.
    conn.execute("DELETE FROM worker_requests WHERE request_id = 'f1'")
    assert replies.finish(conn, worker, "f1", task, failed) == "pending"
    held = replies.claim(conn, worker, "c2", claimer, None)
    assert replies.release(conn, worker, "r1", held, "stopped", 3) == "pending"
    assert replies.release(conn, worker, "r1", held, "stopped", 3) == "pending"
    assert replies.release(conn, worker, "r2", held, "stopped", 3) is None  # really fenced
    queue.close()


def test_old_answers_expire_and_an_exited_workers_are_forgotten(queue_url):
    queue, conn, worker, claimer, _ = _setup(queue_url)
    replies.claim(conn, worker, "old", claimer, None)
    replies.claim(conn, worker, "new", claimer, None)
    conn.execute(
        "UPDATE worker_requests SET created_at = created_at - 90000 WHERE request_id = 'old'"
    )
    assert replies.expire(conn) == 1
    left = conn.execute("SELECT request_id FROM worker_requests").fetchall()
    assert [r[0] for r in left] == ["new"]
    replies.forget(conn, worker)
    assert conn.one("SELECT COUNT(*) FROM worker_requests")[0] == 0
    assert replies.worker_token(conn, worker) == (True, None)
    assert replies.worker_token(conn, 999) == (False, None)
    queue.close()


def test_a_claim_committed_but_never_recorded_is_put_back_before_the_next(queue_url):
    """The server died between a claim's commit and its record: the retry (same request
    ID, no record) must not leave that task held by a worker that never got it."""
    queue, conn, worker, claimer, (first, second) = _setup(queue_url)
    lost = claimer(conn).claim()  # committed; its answer never recorded nor delivered
    assert lost.id == first
    got = replies.claim(conn, worker, "next", claimer, None)
    assert got is not None and got.id == first and got.token != lost.token
    rows = conn.execute("SELECT task_id, outcome, reason FROM task_attempts").fetchall()
    assert [tuple(r) for r in rows] == [(first, "released", "orphaned_claim")]
    # A recorded claim is not an orphan: the next claim leaves it alone.
    assert replies.claim(conn, worker, "other", claimer, None).id == second
    assert replies.held_task(conn, worker, first, got.token) is not None
    queue.close()
