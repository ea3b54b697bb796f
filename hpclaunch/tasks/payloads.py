"""Build and validate task payloads; canonical tag sets.

Pure functions: the CLI, the Python API and batch files all go through here so
a task means the same thing however it was enqueued.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from hpclaunch import validate
from hpclaunch.errors import UserError

KINDS = ("command", "call", "pickle", "engine")
DEFAULT_TAGS = validate.DEFAULT_TAGS
MAX_WORKER_TAGS = validate.MAX_WORKER_TAGS
_TARGET = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


def canonical_tags(tags: Iterable[str] | None, *, reserved_ok: bool = False) -> str:
    """Sorted, de-duplicated, comma-joined; ``default`` when none are given (a
    reserved tag only with ``reserved_ok``: hpclaunch's own tasks)."""
    if isinstance(tags, str):
        tags = [tags]
    return ",".join(validate.check_tags(tags, reserved_ok=reserved_ok))


def worker_tag_sets(tags: Iterable[str] | None) -> list[str]:
    """Every tag set a worker with these tags may claim (all non-empty subsets)."""
    names = validate.check_tags(tags, worker=True)
    return [
        ",".join(combo)
        for size in range(1, len(names) + 1)
        for combo in itertools.combinations(names, size)
    ]


def command_payload(
    command: Sequence[str] | str,
    *,
    shell: bool = False,
    cwd: str | None = None,
    env: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A command task: an argv list, or one shell string when ``shell`` is true."""
    if shell:
        if isinstance(command, str):
            text = command
        else:
            text = " ".join(command)
        if not text.strip():
            raise UserError("the shell command is empty")
        payload: dict[str, Any] = {"shell": text}
    else:
        argv = [command] if isinstance(command, str) else list(command)
        if not argv or not all(isinstance(a, str) for a in argv) or not argv[0]:
            raise UserError("a command task needs a program to run: `enqueue -- PROGRAM ARG...`")
        payload = {"argv": argv}
    if cwd is not None:
        payload["cwd"] = str(cwd)
    if env:
        bad = [k for k in env if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", str(k))]
        if bad:
            raise UserError(f"bad environment variable name {bad[0]!r}")
        payload["env"] = {str(k): str(v) for k, v in env.items()}
    return payload


def is_target(text: str) -> bool:
    """Is ``text`` a ``package.module:function`` (a call's or an engine handler's)?"""
    return isinstance(text, str) and _TARGET.match(text) is not None


def engine_payload(engine: str, param: Any, run: int) -> dict[str, Any]:
    """An engine task (SIMX): the engine's name, its param (any JSON value) and run index."""
    validate.check_engine(engine)
    try:
        json.dumps(param, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise UserError(f"param must be plain data (JSON): {exc}") from None
    return {"engine": engine, "param": param, "run": run}


def call_payload(
    target: str, args: Sequence[Any] | None = None, kwargs: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """A call task: ``package.module:function`` with JSON-serialisable arguments."""
    if not isinstance(target, str) or not _TARGET.match(target):
        raise UserError(f"bad call target {target!r}: expected package.module:function")
    args = list(args or [])
    kwargs = dict(kwargs or {})
    try:
        json.dumps([args, kwargs])
    except (TypeError, ValueError) as exc:
        raise UserError(f"call arguments must be JSON-serialisable: {exc}") from None
    return {"target": target, "args": args, "kwargs": kwargs}


def parse_json_arg(text: str | None, *, name: str, expect: type) -> Any:
    """Parse a ``--args``/``--kwargs`` JSON string into a list or dict."""
    if text is None:
        return expect()
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{name} is not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(value, expect):
        kind = "a JSON list" if expect is list else "a JSON object"
        raise UserError(f"{name} must be {kind}, got {type(value).__name__}")
    return value


def check_limits(
    *,
    priority: int = 0,
    max_attempts: int = 3,
    timeout: float | None = None,
    expected_runtime: float | None = None,
) -> None:
    """Only values a worker can use: 32-bit counts, finite bounded seconds."""
    validate.check_priority(priority)
    validate.check_max_attempts(max_attempts)
    for label, value in (("timeout", timeout), ("expected_runtime", expected_runtime)):
        if value is not None:
            validate.check_seconds(value, name=label)
