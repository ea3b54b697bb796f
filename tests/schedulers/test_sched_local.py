"""The local scheduler: real detached processes, their status and cancellation."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path

import pytest

from hpclaunch.errors import UserError
from hpclaunch.schedulers import ParseError, local


def wait_terminal(ids, log_dir, limit_s=30.0):
    deadline = time.monotonic() + limit_s
    states = []
    while time.monotonic() < deadline:
        states = local.status(ids, log_dir=log_dir)
        if all(s.terminal for s in states):
            return states
        time.sleep(0.1)
    pytest.fail(f"local jobs never finished: {states}")


def test_workers_run_detached_and_complete(tmp_path):
    code = "import os, time; print('index', os.environ['HPCLAUNCH_LOCAL_INDEX']); time.sleep(0.3)"
    ids = local.submit([sys.executable, "-c", code], 3, log_dir=tmp_path)
    assert len(set(ids)) == 3 and all(i.isdigit() for i in ids)
    # each worker is the leader of its own session: a terminal's Ctrl-C does not reach it
    for pid in ids:
        with contextlib.suppress(ProcessLookupError):  # already finished
            assert os.getsid(int(pid)) == int(pid)
    states = wait_terminal(ids, tmp_path)
    assert [s.state for s in states] == ["COMPLETED"] * 3
    assert [s.exit_code for s in states] == [0, 0, 0]
    outputs = sorted((tmp_path / f"worker-{i}.out").read_text().strip() for i in range(3))
    assert outputs == ["index 0", "index 1", "index 2"]


def test_failing_worker_is_failed_with_its_exit_code(tmp_path):
    code = "import sys; print('boom', file=sys.stderr); sys.exit(4)"
    (pid,) = local.submit([sys.executable, "-c", code], 1, log_dir=tmp_path, name="w")
    (state,) = wait_terminal([pid], tmp_path)
    assert state.state == "FAILED" and state.exit_code == 4 and state.reason == "exit code 4"
    assert "boom" in (tmp_path / "w-0.err").read_text()


def test_cancel_stops_the_whole_process_group(tmp_path):
    code = "import subprocess, time; subprocess.Popen(['sleep', '300']); time.sleep(300)"
    ids = local.submit([sys.executable, "-c", code], 2, log_dir=tmp_path)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # wait until both are really running
        if all(s.state == "RUNNING" for s in local.status(ids, log_dir=tmp_path)):
            break
        time.sleep(0.1)
    assert sorted(local.cancel(ids)) == sorted(ids)
    states = wait_terminal(ids, tmp_path)
    assert [s.state for s in states] == ["CANCELLED", "CANCELLED"]
    assert all("SIGTERM" in s.reason for s in states)
    for pid in ids:  # nothing of the group survives, grandchildren included
        with pytest.raises(ProcessLookupError):
            os.killpg(int(pid), 0)
    assert local.cancel(ids) == []  # cancelling again is a no-op


def test_unrelated_pid_is_not_reported_running(tmp_path):
    # PIDs get reused: a live process that is not one of our wrappers is not our job.
    (state,) = local.status([str(os.getpid())], log_dir=tmp_path)
    assert state.state == "UNKNOWN"
    assert local.cancel([str(os.getpid())]) == []


def test_exit_records():
    assert local.parse_exit_record("exit 0\n") == (0, None, None)
    assert local.parse_exit_record("signal 9\n") == (None, 9, None)
    assert local.parse_exit_record("exit 0\ncancelled 15\n") == (0, None, 15)
    assert local.state_from_exit("1", "signal 11\n").state == "FAILED"
    assert local.state_from_exit("1", "signal 9\n").state == "CANCELLED"
    assert local.state_from_exit("1", "exit 0\ncancelled 15\n").state == "CANCELLED"
    with pytest.raises(ParseError):
        local.parse_exit_record("cancelled 15\n")
    with pytest.raises(ParseError):
        local.parse_exit_record("exit zero")


def test_bad_requests_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="number of local workers"):
        local.submit(["true"], 0, log_dir=tmp_path)
    with pytest.raises(UserError, match="needs a command"):
        local.submit([], 1, log_dir=tmp_path)
    with pytest.raises(UserError, match="invalid local job ID"):
        local.status(["12; rm"], log_dir=tmp_path)


def test_the_local_scheduler_is_driven_by_commands_like_any_other(tmp_path, monkeypatch):
    """submit/status/cancel are argv run through the local transport, then parsed."""
    from hpclaunch.schedulers import get_scheduler
    from hpclaunch.transport.local import LocalTransport

    monkeypatch.setenv("HPCLAUNCH_HOME", str(tmp_path / "home"))
    scheduler, transport = get_scheduler("local"), LocalTransport()
    done = tmp_path / "hpcl-L-0.sh"
    done.write_text("echo hello from the job; exit 3\n")
    slow = tmp_path / "hpcl-L-1.sh"
    slow.write_text("sleep 300\n")
    ids = []
    for script in (done, slow):
        result = transport.run(scheduler.submit_argv(str(script)))
        assert result.ok, result.stderr
        ids.append(scheduler.parse_submit(result.stdout).job_id)
    found = transport.run(scheduler.find_by_name_argv("hpcl-L-1"))
    assert scheduler.parse_find_by_name(found.stdout) == [ids[1]]
    assert transport.run(scheduler.cancel_argv([ids[1]])).ok
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        states = scheduler.parse_status(transport.run(scheduler.status_argv(ids)).stdout)
        if all(s.terminal for s in states):
            break
        time.sleep(0.1)
    assert [(s.state, s.exit_code) for s in states] == [("FAILED", 3), ("CANCELLED", None)]
    out, _ = scheduler.log_paths(str(tmp_path), "hpcl-L-0", ids[0], None)
    assert Path(out).read_text() == "hello from the job\n"
