"""``hpclaunch logs``: an element's stdout and stderr, where its scheduler wrote them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hpclaunch.errors import UserError
from hpclaunch.launches.model import Element, Launch
from hpclaunch.launches.pool import TransportPool
from hpclaunch.queue import launch_rows
from hpclaunch.queue.driver import Connection
from hpclaunch.schedulers import get_scheduler


def log_paths(launch: Launch, el: Element) -> tuple[str, str]:
    """Where an element's stdout/stderr are, as its scheduler names them."""
    if not el.job_id:
        raise UserError(f"element {el.number} of launch {launch.id} was never submitted")
    scheduler = get_scheduler(launch.scheduler)
    return scheduler.log_paths(launch.log_dir, el.job_name, el.job_id, el.index)


def logs(
    conn: Connection,
    launch_id: str,
    pool: TransportPool,
    *,
    element: int = 0,
    tail: int | None = None,
) -> dict[str, Any]:
    launch = Launch.from_row(launch_rows.get_launch(conn, launch_id))
    el = launch.element(element)
    if not el.job_id:
        raise UserError(f"element {element} of launch {launch_id} was never submitted")
    return {
        "launch": launch_id,
        "element": element,
        "job_id": el.job_id,
        "index": el.index,
        **read_logs(launch, el, tail, pool),
    }


def read_logs(
    launch: Launch, el: Element, tail: int | None, pool: TransportPool
) -> dict[str, str | None]:
    """Both files' text (or None when absent), and their paths."""
    out_path, err_path = log_paths(launch, el)
    texts: dict[str, str | None] = {"stdout_path": out_path, "stderr_path": err_path}
    transport = pool.get(launch) if launch.host else None
    for label, path in (("stdout", out_path), ("stderr", err_path)):
        try:
            data = transport.read_file(path) if transport else Path(path).read_bytes()
        except OSError:
            texts[label] = None
            continue
        text = data.decode("utf-8", errors="replace")
        if tail:
            text = "\n".join(text.splitlines()[-tail:]) + ("\n" if text else "")
        texts[label] = text
    return texts
