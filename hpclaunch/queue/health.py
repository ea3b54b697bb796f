"""The server's liveness probe on the database, as a named operation like every other."""

from __future__ import annotations

from hpclaunch.queue.driver import Connection


def ping(conn: Connection) -> None:
    """Round-trip one trivial statement: the database answers on this connection."""
    conn.one("SELECT 1")
