"""Run one local worker and record how it ended: ``python -m hpclaunch.schedulers._localrun``.

The local scheduler's job ID is this wrapper's PID. It stays alive next to the
worker so that, once the worker is gone, ``<exit_dir>/<pid>.exit`` says how it
ended (exit code, signal, cancelled) the way sacct would on a cluster.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print("usage: _localrun EXIT_DIR -- COMMAND...", file=sys.stderr)
        return 2
    exit_dir, command = argv[0], argv[2:]
    cancelled: list[int] = []

    def note(signum: int, _frame: object) -> None:
        # The whole process group got the signal; the worker handles it. Remember it.
        cancelled.append(signum)

    signal.signal(signal.SIGTERM, note)
    signal.signal(signal.SIGINT, note)
    # submit() starts us with these signals blocked so that a cancel arriving while the
    # interpreter starts up stays pending instead of killing us without a record.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})
    if cancelled:
        _record(exit_dir, f"signal {cancelled[0]}\ncancelled {cancelled[0]}\n")
        return 128 + cancelled[0]
    try:
        # The worker records this wrapper's PID as its job ID (the local job ID).
        env = {**os.environ, "HPCLAUNCH_LOCAL_JOB_ID": str(os.getpid())}
        child = subprocess.Popen(command, env=env)
    except OSError as exc:
        print(f"hpclaunch local: cannot start {command[0]!r}: {exc}", file=sys.stderr)
        _record(exit_dir, "exit 127\n")
        return 127
    while True:
        try:
            rc = child.wait()
            break
        except InterruptedError:  # pragma: no cover - PEP 475 retries for us
            continue
    line = f"signal {-rc}" if rc < 0 else f"exit {rc}"
    extra = f"\ncancelled {cancelled[0]}" if cancelled else ""
    _record(exit_dir, line + extra + "\n")
    return rc if rc >= 0 else 128 - rc


def _record(exit_dir: str, text: str) -> None:
    path = os.path.join(exit_dir, f"{os.getpid()}.exit")
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
