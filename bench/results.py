"""Peak RSS of `hpclaunch results` on a large batch (default 100,000 tasks).

    python bench/results.py [--pg URL] [--tasks N] [--format csv|json|jsonl]

Fills a fresh queue (SQLite, or PostgreSQL with --pg) with one finished batch whose
every task has a flat JSON result, then runs `hpclaunch results` in a child process
writing to a file and prints the child's peak RSS (``ru_maxrss``) and the rows per
second. Streaming keeps the peak near the interpreter's baseline whatever N is;
compare N=10,000 with N=100,000.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def fill(url: str, n: int) -> int:
    from hpclaunch.queue import db, migrate, store
    from hpclaunch.queue.batches import parse_batch

    if not url.startswith("sqlite"):
        migrate.upgrade(url)
    conn = db.connect(url)
    try:
        store.insert_batch(conn, parse_batch(f"name: bench\ncommand: 'true'\nn_runs: {n}\n"))
        with conn.transaction():  # as if workers had run them
            conn.execute(
                "UPDATE tasks SET status = 'completed', attempts = 1, exit_code = 0, "
                "started_at = created_at, finished_at = created_at + 1, "
                "result = '{\"v\": ' || CAST(id AS TEXT) || ', \"ok\": true}' "
                "WHERE batch_id = (SELECT MAX(id) FROM batches)"
            )
        batch = conn.one("SELECT MAX(id) FROM batches")[0]
    finally:
        conn.close()
    return batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pg", default=None, help="a PostgreSQL URL (default: SQLite)")
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--format", default="csv", choices=["csv", "json", "jsonl"])
    parser.add_argument("--fill", metavar="URL", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.fill:
        print(fill(args.fill, args.tasks))
        return
    with tempfile.TemporaryDirectory() as tmp:
        url = args.pg or f"sqlite:///{Path(tmp) / 'queue.sqlite3'}"
        # Filled in a child of its own: a fork inherits (and Linux keeps across exec)
        # its parent's peak RSS, which would hide the results command's own.
        filled = subprocess.run(
            [sys.executable, __file__, "--fill", url, "--tasks", str(args.tasks)],
            check=True,
            capture_output=True,
            text=True,
            env={**os.environ, "HPCLAUNCH_HOME": tmp},
        )
        batch = int(filled.stdout.split()[-1])
        out = Path(tmp) / f"results.{args.format}"
        started = time.perf_counter()
        # The child reports its own peak (RUSAGE_CHILDREN would also count the fill's
        # helpers): the results command alone, start to exit.
        code = (
            "import atexit, resource, sys\n"
            "atexit.register(lambda: print('PEAK', resource.getrusage("
            "resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr))\n"
            "from hpclaunch.cli import main\n"
            f"main({['--database', url, 'results', str(batch)]!r}"
            f" + {['--format', args.format, '--output', str(out)]!r})"
        )
        child = subprocess.run(
            [sys.executable, "-c", code],
            check=True,
            capture_output=True,
            text=True,
            env={**os.environ, "HPCLAUNCH_HOME": tmp},
        )
        elapsed = time.perf_counter() - started
        peak_kib = int(child.stderr.split("PEAK")[-1].split()[0])
        rows = sum(1 for _ in out.open()) - (1 if args.format == "csv" else 0)
        print(
            f"{args.tasks} tasks -> {rows} lines of {args.format}: peak RSS "
            f"{peak_kib / 1024:.1f} MiB, {elapsed:.1f} s ({args.tasks / elapsed:,.0f} rows/s)"
        )


if __name__ == "__main__":
    main()
