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
