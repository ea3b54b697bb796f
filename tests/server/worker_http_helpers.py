"""Helpers for workers over HTTP: tokens, marker tasks, worker processes, a server on a
fixed port (to restart it), a reply-dropping proxy and a forwarding HTTP proxy."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

from server_helpers import free_port, get, run_cli
from waiting import wait_until

from hpclaunch.queue import driver, store
from hpclaunch.queue.batches import TaskSpec
from hpclaunch.queue.db import connect
from hpclaunch.tasks.payloads import command_payload


def worker_token(user: str = "local", group: str = "local", *extra: str) -> str:
    """A worker token for ``user`` (created in ``group`` if new)."""
    added = run_cli("user", "add", user, "--group", group)
    assert added.returncode == 0 or "already exists" in added.stderr, added.stderr
    out = run_cli("token", "create", "--user", user, "--role", "worker", "--json", *extra)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)["token"]


def enqueue_markers(url: str, markers: Path, count: int, *, sleep: float = 0.0) -> list[int]:
    """``count`` command tasks; task i appends a line to ``markers/i`` (the exactly-once proof)."""
    pause = f"sleep {sleep}; " if sleep else ""
    specs = [
        TaskSpec(
            kind="command",
            tags="default",
            priority=0,
            max_attempts=3,
            timeout=None,
            expected_runtime=None,
            payload=command_payload(f"{pause}echo $$ >> {markers}/{i}", shell=True),
        )
        for i in range(count)
    ]
    conn = connect(url)
    try:
        return store.insert_tasks(conn, specs)
    finally:
        conn.close()


def sql(url: str, statement: str, params: dict | None = None) -> list[tuple]:
    """A statement straight on the database (as psql would), for setup and checks."""
    conn = driver.connect(url)
    try:
        cur = conn.execute(statement, params)
        return [tuple(r) for r in cur.fetchall()] if cur.description else []
    finally:
        conn.close()


def set_owner(url: str, task_ids: list[int], owner: str, group: str) -> None:
    ids, params = driver.in_list("i", task_ids)
    sql(
        url,
        f"UPDATE tasks SET owner = :o, owner_group = :g WHERE id IN {ids}",
        {"o": owner, "g": group, **params},
    )


def status_counts(url: str) -> dict[str, int]:
    return dict(sql(url, "SELECT status, COUNT(*) FROM tasks GROUP BY status"))


def completed_count(url: str) -> int:
    try:
        return status_counts(url).get("completed", 0)
    except Exception:  # noqa: BLE001 - the database may be restarting
        return 0


def assert_each_ran_once(url: str, markers: Path, count: int) -> None:
    counts = status_counts(url)
    assert counts == {"completed": count}, counts
    names = sorted(int(p.name) for p in markers.iterdir())
    assert names == list(range(count)), "some tasks never ran"
    assert {len(p.read_text().splitlines()) for p in markers.iterdir()} == {1}, "a task ran twice"
    per_task = sql(
        url,
        "SELECT task_id, COUNT(*) FROM task_attempts WHERE outcome = 'completed' GROUP BY task_id",
    )
    assert len(per_task) == count and {n for _, n in per_task} == {1}


def worker_env(token: str, **extra: str) -> dict[str, str]:
    """A compute node's environment: the token, and no database URL at all."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HPCLAUNCH_DATABASE")}
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "no_proxy", "NO_PROXY"):
        env.pop(name, None)
    env["HPCLAUNCH_TOKEN"] = token
    env.update(extra)
    return env


def start_http_worker(
    base: str, token: str, *args: str, err: Path, env: dict[str, str] | None = None
) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-P", "-m", "hpclaunch", "worker", "--server", base, *args],
        stdout=subprocess.DEVNULL,
        stderr=err.open("w"),
        env=env or worker_env(token),
    )


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()


class Server:
    """``hpclaunch serve`` on a fixed port, so a test can kill it and start it again."""

    def __init__(self, log: Path, *args: str):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.args = args
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        out = self.log.with_suffix(f".{self.starts}.log").open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-P", "-m", "hpclaunch", "serve", "--port", str(self.port)]
            + list(self.args),
            stdout=out,
            stderr=subprocess.STDOUT,
        )

        def up() -> bool:
            assert self.proc is not None and self.proc.poll() is None, "server exited"
            try:
                return get(f"{self.base}/healthz", timeout=5)[0] == 200
            except OSError:
                return False

        wait_until(up, timeout=60, interval=0.1, what="server answering /healthz")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


# ------------------------------------------------------------------ HTTP plumbing


def _read_message(sock: socket.socket, buffer: bytearray) -> bytes | None:
    """One HTTP/1.1 message (head + Content-Length body) from ``sock``; None at EOF."""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        buffer += chunk
    head_end = buffer.index(b"\r\n\r\n") + 4
    length = 0
    for line in bytes(buffer[:head_end]).split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(buffer) < head_end + length:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        buffer += chunk
    message = bytes(buffer[: head_end + length])
    del buffer[: head_end + length]
    return message


class ReplyDropper:
    """An HTTP relay on 127.0.0.1 that, for chosen requests, forwards the request,
    lets the server answer, then cuts the client's connection before the reply."""

    def __init__(self, upstream_port: int, drops: dict[str, tuple[int, bytes]]):
        self.upstream_port = upstream_port
        # path suffix -> (how many replies to drop, bytes such a reply contains)
        self.drops = dict(drops)
        self.dropped: list[str] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.base = f"http://127.0.0.1:{self.port}"
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
        inbound, outbound = bytearray(), bytearray()
        try:
            while True:
                request = _read_message(client, inbound)
                if request is None:
                    return
                upstream.sendall(request)
                reply = _read_message(upstream, outbound)
                if reply is None:
                    return
                path = request.split(b" ", 2)[1].decode()
                if self._drop(path, reply):
                    return  # the server did the work; the client never hears of it
                client.sendall(reply)
        except OSError:
            return
        finally:
            for s in (client, upstream):
                with contextlib.suppress(OSError):
                    s.close()

    def _drop(self, path: str, reply: bytes) -> bool:
        with self._lock:
            for suffix, (left, contains) in self.drops.items():
                if left > 0 and path.endswith(suffix) and contains in reply:
                    self.drops[suffix] = (left - 1, contains)
                    self.dropped.append(path)
                    return True
        return False

    def close(self) -> None:
        self.listener.close()


class ForwardingProxy:
    """A small HTTP proxy: ``CONNECT host:port`` tunnels and absolute-URI requests.

    Counts what it carried, so a test can tell the worker really went through it."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.connects: list[str] = []
        self.forwarded: list[str] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        buffer = bytearray()
        upstream: socket.socket | None = None
        try:
            while True:
                request = _read_message(client, buffer)
                if request is None:
                    return
                method, target, rest = request.split(b" ", 2)
                if method == b"CONNECT":
                    host, _, port = target.decode().rpartition(":")
                    self.connects.append(target.decode())
                    upstream = socket.create_connection((host, int(port)))
                    client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    if buffer:
                        upstream.sendall(bytes(buffer))
                    _splice(client, upstream)
                    return
                url = target.decode()
                assert url.startswith("http://"), url
                hostport, _, path = url[len("http://") :].partition("/")
                host, _, port = hostport.rpartition(":")
                self.forwarded.append(url)
                if upstream is None:
                    upstream = socket.create_connection((host, int(port)))
                upstream.sendall(method + b" /" + path.encode() + b" " + rest)
                reply = _read_message(upstream, bytearray())
                if reply is None:
                    return
                client.sendall(reply)
        except OSError:
            return
        finally:
            for s in (client, upstream):
                if s is not None:
                    with contextlib.suppress(OSError):
                        s.close()

    def close(self) -> None:
        self.listener.close()


def _splice(a: socket.socket, b: socket.socket) -> None:
    def pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    other = threading.Thread(target=pump, args=(b, a), daemon=True)
    other.start()
    pump(a, b)
    other.join(timeout=600)
