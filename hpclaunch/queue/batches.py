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
from hpclaunch.queue.accounts import check_name
from hpclaunch.tasks.payloads import (
    call_payload,
    canonical_tags,
    check_limits,
    command_payload,
    engine_payload,
)
from hpclaunch.validate import check_engine
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
    # SIMX's batch-req.yaml: an engine and a param instead of a command; the owner.
    "engine",
    "param",
    "user",
    "group",
}
SOURCES = ("command", "call", "engine")
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
    engine: str | None = None  # kind 'engine': the handler a worker must provide

    def __post_init__(self) -> None:
        # Every way into the queue builds a TaskSpec: none stores a value a worker
        # cannot use (an infinite timeout, a 40-bit priority, a tag it would refuse).
        check_limits(
            priority=self.priority,
            max_attempts=self.max_attempts,
            timeout=self.timeout,
            expected_runtime=self.expected_runtime,
        )
        if canonical_tags(self.tags.split(","), reserved_ok=True) != self.tags:
            raise UserError(f"tags {self.tags!r} are not canonical (sorted, comma-joined)")


@dataclass(frozen=True)
class Batch:
    name: str
    spec: dict[str, Any]
    tasks: list[TaskSpec]
    user: str | None = None  # SIMX's owner keys, checked against the caller on insert
    group: str | None = None
    warnings: tuple[str, ...] = ()  # likely mistakes that are not errors (param vs params)


class NotYours(UserError):
    """A batch names a user or group the caller may not enqueue for (HTTP 403)."""


def batch_owner(
    batch: Batch, *, user: str, group: str, admin: bool, group_of: str | None = None
) -> tuple[str, str]:
    """The (user, group) a batch is enqueued as.

    A batch's ``user``/``group`` must be the caller's own; an admin (and the
    direct-database CLI, which is the administrator) may name others. ``group_of``
    is the named user's group when it exists (an admin naming only a user).
    """
    if not admin:
        for key, given, own in (("user", batch.user, user), ("group", batch.group, group)):
            if given is not None and given != own:
                raise NotYours(
                    f"the batch's {key} is {given!r} but you are {key} {own!r}: a user "
                    "enqueues only as itself (an admin may name others)"
                )
        return user, group
    if batch.user is None:
        return user, batch.group or group
    return batch.user, batch.group or group_of or group


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
        raise UserError(
            f"{source}: a batch file is a mapping with name, command, call or engine, ..."
        )
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
    given = [key for key in SOURCES if key in data]
    if len(given) != 1:
        raise UserError(f"{source}: give exactly one of `command`, `call` or `engine`")
    kind = given[0]
    has_command = kind == "command"
    if "n_runs" in data and "params" in data:
        raise err("params", "give `n_runs` or `params`, not both")
    if "param" in data and kind == "call":
        raise err("param", "`param` goes with `engine` or `command`; a call takes `args`/`kwargs`")
    owner: dict[str, str | None] = {}
    for key in ("user", "group"):
        value = data.get(key)
        if value is not None and not isinstance(value, str):
            raise err(key, f"expected a name, got {value!r}")
        try:
            owner[key] = None if value is None else check_name(value, what=key)
        except UserError as exc:
            raise err(key, str(exc)) from None
    engine = data.get("engine")
    if kind == "engine":
        try:
            check_engine(engine)
        except UserError as exc:
            raise err("engine", str(exc)) from None
    param = data.get("param")
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
            if "param" in data:
                payload.setdefault("env", {}).update(_param_env(param, run_index, err))
        elif kind == "engine":
            payload = _engine(engine, param, params, run_index, err)
        else:
            payload = _call(data, params, err)
        size += len(json.dumps(payload))
        if size > MAX_BATCH_CHARS:
            raise err(
                kind,
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
                engine=engine if kind == "engine" else None,
            )
        )
    return Batch(
        name=name,
        spec=data,
        tasks=specs,
        user=owner["user"],
        group=owner["group"],
        warnings=_warnings(data, kind, source),
    )


def _warnings(data: dict, kind: str, source: str) -> tuple[str, ...]:
    """``param`` (one value for every run) and ``params`` (a grid) are easy to mix up."""
    param, params = data.get("param"), data.get("params")
    if isinstance(param, dict) and param and "params" not in data:
        lists = [k for k, v in param.items() if isinstance(v, list) and len(v) > 1]
        if len(lists) == len(param):
            return (
                f"{source}: `param` is handed whole to every run, lists included; for one "
                f"task per combination of {', '.join(map(str, lists))} write `params` (the grid)",
            )
    single = isinstance(params, dict) and not any(isinstance(v, list) for v in params.values())
    if params and single and "param" not in data:
        return (
            f"{source}: `params` is a grid (lists of values, one task per combination) "
            "and every value here is single, so it makes one task; to hand this mapping "
            "to every run write `param`",
        )
    return ()


def _param_env(param: Any, run_index: int, err) -> dict[str, str]:
    """A command's view of the batch's ``param``: JSON in HPCLAUNCH_PARAM, and its run."""
    try:
        text = json.dumps(param, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise err("param", f"param must be plain data (JSON): {exc}") from None
    return {"HPCLAUNCH_PARAM": text, "HPCLAUNCH_RUN": str(run_index)}


def _engine(engine: str, param: Any, point: dict, run_index: int, err) -> dict[str, Any]:
    """An engine run's payload; with a ``params`` grid, its point is merged into ``param``."""
    if point:
        if param is not None and not isinstance(param, dict):
            raise err("params", "with `params`, `param` must be a mapping (each point adds to it)")
        param = {**(param or {}), **point}
    try:
        return engine_payload(engine, param, run_index)
    except UserError as exc:
        raise err("param", str(exc)) from None


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
