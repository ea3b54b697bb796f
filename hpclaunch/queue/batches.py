"""Batch files (SIMX's batch-req.yaml): one spec expands into many tasks.

Pure: text in, task specs out, every mistake reported with the file, line and key
before anything touches the database.
"""

from __future__ import annotations

import difflib
import itertools
import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from hpclaunch import yamlload
from hpclaunch.errors import UserError
from hpclaunch.tasks.payloads import (
    call_payload,
    canonical_tags,
    check_limits,
    command_payload,
)
from hpclaunch.yamlload import StrictLoader

KEYS = {
    "name",
    "command",
    "shell",
    "call",
    "args",
    "kwargs",
    "tags",
    "n_runs",
    "params",
    "priority",
    "max_attempts",
    "timeout",
    "expected_runtime",
    "cwd",
    "env",
}
MAX_TASKS = 1_000_000
# One expanded command (Linux's limit for one argument) and a whole batch's payloads.
MAX_COMMAND_CHARS = 128 * 1024
MAX_BATCH_CHARS = 64 * 1024 * 1024


@dataclass(frozen=True)
class TaskSpec:
    kind: str
    payload: dict[str, Any]
    tags: str
    priority: int
    max_attempts: int
    timeout: float | None
    expected_runtime: float | None
    name: str | None = None

    def __post_init__(self) -> None:
        # Every way into the queue builds a TaskSpec: none stores a value a worker
        # cannot use (an infinite timeout, a 40-bit priority, a tag it would refuse).
        check_limits(
            priority=self.priority,
            max_attempts=self.max_attempts,
            timeout=self.timeout,
            expected_runtime=self.expected_runtime,
        )
        if canonical_tags(self.tags.split(",")) != self.tags:
            raise UserError(f"tags {self.tags!r} are not canonical (sorted, comma-joined)")


@dataclass(frozen=True)
class Batch:
    name: str
    spec: dict[str, Any]
    tasks: list[TaskSpec]


class _LineLoader(StrictLoader):
    """The strict loader (no aliases, merge or duplicate keys), keeping key lines."""


def _construct_mapping(loader, node, deep=False):
    mapping = StrictLoader.construct_mapping(loader, node, deep=deep)
    lines = {k.value: k.start_mark.line + 1 for k, _ in node.value if hasattr(k, "value")}
    mapping["__lines__"] = lines
    return mapping


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_batch_file(path: str | Path) -> Batch:
    path = Path(path)
    return parse_batch(yamlload.read_text(path, what="batch file"), source=str(path))


def parse_batch(text: str, *, source: str = "<batch>") -> Batch:
    data = yamlload.load(text, source, _LineLoader)
    if not isinstance(data, dict):
        raise UserError(f"{source}: a batch file is a mapping with name, command or call, ...")
    lines = data.pop("__lines__", {})
    data = _strip_lines(data)

    def err(key: str, message: str) -> UserError:
        line = lines.get(key)
        return UserError(f"{source}:{line}: {key}: {message}" if line else f"{source}: {message}")

    for key in data:
        if key not in KEYS:
            near = difflib.get_close_matches(str(key), sorted(KEYS), n=1)
            hint = (
                f"; did you mean {near[0]!r}?"
                if near
                else f"; valid keys: {', '.join(sorted(KEYS))}"
            )
            raise err(key, f"unknown key{hint}")
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        raise UserError(f"{source}: `name` is required (a short label for the batch)")
    has_command, has_call = "command" in data, "call" in data
    if has_command == has_call:
        raise UserError(f"{source}: give exactly one of `command` or `call`")
    if "n_runs" in data and "params" in data:
        raise err("params", "give `n_runs` or `params`, not both")
    try:
        tags = canonical_tags(_as_list(data.get("tags"), "tags", err))
    except UserError as exc:
        raise err("tags", str(exc)) from None
    limits = {k: data.get(k) for k in ("timeout", "expected_runtime")}
    priority = data.get("priority", 0)
    max_attempts = data.get("max_attempts", 3)
    for key, value in (("priority", priority), ("max_attempts", max_attempts)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise err(key, f"expected a whole number, got {value!r}")
    try:
        check_limits(priority=priority, max_attempts=max_attempts, **limits)
    except UserError as exc:
        key = next(
            (k for k in ("max_attempts", "timeout", "expected_runtime") if k in str(exc)), "name"
        )
        raise err(key, str(exc)) from None

    grid = _expand(data, err)
    specs: list[TaskSpec] = []
    size = 0
    for run_index, params in enumerate(grid):
        values = {**params, "run": run_index}
        if has_command:
            payload = _command(data, values, err)
            kind = "command"
        else:
            payload = _call(data, params, err)
            kind = "call"
        size += len(json.dumps(payload))
        if size > MAX_BATCH_CHARS:
            raise err(
                "command" if has_command else "call",
                f"the batch's tasks add up to more than {MAX_BATCH_CHARS // 2**20} MiB of "
                "payload; split it into several batch files",
            )
        specs.append(
            TaskSpec(
                kind=kind,
                payload=payload,
                tags=tags,
                priority=priority,
                max_attempts=max_attempts,
                timeout=limits["timeout"],
                expected_runtime=limits["expected_runtime"],
                name=f"{name}[{run_index}]",
            )
        )
    return Batch(name=name, spec=data, tasks=specs)


def _strip_lines(value):
    if isinstance(value, dict):
        return {k: _strip_lines(v) for k, v in value.items() if k != "__lines__"}
    if isinstance(value, list):
        return [_strip_lines(v) for v in value]
    return value


def _as_list(value, key, err) -> list:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list):
        raise err(key, f"expected a list, got {type(value).__name__}")
    return value


def _expand(data: dict, err) -> list[dict[str, Any]]:
    """``n_runs`` copies, or the cartesian product of ``params`` lists."""
    if "params" in data:
        params = data["params"]
        if not isinstance(params, dict) or not params:
            raise err("params", "expected a mapping of parameter name -> list of values")
        names, lists = [], []
        for pname, values in params.items():
            if not isinstance(pname, str) or not pname.isidentifier():
                raise err("params", f"parameter name {pname!r} must be an identifier")
            if not isinstance(values, list) or not values:
                values = [values] if not isinstance(values, list | dict) else None
                if values is None:
                    raise err("params", f"{pname}: expected a list of values")
            names.append(pname)
            lists.append(values)
        total = 1
        for values in lists:
            total *= len(values)
        if total > MAX_TASKS:
            raise err("params", f"the grid has {total} points; the limit is {MAX_TASKS}")
        return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*lists)]
    n_runs = data.get("n_runs", 1)
    if isinstance(n_runs, bool) or not isinstance(n_runs, int) or not 1 <= n_runs <= MAX_TASKS:
        raise err("n_runs", f"expected a whole number from 1 to {MAX_TASKS}, got {n_runs!r}")
    return [{} for _ in range(n_runs)]


_FIELD = re.compile(r"\{([^{}]*)\}|\{\{|\}\}|[{}]")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_WIDTHS = re.compile(r"\d+")
RAW = "!raw"


def _fill(template: str, values: dict, err, key: str, *, quote: bool = False) -> str:
    """Substitute ``{name}`` / ``{name:spec}`` / ``{name!raw}`` placeholders.

    With ``quote`` (a shell command), each value becomes one shell word
    (``shlex.quote`` after its format spec); ``!raw`` inserts it as written.
    Only plain parameter names: no ``{a.attr}``, ``{a[0]}`` or nested fields.
    """
    out: list[str] = []
    pos = 0
    for match in _FIELD.finditer(template):
        out.append(template[pos : match.start()])
        pos = match.end()
        token = match.group(0)
        if token in ("{{", "}}"):
            out.append(token[0])
            continue
        if match.group(1) is None:
            raise err(key, f"a single {token!r}; write {token * 2} for a literal brace")
        field = match.group(1)
        name, colon, spec = field.partition(":")
        raw = name.endswith(RAW)
        if raw:
            name = name[: -len(RAW)]
        if not _NAME.fullmatch(name):
            raise err(
                key,
                f"placeholder {{{field}}} is not allowed; write {{name}}, {{name:spec}} "
                "(e.g. {run:04d}) or {name!raw}",
            )
        if name not in values:
            raise err(
                key,
                f"placeholder {{{name}}} is not a parameter (have: {', '.join(sorted(values))})",
            )
        if any(int(n) > MAX_COMMAND_CHARS for n in _WIDTHS.findall(spec)):
            raise err(key, f"placeholder {{{field}}}: width beyond {MAX_COMMAND_CHARS}")
        try:
            text = format(values[name], spec) if colon else str(values[name])
        except (ValueError, TypeError) as exc:
            raise err(key, f"placeholder {{{field}}}: {exc}") from None
        out.append(shlex.quote(text) if quote and not raw else text)
    out.append(template[pos:])
    filled = "".join(out)
    if len(filled) > MAX_COMMAND_CHARS:
        raise err(key, f"the expanded command is longer than {MAX_COMMAND_CHARS} characters")
    return filled


def _command(data: dict, values: dict, err) -> dict[str, Any]:
    command = data["command"]
    shell = bool(data.get("shell", isinstance(command, str)))
    argv_or_text: list[str] | str
    if isinstance(command, str):
        if shell:
            argv_or_text = _fill(command, values, err, "command", quote=True)
        else:  # split first: each value stays one word
            argv_or_text = [_fill(w, values, err, "command") for w in command.split()]
    elif isinstance(command, list) and all(
        isinstance(a, str | int | float) and not isinstance(a, bool) for a in command
    ):
        words = [_fill(str(a), values, err, "command", quote=shell) for a in command]
        argv_or_text = " ".join(words) if shell else words
    else:
        raise err("command", "expected a string or a list of strings")
    env = data.get("env")
    if env is not None and not isinstance(env, dict):
        raise err("env", "expected a mapping of NAME: value")
    cwd = data.get("cwd")
    if cwd is not None and not isinstance(cwd, str):
        raise err("cwd", "expected a path")
    try:
        return command_payload(argv_or_text, shell=shell, cwd=cwd, env=env)
    except UserError as exc:
        raise err("command", str(exc)) from None


def _call(data: dict, params: dict, err) -> dict[str, Any]:
    args = data.get("args", [])
    kwargs = data.get("kwargs", {})
    if not isinstance(args, list):
        raise err("args", "expected a list")
    if not isinstance(kwargs, dict):
        raise err("kwargs", "expected a mapping")
    try:
        return call_payload(data["call"], args, {**kwargs, **params})
    except UserError as exc:
        raise err("call", str(exc)) from None
