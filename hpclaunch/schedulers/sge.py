"""Grid Engine (Son of Grid Engine 8.1, Sun/Oracle GE 6.2): qsub / qstat -xml / qacct / qdel.

Pure functions, bound together by the :class:`Sge` scheduler at the end. Facts
from the Son of Grid Engine 8.1.9 manual pages as shipped by Debian
(``gridengine-client 8.1.9+dfsg-10``): qsub(1) (``-terse`` prints only the job
ID; ``-t n-m`` task arrays whose ``SGE_TASK_ID`` starts at 1; ``-tc`` limits
running tasks; ``$TASK_ID`` in ``-o``/``-e`` paths), qstat(1) and
sge_status(5) (state letters), the qstat XML schema
``util/resources/schemas/qstat/qstat.xsd`` (``job_list`` elements with
``JB_job_number``, ``JB_name``, ``state`` and ``tasks``), qacct(1),
accounting(5) and sge_status(5) (the ``failed`` codes), sge_conf(5)
(``max_aj_tasks`` defaults to 75000).

Task IDs count from 1; hpclaunch's element indices count from 0, so task
``t`` is element ``t - 1`` everywhere this module talks to the rest.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence

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
from hpclaunch.schedulers.base import Scheduler
from hpclaunch.states import JobStateName as S

NAME = "sge"
ARRAY_MIN_ELEMENTS = 1
# sge_conf(5): max_aj_tasks, the most tasks one array job may have, defaults to 75000.
ARRAY_MAX_ELEMENTS_DEFAULT = 75000
# Bound on the tasks expanded from one range in untrusted output.
ARRAY_EXPAND_LIMIT = 1_000_000
FIRST_TASK_ID = 1

_ID_ARG_RE = re.compile(r"^[1-9]\d{0,9}$")
_STATE_RE = re.compile(r"^[A-Za-z]{1,8}$")
# qsub -terse: "123" for a job, "123.1-20:1" for an array job.
_TERSE_RE = re.compile(r"^(?P<job>[1-9]\d{0,9})(?:\.(?P<tasks>\d+-\d+:\d+))?$")


# --- submit ----------------------------------------------------------------------------


def submit_argv(script_path: str, *, extra: Sequence[str] = ()) -> list[str]:
    """``qsub -terse [extra...] SCRIPT``: prints ``123`` (``123.1-20:1`` for an array)."""
    if not script_path or not isinstance(script_path, str):
        raise UserError("no batch script path given to qsub")
    return ["qsub", "-terse", *[str(e) for e in extra], script_path]


def parse_submit(stdout: str) -> SubmittedJob:
    """The job number ``qsub -terse`` printed; ``array`` when it named a task range."""
    for line in reversed(output_lines(stdout)):
        m = _TERSE_RE.fullmatch(line.strip())
        if m:
            return SubmittedJob(job_id=m.group("job"), array=m.group("tasks") is not None)
    raise ParseError(
        f"qsub -terse did not print a job ID (expected '123' or '123.1-20:1'), got: "
        f"{excerpt(stdout if isinstance(stdout, str) else repr(stdout))!r}"
    )


# --- status (qstat -xml) ---------------------------------------------------------------


def status_argv(job_ids: Sequence[str]) -> list[str]:
    """One ``qstat -xml`` for all of the user's jobs (qstat cannot select by job number).

    Finished jobs are not listed; they are looked up with :func:`accounting_argv`.
    """
    check_ids(job_ids, _ID_ARG_RE, "Grid Engine")
    return ["qstat", "-xml"]


def parse_status(stdout: str) -> list[JobState]:
    """Parse ``qstat -xml``: one JobState per job, or per task of an array job.

    Pending tasks come as one ``job_list`` with a range (``2-20:1``) and are
    expanded; running tasks come one per ``job_list``. Finished (``z``)
    entries are left to accounting, which knows how they ended.
    """
    root = _xml(stdout, "qstat -xml")
    if root is None:
        return []
    if _local(root.tag) != "job_info":
        raise ParseError(f"qstat -xml printed <{excerpt(_local(root.tag))}>, not <job_info>")
    out: list[JobState] = []
    for job in root.iter():
        if _local(job.tag) != "job_list":
            continue
        fields = {_local(child.tag): (child.text or "").strip() for child in job}
        number = fields.get("JB_job_number", "")
        if not _ID_ARG_RE.fullmatch(number):
            raise ParseError(f"qstat -xml printed a job number {excerpt(number)!r}")
        letters = fields.get("state", "")
        if not _STATE_RE.fullmatch(letters):
            raise ParseError(f"qstat -xml: job {number} has an unexpected state {letters!r}")
        if "z" in letters:
            continue
        state, reason = state_of(letters)
        tasks = fields.get("tasks", "")
        if not tasks:
            out.append(JobState(number, None, None, state, reason, None, letters))
            continue
        for task in expand_tasks(tasks):
            out.append(_task_state(number, task, state, reason, None, letters))
    return out


def state_of(letters: str) -> tuple[str, str | None]:
    """A qstat state (``qw``, ``hqw``, ``r``, ``dr``, ``Eqw``, ``s``, ...) and why.

    Mapped as sge_status(5) maps them to DRMAA: ``E`` (a pending job that
    cannot start) is FAILED, ``d`` (qdel in progress) keeps the state it
    qualifies so that a cancel waits until the job is really gone.
    """
    deleting = "d" in letters
    rest = letters.replace("d", "")
    if "E" in rest:
        return S.FAILED, "error state: the job cannot start (qstat -j shows why)"
    if any(c in rest for c in "sST"):
        state, reason = S.SUSPENDED, "suspended"
    elif "r" in rest or "t" in rest:
        state, reason = S.RUNNING, None
    elif "h" in rest:
        state, reason = S.PENDING, "held"
    elif "q" in rest or "w" in rest:
        state, reason = S.PENDING, None
    else:
        state, reason = S.UNKNOWN, f"qstat state {letters}"
    return state, ("being deleted (qdel)" if deleting else reason)


def expand_tasks(spec: str) -> list[int]:
    """Task IDs in a qstat ``tasks`` value: ``7``, ``2-20:1``, ``1-9:2,12``."""
    ids: list[int] = []
    for part in spec.split(","):
        m = re.fullmatch(r"\s*(\d+)(?:-(\d+)(?::(\d+))?)?\s*", part)
        if not m:
            raise ParseError(f"qstat printed an unexpected task range {excerpt(part)!r}")
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) is not None else lo
        step = int(m.group(3)) if m.group(3) is not None else 1
        if lo < FIRST_TASK_ID or hi < lo or step < 1:
            raise ParseError(f"qstat printed an unexpected task range {excerpt(part)!r}")
        if len(ids) + (hi - lo) // step + 1 > ARRAY_EXPAND_LIMIT:
            raise ParseError(f"task range {excerpt(spec)!r} is larger than an array can be")
        ids.extend(range(lo, hi + 1, step))
    return ids


# --- accounting (qacct -j) ---------------------------------------------------------------

# sge_status(5) "failed" codes: what qacct's number means for the element.
_FAILED: dict[int, str] = {
    **dict.fromkeys((1, 3, 4, 6, 7, 8, 9, 10, 11), S.FAILED),  # could not start the job
    **dict.fromkeys((26, 27, 28, 29, 31, 32, 33, 34, 35, 36, 38), S.FAILED),
    **dict.fromkeys((18, 19, 20, 21), S.NODE_FAIL),  # shepherd or host died
    **dict.fromkeys((24, 25), S.PREEMPTED),  # ran; migrated or rescheduled
    17: S.CANCELLED,  # killed by signal (possibly qdel)
    37: S.TIMEOUT,  # qmaster enforced h_rt, h_cpu or h_vmem
}
# Codes after which the job script did run and exit_status is its own (sge_status(5) "OK").
_RAN = frozenset({0, 12, 13, 14, 15, 16, 30})


def accounting_argv(job_ids: Sequence[str]) -> list[str]:
    """``qacct -j`` for each job, in one command (qacct takes one job at a time).

    Jobs without a record (not finished yet, or no accounting) print nothing.
    """
    ids = check_ids(job_ids, _ID_ARG_RE, "Grid Engine")
    loop = 'for j in "$@"; do qacct -j "$j" 2>/dev/null; done; exit 0'
    return ["sh", "-c", loop, "qacct", *ids]


def parse_accounting(stdout: str) -> list[JobState]:
    """Parse ``qacct -j`` records (``key value`` lines between ``=====`` lines).

    A job (or task) that was started more than once has several records; the
    last one counts.
    """
    jobs: dict[tuple[str, int | None], JobState] = {}
    for record in _records(stdout):
        number = record.get("jobnumber", "")
        if not _ID_ARG_RE.fullmatch(number):
            raise ParseError(f"qacct printed a job number {excerpt(number)!r}")
        task_text = record.get("taskid", "undefined")
        if task_text in ("undefined", "0", ""):
            task = None
        elif task_text.isascii() and task_text.isdigit() and int(task_text) >= FIRST_TASK_ID:
            task = int(task_text)
        else:
            raise ParseError(f"qacct printed a task ID {excerpt(task_text)!r}")
        state, reason, code = verdict(record)
        raw = f"failed {record.get('failed', '?')}, exit_status {record.get('exit_status', '?')}"
        if task is None:
            js = JobState(number, None, None, state, reason, code, raw)
        else:
            js = _task_state(number, task, state, reason, code, raw)
        jobs.pop((number, task), None)  # keep the newest record last, in order
        jobs[(number, task)] = js
    return list(jobs.values())


def verdict(record: dict[str, str]) -> tuple[str, str | None, int | None]:
    """State, reason and exit code of one finished job from its ``failed`` and ``exit_status``."""
    failed_text = record.get("failed", "")
    m = re.fullmatch(r"(\d{1,4})\s*(?::\s*(.*))?", failed_text)
    if not m:
        raise ParseError(f"qacct printed failed {excerpt(failed_text)!r}, expected 'N : why'")
    failed, why = int(m.group(1)), (m.group(2) or "").strip()
    status_text = record.get("exit_status", "")
    sm = re.fullmatch(r"(-?\d{1,6})(?:\s+\(.*\))?", status_text)  # "137   (Killed)"
    if not sm:
        raise ParseError(f"qacct printed exit_status {excerpt(status_text)!r}")
    status = int(sm.group(1))
    if failed in _RAN:
        if status == 0:
            return S.COMPLETED, (f"failed {failed}: {why}" if failed else None), 0
        if 128 < status < 160:
            return S.FAILED, f"killed by {signal_name(status - 128)}", status
        return S.FAILED, f"exit code {status}", status
    if failed == 100:  # ran, then killed by a signal: qdel or a hard limit
        return _killed(record, status)
    state = _FAILED.get(failed, S.FAILED)
    if failed == 37 and _memory_reached(record):
        state = S.OUT_OF_MEMORY
    return state, f"failed {failed}: {why or 'see sge_status(5)'}", status


def _killed(record: dict[str, str], status: int) -> tuple[str, str | None, int | None]:
    sig = status - 128 if 128 < status < 160 else None
    limits = _limits(record)
    wall = _seconds(record.get("ru_wallclock"))
    h_rt = limits.get("h_rt")
    if h_rt is not None and wall is not None and wall >= _hms(h_rt):
        return S.TIMEOUT, f"walltime {wall}s reached h_rt={h_rt}", status
    if _memory_reached(record):
        return S.OUT_OF_MEMORY, f"maxvmem reached h_vmem={limits.get('h_vmem')}", status
    if sig == 10:  # SIGUSR1: what s_rt sends at the soft walltime limit
        return S.TIMEOUT, "killed by SIGUSR1 at the soft walltime limit (s_rt)", status
    name = signal_name(sig) if sig else f"exit status {status}"
    deleted = record.get("deleted_by", "NONE")
    if deleted not in ("NONE", ""):
        return S.CANCELLED, f"deleted by {deleted}", status
    if sig in (9, 15):
        return S.CANCELLED, f"killed by the batch system with {name} (qdel or a limit)", status
    return S.FAILED, f"killed by {name}", status


def _memory_reached(record: dict[str, str]) -> bool:
    want = _bytes(_limits(record).get("h_vmem"))
    used = _bytes(record.get("maxvmem"))
    return want is not None and used is not None and used >= want


def _limits(record: dict[str, str]) -> dict[str, str]:
    """Hard requests from qacct's ``category`` (``-l h_rt=3600,h_vmem=2G -pe smp 4``)."""
    out: dict[str, str] = {}
    for m in re.finditer(r"(?:^|\s)-l\s+(\S+)", record.get("category", "")):
        for item in m.group(1).split(","):
            key, _, value = item.partition("=")
            if value:
                out[key] = value
    return out


def _hms(text: str) -> float:
    """``h_rt`` as seconds: ``3600`` or ``1:00:00``."""
    parts = text.split(":")
    try:
        numbers = [float(p) for p in parts]
    except ValueError:
        return float("inf")
    total = 0.0
    for n in numbers:
        total = total * 60 + n
    return total


def _seconds(text: str | None) -> float | None:
    """``ru_wallclock``: ``12``, ``12s`` or ``12.000s``."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)s?\s*", text or "")
    return float(m.group(1)) if m else None


_UNITS = {"": 1, "B": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def _bytes(text: str | None) -> float | None:
    """``maxvmem`` (``1.953G``, ``512.000M``, ``0.000B``) or ``h_vmem`` (``2G``) in bytes."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)B?\s*", (text or "").upper())
    return float(m.group(1)) * _UNITS[m.group(2)] if m else None


# What qacct prints instead of records when the accounting file does not exist yet.
_NO_ACCOUNTING = "no jobs running since startup"


def _records(stdout: str) -> list[dict[str, str]]:
    records: list[dict[str, str]] = []
    current: dict[str, str] | None = None
    for line in output_lines(stdout):
        if current is None and line.strip() == _NO_ACCOUNTING:
            continue
        if re.fullmatch(r"\s*={5,}\s*", line):
            current = {}
            records.append(current)
            continue
        m = re.fullmatch(r"(\w+)\s+(.*?)\s*", line)
        if m is None and current is not None and re.fullmatch(r"\w+\s*", line):
            m = re.fullmatch(r"(\w+)()\s*", line)  # a key with an empty value
        if m is None or current is None:
            raise ParseError(f"qacct printed an unexpected line {excerpt(line)!r}")
        current[m.group(1)] = m.group(2)
    return records


# --- cancel and find ---------------------------------------------------------------------


def cancel_argv(job_ids: Sequence[str], element: int | None = None) -> list[str]:
    """``qdel`` the jobs, or only element ``element`` (task ``element + 1``) of one job."""
    ids = check_ids(job_ids, _ID_ARG_RE, "Grid Engine")
    element = check_element(element)
    if element is None:
        return ["qdel", *ids]
    if len(ids) != 1:
        raise UserError("cancel one element of one Grid Engine job at a time")
    return ["qdel", ids[0], "-t", str(element + FIRST_TASK_ID)]


def find_by_name_argv(job_name: str) -> list[str]:
    """``qstat -xml -j NAME``: the jobs with this name that the qmaster still holds."""
    return ["qstat", "-xml", "-j", check_job_name(job_name)]


def parse_find_by_name(stdout: str) -> list[str]:
    """The distinct job numbers in ``qstat -xml -j NAME`` output, in order.

    Jobs are ``<detailed_job_info><djob_info><element><JB_job_number>``; for a
    name no job has, qstat prints ``<unknown_jobs>`` instead, which gives ``[]``.
    """
    root = _xml(stdout, "qstat -xml -j")
    if root is None or _local(root.tag) == "unknown_jobs":
        return []
    if _local(root.tag) != "detailed_job_info":
        raise ParseError(f"qstat -xml -j printed <{excerpt(_local(root.tag))}>")
    seen: list[str] = []
    numbers = [
        number
        for info in root
        if _local(info.tag) == "djob_info"
        for element in info
        for number in element
        if _local(number.tag) == "JB_job_number"
    ]
    for elem in numbers:
        value = (elem.text or "").strip()
        if not _ID_ARG_RE.fullmatch(value):
            raise ParseError(f"qstat -xml -j printed a job number {excerpt(value)!r}")
        if value not in seen:
            seen.append(value)
    return seen


def no_such_job(stderr: str) -> bool:
    """qdel's and qstat's words for a job number the qmaster does not know (any more).

    qdel prints ``denied: job "999" does not exist`` (on stdout) and exits 1.
    """
    text = (stderr or "").lower()
    return "does not exist" in text or "do not exist" in text or "not found" in text


# --- helpers -----------------------------------------------------------------------------


def _task_state(
    number: str, task: int, state: str, reason: str | None, code: int | None, raw: str
) -> JobState:
    return JobState(f"{number}.{task}", number, task - FIRST_TASK_ID, state, reason, code, raw)


def _local(tag: object) -> str:
    """An element's name without its ``{namespace}``."""
    return str(tag).rsplit("}", 1)[-1]


def _xml(stdout: str | bytes, source: str) -> ET.Element | None:
    """Parse scheduler XML; None for empty output; ParseError for anything else odd."""
    if isinstance(stdout, bytes):
        stdout = stdout.decode("utf-8", "replace")
    if not isinstance(stdout, str):
        raise ParseError(f"{source} output must be text, got {type(stdout).__name__}")
    text = stdout.strip()
    if not text:
        return None
    if "<!DOCTYPE" in text or "<!ENTITY" in text:
        raise ParseError(f"{source} printed XML with a DOCTYPE, which qstat never does")
    try:
        return ET.fromstring(text)
    except (ET.ParseError, ValueError, LookupError, RecursionError) as exc:
        raise ParseError(f"{source} printed something that is not XML: {excerpt(text)!r}") from exc


class Sge(Scheduler):
    """Grid Engine: ``-t 1-N`` task arrays (``-tc`` throttle), ``qstat -xml``, ``qacct``.

    Element logs are ``NAME.<task ID>.out`` (``$TASK_ID`` in ``-o``), task ID =
    element index + 1.
    """

    name = NAME
    template = "sge.sh.j2"
    # No Grid Engine directive for these (GPUs are the site-defined complex ``gpu``).
    ignored_resources = ("qos", "constraint", "filesystems", "place")
    array_min_elements = ARRAY_MIN_ELEMENTS
    array_max_elements_default = ARRAY_MAX_ELEMENTS_DEFAULT
    array_first_index = FIRST_TASK_ID

    def array_throttle(self, max_concurrent: int | None) -> str | None:
        """``-tc N`` is a directive of its own."""
        return str(max_concurrent) if max_concurrent else None

    submit_argv = staticmethod(submit_argv)
    parse_submit = staticmethod(parse_submit)
    status_argv = staticmethod(status_argv)
    parse_status = staticmethod(parse_status)
    accounting_argv = staticmethod(accounting_argv)
    parse_accounting = staticmethod(parse_accounting)
    cancel_argv = staticmethod(cancel_argv)
    find_by_name_argv = staticmethod(find_by_name_argv)
    parse_find_by_name = staticmethod(parse_find_by_name)

    def already_gone(self, output: str) -> bool:
        return no_such_job(output) or super().already_gone(output)

    def log_paths(
        self, log_dir: str, job_name: str, job_id: str, index: int | None
    ) -> tuple[str, str]:
        stem = job_name if index is None else f"{job_name}.{index + FIRST_TASK_ID}"
        return self._log_pair(log_dir, stem)
