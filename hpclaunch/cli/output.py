"""Printing for listing commands: rich tables on a terminal, JSON for scripts."""

from __future__ import annotations

import json
import math
import os
import re
import sys
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any


def fmt_time(epoch: float | None) -> str:
    if epoch is None:
        return ""
    return datetime.fromtimestamp(epoch).strftime("%Y-%m-%d %H:%M:%S")


def fmt_duration(start: float | None, end: float | None) -> str:
    if start is None or end is None:
        return ""
    seconds = max(0.0, end - start)
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, sec = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{sec:02d}"


def json_safe(value: Any) -> Any:
    """Strict JSON for scripts: no ``Infinity``/``NaN`` (null instead), no secret."""
    from hpclaunch.queue.urls import redact

    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, bytes | memoryview):
        return f"<{len(bytes(value))} bytes>"
    return value


def print_json(data: Any) -> None:
    json.dump(json_safe(data), sys.stdout, indent=2, default=str, allow_nan=False)
    sys.stdout.write("\n")


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")


def printable(value: Any) -> str:
    """Text safe for a terminal: control characters (escape sequences) shown, not sent."""
    text = "" if value is None else str(value)
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)


PIPE_WIDTH = 160  # a file or a pipe: rich's width there, so cells are not folded at 80


def _plain_output() -> bool:
    """True when rich would print no colour or style: stdout is not a terminal."""
    if os.environ.get("FORCE_COLOR") or os.environ.get("TTY_COMPATIBLE"):
        return False
    try:
        return not sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False


def _plain_table(
    columns: Sequence[str],
    cells: Sequence[Sequence[str]],
    *,
    empty: str,
    title: str | None = None,
) -> str | None:
    """The table exactly as rich prints it to a pipe, without importing rich (its
    import and layout cost more than the query on a 100-row listing); None when
    rich's layout would differ (wider than the pipe, or text whose width rich
    measures differently than ``len``)."""
    if not cells:
        return empty + "\n"
    texts = [*columns, *(c for row in cells for c in row)]
    if title is not None:
        texts.append(title)
    if not all(t.isascii() and t.isprintable() for t in texts) or any(
        "[" in c for c in [*columns, title or ""]
    ):
        return None  # (rich reads brackets in a header or title as markup)
    widths = [len(c) for c in columns]
    for row in cells:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    if sum(widths) + 3 * len(widths) + 1 > PIPE_WIDTH:
        return None

    def line(left: str, fill: str, cross: str, right: str) -> str:
        return left + cross.join(fill * (w + 2) for w in widths) + right + "\n"

    def row_text(edge: str, values: Sequence[str]) -> str:
        inner = edge.join(f" {v.ljust(w)} " for v, w in zip(values, widths, strict=True))
        return edge + inner + edge + "\n"

    out = []
    if title is not None:
        width = sum(widths) + 3 * len(widths) + 1
        if len(title) > width:
            return None  # rich wraps it
        left = (width - len(title)) // 2
        out.append(" " * left + title + " " * (width - len(title) - left) + "\n")
    out += [line("┏", "━", "┳", "┓"), row_text("┃", columns), line("┡", "━", "╇", "┩")]
    out.extend(row_text("│", row) for row in cells)
    out.append(line("└", "─", "┴", "┘"))
    return "".join(out)


def print_table(
    title: str | None,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    empty: str = "nothing to show",
) -> None:
    cells = [[printable(v) for v in row] for row in rows]
    if _plain_output():
        plain = _plain_table(columns, cells, empty=empty, title=title)
        if plain is not None:
            sys.stdout.write(plain)
            return
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console()
    if not console.is_terminal:
        console = Console(width=PIPE_WIDTH)
    if not rows:
        console.print(f"[dim]{empty}[/dim]")
        return
    table = Table(title=title, header_style="bold", show_lines=False)
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in cells:
        table.add_row(*(escape(v) for v in row))
    console.print(table)


def emit(as_json: bool, data: Any, table: Callable[[], None]) -> None:
    if as_json:
        print_json(data)
    else:
        table()
