"""How many of the user's (or project's) jobs already count against the site's limit.

One scheduler call before a submission (``limits.max_queued_jobs`` set): those
jobs count against the same limit as the new ones. A project-wide count is
best effort where the scheduler hides other users' jobs; a scheduler that
lists an array as one line gives a lower bound when elements count. Both are
said in a note rather than hidden.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hpclaunch.errors import UserError
from hpclaunch.schedulers.base import Scheduler


@dataclass(frozen=True)
class QueuedCount:
    """Jobs already counting against the limit, and what the user should know about it."""

    jobs: int
    notes: tuple[str, ...] = ()
    calls: int = 0


def count_queued(
    transport: Any,
    scheduler: Scheduler,
    *,
    site: str,
    max_queued: int | None,
    scope: str,
    array_elements_count: bool,
    account: str | None,
) -> QueuedCount:
    """Ask the scheduler once (when a limit is stated); 0 with a note when it cannot say."""
    if max_queued is None:
        return QueuedCount(0)
    argv = scheduler.queued_jobs_argv(scope, account)
    if argv is None:
        why = (
            "limits.scope is project but no resources.account is set"
            if scope == "project" and not account
            else f"{scheduler.name} cannot list them"
        )
        return QueuedCount(0, (f"jobs already queued on {site} are not counted: {why}",))
    result = transport.run(argv, idempotent=True)
    if not result.ok:
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise UserError(
            f"cannot count the jobs already queued on {site} ({argv[0]}: "
            f"{detail[-1] if detail else f'exit code {result.returncode}'}); fix that, or skip "
            "the check with --set limits.max_queued_jobs=null",
            exit_code=6,
        )
    count, exact = scheduler.parse_queued_jobs(result.stdout).counted(array_elements_count)
    notes: list[str] = []
    if not exact:
        notes.append(
            f"{scheduler.name} lists each array once: the {count} jobs already queued on {site} "
            "are a lower bound (their elements also count)"
        )
    if scope == "project":
        notes.append(
            f"{count} jobs of project {account} already queued on {site} (best effort: other "
            "users' jobs may be hidden from you)"
        )
    return QueuedCount(count, tuple(notes), calls=1)
