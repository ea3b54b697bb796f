"""``hpclaunch launches clean``: remove a finished launch's folder on the cluster.

A launch keeps its scripts and every element's and worker's logs in its own
folder, ``<workdir>/<launch id>`` (``render``). Cleaning removes exactly that
folder over the launch's transport, and only when the scheduler says none of its
jobs is alive. The recorded path is checked first: a row whose ``log_dir`` is not
``<workdir>/<launch id>`` is refused, so a damaged or hostile row cannot make
hpclaunch delete anything else.
"""

from __future__ import annotations

import posixpath
import time
from typing import Any

from hpclaunch.errors import UserError
from hpclaunch.launches.model import Launch
from hpclaunch.launches.poll import alive_jobs
from hpclaunch.launches.pool import TransportPool
from hpclaunch.queue import launch_rows
from hpclaunch.queue.driver import Connection
from hpclaunch.states import LaunchStatus

DAY = 86400.0


def own_folder(launch: Launch) -> str:
    """The launch's own folder, or UserError if the row points anywhere else."""
    path, workdir = launch.log_dir, launch.workdir
    normal = posixpath.normpath(path) if path else ""
    ok = (
        bool(path)
        and launch.id not in ("", ".", "..")
        and "/" not in launch.id
        and posixpath.isabs(normal)
        and normal == path.rstrip("/")
        and posixpath.isabs(workdir)
        and normal == posixpath.join(posixpath.normpath(workdir), launch.id)
        and posixpath.dirname(normal) not in ("", "/")
    )
    if not ok:
        raise UserError(
            f"launch {launch.id}: its recorded folder {path!r} is not "
            f"<workdir>/{launch.id} under {workdir!r}; not removing anything"
        )
    return normal


def clean(
    conn: Connection, launch_id: str, pool: TransportPool, *, dry_run: bool = False
) -> dict[str, Any]:
    """Remove one launch's folder; refuse (UserError) while any of its jobs is alive."""
    launch = Launch.from_row(launch_rows.get_launch(conn, launch_id))
    folder = own_folder(launch)
    if launch.status == LaunchStatus.SUBMITTING:
        raise UserError(f"launch {launch_id} is still being submitted; nothing removed")
    alive = alive_jobs(launch, pool)
    if alive:
        raise UserError(
            f"launch {launch_id} still has live job(s) {', '.join(alive)}; nothing removed "
            f"(`hpclaunch cancel {launch_id}` first, or wait for them)"
        )
    transport = pool.get(launch)
    size = _kib(transport.run(["du", "-sk", "--", folder], idempotent=True))
    if size is None:
        return {"launch": launch_id, "path": folder, "bytes": 0, "removed": False}
    if not dry_run:
        result = transport.run(["rm", "-rf", "--", folder])
        if not result.ok:
            raise UserError(
                f"could not remove {folder} on {launch.host or 'this machine'}: "
                f"{result.stderr.strip() or result.returncode}"
            )
    return {"launch": launch_id, "path": folder, "bytes": size * 1024, "removed": not dry_run}


def older_than(conn: Connection, days: float) -> list[str]:
    """IDs of launches submitted more than ``days`` days ago, oldest first."""
    cutoff = time.time() - days * DAY
    return [
        r["id"]
        for r in launch_rows.list_launches(conn)
        if r["submitted_at"] is not None and r["submitted_at"] < cutoff
    ]


def _kib(result: Any) -> int | None:
    """``du -sk`` -> KiB, or None when the folder is not there (already cleaned)."""
    if not result.ok:
        return None
    try:
        return int(result.stdout.split()[0])
    except (IndexError, ValueError):
        return None
