"""The SLURM adapter against the real local cluster: submit, status, find, cancel."""

from __future__ import annotations

import os
import subprocess
import time
import uuid

import pytest

from hpclaunch.schedulers import get_scheduler

slurm = get_scheduler("slurm")
pytestmark = pytest.mark.slurm


def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


def poll_status(job_ids: list[str], done, limit_s: float = 90.0):
    """Poll squeue through the adapter until done(states) holds; fail after limit_s."""
    deadline = time.monotonic() + limit_s
    states = []
    while time.monotonic() < deadline:
        res = run(slurm.status_argv(job_ids))
        assert res.returncode == 0, res.stderr
        states = slurm.parse_status(res.stdout)
        if done(states):
            return states
        time.sleep(1)
    pytest.fail(f"jobs {job_ids} never reached the expected states; last seen: {states}")


@pytest.fixture
def script(tmp_path):
    path = tmp_path / "element.sh"
    path.write_text('#!/bin/bash\necho "element ${SLURM_ARRAY_TASK_ID}"\nsleep 1\n')
    path.chmod(0o755)
    return path


@pytest.fixture
def submitted():
    """Job IDs submitted by a test; whatever is left is scancel'ed afterwards."""
    ids: list[str] = []
    yield ids
    if ids:
        run(slurm.cancel_argv(ids))


def submit(script, name: str, *extra: str) -> str:
    partition = os.environ.get("HPCLAUNCH_TEST_SLURM_PARTITION")
    opts = ["-J", name, "-o", os.devnull, "--time=00:05:00", *extra]
    if partition:
        opts.append(f"--partition={partition}")
    res = run(slurm.submit_argv(str(script), extra=opts))
    assert res.returncode == 0, res.stderr
    return slurm.parse_submit(res.stdout).job_id


def test_array_runs_and_every_element_is_tracked(slurm_cluster, script, submitted):
    name = f"hpcl-test-{uuid.uuid4().hex[:8]}"
    job_id = submit(script, name, "--array=0-2")
    submitted.append(job_id)

    # The unique job name finds the array again (what a retry after a dropped link does).
    found = run(slurm.find_by_name_argv(name))
    assert slurm.parse_find_by_name(found.stdout) == [job_id]

    states = poll_status([job_id], lambda st: len(st) == 3 and all(s.terminal for s in st))
    assert sorted(s.array_index for s in states) == [0, 1, 2]
    assert {s.array_job_id for s in states} == {job_id}
    assert {s.state for s in states} == {"COMPLETED"}


def test_cancel_one_element_then_the_rest(slurm_cluster, script, submitted):
    name = f"hpcl-test-{uuid.uuid4().hex[:8]}"
    job_id = submit(script, name, "--array=0-3", "--hold")
    submitted.append(job_id)

    pending = poll_status([job_id], lambda st: len(st) == 4)
    assert {s.state for s in pending} == {"PENDING"}
    assert {s.reason for s in pending} == {"JobHeldUser"}

    assert run(slurm.cancel_argv([job_id], element=2)).returncode == 0
    # A pending element that never started has no record of its own: scancel removes its
    # index from the array, so it drops out of squeue rather than showing CANCELLED.
    states = poll_status(
        [job_id],
        lambda st: (
            all(s.state == "CANCELLED" for s in st if s.array_index == 2)
            and len([s for s in st if s.state == "PENDING"]) == 3
        ),
    )
    assert {s.array_index for s in states if s.state == "PENDING"} == {0, 1, 3}

    assert run(slurm.cancel_argv([job_id])).returncode == 0
    states = poll_status([job_id], lambda st: len(st) == 3 and all(s.terminal for s in st))
    assert {s.state for s in states} == {"CANCELLED"}
    assert sorted(s.array_index for s in states) == [0, 1, 3]


def test_failing_job_is_failed_with_reason(slurm_cluster, tmp_path, submitted):
    path = tmp_path / "fail.sh"
    path.write_text("#!/bin/bash\nexit 3\n")
    job_id = submit(path, f"hpcl-test-{uuid.uuid4().hex[:8]}")
    submitted.append(job_id)
    (state,) = poll_status([job_id], lambda st: len(st) == 1 and st[0].terminal)
    assert state.state == "FAILED" and state.reason == "NonZeroExitCode"
    assert state.array_index is None
