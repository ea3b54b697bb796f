"""Server benchmarks: `hpclaunch serve` on PostgreSQL, driven by simulated workers.

    python bench/serve.py [--pg URL] [--idle 1000] [--busy 64] [--tasks 6000] [--runs 20]
                          [--pool-size N]

Prints, each next to its target and its reference measured in the same run:
(a) --idle simulated workers long-polling one server process (one asyncio load
    generator): PostgreSQL connections in use (pg_stat_activity) and the server's RSS;
    then 20 tasks enqueued one at a time while they wait: enqueue-to-claim latency and
    the server's CPU time per task (one wake wakes one waiter per kind of claim, not all);
(b) no-op tasks/s through one server process with --busy simulated workers (claim,
    then finish at once), with claim latency p50/p99, next to 4 direct-PostgreSQL
    draining `hpclaunch worker` processes on the same number of tasks;
(c) enqueue-to-claim wake-up latency of an idle long-polling worker, p50/p99, next to
    a bare psycopg LISTEN/NOTIFY round trip;
(d) `worker --singleflow --server` cold start next to the direct-PostgreSQL
    `worker --singleflow`, medians of --runs (the two interleaved).
Targets on the 2-core reference machine: (a) <= 20 connections, <= 200 MiB;
(b) >= 500 tasks/s; (c) p50 <= 50 ms; (d) <= 0.6x the direct path.
A simulated worker speaks the worker protocol over raw HTTP/1.1 keep-alive
connections (asyncio streams): the server cannot tell it from a real worker.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this folder is sys.path[0]: keep bench/queue.py from shadowing
# the standard library's `queue` module.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]

import argparse  # noqa: E402
import asyncio  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import urllib.request  # noqa: E402

NOOP = "os:getpid"
PROTOCOL = "1"


def hpclaunch_exe() -> list[str]:
    exe = Path(sys.executable).parent / "hpclaunch"
    return [str(exe)] if exe.exists() else [sys.executable, "-P", "-m", "hpclaunch"]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)]


# ------------------------------------------------------------------ database set-up
def fresh(pg_url: str) -> None:
    from hpclaunch.queue import driver, migrate

    migrate.upgrade(pg_url)
    conn = driver.connect(pg_url)
    conn.execute(
        "TRUNCATE worker_requests, task_attempts, tasks, workers, batches, tokens, users "
        "RESTART IDENTITY CASCADE"
    )
    conn.close()


def enqueue_noops(url: str, n: int) -> None:
    from hpclaunch.queue import store
    from hpclaunch.queue.batches import TaskSpec
    from hpclaunch.queue.db import connect

    spec = TaskSpec(
        kind="call",
        payload={"target": NOOP, "args": [], "kwargs": {}},
        tags="default",
        priority=0,
        max_attempts=3,
        timeout=None,
        expected_runtime=None,
    )
    conn = connect(url)
    for start in range(0, n, 5000):
        store.insert_tasks(conn, [spec] * min(5000, n - start))
    conn.close()


def clear_tasks(url: str) -> None:
    from hpclaunch.queue import driver

    conn = driver.connect(url)
    conn.execute("DELETE FROM worker_requests")
    conn.execute("DELETE FROM task_attempts")
    conn.execute("DELETE FROM tasks")
    conn.close()


def worker_token(url: str) -> str:
    from hpclaunch.queue import accounts, driver

    conn = driver.connect(url)
    accounts.add_user(conn, "local", "local")
    _, secret = accounts.create_token(conn, "local", "worker")
    conn.close()
    return secret


def pg_connections(url: str) -> int:
    from hpclaunch.queue import driver

    conn = driver.connect(url)
    name = url.rsplit("/", 1)[1].split("?")[0]
    count = conn.one(
        "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = :d AND pid <> pg_backend_pid()",
        {"d": name},
    )[0]
    conn.close()
    return int(count)


# ------------------------------------------------------------------ the server
class Server:
    def __init__(self, url: str, env: dict[str, str], log: Path, pool_size: int | None):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.proc = subprocess.Popen(
            hpclaunch_exe()
            + ["serve", "--port", str(self.port)]
            + ([] if pool_size is None else ["--pool-size", str(pool_size)]),
            env={**env, "HPCLAUNCH_DATABASE_URL": url},
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
        )
        self.base = f"http://127.0.0.1:{self.port}"
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        end = time.monotonic() + 60
        while time.monotonic() < end:
            try:
                with opener.open(f"{self.base}/healthz", timeout=2) as reply:
                    if reply.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        raise SystemExit(f"the server did not start: {log.read_text()[-2000:]}")

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


# ------------------------------------------------------------------ simulated workers
class SimWorker:
    """One simulated worker on one keep-alive HTTP/1.1 connection."""

    def __init__(self, port: int, token: str):
        self.port = port
        self.headers = (
            f"Host: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n"
            "Content-Type: application/json\r\n"
            f"X-Hpclaunch-Protocol: {PROTOCOL}\r\nX-Hpclaunch-Version: bench\r\n"
        )
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.id = 0
        self.info = {
            "host": "bench",
            "pid": os.getpid(),
            "tags": "default",
            "tag_sets": ["default"],
            "mode": "draining",
            "lease": 600.0,
            "allow_pickle": True,
            "fit_deadline": False,
            "version": "bench",
        }

    async def post(self, path: str, body: dict) -> dict:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        data = json.dumps(body).encode()
        self.writer.write(
            f"POST {path} HTTP/1.1\r\n{self.headers}Content-Length: {len(data)}\r\n\r\n".encode()
            + data
        )
        await self.writer.drain()
        status = await self.reader.readline()
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        payload = await self.reader.readexactly(length)
        code = int(status.split()[1])
        if code >= 300:
            raise RuntimeError(f"{path}: HTTP {code} {payload[:200]!r}")
        return json.loads(payload)

    async def register(self) -> None:
        self.id = (await self.post("/api/v1/workers", self.info))["worker"]

    async def claim(self, wait: float) -> dict | None:
        body = {
            "worker": self.id,
            "info": self.info,
            "wait": wait,
            "remaining": None,
            "request_id": os.urandom(8).hex(),
        }
        return (await self.post("/api/v1/claim", body))["task"]

    async def finish(self, task: dict) -> None:
        body = {
            "worker": self.id,
            "request_id": os.urandom(8).hex(),
            "outcome": {"ok": True, "result": "0"},
            "token": task["token"],
            "attempt": task["attempt"],
            "max_attempts": task["max_attempts"],
            "started_at": task["started_at"],
        }
        await self.post(f"/api/v1/tasks/{task['id']}/finish", body)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def bench_idle(
    server: Server, token: str, url: str, count: int, rounds: int
) -> tuple[int, float, list[float], float]:
    """(a): ``count`` workers each holding a long-poll; connections and RSS meanwhile.
    Then ``rounds`` tasks enqueued one at a time while they wait: enqueue-to-claim
    latency, and the server's CPU seconds per task (a wake must not make every
    waiter claim)."""
    workers = [SimWorker(server.port, token) for _ in range(count)]
    for start in range(0, count, 100):
        await asyncio.gather(*(w.register() for w in workers[start : start + 100]))
    polls = {asyncio.ensure_future(w.claim(120)): w for w in workers}
    await asyncio.sleep(5)  # every claim tried once and now waits in the server
    assert not any(p.done() for p in polls), "a long-poll returned early"
    connections = await asyncio.to_thread(pg_connections, url)
    rss = server.rss_mib()
    latencies = []
    cpu_before = server.cpu_seconds()
    for _ in range(rounds):
        t0 = time.perf_counter()
        await asyncio.to_thread(enqueue_noops, url, 1)
        done, _ = await asyncio.wait(list(polls), return_when=asyncio.FIRST_COMPLETED)
        latencies.append(time.perf_counter() - t0)
        for poll in done:
            worker = polls.pop(poll)
            task = poll.result()
            if task is not None:
                await worker.finish(task)
            polls[asyncio.ensure_future(worker.claim(120))] = worker
        await asyncio.sleep(0.2)
    cpu = (server.cpu_seconds() - cpu_before) / rounds
    for p in polls:
        p.cancel()
    for w in workers:
        w.close()
    return connections, rss, latencies, cpu


async def bench_busy(server: Server, token: str, count: int) -> tuple[float, list[float]]:
    """(b): ``count`` workers claim and finish until the queue is empty."""
    latencies: list[float] = []
    workers = [SimWorker(server.port, token) for _ in range(count)]
    await asyncio.gather(*(w.register() for w in workers))
    done = 0

    async def run(w: SimWorker) -> None:
        nonlocal done
        while True:
            t0 = time.perf_counter()
            task = await w.claim(0)
            latencies.append(time.perf_counter() - t0)
            if task is None:
                return
            await w.finish(task)
            done += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(run(w) for w in workers))
    wall = time.perf_counter() - t0
    for w in workers:
        w.close()
    return done / wall, latencies


async def bench_wake(server: Server, token: str, url: str, rounds: int) -> list[float]:
    """(c): an idle long-polling worker; a task enqueued straight into the database."""
    worker = SimWorker(server.port, token)
    await worker.register()
    out = []
    for _ in range(rounds):
        poll = asyncio.ensure_future(worker.claim(60))
        await asyncio.sleep(0.3)  # it waits in the server now
        t0 = time.perf_counter()
        await asyncio.to_thread(enqueue_noops, url, 1)
        task = await poll
        out.append(time.perf_counter() - t0)
        assert task is not None
        await worker.finish(task)
    worker.close()
    return out


def bare_notify(url: str, rounds: int) -> list[float]:
    import psycopg

    out = []
    with (
        psycopg.connect(url, autocommit=True) as listener,
        psycopg.connect(url, autocommit=True) as sender,
    ):
        listener.execute("LISTEN bench_wake")
        for _ in range(rounds):
            t0 = time.perf_counter()
            sender.execute("NOTIFY bench_wake")
            for _ in listener.notifies(timeout=5, stop_after=1):
                break
            out.append(time.perf_counter() - t0)
    return out


def direct_rate(url: str, n: int, env: dict[str, str]) -> float:
    clear_tasks(url)
    enqueue_noops(url, n)
    t0 = time.perf_counter()
    procs = [
        subprocess.Popen(
            hpclaunch_exe() + ["worker", "--close-on-empty-queue", "-q"],
            env={**env, "HPCLAUNCH_DATABASE_URL": url},
        )
        for _ in range(4)
    ]
    if any(p.wait() != 0 for p in procs):
        raise SystemExit("a direct worker failed")
    return n / (time.perf_counter() - t0)


def cold_starts(
    commands: list[tuple[list[str], dict[str, str]]], url: str, runs: int
) -> list[float]:
    """Median wall time of each command (one task each), runs interleaved so that the
    machine's load of the moment weighs on every command alike."""
    times: list[list[float]] = [[] for _ in commands]
    for _ in range(runs):
        for (argv, env), out in zip(commands, times, strict=True):
            enqueue_noops(url, 1)
            t0 = time.perf_counter()
            subprocess.run(argv, check=True, env=env, stdout=subprocess.DEVNULL)
            out.append(time.perf_counter() - t0)
    return [statistics.median(t) for t in times]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pg", default=os.environ.get("HPCLAUNCH_TEST_PG_URL"))
    parser.add_argument("--idle", type=int, default=1000)
    parser.add_argument("--busy", type=int, default=64)
    parser.add_argument("--tasks", type=int, default=6000)
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument(
        "--pool-size", type=int, default=None, help="the server's --pool-size (its default)"
    )
    args = parser.parse_args()
    if not args.pg:
        raise SystemExit("give --pg URL (or HPCLAUNCH_TEST_PG_URL): the benchmark is on PostgreSQL")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))
    workdir = Path(tempfile.mkdtemp(prefix="hpclaunch-bench-serve-"))
    env = {
        **os.environ,
        "HPCLAUNCH_HOME": str(workdir / "home"),
        "HPCLAUNCH_LOG_DIR": str(workdir / "logs"),
    }
    url = args.pg
    fresh(url)
    token = worker_token(url)
    server = Server(url, env, workdir / "serve.log", args.pool_size)
    try:
        connections, rss, idle_wake, idle_cpu = asyncio.run(
            bench_idle(server, token, url, args.idle, 20)
        )
        print(
            f"(a) {args.idle} idle long-polling workers: {connections} PostgreSQL connections "
            f"(target <= 20), server RSS {rss:.0f} MiB (target <= 200); "
            f"a task enqueued while they wait: claimed after p50 "
            f"{pct(idle_wake, 0.5) * 1000:.1f} ms, server CPU {idle_cpu * 1000:.0f} ms per task"
        )
        clear_tasks(url)
        enqueue_noops(url, args.tasks)
        rate, lat = asyncio.run(bench_busy(server, token, args.busy))
        direct = direct_rate(url, args.tasks, env)
        print(
            f"(b) {args.busy} simulated workers, one server: {rate:.0f} no-op tasks/s "
            f"(target >= 500); claim latency p50 {pct(lat, 0.5) * 1000:.1f} ms, "
            f"p99 {pct(lat, 0.99) * 1000:.1f} ms; 4 direct-PostgreSQL draining workers: "
            f"{direct:.0f} tasks/s [{args.tasks} tasks]"
        )
        clear_tasks(url)
        wake = asyncio.run(bench_wake(server, token, url, args.rounds))
        bare = bare_notify(url, args.rounds)
        print(
            f"(c) enqueue-to-claim wake-up: p50 {pct(wake, 0.5) * 1000:.1f} ms (target <= 50), "
            f"p99 {pct(wake, 0.99) * 1000:.1f} ms; bare psycopg LISTEN/NOTIFY round trip "
            f"p50 {pct(bare, 0.5) * 1000:.2f} ms, p99 {pct(bare, 0.99) * 1000:.2f} ms"
        )
        clear_tasks(url)
        http_env = {
            k: v for k, v in env.items() if not k.startswith(("HPCLAUNCH_DATABASE", "HTTP"))
        }
        http_env["HPCLAUNCH_TOKEN"] = token
        http, direct_cold = cold_starts(
            [
                (
                    hpclaunch_exe() + ["worker", "--singleflow", "-q", "--server", server.base],
                    http_env,
                ),
                (
                    hpclaunch_exe() + ["worker", "--singleflow", "-q"],
                    {**env, "HPCLAUNCH_DATABASE_URL": url},
                ),
            ],
            url,
            args.runs,
        )
        print(
            f"(d) worker --singleflow cold start: --server {http:.3f} s, direct PostgreSQL "
            f"{direct_cold:.3f} s, ratio {http / direct_cold:.2f} (target <= 0.6) "
            f"[medians of {args.runs}, interleaved]"
        )
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
