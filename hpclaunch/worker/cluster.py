"""``hpclaunch cluster N``: N local workers under one supervisor (Simmate's start-cluster)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys


def run_cluster(count: int, database_url: str | None, worker_argv: list[str]) -> int:
    """Start ``count`` worker processes; forward stop signals; wait for all of them.

    Exit code: 0 when every worker exited cleanly, else the first non-zero code.
    """
    base = [sys.executable, "-P", "-m", "hpclaunch"]  # -P: never a ./hpclaunch folder
    # The URL travels in the environment, never on the command line: argv is
    # world-readable (ps, /proc/PID/cmdline) and the URL may hold a password.
    url_env = {"HPCLAUNCH_DATABASE_URL": database_url} if database_url else {}
    procs: list[subprocess.Popen] = []
    stopping = False

    def forward(signum, frame):
        nonlocal stopping
        stopping = True
        for proc in procs:
            if proc.poll() is None:
                try:
                    # Each worker gets SIGTERM once; its own grace period applies.
                    proc.send_signal(signal.SIGTERM)
                except ProcessLookupError:
                    pass

    old = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            for index in range(count):
                if stopping:
                    break  # told to stop while starting: start no more
                env = {**os.environ, **url_env, "HPCLAUNCH_CLUSTER_INDEX": str(index)}
                # Own process group: a terminal's Ctrl-C reaches only the supervisor,
                # which stops the workers exactly once.
                procs.append(
                    subprocess.Popen(
                        base + ["worker", *worker_argv], env=env, start_new_session=True
                    )
                )
        except BaseException:
            forward(signal.SIGTERM, None)  # no orphans outside the terminal's reach
            raise
        codes = []
        for proc in procs:
            while True:
                try:
                    codes.append(proc.wait(timeout=0.5))
                    break
                except subprocess.TimeoutExpired:
                    continue
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
    bad = [c for c in codes if c != 0]
    return bad[0] if bad else 0
