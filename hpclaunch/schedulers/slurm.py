"""SLURM: sbatch / squeue / sacct / scancel command lines and their output.

Pure functions, bound together by the :class:`Slurm` scheduler at the end.
Facts used here are from the SLURM 22.05 man pages
(squeue "JOB STATE CODES", sacct "JOB STATE CODES", squeue ``-o`` field list).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from hpclaunch.errors import UserError
from hpclaunch.schedulers import (
    JobState,
    ParseError,
    SubmittedJob,
    check_element,
    check_ids,
    check_job_name,
    excerpt,
    output_lines,
    signal_name,
)
from hpclaunch.schedulers.base import QueuedJobs, Scheduler

if TYPE_CHECKING:
    from hpclaunch.sites.model import Resources

NAME = "slurm"
ARRAY_MIN_ELEMENTS = 1
# slurm.conf MaxArraySize default is 1001 (indices 0..1000); sites often raise it.
ARRAY_MAX_ELEMENTS_DEFAULT = 1001
# Largest MaxArraySize SLURM accepts; bounds range expansion of untrusted output.
ARRAY_MAX_ELEMENTS_LIMIT = 4_000_001
JOB_ID_ENV = "SLURM_JOB_ID"
ARRAY_JOB_ID_ENV = "SLURM_ARRAY_JOB_ID"
ARRAY_INDEX_ENV = "SLURM_ARRAY_TASK_ID"

# squeue -o fields, '|'-separated, free text (reason) last so a '|' inside it is harmless:
# %i job id (1234, 1234_7, 1234_[0-9%2]); %F array base job id; %K array index;
# %T long state; %r reason.
SQUEUE_FORMAT = "%i|%F|%K|%T|%r"
SACCT_FIELDS = "JobID,JobIDRaw,State,ExitCode,Reason"

# Long state names (squeue %T and sacct State) and compact codes (squeue %t).
STATE_MAP: dict[str, str] = {
    "BOOT_FAIL": "BOOT_FAIL",
    "CANCELLED": "CANCELLED",
    "COMPLETED": "COMPLETED",
    "CONFIGURING": "PENDING",  # allocated, nodes still booting: nothing runs yet
    "COMPLETING": "COMPLETING",
    "DEADLINE": "TIMEOUT",  # terminated on its --deadline: a time limit
    "FAILED": "FAILED",
    "NODE_FAIL": "NODE_FAIL",
    "OUT_OF_MEMORY": "OUT_OF_MEMORY",
    "PENDING": "PENDING",
    "PREEMPTED": "PREEMPTED",
    "RUNNING": "RUNNING",
    "RESV_DEL_HOLD": "PENDING",
    "REQUEUE_FED": "PENDING",
    "REQUEUE_HOLD": "PENDING",
    "REQUEUED": "PENDING",
    "RESIZING": "RUNNING",
    "REVOKED": "CANCELLED",  # federation sibling removed: it runs elsewhere, not here
    "SIGNALING": "RUNNING",
    "SPECIAL_EXIT": "FAILED",
    "STAGE_OUT": "COMPLETING",
    "STOPPED": "SUSPENDED",
    "SUSPENDED": "SUSPENDED",
    "TIMEOUT": "TIMEOUT",
}
SHORT_STATE_CODES: dict[str, str] = {
    "BF": "BOOT_FAIL",
    "CA": "CANCELLED",
    "CD": "COMPLETED",
    "CF": "CONFIGURING",
    "CG": "COMPLETING",
    "DL": "DEADLINE",
    "F": "FAILED",
    "NF": "NODE_FAIL",
    "OOM": "OUT_OF_MEMORY",
    "PD": "PENDING",
    "PR": "PREEMPTED",
    "R": "RUNNING",
    "RD": "RESV_DEL_HOLD",
    "RF": "REQUEUE_FED",
    "RH": "REQUEUE_HOLD",
    "RQ": "REQUEUED",
    "RS": "RESIZING",
    "RV": "REVOKED",
    "SI": "SIGNALING",
    "SE": "SPECIAL_EXIT",
    "SO": "STAGE_OUT",
    "ST": "STOPPED",
    "S": "SUSPENDED",
    "TO": "TIMEOUT",
}

_ID_ARG_RE = re.compile(r"^\d+(_\d+)?$")
# %i / sacct JobID: base, optional _index or _[ranges], optional +het offset, optional .step
_JOBID_RE = re.compile(
    r"^(?P<base>\d+)(?:_(?P<index>\d+)|_\[(?P<ranges>[^\]]*)\])?(?P<het>\+\d+)?"
    r"(?:\.(?P<step>[A-Za-z0-9_+-]+))?$"
)
_STATE_WORD_RE = re.compile(r"^[A-Z][A-Z_]*$")


# --- submit ------------------------------------------------------------------------


def submit_argv(script_path: str, *, extra: Sequence[str] = ()) -> list[str]:
    """``sbatch --parsable [extra...] SCRIPT``: prints ``jobid`` or ``jobid;cluster``."""
    if not script_path or not isinstance(script_path, str):
        raise UserError("no batch script path given to sbatch")
    return ["sbatch", "--parsable", *[str(e) for e in extra], script_path]


def parse_submit(stdout: str) -> SubmittedJob:
    """Parse ``sbatch --parsable`` output (``1234`` or ``1234;cluster``)."""
    for line in reversed(output_lines(stdout)):
        m = re.fullmatch(r"(\d+)(?:;([A-Za-z0-9_.-]+))?", line.strip())
        if m:
            return SubmittedJob(job_id=m.group(1), cluster=m.group(2))
    raise ParseError(
        f"sbatch did not print a job ID (expected '1234' or '1234;cluster'), got: "
        f"{excerpt(stdout)!r}"
    )


# --- status (squeue) -------------------------------------------------------------------


def status_argv(job_ids: Sequence[str]) -> list[str]:
    """One ``squeue`` call for many jobs, one line per array element, all states kept."""
    ids = check_ids(job_ids, _ID_ARG_RE, "SLURM")
    return ["squeue", "-h", "-r", "-t", "all", "-j", ",".join(ids), "-o", SQUEUE_FORMAT]


def parse_status(stdout: str) -> list[JobState]:
    """Parse ``squeue -h -o SQUEUE_FORMAT`` lines; pending ranges are expanded."""
    out: list[JobState] = []
    for line in output_lines(stdout):
        fields = line.split("|", 4)
        if len(fields) != 5:
            raise ParseError(
                f"squeue line has {len(fields)} fields, expected 5 ({SQUEUE_FORMAT}): "
                f"{excerpt(line)!r}"
            )
        jobid, _base, _index, raw_state, reason = (f.strip() for f in fields)
        state = normalise_state(raw_state, source="squeue")
        reason_text = None if reason in ("", "None", "(null)") else reason
        out.extend(_expand(jobid, state, raw_state, reason_text, None, "squeue"))
    return out


def no_such_jobs(stderr: str) -> bool:
    """True when squeue failed only because none of the IDs is known any more.

    squeue exits 1 with "Invalid job id specified" when every ID given has left
    the controller (after MinJobAge); with at least one known ID it prints that
    one and exits 0. Such jobs are looked up in sacct, or settled from the database.
    """
    return "invalid job id specified" in (stderr or "").lower()


# --- accounting (sacct) -------------------------------------------------------------


def accounting_argv(job_ids: Sequence[str]) -> list[str]:
    """One ``sacct`` call; steps are included so an OOM-killed batch step is seen."""
    ids = check_ids(job_ids, _ID_ARG_RE, "SLURM")
    return ["sacct", "-n", "-P", "-j", ",".join(ids), "-o", SACCT_FIELDS]


def parse_accounting(stdout: str) -> list[JobState]:
    """Parse ``sacct -n -P -o JobID,JobIDRaw,State,ExitCode,Reason``.

    Steps (``.batch``, ``.extern``, ``.0``) are folded into their job: the
    allocation's row decides, except that an OUT_OF_MEMORY batch or numbered
    step turns a FAILED job into OUT_OF_MEMORY.
    """
    jobs: dict[str, JobState] = {}
    order: list[str] = []
    step_oom: dict[str, str] = {}
    for line in output_lines(stdout):
        fields = line.split("|", 4)
        if len(fields) < 4:
            raise ParseError(
                f"sacct line has {len(fields)} fields, expected 5 ({SACCT_FIELDS}): "
                f"{excerpt(line)!r}"
            )
        jobid, _raw, state_text, exit_text = (f.strip() for f in fields[:4])
        reason = fields[4].strip() if len(fields) == 5 else ""
        m = _JOBID_RE.match(jobid)
        if not m:
            raise ParseError(f"sacct printed an unexpected job ID {excerpt(jobid)!r}")
        raw_state, by_uid = _split_cancelled_by(state_text)
        state = normalise_state(raw_state, source="sacct")
        exit_code, signum = _parse_exit_code(exit_text)
        key = jobid.split(".", 1)[0]
        if m.group("step"):
            if state == "OUT_OF_MEMORY" and m.group("step") != "extern":
                step_oom[key] = state_text
            continue
        why = _reason(state, reason, by_uid, exit_code, signum)
        for js in _expand(key, state, state_text, why, exit_code, "sacct"):
            if js.job_id not in jobs:
                order.append(js.job_id)
            jobs[js.job_id] = js
    for key, raw in step_oom.items():
        found = jobs.get(key)
        if found is not None and found.state == "FAILED":
            jobs[key] = JobState(
                found.job_id,
                found.array_job_id,
                found.array_index,
                "OUT_OF_MEMORY",
                "a job step ran out of memory",
                found.exit_code,
                f"{found.raw_state} ({raw} step)",
            )
    return [jobs[k] for k in order]


def accounting_unavailable(stderr: str) -> bool:
    """True when sacct's error says this cluster keeps no accounting records."""
    text = (stderr or "").lower()
    return "accounting storage is disabled" in text or "accounting_storage/none" in text


# --- cancel ------------------------------------------------------------------------


def cancel_argv(job_ids: Sequence[str], element: int | None = None) -> list[str]:
    """``scancel`` the jobs, or only array element ``element`` of each."""
    ids = check_ids(job_ids, _ID_ARG_RE, "SLURM")
    element = check_element(element)
    if element is not None:
        if any("_" in i for i in ids):
            raise UserError("pass the array's base job ID (e.g. 1234) when cancelling one element")
        ids = [f"{i}_{element}" for i in ids]
    return ["scancel", *ids]


# --- find a job by its unique name ----------------------------------------------------


def find_by_name_argv(job_name: str) -> list[str]:
    """``squeue`` for jobs with this name in any state the controller still remembers."""
    return ["squeue", "-h", "-t", "all", "-n", check_job_name(job_name), "-o", "%F"]


def parse_find_by_name(stdout: str) -> list[str]:
    """The distinct base job IDs printed by :func:`find_by_name_argv`, in order."""
    seen: list[str] = []
    for line in output_lines(stdout):
        value = line.strip()
        if not value.isascii() or not value.isdigit():
            raise ParseError(f"squeue printed an unexpected job ID {excerpt(value)!r}")
        if value not in seen:
            seen.append(value)
    return seen


# --- jobs counted against a submit limit ------------------------------------------------


def queued_jobs_argv(scope: str, account: str | None) -> list[str] | None:
    """``squeue -h -r -o %F`` for the user's jobs (``--me``) or the account's (``-A``).

    ``-r`` prints one line per array element, pending ones included, so both
    ways a centre counts are known from one call: lines (elements) and distinct
    array job IDs (jobs). squeue lists jobs not yet ended (pending, running,
    completing, suspended), which is what MaxSubmitJobs counts.
    """
    if scope == "project":
        if not account:
            return None
        return ["squeue", "-h", "-r", "-A", account, "-o", "%F"]
    return ["squeue", "-h", "-r", "--me", "-o", "%F"]


def parse_queued_jobs(stdout: str) -> QueuedJobs:
    """Lines of base job IDs: elements are lines, jobs distinct IDs."""
    ids = [line.strip() for line in output_lines(stdout) if line.strip()]
    for value in ids:
        if not value.isascii() or not value.isdigit():
            raise ParseError(f"squeue printed an unexpected job ID {excerpt(value)!r}")
    return QueuedJobs(jobs=len(set(ids)), elements=len(ids))


# --- state helpers ---------------------------------------------------------------------


def normalise_state(raw: str, *, source: str = "squeue") -> str:
    """Map a SLURM state (long name or compact code) to a normalised state.

    An unknown but well-formed state word (a newer SLURM) maps to UNKNOWN;
    anything else is garbage and raises :class:`ParseError`.
    """
    word = raw.strip().split(" ", 1)[0].rstrip("+")
    word = SHORT_STATE_CODES.get(word, word)
    if word in STATE_MAP:
        return STATE_MAP[word]
    if _STATE_WORD_RE.match(word):
        return "UNKNOWN"
    raise ParseError(f"{source} printed an unexpected job state {excerpt(raw)!r}")


def _split_cancelled_by(text: str) -> tuple[str, str | None]:
    m = re.fullmatch(r"\s*CANCELLED\s+by\s+(\S+)\s*", text)
    if m:
        return "CANCELLED", m.group(1)
    return text.strip(), None


def _parse_exit_code(text: str) -> tuple[int | None, int | None]:
    text = text.strip()
    if not text:
        return None, None
    m = re.fullmatch(r"(\d+):(\d+)", text)
    if not m:
        raise ParseError(f"sacct printed an unexpected ExitCode {excerpt(text)!r} (want N:S)")
    return int(m.group(1)), int(m.group(2))


def _reason(
    state: str, reason: str, by_uid: str | None, code: int | None, sig: int | None
) -> str | None:
    if by_uid is not None:
        return f"cancelled by uid {by_uid}"
    if state == "FAILED" and sig:
        return f"killed by {signal_name(sig)}"
    if state == "FAILED" and code:
        return f"exit code {code}"
    if reason and reason not in ("None", "(null)"):
        return reason
    return None


def _expand(
    jobid: str, state: str, raw: str, reason: str | None, exit_code: int | None, source: str
) -> list[JobState]:
    m = _JOBID_RE.match(jobid)
    if not m or m.group("step"):
        raise ParseError(f"{source} printed an unexpected job ID {excerpt(jobid)!r}")
    base = m.group("base")
    if m.group("index") is not None:
        index = int(m.group("index"))
        return [JobState(f"{base}_{index}", base, index, state, reason, exit_code, raw)]
    if m.group("ranges") is not None:
        return [
            JobState(f"{base}_{i}", base, i, state, reason, exit_code, raw)
            for i in expand_ranges(m.group("ranges"))
        ]
    return [JobState(jobid, None, None, state, reason, exit_code, raw)]


def expand_ranges(spec: str) -> list[int]:
    """Indices in a SLURM array spec such as ``0-99%4`` or ``1,3-7:2``."""
    spec = spec.split("%", 1)[0].strip()
    if not spec:
        raise ParseError("empty job array range in scheduler output")
    indices: list[int] = []
    for part in spec.split(","):
        m = re.fullmatch(r"(\d+)(?:-(\d+)(?::(\d+))?)?", part.strip())
        if not m:
            raise ParseError(f"unexpected job array range {excerpt(part)!r}")
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) is not None else lo
        step = int(m.group(3)) if m.group(3) is not None else 1
        if hi < lo or step < 1:
            raise ParseError(f"unexpected job array range {excerpt(part)!r}")
        if len(indices) + (hi - lo) // step + 1 > ARRAY_MAX_ELEMENTS_LIMIT:
            raise ParseError(f"job array range {excerpt(spec)!r} is larger than SLURM allows")
        indices.extend(range(lo, hi + 1, step))
    return indices


class Slurm(Scheduler):
    """SLURM: ``--array=0-N%M`` arrays; element logs ``NAME_<array job>_<index>.out``."""

    name = "slurm"
    template = "slurm.sh.j2"
    ignored_resources = ("filesystems", "place")
    array_min_elements = ARRAY_MIN_ELEMENTS
    array_max_elements_default = ARRAY_MAX_ELEMENTS_DEFAULT

    def format_walltime(self, resources: Resources) -> str:
        return resources.walltime_slurm

    submit_argv = staticmethod(submit_argv)
    parse_submit = staticmethod(parse_submit)
    status_argv = staticmethod(status_argv)
    parse_status = staticmethod(parse_status)
    accounting_argv = staticmethod(accounting_argv)
    parse_accounting = staticmethod(parse_accounting)
    cancel_argv = staticmethod(cancel_argv)
    find_by_name_argv = staticmethod(find_by_name_argv)
    parse_find_by_name = staticmethod(parse_find_by_name)
    queued_jobs_argv = staticmethod(queued_jobs_argv)

    def queue_exists_argv(self, partition: str) -> list[str] | None:
        """``sinfo -h -p PART -o %P``: empty output when there is no such partition."""
        return ["sinfo", "-h", "-p", partition, "-o", "%P"]

    parse_queued_jobs = staticmethod(parse_queued_jobs)

    def no_such_jobs(self, stderr: str) -> bool:
        return no_such_jobs(stderr)

    def log_paths(
        self, log_dir: str, job_name: str, job_id: str, index: int | None
    ) -> tuple[str, str]:
        stem = f"{job_name}_{job_id}_{index}" if index is not None else f"{job_name}_{job_id}"
        return self._log_pair(log_dir, stem)
