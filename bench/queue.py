"""Queue benchmarks (issue 2): worker cold start and no-op task throughput.

    python bench/queue.py [--pg URL] [--tasks N] [--runs 10]

Prints, for SQLite and (when --pg or HPCLAUNCH_TEST_PG_URL is given) PostgreSQL:
* the cold start of `hpclaunch worker --singleflow` (new process until exit, one
  no-op task), median of --runs, beside the median of `python -c "import sqlalchemy"`;
* no-op task throughput with 1, 4 and 8 draining workers.
A "no-op task" is a call of `os:getpid` (nothing spawned, nothing printed).
Targets on the 2-core reference machine: cold start <= 0.35 s on PostgreSQL;
>= 1,500 tasks/s with 4 workers on PostgreSQL, >= 1,000 tasks/s on SQLite.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this folder is sys.path[0] and this file would shadow the
# standard library's `queue` module (which psycopg imports).
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]

import argparse  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

NOOP = "os:getpid"


def hpclaunch_exe() -> list[str]:
    exe = Path(sys.executable).parent / "hpclaunch"
    return [str(exe)] if exe.exists() else [sys.executable, "-P", "-m", "hpclaunch"]


def fresh_database(kind: str, pg_url: str | None, workdir: Path) -> str:
    from hpclaunch.queue import driver, migrate

    if kind == "sqlite":
        url = f"sqlite:///{workdir / 'bench.sqlite3'}"
        migrate.open_ready(url).close()
        return url
    migrate.upgrade(pg_url)
    conn = driver.connect(pg_url)
    conn.execute("TRUNCATE task_attempts, tasks, workers, batches RESTART IDENTITY CASCADE")
    conn.close()
    return pg_url


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


def median_time(argv: list[str], runs: int, env: dict, before=None) -> float:
    times = []
    for _ in range(runs):
        if before:
            before()
        t0 = time.perf_counter()
        subprocess.run(argv, check=True, env=env, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def clear(url: str) -> None:
    from hpclaunch.queue import driver

    conn = driver.connect(url)
    conn.execute("DELETE FROM task_attempts")
    conn.execute("DELETE FROM tasks")
    conn.close()


def throughput(url: str, workers: int, n: int, env: dict) -> tuple[float, float]:
    clear(url)
    enqueue_noops(url, n)
    t0 = time.perf_counter()
    procs = [
        subprocess.Popen(hpclaunch_exe() + ["worker", "--close-on-empty-queue", "-q"], env=env)
        for _ in range(workers)
    ]
    for proc in procs:
        if proc.wait() != 0:
            raise SystemExit("a worker failed")
    wall = time.perf_counter() - t0
    from hpclaunch.queue import driver

    conn = driver.connect(url)
    first, last, done = conn.one(
        "SELECT MIN(started_at), MAX(finished_at), COUNT(*) FROM tasks "
        "WHERE status = 'completed' AND kind = 'call'"
    )
    conn.close()
    if done != n:
        raise SystemExit(f"only {done} of {n} tasks completed")
    return n / wall, n / max(last - first, 1e-9)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pg", default=os.environ.get("HPCLAUNCH_TEST_PG_URL"))
    parser.add_argument("--tasks", type=int, default=6000)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="hpclaunch-bench-"))
    kinds = ["sqlite"] + (["postgresql"] if args.pg else [])
    base_env = {
        **os.environ,
        "HPCLAUNCH_HOME": str(workdir / "home"),
        "HPCLAUNCH_LOG_DIR": str(workdir / "logs"),
    }
    import_sa = median_time([sys.executable, "-c", "import sqlalchemy"], args.runs, base_env)
    print(f"python -c 'import sqlalchemy'       median {import_sa:.3f} s ({args.runs} runs)")
    try:
        for kind in kinds:
            url = fresh_database(kind, args.pg, workdir)
            env = {**base_env, "HPCLAUNCH_DATABASE_URL": url}
            cold = median_time(
                hpclaunch_exe() + ["worker", "--singleflow", "-q"],
                args.runs,
                env,
                before=lambda u=url: enqueue_noops(u, 1),
            )
            target = "  (target <= 0.35 s)" if kind == "postgresql" else ""
            print(f"[{kind}] worker --singleflow cold start  median {cold:.3f} s{target}")
            for workers in (1, 4, 8):
                wall, steady = throughput(url, workers, args.tasks, env)
                goal = ""
                if workers == 4:
                    goal = f"  (target >= {1500 if kind == 'postgresql' else 1000}/s)"
                print(
                    f"[{kind}] {workers} draining worker(s): {wall:7.0f} tasks/s wall "
                    f"(incl. start-up), {steady:7.0f} tasks/s first-claim..last-finish "
                    f"[{args.tasks} no-op tasks]{goal}"
                )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
