"""Helpers for the fault-injection tests: real workers, a cuttable TCP path to
PostgreSQL (a network partition that hurts nobody else), and a guarded
PostgreSQL restart (the server is shared: one short outage, always restarted)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

from waiting import wait_until


def hpclaunch_cmd(*args: str) -> list[str]:
    return [sys.executable, "-P", "-m", "hpclaunch", *args]


def run_cli(*args: str, check: bool = False, timeout: float = 120, env=None):
    """The real CLI in a subprocess, the way a user runs it."""
    return subprocess.run(
        hpclaunch_cmd(*args),
        capture_output=True,
        text=True,
        check=check,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def start_worker(*args: str, stderr_path: Path | None = None, env=None, **kw) -> subprocess.Popen:
    """A real ``hpclaunch worker``; its stderr goes to a file when one is given."""
    err = open(stderr_path, "w") if stderr_path else subprocess.PIPE  # noqa: SIM115
    try:
        return subprocess.Popen(
            hpclaunch_cmd("worker", *args),
            stdout=subprocess.DEVNULL,
            stderr=err,
            text=True,
            env={**os.environ, **(env or {})},
            **kw,
        )
    finally:
        if stderr_path:
            err.close()


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def sql(url: str, statement: str, params=None):
    """One statement on a fresh connection (rows for a SELECT)."""
    from hpclaunch.queue import driver

    conn = driver.connect(url)
    try:
        cur = conn.execute(statement, params)
        return cur.fetchall() if cur.description else None
    finally:
        conn.close()


def task_counts(url: str) -> dict[str, int]:
    return dict(sql(url, "SELECT status, COUNT(*) FROM tasks GROUP BY status"))


def fault_table_row(url: str, fault: str, markers: Path | None = None) -> dict:
    """The closing table's row: tasks, completed, failed with a reason, completed
    more than once (attempt rows or marker lines), left running/pending (lost)."""
    counts = task_counts(url)
    doubled = sql(
        url,
        "SELECT COUNT(*) FROM (SELECT task_id FROM task_attempts "
        "WHERE outcome = 'completed' GROUP BY task_id HAVING COUNT(*) > 1) d",
    )[0][0]
    failed_reason = sql(
        url, "SELECT COUNT(*) FROM tasks WHERE status = 'failed' AND reason IS NOT NULL"
    )[0][0]
    if markers is not None and markers.exists():
        doubled = max(doubled, sum(1 for p in markers.iterdir() if len(lines(p)) > 1))
    row = {
        "fault": fault,
        "tasks": sum(counts.values()),
        "completed": counts.get("completed", 0),
        "failed_with_reason": failed_reason,
        "duplicated": doubled,
        "lost": counts.get("running", 0) + counts.get("pending", 0),
    }
    record = os.environ.get("HPCLAUNCH_FAULT_TABLE")
    if record:
        with open(record, "a") as fh:
            fh.write(repr(row) + "\n")
    return row


class TcpProxy:
    """A TCP forwarder to PostgreSQL that can be cut (connections dropped, port
    refusing) and restored on the same port: a real network partition for the
    workers that use it, and nobody else."""

    def __init__(self, target: tuple[str, int]):
        self.target = target
        self.port = _free_port()
        self._socks: list[socket.socket] = []
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self.restore()

    def url(self, base_url: str) -> str:
        """``base_url`` rewritten to go through this proxy."""
        head, _, rest = base_url.partition("://")
        creds, at, hostpart = rest.rpartition("@")
        db = hostpart.split("/", 1)[1]
        return f"{head}://{creds}{at}127.0.0.1:{self.port}/{db}"

    def restore(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            _hard_close(listener)
        with self._lock:
            socks, self._socks = self._socks, []
        for sock in socks:
            _hard_close(sock)

    close = cut

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._listener is not listener:
                    client.close()
                    upstream.close()
                    return
                self._socks += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pump, args=(a, b), daemon=True).start()


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def _hard_close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ----------------------------------------------------------- PostgreSQL restart


def pg_cluster() -> tuple[str, str]:
    versions = sorted(os.listdir("/etc/postgresql"))
    return versions[-1], "main"


def pg_ctl(action: str) -> subprocess.CompletedProcess:
    version, name = pg_cluster()
    # fast: the documented default for stop/restart, spelled out (clients are disconnected).
    argv = ["pg_ctlcluster", "--skip-systemctl-redirect", "--mode", "fast", version, name, action]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120)


def pg_is_up(url: str) -> bool:
    try:
        sql(url, "SELECT 1")
        return True
    except Exception:  # noqa: BLE001 - any failure means "not up yet"
        return False


def ensure_pg_up(url: str, timeout: float = 90) -> None:
    """Start the shared server if it is down, and wait until it answers."""
    if pg_is_up(url):
        return
    pg_ctl("start")
    wait_until(lambda: pg_is_up(url), timeout=timeout, interval=0.2)
