"""Read YAML into trees that remember where every key and value came from.

Profiles are YAML, but two YAML 1.1 surprises are switched off: ``1:00:00`` is
not the integer 3600 (sexagesimal numbers), and duplicate keys are an error
rather than "last one wins". Every mapping entry keeps its file and line, so
an error can say exactly where the mistake is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from hpclaunch.errors import UserError
from hpclaunch.yamlload import StrictLoader


@dataclass(frozen=True)
class Where:
    """The origin of a value: a file and line, or a command-line override."""

    source: str
    line: int | None = None

    def __str__(self) -> str:
        return f"{self.source}:{self.line}" if self.line else self.source


@dataclass(frozen=True)
class Entry:
    """One mapping value and where it was written (the key's position)."""

    value: Any  # a plain scalar/list, or a ``dict[str, Entry]`` for nested mappings
    where: Where


class _Loader(StrictLoader):
    """The shared strict loader: no aliases, merge keys or sexagesimal numbers."""


_NULLS = ("", "~", "null", "Null", "NULL")


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def parse_scalar(text: str) -> Any:
    """Parse one command-line value as a YAML scalar or flow collection.

    Anything YAML cannot read is taken as the literal string.
    """
    try:
        value = yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except (yaml.YAMLError, RecursionError):
        return text
    if value is None and text.strip() not in _NULLS:
        return text  # e.g. "#x": a comment to YAML, but the user meant the text
    return value


def load_tree(text: str, source: str) -> dict[str, Entry]:
    """Parse ``text`` into a tree of :class:`Entry` (top level must be a mapping)."""
    loader = None
    try:
        loader = _Loader(text)
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        raise UserError(
            f"{Where(source, line)}: not valid YAML: {_one_line(exc.problem or exc)}; "
            "fix the syntax (indentation, quotes, colons)"
        ) from None
    except yaml.reader.ReaderError as exc:
        raise UserError(
            f"{source}: contains the control character \\x{exc.character:02x} "
            f"(position {exc.position}); remove it"
        ) from None
    except yaml.YAMLError as exc:
        raise UserError(f"{source}: not valid YAML: {_one_line(exc)}") from None
    except RecursionError:
        raise UserError(f"{source}: nested too deeply; is this a profile?") from None
    finally:
        if loader is not None:
            loader.dispose()
    if node is None:
        raise UserError(f"{source}: the profile is empty; it needs at least 'scheduler:'")
    if not isinstance(node, yaml.MappingNode):
        raise UserError(
            f"{Where(source, node.start_mark.line + 1)}: a profile must be a mapping of "
            "keys (like 'scheduler: slurm'), not a list or a single value"
        )
    return _mapping(node, source, _Loader(""))


def _mapping(node: yaml.MappingNode, source: str, loader: _Loader) -> dict[str, Entry]:
    out: dict[str, Entry] = {}
    for key_node, value_node in node.value:
        where = Where(source, key_node.start_mark.line + 1)
        if not isinstance(key_node, yaml.ScalarNode):
            raise UserError(f"{where}: a key must be a plain name, not a list or mapping")
        if key_node.tag == "tag:yaml.org,2002:merge" or key_node.value == "<<":
            raise UserError(f"{where}: YAML merge keys ('<<') are not supported; use 'extends'")
        key = str(_construct(key_node, source, loader))
        if key in out:
            raise UserError(
                f"{where}: {key}: written twice (first on line {out[key].where.line}); keep one"
            )
        if isinstance(value_node, yaml.MappingNode):
            out[key] = Entry(_mapping(value_node, source, loader), where)
        else:
            out[key] = Entry(_construct(value_node, source, loader), where)
    return out


def _construct(node: yaml.Node, source: str, loader: _Loader) -> Any:
    try:
        return loader.construct_object(node, deep=True)
    except yaml.YAMLError as exc:
        where = Where(source, node.start_mark.line + 1)
        problem = getattr(exc, "problem", None) or exc
        raise UserError(f"{where}: unreadable value: {_one_line(problem)}") from None
