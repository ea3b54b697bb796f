"""Server time of each dashboard page with 100,000 tasks, 1,000 workers, 50 launches.

    python bench/dashboard.py [--pg URL] [--tasks 100000] [--rounds 5]

Fills a fresh queue (SQLite, and PostgreSQL when --pg or HPCLAUNCH_TEST_PG_URL is
given; the PostgreSQL database is emptied first) as a busy lab's would look:
20 batches over two groups, 70 % of the tasks completed and 10 % failed over the
last three hours (one attempt row each), the rest running or pending; 1,000
workers of which 100 are live; 50 launches of 2 chunks and 20 elements, some
broken. Then starts a real ``hpclaunch serve``, signs in as an admin (every
group: the heaviest view) and as a user, and requests every page once per round,
waiting out the page cache (3 s) between rounds so every request reads the
database. Prints the server's own time per page (``Server-Timing`` total:
session check, queries and rendering), median and worst of the rounds.
Target: every page <= 300 ms.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this folder is sys.path[0] and bench/queue.py would shadow the
# standard library's `queue` module (which psycopg imports).
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import re  # noqa: E402
import socket  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import urllib.error  # noqa: E402
import urllib.parse  # noqa: E402
import urllib.request  # noqa: E402

TAGS = ["default", "gpu", "cpu,long", "cpu", "big,gpu"]
# Element verdicts: most fine, a few launches with elements that died.
STATES = ["COMPLETED"] * 6 + ["RUNNING"] * 3 + ["PENDING"]
BAD_STATES = ["FAILED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL"]
TARGET_MS = 300.0


def fill(url: str, n_tasks: int) -> dict[str, object]:
    """Write the rows with the driver in a few transactions; return IDs the pages need."""
    from hpclaunch.queue import accounts, driver, migrate

    if url.startswith("sqlite"):
        migrate.open_ready(url).close()
    else:
        migrate.upgrade(url)
    conn = driver.connect(url)
    if conn.dialect == "postgresql":
        conn.execute(
            "TRUNCATE ui_sessions, ui_secrets, launch_elements, launch_jobs, launches, "
            "task_attempts, tasks, workers, batches, tokens, users RESTART IDENTITY CASCADE"
        )
    rng = random.Random(7)
    now = time.time()
    accounts.add_user(conn, "root", "ops", admin=True)
    accounts.add_user(conn, "alice", "lab1")
    admin = accounts.create_token(conn, "root", "admin")[1]
    user = accounts.create_token(conn, "alice", "user")[1]
    launch_ids = [f"bench{i:04d}" for i in range(50)]
    with conn.transaction():
        for i, lid in enumerate(launch_ids):
            status = "broken" if i % 17 == 3 else ("finished" if i < 40 else "submitted")
            conn.execute(
                "INSERT INTO launches (id, site, host, scheduler, workdir, log_dir, workers, tags,"
                " status, submitted_at, submitted_by, profile, broken_reason) VALUES (:id, :site,"
                " NULL, 'slurm', '/scratch/runs', '/scratch/runs/logs', 20, 'default', :status,"
                " :at, 'alice', '{}', :why)",
                {
                    "id": lid,
                    "site": ["longleaf", "perlmutter", "derecho"][i % 3],
                    "status": status,
                    "at": now - 3 * 3600 + i * 200,
                    "why": "2 element(s) ended before any worker claimed a task; its stderr "
                    "ends: ModuleNotFoundError: No module named 'hpclaunch'"
                    if status == "broken"
                    else None,
                },
            )
            for chunk in range(2):
                conn.execute(
                    "INSERT INTO launch_jobs (launch_id, chunk, job_name, job_id, elements, "
                    'workers_per_element, "array", script, script_path, submitted_at) VALUES '
                    "(:l, :c, :n, :j, 10, 1, 1, :s, '/scratch/runs/x.sh', :at)",
                    {
                        "l": lid,
                        "c": chunk,
                        "n": f"hpcl-{lid}-{chunk}",
                        "j": str(100000 + 2 * i + chunk),
                        "s": "#!/bin/bash\n#SBATCH --array=0-9\nhpclaunch worker\n" * 10,
                        "at": now - 3 * 3600 + i * 200,
                    },
                )
                for index in range(10):
                    conn.execute(
                        "INSERT INTO launch_elements (launch_id, job_id, array_index, state, "
                        "reason, exit_code, seen_at, settled) VALUES (:l, :j, :x, :s, NULL, 0, "
                        ":at, 0)",
                        {
                            "l": lid,
                            "j": str(100000 + 2 * i + chunk),
                            "x": index,
                            "s": rng.choice(BAD_STATES if i % 9 == 4 and index < 3 else STATES),
                            "at": now - 60,
                        },
                    )
    workers = []
    for w in range(1000):
        live = w >= 900
        started = now - 3 * 3600 + w * 10
        workers.append(
            {
                "host": f"node{w % 64:03d}",
                "pid": 1000 + w,
                "tags": TAGS[w % len(TAGS)],
                "status": "running" if live else "exited",
                "started": started,
                "beat": now - 5 if live else started + 600,
                "stopped": None if live else started + 600,
                "reason": None if live else "empty_queue",
                "job": str(100000 + (w % 100)),
                "index": w % 10,
                "launch": launch_ids[w % 50],
            }
        )
    with conn.transaction():
        conn.raw.cursor().executemany(
            driver.adapt(
                "INSERT INTO workers (host, pid, tags, mode, status, started_at, heartbeat_at, "
                "stopped_at, exit_reason, lease, scheduler, job_id, array_job_id, array_index, "
                "launch_id) VALUES (:host, :pid, :tags, 'draining', :status, :started, :beat, "
                ":stopped, :reason, 60, 'slurm', :job, :job, :index, :launch)",
                conn.dialect,
            ),
            workers,
        )
    batches = 20
    per_batch = n_tasks // batches
    with conn.transaction():
        for b in range(batches):
            conn.execute(
                "INSERT INTO batches (name, created_at, created_by, spec, n_tasks, owner, "
                "owner_group) VALUES (:n, :at, 'alice', :spec, :k, :o, :g)",
                {
                    "n": f"sweep-{b}",
                    "at": now - 3 * 3600,
                    "spec": json.dumps({"name": f"sweep-{b}", "n_runs": per_batch}),
                    "k": per_batch,
                    "o": "alice" if b % 2 else "bob",
                    "g": "lab1" if b % 2 else "lab2",
                },
            )
    tasks, attempts = [], []
    for t in range(n_tasks):
        roll = rng.random()
        status = (
            "completed"
            if roll < 0.7
            else "failed"
            if roll < 0.8
            else "running"
            if roll < 0.85
            else "pending"
        )
        batch = t // per_batch + 1
        finished = now - rng.random() * 3 * 3600 if status in ("completed", "failed") else None
        runtime = rng.lognormvariate(3, 0.5)
        worker = rng.randrange(1, 1001)
        tasks.append(
            {
                "batch": batch,
                "name": f"sweep-{batch - 1}[{t % per_batch}]",
                "tags": TAGS[t % len(TAGS)],
                "status": status,
                "started": None if status == "pending" else (finished or now) - runtime,
                "finished": finished,
                "created": now - 3 * 3600,
                "worker": None if status == "pending" else worker,
                "exit": 0 if status == "completed" else (1 if status == "failed" else None),
                "error": "exited with code 1" if status == "failed" else None,
                "g": "lab1" if batch % 2 == 0 else "lab2",
            }
        )
    with conn.transaction():
        conn.raw.cursor().executemany(
            driver.adapt(
                "INSERT INTO tasks (batch_id, name, kind, payload, tags, priority, max_attempts, "
                "attempts, status, created_at, started_at, finished_at, worker_id, exit_code, "
                "error, stdout_tail, owner, owner_group) VALUES (:batch, :name, 'command', "
                '\'{"shell": "run.sh"}\', :tags, 0, 3, 1, :status, :created, :started, '
                ":finished, :worker, :exit, :error, 'ok', 'alice', :g)",
                conn.dialect,
            ),
            tasks,
        )
    for task_id, t in enumerate(tasks, start=1):
        if t["finished"] is not None:
            attempts.append(
                {
                    "task": task_id,
                    "worker": t["worker"],
                    "started": t["started"],
                    "finished": t["finished"],
                    "outcome": t["status"],
                    "exit": t["exit"],
                }
            )
    with conn.transaction():
        conn.raw.cursor().executemany(
            driver.adapt(
                "INSERT INTO task_attempts (task_id, attempt, worker_id, started_at, finished_at,"
                " outcome, exit_code) VALUES (:task, 1, :worker, :started, :finished, :outcome,"
                " :exit)",
                conn.dialect,
            ),
            attempts,
        )
    # What autovacuum does to a table that just grew (PostgreSQL: statistics and the
    # visibility map that lets index-only scans skip the heap); SQLite: statistics.
    conn.execute("VACUUM ANALYZE" if conn.dialect == "postgresql" else "ANALYZE")
    failed = conn.one("SELECT MIN(id) FROM tasks WHERE status = 'failed'")[0]
    conn.close()
    return {"admin": admin, "user": user, "failed_task": failed, "launch": launch_ids[3]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Client:
    def __init__(self, base: str):
        import http.cookiejar

        self.base = base
        self.opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}),
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()),
        )

    def login(self, token: str) -> None:
        data = urllib.parse.urlencode({"token": token}).encode()
        with self.opener.open(f"{self.base}/ui/login", data=data, timeout=60) as reply:
            assert reply.status == 200 and "/ui/login" not in reply.url, "sign-in failed"

    def page(self, path: str) -> float:
        """The server's own time for one request, in ms (its Server-Timing total)."""
        with self.opener.open(self.base + path, timeout=60) as reply:
            reply.read()
            timing = reply.headers.get("server-timing", "")
        match = re.search(r"total;dur=([\d.]+)", timing)
        assert reply.status == 200 and match, (path, reply.status, timing)
        return float(match.group(1))


def measure(url: str, n_tasks: int, rounds: int, log: Path) -> dict[str, list[float]]:
    ids = fill(url, n_tasks)
    port = free_port()
    with log.open("w") as out:
        server = subprocess.Popen(
            [sys.executable, "-P", "-m", "hpclaunch", "--database", url, "serve"]
            + ["--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(f"{base}/healthz", timeout=2).read()
                break
            except OSError:
                time.sleep(0.1)
        admin, user = Client(base), Client(base)
        admin.login(str(ids["admin"]))
        user.login(str(ids["user"]))
        pages = {
            "overview": (admin, "/ui/"),
            "overview (user)": (user, "/ui/"),
            "batches": (admin, "/ui/batches"),
            "batch 2 (5,000 tasks)": (admin, "/ui/batches/2"),
            "batch 2, failed only": (admin, "/ui/batches/2?status=failed"),
            "tasks, all": (admin, "/ui/tasks"),
            "tasks, tag gpu, pending": (admin, "/ui/tasks?tag=gpu&status=pending"),
            "tasks, page 900": (admin, "/ui/tasks?after=90000"),
            "task (failed)": (admin, f"/ui/tasks/{ids['failed_task']}"),
            "workers, live": (admin, "/ui/workers"),
            "workers, all": (admin, "/ui/workers?show=all"),
            "launches": (admin, "/ui/launches"),
            "launch (20 workers)": (admin, f"/ui/launches/{ids['launch']}"),
            "runtimes": (admin, "/ui/runtimes"),
            "runtimes (user)": (user, "/ui/runtimes"),
        }
        times: dict[str, list[float]] = {name: [] for name in pages}
        for r in range(rounds):
            if r:
                time.sleep(3.2)  # past the page cache: every request reads
            for name, (client, path) in pages.items():
                times[name].append(client.page(path))
        return times
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pg", default=os.environ.get("HPCLAUNCH_TEST_PG_URL"))
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["HPCLAUNCH_HOME"] = tmp
        targets = [("SQLite", f"sqlite:///{Path(tmp) / 'bench.sqlite3'}")]
        if args.pg:
            targets.append(("PostgreSQL", args.pg))
        worst = 0.0
        for label, url in targets:
            started = time.perf_counter()
            times = measure(url, args.tasks, args.rounds, Path(tmp) / f"serve-{label}.log")
            print(
                f"\n{label}: {args.tasks:,} tasks, 1,000 workers, 50 launches "
                f"(filled and measured in {time.perf_counter() - started:.0f} s); "
                f"server time per page, ms, over {args.rounds} uncached requests"
            )
            print(f"  {'page':<26} {'median':>8} {'worst':>8}")
            for name, values in times.items():
                worst = max(worst, max(values))
                flag = "" if max(values) <= TARGET_MS else "  over target"
                print(f"  {name:<26} {statistics.median(values):8.1f} {max(values):8.1f}{flag}")
        verdict = "within" if worst <= TARGET_MS else "OVER"
        print(f"\nslowest page: {worst:.1f} ms ({verdict} the {TARGET_MS:.0f} ms target)")


if __name__ == "__main__":
    main()
