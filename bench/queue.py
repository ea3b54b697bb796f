"""Queue benchmarks: each hpclaunch figure next to the reference it must beat,
measured in the same run (medians over --runs, with min-max).

    python bench/queue.py [--pg URL] [--runs 5] [--tasks 3000] [--idle 10]
                          [--only cli,wake,throughput,cpu]

* cli: `tasks`, `stats`, `enqueue -- true`, `enqueue --file` (a 1,000-run batch)
  on SQLite with 10,000 tasks queued, each beside `python -c "import sqlalchemy"`
  (goal: ratio <= 1.0).
* wake: enqueue-to-start for a draining worker idle for --idle s, the task
  enqueued through the Python API; PostgreSQL beside a bare psycopg LISTEN/NOTIFY
  round trip (goal p50 <= 50 ms), SQLite (goal p50 <= 100 ms).
* throughput: no-op tasks/s (process start to all exited) with 1 and 4 draining
  workers; PostgreSQL beside pgqueuer (its default batch size, installed with pip
  in a separate venv; skipped with a message if it cannot be), goal >= 1.2x at
  4 workers; SQLite beside a raw `BEGIN IMMEDIATE` claim-and-finish loop on the
  same table, goal >= 0.8x.
* cpu: a worker's CPU seconds from process start to its first claim (its first
  task, `time:process_time`, reports them), SQLite and PostgreSQL.

A "no-op task" is a call of `os:getpid`.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this folder is sys.path[0] and this file would shadow the
# standard library's `queue` module (which psycopg imports).
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

NOOP = "os:getpid"
PGQ_VENV = Path(tempfile.gettempdir()) / "hpclaunch-bench-pgqueuer-venv"


def hpclaunch_exe() -> list[str]:
    exe = Path(sys.executable).parent / "hpclaunch"
    return [str(exe)] if exe.exists() else [sys.executable, "-P", "-m", "hpclaunch"]


def spread(values: list[float], fmt: str = "{:.3f}") -> str:
    """``median (min-max, n runs)``."""
    return (
        f"{fmt.format(statistics.median(values))} "
        f"({fmt.format(min(values))}-{fmt.format(max(values))}, {len(values)} runs)"
    )


def fresh_database(kind: str, pg_url: str | None, workdir: Path) -> str:
    from hpclaunch.queue import driver, migrate

    if kind == "sqlite":
        url = f"sqlite:///{workdir / 'bench.sqlite3'}"
        migrate.open_ready(url).close()
        return url
    assert pg_url is not None
    migrate.upgrade(pg_url)
    conn = driver.connect(pg_url)
    conn.execute("TRUNCATE task_attempts, tasks, workers, batches RESTART IDENTITY CASCADE")
    conn.close()
    return pg_url


def sql(url: str, statement: str, params: dict | None = None) -> list:
    from hpclaunch.queue import driver

    conn = driver.connect(url)
    try:
        cur = conn.execute(statement, params)
        return cur.fetchall() if cur.description else []
    finally:
        conn.close()


def enqueue_noops(url: str, n: int, target: str = NOOP) -> None:
    from hpclaunch.queue import driver, store
    from hpclaunch.queue.batches import TaskSpec

    spec = TaskSpec(
        kind="call",
        payload={"target": target, "args": [], "kwargs": {}},
        tags="default",
        priority=0,
        max_attempts=3,
        timeout=None,
        expected_runtime=None,
    )
    conn = driver.connect(url)
    for start in range(0, n, 5000):
        store.insert_tasks(conn, [spec] * min(5000, n - start))
    conn.close()


def clear(url: str) -> None:
    sql(url, "DELETE FROM task_attempts")
    sql(url, "DELETE FROM tasks")
    sql(url, "DELETE FROM workers")
    if not url.startswith("sqlite"):
        sql(url, "VACUUM ANALYZE tasks")


def timed(argv: list[str], env: dict) -> float:
    t0 = time.perf_counter()
    done = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - t0
    if done.returncode:
        raise SystemExit(f"{' '.join(argv)} failed: {done.stderr.decode()[-2000:]}")
    return elapsed


def run_processes(argvs: list[list[str]], env: dict) -> float:
    """Wall seconds from starting every process to the last one's exit."""
    t0 = time.perf_counter()
    procs = [subprocess.Popen(argv, env=env) for argv in argvs]
    for proc in procs:
        if proc.wait() != 0:
            raise SystemExit(f"{proc.args} failed")
    return time.perf_counter() - t0


# --- cli ---------------------------------------------------------------------
def bench_cli(workdir: Path, env: dict, runs: int) -> None:
    (workdir / "cli").mkdir()
    url = fresh_database("sqlite", None, workdir / "cli")
    env = {**env, "HPCLAUNCH_DATABASE_URL": url}
    enqueue_noops(url, 10_000)
    batch = workdir / "batch.yaml"
    batch.write_text('name: bench\ncommand: "true"\nn_runs: 1000\n')
    exe = hpclaunch_exe()
    commands: dict[str, list[str]] = {
        "tasks": [*exe, "tasks"],
        "stats": [*exe, "stats"],
        "enqueue -- true": [*exe, "enqueue", "--", "true"],
        "enqueue --file (1,000 runs)": [*exe, "enqueue", "--file", str(batch)],
    }
    reference = [sys.executable, "-c", "import sqlalchemy"]
    times: dict[str, list[float]] = {name: [] for name in ["ref", *commands]}
    for _ in range(runs):  # interleaved, so drift on a loaded machine hits all alike
        times["ref"].append(timed(reference, env))
        for name, argv in commands.items():
            times[name].append(timed(argv, env))
            # Back to 10,000 queued tasks for the next command.
            sql(url, "DELETE FROM tasks WHERE id > 10000")
            sql(url, "DELETE FROM batches")
    ref = statistics.median(times["ref"])
    print("CLI start-up on SQLite with 10,000 tasks queued (seconds, wall)")
    label = 'python -c "import sqlalchemy"'
    print(f"  {label:38} {spread(times['ref'])}  [reference]")
    for name in commands:
        ratio = statistics.median(times[name]) / ref
        verdict = "met" if ratio <= 1.0 else "NOT met"
        print(
            f"  {'hpclaunch ' + name:38} {spread(times[name])}  ratio {ratio:.2f} "
            f"(goal <= 1.0: {verdict})"
        )


# --- wake --------------------------------------------------------------------
def listen_notify_roundtrip(pg_url: str, runs: int) -> list[float]:
    import psycopg

    listener = psycopg.connect(pg_url, autocommit=True)
    sender = psycopg.connect(pg_url, autocommit=True)
    listener.execute("LISTEN hpclaunch_bench")
    out = []
    try:
        for _ in range(runs):
            t0 = time.perf_counter()
            sender.execute("NOTIFY hpclaunch_bench")
            for _ in listener.notifies(timeout=10, stop_after=1):
                pass
            out.append(time.perf_counter() - t0)
            time.sleep(0.2)
    finally:
        listener.close()
        sender.close()
    return out


def enqueue_to_start(url: str, env: dict, runs: int, idle: float) -> list[float]:
    from hpclaunch import Queue

    clear(url)
    worker = subprocess.Popen([*hpclaunch_exe(), "worker", "-q"], env=env)
    queue = Queue(url)
    out = []
    try:
        while not sql(url, "SELECT id FROM workers"):
            time.sleep(0.05)
        for _ in range(runs):
            time.sleep(idle)  # idle this long before the task comes
            t0 = time.time()
            handle = queue.enqueue_call(NOOP)
            while True:
                row = sql(url, "SELECT started_at FROM tasks WHERE id = :id", {"id": handle.id})
                if row and row[0][0] is not None:
                    break
                time.sleep(0.005)
            out.append(float(row[0][0]) - t0)
    finally:
        queue.close()
        worker.terminate()
        worker.wait(60)
    return out


def bench_wake(kinds: dict[str, str], env: dict, runs: int, idle: float) -> None:
    print(f"Enqueue-to-start, draining worker idle {idle:g} s, Python API enqueue (ms)")
    ms = "{:.1f}"
    for kind, url in kinds.items():
        samples = [
            s * 1000
            for s in enqueue_to_start(url, {**env, "HPCLAUNCH_DATABASE_URL": url}, runs, idle)
        ]
        goal = 50 if kind == "postgresql" else 100
        verdict = "met" if statistics.median(samples) <= goal else "NOT met"
        print(f"  [{kind}] hpclaunch p50 {spread(samples, ms)}  (goal p50 <= {goal} ms: {verdict})")
        if kind == "postgresql":
            bare = [s * 1000 for s in listen_notify_roundtrip(url, max(runs, 5))]
            print(
                f"  [{kind}] bare psycopg LISTEN/NOTIFY round trip {spread(bare, ms)}  [reference]"
            )


# --- throughput --------------------------------------------------------------
RAW_SQLITE_LOOP = """
import sqlite3, sys, os
c = sqlite3.connect(sys.argv[1], timeout=60, isolation_level=None)
c.execute("PRAGMA busy_timeout = 60000"); c.execute("PRAGMA synchronous = NORMAL")
now = "((julianday('now') - 2440587.5) * 86400.0)"
while True:
    c.execute("BEGIN IMMEDIATE")
    row = c.execute(
        "UPDATE tasks SET status = 'running', attempts = attempts + 1, started_at = " + now +
        " WHERE id = (SELECT id FROM tasks WHERE status = 'pending' ORDER BY priority DESC, id"
        " LIMIT 1) RETURNING id, payload").fetchone()
    c.execute("COMMIT")
    if row is None:
        break
    os.getpid()  # the no-op
    c.execute("BEGIN IMMEDIATE")
    c.execute("UPDATE tasks SET status = 'completed', finished_at = " + now + " WHERE id = ?",
              (row[0],))
    c.execute("COMMIT")
"""

PGQ_SETUP = """
import asyncio, sys, asyncpg
from pgqueuer import Queries, AsyncpgDriver
async def main(dsn, n):
    conn = await asyncpg.connect(dsn)
    q = Queries(AsyncpgDriver(conn))
    if not await q.schema_is_installed():
        await q.install()
    await q.clear_queue()
    for start in range(0, n, 1000):
        k = min(1000, n - start)
        await q.enqueue(["noop"] * k, [None] * k, [0] * k)
    await conn.close()
asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""

PGQ_WORKER = """
import asyncio, sys, os, asyncpg
from pgqueuer import QueueManager, Queries, AsyncpgDriver, Job
from pgqueuer.types import QueueExecutionMode
async def main(dsn):
    conn = await asyncpg.connect(dsn)
    qm = QueueManager(Queries(AsyncpgDriver(conn)))
    @qm.entrypoint("noop")
    async def noop(job: Job) -> None:
        os.getpid()
    await qm.run(mode=QueueExecutionMode.drain)  # its default batch size
asyncio.run(main(sys.argv[1]))
"""


def pgqueuer_python() -> Path | None:
    """A venv with pgqueuer (pip only), made once; None with a message if impossible."""
    python = PGQ_VENV / "bin" / "python"
    if python.exists():
        return python
    try:
        subprocess.run([sys.executable, "-m", "venv", str(PGQ_VENV)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "pgqueuer", "asyncpg"],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    except (subprocess.CalledProcessError, OSError) as exc:
        shutil.rmtree(PGQ_VENV, ignore_errors=True)
        print(f"  pgqueuer skipped: it could not be installed with pip ({exc})")
        return None
    return python


def bench_throughput(kinds: dict[str, str], env: dict, runs: int, n: int, workdir: Path) -> None:
    print(f"No-op tasks/s, {n} tasks, process start to all exited (tasks/s)")
    fmt = "{:.0f}"
    worker = [*hpclaunch_exe(), "worker", "--close-on-empty-queue", "-q"]
    for kind, url in kinds.items():
        wenv = {**env, "HPCLAUNCH_DATABASE_URL": url}
        refs: dict[int, Callable[[], float]] = {}
        ref_name = ""
        if kind == "sqlite":
            ref_name, goal = "raw BEGIN IMMEDIATE claim-and-finish loop", 0.8
            script = workdir / "raw_loop.py"
            script.write_text(RAW_SQLITE_LOOP)
            path = url.removeprefix("sqlite:///")

            def raw(w: int, url: str = url, script: Path = script, path: str = path) -> float:
                clear(url)
                enqueue_noops(url, n)
                return n / run_processes([[sys.executable, str(script), path]] * w, env)

            refs = {w: (lambda w=w: raw(w)) for w in (1, 4)}
        else:
            ref_name, goal = "pgqueuer (default batch size)", 1.2
            python = pgqueuer_python()
            if python is not None:
                setup, pworker = workdir / "pgq_setup.py", workdir / "pgq_worker.py"
                setup.write_text(PGQ_SETUP)
                pworker.write_text(PGQ_WORKER)
                dsn = url.split("+")[0] if "+" in url.split("://")[0] else url

                def pgq(
                    w: int,
                    dsn: str = dsn,
                    python: Path = python,
                    setup: Path = setup,
                    pworker: Path = pworker,
                ) -> float:
                    subprocess.run([str(python), str(setup), dsn, str(n)], check=True)
                    return n / run_processes([[str(python), str(pworker), dsn]] * w, env)

                refs = {w: (lambda w=w: pgq(w)) for w in (1, 4)}

        def ours(w: int, url: str = url, wenv: dict = wenv) -> float:
            clear(url)
            enqueue_noops(url, n)
            rate = n / run_processes([worker] * w, wenv)
            done = sql(url, "SELECT COUNT(*) FROM tasks WHERE status = 'completed'")[0][0]
            if done != n:
                raise SystemExit(f"only {done} of {n} tasks completed")
            return rate

        for w in (1, 4):
            mine, theirs = [], []
            for _ in range(runs):
                mine.append(ours(w))
                if w in refs:
                    theirs.append(refs[w]())
            line = f"  [{kind}] {w} worker(s): hpclaunch {spread(mine, fmt)}"
            if theirs:
                ratio = statistics.median(mine) / statistics.median(theirs)
                line += f"; {ref_name} {spread(theirs, fmt)}; ratio {ratio:.2f}"
                if w == 4 or kind == "sqlite":
                    line += f" (goal >= {goal}: {'met' if ratio >= goal else 'NOT met'})"
            print(line)


# --- cpu ---------------------------------------------------------------------
def worker_cpu(url: str, env: dict, runs: int) -> list[float]:
    """CPU seconds (user + system) of a singleflow worker when its first task runs."""
    out = []
    for _ in range(runs):
        clear(url)
        enqueue_noops(url, 1, target="time:process_time")
        subprocess.run(
            [*hpclaunch_exe(), "worker", "--singleflow", "-q"],
            check=True,
            env={**env, "HPCLAUNCH_DATABASE_URL": url},
        )
        out.append(float(json.loads(sql(url, "SELECT result FROM tasks")[0][0])))
    return out


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_worker_cpu(pg_url: str, env: dict, runs: int) -> list[float] | None:
    """The same, for a worker talking to `hpclaunch serve` (the HTTP path)."""
    import urllib.request

    env = {**env, "HPCLAUNCH_DATABASE_URL": pg_url}
    exe = hpclaunch_exe()
    sql(pg_url, "DELETE FROM tokens")
    sql(pg_url, "DELETE FROM users")
    subprocess.run(
        [*exe, "user", "add", "bench", "--group", "bench"], check=True, env=env, capture_output=True
    )
    made = subprocess.run(
        [*exe, "token", "create", "--user", "bench", "--role", "worker", "--share-group", "--json"],
        check=True,
        env=env,
        capture_output=True,
        text=True,
    )
    token = json.loads(made.stdout)["token"]
    port = free_port()
    server = subprocess.Popen(
        [*exe, "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    out = []
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(f"{base}/healthz", timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        else:
            print("  [http] skipped: hpclaunch serve did not answer")
            return None
        wenv = {**env, "HPCLAUNCH_TOKEN": token}
        wenv.pop("HPCLAUNCH_DATABASE_URL")
        for _ in range(runs):
            clear(pg_url)
            enqueue_noops(pg_url, 1, target="time:process_time")
            sql(pg_url, "UPDATE tasks SET owner = 'bench', owner_group = 'bench'")
            subprocess.run(
                [*exe, "worker", "--server", base, "--singleflow", "-q"], check=True, env=wenv
            )
            out.append(float(json.loads(sql(pg_url, "SELECT result FROM tasks")[0][0])))
    finally:
        server.terminate()
        server.wait(30)
    return out


def bench_cpu(kinds: dict[str, str], env: dict, runs: int) -> None:
    print("Worker CPU seconds from process start to its first claim")
    for code in ("pass", "import sqlalchemy"):
        ref = []
        for _ in range(runs):
            t0 = os.times()
            subprocess.run([sys.executable, "-c", code], check=True, env=env)
            t1 = os.times()
            used = t1.children_user - t0.children_user + t1.children_system - t0.children_system
            ref.append(used)
        print(f"  python -c {code!r} (CPU s) {spread(ref)}  [reference]")
    for kind, url in kinds.items():
        print(f"  [{kind}] hpclaunch worker {spread(worker_cpu(url, env, runs))}")
    if "postgresql" in kinds:
        http = http_worker_cpu(kinds["postgresql"], env, runs)
        if http:
            print(f"  [http, hpclaunch serve] hpclaunch worker --server {spread(http)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--pg", default=os.environ.get("HPCLAUNCH_TEST_PG_URL"))
    parser.add_argument("--tasks", type=int, default=3000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--idle", type=float, default=10.0)
    parser.add_argument("--only", default="cli,wake,throughput,cpu")
    args = parser.parse_args()
    parts = set(args.only.split(","))
    workdir = Path(tempfile.mkdtemp(prefix="hpclaunch-bench-"))
    env = {
        **os.environ,
        "HPCLAUNCH_HOME": str(workdir / "home"),
        "HPCLAUNCH_LOG_DIR": str(workdir / "logs"),
    }
    try:
        kinds = {"sqlite": fresh_database("sqlite", None, workdir)}
        if args.pg:
            kinds["postgresql"] = fresh_database("postgresql", args.pg, workdir)
        else:
            print("(no --pg and no HPCLAUNCH_TEST_PG_URL: PostgreSQL figures skipped)")
        if "cli" in parts:
            bench_cli(workdir, env, args.runs)
        if "wake" in parts:
            bench_wake(kinds, env, args.runs, args.idle)
        if "throughput" in parts:
            bench_throughput(kinds, env, args.runs, args.tasks, workdir)
        if "cpu" in parts:
            bench_cpu(kinds, env, args.runs)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
