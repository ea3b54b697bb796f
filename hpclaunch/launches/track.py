"""``status``, ``cancel`` and ``logs`` of launches.

``status`` asks each site's scheduler once for all its live jobs (one squeue or
qstat call, never one per job), looks up the ones that left the queue in
accounting when the site has it, and otherwise settles them from what their
workers wrote to the database.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import and_, insert, select, update

from hpclaunch.errors import UserError
from hpclaunch.launches import records
from hpclaunch.queue.schema import task_attempts, tasks, workers
from hpclaunch.schedulers import JobState, get_scheduler

ACTIVE = ("PENDING", "RUNNING", "COMPLETING", "SUSPENDED")


@dataclass
class StatusReport:
    launches: list[dict[str, Any]]
    scheduler_calls: int = 0
    connections: int = 0
    notes: list[str] = field(default_factory=list)
    reconciled: Any = None  # reconcile.ReconcileResult when live launches were looked at


def element_key(job_id: str, index: int | None) -> tuple[str, int | None]:
    return (str(job_id), index)


def expected_elements(launch: dict) -> list[dict[str, Any]]:
    """Every element the launch asked for, numbered across chunks (``--element K``)."""
    out, number = [], 0
    for job in launch["jobs"]:
        for i in range(job["elements"]):
            out.append(
                {
                    "element": number,
                    "chunk": job["chunk"],
                    "job_id": job["job_id"],
                    "job_name": job["job_name"],
                    "index": i if job["array"] else None,
                }
            )
            number += 1
    return out


def worker_key(scheduler: str, worker: dict) -> tuple[str, int | None]:
    if worker["array_index"] is None or not worker["array_job_id"]:
        return element_key(worker["job_id"], None)
    return element_key(worker["array_job_id"], worker["array_index"])


class TransportPool:
    """One transport (one SSH connection) per host for the whole CLI call."""

    def __init__(self, factory=None):
        self.factory = factory
        self.open: dict[tuple, Any] = {}

    def get(self, launch: dict) -> Any:
        key = (launch["host"],)
        if key not in self.open:
            if self.factory is not None:
                self.open[key] = self.factory(launch)
            else:
                import json

                from hpclaunch.transport import open_transport

                ssh = json.loads(launch["profile"]).get("ssh") or {}
                opts = {k: v for k, v in ssh.items() if v not in (None, False)}
                self.open[key] = open_transport(launch["host"], opts)
        return self.open[key]

    @property
    def connections(self) -> int:
        return sum(getattr(t, "connections_opened", 0) for t in self.open.values())

    def close(self) -> None:
        for transport in self.open.values():
            transport.close()
        self.open.clear()


def scheduler_states(
    launches: list[dict], pool: TransportPool
) -> tuple[dict[str, dict[tuple, JobState]], int, list[str]]:
    """Ask each (host, scheduler) once; returns states per launch, calls made, notes."""
    calls = 0
    notes: list[str] = []
    per_launch: dict[str, dict[tuple, JobState]] = {}
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for launch in launches:
        groups[(launch["host"], launch["scheduler"])].append(launch)
    for (host, name), group in groups.items():
        scheduler = get_scheduler(name)
        transport = pool.get(group[0])
        job_ids = sorted({j["job_id"] for launch in group for j in launch["jobs"] if j["job_id"]})
        if not job_ids:
            continue
        calls += 1
        result = transport.run(scheduler.status_argv(job_ids), idempotent=True)
        answer = scheduler.interpret_status(result.stdout, result.stderr, result.returncode)
        if answer.error is not None:
            raise UserError(f"{name} status on {host or 'this machine'} failed: {answer.error}")
        notes.extend(f"{host or 'this machine'}: {note}" for note in answer.notes)
        by_key = {element_key(s.array_job_id or s.job_id, s.array_index): s for s in answer.states}
        missing = _missing(group, by_key)
        if missing and answer.accounting:
            calls += 1
            acct = transport.run(scheduler.accounting_argv(sorted(missing)), idempotent=True)
            if acct.ok and acct.stdout.strip():
                for s in scheduler.parse_accounting(acct.stdout):
                    by_key.setdefault(element_key(s.array_job_id or s.job_id, s.array_index), s)
            else:
                notes.append(
                    f"{host or 'this machine'}: no scheduler accounting; jobs that "
                    "left the queue are settled from their workers' records"
                )
        for launch in group:
            per_launch[launch["id"]] = by_key
    return per_launch, calls, notes


def _missing(group: list[dict], by_key: dict) -> set[str]:
    missing = set()
    for launch in group:
        for el in expected_elements(launch):
            if el["job_id"] and element_key(el["job_id"], el["index"]) not in by_key:
                missing.add(el["job_id"])
    return missing


def status(
    engine,
    *,
    site: str | None = None,
    launch_id: str | None = None,
    pool: TransportPool | None = None,
    include_finished: bool = False,
) -> StatusReport:
    launches = records.list_launches(
        engine, site=site, launch_id=launch_id, live_only=not (include_finished or launch_id)
    )
    pool = pool or TransportPool()
    live = [la for la in launches if la["status"] in records.LIVE]
    try:
        states, calls, notes = scheduler_states(live, pool)
        report = _build_report(engine, launches, live, states, calls, notes, pool)
    finally:
        report_connections = pool.connections
        pool.close()
    report.connections = report_connections
    return report


def _build_report(engine, launches, live, states, calls, notes, pool) -> StatusReport:
    worker_rows = records.launch_workers(engine, [la["id"] for la in launches])
    recorded = records.element_states(
        engine, [la["id"] for la in launches if la["status"] not in records.LIVE]
    )
    by_launch: dict[str, list[dict]] = defaultdict(list)
    for w in worker_rows:
        by_launch[w["launch_id"]].append(w)
    report = StatusReport(launches=[], scheduler_calls=calls, notes=notes)
    for launch in launches:
        view = _launch_view(
            launch,
            states.get(launch["id"], {}),
            by_launch[launch["id"]],
            recorded.get(launch["id"], {}),
        )
        if launch["status"] in records.LIVE:
            records.record_elements(
                engine,
                launch["id"],
                [
                    {
                        "job_id": e["job_id"],
                        "array_index": e["index"],
                        "state": e["state"],
                        "reason": e["reason"],
                        "exit_code": e["exit_code"],
                    }
                    for e in view["elements"]
                    if e["job_id"]
                ],
            )
            if view["elements"] and not any(e["state"] in ACTIVE for e in view["elements"]):
                records.set_status(engine, launch["id"], "finished")
                view["status"] = "finished"
        report.launches.append(view)
    if live:
        from hpclaunch.launches import reconcile

        rows = {la["id"]: la for la in launches}
        live_views = [
            v
            for v in report.launches
            if rows[v["id"]]["status"] in records.LIVE or v["status"] == "finished"
        ]

        def stderr_tail(launch_id: str, element: int) -> str | None:
            return _read_logs(rows[launch_id], element, 20, pool).get("stderr")

        report.reconciled = reconcile.reconcile_views(engine, rows, live_views, stderr_tail)
    return report


def _launch_view(
    launch: dict, states: dict, launch_workers: list[dict], recorded: dict[tuple, dict]
) -> dict[str, Any]:
    workers_by_el: dict[tuple, list[dict]] = defaultdict(list)
    for w in launch_workers:
        workers_by_el[worker_key(launch["scheduler"], w)].append(w)
    elements = []
    for el in expected_elements(launch):
        key = element_key(el["job_id"], el["index"]) if el["job_id"] else None
        ws = workers_by_el.get(key, []) if key else []
        state = states.get(key) if key else None
        if state is not None:
            name, reason, code = state.state, state.reason, state.exit_code
        elif not el["job_id"]:
            name, reason, code = "NOT_SUBMITTED", None, None
        elif key in recorded:
            last = recorded[key]
            name, reason, code = last["state"], last["reason"], last["exit_code"]
        elif launch["status"] == "canceled":
            name, reason, code = "CANCELLED", "launch canceled", None
        else:
            name, reason, code = _settled(ws)
        completed = sum(len(w["tasks"].get("completed", [])) for w in ws)
        failed = sum(len(w["tasks"].get("failed", [])) for w in ws)
        elements.append(
            {
                **el,
                "state": name,
                "reason": reason,
                "exit_code": code,
                "workers": [
                    {
                        "id": w["id"],
                        "host": w["host"],
                        "status": w["status"],
                        "exit_reason": w["exit_reason"],
                    }
                    for w in ws
                ],
                "tasks_completed": completed,
                "tasks_failed": failed,
                "current_tasks": [w["current_task"] for w in ws if w["current_task"]],
            }
        )
    counts: dict[str, int] = defaultdict(int)
    for e in elements:
        counts[e["state"]] += 1
    return {
        "id": launch["id"],
        "site": launch["site"],
        "host": launch["host"],
        "scheduler": launch["scheduler"],
        "status": launch["status"],
        "submitted_at": launch["submitted_at"],
        "workers": launch["workers"],
        "broken_reason": launch["broken_reason"],
        "jobs": [
            {k: j[k] for k in ("chunk", "job_name", "job_id", "elements", "script_path")}
            for j in launch["jobs"]
        ],
        "state_counts": dict(counts),
        "elements": elements,
    }


def _settled(ws: list[dict]) -> tuple[str, str | None, int | None]:
    """An element that left the queue with no accounting: judge it by its workers."""
    if not ws:
        return "UNKNOWN", "left the queue before any worker registered", None
    if any(w["status"] == "running" for w in ws):
        return "RUNNING", "worker still heartbeating", None
    if any(w["status"] == "lost" for w in ws):
        return "FAILED", "worker lost (no heartbeat)", None
    reasons = sorted({w["exit_reason"] or "?" for w in ws})
    if "crash" in reasons:
        return "FAILED", "worker crashed", None
    return "COMPLETED", "workers exited: " + ", ".join(reasons), 0


# --- cancel -------------------------------------------------------------------


def cancel(
    engine,
    launch_id: str,
    *,
    element: int | None = None,
    pool: TransportPool | None = None,
    wait: float = 60.0,
) -> dict[str, Any]:
    """Cancel through the scheduler, then return the tasks its workers held."""
    launch = records.get_launch(engine, launch_id)
    elements = expected_elements(launch)
    if element is not None:
        if not 0 <= element < len(elements):
            raise UserError(f"launch {launch_id} has elements 0-{len(elements) - 1}, not {element}")
        targets = [elements[element]]
    else:
        targets = elements
    job_ids = sorted({t["job_id"] for t in targets if t["job_id"]})
    pool = pool or TransportPool()
    calls = 0
    try:
        if job_ids:
            scheduler = get_scheduler(launch["scheduler"])
            index = targets[0]["index"] if element is not None else None
            calls += 1
            result = pool.get(launch).run(scheduler.cancel_argv(job_ids, index), idempotent=True)
            if not result.ok and not scheduler.already_gone(result.stderr + result.stdout):
                raise UserError(
                    f"cancel of launch {launch_id} failed: "
                    f"{result.stderr.strip() or result.returncode}"
                )
        if element is None:
            records.set_status(engine, launch_id, "canceled")
        gone, polls = _wait_gone(engine, launch, targets, pool, wait)
        calls += polls
    finally:
        pool.close()
    # Only once the jobs are gone: a worker still running its task must not race a rerun
    # (otherwise the leases return the tasks when they expire).
    returned = (
        return_tasks(engine, launch, targets if element is not None else None) if gone else []
    )
    # The reconciler must not count these as CANCELLED failures: the user asked.
    records.record_elements(
        engine,
        launch_id,
        [
            {
                "job_id": t["job_id"],
                "array_index": t["index"],
                "state": "CANCELLED",
                "reason": "canceled with hpclaunch cancel",
            }
            for t in targets
            if t["job_id"]
        ],
        settled=True,
    )
    return {
        "launch": launch_id,
        "job_ids": job_ids,
        "elements": len(targets),
        "tasks_returned": returned,
        "gone": gone,
        "scheduler_calls": calls,
    }


def _wait_gone(engine, launch, targets, pool, wait: float) -> tuple[bool, int]:
    """Poll (one call each) until the canceled elements have left the queue."""
    scheduler = get_scheduler(launch["scheduler"])
    keys = {element_key(t["job_id"], t["index"]) for t in targets if t["job_id"]}
    ids = sorted({t["job_id"] for t in targets if t["job_id"]})
    end, polls = time.monotonic() + wait, 0
    while ids and time.monotonic() < end:
        polls += 1
        result = pool.get(launch).run(scheduler.status_argv(ids), idempotent=True)
        states = scheduler.parse_status(result.stdout) if result.ok else []
        live = {
            element_key(s.array_job_id or s.job_id, s.array_index)
            for s in states
            if s.state in ACTIVE
        }
        if not keys & live:
            return True, polls
        time.sleep(0.5)
    return not ids, polls


def return_tasks(engine, launch: dict, targets: list[dict] | None) -> list[int]:
    """Put tasks held by the launch's (now gone) workers back on the queue.

    Canceling is not the task's failure: the attempt is not counted.
    """
    worker_rows = records.launch_workers(engine, [launch["id"]])
    if targets is not None:
        wanted = {element_key(t["job_id"], t["index"]) for t in targets}
        worker_rows = [w for w in worker_rows if worker_key(launch["scheduler"], w) in wanted]
    ids = [w["id"] for w in worker_rows]
    if not ids:
        return []
    now = time.time()
    with engine.begin() as conn:
        held = conn.execute(
            select(tasks.c.id, tasks.c.attempts, tasks.c.worker_id, tasks.c.started_at).where(
                and_(tasks.c.status == "running", tasks.c.worker_id.in_(ids))
            )
        ).all()
        for row in held:
            conn.execute(
                update(tasks)
                .where(
                    and_(
                        tasks.c.id == row.id,
                        tasks.c.status == "running",
                        tasks.c.worker_id == row.worker_id,
                    )
                )
                .values(
                    status="pending",
                    attempts=tasks.c.attempts - 1,
                    worker_id=None,
                    claim_token=None,
                    lease_expires_at=None,
                    started_at=None,
                    reason="launch_canceled",
                )
            )
        if held:
            conn.execute(
                insert(task_attempts),
                [
                    {
                        "task_id": r.id,
                        "attempt": r.attempts,
                        "worker_id": r.worker_id,
                        "started_at": r.started_at,
                        "finished_at": now,
                        "outcome": "released",
                        "reason": "launch_canceled",
                        "exit_code": None,
                        "error": None,
                    }
                    for r in held
                ],
            )
        conn.execute(
            update(workers)
            .where(and_(workers.c.id.in_(ids), workers.c.status == "running"))
            .values(status="lost", exit_reason="canceled", stopped_at=now)
        )
    return [r.id for r in held]


# --- logs ---------------------------------------------------------------------


def log_paths(launch: dict, el: dict) -> tuple[str, str]:
    """Where an element's stdout/stderr are, as its scheduler names them."""
    scheduler = get_scheduler(launch["scheduler"])
    return scheduler.log_paths(launch["log_dir"], el["job_name"], el["job_id"], el["index"])


def logs(
    engine,
    launch_id: str,
    *,
    element: int = 0,
    tail: int | None = None,
    pool: TransportPool | None = None,
) -> dict[str, Any]:
    launch = records.get_launch(engine, launch_id)
    elements = expected_elements(launch)
    if not 0 <= element < len(elements):
        raise UserError(f"launch {launch_id} has elements 0-{len(elements) - 1}, not {element}")
    el = elements[element]
    if not el["job_id"]:
        raise UserError(f"element {element} of launch {launch_id} was never submitted")
    pool = pool or TransportPool()
    try:
        texts = _read_logs(launch, element, tail, pool)
    finally:
        pool.close()
    return {
        "launch": launch_id,
        "element": element,
        "job_id": el["job_id"],
        "index": el["index"],
        **texts,
    }


def _read_logs(
    launch: dict, element: int, tail: int | None, pool: TransportPool
) -> dict[str, str | None]:
    el = expected_elements(launch)[element]
    out_path, err_path = log_paths(launch, el)
    texts: dict[str, str | None] = {"stdout_path": out_path, "stderr_path": err_path}
    transport = pool.get(launch) if launch["host"] else None
    for label, path in (("stdout", out_path), ("stderr", err_path)):
        try:
            data = transport.read_file(path) if transport else Path(path).read_bytes()
        except OSError:
            texts[label] = None
            continue
        text = data.decode("utf-8", errors="replace")
        if tail:
            text = "\n".join(text.splitlines()[-tail:]) + ("\n" if text else "")
        texts[label] = text
    return texts
