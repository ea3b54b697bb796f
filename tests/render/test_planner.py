"""The array planner: N workers -> arrays/jobs each site accepts (pure arithmetic)."""

from __future__ import annotations

import pytest

from hpclaunch.render.planner import plan_shapes
from hpclaunch.schedulers import get_scheduler


def shapes(scheduler="slurm", workers=1, per=1, arrays=True, max_size=1001, conc=None):
    out, warnings = plan_shapes(
        scheduler=get_scheduler(scheduler),
        workers=workers,
        workers_per_job=per,
        arrays_enabled=arrays,
        max_array_size=max_size,
        max_concurrent=conc,
    )
    return [(s.elements, s.workers, s.array) for s in out], warnings


def test_slurm_splits_at_max_array_size_and_every_worker_is_planned():
    plan, warnings = shapes(workers=2500, max_size=1001)
    assert plan == [(1001, 1, True), (1001, 1, True), (498, 1, True)]
    assert "split into 3 arrays" in warnings[0]


def test_slurm_single_worker_is_a_one_element_array():
    assert shapes(workers=1)[0] == [(1, 1, True)]


def test_pbs_one_element_chunk_becomes_a_plain_job():
    assert shapes("pbs", workers=1)[0] == [(1, 1, False)]
    assert shapes("pbs", workers=21, max_size=10)[0] == [
        (10, 1, True),
        (10, 1, True),
        (1, 1, False),
    ]


def test_workers_per_job_packs_and_remainder_gets_its_own_job():
    plan, warnings = shapes(workers=10, per=4)
    assert plan == [(2, 4, True), (1, 2, False)]
    assert any("last 2 run in a separate job" in w for w in warnings)


def test_no_arrays_means_separate_jobs_and_a_warning_when_many():
    plan, warnings = shapes(workers=3, arrays=False)
    assert plan == [(1, 1, False)] * 3 and warnings == []
    plan, warnings = shapes(workers=200, arrays=False)
    assert len(plan) == 200
    assert "200 separate jobs" in warnings[0] and "--workers-per-job" in warnings[0]
    plan, _ = shapes(workers=200, per=56, arrays=False)
    assert plan == [(1, 56, False)] * 3 + [(1, 32, False)]


def test_max_concurrent_across_several_arrays_is_explained():
    _, warnings = shapes(workers=30, max_size=10, conc=5)
    assert any("up to 15 elements may run at once" in w for w in warnings)


def test_local_runs_all_workers_in_one_script():
    assert shapes("local", workers=7, per=3)[0] == [(1, 7, False)]


@pytest.mark.parametrize("workers", [1, 2, 9, 10, 11, 99, 1000, 2500])
@pytest.mark.parametrize("scheduler", ["slurm", "pbs", "torque"])
@pytest.mark.parametrize("per", [1, 3])
def test_total_is_exact_and_limits_hold(workers, scheduler, per):
    plan, _ = shapes(scheduler, workers=workers, per=per, max_size=10)
    assert sum(e * w for e, w, _ in plan) == workers
    assert all(e <= 10 for e, _, _ in plan)
    if scheduler == "pbs":
        assert all(e >= 2 for e, _, array in plan if array)
