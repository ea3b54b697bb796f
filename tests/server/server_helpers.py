"""Helpers for the server tests: a real ``hpclaunch serve`` process on a free port."""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from waiting import wait_until


def run_cli(*args: str, timeout: float = 120, env: dict[str, str] | None = None, **kw):
    """Run the real CLI in a subprocess, as a user does."""
    return subprocess.run(
        [sys.executable, "-P", "-m", "hpclaunch", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        **kw,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(
    url: str,
    *,
    method: str = "GET",
    context: ssl.SSLContext | None = None,
    timeout: float = 30,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict]:
    """Status and JSON body of one request (an HTTP error status is a result, not a raise)."""
    request = urllib.request.Request(url, method=method, headers=headers or {})
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context)
    )
    try:
        with opener.open(request, timeout=timeout) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@contextmanager
def running_server(
    log: Path, *args: str, scheme: str = "http", context: ssl.SSLContext | None = None
) -> Iterator[tuple[subprocess.Popen, str]]:
    """Start ``hpclaunch serve`` (database from the environment); yield it and its base URL."""
    port = free_port()
    out = log.open("w")
    proc = subprocess.Popen(
        [sys.executable, "-P", "-m", "hpclaunch", "serve", "--port", str(port), *args],
        stdout=out,
        stderr=subprocess.STDOUT,
        env=dict(os.environ),
    )
    base = f"{scheme}://127.0.0.1:{port}"

    def up() -> bool:
        assert proc.poll() is None, f"server exited: {log.read_text()}"
        try:
            return get(f"{base}/healthz", context=context, timeout=5)[0] == 200
        except OSError:
            return False

    try:
        wait_until(up, timeout=60, interval=0.1, what="server answering /healthz")
        yield proc, base
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        out.close()


def sockets_to_port(pid: int, port: int) -> int:
    """TCP connections process ``pid`` holds to a remote ``port`` (read from /proc)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    count = 0
    for table in ("tcp", "tcp6"):
        path = Path(f"/proc/{pid}/net/{table}")
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            remote_port = int(fields[2].rsplit(":", 1)[1], 16)
            if remote_port == port and fields[9] in inodes:
                count += 1
    return count
