"""No task left behind: workers about to leave an empty queue wait for
a task whose owner was SIGKILLed (exactly one of them), not for a live owner's."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

from fault_helpers import run_cli, sql, start_worker, task_counts
from waiting import wait_until

from hpclaunch.queue import driver, store

LEASE = "20"  # silent after 10 s (two heartbeats missed); the lease ends 10 s later


def _last_task(tmp_path: Path) -> tuple[str, Path, Path]:
    """A task that sleeps on its first run (recording its pid) and ends at once on
    the next, so the rerun after the reap is quick."""
    runs, pid = tmp_path / "runs", tmp_path / "sleeper.pid"
    command = (
        f"echo run >> {runs}; if [ $(wc -l < {runs}) -gt 1 ]; then exit 0; fi; "
        f"echo $$ > {pid}; exec sleep 600"
    )
    return command, runs, pid


def _blockers(queue, gate: Path, n: int) -> None:
    for _ in range(n):
        queue.enqueue_command(f"while [ ! -e {gate} ]; do sleep 0.1; done")


def _silent(url: str) -> list[dict]:
    """``silent_owners()``; [] (poll again) while the shared server restarts."""
    from hpclaunch.queue import retry

    try:
        conn = driver.connect(url)
    except Exception as exc:
        if retry.is_transient(exc):
            return []
        raise
    try:
        return store.silent_owners(conn)
    finally:
        conn.close()


def _owner_pid(url: str, task_id: int) -> int:
    return sql(
        url,
        "SELECT w.pid FROM tasks t JOIN workers w ON w.id = t.worker_id WHERE t.id = :id",
        {"id": task_id},
    )[0][0]


def _kill_sleeper(pid_file: Path) -> None:
    if pid_file.exists():
        try:
            os.kill(int(pid_file.read_text()), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass


def _workers(url: str) -> dict[int, dict]:
    rows = json.loads(run_cli("workers", "--all", "--json", check=True).stdout)
    return {w["pid"]: w for w in rows}


def test_one_survivor_waits_for_a_killed_owners_task_and_runs_it(db_url, queue, tmp_path):
    command, runs, pid_file = _last_task(tmp_path)
    last = queue.enqueue_command(command, priority=10)  # claimed first
    gate = tmp_path / "gate"
    _blockers(queue, gate, 3)
    logs = [tmp_path / f"w{i}.err" for i in range(4)]
    procs = [
        start_worker("--close-on-empty-queue", "--lease", LEASE, stderr_path=log) for log in logs
    ]
    try:
        wait_until(lambda: task_counts(db_url).get("running") == 4, timeout=60)
        wait_until(pid_file.exists, timeout=30)
        owner = _owner_pid(db_url, last.id)
        victim = next(p for p in procs if p.pid == owner)
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)
        # `status` shows why the queue is not done yet.
        silent = wait_until(lambda: _silent(db_url), timeout=60, what="the owner goes silent")
        assert [s["task_id"] for s in silent] == [last.id]
        report = json.loads(run_cli("status", "--json", check=True).stdout)
        (row,) = report["silent_owners"]
        assert row["task_id"] == last.id and row["silent_for"] >= 10
        assert 0 < row["lease_ends_in"] <= 20
        text = run_cli("status", check=True).stdout
        assert f"task {last.id}: owner worker {row['worker_id']} silent for" in text

        gate.touch()  # the survivors finish their tasks and find the queue empty
        survivors = [p for p in procs if p is not victim]
        # Two leave at once: before the killed owner's lease has even ended.
        wait_until(lambda: sum(p.poll() is not None for p in survivors) >= 2, timeout=60)
        assert last.status == "running"
        assert [p.poll() for p in survivors].count(None) == 1
        assert [p.wait(timeout=120) for p in survivors] == [0, 0, 0]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        _kill_sleeper(pid_file)

    assert last.status == "completed"
    assert runs.read_text().split() == ["run", "run"]
    waited = [log for log in logs if f"waiting for task {last.id}" in log.read_text()]
    assert len(waited) == 1, [log.read_text() for log in logs]
    assert "reaped task" in waited[0].read_text()
    rows = _workers(db_url)
    assert sorted(rows[p.pid]["exit_reason"] for p in survivors) == ["empty_queue"] * 3
    history = sql(
        db_url,
        "SELECT a.outcome, w.pid FROM task_attempts a JOIN workers w ON w.id = a.worker_id "
        "WHERE a.task_id = :id ORDER BY a.id",
        {"id": last.id},
    )
    assert [h[0] for h in history] == ["lost", "completed"]
    waiter_pid = history[1][1]
    assert f"worker {rows[waiter_pid]['id']} started" in waited[0].read_text()


def test_a_live_owners_long_task_keeps_nobody_waiting(db_url, queue, tmp_path):
    long = queue.enqueue_command("sleep 25", priority=10)
    gate = tmp_path / "gate"
    _blockers(queue, gate, 3)
    logs = [tmp_path / f"w{i}.err" for i in range(4)]
    procs = [
        start_worker("--close-on-empty-queue", "--lease", "8", stderr_path=log) for log in logs
    ]
    try:
        wait_until(lambda: task_counts(db_url).get("running") == 4, timeout=60)
        owner = _owner_pid(db_url, long.id)
        others = [p for p in procs if p.pid != owner]
        time.sleep(6)  # longer than the silence threshold (4 s): the owner keeps beating
        assert _silent(db_url) == []
        gate.touch()
        assert [p.wait(timeout=60) for p in others] == [0, 0, 0]
        assert long.status == "running"  # they left while it still ran
        assert next(p for p in procs if p.pid == owner).wait(timeout=120) == 0
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert long.status == "completed"
    assert not any("waiting for task" in log.read_text() for log in logs)
    rows = _workers(db_url)
    assert {rows[p.pid]["exit_reason"] for p in procs} == {"empty_queue"}


def test_the_last_singleflow_worker_waits_when_the_task_can_come_back_in_time(
    db_url, queue, tmp_path
):
    command, runs, pid_file = _last_task(tmp_path)
    last = queue.enqueue_command(command)
    owner = start_worker("--singleflow", "--lease", LEASE, stderr_path=tmp_path / "owner.err")
    try:
        wait_until(pid_file.exists, timeout=60)
        owner.send_signal(signal.SIGKILL)
        owner.wait(timeout=30)
        wait_until(lambda: _silent(db_url), timeout=60, what="the owner goes silent")
        # Its deadline comes before the lease ends: nothing to wait for.
        early = start_worker(
            "--singleflow",
            "--walltime",
            "00:00:07",
            "--grace",
            "5",
            stderr_path=tmp_path / "early.err",
        )
        assert early.wait(timeout=60) == 0
        assert last.status == "running"
        # Time enough: it waits, reaps and runs it.
        late = start_worker(
            "--singleflow",
            "--walltime",
            "00:05:00",
            "--grace",
            "5",
            stderr_path=tmp_path / "late.err",
        )
        assert late.wait(timeout=120) == 0
    finally:
        for p in (owner,):
            if p.poll() is None:
                p.kill()
        _kill_sleeper(pid_file)
    assert last.status == "completed"
    assert runs.read_text().split() == ["run", "run"]
    assert f"waiting for task {last.id}" in (tmp_path / "late.err").read_text()
    assert "waiting for task" not in (tmp_path / "early.err").read_text()
    rows = _workers(db_url)
    assert rows[early.pid]["exit_reason"] == "empty_queue"
    assert rows[late.pid]["exit_reason"] == "done"
