"""The rules every value entering hpclaunch passes, wherever it enters.

One rule per kind of value (a tag, a number of seconds, a priority, a row ID),
used by the command line, batch files, profiles and the Python API alike, so a
value one door accepts is never refused (or, worse, crashes a worker) at another.
Pure: no click, no database.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

from hpclaunch.errors import UserError

# Database columns: ``Integer`` is 32-bit on PostgreSQL, IDs are 64-bit.
INT32_MAX = 2**31 - 1
ID_MAX = 2**63 - 1
# The most rows one page of the HTTP API holds (its ``limit``; its client asks for this).
API_PAGE_MAX = 1000
# The longest duration a worker can arm a timer for (setitimer overflows near 1e10
# on 64-bit Linux); about three years, far beyond any walltime.
MAX_SECONDS = 100_000_000.0

TAG_RULE = "tags are 1-64 letters, digits or _ . : + - and start with a letter or digit"
_TAG = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:+-]{0,63}")
MAX_WORKER_TAGS = 8
DEFAULT_TAGS = ("default",)


def check_tag(tag: object) -> str:
    """One tag, or UserError saying the rule."""
    if not isinstance(tag, str) or not _TAG.fullmatch(tag):
        shown = repr(tag) if len(repr(tag)) <= 70 else repr(tag)[:67] + "..."
        raise UserError(f"bad tag {shown}: {TAG_RULE}")
    return tag


ENGINE_RULE = "engine names are 1-64 letters, digits or _ . - and start with a letter or digit"
_ENGINE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def check_engine(name: object) -> str:
    """One engine name (SIMX's ``engine: dummy``), or UserError saying the rule."""
    if not isinstance(name, str) or not _ENGINE.fullmatch(name):
        shown = repr(name) if len(repr(name)) <= 70 else repr(name)[:67] + "..."
        raise UserError(f"bad engine {shown}: {ENGINE_RULE}")
    return name


# Tags of hpclaunch's own tasks: a user's task never carries one, so the workers
# that claim them (the doctor's probe) never run a user's work.
RESERVED_TASK_TAGS = frozenset({"hpclaunch-probe"})


def check_tags(
    tags: Iterable[object] | None, *, worker: bool = False, reserved_ok: bool = False
) -> tuple[str, ...]:
    """Sorted, de-duplicated tags (``default`` when none), at most 8.

    A worker takes at most 8 tags and claims tasks whose tags are a subset of its
    own, so a task with more could never run: both are refused.
    """
    given = sorted({check_tag(t) for t in (tags or ())})
    reserved = sorted(RESERVED_TASK_TAGS.intersection(given))
    if reserved and not (worker or reserved_ok):
        raise UserError(
            f"the tag {reserved[0]!r} is reserved for hpclaunch's own probe tasks "
            "(`hpclaunch doctor`); choose another tag"
        )
    if len(given) > MAX_WORKER_TAGS:
        if worker:
            raise UserError(f"a worker takes at most {MAX_WORKER_TAGS} tags, got {len(given)}")
        raise UserError(
            f"a task has at most {MAX_WORKER_TAGS} tags (no worker takes more), got {len(given)}"
        )
    return tuple(given) or DEFAULT_TAGS


def check_seconds(
    value: object, *, name: str, minimum: float = 0.0, allow_zero: bool = False
) -> float:
    """A finite number of seconds the worker can use (no inf, nan or 1e12)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise UserError(f"{name} must be a number of seconds, got {value!r}")
    number = float(value) if isinstance(value, float) else value
    if isinstance(number, float) and not math.isfinite(number):
        raise UserError(f"{name} must be a finite number of seconds, got {value!r}")
    low_ok = number >= minimum if allow_zero or minimum > 0 else number > 0
    if not low_ok or number > MAX_SECONDS:
        low = f">= {minimum:g}" if allow_zero or minimum > 0 else "> 0"
        raise UserError(f"{name} must be {low} and at most {MAX_SECONDS:.0f} seconds, got {value}")
    return float(number)


def check_int(value: object, *, name: str, low: int, high: int) -> int:
    """A whole number that fits its database column."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise UserError(f"{name} must be a whole number, got {value!r}")
    if not low <= value <= high:
        raise UserError(f"{name} must be from {low} to {high}, got {value}")
    return value


def check_priority(value: object) -> int:
    return check_int(value, name="priority", low=-INT32_MAX, high=INT32_MAX)


def check_max_attempts(value: object) -> int:
    return check_int(value, name="max_attempts", low=1, high=INT32_MAX)
