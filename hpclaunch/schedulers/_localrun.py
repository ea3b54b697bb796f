"""The local runner: ``python -m hpclaunch.schedulers._localrun``.

``EXIT_DIR -- COMMAND...`` runs one local job and records how it ended. The local
scheduler's job ID is this wrapper's PID. It stays alive next to the worker so
that, once the worker is gone, ``<exit_dir>/<pid>.exit`` says how it ended
(exit code, signal, cancelled) the way sacct would on a cluster.

``submit SCRIPT``, ``status PID...``, ``cancel PID...`` and ``find JOB_NAME`` are
the local scheduler's commands (see :class:`hpclaunch.schedulers.local.Local`);
only they import the rest of hpclaunch, so the wrapper itself stays small.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

USAGE = (
    "usage: _localrun EXIT_DIR -- COMMAND... | submit SCRIPT | status PID... | "
    "cancel PID... | find JOB_NAME"
)


def main(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[0] in ("submit", "status", "cancel", "find") and argv[1] != "--":
        return command(argv[0], argv[1:])
    if len(argv) < 3 or argv[1] != "--":
        print(USAGE, file=sys.stderr)
        return 2
    exit_dir, command_line = argv[0], argv[2:]
    # A record left by an earlier process with this PID is not ours.
    try:
        os.unlink(os.path.join(exit_dir, f"{os.getpid()}.exit"))
    except OSError:
        pass
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
        child = subprocess.Popen(command_line, env=env)
    except OSError as exc:
        print(f"hpclaunch local: cannot start {command_line[0]!r}: {exc}", file=sys.stderr)
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


def command(name: str, args: list[str]) -> int:
    """The local scheduler's commands; a user mistake is one line on stderr, exit 1."""
    from hpclaunch.errors import UserError
    from hpclaunch.schedulers import local

    try:
        if name == "submit":
            (script,) = args
            stem = script[:-3] if script.endswith(".sh") else script
            os.makedirs(local.exit_dir(), exist_ok=True)
            pid = local.start(
                ["bash", script], stem + ".out", stem + ".err", exit_dir=local.exit_dir()
            )
            print(pid)
        elif name == "status":
            sys.stdout.write("".join(local.describe(args, exit_dir=local.exit_dir())))
        elif name == "cancel":
            local.cancel(args)
        else:
            (job_name,) = args
            for pid in local.find_by_name(job_name):
                print(pid)
    except (UserError, OSError, ValueError) as exc:
        print(f"hpclaunch local {name}: {exc}", file=sys.stderr)
        return 1
    return 0


def _record(exit_dir: str, text: str) -> None:
    path = os.path.join(exit_dir, f"{os.getpid()}.exit")
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
