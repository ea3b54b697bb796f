"""Elastic keepers (``submit --keep``): their rows, their lease, and the demand they serve.

A keeper is one site + worker tag set. Its row holds the settings and a lease:
a cycle runs only while its loop holds the lease (compare-and-set on the row),
so a restarted loop takes over once the old lease ends and two loops on one
site never both submit. All state lives here, none in the loop's memory.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from typing import Any

from hpclaunch.queue.driver import Connection
from hpclaunch.states import AttemptOutcome, TaskStatus
from hpclaunch.tasks.payloads import worker_tag_sets


@dataclass(frozen=True)
class Demand:
    """Work a keeper's workers could claim: pending and running tasks, and their p95 runtime."""

    pending: int
    running: int
    work_seconds: float  # pending tasks x the p95 runtime of their tag set (None: unknown)
    unknown: int  # pending tasks whose tag set has no completed attempt yet


def acquire(
    conn: Connection, keeper_id: str, site: str, holder: str, ttl: float, settings: dict[str, Any]
) -> bool:
    """Take (or renew) the keeper's lease for ``ttl`` seconds; False while another loop holds it."""
    now = time.time()
    with conn.transaction():
        row = conn.execute("SELECT id FROM keepers WHERE id = :id", {"id": keeper_id}).fetchone()
        if row is None:
            conn.execute(
                "INSERT INTO keepers (id, site, holder, lease_until, started_at, settings) "
                "VALUES (:id, :site, :holder, :until, :now, :settings)",
                {
                    "id": keeper_id,
                    "site": site,
                    "holder": holder,
                    "until": now + ttl,
                    "now": now,
                    "settings": json.dumps(settings, sort_keys=True),
                },
            )
            return True
        taken = conn.execute(
            "UPDATE keepers SET holder = :holder, lease_until = :until, cycle_at = :now, "
            "settings = :settings, stopped = NULL "
            "WHERE id = :id AND (holder = :holder OR holder IS NULL OR lease_until < :now)",
            {
                "id": keeper_id,
                "holder": holder,
                "until": now + ttl,
                "now": now,
                "settings": json.dumps(settings, sort_keys=True),
            },
        )
        return taken.rowcount == 1


def release(conn: Connection, keeper_id: str, holder: str, stopped: str | None) -> None:
    """Give the lease up (the loop exits); ``stopped`` says why it stopped submitting."""
    with conn.transaction():
        conn.execute(
            "UPDATE keepers SET holder = NULL, lease_until = 0, stopped = :stopped "
            "WHERE id = :id AND holder = :holder",
            {"id": keeper_id, "holder": holder, "stopped": stopped},
        )


def started_at(conn: Connection, keeper_id: str) -> float | None:
    row = conn.execute(
        "SELECT started_at FROM keepers WHERE id = :id", {"id": keeper_id}
    ).fetchone()
    return float(row[0]) if row else None


def demand(conn: Connection, worker_tags: list[str], sample: int = 1000) -> Demand:
    """Pending and running tasks a worker with ``worker_tags`` may claim, and their work."""
    tag_sets = worker_tag_sets(worker_tags)
    params = {f"t{i}": t for i, t in enumerate(tag_sets)}
    tags_sql = ", ".join(":" + k for k in params)
    counts = conn.execute(
        f"SELECT tags, status, COUNT(*) FROM tasks WHERE tags IN ({tags_sql}) AND status IN "
        f"('{TaskStatus.PENDING}', '{TaskStatus.RUNNING}') GROUP BY tags, status",
        params,
    ).fetchall()
    runtimes: dict[str, list[float]] = {}
    for tags, seconds in conn.execute(
        "SELECT t.tags, a.finished_at - a.started_at FROM task_attempts a "
        f"JOIN tasks t ON t.id = a.task_id WHERE a.outcome = '{AttemptOutcome.COMPLETED}' "
        f"AND a.started_at IS NOT NULL AND t.tags IN ({tags_sql}) "
        f"ORDER BY a.id DESC LIMIT {int(sample)}",
        params,
    ).fetchall():
        runtimes.setdefault(tags, []).append(float(seconds))
    pending = running = unknown = 0
    work = 0.0
    for tags, status, n in counts:
        if status == TaskStatus.RUNNING:
            running += int(n)
            continue
        pending += int(n)
        times = sorted(runtimes.get(tags, []))
        if times:
            work += int(n) * times[min(len(times) - 1, math.ceil(0.95 * len(times)) - 1)]
        else:
            unknown += int(n)
    return Demand(pending, running, work, unknown)
