"""Runtime estimates per tag set, from the queue's own history.

A deadline-aware worker needs to know how long a task will take when the task
does not say (no ``expected_runtime``): it uses the 95th percentile of recent
completed runtimes of tasks with the same tags, once there are at least
``MIN_SAMPLES`` of them. Refreshed about once a minute: one small query.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

MIN_SAMPLES = 5
RECENT = 200  # samples kept per tag set
REFRESH = 60.0  # seconds between refreshes


def p95(values: Iterable[float]) -> float | None:
    """Nearest-rank 95th percentile, or None with fewer than MIN_SAMPLES values."""
    ordered = sorted(values)
    if len(ordered) < MIN_SAMPLES:
        return None
    return ordered[max(math.ceil(0.95 * len(ordered)) - 1, 0)]


def estimates(samples: Iterable[tuple[str, float]], recent: int = RECENT) -> dict[str, float]:
    """Per tag set, the p95 of up to ``recent`` samples (given newest first)."""
    per: dict[str, list[float]] = {}
    for tags, seconds in samples:
        bucket = per.setdefault(tags, [])
        if len(bucket) < recent:
            bucket.append(max(seconds, 0.0))
    found = {tags: p95(values) for tags, values in per.items()}
    return {tags: value for tags, value in found.items() if value is not None}
