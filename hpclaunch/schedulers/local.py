"""The ``local`` scheduler: workers as detached processes on this machine.

There is no scheduler command to run, so this module is the one adapter that
does I/O: :func:`submit` starts N detached processes (new session, output to
files) and returns their PIDs as job IDs; :func:`status` looks at ``/proc``
(or ``os.kill(pid, 0)``) and at the exit record each process leaves behind;
:func:`cancel` sends SIGTERM to each process group. The exit-record parser is
pure and kept apart.

Each job is ``python -m hpclaunch.schedulers._localrun EXIT_DIR -- COMMAND``: the
wrapper's PID is the job ID and, when the worker ends, it writes
``EXIT_DIR/<pid>.exit`` (``exit N`` or ``signal N``, plus ``cancelled N`` when
it was asked to stop), which is what lets status say COMPLETED, FAILED or
CANCELLED after the process is gone.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from hpclaunch.errors import UserError
from hpclaunch.schedulers import JobState, ParseError, check_ids, excerpt, signal_name

NAME = "local"
ARRAY_MIN_ELEMENTS = 1
ARRAY_MAX_ELEMENTS_DEFAULT: int | None = None
JOB_ID_ENV = "HPCLAUNCH_LOCAL_JOB_ID"
ARRAY_JOB_ID_ENV = "HPCLAUNCH_LOCAL_JOB_ID"
ARRAY_INDEX_ENV = "HPCLAUNCH_LOCAL_INDEX"
WRAPPER_MODULE = "hpclaunch.schedulers._localrun"

_PID_RE = re.compile(r"^[1-9]\d{0,9}$")


# --- pure ------------------------------------------------------------------------------


def parse_exit_record(text: str) -> tuple[int | None, int | None, int | None]:
    """``(exit_code, signal, cancel_signal)`` from an exit record written by the wrapper."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    if not isinstance(text, str):
        raise ParseError(f"exit record must be text, got {type(text).__name__}")
    code = sig = cancel = None
    seen = False
    for line in text.splitlines():
        if not line.strip():
            continue
        m = re.fullmatch(r"\s*(exit|signal|cancelled)\s+(\d{1,4})\s*", line)
        if not m:
            raise ParseError(f"unexpected line in a local exit record: {excerpt(line)!r}")
        value = int(m.group(2))
        if m.group(1) == "exit":
            code, seen = value, True
        elif m.group(1) == "signal":
            sig, seen = value, True
        else:
            cancel = value
    if not seen:
        raise ParseError(f"local exit record has no 'exit N' or 'signal N' line: {excerpt(text)!r}")
    return code, sig, cancel


def state_from_exit(job_id: str, text: str) -> JobState:
    """The JobState of a finished local job from its exit record."""
    code, sig, cancel = parse_exit_record(text)
    raw = " ".join(text.split())
    if cancel is not None:
        return JobState(
            job_id, None, None, "CANCELLED", f"cancelled with {signal_name(cancel)}", code, raw
        )
    if sig is not None:
        state = "CANCELLED" if sig in (signal.SIGTERM, signal.SIGKILL) else "FAILED"
        return JobState(job_id, None, None, state, f"killed by {signal_name(sig)}", None, raw)
    if code == 0:
        return JobState(job_id, None, None, "COMPLETED", None, 0, raw)
    return JobState(job_id, None, None, "FAILED", f"exit code {code}", code, raw)


# --- process I/O -----------------------------------------------------------------------


def submit(
    command: Sequence[str],
    count: int,
    *,
    log_dir: str | os.PathLike[str],
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    name: str = "worker",
) -> list[str]:
    """Start ``count`` detached copies of ``command``; return their PIDs (the job IDs).

    Copy ``i`` gets ``HPCLAUNCH_LOCAL_INDEX=i`` and writes ``LOG_DIR/NAME-i.out``
    and ``.err``. Processes start in their own session, so they outlive the
    caller and a terminal's Ctrl-C does not reach them.
    """
    if not command or not all(isinstance(c, str) and c for c in command):
        raise UserError("local submit needs a command to run (a non-empty list of strings)")
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise UserError(f"invalid number of local workers {count!r}: use a whole number >= 1")
    if not re.fullmatch(r"[A-Za-z0-9_.+-]{1,100}", name):
        raise UserError(f"invalid local job name {name!r}: use letters, digits, '_', '.', '+', '-'")
    logs = Path(log_dir)
    try:
        logs.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create the local log directory {logs}: {exc.strerror}") from None
    base_env = dict(os.environ if env is None else env)
    pids: list[str] = []
    for i in range(count):
        worker_env = {**base_env, ARRAY_INDEX_ENV: str(i)}
        with (
            open(logs / f"{name}-{i}.out", "ab") as out,
            open(logs / f"{name}-{i}.err", "ab") as err,
        ):
            proc = subprocess.Popen(
                [sys.executable, "-m", WRAPPER_MODULE, str(logs), "--", *command],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=worker_env,
                cwd=cwd,
                start_new_session=True,
                close_fds=True,
                preexec_fn=_block_stop_signals,
            )
        pids.append(str(proc.pid))
    return pids


def status(job_ids: Sequence[str], *, log_dir: str | os.PathLike[str]) -> list[JobState]:
    """RUNNING while the wrapper lives; afterwards what its exit record says."""
    ids = check_ids(job_ids, _PID_RE, "local")
    out: list[JobState] = []
    for job_id in ids:
        pid = int(job_id)
        if _alive(pid):
            out.append(JobState(job_id, None, None, "RUNNING", None, None, "alive"))
            continue
        record = Path(log_dir) / f"{pid}.exit"
        try:
            text = record.read_text(encoding="utf-8")
        except OSError:
            out.append(
                JobState(
                    job_id,
                    None,
                    None,
                    "UNKNOWN",
                    "process gone without an exit record",
                    None,
                    "gone",
                )
            )
            continue
        out.append(state_from_exit(job_id, text))
    return out


def cancel(job_ids: Sequence[str]) -> list[str]:
    """SIGTERM each live job's process group; return the IDs that were signalled."""
    ids = check_ids(job_ids, _PID_RE, "local")
    done: list[str] = []
    for job_id in ids:
        pid = int(job_id)
        if not _alive(pid):
            continue
        try:
            os.killpg(pid, signal.SIGTERM)
            done.append(job_id)
        except ProcessLookupError:
            continue
        except PermissionError:
            raise UserError(
                f"not allowed to stop local job {job_id}: it belongs to another user"
            ) from None
    return done


def _block_stop_signals() -> None:
    """In the forked child before exec: hold SIGTERM/SIGINT until the wrapper can record them."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})


def _alive(pid: int) -> bool:
    """Is ``pid`` still one of our wrappers (and not a zombie or a reused PID)?"""
    # Reap it if it is our own child, so it does not linger as a zombie.
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)
    proc = Path("/proc") / str(pid)
    if Path("/proc/self").exists():
        try:
            stat = (proc / "stat").read_text()
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            return False
        state = stat.rsplit(")", 1)[-1].split()[0] if ")" in stat else "?"
        return state not in ("Z", "X") and WRAPPER_MODULE.encode() in cmdline
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
