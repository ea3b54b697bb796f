"""The wake-up on new work (``queue.wake``): a listener wakes when a task becomes
pending, whoever wrote it (another connection, another process, a retry)."""

from __future__ import annotations

import threading
import time

from queue_helpers import run_cli

from hpclaunch import Queue
from hpclaunch.queue import operations, wake


def _wait_in_thread(listener: wake.Listener, timeout: float) -> tuple[threading.Thread, dict]:
    box: dict = {}

    def run() -> None:
        started = time.monotonic()
        box["woke"] = listener.wait(timeout)
        box["after"] = time.monotonic() - started

    thread = threading.Thread(target=run)
    thread.start()
    time.sleep(0.2)  # the listener is blocked in wait() now
    return thread, box


def test_enqueue_from_another_process_wakes_the_listener(queue_url):
    Queue(queue_url).conn.close()  # a migrated database, as a server or worker has
    listener = wake.open_listener(queue_url)
    try:
        assert listener.wait(0.3) is False  # nothing happened: a plain timeout
        thread, box = _wait_in_thread(listener, 20)
        out = run_cli("enqueue", "--", "true")  # another process, its own connection
        assert out.returncode == 0, out.stderr
        thread.join(25)
        assert box["woke"] is True
        assert box["after"] < 10  # generous: SQLite checks every SLOW_POLL seconds
        assert listener.generation == 1
    finally:
        listener.close()


def test_a_task_put_back_to_pending_wakes_the_listener(queue_url):
    queue = Queue(queue_url)
    handle = queue.enqueue_command(["true"])
    conn = queue.conn
    operations.cancel(conn, [handle.id])
    listener = wake.open_listener(queue_url)
    try:
        listener.wait(0.1)
        while listener.wait(1.5):  # drain wakes caused by the setup
            pass
        thread, box = _wait_in_thread(listener, 20)
        operations.retry(conn, [handle.id])  # canceled -> pending: an UPDATE, not an insert
        thread.join(25)
        assert box["woke"] is True
    finally:
        listener.close()
        queue.close()


def test_notify_and_close_interrupt_a_wait(queue_url):
    Queue(queue_url).conn.close()
    listener = wake.open_listener(queue_url)
    thread, box = _wait_in_thread(listener, 30)
    listener.notify()
    thread.join(5)
    assert box == {"woke": True, "after": box["after"]} and box["after"] < 2
    thread, box = _wait_in_thread(listener, 30)
    listener.close()
    thread.join(5)
    assert box["woke"] is False and box["after"] < 2


def test_postgres_claims_do_not_wake(pg_queue_url):
    """Only a task becoming pending notifies: a claim (pending -> running) does not."""
    queue = Queue(pg_queue_url)
    queue.enqueue_command(["true"])
    listener = wake.open_listener(pg_queue_url)
    try:
        from hpclaunch.queue import claims

        worker = claims.register_worker(
            queue.conn, host="h", pid=1, tags="default", mode="draining", lease=60
        )
        claimer = claims.Claimer(
            queue.conn,
            worker_id=worker,
            tag_sets=["default"],
            lease=60,
            allow_pickle=True,
            fit_deadline=False,
        )
        assert claimer.claim() is not None
        assert listener.wait(1.0) is False
    finally:
        listener.close()
        queue.close()
