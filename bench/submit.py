"""Submission benchmarks, on the local SLURM and the test sshd.

    bash scripts/testenv.sh up && source /tmp/hpclaunch-testenv/env.sh
    python bench/submit.py [--pg URL] [--runs 5] [--only ssh,slurm]

Prints:
* ssh: wall time of `hpclaunch submit --workers 1000` over loopback SSH
  (max_array_size 300, elements held with --begin so nothing runs), with the
  number of SSH connections and scheduler calls it made;
* slurm: 200 no-op tasks from `submit` (16 draining workers) to all done, beside
  a bare 16-element `sbatch --array` whose elements run `python3 -c pass`, in the
  same run, alternating (goal: ratio <= 2); with where our time goes (submit
  returned, first and last worker registered, first claim, all done).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402


def hpclaunch() -> str:
    exe = Path(sys.executable).parent / "hpclaunch"
    if not exe.exists():
        raise SystemExit(f"no hpclaunch console script beside {sys.executable}")
    return str(exe)


def run(*args: str, env: dict) -> dict:
    out = subprocess.run([hpclaunch(), *args, "--json"], capture_output=True, text=True, env=env)
    if out.returncode:
        raise SystemExit(f"hpclaunch {' '.join(args)} failed: {out.stderr.strip()}")
    return json.loads(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--pg", default=os.environ.get("HPCLAUNCH_TEST_PG_URL"))
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--only", default="ssh,slurm")
    args = parser.parse_args()
    pg, runs, parts = args.pg, args.runs, set(args.only.split(","))
    needed = (
        "SLURM_CONF",
        "HPCLAUNCH_TEST_SSH_PORT",
        "HPCLAUNCH_TEST_SSH_KEY",
        "HPCLAUNCH_TEST_KNOWN_HOSTS",
    )
    if not pg or any(n not in os.environ for n in needed):
        raise SystemExit(
            "source the test environment first (scripts/testenv.sh up; "
            "source /tmp/hpclaunch-testenv/env.sh)"
        )
    work = Path(tempfile.mkdtemp(prefix="hpclaunch-bench-submit-"))
    home = work / "laptop"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "config").write_text(
        "Host bench-cluster\n"
        f"    HostName {os.environ.get('HPCLAUNCH_TEST_SSH_HOST', '127.0.0.1')}\n"
        f"    Port {os.environ['HPCLAUNCH_TEST_SSH_PORT']}\n"
        f"    User {os.environ.get('HPCLAUNCH_TEST_SSH_USER', 'root')}\n"
        f"    IdentityFile {os.environ['HPCLAUNCH_TEST_SSH_KEY']}\n"
        "    IdentitiesOnly yes\n"
        f"    UserKnownHostsFile {os.environ['HPCLAUNCH_TEST_KNOWN_HOSTS']}\n"
    )
    env = {
        **os.environ,
        "HOME": str(home),
        "HPCLAUNCH_HOME": str(work / "hpclaunch"),
        "HPCLAUNCH_DATABASE_URL": pg,
        "HPCLAUNCH_LOG_DIR": str(work / "logs"),
    }
    from hpclaunch.queue import driver, migrate

    migrate.upgrade(pg)
    conn = driver.connect(pg)
    conn.execute(
        "TRUNCATE launch_elements, launch_jobs, launches, task_attempts, tasks, "
        "workers, batches RESTART IDENTITY CASCADE"
    )
    conn.close()
    common = [
        "--set",
        f"workdir={work / 'cluster'}",
        "--set",
        f"worker.command={hpclaunch()}",
        "--set",
        f"database.url={pg}",
    ]

    if "ssh" in parts:
        bench_ssh(env, common)
    if "slurm" in parts:
        bench_slurm(work, env, common, pg, runs)
    shutil.rmtree(work, ignore_errors=True)


def bench_ssh(env: dict, common: list[str]) -> None:
    t0 = time.perf_counter()
    big = run(
        "submit",
        "--site",
        "tests-slurm-ssh",
        "--set",
        "host=bench-cluster",
        "--workers",
        "1000",
        *common,
        "--set",
        "arrays.max_array_size=300",
        "--set",
        "extra_directives=[--begin=now+1hour]",
        env=env,
    )
    wall = time.perf_counter() - t0
    status = run("status", "--launch", big["launch_id"], env=env)
    run("cancel", big["launch_id"], env=env)
    print(
        f"submit --workers 1000 over loopback SSH: {wall:.2f} s wall, "
        f"{big['ssh_connections']} SSH connection(s), {big['scheduler_calls']} sbatch call(s), "
        f"{len(big['jobs'])} arrays; status: {status['scheduler_calls']} squeue call(s)"
    )


def bare_array(work: Path, env: dict) -> float:
    """Submit to done of a 16-element array of `python3 -c pass` (same resources
    as the tests-slurm profile); each element leaves a marker when done."""
    marks = work / f"bare-{time.monotonic_ns()}"
    marks.mkdir()
    t0 = time.perf_counter()
    subprocess.run(
        [
            "sbatch",
            "--parsable",
            "--array=0-15",
            "--cpus-per-task=1",
            "--mem=100M",
            "--time=00:10:00",
            "-o",
            "/dev/null",
            "-e",
            "/dev/null",
            "--wrap",
            f"python3 -c pass; touch {marks}/$SLURM_ARRAY_TASK_ID",
        ],
        check=True,
        capture_output=True,
        env=env,
    )
    while len(list(marks.iterdir())) < 16:
        if time.perf_counter() - t0 > 300:
            raise SystemExit("the bare array did not finish in 300 s")
        time.sleep(0.01)
    return time.perf_counter() - t0


def ours(work: Path, env: dict, common: list[str], pg: str) -> dict[str, float]:
    """Submit to all done of 200 no-op tasks with 16 draining workers, and when
    each step happened (seconds after submit started)."""
    from hpclaunch.queue import driver

    conn = driver.connect(pg)
    conn.execute("DELETE FROM task_attempts")
    conn.execute("DELETE FROM tasks")
    conn.execute("DELETE FROM batches")
    conn.execute("UPDATE workers SET status = 'exited' WHERE status = 'running'")
    batch = work / "noop.yaml"
    batch.write_text("name: noop\ncall: os:getpid\nn_runs: 200\n")
    subprocess.run(
        [hpclaunch(), "enqueue", "--file", str(batch)], check=True, env=env, capture_output=True
    )
    before = conn.one("SELECT COALESCE(MAX(id), 0) FROM workers")[0]
    wall0, t0 = time.time(), time.perf_counter()
    run(
        "submit",
        "--site",
        "tests-slurm",
        "--workers",
        "16",
        *common,
        "--set",
        "worker.mode=draining",
        env=env,
    )
    submitted = time.perf_counter() - t0
    while True:
        done = conn.one("SELECT COUNT(*) FROM tasks WHERE status = 'completed'")[0]
        if done == 200:
            break
        if time.perf_counter() - t0 > 300:
            raise SystemExit(f"only {done} of 200 tasks done after 300 s")
        time.sleep(0.01)
    total = time.perf_counter() - t0
    first_reg, last_reg = conn.one(
        "SELECT MIN(started_at), MAX(started_at) FROM workers WHERE id > :id", {"id": before}
    )
    first_claim = conn.one("SELECT MIN(started_at) FROM task_attempts")[0]
    # Let the workers leave before the next run (they exit on the empty queue).
    end = time.perf_counter() + 120
    while (
        time.perf_counter() < end
        and conn.one(
            "SELECT COUNT(*) FROM workers WHERE id > :id AND status = 'running'", {"id": before}
        )[0]
    ):
        time.sleep(0.1)
    conn.close()
    return {
        "submit returned": submitted,
        "first worker registered": first_reg - wall0,
        "first claim": first_claim - wall0,
        "last worker registered": last_reg - wall0,
        "all done": total,
    }


def spread(values: list[float]) -> str:
    return (
        f"{statistics.median(values):.2f} s ({min(values):.2f}-{max(values):.2f}, "
        f"{len(values)} runs)"
    )


def bench_slurm(work: Path, env: dict, common: list[str], pg: str, runs: int) -> None:
    bare: list[float] = []
    phases: dict[str, list[float]] = {}
    for _ in range(runs):  # alternating, so load on the machine hits both alike
        bare.append(bare_array(work, env))
        for name, value in ours(work, env, common, pg).items():
            phases.setdefault(name, []).append(value)
    ratio = statistics.median(phases["all done"]) / statistics.median(bare)
    print("200 no-op tasks on the local SLURM, 16 draining workers, submit to all done")
    print(f"  bare 16-element sbatch --array of python3 -c pass  {spread(bare)}  [reference]")
    print(
        f"  hpclaunch submit to all done                       {spread(phases['all done'])}  "
        f"ratio {ratio:.2f} (goal <= 2: {'met' if ratio <= 2 else 'NOT met'})"
    )
    for name in ("submit returned", "first worker registered", "first claim"):
        print(f"    {name:28} at {spread(phases[name])}")
    print(f"    {'last worker registered':28} at {spread(phases['last worker registered'])}")


if __name__ == "__main__":
    main()
