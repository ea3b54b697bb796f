"""A worker inside a real SLURM job finds its deadline by itself (this SLURM,
22.05, exports no SLURM_JOB_END_TIME, so it asks squeue once)."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import time
from datetime import datetime

import pytest
from fault_helpers import run_cli
from waiting import wait_until


@pytest.mark.slurm
def test_worker_in_a_slurm_job_takes_its_deadline_from_squeue(slurm, tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'queue.sqlite3'}"
    monkeypatch.setenv("HPCLAUNCH_DATABASE_URL", url)
    monkeypatch.setenv("HPCLAUNCH_HOME", str(tmp_path / "home"))
    assert run_cli("enqueue", "--", "true").returncode == 0
    out = tmp_path / "job.out"
    worker = shlex.join([sys.executable, "-P", "-m", "hpclaunch", "worker", "--singleflow"])
    before = time.time()
    env = {**slurm.env, "HPCLAUNCH_DATABASE_URL": url, "HPCLAUNCH_HOME": str(tmp_path / "home")}
    job_id = (
        subprocess.run(
            [
                "sbatch",
                "--parsable",
                "--time=00:05:00",
                "-p",
                slurm.partition,
                "-o",
                str(out),
                "--wrap",
                f"unset SLURM_JOB_END_TIME; {worker}",
            ],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        )
        .stdout.strip()
        .split(";")[0]
    )
    wait_until(lambda: "stopped:" in (out.read_text() if out.exists() else ""), timeout=90)
    log = out.read_text()
    found = re.search(r"deadline (\S+) from squeue", log)
    assert found, log
    deadline = datetime.fromisoformat(found.group(1)).timestamp()
    # The job's end: its start (after `before`) plus the 5-minute limit.
    assert before + 300 - 1 <= deadline <= time.time() + 300 + 1
    workers = json.loads(run_cli("workers", "--all", "--json", check=True).stdout)
    assert [(w["scheduler"], w["job_id"], w["exit_reason"]) for w in workers] == [
        ("slurm", job_id, "done")
    ]
