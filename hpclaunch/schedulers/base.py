"""The one interface every scheduler implements (``slurm.Slurm``, ``pbs.Pbs``, ...).

A scheduler is one subclass of :class:`Scheduler` in one module, one template
and one line in :mod:`hpclaunch.schedulers.registry`. Everything that differs
between schedulers lives on the class, so rendering, launching and the worker
never compare scheduler names. Command builders return argv lists for a
transport to run; parsers take what the command printed and return
dataclasses or raise :class:`~hpclaunch.schedulers.ParseError`, nothing else.
"""

from __future__ import annotations

import posixpath
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from hpclaunch.schedulers import JobState, StatusAnswer, SubmittedJob
from hpclaunch.schedulers.environment import JobEnvironment
from hpclaunch.schedulers.registry import ENVIRONMENTS

if TYPE_CHECKING:
    from hpclaunch.sites.model import Profile, Resources


@dataclass(frozen=True)
class QueuedJobs:
    """Jobs still queued or running for a user (or account), as one command listed them.

    ``elements`` counts each array element; None when the command shows an array
    as one line and its elements are not known (the count is then a lower bound).
    """

    jobs: int
    elements: int | None

    def counted(self, array_elements_count: bool) -> tuple[int, bool]:
        """The count as the centre counts it, and whether it is exact."""
        if not array_elements_count:
            return self.jobs, True
        if self.elements is None:
            return self.jobs, False
        return self.elements, True


class Scheduler(ABC):
    """A batch system: how to write its scripts, talk to it, and read its answers."""

    #: The name in site profiles and launch records.
    name: ClassVar[str]
    #: The Jinja template in ``templates/`` (a profile's ``template:`` overrides it).
    template: ClassVar[str]
    #: Profile ``resources`` keys its scripts have no directive for: set ones are warned about.
    ignored_resources: ClassVar[tuple[str, ...]] = ()
    #: False when there are no directives (``extra_directives`` would be ignored).
    takes_directives: ClassVar[bool] = True
    #: False when the scheduler has no job arrays at all (no advice about them then).
    has_arrays: ClassVar[bool] = True
    #: Fewest elements a job array may have; a smaller chunk is submitted as a plain job.
    array_min_elements: ClassVar[int] = 1
    #: Largest array the scheduler accepts by default (None: no limit of its own).
    array_max_elements_default: ClassVar[int | None] = None
    #: First array index it hands out (SGE counts tasks from 1).
    array_first_index: ClassVar[int] = 0
    #: All jobs run on the same host (local): GPU slots are numbered across the launch.
    jobs_share_host: ClassVar[bool] = False
    #: Workers reach the queue like the submitting process when a profile says nothing.
    database_local_by_default: ClassVar[bool] = False

    @property
    def environment(self) -> JobEnvironment:
        """The variables carrying job ID, array job ID and array index (for the worker)."""
        return ENVIRONMENTS[self.name]

    # --- rendering -----------------------------------------------------------------

    def format_memory(self, memory: str | None) -> str | None:
        """A checked profile memory (``4G``) as the scheduler writes it."""
        return memory

    def format_walltime(self, resources: Resources) -> str:
        """The walltime as the scheduler's directive takes it (``HH:MM:SS`` by default)."""
        return resources.walltime_hms

    def array_range(self, elements: int, max_concurrent: int | None) -> str:
        """The array directive's value for ``elements`` elements (``0-9%2``).

        Indices start at :attr:`array_first_index`; the throttle (``%N``) is
        part of the value unless :meth:`array_throttle` says otherwise.
        """
        first = self.array_first_index
        spec = str(first) if elements == 1 else f"{first}-{first + elements - 1}"
        if max_concurrent and self.array_throttle(max_concurrent) is None:
            return f"{spec}%{max_concurrent}"
        return spec

    def array_throttle(self, max_concurrent: int | None) -> str | None:
        """The throttle when it is a directive of its own (SGE ``-tc``); None otherwise."""
        return None

    def submit_profile(self, profile: Profile) -> Profile:
        """The profile as submitted (the local scheduler runs this very interpreter)."""
        return profile

    def packing(
        self, workers: int, workers_per_job: int, arrays_enabled: bool, *, submitting: bool
    ) -> tuple[int, bool]:
        """Workers per job and whether arrays are used, as the planner should apply them."""
        return workers_per_job, arrays_enabled

    # --- commands and their output -------------------------------------------------

    @abstractmethod
    def submit_argv(self, script_path: str, *, extra: Sequence[str] = ()) -> list[str]:
        """Submit one script (run from the launch's working folder)."""

    @abstractmethod
    def parse_submit(self, stdout: str) -> SubmittedJob:
        """The job ID the submit command printed."""

    @abstractmethod
    def status_argv(self, job_ids: Sequence[str]) -> list[str]:
        """One status command for many jobs."""

    @abstractmethod
    def parse_status(self, stdout: str) -> list[JobState]:
        """One JobState per job or array element (ranges expanded)."""

    @abstractmethod
    def accounting_argv(self, job_ids: Sequence[str]) -> list[str]:
        """Where finished jobs are looked up (accounting, or job history)."""

    @abstractmethod
    def parse_accounting(self, stdout: str) -> list[JobState]:
        """Finished jobs' verdicts."""

    @abstractmethod
    def cancel_argv(self, job_ids: Sequence[str], element: int | None = None) -> list[str]:
        """Cancel the jobs, or only array element ``element`` (counted from 0) of each."""

    @abstractmethod
    def find_by_name_argv(self, job_name: str) -> list[str]:
        """Look a job up by its unique name (after a lost submit reply)."""

    @abstractmethod
    def parse_find_by_name(self, stdout: str) -> list[str]:
        """The job IDs :meth:`find_by_name_argv` found, in order."""

    def queue_exists_argv(self, partition: str) -> list[str] | None:
        """A command that prints something only if the partition/queue exists; None: cannot."""
        return None

    def queued_jobs_argv(self, scope: str, account: str | None) -> list[str] | None:
        """One command listing the user's (``scope`` user) or the account's jobs not yet
        ended, counted against ``limits``; None when this scheduler cannot say."""
        return None

    def parse_queued_jobs(self, stdout: str) -> QueuedJobs:
        """What :meth:`queued_jobs_argv` printed, counted."""
        raise NotImplementedError(f"{self.name} does not count queued jobs")

    def interpret_status(self, stdout: str, stderr: str, returncode: int) -> StatusAnswer:
        """Everything a status command's run says: states, forgotten IDs, notes, failure.

        The one place launches learn from a status command, so a scheduler
        whose command half-fails (PBS: exit 153 with JSON for the known jobs)
        says so here. By default: exit 0 parses stdout, a failure that only
        means "none of these jobs is known" is no states, anything else an error.
        """
        if returncode == 0:
            return StatusAnswer(self.parse_status(stdout))
        if self.no_such_jobs(stderr):
            return StatusAnswer([])
        return StatusAnswer([], error=f"{stderr.strip().splitlines()[-1:] or returncode}")

    def no_such_jobs(self, stderr: str) -> bool:
        """True when the status command failed only because no given job is known any more."""
        return False

    def already_gone(self, output: str) -> bool:
        """True when a cancel failed because the job had already left the queue.

        ``output`` is all the cancel command printed: some schedulers say it on stdout.
        """
        text = (output or "").lower()
        return "invalid job id" in text or "unknown job id" in text or "already completed" in text

    @abstractmethod
    def log_paths(
        self, log_dir: str, job_name: str, job_id: str, index: int | None
    ) -> tuple[str, str]:
        """Where element ``index`` (None: a plain job) writes stdout and stderr.

        Must agree with the template's output directives.
        """

    def worker_log_paths(
        self, log_dir: str, job_name: str, index: int | str | None
    ) -> tuple[str, str]:
        """Where the batch script sends its workers' stdout and stderr, while they run.

        In the launch folder itself: PBS keeps ``-o/-e`` in its spool on the
        execution host until the job ends, and ``logs --follow`` must see output
        as it comes, the same way on every scheduler. ``index`` is the element
        counted from 0 (None: a plain job), or when rendering the shell
        expression that yields it. The scheduler's own files (:meth:`log_paths`)
        keep the batch shell's messages.
        """
        stem = f"{job_name}.{index}.workers" if index is not None else f"{job_name}.workers"
        return self._log_pair(log_dir, stem)

    def index_expression(self) -> str:
        """The shell expression for the running element's index counted from 0."""
        env = self.environment
        if env.array_index is None:
            return "0"
        if env.index_base:
            return f"$(( ${{{env.array_index}}} - {env.index_base} ))"
        return f"${{{env.array_index}}}"

    @staticmethod
    def _log_pair(log_dir: str, stem: str) -> tuple[str, str]:
        base = posixpath.join(log_dir, stem)
        return base + ".out", base + ".err"

    def __repr__(self) -> str:
        return f"<scheduler {self.name}>"
