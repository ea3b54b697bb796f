"""Submission benchmarks (issue 4), on the local SLURM and the test sshd.

    bash scripts/testenv.sh up && source /tmp/hpclaunch-testenv/env.sh
    python bench/submit.py [--pg URL]

Prints:
* wall time of `hpclaunch submit --workers 1000` over loopback SSH
  (max_array_size 300, elements held with --begin so nothing runs), with the
  number of SSH connections and scheduler calls it made;
* the time from `submit` to all of 200 no-op tasks done with 16 draining workers
  on the local SLURM (target <= 2 s on the 2-core reference machine).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]

import json  # noqa: E402
import os  # noqa: E402
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
    pg = os.environ.get("HPCLAUNCH_TEST_PG_URL")
    if "--pg" in sys.argv:
        pg = sys.argv[sys.argv.index("--pg") + 1]
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

    batch = work / "noop.yaml"
    batch.write_text("name: noop\ncall: os:getpid\nn_runs: 200\n")
    subprocess.run(
        [hpclaunch(), "enqueue", "--file", str(batch)], check=True, env=env, capture_output=True
    )
    conn = driver.connect(pg)
    t0 = time.perf_counter()
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
        time.sleep(0.02)
    total = time.perf_counter() - t0
    conn.close()
    print(
        f"200 no-op tasks, 16 draining workers on the local SLURM: {total:.2f} s from submit "
        f"to all done (submit itself {submitted:.2f} s)  (target <= 2 s)"
    )


if __name__ == "__main__":
    main()
