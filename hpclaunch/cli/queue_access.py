"""How a queue command reaches the queue: the database, or ``hpclaunch serve`` (--server).

The command names the database operation; with a server, ``RemoteQueue`` answers
it by the same name and with the same shape, so the output is the same.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

T = TypeVar("T")


def run(ctx: click.Context, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(conn, ...)`` on the queue database (``queue.db.run``), or asked of the server."""
    remote = _remote(ctx)
    if remote is not None:
        return remote.call(fn, *args, **kwargs)
    from hpclaunch.queue import db

    return db.run(ctx.obj["database_url"], fn, *args, **kwargs)


def _remote(ctx: click.Context) -> Any:
    obj = ctx.find_root().obj
    if not obj.get("server"):
        return None
    if obj.get("remote") is None:
        from hpclaunch.queue.remote import RemoteQueue

        obj["remote"] = RemoteQueue.connect(
            obj["server"], ca_bundle=obj.get("ca_bundle"), insecure_http=obj.get("insecure_http")
        )
    return obj["remote"]
