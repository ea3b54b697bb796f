"""A batch's outcome: its progress, and one result row per task.

Rows are read in pages with a keyset cursor on ``id`` so a batch of any size
streams in bounded memory. A task's parameters are not stored per task: they are
recomputed from the batch's stored spec and the task's index (``name[i]``), in
the order ``batches._expand`` generated them (``itertools.product``: the last
parameter varies fastest). No schema change, and the values are exactly the
spec's.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from hpclaunch.errors import NotFound
from hpclaunch.queue.driver import Connection
from hpclaunch.states import TaskStatus

PAGE = 1000
#: The columns every row has, in order; parameters come after ``run``.
FIXED = ("task_id", "name", "run")
OUTCOME = ("status", "attempts", "runtime", "exit_code")
_INDEX = re.compile(r"\[(\d+)\]$")
_SCALAR = (str, int, float, bool, type(None))


def batch_info(conn: Connection, batch_id: int) -> dict[str, Any]:
    """The batch row with its spec parsed; NotFound if there is none."""
    rows = conn.dicts("SELECT * FROM batches WHERE id = :id", {"id": batch_id})
    if not rows:
        raise NotFound(f"no batch with ID {batch_id} (`hpclaunch batches` lists them)")
    row = rows[0]
    row["spec"] = json.loads(row["spec"])
    return row


def progress(conn: Connection, batch_id: int) -> dict[str, int]:
    """Task counts per status (every status present, zeros included)."""
    counts = {s.value: 0 for s in TaskStatus}
    for status, n in conn.execute(
        "SELECT status, COUNT(*) FROM tasks WHERE batch_id = :id GROUP BY status",
        {"id": batch_id},
    ).fetchall():
        counts[status] = int(n)
    return counts


def grid(spec: dict[str, Any]) -> list[tuple[str, list[Any]]]:
    """The batch's parameter names and value lists, as ``_expand`` read them."""
    params = spec.get("params")
    if not isinstance(params, dict):
        return []
    return [
        (name, values if isinstance(values, list) else [values]) for name, values in params.items()
    ]


def params_at(axes: list[tuple[str, list[Any]]], index: int) -> dict[str, Any]:
    """The grid point number ``index`` (mixed radix, last axis fastest)."""
    values: dict[str, Any] = {}
    for name, options in reversed(axes):
        index, digit = divmod(index, len(options))
        values[name] = options[digit]
    return {name: values[name] for name, _ in axes}


def columns(axes: list[tuple[str, list[Any]]]) -> list[str]:
    """Fixed columns, then parameters (``param.x`` if a name clashes), then outcomes."""
    taken = set(FIXED) | set(OUTCOME) | {"error", "result"}
    names = [f"param.{n}" if n in taken else n for n, _ in axes]
    return [*FIXED, *names, *OUTCOME]


def page(conn: Connection, batch_id: int, after: int, limit: int = PAGE) -> list[tuple]:
    """One page of a batch's tasks with id > ``after`` (the keyset cursor)."""
    return conn.execute(
        "SELECT id, name, status, attempts, started_at, finished_at, exit_code, result, "
        "CASE WHEN result_pickled IS NULL THEN 0 ELSE 1 END, error FROM tasks "
        f"WHERE batch_id = :batch AND id > :after ORDER BY id LIMIT {int(limit)}",
        {"batch": batch_id, "after": after},
    ).fetchall()


def result_keys(
    conn: Connection, batch_id: int, after: int, limit: int = PAGE
) -> tuple[int, set[str]]:
    """The result columns one page needs (``result.<key>`` for flat objects, else
    ``result``) and the page's last id: CSV writes its header first."""
    rows = conn.execute(
        "SELECT id, result, CASE WHEN result_pickled IS NULL THEN 0 ELSE 1 END FROM tasks "
        f"WHERE batch_id = :batch AND id > :after ORDER BY id LIMIT {int(limit)}",
        {"batch": batch_id, "after": after},
    ).fetchall()
    keys: set[str] = set()
    for _, text, pickled in rows:
        value = _load(text)
        flat = _flat(value)
        if flat is not None:
            keys.update(f"result.{k}" for k in flat)
        elif value is not None or pickled:
            keys.add("result")
    return (int(rows[-1][0]) if rows else 0), keys


def to_row(names: list[str], axes: list[tuple[str, list[Any]]], raw: tuple) -> dict[str, Any]:
    """One task as a result row (``names``: the parameter columns of ``columns``)."""
    task_id, name, status, attempts, started, finished, exit_code, text, pickled, error = raw
    match = _INDEX.search(name or "")
    run = int(match.group(1)) if match else None
    row: dict[str, Any] = {"task_id": int(task_id), "name": name, "run": run}
    point = params_at(axes, run) if axes and run is not None else {}
    for column, (axis, _) in zip(names, axes, strict=True):
        row[column] = point.get(axis)
    row.update(
        status=status,
        attempts=int(attempts),
        runtime=None if started is None or finished is None else round(finished - started, 3),
        exit_code=exit_code,
    )
    value = _load(text)
    flat = _flat(value)
    if flat is not None:
        row.update({f"result.{k}": v for k, v in flat.items()})
    elif pickled:
        row["result"] = "<pickled>"
    elif value is not None:
        row["result"] = value
    lines = (error or "").strip().splitlines()
    row["error"] = lines[-1] if lines and status != TaskStatus.COMPLETED else None
    return row


def iter_rows(conn: Connection, batch_id: int, *, call=None) -> Iterator[dict[str, Any]]:
    """Every task of the batch as a row, page by page (``call`` retries each page)."""
    run = call or (lambda c, fn, *a: fn(c, *a))
    spec = run(conn, batch_info, batch_id)["spec"]
    axes = grid(spec)
    names = columns(axes)[len(FIXED) : len(FIXED) + len(axes)]
    after = 0
    while True:
        rows = run(conn, page, batch_id, after)
        if not rows:
            return
        for raw in rows:
            yield to_row(names, axes, raw)
        after = int(rows[-1][0])


def _load(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def _flat(value: Any) -> dict[str, Any] | None:
    """A JSON object of scalars (columns of its own), else None."""
    if isinstance(value, dict) and value and all(isinstance(v, _SCALAR) for v in value.values()):
        return value
    return None


def all_result_keys(conn: Connection, batch_id: int, *, call=None) -> list[str]:
    """Every result column of the batch, sorted: CSV needs its header first."""
    run = call or (lambda c, fn, *a: fn(c, *a))
    keys: set[str] = set()
    after = 0
    while True:
        last, found = run(conn, result_keys, batch_id, after)
        if not last:
            return sorted(keys)
        keys |= found
        after = last
