"""Job limits (``limits:``): every shipped site's launches fit under its limit, or are refused.

The centre counts either each array element or each submission
(``limits.array_elements_count``); the count is recomputed here from the
rendered chunks, independently of the planner's own arithmetic.
"""

from __future__ import annotations

import pytest

from hpclaunch import paths
from hpclaunch.errors import UserError
from hpclaunch.render import LIMIT_EXIT_CODE, plan_launch
from hpclaunch.sites import flag_overrides, load_profile, parse_set

SHIPPED = sorted(p.stem for p in paths.shipped_dir("site-configs").glob("*.yaml"))


def _profile(name, sets=()):
    profile = load_profile(name)
    flags = {"account": "acct1"} if profile.resources.account is None else {}
    return load_profile(name, flag_overrides(**flags) + [parse_set(s) for s in sets])


def _counted(plan, elements_count: bool) -> int:
    """Jobs as the centre counts them, from the chunks that would be submitted."""
    return sum(c.elements if elements_count else 1 for c in plan.chunks)


def _limited() -> list[str]:
    return [n for n in SHIPPED if load_profile(n).limits.max_queued_jobs is not None]


def test_the_sites_the_issue_names_state_their_limits():
    assert {"frontier", "polaris", "stampede3", "frontera"} <= set(_limited())
    assert load_profile("frontier").limits.max_queued_jobs == 100
    assert load_profile("polaris").limits.scope == "project"
    assert load_profile("polaris").limits.max_queued_jobs == 20
    assert load_profile("stampede3").limits.max_queued_jobs == 60


@pytest.mark.parametrize("name", _limited())
def test_just_under_the_limit_fits_and_just_over_is_refused(home, name):
    profile = _profile(name)
    limit = profile.limits.max_queued_jobs
    per = profile.worker.workers_per_job
    fits = limit * per  # every job full: exactly the limit
    plan = plan_launch(profile, fits, "L1", submitting=True)
    assert _counted(plan, profile.limits.array_elements_count) <= limit
    assert plan.counted_jobs == _counted(plan, profile.limits.array_elements_count)
    assert sum(c.workers for c in plan.chunks) == fits
    with pytest.raises(UserError) as refused:
        plan_launch(profile, fits + 1, "L1", submitting=True)
    message = str(refused.value)
    assert "\n" not in message
    assert f"accepts {limit} queued" in message
    assert f"the largest launch that fits now is --workers {fits}" in message
    assert refused.value.exit_code == LIMIT_EXIT_CODE


@pytest.mark.parametrize("name", _limited())
def test_jobs_already_queued_leave_less_room(home, name):
    profile = _profile(name)
    limit = profile.limits.max_queued_jobs
    per = profile.worker.workers_per_job
    queued = limit // 2
    room = (limit - queued) * per
    plan = plan_launch(profile, room, "L1", submitting=True, queued=queued)
    assert _counted(plan, profile.limits.array_elements_count) + queued <= limit
    with pytest.raises(UserError, match=f"{queued} already queued there.*--workers {room}$"):
        plan_launch(profile, room + 1, "L1", submitting=True, queued=queued)
    with pytest.raises(UserError, match="no launch fits now"):
        plan_launch(profile, 1, "L1", submitting=True, queued=limit)


@pytest.mark.parametrize("workers", list(range(1, 80)))
def test_no_plan_is_ever_split_past_the_limit(home, workers):
    """Whatever the worker count, a plan either fits under the limit or is refused."""
    profile = _profile(
        "tests-slurm",
        ["limits.max_queued_jobs=7", "arrays.max_array_size=3", "worker.workers_per_job=2"],
    )
    try:
        plan = plan_launch(profile, workers, "L1")
    except UserError as exc:
        assert "largest launch that fits now is --workers 14" in str(exc)
        assert workers > 14
        return
    assert _counted(plan, True) <= 7
    assert workers <= 14


def test_when_arrays_count_once_larger_launches_fit(home):
    """A centre that counts an array as one job: 3 arrays of 10 fit a limit of 3."""
    profile = _profile(
        "tests-slurm",
        [
            "limits.max_queued_jobs=3",
            "limits.array_elements_count=false",
            "arrays.max_array_size=10",
        ],
    )
    plan = plan_launch(profile, 30, "L1")
    assert [c.elements for c in plan.chunks] == [10, 10, 10]
    assert plan.counted_jobs == 3
    with pytest.raises(UserError, match="--workers 30$"):
        plan_launch(profile, 31, "L1")


def test_running_limit_is_a_warning_not_a_refusal(home):
    profile = _profile("stampede3")
    plan = plan_launch(profile, 50 * 48, "L1")
    assert any("at most 40 jobs per user at once" in w for w in plan.warnings)


def test_bad_limit_values_are_refused_with_one_line(home):
    for bad, match in [
        ("limits.max_queued_jobs=0", "max_queued_jobs"),
        ("limits.scope=group", "scope"),
        ("limits.array_elements_count=maybe", "array_elements_count"),
    ]:
        with pytest.raises(UserError, match=match) as exc:
            load_profile("tests-slurm", [parse_set(bad)])
        assert "\n" not in str(exc.value)
