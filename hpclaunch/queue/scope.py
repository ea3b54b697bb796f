"""Who may see and steer which rows: the one place the server's owner/group rule is written.

A ``Scope`` is what a caller of the HTTP API may touch: an admin everything, a
user its own and its group's tasks and batches. The direct-database CLI passes
no scope (whoever opens the database is its administrator). Listing and steering
operations in ``queue`` take ``scope=`` and add ``condition()`` to their WHERE.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hpclaunch.queue.accounts import Identity


@dataclass(frozen=True)
class Scope:
    """A user's reach: its own rows and its group's (``admin``: every row)."""

    user: str
    group: str
    admin: bool = False

    @classmethod
    def of(cls, identity: Identity) -> Scope:
        return cls(identity.user, identity.group, admin=identity.role == "admin")


def condition(scope: Scope | None, alias: str = "") -> tuple[str, dict[str, Any]]:
    """SQL (``TRUE``-like when unscoped) limiting a tasks/batches row to ``scope``."""
    if scope is None or scope.admin:
        return "1 = 1", {}
    prefix = f"{alias}." if alias else ""
    return (
        f"({prefix}owner = :scope_user OR {prefix}owner_group = :scope_group)",
        {"scope_user": scope.user, "scope_group": scope.group},
    )


def worker_condition(scope: Scope | None, alias: str = "w") -> tuple[str, dict[str, Any]]:
    """A worker is in a user's reach when it holds or ran a task of that user's reach.

    Worker rows carry no owner (a worker token's user is not recorded yet), so
    visibility is derived from the tasks: another group's workers stay unseen.
    """
    if scope is None or scope.admin:
        return "1 = 1", {}
    tasks_sql, params = condition(scope, "st")
    return (
        f"(EXISTS (SELECT 1 FROM tasks st WHERE st.worker_id = {alias}.id AND {tasks_sql})"
        f" OR EXISTS (SELECT 1 FROM task_attempts sa JOIN tasks st ON st.id = sa.task_id"
        f" WHERE sa.worker_id = {alias}.id AND {tasks_sql}))",
        params,
    )


def launch_condition(scope: Scope | None) -> tuple[str, dict[str, Any]]:
    """Launches are submitted where the database is; a user sees those it submitted."""
    if scope is None or scope.admin:
        return "1 = 1", {}
    return "submitted_by = :scope_user", {"scope_user": scope.user}
