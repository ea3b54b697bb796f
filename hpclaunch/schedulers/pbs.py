"""PBS Professional / OpenPBS: qsub / qstat -F json / qdel / qselect.

Pure functions, bound together by the :class:`Pbs` scheduler at the end.
Facts from the Altair PBS Professional Reference Guide
(job_state letters; Table 11-1 exit status ranges; Table 11-2 negative
JOB_EXEC codes) and the User's Guide (job array IDs ``1234[].server``,
subjobs ``1234[7].server``); the JSON layout from the OpenPBS design page
"PP-483/484/485: Enhance output of qstat" (``timestamp``, ``pbs_version``,
``pbs_server``, ``Jobs``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from hpclaunch.errors import UserError
from hpclaunch.schedulers import (
    JobState,
    ParseError,
    StatusAnswer,
    SubmittedJob,
    check_element,
    check_ids,
    check_job_name,
    excerpt,
)
from hpclaunch.schedulers._pbs_common import (
    ID_ARG_RE,
    attr,
    drop_expanded_parents,
    element_id,
    exit_status_of,
    limit_exceeded,
    make_state,
    parse_full_text,
    parse_job_id_lines,
    parse_qsub,
    positive_exit_verdict,
)
from hpclaunch.schedulers.base import QueuedJobs, Scheduler

NAME = "pbs"
# PBS job arrays need at least two subjobs (qsub -J X-Y with Y > X).
ARRAY_MIN_ELEMENTS = 2
# Server attribute max_array_size defaults to 10000.
ARRAY_MAX_ELEMENTS_DEFAULT = 10000
JOB_ID_ENV = "PBS_JOBID"
ARRAY_JOB_ID_ENV = "PBS_ARRAY_ID"
ARRAY_INDEX_ENV = "PBS_ARRAY_INDEX"

# job_state letters (Reference Guide, job attribute job_state).
STATE_MAP: dict[str, str] = {
    "B": "RUNNING",  # array job: at least one subjob has started
    "E": "COMPLETING",  # exiting: finished, PBS cleaning up
    "F": "COMPLETED",  # finished: refined by Exit_status below
    "H": "PENDING",  # held
    "M": "UNKNOWN",  # moved to another server
    "Q": "PENDING",
    "R": "RUNNING",
    "S": "SUSPENDED",
    "T": "PENDING",  # transiting
    "U": "SUSPENDED",  # suspended for workstation user activity
    "W": "PENDING",  # waiting for its execution time (or a failed stage-in)
    "X": "COMPLETED",  # subjob finished (expired): refined by Exit_status
}
FINISHED_LETTERS = frozenset({"F", "X"})
_PENDING_REASONS = {
    "H": "held",
    "W": "waiting for its execution time or a stage-in retry",
    "T": "being moved to a new location",
    "M": "moved to another server",
}

# Negative Exit_status: JOB_EXEC_* values set by MOM or the server. Names and
# numbers from OpenPBS src/include/job.h (commit cd7ab5eda, 23.06.06); -8/-9
# (Globus) only in older PBS Professional Reference Guides (Table 11-2).
EXEC_CODES: dict[int, tuple[str, str]] = {
    -1: ("JOB_EXEC_FAIL1", "FAILED"),  # exec failed before files, no retry
    -2: ("JOB_EXEC_FAIL2", "FAILED"),  # exec failed after files, no retry
    -3: ("JOB_EXEC_RETRY", "FAILED"),  # exec failed, PBS retries it
    -4: ("JOB_EXEC_INITABT", "NODE_FAIL"),  # aborted on MOM initialization
    -5: ("JOB_EXEC_INITRST", "NODE_FAIL"),
    -6: ("JOB_EXEC_INITRMG", "NODE_FAIL"),
    -7: ("JOB_EXEC_BADRESRT", "FAILED"),  # restart failed
    -8: ("JOB_EXEC_GLOBUS_INIT_RETRY", "FAILED"),
    -9: ("JOB_EXEC_GLOBUS_INIT_FAIL", "FAILED"),
    -10: ("JOB_EXEC_FAILUID", "FAILED"),  # invalid uid/gid
    -11: ("JOB_EXEC_RERUN", "PREEMPTED"),
    -12: ("JOB_EXEC_CHKP", "PREEMPTED"),  # checkpointed and killed
    -13: ("JOB_EXEC_FAIL_PASSWORD", "FAILED"),
    -14: ("JOB_EXEC_RERUN_SIS_FAIL", "NODE_FAIL"),
    -15: ("JOB_EXEC_QUERST", "PREEMPTED"),  # requeued for restart from checkpoint
    -16: ("JOB_EXEC_FAILHOOK_RERUN", "FAILED"),
    -17: ("JOB_EXEC_FAILHOOK_DELETE", "FAILED"),
    -18: ("JOB_EXEC_HOOK_RERUN", "FAILED"),
    -19: ("JOB_EXEC_HOOK_DELETE", "FAILED"),
    -20: ("JOB_EXEC_RERUN_MS_FAIL", "NODE_FAIL"),  # mother superior connection failed
    -21: ("JOB_EXEC_FAIL_SECURITY", "FAILED"),  # security breach in PBS directory
    -22: ("JOB_EXEC_HOOKERROR", "FAILED"),  # hook exception or timeout
    -23: ("JOB_EXEC_FAIL_KRB5", "FAILED"),  # no Kerberos credentials
    -24: ("JOB_EXEC_KILL_NCPUS_BURST", "FAILED"),  # killed: ncpus exceeded (burst)
    -25: ("JOB_EXEC_KILL_NCPUS_SUM", "FAILED"),  # killed: ncpus exceeded (sum)
    -26: ("JOB_EXEC_KILL_VMEM", "OUT_OF_MEMORY"),
    -27: ("JOB_EXEC_KILL_MEM", "OUT_OF_MEMORY"),
    -28: ("JOB_EXEC_KILL_CPUT", "TIMEOUT"),  # CPU time limit: a time limit too
    -29: ("JOB_EXEC_KILL_WALLTIME", "TIMEOUT"),  # the real walltime kill (23.06)
    -30: ("JOB_EXEC_JOINJOB", "FAILED"),  # join job error
}
# Why each state above: the words PBS uses for the kill, shown to the user.
_EXEC_WHY: dict[str, str] = {
    "TIMEOUT": "killed at its time limit",
    "OUT_OF_MEMORY": "killed at its memory limit",
    "NODE_FAIL": "its node or MOM failed",
    "PREEMPTED": "requeued or checkpointed by PBS",
}
# "... and exceeded resource walltime": the comment PBS writes on a limit kill.
_EXCEEDED_RE = re.compile(r"exceeded resource (?P<res>[A-Za-z_]+)")
_EXCEEDED_STATE = {
    "walltime": "TIMEOUT",
    "cput": "TIMEOUT",
    "mem": "OUT_OF_MEMORY",
    "vmem": "OUT_OF_MEMORY",
    "pmem": "OUT_OF_MEMORY",
    "pvmem": "OUT_OF_MEMORY",
}


# --- submit ------------------------------------------------------------------------


def submit_argv(script_path: str, *, extra: Sequence[str] = ()) -> list[str]:
    """``qsub [extra...] SCRIPT``: prints ``1234.server`` or ``1234[].server``."""
    if not script_path or not isinstance(script_path, str):
        raise UserError("no batch script path given to qsub")
    return ["qsub", *[str(e) for e in extra], script_path]


def parse_submit(stdout: str) -> SubmittedJob:
    """Parse qsub's output: the job ID, with ``cluster`` set to the server name."""
    return parse_qsub(stdout, "qsub")


# --- status ------------------------------------------------------------------------


def status_argv(job_ids: Sequence[str]) -> list[str]:
    """One ``qstat -f -F json -t -x`` for many jobs: subjobs expanded, finished jobs kept.

    ``-x`` adds finished jobs when the server keeps job history; without it a
    finished job is an error, so it is always passed.
    """
    ids = check_ids(job_ids, ID_ARG_RE, "PBS")
    return ["qstat", "-f", "-F", "json", "-t", "-x", *ids]


def parse_status(stdout: str) -> list[JobState]:
    """Parse ``qstat -f -F json`` output, one JobState per job or subjob."""
    data = _load_json(stdout)
    jobs = data.get("Jobs", {})
    if jobs is None:
        jobs = {}
    if not isinstance(jobs, Mapping):
        raise ParseError("qstat -F json: 'Jobs' is not an object")
    out: list[JobState] = []
    for key, attrs in jobs.items():
        if not isinstance(attrs, Mapping):
            raise ParseError(f"qstat -F json: job {excerpt(str(key))!r} is not an object")
        out.append(job_state(str(key), attrs, "qstat"))
    return drop_expanded_parents(out)


def parse_status_text(stdout: str) -> list[JobState]:
    """Parse plain ``qstat -f`` text (servers too old for ``-F json``)."""
    out = [job_state(key, attrs, "qstat -f") for key, attrs in parse_full_text(stdout)]
    return drop_expanded_parents(out)


def job_state(key: str, attrs: Mapping[str, Any], source: str) -> JobState:
    """One job's attributes (JSON object or ``qstat -f`` text) to a JobState."""
    raw_letter = attrs.get("job_state")
    if not isinstance(raw_letter, str) or raw_letter.strip() not in STATE_MAP:
        raise ParseError(
            f"{source}: job {excerpt(key)!r} has an unexpected job_state "
            f"{excerpt(str(raw_letter))!r}"
        )
    letter = raw_letter.strip()
    status = exit_status_of(attrs, source)
    comment = attrs.get("comment")
    comment = comment.strip() if isinstance(comment, str) and comment.strip() else None
    reason: str | None
    if letter in FINISHED_LETTERS and never_started(key, status, attrs):
        state, reason = "CANCELLED", "never started (deleted before it ran)"
    elif letter in FINISHED_LETTERS:
        state, reason = exit_verdict(status, attrs)
    else:
        state = STATE_MAP[letter]
        reason = comment or _PENDING_REASONS.get(letter)
    return make_state(key, state, letter, reason, status, source)


def never_started(key: str, status: int | None, attrs: Mapping[str, Any]) -> bool:
    """A finished subjob that never ran: its array was qdel'd before PBS started it.

    OpenPBS 23.06 gives such subjobs ``Exit_status`` 1 (or none) and the
    comment "Subjob finished", but no ``exec_host``, no ``resources_used`` and
    no ``run_count``: nothing ran, so nothing failed. A negative (JOB_EXEC_*)
    status means PBS did try to run it, so that keeps its own verdict.
    """
    if "[" not in key or key.split("[", 1)[1].startswith("]"):
        return False  # not a subjob: plain jobs and array parents keep their verdict
    if status is not None and status < 0:
        return False
    if attr(attrs, "exec_host") or attr(attrs, "exec_vnode"):
        return False
    if any(str(k).lower().startswith("resources_used") for k in attrs):
        return False
    run_count = attr(attrs, "run_count")
    return not run_count or run_count.strip() in ("0", "")


def exit_verdict(status: int | None, attrs: Mapping[str, Any]) -> tuple[str, str | None]:
    """State and reason of a finished PBS job from its Exit_status (raw value kept by caller).

    0..127 the script's exit value; 128+N the top process died of signal N;
    254 execve() failed; >= 256 PBS killed it with signal (X % 256): a limit
    when resources_used shows one reached, otherwise a qdel (OpenPBS 23.06
    records 271 for a qdel and -29 for a walltime kill). Negative: JOB_EXEC_*;
    a code not in the table is judged by the comment, then resources_used.
    """
    if status is None:
        return "UNKNOWN", "finished; no exit status recorded (job history off?)"
    if status < 0:
        return negative_exit_verdict(status, attrs)
    return positive_exit_verdict(status, attrs)


def negative_exit_verdict(status: int, attrs: Mapping[str, Any]) -> tuple[str, str]:
    """A JOB_EXEC_* value: the table first, then the limit PBS says was exceeded."""
    m = _EXCEEDED_RE.search(attr(attrs, "comment") or "")
    known = EXEC_CODES.get(status)
    if known is not None:
        name, state = known
        why = _EXEC_WHY.get(state, "the job could not be executed or was stopped by PBS")
        if m:
            why = f"exceeded resource {m.group('res')}"
        return state, f"{name} ({status}): {why}"
    if m and m.group("res").lower() in _EXCEEDED_STATE:
        res = m.group("res").lower()
        return _EXCEEDED_STATE[res], f"exit status {status}: exceeded resource {res}"
    over = limit_exceeded(attrs)
    if over is not None:
        return over
    return "FAILED", f"exit status {status}: the job could not be executed"


# --- accounting: finished jobs come from the same qstat -x ------------------------------


def accounting_argv(job_ids: Sequence[str]) -> list[str]:
    """Finished jobs: ``qstat -x`` history (only when the server keeps job history)."""
    return status_argv(job_ids)


def parse_accounting(stdout: str) -> list[JobState]:
    return parse_status(stdout)


def history_unavailable(stderr: str) -> bool:
    """True when qstat says the server keeps no job history (job_history_enable unset).

    OpenPBS 23.06: ``qstat: PBS is not configured to maintain job history ID``.
    """
    text = (stderr or "").lower()
    return "job_history_enable" in text or ("history" in text and "not" in text)


# "qstat: Unknown Job Id 17[].pbshost": one job no longer known (purged from history).
_UNKNOWN_ID_RE = re.compile(r"^qstat: Unknown Job Id (?P<id>\S+)\s*$", re.IGNORECASE)
_HISTORY_OFF_NOTE = (
    "no scheduler accounting (PBS job history is off: job_history_enable); jobs that "
    "left the queue are settled from their workers' records"
)


def interpret_status(stdout: str, stderr: str, returncode: int) -> StatusAnswer:
    """What ``qstat -f -F json -t -x`` said, including its half-failures (OpenPBS 23.06).

    Exit 153 with ``Unknown Job Id X`` on stderr still carries JSON for every
    known job on stdout: keep those, report X as unknown. Job history off is
    exit 0, a ``not configured to maintain job history`` line and no ``Jobs``:
    finished jobs cannot be looked up at all, which the user is told.
    """
    if not isinstance(stdout, str) or not isinstance(stderr, str):
        raise ParseError("qstat output must be text")
    messages = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    # The messages belong on stderr; a transport that merges streams puts them first.
    body_lines = []
    for line in stdout.splitlines():
        if line.startswith("qstat: "):
            messages.append(line.strip())
        else:
            body_lines.append(line)
    body = "\n".join(body_lines)
    unknown: list[str] = []
    history_off = False
    other: list[str] = []
    for line in messages:
        m = _UNKNOWN_ID_RE.match(line)
        if m:
            unknown.append(m.group("id"))
        elif history_unavailable(line):
            history_off = True
        else:
            other.append(line)
    if returncode != 0 and (other or not (unknown or history_off)):
        return StatusAnswer([], error=f"{(other or messages)[-1:] or returncode}")
    notes: list[str] = []
    if unknown:
        notes.append(
            f"qstat no longer knows {', '.join(unknown)} (gone from job history): "
            "its elements are settled from their workers' records"
        )
    if history_off:
        notes.append(_HISTORY_OFF_NOTE)
    # qstat -x is also the accounting command: asking again for what it lacks cannot help.
    return StatusAnswer(
        parse_status(body), unknown=tuple(unknown), notes=tuple(notes), accounting=False
    )


# --- cancel ------------------------------------------------------------------------


def cancel_argv(job_ids: Sequence[str], element: int | None = None) -> list[str]:
    """``qdel`` the jobs, or only subjob ``element`` of each array (``1234[7].server``)."""
    ids = check_ids(job_ids, ID_ARG_RE, "PBS")
    element = check_element(element)
    if element is not None:
        try:
            ids = [element_id(i, element) for i in ids]
        except ParseError as exc:
            raise UserError(str(exc)) from None
    return ["qdel", *ids]


# --- find by name ----------------------------------------------------------------------


def find_by_name_argv(job_name: str) -> list[str]:
    """``qselect -x -N NAME``: also finished jobs, so a job that already ran counts."""
    return ["qselect", "-x", "-N", check_job_name(job_name)]


def parse_find_by_name(stdout: str) -> list[str]:
    return parse_job_id_lines(stdout, "qselect")


# --- jobs counted against a submit limit ------------------------------------------------


def queued_jobs_argv(scope: str, account: str | None) -> list[str] | None:
    """``qselect -u "$USER"`` (or ``-A ACCOUNT``): the IDs of jobs not yet finished.

    qselect prints an array once (``12[].server``), so with array elements
    counting as jobs the count is a lower bound (:class:`QueuedJobs`).
    """
    if scope == "project":
        return ["qselect", "-A", account] if account else None
    return ["sh", "-c", 'exec qselect -u "$USER"']


def parse_queued_jobs(stdout: str) -> QueuedJobs:
    ids = parse_job_id_lines(stdout, "qselect")
    arrays = sum(1 for i in ids if "[]" in i)
    return QueuedJobs(jobs=len(ids), elements=None if arrays else len(ids))


# --- JSON ------------------------------------------------------------------------------

_BARE_WORD_RE = re.compile(r"(?<=[:\[,])(\s*)(-?inf|nan|-?infinity)(?=\s*[,}\]])", re.I)
_BAD_ESCAPE_RE = re.compile(r'\\(?![\\/"bfnrtu])')


def _load_json(stdout: str | bytes) -> dict[str, Any]:
    """json.loads with repairs for what some qstat versions emit.

    Known quirks: unquoted ``inf``/``nan`` for numeric-looking values (a job
    named ``inf``), raw control characters and stray backslashes inside
    Variable_List strings.
    """
    if isinstance(stdout, bytes):
        stdout = stdout.decode("utf-8", "replace")
    if not isinstance(stdout, str):
        raise ParseError(f"qstat output must be text, got {type(stdout).__name__}")
    text = stdout.strip()
    if not text:
        return {}
    data: Any = None
    for candidate in (text, _BAD_ESCAPE_RE.sub(r"\\\\", _BARE_WORD_RE.sub(r'\1"\2"', text))):
        try:
            data = json.loads(candidate, strict=False)
            break
        except (ValueError, RecursionError):
            continue
    else:
        raise ParseError(f"qstat -F json printed something that is not JSON: {excerpt(text)!r}")
    if not isinstance(data, dict):
        raise ParseError(f"qstat -F json printed JSON that is not an object: {excerpt(text)!r}")
    return data


class Pbs(Scheduler):
    """PBS Pro / OpenPBS: ``-J`` arrays of at least two subjobs; logs ``NAME.<index>.out``."""

    name = "pbs"
    template = "pbs.sh.j2"
    ignored_resources: ClassVar[tuple[str, ...]] = ("qos", "constraint")
    array_min_elements = ARRAY_MIN_ELEMENTS
    array_max_elements_default: ClassVar[int | None] = ARRAY_MAX_ELEMENTS_DEFAULT

    def format_memory(self, memory: str | None) -> str | None:
        """``4G`` -> ``4gb`` (PBS size units)."""
        return None if memory is None else memory[:-1] + memory[-1].lower() + "b"

    submit_argv = staticmethod(submit_argv)
    parse_submit = staticmethod(parse_submit)
    status_argv = staticmethod(status_argv)
    parse_status = staticmethod(parse_status)
    interpret_status = staticmethod(interpret_status)
    accounting_argv = staticmethod(accounting_argv)
    parse_accounting = staticmethod(parse_accounting)
    cancel_argv = staticmethod(cancel_argv)
    find_by_name_argv = staticmethod(find_by_name_argv)
    parse_find_by_name = staticmethod(parse_find_by_name)
    queued_jobs_argv = staticmethod(queued_jobs_argv)

    def queue_exists_argv(self, partition: str) -> list[str] | None:
        """``qstat -Q QUEUE``: fails with "Unknown queue" when there is none."""
        return ["qstat", "-Q", partition]

    parse_queued_jobs = staticmethod(parse_queued_jobs)

    def already_gone(self, output: str) -> bool:
        """Also ``qdel: Job has finished ID`` (exit status 35 on OpenPBS 23.06)."""
        return super().already_gone(output) or "job has finished" in (output or "").lower()

    def log_paths(
        self, log_dir: str, job_name: str, job_id: str, index: int | None
    ) -> tuple[str, str]:
        return self._log_pair(log_dir, f"{job_name}.{index}" if index is not None else job_name)
