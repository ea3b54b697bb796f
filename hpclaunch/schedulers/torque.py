"""Torque: qsub / qstat -f / qdel / qselect.

Pure functions, bound together by :class:`Torque` (a :class:`~hpclaunch.schedulers.pbs.Pbs`
with its own states, status command and log names) at the end.
Torque has no JSON output: ``qstat -f -1`` prints one
``key = value`` per line (``-1`` stops folding), which is what is parsed;
``qstat -x`` (XML) is parsed too for sites that wrap qstat. Facts from the
Adaptive Computing Torque Administrator Guide: "Job Exit Status" (negative
JOB_EXEC codes, ``qstat -f`` sample), "Multiple Job Submission" (``qsub -t``
prints ``1098[].hostname``, elements ``1098[0].hostname``), and the qstat
page (states C E H Q R T W S).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from typing import Any

from hpclaunch.errors import UserError
from hpclaunch.schedulers import (
    JobState,
    ParseError,
    SubmittedJob,
    check_element,
    check_ids,
    check_job_name,
    excerpt,
)
from hpclaunch.schedulers._pbs_common import (
    ID_ARG_RE,
    drop_expanded_parents,
    element_id,
    exit_status_of,
    make_state,
    parse_full_text,
    parse_job_id_lines,
    parse_qsub,
    positive_exit_verdict,
)
from hpclaunch.schedulers.pbs import Pbs

NAME = "torque"
ARRAY_MIN_ELEMENTS = 1
# Torque's max_job_array_size is unset (no limit) unless the site sets it.
ARRAY_MAX_ELEMENTS_DEFAULT: int | None = None
JOB_ID_ENV = "PBS_JOBID"
ARRAY_JOB_ID_ENV = "PBS_JOBID"
ARRAY_INDEX_ENV = "PBS_ARRAYID"

STATE_MAP: dict[str, str] = {
    "C": "COMPLETED",  # completed after having run: refined by exit_status
    "E": "COMPLETING",
    "H": "PENDING",
    "Q": "PENDING",
    "R": "RUNNING",
    "T": "PENDING",
    "W": "PENDING",
    "S": "SUSPENDED",
}
_PENDING_REASONS = {"H": "held", "W": "waiting for its execution time", "T": "being moved"}

# Negative exit_status set by pbs_mom (Admin Guide, "Job Exit Status").
EXEC_CODES: dict[int, tuple[str, str]] = {
    -1: ("JOB_EXEC_FAIL1", "FAILED"),
    -2: ("JOB_EXEC_FAIL2", "FAILED"),
    -3: ("JOB_EXEC_RETRY", "FAILED"),
    -4: ("JOB_EXEC_INITABT", "NODE_FAIL"),
    -5: ("JOB_EXEC_INITRST", "NODE_FAIL"),
    -6: ("JOB_EXEC_INITRMG", "NODE_FAIL"),
    -7: ("JOB_EXEC_BADRESRT", "FAILED"),
    -8: ("JOB_EXEC_CMDFAIL", "FAILED"),
    -9: ("JOB_EXEC_STDOUTFAIL", "FAILED"),
    -10: ("JOB_EXEC_OVERLIMIT_MEM", "OUT_OF_MEMORY"),
    -11: ("JOB_EXEC_OVERLIMIT_WT", "TIMEOUT"),
    -12: ("JOB_EXEC_OVERLIMIT_CPUT", "TIMEOUT"),
    -13: ("JOB_EXEC_RETRY_CGROUP", "BOOT_FAIL"),
    -14: ("JOB_EXEC_RETRY_PROLOGUE", "BOOT_FAIL"),
}
_EXEC_REASONS = {
    -8: "exec() of the job script failed",
    -9: "could not create/open the stdout/stderr files",
    -10: "job exceeded a memory limit",
    -11: "job exceeded its walltime limit",
    -12: "job exceeded its CPU time limit",
    -13: "could not create the job's cgroups",
    -14: "the prologue failed",
}


def submit_argv(script_path: str, *, extra: Sequence[str] = ()) -> list[str]:
    """``qsub [extra...] SCRIPT``: prints ``1234.server`` or ``1234[].server``."""
    if not script_path or not isinstance(script_path, str):
        raise UserError("no batch script path given to qsub")
    return ["qsub", *[str(e) for e in extra], script_path]


def parse_submit(stdout: str) -> SubmittedJob:
    return parse_qsub(stdout, "qsub")


def status_argv(job_ids: Sequence[str]) -> list[str]:
    """One ``qstat -f -1 -t`` for many jobs: unfolded attributes, array elements expanded.

    Completed jobs stay visible as state C for the server's keep_completed seconds.
    """
    ids = check_ids(job_ids, ID_ARG_RE, "Torque")
    return ["qstat", "-f", "-1", "-t", *ids]


def parse_status(stdout: str) -> list[JobState]:
    """Parse ``qstat -f`` text (folded or not)."""
    out = [job_state(key, attrs, "qstat -f") for key, attrs in parse_full_text(stdout)]
    return drop_expanded_parents(out)


def parse_status_xml(stdout: str) -> list[JobState]:
    """Parse ``qstat -x`` XML (``<Data><Job><Job_Id>...``); empty output means no jobs."""
    if isinstance(stdout, bytes):
        stdout = stdout.decode("utf-8", "replace")
    if not isinstance(stdout, str):
        raise ParseError(f"qstat -x output must be text, got {type(stdout).__name__}")
    if not stdout.strip():
        return []
    if "<!DOCTYPE" in stdout or "<!ENTITY" in stdout:
        raise ParseError("qstat -x printed XML with a DOCTYPE, which qstat never does")
    try:
        root = ET.fromstring(stdout.strip())
    except (ET.ParseError, ValueError) as exc:
        raise ParseError(
            f"qstat -x printed something that is not XML: {excerpt(stdout)!r}"
        ) from exc
    out = []
    for job in root.iter("Job"):
        try:
            attrs = _xml_attrs(job)
        except RecursionError:
            raise ParseError("qstat -x printed XML nested deeper than qstat ever does") from None
        key = attrs.get("Job_Id")
        if not isinstance(key, str) or not key:
            raise ParseError("qstat -x printed a <Job> without <Job_Id>")
        out.append(job_state(key, attrs, "qstat -x"))
    return drop_expanded_parents(out)


def _xml_attrs(elem: ET.Element) -> dict[str, Any]:
    attrs: dict[str, Any] = {}
    for child in elem:
        if len(child):
            attrs[child.tag] = _xml_attrs(child)
        else:
            attrs[child.tag] = (child.text or "").strip()
    return attrs


def job_state(key: str, attrs: Mapping[str, Any], source: str) -> JobState:
    raw_letter = attrs.get("job_state")
    if not isinstance(raw_letter, str) or raw_letter.strip() not in STATE_MAP:
        raise ParseError(
            f"{source}: job {excerpt(key)!r} has an unexpected job_state "
            f"{excerpt(str(raw_letter))!r}"
        )
    letter = raw_letter.strip()
    status = exit_status_of(attrs, source)
    if letter == "C":
        state, reason = exit_verdict(status, attrs)
    else:
        state = STATE_MAP[letter]
        comment = attrs.get("comment")
        comment = comment.strip() if isinstance(comment, str) and comment.strip() else None
        reason = comment or _PENDING_REASONS.get(letter)
    return make_state(key, state, letter, reason, status, source)


def exit_verdict(status: int | None, attrs: Mapping[str, Any]) -> tuple[str, str | None]:
    """State and reason of a completed Torque job from exit_status.

    Negative values are pbs_mom's JOB_EXEC codes (-10 memory, -11 walltime,
    -12 CPU time limits); positive values above 255 cannot come from the
    script's exit() and mean the MoM killed it with signal (X % 256), the
    walltime/memory limit when resources_used shows it reached.
    """
    if status is None:
        return "UNKNOWN", "completed; no exit status recorded"
    if status < 0:
        name, state = EXEC_CODES.get(status, (f"exit status {status}", "FAILED"))
        detail = _EXEC_REASONS.get(status, "the job could not be executed")
        return state, f"{name}: {detail}"
    return positive_exit_verdict(status, attrs)


def accounting_argv(job_ids: Sequence[str]) -> list[str]:
    """Torque has no accounting query; completed jobs show in qstat for keep_completed."""
    return status_argv(job_ids)


def parse_accounting(stdout: str) -> list[JobState]:
    return parse_status(stdout)


def cancel_argv(job_ids: Sequence[str], element: int | None = None) -> list[str]:
    """``qdel`` the jobs, or only element ``element`` of each array (``1234[7].server``)."""
    ids = check_ids(job_ids, ID_ARG_RE, "Torque")
    element = check_element(element)
    if element is not None:
        try:
            ids = [element_id(i, element) for i in ids]
        except ParseError as exc:
            raise UserError(str(exc)) from None
    return ["qdel", *ids]


def find_by_name_argv(job_name: str) -> list[str]:
    """``qselect -N NAME`` (Torque's qselect lists completed jobs still kept)."""
    return ["qselect", "-N", check_job_name(job_name)]


def parse_find_by_name(stdout: str) -> list[str]:
    return parse_job_id_lines(stdout, "qselect")


class Torque(Pbs):
    """Torque: PBS's qsub/qdel and job IDs, ``-t`` arrays of any size, ``qstat -f -1`` text.

    Torque appends ``-<index>`` to array elements' output file names.
    """

    name = "torque"
    template = "torque.sh.j2"
    ignored_resources = ("qos", "constraint", "filesystems", "place")
    array_min_elements = ARRAY_MIN_ELEMENTS
    array_max_elements_default = ARRAY_MAX_ELEMENTS_DEFAULT

    status_argv = staticmethod(status_argv)
    parse_status = staticmethod(parse_status)
    accounting_argv = staticmethod(accounting_argv)
    parse_accounting = staticmethod(parse_accounting)
    cancel_argv = staticmethod(cancel_argv)
    find_by_name_argv = staticmethod(find_by_name_argv)
    parse_find_by_name = staticmethod(parse_find_by_name)

    def log_paths(
        self, log_dir: str, job_name: str, job_id: str, index: int | None
    ) -> tuple[str, str]:
        out, err = self._log_pair(log_dir, job_name)
        suffix = f"-{index}" if index is not None else ""
        return out + suffix, err + suffix
