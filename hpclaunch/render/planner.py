"""Split N workers into the jobs and job arrays a site accepts (pure arithmetic).

* SLURM: MaxArraySize caps the array *index* (indices stay below it), so an
  array has at most ``max_array_size`` elements, indexed 0..n-1; more workers
  become several arrays, each indexed from 0.
* PBS Pro: ``-J`` needs at least two elements, so a one-element chunk is a
  plain job. Torque: ``-t`` (any size).
* ``arrays.enabled: false``: one plain job per element.
* ``workers_per_job`` K: each element runs K workers; N not divisible by K
  leaves a remainder that gets its own plain job with fewer workers.
* ``local``: one script that runs all N workers.
"""

from __future__ import annotations

from dataclasses import dataclass

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
    scheduler: str,
    workers: int,
    workers_per_job: int,
    arrays_enabled: bool,
    max_array_size: int,
    max_concurrent: int | None = None,
    site: str = "this site",
) -> tuple[list[ChunkShape], list[str]]:
    """The chunks for ``workers`` workers, and warnings a user should read."""
    if workers < 1:
        raise ValueError("workers must be >= 1")
    warnings: list[str] = []
    if scheduler == "local":
        return [ChunkShape(0, 1, workers, False)], warnings
    per = workers_per_job
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
        is_array = arrays_enabled and not (scheduler == "pbs" and elements < 2)
        if each != per:
            is_array = False
        shapes.append(ChunkShape(index, elements, each, is_array))
    if not arrays_enabled and len(shapes) > MANY_JOBS:
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
