"""Every state name hpclaunch stores or compares, defined once.

The values are the strings stored in the database and printed by ``--json``, so
they never change spelling. ``StrEnum`` members compare equal to those strings,
which keeps SQL parameters and JSON output unchanged. Importing this module costs
nothing (stdlib only): the worker uses it too.
"""

from __future__ import annotations

from enum import StrEnum


class TaskStatus(StrEnum):
    """Where a task is in its life: ``pending -> running -> completed | failed``."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELED = "canceled"


#: A task in one of these states will not run again unless someone retries it.
FINISHED_TASK_STATUSES: frozenset[TaskStatus] = frozenset(
    {TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELED}
)


class AttemptOutcome(StrEnum):
    """How one attempt (one claim of a task) ended: a ``task_attempts`` row."""

    COMPLETED = "completed"
    FAILED = "failed"
    RELEASED = "released"  # put back by its worker (signal, walltime, orphan): not counted
    LOST = "lost"  # its worker stopped heart-beating or its job died
    CANCELED = "canceled"


class WorkerStatus(StrEnum):
    """A worker row's state."""

    RUNNING = "running"
    EXITED = "exited"
    LOST = "lost"


class ExitReason(StrEnum):
    """Why a worker's loop ended (``workers.exit_reason`` for a clean exit)."""

    DONE = "done"  # --singleflow ran its one task
    NITEMS_MAX = "nitems_max"
    EMPTY_QUEUE = "empty_queue"
    DEADLINE = "deadline"
    SIGNAL = "signal"
    NONE = "none"
    DATABASE_UNREACHABLE = "database_unreachable"  # the queue stayed unreachable (exit 4)
    CRASH = "crash"  # an unexpected error in the worker itself


class LaunchStatus(StrEnum):
    """A launch's state, as recorded by submit, status and cancel."""

    SUBMITTING = "submitting"
    SUBMITTED = "submitted"
    PARTIAL = "partial"
    FAILED = "failed"
    FINISHED = "finished"
    CANCELED = "canceled"
    BROKEN = "broken"


#: Launches whose jobs may still be queued or running.
LIVE_LAUNCH_STATUSES: tuple[LaunchStatus, ...] = (
    LaunchStatus.SUBMITTING,
    LaunchStatus.SUBMITTED,
    LaunchStatus.PARTIAL,
)


class JobStateName(StrEnum):
    """A scheduler's verdict on a job or array element, normalised across schedulers."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETING = "COMPLETING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    TIMEOUT = "TIMEOUT"
    OUT_OF_MEMORY = "OUT_OF_MEMORY"
    PREEMPTED = "PREEMPTED"
    NODE_FAIL = "NODE_FAIL"
    BOOT_FAIL = "BOOT_FAIL"
    CANCELLED = "CANCELLED"
    SUSPENDED = "SUSPENDED"
    UNKNOWN = "UNKNOWN"


#: The scheduler verdicts that end an element badly; a profile's ``retry`` policy
#: names them (``retry: {TIMEOUT: requeue}``) and the reconciler types tasks by them.
FAILURE_JOB_STATES: frozenset[JobStateName] = frozenset(
    {
        JobStateName.TIMEOUT,
        JobStateName.OUT_OF_MEMORY,
        JobStateName.PREEMPTED,
        JobStateName.NODE_FAIL,
        JobStateName.BOOT_FAIL,
        JobStateName.CANCELLED,
        JobStateName.FAILED,
    }
)
#: After one of these the job will not run again by itself.
TERMINAL_JOB_STATES: frozenset[JobStateName] = FAILURE_JOB_STATES | {JobStateName.COMPLETED}
#: The job (or element) may still start, or is running.
ACTIVE_JOB_STATES: frozenset[JobStateName] = frozenset(
    {
        JobStateName.PENDING,
        JobStateName.RUNNING,
        JobStateName.COMPLETING,
        JobStateName.SUSPENDED,
    }
)
