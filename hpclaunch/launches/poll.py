"""Asking schedulers about launches: one status call per (host, scheduler), never one per job.

Reads only: what the scheduler says is returned, nothing is written. Jobs that
left the queue are looked up in accounting (one more call) when the site keeps it.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field

from hpclaunch.errors import UserError
from hpclaunch.launches.model import Element, ElementKey, Launch, element_key
from hpclaunch.launches.pool import TransportPool
from hpclaunch.schedulers import JobState, get_scheduler
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
    """Ask each (host, scheduler) once about all its launches' jobs."""
    seen = Observation()
    groups: dict[tuple[str | None, str], list[Launch]] = defaultdict(list)
    for launch in launches:
        groups[(launch.host, launch.scheduler)].append(launch)
    for (host, name), group in groups.items():
        scheduler = get_scheduler(name)
        job_ids = sorted({job_id for launch in group for job_id in launch.job_ids()})
        if not job_ids:
            continue
        transport = pool.get(group[0])
        seen.calls += 1
        result = transport.run(scheduler.status_argv(job_ids), idempotent=True)
        if result.ok:
            states = scheduler.parse_status(result.stdout)
        elif scheduler.no_such_jobs(result.stderr):
            states = []
        else:
            raise UserError(
                f"{name} status on {host or 'this machine'} failed: "
                f"{result.stderr.strip().splitlines()[-1:] or result.returncode}"
            )
        by_key = {_state_key(s): s for s in states}
        missing = _missing(group, by_key)
        if missing:
            seen.calls += 1
            acct = transport.run(scheduler.accounting_argv(sorted(missing)), idempotent=True)
            if acct.ok and acct.stdout.strip():
                for s in scheduler.parse_accounting(acct.stdout):
                    by_key.setdefault(_state_key(s), s)
            else:
                seen.notes.append(
                    f"{host or 'this machine'}: no scheduler accounting; jobs that "
                    "left the queue are settled from their workers' records"
                )
        for launch in group:
            seen.states[launch.id] = by_key
    return seen


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
        states = scheduler.parse_status(result.stdout) if result.ok else []
        live = {_state_key(s) for s in states if s.state in ACTIVE_JOB_STATES}
        if not keys & live:
            return True, polls
        time.sleep(GONE_POLL_SECONDS)
    return not ids, polls
