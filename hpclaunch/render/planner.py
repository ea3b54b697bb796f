"""Split N workers into the jobs and job arrays a site accepts (pure arithmetic).

* An array has at most ``max_array_size`` elements (SLURM's MaxArraySize caps
  the *index*, so arrays are indexed from the first index); more workers
  become several arrays, each indexed from the start again.
* A chunk smaller than the scheduler's ``array_min_elements`` is a plain job
  (PBS Pro's ``-J`` needs at least two elements).
* ``arrays.enabled: false``: one plain job per element.
* ``workers_per_job`` K: each element runs K workers; N not divisible by K
  leaves a remainder that gets its own plain job with fewer workers.
* The scheduler may change the packing (:meth:`Scheduler.packing`): ``local``
  renders one script that runs all N workers and submits one job per worker.
* ``limits.max_queued_jobs``: :func:`fit_limits` counts the plan as the centre
  does (each array element, or each submission) plus the jobs already queued,
  and refuses with the largest launch that fits rather than split past it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hpclaunch.schedulers.base import Scheduler

MANY_JOBS = 50  # warn when a site without arrays needs more separate jobs than this


@dataclass(frozen=True)
class ChunkShape:
    """One submission: ``elements`` array elements (or 1 plain job) x ``workers`` each."""

    index: int
    elements: int
    workers: int  # workers per element
    array: bool

    @property
    def total_workers(self) -> int:
        return self.elements * self.workers


def plan_shapes(
    *,
    scheduler: Scheduler,
    workers: int,
    workers_per_job: int,
    arrays_enabled: bool,
    max_array_size: int,
    max_concurrent: int | None = None,
    site: str = "this site",
    submitting: bool = False,
) -> tuple[list[ChunkShape], list[str]]:
    """The chunks for ``workers`` workers, and warnings a user should read.

    ``submitting``: the plan is for ``submit`` rather than ``render`` (see
    :meth:`Scheduler.packing`).
    """
    if workers < 1:
        raise ValueError("workers must be >= 1")
    warnings: list[str] = []
    per, arrays_enabled = scheduler.packing(
        workers, workers_per_job, arrays_enabled, submitting=submitting
    )
    full, remainder = divmod(workers, per)
    sizes: list[tuple[int, int]] = []  # (elements, workers per element)
    if arrays_enabled:
        left = full
        while left > 0:
            n = min(left, max_array_size)
            sizes.append((n, per))
            left -= n
    else:
        sizes.extend((1, per) for _ in range(full))
    if remainder:
        sizes.append((1, remainder))
    shapes = []
    for index, (elements, each) in enumerate(sizes):
        is_array = arrays_enabled and elements >= scheduler.array_min_elements
        if each != per:
            is_array = False
        shapes.append(ChunkShape(index, elements, each, is_array))
    if not arrays_enabled and len(shapes) > MANY_JOBS and scheduler.has_arrays:
        warnings.append(
            f"{site} does not allow job arrays: {workers} workers become {len(shapes)} separate "
            f"jobs; consider --workers-per-job to pack several workers into each job"
        )
    arrays = sum(1 for s in shapes if s.array)
    if arrays > 1:
        warnings.append(
            f"{workers} workers exceed the array limit of {max_array_size} elements: split into "
            f"{arrays} arrays"
        )
        if max_concurrent:
            warnings.append(
                f"max_concurrent {max_concurrent} applies to each array separately: up to "
                f"{arrays * max_concurrent} elements may run at once"
            )
    if remainder:
        warnings.append(
            f"{workers} workers is not a multiple of workers_per_job {per}: the last "
            f"{remainder} run in a separate job"
        )
    return shapes, warnings


# --- job limits (``limits:``) ----------------------------------------------------------


def jobs_counted(shapes: list[ChunkShape], array_elements_count: bool) -> int:
    """How many jobs ``shapes`` are as the centre counts them (elements or submissions)."""
    return sum(s.elements if array_elements_count else 1 for s in shapes)


@dataclass(frozen=True)
class LimitFit:
    """A plan checked against the site's queued-job limit.

    ``refusal`` is None when the plan fits; otherwise the one line a user reads
    (with the largest launch that fits), and nothing may be submitted.
    """

    counted: int
    room: int | None  # jobs the limit still allows (None: no limit stated)
    largest: int  # the most workers that fit now (0: none)
    refusal: str | None
    warnings: tuple[str, ...] = ()


def fit_limits(
    plan: Callable[[int], list[ChunkShape]],
    workers: int,
    *,
    max_queued: int | None,
    max_running: int | None,
    scope: str,
    array_elements_count: bool,
    queued: int = 0,
    site: str = "this site",
) -> LimitFit:
    """Check ``plan(workers)`` against the limit, counting ``queued`` jobs already there.

    ``plan`` maps a worker count to its shapes (the same planner, so the largest
    launch that fits is found by the same arithmetic: the count never falls as
    workers grow, so a bisection finds it).
    """
    unit = "array elements and jobs" if array_elements_count else "jobs (an array counts once)"
    counted = jobs_counted(plan(workers), array_elements_count)
    warnings: list[str] = []
    if max_running is not None and counted > max_running:
        warnings.append(
            f"{site} runs at most {max_running} jobs per {scope} at once (limits.max_running_jobs):"
            f" {counted - max_running} of these {counted} wait in the queue until others end"
        )
    if max_queued is None:
        return LimitFit(counted, None, workers, None, tuple(warnings))
    room = max(0, max_queued - queued)
    if counted <= room:
        return LimitFit(counted, room, workers, None, tuple(warnings))
    lo, hi = 0, workers - 1  # largest w in [0, workers) whose count fits
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if jobs_counted(plan(mid), array_elements_count) <= room:
            lo = mid
        else:
            hi = mid - 1
    already = f", {queued} already queued there" if queued else ""
    advice = (
        f"the largest launch that fits now is --workers {lo}"
        if lo
        else "no launch fits now: wait for queued jobs to end, or cancel some"
    )
    refusal = (
        f"{site} accepts {max_queued} queued {unit} per {scope} (limits.max_queued_jobs"
        f"{already}): {workers} workers need {counted}; {advice}"
    )
    return LimitFit(counted, room, lo, refusal, tuple(warnings))
