"""A thin DB-API layer for the worker's hot path (sqlite3 or psycopg 3).

Statements are written once with ``:name`` parameters and ``{now}`` for the
database clock (so leases on many hosts compare against one clock); this module
adapts them to each driver. It deliberately imports neither SQLAlchemy nor
Alembic: see ``hpclaunch.queue``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

from hpclaunch.errors import DatabaseError
from hpclaunch.queue.urls import is_sqlite, redact, sqlite_path

NOW_SQL = {
    "sqlite": "((julianday('now') - 2440587.5) * 86400.0)",
    "postgresql": "(extract(epoch from clock_timestamp())::float8)",
}
_NAMED = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


@lru_cache(maxsize=256)
def adapt(sql: str, dialect: str) -> str:
    """Substitute the clock and convert ``:name`` to the driver's paramstyle."""
    # Protect the '::' cast before looking for ':name' parameters.
    sql = sql.replace("{now}", NOW_SQL[dialect])
    if dialect == "postgresql":
        sql = sql.replace("%", "%%")
        sql = _NAMED.sub(r"%(\1)s", sql)
    return sql


class Connection:
    """One database connection, in autocommit mode with explicit transactions."""

    def __init__(self, raw: Any, dialect: str, url: str):
        self.raw = raw
        self.dialect = dialect
        self.url = url

    def execute(self, sql: str, params: Mapping[str, Any] | None = None):
        cur = self.raw.cursor()
        cur.execute(adapt(sql, self.dialect), params or {})
        return cur

    def one(self, sql: str, params: Mapping[str, Any] | None = None):
        return self.execute(sql, params).fetchone()

    def dicts(self, sql: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """All rows as dicts keyed by column name (binary columns as ``bytes``)."""
        cur = self.execute(sql, params)
        names = [d[0] for d in cur.description]
        return [
            {
                n: bytes(v) if isinstance(v, memoryview) else v
                for n, v in zip(names, row, strict=True)
            }
            for row in cur.fetchall()
        ]

    def many_returning(self, sql: str, rows: Sequence[Mapping[str, Any]]) -> list[Any]:
        """Run ``sql ... RETURNING x`` once per row; the first value of each, in
        order (None for a row whose statement returned nothing)."""
        if not rows:
            return []
        if self.dialect == "postgresql":
            cur = self.raw.cursor()
            cur.executemany(adapt(sql, self.dialect), rows, returning=True)
            out = []
            while True:
                row = cur.fetchone()
                out.append(None if row is None else row[0])
                if not cur.nextset():
                    return out
        return [None if (row := self.one(sql, r)) is None else row[0] for r in rows]

    def lock_suffix(self, of: str | None = None) -> str:
        """`` FOR UPDATE [OF x] SKIP LOCKED`` on PostgreSQL; SQLite's write lock suffices."""
        if self.dialect != "postgresql":
            return ""
        return f" FOR UPDATE OF {of} SKIP LOCKED" if of else " FOR UPDATE SKIP LOCKED"

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A write transaction: ``BEGIN IMMEDIATE`` on SQLite so it never deadlocks."""
        if self.dialect == "sqlite":
            self.raw.execute("BEGIN IMMEDIATE")
            try:
                yield self
            except BaseException:
                self.raw.execute("ROLLBACK")
                raise
            self.raw.execute("COMMIT")
        else:
            with self.raw.transaction():
                yield self

    def close(self) -> None:
        try:
            self.raw.close()
        except Exception:  # noqa: BLE001 - closing a broken connection is best effort
            pass

    def reconnect(self) -> None:
        """Replace a (possibly broken) connection in place: holders keep this object."""
        self.close()
        self.raw = _open_raw(self.url)


def in_list(prefix: str, values: Iterable[Any]) -> tuple[str, dict[str, Any]]:
    """``(:p0, :p1, ...)`` and its parameters, for ``col IN`` over a Python list."""
    params = {f"{prefix}{i}": v for i, v in enumerate(values)}
    if not params:
        return "(NULL)", {}  # matches nothing, like SQLAlchemy's empty IN
    return "(" + ", ".join(":" + k for k in params) + ")", params


class Unreachable(DatabaseError):
    """The server did not accept a connection; ``transient`` when retrying may help."""

    def __init__(self, message: str, *, transient: bool):
        super().__init__(message)
        self.transient = transient


# Connection failures that waiting will not fix (checked against the server's message).
PERMANENT_HINTS = (
    "does not exist",
    "authentication failed",
    "password",
    "no pg_hba.conf entry",
    "permission denied",
    "invalid dsn",
    "invalid connection option",
    "role ",
    "could not translate host name",
    "failed to resolve host",  # psycopg's own DNS lookup: a typo, not an outage
)


def is_permanent_message(text: str) -> bool:
    lowered = text.lower()
    return any(hint in lowered for hint in PERMANENT_HINTS)


def connect(url: str) -> Connection:
    """Open a connection; SQLite gets WAL, a busy timeout and NORMAL sync."""
    return Connection(_open_raw(url), "sqlite" if is_sqlite(url) else "postgresql", url)


def _open_raw(url: str) -> Any:
    if is_sqlite(url):
        import sqlite3

        path = sqlite_path(url)
        raw = sqlite3.connect(path, timeout=60, isolation_level=None, check_same_thread=False)
        raw.execute("PRAGMA busy_timeout = 60000")
        mode = raw.execute("PRAGMA journal_mode").fetchone()[0]
        if mode.lower() != "wal":
            raw.execute("PRAGMA journal_mode = WAL")
        raw.execute("PRAGMA synchronous = NORMAL")
        return raw
    import psycopg

    conninfo = re.sub(r"^postgres(ql)?(\+\w+)?://", "postgresql://", url)
    try:
        pg: Any = psycopg.connect(conninfo, autocommit=True, connect_timeout=10)
    except psycopg.OperationalError as exc:
        text = str(exc).strip()
        first = text.splitlines()[0] if text else type(exc).__name__
        raise Unreachable(
            f"cannot connect to {redact(url)}: {first}", transient=not is_permanent_message(text)
        ) from exc
    # Every statement here is a primary-key or ordered-index lookup. After a bulk
    # enqueue, before autovacuum has analysed the table, the planner would read the
    # whole pending index as a bitmap and sort it for each claim: O(queue) per task.
    # (A SET, not a startup option: connection poolers may refuse those.)
    pg.execute("SET enable_bitmapscan = off")
    return pg
