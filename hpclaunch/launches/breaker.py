"""The circuit breaker: a launch whose elements end before any worker claims a task is broken.

The worker cannot start there (missing module, wrong Python, unreachable
database), so every further element would fail the same way: ``submit`` refuses
that site profile until it changes or ``--force`` is given.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from hpclaunch.errors import UserError
from hpclaunch.queue import launch_rows
from hpclaunch.queue.driver import Connection
from hpclaunch.states import FAILURE_JOB_STATES, ExitReason, JobStateName, LaunchStatus

#: Scheduler verdicts after which an element will not run again.
ENDED = FAILURE_JOB_STATES | {JobStateName.COMPLETED, JobStateName.UNKNOWN}
#: How many elements must end unused before a launch counts as broken.
MIN_BAD_ELEMENTS = 2

StderrTail = Callable[[str, int], str | None]


def is_broken(view: dict[str, Any]) -> bool:
    """Elements ended without any worker ever claiming a task."""
    elements = view["elements"]
    if any(e["tasks_completed"] or e["tasks_failed"] or e["current_tasks"] for e in elements):
        return False
    bad = [e for e in elements if e["state"] in ENDED and _never_worked(e)]
    return len(bad) >= min(MIN_BAD_ELEMENTS, len(elements))


def _never_worked(element: dict[str, Any]) -> bool:
    if element["state"] == JobStateName.CANCELLED:
        return False  # someone deleted it (e.g. never started): says nothing of the worker
    if element["state"] == JobStateName.COMPLETED and element["workers"]:
        return False  # workers started and found nothing to do: not broken
    return all(w["exit_reason"] in (None, ExitReason.CRASH) for w in element["workers"]) and (
        element["state"] != JobStateName.COMPLETED or not element["workers"]
    )


def broken_reason(view: dict[str, Any], stderr_tail: StderrTail | None) -> str:
    """One paragraph: how many elements ended unused, the first one, and its stderr's end."""
    bad = [e for e in view["elements"] if e["state"] in ENDED and _never_worked(e)]
    first = bad[0]
    detail = f"{first['state']}" + (f" ({first['reason']})" if first["reason"] else "")
    text = (
        f"{len(bad)} element(s) ended before any worker claimed a task; first: element "
        f"{first['element']} {detail}"
    )
    if stderr_tail is not None:
        try:
            tail = stderr_tail(view["id"], first["element"])
        except Exception as exc:  # noqa: BLE001 - the verdict stands without the log
            tail = f"(stderr not readable: {str(exc).splitlines()[0] if str(exc) else exc})"
        if tail:
            text += "; its stderr ends: " + " | ".join(tail.strip().splitlines()[-5:])
    return text[:4000]


def check_not_broken(conn: Connection, profile: Any, *, force: bool) -> None:
    """Refuse to submit a profile whose last launch is broken, unless it changed or --force."""
    if force:
        return
    row = launch_rows.newest_launch(conn, profile.name)
    if row is None or row["status"] != LaunchStatus.BROKEN:
        return  # the site's newest launch decides (a later --force launch clears it)
    current = json.dumps(profile.to_dict(), sort_keys=True, default=str)
    if current != row["profile"]:
        return  # the profile was fixed since
    raise UserError(
        f"site {profile.name} is marked broken by launch {row['id']}: {row['broken_reason']}. "
        "Fix the profile (or its overrides), or pass --force to submit anyway",
        exit_code=7,
    )
