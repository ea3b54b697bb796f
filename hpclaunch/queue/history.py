"""Why a task is where it is: its attempts, who ran them where, and a one-line verdict.

``explain`` reads (plain DB-API, so it works on the worker's connection type
and is retried like the worker's statements); ``verdict`` is pure.
"""

from __future__ import annotations

from typing import Any

from hpclaunch.errors import NotFound
from hpclaunch.queue.driver import Connection
from hpclaunch.queue.scope import Scope, condition
from hpclaunch.states import AttemptOutcome, TaskStatus, WorkerStatus

# Attempts that spent one of the task's max_attempts.
_COUNTED = (AttemptOutcome.COMPLETED, AttemptOutcome.FAILED, AttemptOutcome.LOST)

_TASK_COLUMNS = (
    "id",
    "name",
    "kind",
    "engine",
    "status",
    "reason",
    "attempts",
    "max_attempts",
    "tags",
    "exit_code",
    "error",
    "worker_id",
    "created_at",
    "started_at",
    "finished_at",
    "lease_expires_at",
)
_ATTEMPT_COLUMNS = (
    "attempt",
    "outcome",
    "reason",
    "exit_code",
    "error",
    "started_at",
    "finished_at",
    "worker_id",
    "host",
    "pid",
    "scheduler",
    "job_id",
    "array_job_id",
    "array_index",
    "launch_id",
)


def explain(conn: Connection, task_id: int, *, scope: Scope | None = None) -> dict[str, Any]:
    """The task, its attempts (oldest first) with their workers, and a verdict."""
    visible, params = condition(scope)
    row = conn.one(
        f"SELECT {', '.join(_TASK_COLUMNS)} FROM tasks WHERE id = :id AND {visible}",
        {"id": task_id, **params},
    )
    if row is None:
        raise NotFound(f"no task with ID {task_id}; `hpclaunch tasks` lists them")
    task = dict(zip(_TASK_COLUMNS, row, strict=True))
    cur = conn.execute(
        "SELECT a.attempt, a.outcome, a.reason, a.exit_code, a.error, a.started_at, "
        "a.finished_at, a.worker_id, w.host, w.pid, w.scheduler, w.job_id, w.array_job_id, "
        "w.array_index, w.launch_id FROM task_attempts a "
        "LEFT JOIN workers w ON w.id = a.worker_id WHERE a.task_id = :id ORDER BY a.id",
        {"id": task_id},
    )
    attempts = [dict(zip(_ATTEMPT_COLUMNS, r, strict=True)) for r in cur.fetchall()]
    for a in attempts:
        a["error"] = first_line(a["error"])
    current = None
    if task["status"] == TaskStatus.RUNNING and task["worker_id"] is not None:
        w = conn.one(
            "SELECT host, pid, scheduler, job_id, array_job_id, array_index, launch_id, "
            "status, heartbeat_at, {now} FROM workers WHERE id = :id",
            {"id": task["worker_id"]},
        )
        if w is not None:
            current = dict(
                zip(
                    (
                        "host",
                        "pid",
                        "scheduler",
                        "job_id",
                        "array_job_id",
                        "array_index",
                        "launch_id",
                        "worker_status",
                        "heartbeat_at",
                        "now",
                    ),
                    w,
                    strict=True,
                )
            )
            current["worker_id"] = task["worker_id"]
            current["heartbeat_age"] = current.pop("now") - current["heartbeat_at"]
    task["error"] = first_line(task["error"])
    if task["engine"] is not None and task["status"] == TaskStatus.PENDING:
        task["engine_providers"] = _providers(conn, task["engine"])
    return {
        "task": task,
        "attempts": attempts,
        "running": current,
        "verdict": verdict(task, attempts, current),
    }


def _providers(conn: Connection, engine: str) -> int:
    """How many running workers provide ``engine`` (a pending engine task waits for one)."""
    rows = conn.execute(
        "SELECT engines FROM workers WHERE status = :running AND engines IS NOT NULL",
        {"running": WorkerStatus.RUNNING.value},
    ).fetchall()
    return sum(engine in str(r[0]).split(",") for r in rows)


def first_line(text: str | None) -> str | None:
    if not text:
        return None
    lines = [line for line in str(text).strip().splitlines() if line.strip()]
    if not lines:
        return None
    # A Python traceback's last line says what happened; other errors say it first.
    if lines[0].startswith("Traceback (most recent call last)"):
        return lines[-1].strip()
    return lines[0].strip()


def where(a: dict[str, Any]) -> str:
    """``node X (slurm job 123[4])`` from an attempt or worker row."""
    text = f"node {a.get('host') or '?'}"
    if a.get("job_id"):
        index = "" if a.get("array_index") is None else f"[{a['array_index']}]"
        job = a.get("array_job_id") or a["job_id"]
        text += f" ({a.get('scheduler') or 'job'} job {job}{index})"
    return text


def describe(a: dict[str, Any]) -> str:
    """How one attempt ended, in a few words."""
    outcome, reason = a["outcome"], a.get("reason")
    if outcome == AttemptOutcome.COMPLETED:
        return f"completed on {where(a)}"
    if outcome == AttemptOutcome.LOST:
        return f"a lost lease on {where(a)}" + (
            f" ({reason})" if reason not in (None, "lease_expired") else ""
        )
    if outcome == AttemptOutcome.RELEASED:
        return f"being put back uncounted ({reason or 'stopped'}) from {where(a)}"
    if outcome == AttemptOutcome.CANCELED:
        return "cancellation"
    return f"{failure(a)} on {where(a)}"


def failure(a: dict[str, Any]) -> str:
    reason = a.get("reason")
    if reason == "exit_code" and a.get("exit_code") is not None:
        return f"exit code {a['exit_code']}"
    if reason == "timeout":
        return a.get("error") or "timeout"
    if reason == "lease_expired":
        return "lost lease"
    detail = a.get("error")
    if reason and detail:
        return f"{reason}: {detail}"
    return reason or detail or "failed"


def verdict(
    task: dict[str, Any], attempts: list[dict[str, Any]], running: dict[str, Any] | None = None
) -> str:
    """One line: how the task ended (or where it stands) and why."""
    status = task["status"]
    counted = [a for a in attempts if a["outcome"] in _COUNTED]
    before = [a for a in attempts if a["outcome"] != AttemptOutcome.COMPLETED]
    if status == TaskStatus.COMPLETED:
        done = next(
            (a for a in reversed(attempts) if a["outcome"] == AttemptOutcome.COMPLETED), None
        )
        if done is None:
            return "completed"
        text = f"completed on attempt {done['attempt']} on {where(done)}"
        earlier = [a for a in before if attempts.index(a) < attempts.index(done)]
        if earlier:
            text = (
                f"completed on attempt {done['attempt']} after "
                + _join([describe(a) for a in earlier])
                + f"; ran on {where(done)}"
            )
        return text
    if status == TaskStatus.FAILED:
        last = counted[-1] if counted else None
        why = failure(last) if last else (task.get("reason") or "failed")
        if last is not None and last["outcome"] == AttemptOutcome.LOST:
            why = f"lost lease on {where(last)}"
        return f"failed: {task['attempts']} of {task['max_attempts']} attempts spent: {why}"
    if status == TaskStatus.RUNNING:
        text = f"running attempt {task['attempts']} of {task['max_attempts']}"
        if running:
            text += f" on {where(running)}, worker {running['worker_id']}"
            age = running.get("heartbeat_age")
            if age is not None:
                text += f", last heartbeat {age:.0f} s ago"
            if running.get("worker_status") in (WorkerStatus.EXITED, WorkerStatus.LOST):
                text += f" (worker {running['worker_status']}: `hpclaunch lost --requeue`)"
        return text
    if status == TaskStatus.PENDING:
        text = f"pending: {task['attempts']} of {task['max_attempts']} attempts spent"
        if before:
            text += " after " + _join([describe(a) for a in before])
        providers = task.get("engine_providers")
        if providers == 0:
            text += (
                f"; no running worker provides engine {task['engine']!r} (only a worker "
                "with a handler for it claims this task)"
            )
        elif providers:
            text += f"; {providers} running worker(s) provide engine {task['engine']!r}"
        return text
    if status == TaskStatus.CANCELED:
        return "canceled" + (
            f" while running on {where(before[-1])}"
            if before and before[-1]["outcome"] == AttemptOutcome.CANCELED
            else ""
        )
    return status


def _join(parts: list[str]) -> str:
    if len(parts) > 3:
        return ", ".join(parts[:2]) + f" and {len(parts) - 2} more"
    return ", ".join(parts[:-1]) + (" and " if len(parts) > 1 else "") + parts[-1]
