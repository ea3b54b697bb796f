"""Elastic keepers: the lease that stops two loops doubling workers, the demand, the target.

Lease and demand run on SQLite and on the real PostgreSQL (``queue_url``); the
target arithmetic is pure.
"""

from __future__ import annotations

import time

from hpclaunch.launches.elastic import to_submit, wanted_workers
from hpclaunch.queue import db, keepers
from hpclaunch.queue.keepers import Demand


def test_only_one_loop_holds_a_keeper_and_a_dead_ones_lease_expires(queue_url, queue):
    conn = db.connect(queue_url)
    try:
        assert keepers.acquire(conn, "site:default", "site", "a:1", 0.5, {"max_workers": 8})
        assert keepers.acquire(conn, "site:default", "site", "a:1", 0.5, {"max_workers": 8})
        assert not keepers.acquire(conn, "site:default", "site", "b:2", 30, {"max_workers": 8})
        time.sleep(0.6)  # a:1 was killed: its lease ends, b:2 takes over
        assert keepers.acquire(conn, "site:default", "site", "b:2", 30, {"max_workers": 8})
        assert not keepers.acquire(conn, "site:default", "site", "a:1", 30, {"max_workers": 8})
        keepers.release(conn, "site:default", "b:2", "exited")
        assert keepers.acquire(conn, "site:default", "site", "a:1", 30, {"max_workers": 8})
        assert keepers.acquire(conn, "other:default", "other", "b:2", 30, {})  # per keeper
    finally:
        conn.close()


def test_demand_counts_what_the_workers_tags_may_claim(queue_url, queue):
    for _ in range(3):
        queue.enqueue_command("true", tags=["gpu"])
    queue.enqueue_command("true")  # default tag
    queue.enqueue_command("true", tags=["big"])  # not claimable by [default, gpu]
    conn = db.connect(queue_url)
    try:
        demand = keepers.demand(conn, ["default", "gpu"])
    finally:
        conn.close()
    assert demand.pending == 4 and demand.running == 0
    assert demand.unknown == 4 and demand.work_seconds == 0


def test_target_drains_within_the_window_and_never_passes_the_cap():
    # 300 tasks of 1 s within 20 s: 15 workers, capped at 8.
    assert wanted_workers(Demand(300, 0, 300.0, 0), 20) == 15
    assert to_submit(alive=0, wanted=15, max_workers=8, stop=None) == 8
    assert to_submit(alive=6, wanted=15, max_workers=8, stop=None) == 2
    assert to_submit(alive=9, wanted=15, max_workers=8, stop=None) == 0
    # Unknown runtimes: one worker per task, never more workers than tasks.
    assert wanted_workers(Demand(3, 0, 0.0, 3), 20) == 3
    assert wanted_workers(Demand(0, 5, 0.0, 0), 20) == 0
    assert to_submit(alive=0, wanted=5, max_workers=8, stop="no pending task left") == 0
