"""Engines (SIMX): named handlers a worker provides, for tasks that give an engine and a param.

A task of kind ``engine`` names an engine and carries a ``param`` (any JSON value)
and its run index instead of a command. A worker runs it with its handler for
that engine: a Python function ``pkg.mod:func`` called as ``func(param, run)``
(its JSON result is stored, like a call's), or a command template run by the
shell with ``HPCLAUNCH_PARAM`` (the param as JSON) and ``HPCLAUNCH_RUN`` in its
environment. Handlers come from, later ones winning: the built-in ``dummy``
(SIMX's counter, so every worker provides it), the ``hpclaunch.engines`` entry
point group of installed packages, and the site profile's ``worker.engines``
mapping (passed to the worker as ``--engine-handler NAME=SPEC``).

Light on purpose (the worker imports it): entry points are read only when the
engines asked for are not all built in or mapped, and ``importlib.metadata`` is
imported only when some distribution declares one.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from hpclaunch import validate
from hpclaunch.errors import UserError
from hpclaunch.tasks.payloads import is_target

ENTRY_POINT_GROUP = "hpclaunch.engines"
BUILTIN = {"dummy": "hpclaunch.tasks.engines:dummy"}
MAX_COMMAND = 4096
# SIMX's dummy worker: "a counter for 10 seconds (sleeping in increments of 1 second)".
DUMMY_STEPS = 10
DUMMY_DELAY = 1.0


@dataclass(frozen=True)
class Handler:
    """How this worker runs one engine."""

    name: str
    target: str  # ``pkg.mod:func``, or a shell command when ``is_command``
    is_command: bool
    source: str  # built-in, entry point, or the profile / --engine-handler


def handler(name: str, spec: str, source: str) -> Handler:
    """One checked handler: ``pkg.mod:func`` is a function, anything else a command."""
    validate.check_engine(name)
    if not isinstance(spec, str) or not spec.strip():
        raise UserError(f"engine {name!r}: give pkg.module:function or a command")
    if is_target(spec):
        return Handler(name, spec, False, source)
    if len(spec) > MAX_COMMAND or any(c in spec for c in "\n\r\x00"):
        raise UserError(
            f"engine {name!r}: a command template is one line of at most {MAX_COMMAND} characters"
        )
    return Handler(name, spec, True, source)


def parse_assignment(text: str) -> tuple[str, str]:
    """``NAME=SPEC`` (the worker's ``--engine-handler``) as (name, spec)."""
    name, sep, spec = text.partition("=")
    if not sep:
        raise UserError(f"--engine-handler {text[:60]!r}: expected NAME=pkg.module:function")
    handler(name, spec, "--engine-handler")  # checked here: one clear line at start-up
    return name, spec


def _declared() -> bool:
    """Does any distribution on ``sys.path`` declare an ``hpclaunch.engines`` entry point?

    A look at each ``entry_points.txt`` (a few small files) before importing
    ``importlib.metadata``, which costs a worker's cold start about half again.
    """
    marker = f"[{ENTRY_POINT_GROUP}]"
    for folder in sys.path:
        try:
            entries = list(os.scandir(folder or "."))
        except OSError:
            continue
        for entry in entries:
            if not entry.name.endswith((".dist-info", ".egg-info")):
                continue
            try:
                with open(os.path.join(entry.path, "entry_points.txt"), encoding="utf-8") as fh:
                    if marker in fh.read():
                        return True
            except (OSError, UnicodeDecodeError):
                continue
    return False


def entry_point_handlers() -> dict[str, Handler]:
    """Handlers that installed packages declare in the ``hpclaunch.engines`` group."""
    if not _declared():
        return {}
    from importlib.metadata import entry_points

    found: dict[str, Handler] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            found[ep.name] = handler(ep.name, ep.value, f"entry point {ep.value}")
        except UserError as exc:  # a broken package must not stop the worker
            print(f"hpclaunch worker: ignoring engine entry point: {exc}", file=sys.stderr)
    return found


def available(mapped: Mapping[str, str], only: Iterable[str] = ()) -> dict[str, Handler]:
    """The handlers a worker provides: all of them, or just ``only`` (``--engine``).

    A name in ``only`` without a handler is a mistake at start-up, never a task
    that is claimed and then cannot run.
    """
    only = [validate.check_engine(n) for n in only]
    handlers = {n: handler(n, t, "built-in") for n, t in BUILTIN.items()}
    own = {n: handler(n, s, "profile") for n, s in mapped.items()}
    if not only or any(n not in handlers and n not in own for n in only):
        handlers.update(entry_point_handlers())
    handlers.update(own)
    if not only:
        return handlers
    missing = sorted(set(only) - set(handlers))
    if missing:
        raise UserError(
            f"this worker has no handler for engine {missing[0]!r} (it has: "
            f"{', '.join(sorted(handlers))}); install a package that provides it or map it "
            "in the profile's worker.engines"
        )
    return {n: handlers[n] for n in only}


def dummy(param: Any, run: int) -> dict[str, Any]:
    """SIMX's dummy engine: count ``step_count`` steps of ``step_delay`` seconds.

    Defaults 10 x 1 s like SIMX's dummy worker (a deliberate reading of the seed,
    which says both that param sets the wait and that the dummy ignores it).
    """
    param = param if isinstance(param, dict) else {}
    steps = param.get("step_count", DUMMY_STEPS)
    delay = param.get("step_delay", DUMMY_DELAY)
    validate.check_int(steps, name="dummy step_count", low=0, high=validate.INT32_MAX)
    validate.check_seconds(delay, name="dummy step_delay", allow_zero=True)
    for step in range(1, steps + 1):
        time.sleep(delay)
        print(f"dummy run {run}: step {step}/{steps}", flush=True)
    return {"run": run, "steps": steps}
