"""One GPU set per worker slot: rendered scripts run with bash and a fake device list.

The worker command is replaced by a tiny script that prints the device
variable it was started with, so each worker slot's devices are read back
from the workers' own output, as the batch shell really set them.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from render_helpers import plan

from hpclaunch.errors import UserError


def fake_worker(tmp_path: Path, variable: str) -> Path:
    exe = tmp_path / "fake-worker"
    exe.write_text(f'#!/bin/sh\necho "slot-devices=${{{variable}:-unset}}"\n')
    exe.chmod(0o755)
    return exe


def run_script(tmp_path: Path, script: str, env: dict[str, str]) -> list[str]:
    """Run a rendered script with bash; the devices each worker printed."""
    path = tmp_path / "job.sh"
    path.write_text(script)
    base = {k: v for k, v in os.environ.items() if not k.endswith("VISIBLE_DEVICES")}
    base.pop("ZE_AFFINITY_MASK", None)
    done = subprocess.run(
        ["bash", str(path)],
        env={**base, "HPCLAUNCH_DATABASE_URL": "postgresql://u@h/db", **env},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    lines = []
    for out in (tmp_path / "work").rglob("*.workers.out"):
        lines += [x.split("=", 1)[1] for x in out.read_text().splitlines()]
    return sorted(lines)


def gpu_plan(tmp_path, site, workers, variable, **flags):
    exe = fake_worker(tmp_path, variable)
    return plan(
        site,
        workers=workers,
        sets=[f"workdir={tmp_path / 'work'}", f"worker.command={exe}"],
        **flags,
    )


def test_perlmutter_four_workers_get_the_four_devices_the_job_was_given(home, tmp_path):
    p = gpu_plan(tmp_path, "perlmutter-gpu", 4, "CUDA_VISIBLE_DEVICES", account="m1_g")
    (chunk,) = p.chunks
    assert chunk.workers_per_element == 4
    # The job was handed devices 4-7 (not 0-3): each worker gets one of them.
    assert run_script(tmp_path, chunk.script, {"CUDA_VISIBLE_DEVICES": "4,5,6,7"}) == [
        "4",
        "5",
        "6",
        "7",
    ]


def test_frontier_uses_rocr_and_the_whole_node_when_nothing_is_inherited(home, tmp_path):
    p = gpu_plan(tmp_path, "frontier", 8, "ROCR_VISIBLE_DEVICES", account="abc123")
    (chunk,) = p.chunks
    assert "ROCR_VISIBLE_DEVICES=" in chunk.script and "CUDA_VISIBLE_DEVICES=" not in chunk.script
    assert run_script(tmp_path, chunk.script, {}) == [str(i) for i in range(8)]


def test_two_gpus_per_worker_and_intel_mask(home, tmp_path):
    exe = fake_worker(tmp_path, "ZE_AFFINITY_MASK")
    p = plan(
        "tests-slurm",
        workers=2,
        sets=[
            f"workdir={tmp_path / 'work'}",
            f"worker.command={exe}",
            "worker.workers_per_job=2",
            "worker.gpus_per_worker=2",
            "resources.gpus=4",
            "resources.gpu_vendor=intel",
        ],
    )
    (chunk,) = p.chunks
    assert run_script(tmp_path, chunk.script, {"ZE_AFFINITY_MASK": "3,2,1,0"}) == ["1,0", "3,2"]


def test_too_few_devices_is_said_in_the_job_log(home, tmp_path):
    p = gpu_plan(tmp_path, "perlmutter-gpu", 4, "CUDA_VISIBLE_DEVICES", account="m1_g")
    path = tmp_path / "job.sh"
    path.write_text(p.chunks[0].script)
    done = subprocess.run(
        ["bash", str(path)],
        env={**os.environ, "HPCLAUNCH_DATABASE_URL": "x", "CUDA_VISIBLE_DEVICES": "0,1"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "need 4 devices, the job has 2" in done.stderr


def test_gpu_settings_that_cannot_work_are_refused(home):
    with pytest.raises(UserError, match="needs resources.gpu_vendor"):
        plan("tests-slurm", sets=["worker.gpus_per_worker=1", "resources.gpus=1"])
    ignored = plan("tests-slurm", sets=["worker.gpus_per_worker=1"])  # no GPUs asked for
    assert any("gpus_per_worker is ignored" in w for w in ignored.warnings)
    with pytest.raises(UserError, match="need 8 GPUs but resources.gpus is 4"):
        plan("perlmutter-gpu", account="m1_g", sets=["worker.gpus_per_worker=2"])
    with pytest.raises(UserError, match="gpu_vendor"):
        plan("tests-slurm", sets=["resources.gpu_vendor=ati"])


def test_workers_sharing_all_gpus_get_a_warning(home):
    p = plan("perlmutter-gpu", account="m1_g", sets=["worker.gpus_per_worker=null"])
    assert any("share all 4 GPUs" in w for w in p.warnings)
    assert "CUDA_VISIBLE_DEVICES=" not in p.chunks[0].script
