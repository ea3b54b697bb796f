"""Asking schedulers about launches: one status call per (host, scheduler), never one per job.

Reads only: what the scheduler says is returned, nothing is written. Jobs that
left the queue are looked up in accounting (one more call) when the site keeps it.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from hpclaunch.errors import UserError
from hpclaunch.launches.model import Element, ElementKey, Launch, element_key
from hpclaunch.launches.pool import TransportPool
from hpclaunch.schedulers import JobState, StatusAnswer, get_scheduler
from hpclaunch.states import ACTIVE_JOB_STATES

GONE_POLL_SECONDS = 0.5


@dataclass
class Observation:
    """Scheduler states per launch, with how many calls it took and what to tell the user."""

    states: dict[str, dict[ElementKey, JobState]] = field(default_factory=dict)
    calls: int = 0
    notes: list[str] = field(default_factory=list)


def _state_key(state: JobState) -> ElementKey:
    return element_key(state.array_job_id or state.job_id, state.array_index)


def scheduler_states(launches: list[Launch], pool: TransportPool) -> Observation:
    """Ask each (host, scheduler) once about all its launches' jobs.

    Over SSH the answer is shared by every hpclaunch process of the user for
    ``ssh.status_interval`` seconds (``transport.budget``): two watches and a cron
    job cost the login node one query per interval, not one each.
    """
    seen = Observation()
    groups: dict[tuple[str | None, str], list[Launch]] = defaultdict(list)
    for launch in launches:
        groups[(launch.host, launch.scheduler)].append(launch)
    for (host, name), group in groups.items():
        job_ids = sorted({job_id for launch in group for job_id in launch.job_ids()})
        if not job_ids:
            continue
        if host is None:
            answer = _ask(pool, group, job_ids)
        else:
            answer = _ask_within_budget(pool, group, job_ids, seen.notes)
        seen.calls += answer["calls"]
        by_key, said = _interpret(get_scheduler(name), answer, host)
        seen.notes.extend(f"{host or 'this machine'}: {note}" for note in said.notes)
        if answer["accounting"] is None and answer["accounting_helps"] and _missing(group, by_key):
            seen.notes.append(
                f"{host or 'this machine'}: no scheduler accounting; jobs that "
                "left the queue are settled from their workers' records"
            )
        for launch in group:
            seen.states[launch.id] = by_key
    return seen


def budget_key(host: str | None, scheduler: str) -> str:
    """The shared-cache key of one site's read-only scheduler view."""
    return f"{host or 'localhost'}|{scheduler}"


def forget_view(host: str | None, scheduler: str) -> None:
    """After submit or cancel: the next status asks the scheduler, not the cache."""
    if host is not None:
        from hpclaunch.transport import budget

        budget.invalidate(budget_key(host, scheduler))


def _ask_within_budget(
    pool: TransportPool, group: list[Launch], job_ids: list[str], notes: list[str]
) -> dict[str, Any]:
    from hpclaunch.transport import budget

    key = budget_key(group[0].host, group[0].scheduler)
    interval = min(int((la.profile.get("ssh") or {}).get("status_interval") or 30) for la in group)
    cached = budget.last(key)
    if cached is not None and not set(job_ids) <= set(cached.value.get("job_ids", [])):
        budget.invalidate(key)  # a launch the cached view never asked about
    got = budget.reading(key, interval, lambda: _ask(pool, group, job_ids))
    if not got.fetched_now:
        notes.append(
            f"{group[0].host}: scheduler view from {got.age:.0f} s ago (one query per "
            f"{interval} s per site, shared by your hpclaunch commands: ssh.status_interval)"
        )
        return {**got.value, "calls": 0}
    return got.value


def _ask(pool: TransportPool, group: list[Launch], job_ids: list[str]) -> dict[str, Any]:
    """The scheduler's raw answers (plain data, so the budget can keep them)."""
    scheduler = get_scheduler(group[0].scheduler)
    transport = pool.get(group[0])
    result = transport.run(scheduler.status_argv(job_ids), idempotent=True)
    answer: dict[str, Any] = {
        "job_ids": job_ids,
        "status": [result.returncode, result.stdout, result.stderr],
        "accounting": None,
        "accounting_helps": True,
        "calls": 1,
    }
    by_key, said = _interpret(scheduler, answer, group[0].host)
    answer["accounting_helps"] = said.accounting
    missing = _missing(group, by_key)
    if missing and answer["accounting_helps"]:
        answer["calls"] += 1
        acct = transport.run(scheduler.accounting_argv(sorted(missing)), idempotent=True)
        if acct.ok and acct.stdout.strip():
            answer["accounting"] = acct.stdout
    return answer


def _interpret(
    scheduler: Any, answer: dict[str, Any], host: str | None
) -> tuple[dict[ElementKey, JobState], StatusAnswer]:
    """States by element from the raw answers, and the scheduler's reading of them.

    The scheduler reads its own command's result (``interpret_status``: PBS keeps the
    JSON of a half-failed qstat); a status call that failed outright is one clear line.
    """
    returncode, stdout, stderr = answer["status"]
    said = scheduler.interpret_status(stdout, stderr, returncode)
    if said.error is not None:
        raise UserError(f"{scheduler.name} status on {host or 'this machine'} failed: {said.error}")
    by_key = {_state_key(s): s for s in said.states}
    if answer["accounting"]:
        for s in scheduler.parse_accounting(answer["accounting"]):
            by_key.setdefault(_state_key(s), s)
    return by_key, said


def _missing(group: list[Launch], by_key: dict[ElementKey, JobState]) -> set[str]:
    """Job IDs with an element the scheduler's queue no longer shows."""
    return {
        el.job_id
        for launch in group
        for el in launch.elements
        if el.job_id and el.key not in by_key
    }


def wait_gone(
    launch: Launch, targets: list[Element], pool: TransportPool, wait: float
) -> tuple[bool, int]:
    """Poll (one call each) until ``targets`` have left the queue; (gone, calls made)."""
    scheduler = get_scheduler(launch.scheduler)
    keys = {el.key for el in targets if el.key}
    ids = sorted({el.job_id for el in targets if el.job_id})
    end, polls = time.monotonic() + wait, 0
    while ids and time.monotonic() < end:
        polls += 1
        result = pool.get(launch).run(scheduler.status_argv(ids), idempotent=True)
        said = scheduler.interpret_status(result.stdout, result.stderr, result.returncode)
        if said.error is not None:  # cannot tell: look again rather than call them gone
            time.sleep(GONE_POLL_SECONDS)
            continue
        live = {_state_key(s) for s in said.states if s.state in ACTIVE_JOB_STATES}
        if not keys & live:
            return True, polls
        time.sleep(GONE_POLL_SECONDS)
    return not ids, polls


def alive_jobs(launch: Launch, pool: TransportPool) -> list[str]:
    """The launch's job IDs the scheduler still has queued or running (one call, no cache).

    Raises UserError when the scheduler cannot tell: callers that delete must not
    take "no answer" for "gone".
    """
    ids = launch.job_ids()
    if not ids:
        return []
    scheduler = get_scheduler(launch.scheduler)
    result = pool.get(launch).run(scheduler.status_argv(ids), idempotent=True)
    said = scheduler.interpret_status(result.stdout, result.stderr, result.returncode)
    if said.error is not None:
        raise UserError(
            f"cannot tell whether launch {launch.id}'s jobs are alive: {said.error}; "
            "nothing removed"
        )
    mine = set(ids)
    return sorted(
        {
            s.array_job_id or s.job_id
            for s in said.states
            if s.state in ACTIVE_JOB_STATES and (s.array_job_id or s.job_id) in mine
        }
    )
