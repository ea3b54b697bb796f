"""The ``local`` scheduler: workers as detached processes on this machine.

There is no batch system, so the "scheduler commands" are
``python -m hpclaunch.schedulers._localrun submit|status|cancel|find``, run through
the local transport like ``sbatch`` would be; :class:`Local` builds them and
parses what they print, so launches treat this machine like any cluster.
The process I/O they need is here: :func:`submit` starts detached processes
(new session, output to files) and returns their PIDs as job IDs;
:func:`status` looks at ``/proc`` (or ``os.kill(pid, 0)``) and at the exit
record each process leaves behind; :func:`cancel` sends SIGTERM to each process
group. The parsers are pure and kept apart.

Each job is ``python -m hpclaunch.schedulers._localrun EXIT_DIR -- COMMAND``: the
wrapper's PID is the job ID and, when the worker ends, it writes
``EXIT_DIR/<pid>.exit`` (``exit N`` or ``signal N``, plus ``cancelled N`` when
it was asked to stop), which is what lets status say COMPLETED, FAILED or
CANCELLED after the process is gone. Jobs submitted through :class:`Local`
keep their exit records in ``$HPCLAUNCH_HOME/local-jobs``, so that a PID is
all status needs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import shlex
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from hpclaunch import paths
from hpclaunch.errors import UserError
from hpclaunch.schedulers import (
    JobState,
    ParseError,
    SubmittedJob,
    check_ids,
    check_job_name,
    excerpt,
    signal_name,
)
from hpclaunch.schedulers.base import Scheduler

if TYPE_CHECKING:
    from hpclaunch.sites.model import Profile

NAME = "local"
ARRAY_MIN_ELEMENTS = 1
ARRAY_MAX_ELEMENTS_DEFAULT: int | None = None
JOB_ID_ENV = "HPCLAUNCH_LOCAL_JOB_ID"
ARRAY_JOB_ID_ENV = "HPCLAUNCH_LOCAL_JOB_ID"
ARRAY_INDEX_ENV = "HPCLAUNCH_LOCAL_INDEX"
WRAPPER_MODULE = "hpclaunch.schedulers._localrun"
RUNNER_MODULE = WRAPPER_MODULE  # the same module answers submit/status/cancel/find

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
    exit_dir: str | os.PathLike[str] | None = None,
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
        out, err = logs / f"{name}-{i}.out", logs / f"{name}-{i}.err"
        pids.append(start(command, out, err, exit_dir=exit_dir or logs, env=worker_env, cwd=cwd))
    return pids


def start(
    command: Sequence[str],
    out_path: str | os.PathLike[str],
    err_path: str | os.PathLike[str],
    *,
    exit_dir: str | os.PathLike[str],
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
) -> str:
    """Start one detached wrapper around ``command``; its PID is the job ID."""
    with open(out_path, "ab") as out, open(err_path, "ab") as err:
        proc = subprocess.Popen(
            [sys.executable, "-P", "-m", WRAPPER_MODULE, str(exit_dir), "--", *command],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            env=None if env is None else dict(env),
            cwd=cwd,
            start_new_session=True,
            close_fds=True,
            preexec_fn=_block_stop_signals,
        )
    return str(proc.pid)


def status(job_ids: Sequence[str], *, log_dir: str | os.PathLike[str]) -> list[JobState]:
    """RUNNING while the wrapper lives; afterwards what its exit record says."""
    return parse_status("".join(describe(job_ids, exit_dir=log_dir)))


def describe(job_ids: Sequence[str], *, exit_dir: str | os.PathLike[str]) -> list[str]:
    """One line per job for the runner's ``status``: ``PID alive``, ``PID gone`` or the record.

    A record's lines are joined with ``;`` (``PID exit 0;cancelled 15``).
    """
    ids = check_ids(job_ids, _PID_RE, "local")
    out: list[str] = []
    for job_id in ids:
        if _alive(int(job_id)):
            out.append(f"{job_id} alive\n")
            continue
        try:
            text = (Path(exit_dir) / f"{job_id}.exit").read_text(encoding="utf-8")
        except OSError:
            out.append(f"{job_id} gone\n")
            continue
        out.append(f"{job_id} record {';'.join(text.split(chr(10))).strip(';')}\n")
    return out


def parse_status(stdout: str) -> list[JobState]:
    """Parse the runner's ``status`` lines (see :func:`describe`)."""
    if isinstance(stdout, bytes):
        stdout = stdout.decode("utf-8", "replace")
    if not isinstance(stdout, str):
        raise ParseError(f"local status output must be text, got {type(stdout).__name__}")
    out: list[JobState] = []
    for line in stdout.splitlines():
        if not line.strip():
            continue
        m = re.fullmatch(r"\s*([1-9]\d{0,9}) (alive|gone|record (.*))\s*", line)
        if not m:
            raise ParseError(f"unexpected line in local status output: {excerpt(line)!r}")
        job_id, what, record = m.groups()
        if what == "alive":
            out.append(JobState(job_id, None, None, "RUNNING", None, None, "alive"))
        elif what == "gone":
            reason = "process gone without an exit record"
            out.append(JobState(job_id, None, None, "UNKNOWN", reason, None, "gone"))
        else:
            out.append(state_from_exit(job_id, record.replace(";", "\n")))
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


def find_by_name(job_name: str) -> list[str]:
    """PIDs of live wrappers running ``<job_name>.sh`` (what the runner's ``find`` prints)."""
    wanted = f"/{check_job_name(job_name)}.sh".encode()
    found: list[str] = []
    for proc in sorted(Path("/proc").glob("[0-9]*"), key=lambda p: int(p.name)):
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if WRAPPER_MODULE.encode() in cmdline and any(
            arg.endswith(wanted) for arg in cmdline.split(b"\0")
        ):
            found.append(proc.name)
    return found


def exit_dir() -> Path:
    """Where jobs submitted through :class:`Local` leave their exit records."""
    from hpclaunch.paths import home

    return home() / "local-jobs"


def _runner(*args: str) -> list[str]:
    return [sys.executable, "-P", "-m", RUNNER_MODULE, *args]


def _parse_pids(stdout: str, what: str) -> list[str]:
    if isinstance(stdout, bytes):
        stdout = stdout.decode("utf-8", "replace")
    if not isinstance(stdout, str):
        raise ParseError(f"local {what} output must be text, got {type(stdout).__name__}")
    pids = [line.strip() for line in stdout.splitlines() if line.strip()]
    for pid in pids:
        if not _PID_RE.fullmatch(pid):
            raise ParseError(f"local {what} printed an unexpected job ID {excerpt(pid)!r}")
    return pids


class Local(Scheduler):
    """No scheduler: each worker is a detached process, its PID the job ID.

    ``render`` shows one script that runs every worker; ``submit`` starts one
    process (one plain job) per worker, so each can be followed and cancelled.
    """

    name = "local"
    template = "local.sh.j2"
    ignored_resources = (
        "partition",
        "account",
        "qos",
        "constraint",
        "memory",
        "filesystems",
        "place",
    )
    takes_directives = False
    has_arrays = False
    array_min_elements = ARRAY_MIN_ELEMENTS
    array_max_elements_default = ARRAY_MAX_ELEMENTS_DEFAULT
    database_local_by_default = True
    jobs_share_host = True

    def packing(
        self, workers: int, workers_per_job: int, arrays_enabled: bool, *, submitting: bool
    ) -> tuple[int, bool]:
        return (1 if submitting else workers), False

    def submit_profile(self, profile: Profile) -> Profile:
        """Same machine: run the workers with the very installation that submits,
        whether or not its venv is on PATH; a workdir under ``~/.hpclaunch`` follows
        ``HPCLAUNCH_HOME`` (private folders, and what tests and users move)."""
        workdir = _under_home(profile.workdir)
        if workdir != profile.workdir:
            profile = dataclasses.replace(profile, workdir=workdir)
        if profile.worker.command != "hpclaunch":
            return profile
        command = f"{shlex.quote(sys.executable)} -P -m hpclaunch"
        return dataclasses.replace(
            profile, worker=dataclasses.replace(profile.worker, command=command)
        )

    def submit_argv(self, script_path: str, *, extra: Sequence[str] = ()) -> list[str]:
        """Start ``bash SCRIPT`` detached; prints its PID. Output: ``SCRIPT`` stem + .out/.err."""
        if not script_path or not isinstance(script_path, str):
            raise UserError("no script path given to the local runner")
        return _runner("submit", script_path, *[str(e) for e in extra])

    def parse_submit(self, stdout: str) -> SubmittedJob:
        pids = _parse_pids(stdout, "submit")
        if len(pids) != 1:
            raise ParseError(f"local submit printed {len(pids)} job IDs, expected one")
        return SubmittedJob(job_id=pids[0])

    def status_argv(self, job_ids: Sequence[str]) -> list[str]:
        return _runner("status", *check_ids(job_ids, _PID_RE, "local"))

    def parse_status(self, stdout: str) -> list[JobState]:
        return parse_status(stdout)

    def accounting_argv(self, job_ids: Sequence[str]) -> list[str]:
        """Finished local jobs are in their exit records, which status already reads."""
        return self.status_argv(job_ids)

    def parse_accounting(self, stdout: str) -> list[JobState]:
        return parse_status(stdout)

    def cancel_argv(self, job_ids: Sequence[str], element: int | None = None) -> list[str]:
        """SIGTERM each job's process group (local jobs are never arrays)."""
        return _runner("cancel", *check_ids(job_ids, _PID_RE, "local"))

    def find_by_name_argv(self, job_name: str) -> list[str]:
        return _runner("find", check_job_name(job_name))

    def parse_find_by_name(self, stdout: str) -> list[str]:
        return _parse_pids(stdout, "find")

    def log_paths(
        self, log_dir: str, job_name: str, job_id: str, index: int | None
    ) -> tuple[str, str]:
        return self._log_pair(log_dir, job_name)


DEFAULT_HOME = "~/.hpclaunch"


def _under_home(workdir: str) -> str:
    """``~/.hpclaunch/...`` re-rooted at ``HPCLAUNCH_HOME`` when that is set."""
    if not os.environ.get("HPCLAUNCH_HOME"):
        return workdir
    if workdir == DEFAULT_HOME or workdir.startswith(DEFAULT_HOME + "/"):
        return str(paths.home()) + workdir[len(DEFAULT_HOME) :]
    return workdir
