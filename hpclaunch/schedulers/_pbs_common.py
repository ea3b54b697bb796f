"""What PBS Professional/OpenPBS and Torque share: job IDs, ``qstat -f`` text, limits.

Both descend from OpenPBS 2.3, so job IDs (``1234.server``, ``1234[].server``,
``1234[7].server``), the ``qstat -f`` attribute layout and the "killed by the
MoM" exit statuses look alike; the state letters and negative exit codes do
not, and live in ``pbs.py`` / ``torque.py``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hpclaunch.schedulers import (
    JobState,
    ParseError,
    SubmittedJob,
    excerpt,
    output_lines,
    parse_hms,
    parse_size,
    signal_name,
)

# seq, optional [index] or [] (array), optional .server (may contain dots)
JOB_ID_RE = re.compile(
    r"^(?P<seq>\d+)(?:\[(?P<index>\d*)\])?(?:\.(?P<server>[A-Za-z0-9][A-Za-z0-9.-]*))?$"
)
# what we accept on a command line: same shape, nothing a shell could misread
ID_ARG_RE = JOB_ID_RE


@dataclass(frozen=True)
class PbsId:
    seq: str
    index: int | None
    is_array: bool
    server: str | None

    @property
    def array_id(self) -> str:
        """The array parent's ID (``1234[].server``)."""
        return f"{self.seq}[]" + (f".{self.server}" if self.server else "")


def split_job_id(text: str, source: str = "qstat") -> PbsId:
    m = JOB_ID_RE.match(text.strip())
    if not m:
        raise ParseError(f"{source} printed an unexpected job ID {excerpt(text)!r}")
    idx = m.group("index")
    return PbsId(
        seq=m.group("seq"),
        index=int(idx) if idx else None,
        is_array=idx is not None,
        server=m.group("server"),
    )


def element_id(job_id: str, element: int) -> str:
    """``1234[].server`` + 7 -> ``1234[7].server``."""
    pid = split_job_id(job_id, "cancel")
    if pid.index is not None:
        raise ParseError(f"{job_id!r} is already an array element, not an array")
    return f"{pid.seq}[{element}]" + (f".{pid.server}" if pid.server else "")


def parse_qsub(stdout: str | bytes, program: str = "qsub") -> SubmittedJob:
    """qsub prints the new job's ID: ``1234.server`` or ``1234[].server`` for an array."""
    for line in reversed(output_lines(stdout)):
        m = JOB_ID_RE.match(line.strip())
        if m and (m.group("index") in (None, "")):
            return SubmittedJob(
                job_id=line.strip(), cluster=m.group("server"), array=m.group("index") == ""
            )
    raise ParseError(
        f"{program} did not print a job ID (expected '1234.server' or '1234[].server'), got: "
        f"{excerpt(stdout if isinstance(stdout, str) else repr(stdout))!r}"
    )


def parse_job_id_lines(stdout: str | bytes, program: str) -> list[str]:
    """One job ID per line (qselect): validated, de-duplicated, in order."""
    seen: list[str] = []
    for line in output_lines(stdout):
        value = line.strip()
        split_job_id(value, program)
        if value not in seen:
            seen.append(value)
    return seen


# --- qstat -f text -----------------------------------------------------------------

_ATTR_RE = re.compile(r"^\s+(?P<key>[A-Za-z_][A-Za-z0-9_.]*)\s=\s?(?P<value>.*)$")
_JOB_RE = re.compile(r"^Job Id:\s*(?P<id>\S+)\s*$")


def parse_full_text(
    stdout: str | bytes, program: str = "qstat -f"
) -> list[tuple[str, dict[str, str]]]:
    """Records of ``qstat -f``: ``Job Id: X`` then indented ``key = value`` lines.

    Folded values (continuation lines, as printed without ``-1``) are joined
    back without a separator, because qstat folds at a column, mid-word.
    """
    if isinstance(stdout, bytes):
        stdout = stdout.decode("utf-8", "replace")
    if not isinstance(stdout, str):
        raise ParseError(f"{program} output must be text, got {type(stdout).__name__}")
    records: list[tuple[str, dict[str, str]]] = []
    attrs: dict[str, str] | None = None
    last: str | None = None
    for line in stdout.splitlines():
        if not line.strip():
            continue
        m = _JOB_RE.match(line)
        if m:
            attrs = {}
            records.append((m.group("id"), attrs))
            last = None
            continue
        if attrs is None:
            raise ParseError(f"{program} output does not start with 'Job Id:': {excerpt(line)!r}")
        a = _ATTR_RE.match(line)
        if a and (last is None or not line.startswith("\t")):
            last = a.group("key")
            attrs[last] = a.group("value").strip()
        elif last is not None and line[:1].isspace():
            attrs[last] += line.strip()
        else:
            raise ParseError(f"{program} printed an unexpected line {excerpt(line)!r}")
    return records


# --- finished jobs: exit status and resource limits -------------------------------------


def attr(attrs: Mapping[str, Any], dotted: str) -> str | None:
    """``Resource_List.walltime`` from flat text attributes or nested JSON ones."""
    if dotted in attrs:
        value = attrs[dotted]
        return None if value is None else str(value)
    lowered = {str(k).lower(): v for k, v in attrs.items()}
    if dotted.lower() in lowered:
        value = lowered[dotted.lower()]
        return None if value is None else str(value)
    head, _, tail = dotted.partition(".")
    if tail:
        for key, value in attrs.items():
            if str(key).lower() == head.lower() and isinstance(value, Mapping):
                return attr(value, tail)
    return None


def exit_status_of(attrs: Mapping[str, Any], source: str) -> int | None:
    raw = attr(attrs, "Exit_status")
    if raw is None or raw == "":
        return None
    try:
        return int(str(raw).strip())
    except ValueError:
        raise ParseError(f"{source} printed a non-numeric exit status {excerpt(raw)!r}") from None


def limit_exceeded(attrs: Mapping[str, Any]) -> tuple[str, str] | None:
    """``(state, reason)`` when resources_used shows walltime or memory at its limit."""
    used_wall = parse_hms(attr(attrs, "resources_used.walltime"))
    want_wall = parse_hms(attr(attrs, "Resource_List.walltime"))
    if used_wall is not None and want_wall and used_wall >= want_wall:
        return "TIMEOUT", f"walltime {used_wall}s reached the limit {want_wall}s"
    for used_key, want_keys in (
        ("resources_used.mem", ("Resource_List.mem", "Resource_List.pmem")),
        ("resources_used.vmem", ("Resource_List.vmem", "Resource_List.pvmem")),
    ):
        used = parse_size(attr(attrs, used_key))
        for want_key in want_keys:
            want = parse_size(attr(attrs, want_key))
            if used is not None and want and used >= want:
                return (
                    "OUT_OF_MEMORY",
                    f"{used_key.split('.')[1]} {used} B reached the limit {want} B",
                )
    return None


def killed_verdict(signum: int, by_mom: bool, attrs: Mapping[str, Any]) -> tuple[str, str]:
    """State and reason for a job whose top process died of ``signum``.

    ``by_mom``: the exit status was >= 256, i.e. PBS/Torque itself killed the
    job (a limit or qdel) rather than the shell reporting a child's signal.
    """
    over = limit_exceeded(attrs)
    if over is not None:
        return over
    name = signal_name(signum)
    if by_mom and signum in (9, 15):
        return "CANCELLED", f"killed by the batch system with {name} (qdel or a limit)"
    return "FAILED", f"killed by {name}"


def positive_exit_verdict(status: int, attrs: Mapping[str, Any]) -> tuple[str, str | None]:
    if status == 0:
        return "COMPLETED", None
    if status >= 256:
        return killed_verdict(status % 256, True, attrs)
    if 128 < status < 254:
        return killed_verdict(status - 128, False, attrs)
    if status == 254:
        return "FAILED", "execve() failed: script or interpreter missing or not executable"
    return "FAILED", f"exit code {status}"


def make_state(
    key: str, state: str, raw: str, reason: str | None, exit_code: int | None, source: str
) -> JobState:
    pid = split_job_id(key, source)
    if pid.index is not None:
        return JobState(key, pid.array_id, pid.index, state, reason, exit_code, raw)
    return JobState(key, None, None, state, reason, exit_code, raw)


def drop_expanded_parents(states: list[JobState]) -> list[JobState]:
    """With ``-t`` an array parent is listed next to its elements: keep the elements."""
    parents_with_elements = {s.array_job_id for s in states if s.array_job_id}
    return [s for s in states if s.job_id not in parents_with_elements]
