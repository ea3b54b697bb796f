"""``hpclaunch status``: launches as the scheduler and the queue see them. Reads only.

One scheduler call per (host, scheduler) for all live launches (``poll``), joined
with the workers' rows (``views``). Writing what was seen, typing task outcomes
and marking launches broken is the reconciler's job (``reconcile.apply``); the
CLI decides when to run it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hpclaunch.launches.model import Launch
from hpclaunch.launches.poll import scheduler_states
from hpclaunch.launches.pool import TransportPool
from hpclaunch.launches.views import launch_view
from hpclaunch.queue import launch_rows
from hpclaunch.queue.driver import Connection


@dataclass
class StatusReport:
    """The views ``status`` prints, and the records they were built from."""

    launches: list[dict[str, Any]]
    records: dict[str, Launch] = field(default_factory=dict)
    scheduler_calls: int = 0
    connections: int = 0
    notes: list[str] = field(default_factory=list)


def load_launches(
    conn: Connection,
    *,
    site: str | None = None,
    launch_id: str | None = None,
    include_finished: bool = False,
) -> list[Launch]:
    """Live launches (all of them with ``include_finished``, or the one asked for)."""
    rows = launch_rows.list_launches(
        conn, site=site, launch_id=launch_id, live_only=not (include_finished or launch_id)
    )
    return [Launch.from_row(row) for row in rows]


def _to_poll(conn: Connection, shown: list[Launch], *, filtered: bool) -> list[Launch]:
    """The live launches to ask about: on the sites shown, all of them.

    One query answers them all at the same cost, and a view of one launch can then
    share the site's cached answer with a view of the whole site.
    """
    live = [la for la in shown if la.live]
    if not filtered or not live:
        return live
    sites = {(la.host, la.scheduler) for la in live}
    return [la for la in load_launches(conn) if (la.host, la.scheduler) in sites]


def observe(
    conn: Connection,
    pool: TransportPool,
    *,
    site: str | None = None,
    launch_id: str | None = None,
    include_finished: bool = False,
) -> StatusReport:
    """Ask the schedulers about live launches and join their answers with the queue."""
    launches = load_launches(
        conn, site=site, launch_id=launch_id, include_finished=include_finished
    )
    seen = scheduler_states(_to_poll(conn, launches, filtered=bool(site or launch_id)), pool)
    ids = [la.id for la in launches]
    workers = launch_rows.launch_workers(conn, ids)
    recorded = launch_rows.element_states(conn, [la.id for la in launches if not la.live])
    by_launch: dict[str, list[dict[str, Any]]] = {launch_id: [] for launch_id in ids}
    for w in workers:
        by_launch[w["launch_id"]].append(w)
    return StatusReport(
        launches=[
            launch_view(la, seen.states.get(la.id, {}), by_launch[la.id], recorded.get(la.id, {}))
            for la in launches
        ],
        records={la.id: la for la in launches},
        scheduler_calls=seen.calls,
        connections=pool.connections,
        notes=seen.notes,
    )
