"""Parse walltimes and deadlines into epoch seconds."""

from __future__ import annotations

import re
from datetime import datetime

from hpclaunch.errors import UserError

_WALLTIME = re.compile(r"^(?:(\d+)-)?(\d+):([0-5]?\d):([0-5]?\d)$")


def walltime_seconds(text: str) -> int:
    """``HH:MM:SS`` or ``D-HH:MM:SS`` (SLURM's forms with seconds) to seconds."""
    m = _WALLTIME.match(text.strip())
    if not m:
        raise UserError(f"bad walltime {text!r}: expected HH:MM:SS or D-HH:MM:SS")
    days, hours, minutes, seconds = (int(g) if g else 0 for g in m.groups())
    total = ((days * 24 + hours) * 60 + minutes) * 60 + seconds
    if total <= 0:
        raise UserError(f"bad walltime {text!r}: it must be longer than zero")
    return total


def parse_deadline(text: str) -> float:
    """An ISO 8601 time (local time when no offset is given) to epoch seconds."""
    try:
        return datetime.fromisoformat(text.strip()).timestamp()
    except ValueError:
        raise UserError(
            f"bad deadline {text!r}: expected ISO 8601, e.g. 2026-11-21T18:30:00"
        ) from None


def deadline_from_environment(environ, squeue=None) -> tuple[float | None, str | None]:
    """The job's real end time when no ``--deadline``/``--walltime`` was given.

    ``SLURM_JOB_END_TIME`` (epoch seconds) when the scheduler exports it; else,
    inside a SLURM job, ONE ``squeue -h -j $SLURM_JOB_ID -o %e`` (``squeue``
    is the function that runs it, for tests of the parsing only). Returns
    ``(deadline, note)``: the note says where it came from, or why there is none.
    """
    raw = environ.get("SLURM_JOB_END_TIME")
    if raw:
        try:
            return float(raw), "from SLURM_JOB_END_TIME"
        except ValueError:
            pass
    job_id = environ.get("SLURM_JOB_ID")
    if not job_id:
        return None, None
    try:
        output = (squeue or _squeue_end_time)(job_id)
        return parse_squeue_end_time(output), "from squeue"
    except Exception as exc:  # noqa: BLE001 - no deadline is a safe fallback
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return None, f"no deadline: squeue -j {job_id} -o %e did not give one ({first})"


def parse_squeue_end_time(output: str) -> float:
    """``squeue -o %e`` prints the end time as local ``YYYY-MM-DDTHH:MM:SS``."""
    text = output.strip()
    if not text:
        raise ValueError("empty output")
    line = text.splitlines()[0].strip()
    try:
        return datetime.fromisoformat(line).timestamp()
    except ValueError:
        raise ValueError(f"end time {line!r} is not a date") from None


def _squeue_end_time(job_id: str) -> str:
    import subprocess

    done = subprocess.run(
        ["squeue", "-h", "-j", job_id, "-o", "%e"],
        capture_output=True,
        text=True,
        timeout=15,
        check=False,
    )
    if done.returncode != 0:
        err = done.stderr.strip().splitlines()
        raise RuntimeError(err[-1] if err else f"exit code {done.returncode}")
    return done.stdout
