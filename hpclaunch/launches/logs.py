"""``hpclaunch logs``: an element's output, where its workers and its scheduler wrote it.

Workers write to files in the launch folder while they run (``worker_log_paths``),
so output is readable before the element ends, on every scheduler; the
scheduler's own ``-o/-e`` files hold the batch shell's messages.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from hpclaunch.errors import UserError
from hpclaunch.launches.model import Element, Launch
from hpclaunch.launches.pool import TransportPool
from hpclaunch.queue import launch_rows
from hpclaunch.queue.driver import Connection
from hpclaunch.schedulers import get_scheduler
from hpclaunch.states import ACTIVE_JOB_STATES

FOLLOW_POLL_SECONDS = 2.0
#: ``--follow`` asks the scheduler whether the element ended once every this many polls.
FOLLOW_POLLS_PER_STATUS = 8


def log_paths(launch: Launch, el: Element) -> tuple[str, str]:
    """Where the scheduler put an element's stdout/stderr (the batch shell's own)."""
    if not el.job_id:
        raise UserError(f"element {el.number} of launch {launch.id} was never submitted")
    scheduler = get_scheduler(launch.scheduler)
    return scheduler.log_paths(launch.log_dir, el.job_name, el.job_id, el.index)


def worker_log_paths(launch: Launch, el: Element) -> tuple[str, str]:
    """Where an element's workers write their stdout/stderr, while they run."""
    scheduler = get_scheduler(launch.scheduler)
    return scheduler.worker_log_paths(launch.log_dir, el.job_name, el.index)


def logs(
    conn: Connection,
    launch_id: str,
    pool: TransportPool,
    *,
    element: int = 0,
    tail: int | None = None,
) -> dict[str, Any]:
    """The workers' output, then the scheduler's files, each with its path (None if absent)."""
    launch = Launch.from_row(launch_rows.get_launch(conn, launch_id))
    el = launch.element(element)
    if not el.job_id:
        raise UserError(f"element {element} of launch {launch_id} was never submitted")
    return {
        "launch": launch_id,
        "element": element,
        "job_id": el.job_id,
        "index": el.index,
        **_texts(
            launch, worker_log_paths(launch, el), ("workers_stdout", "workers_stderr"), tail, pool
        ),
        **read_logs(launch, el, tail, pool),
    }


def read_logs(
    launch: Launch, el: Element, tail: int | None, pool: TransportPool
) -> dict[str, str | None]:
    """The scheduler's stdout/stderr files' text (or None when absent), and their paths."""
    return _texts(launch, log_paths(launch, el), ("stdout", "stderr"), tail, pool)


def _texts(
    launch: Launch,
    paths: tuple[str, str],
    labels: tuple[str, str],
    tail: int | None,
    pool: TransportPool,
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for label, path, raw in zip(labels, paths, read_files(launch, paths, pool), strict=True):
        text = None if raw is None else raw.decode("utf-8", errors="replace")
        if text is not None and tail:
            text = "\n".join(text.splitlines()[-tail:]) + ("\n" if text else "")
        out[label + "_path"], out[label] = path, text
    return out


def read_files(launch: Launch, paths: Sequence[str], pool: TransportPool) -> list[bytes | None]:
    """Each file's bytes (None while missing), over the launch's transport when remote."""
    transport = pool.get(launch) if launch.host else None
    out: list[bytes | None] = []
    for path in paths:
        try:
            out.append(transport.read_file(path) if transport else Path(path).read_bytes())
        except OSError:
            out.append(None)
    return out


def follow(
    conn: Connection,
    launch_id: str,
    pool: TransportPool,
    echo: Callable[[int, bytes], None],
    *,
    element: int = 0,
    announce: Callable[[tuple[str, str]], None] | None = None,
) -> tuple[str, str]:
    """``logs --follow``: print the workers' output as it comes until the element ends.

    Returns the two paths followed. Asks the scheduler only now and then (one call
    every ``FOLLOW_POLLS_PER_STATUS`` polls), not on every poll.
    """
    from hpclaunch.launches.status import observe

    launch = Launch.from_row(launch_rows.get_launch(conn, launch_id))
    el = launch.element(element)
    paths = worker_log_paths(launch, el)
    if announce is not None:
        announce(paths)
    polls = 0

    def ended() -> bool:
        nonlocal polls
        polls += 1
        if polls % FOLLOW_POLLS_PER_STATUS != 1:
            return False
        report = observe(conn, pool, launch_id=launch_id)
        (view,) = [v for v in report.launches if v["id"] == launch_id]
        return view["elements"][element]["state"] not in ACTIVE_JOB_STATES

    follow_output(lambda: read_files(launch, paths, pool), ended, echo)
    return paths


def follow_output(
    read: Callable[[], list[bytes | None]],
    ended: Callable[[], bool],
    echo: Callable[[int, bytes], None],
    *,
    interval: float = FOLLOW_POLL_SECONDS,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Print what was appended to the files since the last poll, until ``ended()``.

    ``read()`` returns each file's whole content (None while missing); ``ended()``
    is asked before reading, so what was written before the end is still printed.
    A file that shrank (rotated, truncated) is printed again from its start.
    """
    offsets: dict[int, int] = {}
    while True:
        finished = ended()
        for number, data in enumerate(read()):
            if data is None:
                continue
            seen = offsets.get(number, 0)
            if len(data) < seen:
                seen = 0
            if len(data) > seen:
                echo(number, data[seen:])
            offsets[number] = len(data)
        if finished:
            return
        sleep(interval)
