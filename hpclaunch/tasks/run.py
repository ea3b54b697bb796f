"""Run one claimed task and say how it ended.

Commands run in their own process group, so a forwarded signal or a timeout
reaches everything they started. Calls and pickled callables run in the
worker's main thread; their timeout and the stop grace period interrupt them
with SIGALRM (pure-Python code is interruptible this way; a C extension that
never returns to the interpreter is not, and is then caught by the lease).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import re
import signal
import subprocess
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hpclaunch.errors import UserError
from hpclaunch.paths import private_dir, private_file
from hpclaunch.queue.session import Claimed, Outcome
from hpclaunch.tasks.engines import Handler

TAIL_BYTES = 64 * 1024
KILL_AFTER = 5.0  # seconds between SIGTERM and SIGKILL on a timeout
# The longest timer setitimer takes everywhere (about 3 years); a larger task timeout
# is "no timeout" in practice and must never reach setitimer (it raises).
MAX_ITIMER = 10**8
# The worker's own credentials: a task never inherits them (it would print them
# into its stored output). HPCLAUNCH_DATABASE_FILE stays: it names a file, not a secret.
_CREDENTIAL = re.compile(r"HPCLAUNCH_DATABASE_URL|HPCLAUNCH_\w*(?:TOKEN|PASSWORD|SECRET|KEY)\w*")


def is_credential(name: str) -> bool:
    """Is ``name`` one of the worker's credentials (kept from every task)?"""
    return _CREDENTIAL.fullmatch(name) is not None


def task_environ(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment a command task starts with: the worker's, minus credentials."""
    env = {k: v for k, v in os.environ.items() if not is_credential(k)}
    env.update(extra or {})
    return env


@contextlib.contextmanager
def _credentials_hidden():
    """Hide the worker's credentials from ``os.environ`` while a call runs in-process."""
    names = [k for k in os.environ if k.startswith("HPCLAUNCH_") and is_credential(k)]
    hidden = {k: os.environ.pop(k) for k in names}
    try:
        yield
    finally:
        os.environ.update(hidden)


@dataclass
class Control:
    """What the worker's signal handlers and heartbeat tell a running task."""

    stop_signal: int | None = None
    grace_deadline: float | None = None
    lease_lost: str | None = None  # the claim token of the attempt that lost its lease
    call_running: bool = False
    _alarm_reason: str | None = field(default=None, repr=False)

    def stop_requested(self) -> bool:
        return self.stop_signal is not None

    def grace_over(self) -> bool:
        return self.grace_deadline is not None and time.monotonic() >= self.grace_deadline


class CallInterrupted(BaseException):
    """Raised inside a running call by SIGALRM (timeout or end of grace)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class RunResult:
    """Either an outcome to record, or a reason to put the task back untouched."""

    outcome: Outcome | None
    released: str | None = None


def run(
    task: Claimed,
    control: Control,
    log_root: Path,
    engines: Mapping[str, Handler] | None = None,
) -> RunResult:
    """Run one task; a task that cannot even be started fails itself, never the worker.

    ``engines``: this worker's handlers, for tasks of kind ``engine``.
    """
    log_dir = log_root / str(task.id)
    try:
        if task.kind == "command":
            return _run_command(task, json.loads(task.payload), control, log_dir)
        if task.kind in ("call", "pickle"):
            return _run_in_process(task, control, log_dir)
        if task.kind == "engine":
            return _run_engine(task, engines or {}, control, log_dir)
    except (ValueError, KeyError, TypeError) as exc:  # a malformed payload
        return RunResult(
            Outcome(
                ok=False, reason="bad_payload", error=f"cannot read the task's payload: {exc!r}"
            )
        )
    except (OSError, UserError) as exc:  # e.g. the log folder is full or read-only
        return RunResult(
            Outcome(
                ok=False,
                reason="log_error",
                error=f"cannot write the task's logs in {log_dir}: {exc}",
            )
        )
    return RunResult(Outcome(ok=False, reason="unknown_kind", error=f"unknown kind {task.kind!r}"))


def clean_text(text: str) -> str:
    """Output as the database can store it: no NUL, no lone surrogates."""
    return text.replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")


def tail(path: Path, limit: int = TAIL_BYTES) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - limit))
            return clean_text(fh.read().decode("utf-8", errors="replace"))
    except FileNotFoundError:
        return ""


def _run_engine(
    task: Claimed, engines: Mapping[str, Handler], control: Control, log_dir: Path
) -> RunResult:
    """An engine task through this worker's handler: a command gets the param as
    JSON in ``HPCLAUNCH_PARAM`` and the run index in ``HPCLAUNCH_RUN``; a function
    gets ``(param, run)``."""
    spec = json.loads(task.payload)
    found = engines.get(spec["engine"])
    if found is None:  # the claim matches engines, so only a changed worker gets here
        return RunResult(
            Outcome(
                ok=False,
                reason="no_engine",
                error=f"this worker has no handler for engine {spec['engine']!r}",
            )
        )
    param, index = spec.get("param"), int(spec.get("run", 0))
    if found.is_command:
        env = {"HPCLAUNCH_PARAM": json.dumps(param), "HPCLAUNCH_RUN": str(index)}
        return _run_command(task, {"shell": found.target, "env": env}, control, log_dir)
    return _run_in_process(task, control, log_dir, engine=(found.target, param, index))


def _run_command(task: Claimed, spec: dict, control: Control, log_dir: Path) -> RunResult:
    private_dir(log_dir, what="task log folder")
    out_path = log_dir / f"attempt-{task.attempt}.out"
    err_path = log_dir / f"attempt-{task.attempt}.err"
    env = task_environ(spec.get("env"))
    args = spec["shell"] if "shell" in spec else spec["argv"]
    try:
        with open(private_file(out_path), "wb") as out, open(private_file(err_path), "wb") as err:
            proc = subprocess.Popen(
                args,
                shell="shell" in spec,
                cwd=spec.get("cwd"),
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
    except OSError as exc:
        return RunResult(
            Outcome(
                ok=False,
                reason="cannot_start",
                error=f"cannot start {args!r}: {exc}",
                log_dir=str(log_dir),
            )
        )
    started = time.monotonic()
    forwarded = False
    timed_out = False
    while True:
        try:
            code = proc.wait(timeout=0.05)
            break
        except subprocess.TimeoutExpired:
            pass
        if control.stop_signal is not None and not forwarded:
            # USR1 is the scheduler's walltime warning to hpclaunch; the command gets
            # the conventional SIGTERM (what codes checkpoint on).
            sig = signal.SIGTERM if control.stop_signal == signal.SIGUSR1 else control.stop_signal
            _signal_group(proc, sig)
            forwarded = True
        lost = control.lease_lost is not None and control.lease_lost == task.token
        if control.grace_over() or lost:
            _signal_group(proc, signal.SIGKILL)
            proc.wait()
            if lost:
                return RunResult(Outcome(ok=False, reason="lease_lost", log_dir=str(log_dir)))
            return RunResult(None, released="stopped")
        if task.timeout and not timed_out and time.monotonic() - started > task.timeout:
            timed_out = True
            _signal_group(proc, signal.SIGTERM)
            try:
                code = proc.wait(timeout=KILL_AFTER)
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)
                code = proc.wait()
            break
    stdout_tail, stderr_tail = tail(out_path), tail(err_path)
    if not timed_out and code != 0 and (forwarded or _job_signalled(code, control)):
        # It ended because it was stopped (by us, or by the scheduler signalling the
        # whole job at once): an interruption, not the task's failure.
        return RunResult(None, released="stopped")
    if timed_out:
        return RunResult(
            Outcome(
                ok=False,
                reason="timeout",
                exit_code=code,
                stdout_tail=stdout_tail,
                stderr_tail=stderr_tail,
                log_dir=str(log_dir),
                error=f"timed out after {task.timeout:g} s",
            )
        )
    if code != 0:
        return RunResult(
            Outcome(
                ok=False,
                reason="exit_code",
                exit_code=code,
                stdout_tail=stdout_tail,
                stderr_tail=stderr_tail,
                log_dir=str(log_dir),
                error=f"exited with code {code}",
            )
        )
    return RunResult(
        Outcome(
            ok=True,
            exit_code=0,
            stdout_tail=stdout_tail,
            stderr_tail=stderr_tail,
            log_dir=str(log_dir),
        )
    )


STOP_CODES = {
    -signal.SIGTERM,
    -signal.SIGINT,
    -signal.SIGUSR1,
    128 + signal.SIGTERM,
    128 + signal.SIGINT,
    128 + signal.SIGUSR1,
}
SIGNAL_WINDOW = 1.0  # seconds: scancel/qdel signal the command and the worker together


def _job_signalled(code: int, control: Control) -> bool:
    """Did a stop signal kill the command because the whole job is being stopped?"""
    if code not in STOP_CODES:
        return False
    end = time.monotonic() + SIGNAL_WINDOW
    while control.stop_signal is None and time.monotonic() < end:
        time.sleep(0.02)
    return control.stop_signal is not None


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def _run_in_process(
    task: Claimed,
    control: Control,
    log_dir: Path,
    engine: tuple[str, Any, int] | None = None,
) -> RunResult:
    out, err = io.StringIO(), io.StringIO()
    result_json = result_pickled = None
    control.call_running = True
    delays = [task.timeout] if task.timeout and math.isfinite(task.timeout) else []
    if control.grace_deadline is not None:
        delays.append(max(control.grace_deadline - time.monotonic(), 0.001))
    delays = [d for d in delays if d < MAX_ITIMER]  # beyond that: no timer at all
    if delays:
        signal.setitimer(signal.ITIMER_REAL, min(delays))
    try:
        with (
            contextlib.redirect_stdout(out),
            contextlib.redirect_stderr(err),
            _credentials_hidden(),
        ):
            if engine is not None:  # an engine's function: (param, run)
                target, param, index = engine
                result_json = json.dumps(_resolve(target)(param, index))
            elif task.kind == "call":
                spec = json.loads(task.payload)
                fn = _resolve(spec["target"])
                value = fn(*spec.get("args", []), **spec.get("kwargs", {}))
                result_json = json.dumps(value)
            else:
                import cloudpickle

                fn, args, kwargs = cloudpickle.loads(task.pickled)
                result_pickled = cloudpickle.dumps(fn(*args, **kwargs))
    except CallInterrupted as exc:
        signal.setitimer(signal.ITIMER_REAL, 0)
        if exc.reason == "stopped":
            return RunResult(None, released="stopped")
        if exc.reason == "lease_lost":
            return _in_process_failure(
                task,
                log_dir,
                out,
                err,
                "lease_lost",
                "stopped: the task was canceled or given to another worker",
            )
        return _in_process_failure(
            task, log_dir, out, err, "timeout", f"timed out after {task.timeout:g} s"
        )
    except _ResolveError as exc:
        return _in_process_failure(task, log_dir, out, err, "import_error", str(exc))
    except (TypeError, ValueError) as exc:
        if result_json is None and result_pickled is None and _is_json_error(exc):
            return _in_process_failure(
                task,
                log_dir,
                out,
                err,
                "result_not_json",
                f"the result is not JSON-serialisable: {exc}",
            )
        return _in_process_failure(task, log_dir, out, err, "exception", traceback.format_exc())
    except Exception:  # noqa: BLE001 - the task's own failure, recorded with its traceback
        return _in_process_failure(task, log_dir, out, err, "exception", traceback.format_exc())
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        control.call_running = False
    stdout_tail, stderr_tail = _save_streams(task, log_dir, out, err)
    return RunResult(
        Outcome(
            ok=True,
            result=result_json,
            result_pickled=result_pickled,
            stdout_tail=stdout_tail,
            stderr_tail=stderr_tail,
            log_dir=str(log_dir) if stdout_tail or stderr_tail else None,
        )
    )


def _is_json_error(exc: Exception) -> bool:
    return "JSON serializable" in str(exc) or "Circular reference" in str(exc)


def _in_process_failure(task, log_dir, out, err, reason: str, error: str) -> RunResult:
    stdout_tail, stderr_tail = _save_streams(task, log_dir, out, err)
    return RunResult(
        Outcome(
            ok=False,
            reason=reason,
            error=error,
            stdout_tail=stdout_tail,
            stderr_tail=stderr_tail,
            log_dir=str(log_dir) if stdout_tail or stderr_tail else None,
        )
    )


def _save_streams(task: Claimed, log_dir: Path, out: io.StringIO, err: io.StringIO):
    """Write captured output to the task's log folder (only when there is any)."""
    tails = []
    for stream, suffix in ((out, "out"), (err, "err")):
        text = stream.getvalue()
        if text:
            private_dir(log_dir, what="task log folder")
            path = log_dir / f"attempt-{task.attempt}.{suffix}"
            with open(private_file(path), "w", encoding="utf-8", errors="backslashreplace") as fh:
                fh.write(text)
        tails.append(clean_text(text[-TAIL_BYTES:]) or None)
    return tails[0], tails[1]


class _ResolveError(Exception):
    pass


def _resolve(target: str):
    import importlib

    module_name, _, attr_path = target.partition(":")
    try:
        obj = importlib.import_module(module_name)
    except ImportError as exc:
        raise _ResolveError(f"cannot import {module_name!r} for {target}: {exc}") from None
    for part in attr_path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise _ResolveError(f"{module_name!r} has no attribute {attr_path!r}") from None
    if not callable(obj):
        raise _ResolveError(f"{target} is not callable")
    return obj
