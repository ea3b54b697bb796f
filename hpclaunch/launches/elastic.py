"""``hpclaunch submit --keep``: keep enough workers queued and running to drain the queue.

Each cycle: take the keeper's lease (``queue.keepers``: two loops on one site
never both submit, a restarted loop takes over), ask the scheduler once about
the keeper's live launches (their elements still queued or running are the
workers alive), read the demand (pending tasks x the p95 runtime of their tag
set), and submit one launch for the difference, within ``--max-workers`` and
the site's job limits. It stops submitting when nothing is left to do, when a
launch of the site is broken, or when ``--max-node-hours`` is spent, and exits
once the last of its workers is gone. All state is in the database.
"""

from __future__ import annotations

import math
import os
import socket
import time
from dataclasses import dataclass, field
from typing import Any

from hpclaunch.errors import UserError
from hpclaunch.launches.model import Launch
from hpclaunch.launches.poll import scheduler_states
from hpclaunch.launches.pool import TransportPool
from hpclaunch.queue import db, keepers, launch_rows
from hpclaunch.queue.driver import Connection
from hpclaunch.queue.keepers import Demand
from hpclaunch.sites.model import Profile
from hpclaunch.states import ACTIVE_JOB_STATES, LaunchStatus


@dataclass(frozen=True)
class Settings:
    max_workers: int
    drain_within: float  # seconds
    max_node_hours: float | None
    every: float  # seconds between cycles


@dataclass
class Cycle:
    """What one cycle saw and did (printed by the CLI, checked by tests)."""

    alive: int = 0
    wanted: int = 0
    submitted: int = 0
    node_hours: float = 0.0
    stop: str | None = None  # why it no longer submits (None: it still does)
    held_elsewhere: bool = False
    notes: list[str] = field(default_factory=list)


def wanted_workers(demand: Demand, drain_within: float) -> int:
    """Workers that drain the pending work within ``drain_within`` (pure).

    Tasks of a tag set with no completed attempt yet count as a whole window
    each (unknown runtime: one worker per task); never more workers than tasks.
    """
    if demand.pending == 0:
        return 0
    work = demand.work_seconds + demand.unknown * drain_within
    return max(1, min(demand.pending, math.ceil(work / drain_within)))


def to_submit(alive: int, wanted: int, max_workers: int, stop: str | None) -> int:
    """Workers to add this cycle (pure): up to the target, never past ``max_workers``."""
    if stop is not None:
        return 0
    return max(0, min(wanted, max_workers) - alive)


def keeper_id(profile: Profile, tags: list[str]) -> str:
    return f"{profile.name}:{','.join(sorted(tags))}"


def cycle(
    conn: Connection,
    url: str,
    profile: Profile,
    tags: list[str],
    settings: Settings,
    holder: str,
    pool: TransportPool,
) -> Cycle:
    """One cycle of the keeper (one scheduler call for its launches, at most one submit)."""
    from hpclaunch.launches import reconcile
    from hpclaunch.launches.status import StatusReport
    from hpclaunch.launches.submit import submit
    from hpclaunch.launches.views import launch_view

    kid = keeper_id(profile, tags)
    result = Cycle()
    lease = max(3 * settings.every, 30.0)
    record = {
        "max_workers": settings.max_workers,
        "drain_within": settings.drain_within,
        "max_node_hours": settings.max_node_hours,
        "tags": tags,
    }
    if not keepers.acquire(conn, kid, profile.name, holder, lease, record):
        result.held_elsewhere = True
        return result
    launches = [
        Launch.from_row(r) for r in launch_rows.list_launches(conn, keeper=kid, live_only=True)
    ]
    seen = scheduler_states(launches, pool)
    workers = launch_rows.launch_workers(conn, [la.id for la in launches])
    views = [
        launch_view(
            la,
            seen.states.get(la.id, {}),
            [w for w in workers if w["launch_id"] == la.id],
            {},
        )
        for la in launches
    ]
    report = StatusReport(launches=views, records={la.id: la for la in launches})
    reconcile.apply(conn, report, pool)
    per_chunk = {(la.id, j.chunk): j.workers_per_element for la in launches for j in la.jobs}
    result.alive = sum(
        per_chunk.get((view["id"], e["chunk"]), 1)
        for view in views
        for e in view["elements"]
        if e["state"] in ACTIVE_JOB_STATES
    )
    result.node_hours = _node_hours(conn, kid, profile)
    demand = keepers.demand(conn, tags)
    result.wanted = wanted_workers(demand, settings.drain_within)
    result.stop = _stop_reason(conn, profile, demand, result.node_hours, settings)
    count = to_submit(result.alive, result.wanted, settings.max_workers, result.stop)
    if count:
        try:
            done = submit(conn, url, profile, count, tags=tags, keeper=kid)
            result.submitted = count
            result.notes += done.notes
        except UserError as exc:  # over the site's limit now: wait for room, say why
            result.notes.append(str(exc))
    return result


def _stop_reason(
    conn: Connection, profile: Profile, demand: Demand, node_hours: float, settings: Settings
) -> str | None:
    newest = launch_rows.newest_launch(conn, profile.name)
    if newest is not None and newest["status"] == LaunchStatus.BROKEN:
        return f"launch {newest['id']} of {profile.name} is broken: {newest['broken_reason']}"
    if settings.max_node_hours is not None and node_hours >= settings.max_node_hours:
        return f"--max-node-hours {settings.max_node_hours:g} spent ({node_hours:.2f})"
    if demand.pending == 0:
        return "no pending task left"
    return None


def _node_hours(conn: Connection, kid: str, profile: Profile) -> float:
    """Node-hours of the keeper's workers so far: their lifetimes over the workers per node."""
    rows = launch_rows.list_launches(conn, keeper=kid)
    workers = launch_rows.launch_workers(conn, [r["id"] for r in rows])
    now = time.time()
    seconds = sum((w["stopped_at"] or now) - w["started_at"] for w in workers)
    per_node = max(1, profile.worker.workers_per_job)
    return seconds / per_node * profile.resources.nodes / 3600.0


def run(
    conn: Connection,
    url: str,
    profile: Profile,
    tags: list[str],
    settings: Settings,
    *,
    once: bool = False,
    report: Any = None,
) -> Cycle:
    """Cycle until nothing is left to submit and the last worker is gone (or once)."""
    holder = f"{socket.gethostname()}:{os.getpid()}"
    kid = keeper_id(profile, tags)
    with TransportPool() as pool:
        try:
            while True:
                # Through a database outage (a restart) the cycle is retried on a new
                # connection: its state is all in the database, so a retry recounts.
                last = db.call(conn, cycle, url, profile, tags, settings, holder, pool)
                if report is not None:
                    report(last)
                if once or (last.stop is not None and last.alive == 0 and not last.submitted):
                    return last
                time.sleep(settings.every)
        finally:
            db.call(conn, keepers.release, kid, holder, None if once else "exited")
