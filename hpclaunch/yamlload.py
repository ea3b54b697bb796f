"""The one YAML loader for files people write: batch files, profiles, connection files.

PyYAML's SafeLoader is safe from code, not from size: a few hundred bytes of
nested aliases (``*a``) expand to gigabytes. This loader refuses aliases and
merge keys (``<<``) outright, refuses duplicate keys, reads ``12:00:00`` as a
string (no YAML 1.1 sexagesimal numbers), and bounds the text it reads. Every
refusal is a :class:`yaml.MarkedYAMLError`, so callers report file and line.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from yaml.composer import ComposerError
from yaml.constructor import ConstructorError

from hpclaunch.errors import UserError

MAX_YAML_BYTES = 16 * 1024 * 1024


class StrictLoader(yaml.SafeLoader):
    """SafeLoader without aliases, merge keys, duplicate keys or sexagesimal numbers."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if isinstance(index, yaml.ScalarNode) and index.value == "<<" and index.style is None:
            raise ComposerError(
                None, None, "YAML merge keys ('<<') are not supported", index.start_mark
            )
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise ComposerError(
                None,
                None,
                f"YAML aliases (*{event.anchor}) are not supported; write the value out",
                event.start_mark,
            )
        return super().compose_node(parent, index)

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        check_keys(node)
        return super().construct_mapping(node, deep=deep)


StrictLoader.yaml_implicit_resolvers = {
    first: [
        (tag, regexp)
        for tag, regexp in resolvers
        if tag not in ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")
    ]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:int",
    re.compile(r"^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+)$"),
    list("-+0123456789"),
)
StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?"
        r"|\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)


def check_keys(node: yaml.MappingNode) -> None:
    """Refuse merge keys and keys written twice in one mapping (before constructing it)."""
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        line = key_node.start_mark.line + 1
        if key_node.tag == "tag:yaml.org,2002:merge" or (
            isinstance(key_node, yaml.ScalarNode) and key_node.value == "<<"
        ):
            raise ConstructorError(
                None, None, "YAML merge keys ('<<') are not supported", key_node.start_mark
            )
        if isinstance(key_node, yaml.ScalarNode):
            if key_node.value in seen:
                raise ConstructorError(
                    None,
                    None,
                    f"key {key_node.value!r} written twice (first on line {seen[key_node.value]})",
                    key_node.start_mark,
                )
            seen[key_node.value] = line


def read_text(path: Path, *, what: str) -> str:
    """A file people write, as text: bounded, UTF-8, or one line saying what is wrong."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_YAML_BYTES + 1)
    except OSError as exc:
        raise UserError(f"cannot read {what} {path}: {exc.strerror}") from None
    if len(data) > MAX_YAML_BYTES:
        raise UserError(f"{path}: larger than {MAX_YAML_BYTES // 2**20} MiB; is it a {what}?")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(
            f"{path}: not UTF-8 text (byte {exc.start}); save the {what} as UTF-8"
        ) from None


def describe(exc: yaml.YAMLError, source: str) -> str:
    """One line for a YAML error: where, and what."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    where = f"{source}:{mark.line + 1}" if mark is not None else source
    if isinstance(exc, yaml.reader.ReaderError):
        return f"{source}: contains the unreadable character #x{exc.character:04x}; remove it"
    problem = getattr(exc, "problem", None) or exc
    return f"{where}: not valid YAML ({' '.join(str(problem).split())})"


def load(text: str, source: str, loader: type[StrictLoader] = StrictLoader) -> Any:
    """Parse ``text`` with the strict loader; any problem is one UserError line."""
    if len(text) > MAX_YAML_BYTES:
        raise UserError(f"{source}: larger than {MAX_YAML_BYTES // 2**20} MiB")
    try:
        return yaml.load(text, Loader=loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise UserError(describe(exc, source)) from None
    except RecursionError:
        raise UserError(f"{source}: nested too deeply") from None
