"""Batching (claims of several short tasks, results written in groups) keeps
every guarantee: exactly once, stop gives prefetched tasks back uncounted,
priorities within a bound, a lost notification only delays."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

from queue_helpers import hpclaunch_cmd
from waiting import wait_until

from hpclaunch.queue import db, driver, prefetch, store
from hpclaunch.queue.batches import TaskSpec
from hpclaunch.queue.db_session import DatabaseSession
from hpclaunch.queue.session import Outcome, WorkerInfo

HERE = Path(__file__).parent


def _spec(target: str, args: list, *, priority: int = 0) -> TaskSpec:
    return TaskSpec(
        kind="call",
        payload={"target": target, "args": args, "kwargs": {}},
        tags="default",
        priority=priority,
        max_attempts=3,
        timeout=None,
        expected_runtime=None,
    )


def _enqueue(url: str, specs: list[TaskSpec]) -> list[int]:
    conn = db.connect(url)  # migrates a fresh SQLite file
    try:
        return store.insert_tasks(conn, specs)
    finally:
        conn.close()


def _rows(url: str, sql: str, params: dict | None = None) -> list:
    conn = driver.connect(url)
    try:
        return conn.execute(sql, params or {}).fetchall()
    finally:
        conn.close()


def _worker(*args: str) -> subprocess.Popen:
    """A real worker process that can import ``marker_calls``."""
    env = {**os.environ, "PYTHONPATH": str(HERE)}
    return subprocess.Popen(
        hpclaunch_cmd("worker", *args), stderr=subprocess.PIPE, text=True, env=env
    )


def test_eight_workers_5000_tasks_exactly_once_with_prefetch(queue_url, tmp_path):
    marks = tmp_path / "marks"
    n, workers = 5000, 8
    _enqueue(queue_url, [_spec("marker_calls:mark", [str(marks), i]) for i in range(n)])
    procs = [_worker("--close-on-empty-queue") for _ in range(workers)]
    logs = []
    for proc in procs:
        _, err = proc.communicate(timeout=900)
        assert proc.returncode == 0, err
        logs.append(err)
    ran = Counter(int(line) for line in marks.read_text().split())
    assert len(ran) == n, "some tasks never ran"
    assert set(ran.values()) == {1}, "some task ran more than once"
    # Batching was on: some claims returned several tasks.
    assert any("claims (prefetch)" in err for err in logs), logs[0][-2000:]
    (completed, pending, other) = _rows(
        queue_url,
        "SELECT SUM(CASE WHEN status = 'completed' THEN 1 ELSE 0 END), "
        "SUM(CASE WHEN status = 'pending' THEN 1 ELSE 0 END), "
        "SUM(CASE WHEN status NOT IN ('completed', 'pending') THEN 1 ELSE 0 END) FROM tasks",
    )[0]
    assert (completed, pending, other or 0) == (n, 0, 0)
    # One counted attempt per task, recorded once; give-backs are uncounted.
    per_task = _rows(
        queue_url,
        "SELECT t.id, t.attempts, COUNT(a.id) FROM tasks t JOIN task_attempts a "
        "ON a.task_id = t.id AND a.outcome = 'completed' GROUP BY t.id, t.attempts",
    )
    assert len(per_task) == n
    assert {(attempts, recorded) for _, attempts, recorded in per_task} == {(1, 1)}


def _session(url: str, stop: list[bool], logged: list[str]) -> DatabaseSession:
    session = DatabaseSession(url, wait=10, log=logged.append, stop=lambda: stop[0])
    session.register(
        WorkerInfo(
            host="test",
            pid=os.getpid(),
            tags="default",
            tag_sets=["default"],
            mode="draining",
            lease=60,
            allow_pickle=True,
            fit_deadline=False,
            version="test",
        )
    )
    return session


def test_a_stop_gives_prefetched_tasks_back_uncounted(queue_url):
    """The session's own side thread gives them back while the held task runs."""
    _enqueue(queue_url, [_spec("os:getpid", []) for _ in range(40)])
    stop, logged = [False], []
    session = _session(queue_url, stop, logged)
    try:
        first = session.claim(None)  # no runtime seen yet: one task
        assert first is not None
        session.finish(first, Outcome(ok=True, result="1"), wait=10)  # a fast one: k grows
        held = session.claim(None)
        assert held is not None
        prefetched = _rows(
            queue_url,
            "SELECT COUNT(*) FROM tasks WHERE status = 'running' AND id <> :id",
            {"id": held.id},
        )[0][0]
        assert prefetched == prefetch.PREFETCH_MAX - 1
        stop[0] = True  # what the worker's SIGTERM handler sets
        wait_until(
            lambda: (
                _rows(queue_url, "SELECT COUNT(*) FROM tasks WHERE status = 'running'")[0][0] == 1
            ),
            timeout=30,
            what="the prefetched tasks to go back",
        )
        assert any("given back (stop signal)" in line for line in logged), logged
        # The held task is still ours and finishes; the others are pending, uncounted.
        assert session.finish(held, Outcome(ok=True, result="1"), wait=10) == "completed"
        session.record_exit("signal", None, wait=10)
    finally:
        session.close()
    rows = _rows(queue_url, "SELECT status, attempts, reason FROM tasks ORDER BY id")
    assert Counter(r[0] for r in rows) == {"completed": 2, "pending": 38}
    pending = [(r[1], r[2]) for r in rows if r[0] == "pending"]
    assert {attempts for attempts, _ in pending} == {0}, "a given-back task was counted"
    assert {reason for _, reason in pending} <= {None, "prefetch_returned"}
    released = _rows(
        queue_url,
        "SELECT COUNT(*) FROM task_attempts WHERE outcome = 'released' AND reason = :r",
        {"r": "prefetch_returned"},
    )[0][0]
    assert released == prefetch.PREFETCH_MAX - 1


def test_sigterm_to_a_worker_holding_prefetched_tasks(queue_url, tmp_path):
    """A real worker: quick tasks make it prefetch, then SIGTERM while it runs a
    slower one. Nothing is lost, nothing counted, nothing failed."""
    quick = [_spec("os:getpid", []) for _ in range(60)]
    slow = [_spec("time:sleep", [0.3]) for _ in range(40)]
    _enqueue(queue_url, quick + slow)
    proc = _worker("--wait-timeout", "30")
    try:
        wait_until(
            lambda: (
                _rows(
                    queue_url,
                    "SELECT COUNT(*) FROM tasks "
                    "WHERE status = 'running' AND payload LIKE '%sleep%'",
                )[0][0]
                > 0
            ),
            timeout=120,
            what="a slow task to start",
        )
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    rows = _rows(queue_url, "SELECT status, attempts FROM tasks")
    statuses = Counter(r[0] for r in rows)
    assert set(statuses) <= {"completed", "pending"}, statuses
    assert statuses["pending"] > 0
    assert {r[1] for r in rows if r[0] == "pending"} == {0}, "a given-back task was counted"
    exit_reason = _rows(queue_url, "SELECT exit_reason FROM workers")[0][0]
    assert exit_reason == "signal"


def test_a_higher_priority_task_waits_at_most_one_batch_per_worker(queue_url, tmp_path):
    workers = 2
    _enqueue(queue_url, [_spec("os:getpid", []) for _ in range(3000)])
    procs = [_worker("--close-on-empty-queue") for _ in range(workers)]
    try:
        wait_until(
            lambda: (
                _rows(queue_url, "SELECT COUNT(*) FROM tasks WHERE status = 'completed'")[0][0]
                >= 300
            ),
            timeout=300,
            what="the workers to be draining",
        )
        (urgent,) = _enqueue(queue_url, [_spec("os:getpid", [], priority=10)])
        visible = time.time()  # committed by now: every claim from here on sees it
        logs = [proc.communicate(timeout=600)[1] for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    assert any("claims (prefetch)" in err for err in logs), logs
    started = _rows(queue_url, "SELECT started_at FROM tasks WHERE id = :id", {"id": urgent})[0][0]
    overtaken = _rows(
        queue_url,
        "SELECT COUNT(*) FROM tasks WHERE priority = 0 AND started_at > :visible "
        "AND started_at < :started",
        {"visible": visible, "started": started},
    )[0][0]
    # Claimed after it was visible, yet before it: only a claim already in flight
    # (one batch per worker); the next claim of every worker takes it first.
    assert overtaken <= prefetch.PREFETCH_MAX * workers
    later = _rows(
        queue_url, "SELECT COUNT(*) FROM tasks WHERE started_at > :started", {"started": started}
    )[0][0]
    assert later > 0, "the queue emptied before the urgent task was enqueued: test proves nothing"


def test_a_lost_notification_only_delays(pg_queue_url):
    """A task inserted with the notify trigger off (replica role: no triggers)
    is still found by the idle worker's slow fallback poll."""
    proc = _worker("--wait-timeout", "120")
    try:
        wait_until(
            lambda: _rows(pg_queue_url, "SELECT COUNT(*) FROM workers")[0][0] == 1,
            timeout=60,
            what="the worker to register",
        )
        conn = driver.connect(pg_queue_url)
        try:
            conn.execute("SET session_replication_role = replica")
            (task_id,) = store.insert_tasks(conn, [_spec("os:getpid", [])])
        finally:
            conn.close()
        wait_until(
            lambda: (
                _rows(pg_queue_url, "SELECT status FROM tasks WHERE id = :id", {"id": task_id})[0][
                    0
                ]
                == "completed"
            ),
            timeout=60,
            what="the task to be found without its notification",
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    assert proc.returncode == 0


def test_an_idle_claim_is_woken_by_the_enqueue(queue_url, monkeypatch):
    """With the fallback poll pushed out to an hour, only the wake-up (NOTIFY on
    PostgreSQL, the data_version check on SQLite) can bring the task."""
    from hpclaunch.queue import db_session

    monkeypatch.setattr(db_session, "FALLBACK_POLL", 3600.0)
    stop, logged = [False], []
    session = _session(queue_url, stop, logged)
    box: dict = {}
    try:
        assert session.claim(None) is None  # empty: the claim would wait
        thread = threading.Thread(target=lambda: box.update(task=session.claim(None, 600)))
        thread.start()
        time.sleep(0.5)  # waiting on its listener now
        (task_id,) = _enqueue(queue_url, [_spec("os:getpid", [])])
        thread.join(120)
        stop[0] = True  # ends the wait if the wake-up never came
        thread.join(10)
        assert box["task"] is not None and box["task"].id == task_id, logged
        assert not any("polling" in line for line in logged), logged
        session.release(box["task"], "stopped")
    finally:
        stop[0] = True
        session.close()


def test_claim_many_keeps_tags_pickle_and_priority_order(queue_url):
    """The batch claim is the one-task claim's statement: same filters, same order."""
    from hpclaunch.queue import claims

    def spec(tags: str, priority: int, kind: str = "call") -> TaskSpec:
        return TaskSpec(
            kind=kind,
            payload={"target": "os:getpid", "args": [], "kwargs": {}},
            tags=tags,
            priority=priority,
            max_attempts=3,
            timeout=None,
            expected_runtime=None,
        )

    ids = _enqueue(
        queue_url,
        [spec("default", 0), spec("gpu", 9), spec("a", 1), spec("default", 5), spec("a,b", 7)],
    )
    conn = db.connect(queue_url)
    try:
        worker = claims.register_worker(
            conn, host="h", pid=1, tags="a,default", mode="draining", lease=60
        )
        claimer = claims.Claimer(
            conn,
            worker_id=worker,
            tag_sets=["default", "a", "a,default"],
            lease=60,
            allow_pickle=True,
            fit_deadline=False,
        )
        got = claimer.claim_many(None, 10)
        # Not "gpu" nor "a,b" (tags it lacks); priority first, then age.
        assert [t.id for t in got] == [ids[3], ids[2], ids[0]]
        assert len({t.token for t in got}) == 1
        assert claimer.claim_many(None, 10) == []
    finally:
        conn.close()
