"""Find, inherit, override and validate site profiles.

Search path (later wins for the same name): the shipped ``site-configs/``,
``~/.hpclaunch/sites/``, then ``./site-configs/`` of the current project.
``extends: NAME`` deep-merges a parent under the child (mappings merge, lists
and the ``database`` section replace); a profile may extend a lower-priority
profile of its own name to tweak it. Command-line overrides are applied last.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from hpclaunch import paths
from hpclaunch.errors import NotFound, UserError
from hpclaunch.schedulers import SCHEDULERS, get_scheduler
from hpclaunch.sites import checks, model
from hpclaunch.sites.schema import SCHEMA, Field, Invalid, MapOf, Section
from hpclaunch.sites.yamlsrc import Entry, Where, load_tree, parse_scalar

SUFFIX = ".yaml"
MAX_DEPTH = 32


# --------------------------------------------------------------------------- search path
def search_dirs(cwd: Path | None = None) -> list[tuple[str, Path]]:
    """(label, folder) from lowest to highest priority, without duplicates."""
    cwd = Path.cwd() if cwd is None else cwd
    dirs = [
        ("shipped", paths.shipped_dir("site-configs")),
        ("user", paths.home() / "sites"),
        ("project", cwd / "site-configs"),
    ]
    seen: set[Path] = set()
    out = []
    for label, folder in dirs:
        key = folder.expanduser().resolve()
        if key not in seen:
            seen.add(key)
            out.append((label, folder.expanduser()))
    return out


def display(path: Path) -> str:
    """A short path for messages: relative to the current folder or to ~."""
    path = Path(path)
    for base, prefix in ((Path.cwd(), ""), (Path.home(), "~/")):
        try:
            return prefix + str(path.resolve().relative_to(base.resolve()))
        except ValueError:
            continue
    return str(path)


def candidates(name: str, cwd: Path | None = None) -> list[Path]:
    """Files defining ``name``, highest priority first."""
    found = []
    for _, folder in reversed(search_dirs(cwd)):
        path = folder / f"{name}{SUFFIX}"
        if path.is_file():
            found.append(path)
    return found


def shadowing(name: str, cwd: Path | None = None) -> str | None:
    """A warning when ``./site-configs/NAME.yaml`` replaces a shipped or user profile.

    A project folder is whatever folder the command runs in: a profile there
    silently changing what ``--site NAME`` means must at least be visible.
    """
    if name.endswith(SUFFIX) or "/" in name or not checks.NAME.fullmatch(name):
        return None
    found = candidates(name, cwd)
    project = ((Path.cwd() if cwd is None else cwd) / "site-configs").resolve()
    if len(found) < 2 or found[0].parent.resolve() != project:
        return None
    if _same_bytes(found[0], found[1]):
        return None  # an identical copy (e.g. hpclaunch's own source tree) changes nothing
    return (
        f"site {name} comes from {display(found[0])} in the current folder and "
        f"shadows {display(found[1])}"
    )


def _same_bytes(a: Path, b: Path) -> bool:
    try:
        return a.read_bytes() == b.read_bytes()
    except OSError:
        return False


def available(cwd: Path | None = None) -> dict[str, Path]:
    """Every profile name on the search path and the file that wins for it."""
    names: dict[str, Path] = {}
    for _, folder in search_dirs(cwd):
        if folder.is_dir():
            for path in sorted(folder.glob(f"*{SUFFIX}")):
                names[path.name[: -len(SUFFIX)]] = path
    return dict(sorted(names.items()))


# --------------------------------------------------------------------------- overrides
@dataclass(frozen=True)
class Override:
    """One command-line change: dotted ``key``, raw ``value``, and the flag that set it."""

    key: str
    value: Any
    label: str


FLAG_KEYS = {
    "partition": "resources.partition",
    "account": "resources.account",
    "qos": "resources.qos",
    "walltime": "resources.walltime",
    "cpus": "resources.cpus",
    "mem": "resources.memory",
    "gpus": "resources.gpus",
    "workers_per_job": "worker.workers_per_job",
}
_NOT_SETTABLE = {
    "setup": "setup lines run as shell and may only come from a profile file",
    "extends": "choose another site with --site instead",
}


def parse_set(expr: str) -> Override:
    """``key.path=value`` from ``--set``; the value is read as a YAML scalar."""
    key, sep, value = expr.partition("=")
    key = key.strip()
    if not sep or not key:
        raise UserError(
            f"--set {checks.show(expr)}: write --set key.path=value, "
            "e.g. --set resources.partition=gpu"
        )
    return Override(key, parse_scalar(value), "--set")


def flag_overrides(**flags: Any) -> list[Override]:
    """Overrides from the dedicated flags (``partition=...``, ``mem=...``); None = not given."""
    out = []
    for flag, value in flags.items():
        if value is not None:
            out.append(Override(FLAG_KEYS[flag], value, "--" + flag.replace("_", "-")))
    return out


def _apply_override(tree: dict[str, Entry], ov: Override) -> dict[str, Entry]:
    parts = tuple(p for p in ov.key.split("."))
    where = Where(ov.label)
    if not all(parts):
        raise UserError(
            f"{ov.label}: {checks.show(ov.key)} is not a key path like resources.partition"
        )
    if parts[0] in _NOT_SETTABLE:
        raise UserError(f"{ov.label}: {parts[0]} cannot be overridden: {_NOT_SETTABLE[parts[0]]}")
    return _set(tree, parts, ov.value, where, SCHEMA, ())


def _set(
    tree: dict[str, Entry],
    parts: tuple[str, ...],
    value: Any,
    where: Where,
    spec: Any,
    done: tuple[str, ...],
) -> dict[str, Entry]:
    head, rest = parts[0], parts[1:]
    key = ".".join(done + (head,))
    if isinstance(spec, Section):
        if head not in spec.fields:
            raise UserError(f"{where}: {key}: {_unknown(head, spec, done)}")
        child = spec.fields[head]
    else:  # MapOf: a free key
        child = None
    new = dict(tree)
    if not rest:
        if isinstance(child, Section | MapOf) and not isinstance(value, dict):
            example = next(iter(child.fields)) if isinstance(child, Section) else "NAME"
            raise UserError(
                f"{where}: {key} is a section; set one of its keys, e.g. {key}.{example}"
            )
        new[head] = Entry(_entries(value, where), where)
        return new
    if isinstance(child, Field):
        raise UserError(f"{where}: {key} is a single value; it has no key {rest[0]!r}")
    current = tree.get(head)
    inner = current.value if current is not None and isinstance(current.value, dict) else {}
    if isinstance(child, Section) and child.atomic:
        # One-of sections are replaced, not merged; keys set together stay together.
        keep = child.together if rest[0] in child.together else frozenset()
        inner = {k: v for k, v in inner.items() if k in keep}
    new[head] = Entry(_set(inner, rest, value, where, child, done + (head,)), where)
    return new


def _entries(value: Any, where: Where) -> Any:
    if isinstance(value, dict):
        return {str(k): Entry(_entries(v, where), where) for k, v in value.items()}
    return value


# --------------------------------------------------------------------------- merging
def merge(
    base: dict[str, Entry], child: dict[str, Entry], spec: Section = SCHEMA
) -> dict[str, Entry]:
    """Deep-merge ``child`` over ``base``: mappings merge, everything else replaces.

    ``null`` over an inherited value removes it (back to the default), so a
    profile built on a site can drop that site's own resources (Polaris's
    ``filesystems``), which stock PBS refuses.
    """
    out = dict(base)
    for key, entry in child.items():
        sub = spec.fields.get(key)
        old = out.get(key)
        if entry.value is None and old is not None:
            del out[key]
            continue
        if (
            old is not None
            and isinstance(old.value, dict)
            and isinstance(entry.value, dict)
            and ((isinstance(sub, Section) and not sub.atomic) or isinstance(sub, MapOf))
        ):
            merged = (
                merge(old.value, entry.value, sub)
                if isinstance(sub, Section)
                else {**old.value, **entry.value}
            )
            out[key] = Entry(merged, entry.where)
        else:
            out[key] = entry
    return out


# --------------------------------------------------------------------------- validation
def _all_keys(spec: Section, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = []
    for key, sub in spec.fields.items():
        out.append(prefix + (key,))
        if isinstance(sub, Section):
            out.extend(_all_keys(sub, prefix + (key,)))
    return out


def _unknown(key: str, spec: Section, prefix: tuple[str, ...]) -> str:
    exact = [p for p in _all_keys(SCHEMA) if p[-1] == key]
    if exact:
        return f"unknown key here; did you mean {'.'.join(exact[0])!r}?"
    near = difflib.get_close_matches(key, list(spec.fields), n=1, cutoff=0.6)
    if near:
        return f"unknown key; did you mean {'.'.join(prefix + (near[0],))!r}?"
    elsewhere = [
        p for p in _all_keys(SCHEMA) if difflib.get_close_matches(key, [p[-1]], n=1, cutoff=0.8)
    ]
    if elsewhere:
        return f"unknown key here; did you mean {'.'.join(elsewhere[0])!r}?"
    valid = ", ".join(spec.fields)
    return f"unknown key; valid keys here are: {valid}"


def _check(
    tree: dict[str, Entry],
    spec: Section,
    prefix: tuple[str, ...],
    values: dict[str, Any],
    prov: dict[str, str],
) -> None:
    """Convert ``tree`` per ``spec`` into ``values`` and record provenance; raise on error."""
    for key, entry in tree.items():
        path = prefix + (key,)
        dotted = ".".join(path)
        sub = spec.fields.get(key)
        if sub is None:
            raise UserError(f"{entry.where}: {dotted}: {_unknown(key, spec, prefix)}")
        if isinstance(sub, Section):
            if entry.value is None:
                continue
            if not isinstance(entry.value, dict):
                raise UserError(
                    f"{entry.where}: {dotted}: expected a mapping of keys "
                    f"({', '.join(sub.fields)}), got {checks.show(entry.value)}"
                )
            inner: dict[str, Any] = {}
            _check(entry.value, sub, path, inner, prov)
            values[key] = inner
        elif isinstance(sub, MapOf):
            if entry.value is None:
                values[key] = {}
                continue
            if not isinstance(entry.value, dict):
                raise UserError(
                    f"{entry.where}: {dotted}: expected a mapping of NAME: value, "
                    f"got {checks.show(entry.value)}"
                )
            out = {}
            for name, item in entry.value.items():
                where = item.where
                try:
                    checked_name = sub.key(name)
                except Invalid as exc:
                    raise UserError(f"{where}: {dotted}.{name}: {exc}") from None
                raw = item.value
                try:
                    out[checked_name] = sub.value(
                        {k: v.value for k, v in raw.items()} if isinstance(raw, dict) else raw
                    )
                except Invalid as exc:
                    raise UserError(f"{where}: {dotted}.{name}: {exc}") from None
                prov[f"{dotted}.{name}"] = str(where)
            values[key] = out
        else:
            try:
                values[key] = sub.convert(entry.value)
            except Invalid as exc:
                raise UserError(f"{entry.where}: {dotted}: {exc}") from None
            prov[dotted] = str(entry.where)


def check_tree(tree: dict[str, Entry]) -> tuple[dict[str, Any], dict[str, str]]:
    values: dict[str, Any] = {}
    prov: dict[str, str] = {}
    _check(tree, SCHEMA, (), values, prov)
    return values, prov


# --------------------------------------------------------------------------- loading
def _read(path: Path) -> dict[str, Entry]:
    from hpclaunch.yamlload import MAX_YAML_BYTES

    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_YAML_BYTES + 1)
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{display(path)}: not UTF-8 text; save the profile as UTF-8") from None
    except OSError as exc:
        raise UserError(f"{display(path)}: cannot read ({exc.strerror})") from None
    if len(data) > MAX_YAML_BYTES:
        raise UserError(f"{display(path)}: larger than {MAX_YAML_BYTES // 2**20} MiB")
    tree = load_tree(text, display(path))
    # Each file is valid on its own (errors name the right file); a null may remove
    # an inherited value, so it is judged once the chain is merged.
    check_tree(_without_nulls(tree))
    return tree


def _without_nulls(tree: dict[str, Entry]) -> dict[str, Entry]:
    return {
        k: Entry(_without_nulls(e.value), e.where) if isinstance(e.value, dict) else e
        for k, e in tree.items()
        if e.value is not None
    }


def _resolve_file(name: str, cwd: Path | None) -> Path:
    if name.endswith(SUFFIX) or "/" in name:
        path = Path(name).expanduser()
        if not path.is_file():
            raise NotFound(f"no profile file {name}")
        return path
    if not checks.NAME.fullmatch(name):
        raise UserError(f"{checks.show(name)} is not a site name; use letters, digits, _ . -")
    found = candidates(name, cwd)
    if not found:
        raise NotFound(
            f"no site profile named {name!r}{_suggest(name, cwd)}; 'hpclaunch sites' lists them"
        )
    return found[0]


def _suggest(name: str, cwd: Path | None) -> str:
    near = difflib.get_close_matches(name, list(available(cwd)), n=1)
    return f" (did you mean {near[0]!r}?)" if near else ""


def _chain(first: Path, cwd: Path | None) -> list[tuple[Path, dict[str, Entry]]]:
    """The file and its ``extends`` ancestors, most specific first."""
    chain: list[tuple[Path, dict[str, Entry]]] = []
    path = first
    while True:
        tree = _read(path)
        chain.append((path, tree))
        parent = tree.get("extends")
        if parent is None or parent.value is None:
            return chain
        parent_name = parent.value
        own_name = path.name[: -len(SUFFIX)] if path.name.endswith(SUFFIX) else path.name
        found = candidates(parent_name, cwd)
        if parent_name == own_name:  # tweak a lower-priority profile of the same name
            resolved = [p.resolve() for p in found]
            here = path.resolve()
            found = found[resolved.index(here) + 1 :] if here in resolved else found
        if not found:
            raise UserError(
                f"{parent.where}: extends: no profile named {parent_name!r}"
                f"{_suggest(parent_name, cwd)}"
            )
        nxt = found[0]
        seen = [p.resolve() for p, _ in chain]
        if nxt.resolve() in seen:
            loop = " -> ".join([display(p) for p, _ in chain] + [display(nxt)])
            raise UserError(f"{parent.where}: extends: cycle {loop}; remove one 'extends'")
        if len(chain) >= MAX_DEPTH:
            raise UserError(f"{parent.where}: extends: more than {MAX_DEPTH} levels")
        path = nxt


def load_profile(
    name: str, overrides: list[Override] | tuple[Override, ...] = (), cwd: Path | None = None
) -> model.Profile:
    """The resolved profile ``name`` (or a path to a .yaml file), with overrides applied.

    Raises :class:`UserError` (one line: file, line, key, what to do) on any mistake.
    """
    first = _resolve_file(name, cwd)
    chain = _chain(first, cwd)
    merged: dict[str, Entry] = {}
    for _, tree in reversed(chain):
        merged = merge(merged, tree)
    for ov in overrides:
        merged = _apply_override(merged, ov)
    values, prov = check_tree(merged)
    return _build(first, [p for p, _ in chain], merged, values, prov)


def _build(
    first: Path,
    chain: list[Path],
    merged: dict[str, Entry],
    values: dict[str, Any],
    prov: dict[str, str],
) -> model.Profile:
    where = display(first)
    scheduler = values.get("scheduler")
    if scheduler is None:
        raise UserError(
            f"{where}: scheduler: missing; add 'scheduler: {SCHEDULERS[0]}' "
            f"(or {', '.join(SCHEDULERS[1:])}) here or in the profile it extends"
        )
    database = _database(values, merged, where, scheduler)

    def section(cls: type, key: str) -> Any:
        return cls(**values.get(key, {}))

    worker = values.get("worker", {})
    if "engines" in worker:  # a mapping in the file, sorted pairs in the (frozen) profile
        worker["engines"] = tuple(sorted(worker["engines"].items()))

    retry = tuple(
        model.RetryRule(reason, "requeue_on", action["requeue_on"])
        if isinstance(action, dict)
        else model.RetryRule(reason, action)
        for reason, action in sorted(values.get("retry", {}).items())
    )
    top_keys = (
        "description",
        "host",
        "workdir",
        "template",
        "extra_directives",
        "setup",
        "required",
    )
    top = {k: values[k] for k in top_keys if values.get(k) is not None}
    name = first.name[: -len(SUFFIX)] if first.name.endswith(SUFFIX) else first.name
    return model.Profile(
        name=name,
        path=where,
        scheduler=scheduler,
        ssh=model.SSHOptions.from_mapping(values.get("ssh", {}), where=f"{first} ssh"),
        resources=section(model.Resources, "resources"),
        arrays=section(model.Arrays, "arrays"),
        worker=section(model.WorkerProfile, "worker"),
        limits=section(model.Limits, "limits"),
        env=tuple(sorted(values.get("env", {}).items())),
        database=database,
        retry=retry,
        chain=tuple(display(p) for p in chain),
        provenance=MappingProxyType(dict(sorted(prov.items()))),
        **top,
    )


_SERVER_EXTRAS = ("token_env", "token_file", "ca_bundle")


def _database(
    values: dict[str, Any], merged: dict[str, Any], where: str, scheduler: str
) -> model.DatabaseAccess:
    """The ``database`` section: exactly one way to the queue (and a server's token source)."""
    given = {k: v for k, v in values.get("database", {}).items() if v not in (None, False)}
    extras = {k: given.pop(k) for k in _SERVER_EXTRAS if k in given}
    db_where = merged["database"].where if "database" in merged else where
    if extras and "server" not in given:
        raise UserError(f"{db_where}: database: {', '.join(sorted(extras))} go with server: URL")
    if len(given) != 1:
        if len(given) > 1:
            raise UserError(
                f"{db_where}: database: set exactly one of env, file, url, local, server "
                f"(found {', '.join(sorted(given))})"
            )
        if "database" in merged:
            raise UserError(
                f"{db_where}: database: set one of env, file, url, server or local: true"
            )
        local_db = get_scheduler(scheduler).database_local_by_default
        given = {"local": True} if local_db else {"env": "HPCLAUNCH_DATABASE_URL"}
    ((kind, value),) = given.items()
    if kind != "server":
        return model.DatabaseAccess(kind, None if kind == "local" else value)
    tokens = [k for k in ("token_env", "token_file") if k in extras]
    if len(tokens) != 1:
        raise UserError(
            f"{db_where}: database: a server needs exactly one of token_env: VAR (a variable "
            "set on the compute node) or token_file: PATH (a 0600 file there)"
        )
    return model.DatabaseAccess(
        "server",
        value,
        token_env=extras.get("token_env"),
        token_file=extras.get("token_file"),
        ca_bundle=extras.get("ca_bundle"),
    )
