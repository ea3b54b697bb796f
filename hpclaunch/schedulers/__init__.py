"""Scheduler adapters: build scheduler command lines and parse what they print.

One module per scheduler, each with one :class:`~hpclaunch.schedulers.base.Scheduler`
subclass; :mod:`hpclaunch.schedulers.registry` lists them (one line each) and
:func:`get_scheduler` hands out the instance for a name. Argv builders return
lists of strings for a transport to run; parsers take the command's stdout and
return dataclasses or raise :class:`ParseError`, so a caller never has to guard
against anything else coming out of scheduler output. ``local`` runs its jobs
through ``python -m hpclaunch.schedulers._localrun``, a command like any other.

This package stays light (stdlib only) on import: the worker imports
:mod:`hpclaunch.schedulers.environment` and must not pay for the parsers.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hpclaunch.errors import UserError
from hpclaunch.schedulers import registry
from hpclaunch.states import ACTIVE_JOB_STATES, TERMINAL_JOB_STATES, JobStateName

if TYPE_CHECKING:
    from hpclaunch.schedulers.base import Scheduler

# The normalised states (hpclaunch.states.JobStateName), in the order of docs/ARCHITECTURE.md.
STATES: tuple[str, ...] = tuple(JobStateName)
# States after which the job will not run again by itself.
TERMINAL_STATES: frozenset[str] = frozenset(TERMINAL_JOB_STATES)
# States in which the job (or element) may still start or is running.
ACTIVE_STATES: frozenset[str] = frozenset(ACTIVE_JOB_STATES)

SCHEDULERS: tuple[str, ...] = registry.NAMES


class ParseError(UserError):
    """Scheduler output that does not have the expected shape.

    Raised by every parser for garbage input, with one line saying what was
    expected and a short excerpt of what came instead.
    """

    exit_code = 5


@dataclass(frozen=True)
class SubmittedJob:
    """What a submit command reported.

    ``job_id`` is the ID to pass back to status/cancel commands (for PBS the
    full ``1234[].server`` form). ``cluster`` is SLURM's ``;cluster`` suffix or
    the PBS/Torque server name, ``None`` when the output had none. ``array`` is
    True when the ID itself says it is an array (PBS ``[]``); SLURM's parsable
    output does not say, so it is False there.
    """

    job_id: str
    cluster: str | None = None
    array: bool = False


@dataclass(frozen=True)
class JobState:
    """One job or one array element as the scheduler sees it.

    ``state`` is one of :data:`STATES`; ``raw_state`` keeps the scheduler's
    own word for it. ``reason`` says why, when the scheduler or the exit status
    tells (pending reason, ``cancelled by uid 1000``, ``killed by signal 9``).
    ``exit_code`` is the job script's exit code when known.
    """

    job_id: str
    array_job_id: str | None
    array_index: int | None
    state: str
    reason: str | None
    exit_code: int | None
    raw_state: str

    def __post_init__(self) -> None:
        if self.state not in STATES:  # a programming error, not a user one
            raise ValueError(f"unknown normalised state {self.state!r}")

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_STATES


@dataclass(frozen=True)
class StatusAnswer:
    """What one status command said, read by :meth:`Scheduler.interpret_status`.

    ``states`` are the jobs it reported. ``unknown`` are job IDs it says it no
    longer knows (purged from history): their elements are settled from the
    workers' records. ``notes`` are lines for the user (without the host).
    ``accounting`` is False when a look-up of the missing jobs in accounting
    cannot help (no job history, or accounting is the command that just
    answered). ``error`` is set when the command failed outright: the caller
    reports it and stops.
    """

    states: list[JobState]
    unknown: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    accounting: bool = True
    error: str | None = None


_INSTANCES: dict[str, Scheduler] = {}


def get_scheduler(name: str) -> Scheduler:
    """The scheduler called ``name`` (or an alias such as ``openpbs``), one instance each."""
    found = registry.entry(name)
    if found is None:
        raise UserError(
            f"unknown scheduler {name!r}: use one of {', '.join(SCHEDULERS)} "
            "(the site profile's 'scheduler' key)"
        )
    if found.name not in _INSTANCES:
        module, _, cls = found.target.partition(":")
        _INSTANCES[found.name] = getattr(importlib.import_module(module), cls)()
    return _INSTANCES[found.name]


# --- small helpers shared by the adapters -------------------------------------------

_JOB_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]{0,199}$")


def excerpt(text: str, limit: int = 60) -> str:
    """A short, printable, single-line excerpt of scheduler output for error messages."""
    flat = " ".join(str(text).split())
    flat = "".join(ch if ch.isprintable() else "?" for ch in flat)
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def output_lines(stdout: str | bytes) -> list[str]:
    """The non-blank lines of a scheduler command's output (bytes decoded leniently)."""
    if isinstance(stdout, bytes):
        stdout = stdout.decode("utf-8", "replace")
    if not isinstance(stdout, str):
        raise ParseError(f"scheduler output must be text, got {type(stdout).__name__}")
    return [ln for ln in stdout.splitlines() if ln.strip()]


def check_job_name(job_name: str) -> str:
    """Validate a job name before it goes on a command line."""
    if not isinstance(job_name, str) or not _JOB_NAME_RE.fullmatch(job_name):
        raise UserError(
            f"invalid job name {job_name!r}: use 1-200 letters, digits, '_', '.', '+' or '-', "
            "starting with a letter, digit or '_'"
        )
    return job_name


def check_ids(job_ids: Sequence[str], pattern: re.Pattern[str], what: str) -> list[str]:
    """Validate job IDs before they go on a command line; at least one is required."""
    if isinstance(job_ids, str):
        job_ids = [job_ids]
    ids = [str(j).strip() for j in job_ids]
    if not ids:
        raise UserError(f"no {what} job IDs given: pass at least one")
    for job_id in ids:
        if not pattern.fullmatch(job_id):
            raise UserError(f"invalid {what} job ID {job_id!r}: expected e.g. {pattern.pattern}")
    return ids


def check_element(element: int | None) -> int | None:
    if element is None:
        return None
    if isinstance(element, bool) or not isinstance(element, int) or element < 0:
        raise UserError(f"invalid array element {element!r}: use a whole number >= 0")
    return element


def parse_hms(text: str | None) -> int | None:
    """Seconds in ``[[DD-]HH:]MM:SS`` / ``HH:MM:SS`` text, None when absent or malformed."""
    if not text:
        return None
    m = re.fullmatch(r"\s*(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?\s*", str(text))
    if not m:
        return None
    days, a, b, c = m.groups()
    parts = [int(a)] + [int(x) for x in (b, c) if x is not None]
    while len(parts) < 3:
        parts.insert(0, 0)
    h, mi, s = parts
    return (int(days or 0) * 24 + h) * 3600 + mi * 60 + s


_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "w": 8,
    "k": 1024,
    "m": 1024**2,
    "g": 1024**3,
    "t": 1024**4,
    "p": 1024**5,
}


def parse_size(text: str | None) -> int | None:
    """Bytes in a PBS size (``4gb``, ``1024kb``, ``12mw``), None when absent or malformed."""
    if not text:
        return None
    m = re.fullmatch(r"\s*(\d+)\s*([kmgtp]?)([bw]?)\s*", str(text).lower())
    if not m:
        return None
    number, prefix, word = m.groups()
    factor = _SIZE_UNITS[prefix] * (8 if word == "w" else 1)
    return int(number) * factor


def signal_name(signum: int) -> str:
    import signal

    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"
