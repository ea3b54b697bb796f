"""Site job limits on the real local SLURM: refused launches, partial launches, --resume.

SLURM enforces a per-user submit limit (``MaxSubmitJobs``) only with slurmdbd
accounting, which the test cluster does not run. The limit is therefore
simulated by a wrapper named ``sbatch``, first on PATH for the submitting
process: it counts the jobs of the test's account that are still queued
(``squeue -r``, one line per array element, as SLURM counts them), refuses a
script that would pass N with SLURM's own message "Job violates
accounting/QOS policy (job submit limit, user's size and/or time limits)",
and otherwise runs the real sbatch with ``--hold`` so the jobs stay queued
until the test releases them (a deterministic "queue that drains later").
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess

import pytest
from launch_helpers import cli, cli_json, hpclaunch_exe, wait_until

SLURM_REFUSAL = (
    "sbatch: error: Batch job submission failed: Job violates accounting/QOS policy "
    "(job submit limit, user's size and/or time limits)"
)

WRAPPER = """#!/bin/bash
# Simulated per-user submit limit (see the test module's docstring).
script="${{@: -1}}"
range=$(sed -n 's/^#SBATCH --array=\\([0-9]*\\)-\\([0-9]*\\).*/\\1 \\2/p' "$script")
if [ -n "$range" ]; then read lo hi <<< "$range"; new=$((hi - lo + 1)); else new=1; fi
queued=$(squeue -h -r -A {account} -o %F | wc -l)
if [ $((queued + new)) -gt {limit} ]; then
  echo "{refusal}" >&2
  exit 1
fi
exec {real} --hold "$@"
"""


@pytest.fixture
def limited(slurm, pg_queue_url, tmp_path, monkeypatch):
    """An account of its own, and the sbatch wrapper that refuses past 4 queued jobs."""
    account = "acct" + secrets.token_hex(4)
    real = shutil.which("sbatch")
    assert real, "no sbatch on PATH"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "sbatch"
    wrapper.write_text(
        WRAPPER.format(
            account=account, limit=4, refusal=SLURM_REFUSAL.replace('"', '\\"'), real=real
        )
    )
    wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("SLURM_CONF", str(slurm.conf))
    yield account
    subprocess.run(["scancel", "-A", account], env=slurm.env, capture_output=True)


def site(tmp_path, pg_url: str, account: str, *sets: str) -> list[str]:
    args = [
        "--site",
        "tests-slurm",
        "--account",
        account,
        "--set",
        f"workdir={tmp_path / 'work'}",
        "--set",
        f"worker.command={hpclaunch_exe()}",
        "--set",
        f"database.url={pg_url}",
        "--set",
        "limits.scope=project",  # counted with squeue -A: other test runs' jobs stay out
    ]
    for value in sets:
        args += ["--set", value]
    return args


def account_jobs(slurm, account: str) -> set[str]:
    out = slurm.run(["squeue", "-h", "-A", account, "-o", "%F"]).stdout.split()
    return set(out)


def release(slurm, ids) -> None:
    for job_id in ids:
        slurm.run(["scontrol", "release", job_id])


def test_resume_without_room_under_the_profile_limit_submits_nothing(
    limited, slurm, pg_queue_url, tmp_path
):
    """The profile's own limit (4) is full: --resume refuses in one line before any sbatch."""
    args = site(
        tmp_path, pg_queue_url, limited, "limits.max_queued_jobs=6", "arrays.max_array_size=2"
    )
    # 6 fit the profile's 6; the wrapper (4) refuses the third array.
    out = cli("submit", *args, "--workers", "6", check=False)
    assert out.returncode == 6
    launch_id = out.stderr.split()[2]
    slurm.run(["sbatch", "--hold", "-A", limited, "--wrap", "true", "-o", "/dev/null"])
    queued = account_jobs(slurm, limited)
    again = cli("submit", "--resume", launch_id, check=False)  # 5 queued, 2 more pass 6
    assert again.returncode == 7 and len(again.stderr.strip().splitlines()) == 1
    assert "resume again once jobs drain" in again.stderr
    assert account_jobs(slurm, limited) == queued


def test_over_the_limit_is_refused_before_anything_is_submitted(
    limited, slurm, pg_queue_url, tmp_path
):
    """Two jobs already queued count: 10 workers under a limit of 10 leave room for 8."""
    for _ in range(2):
        slurm.run(["sbatch", "--hold", "-A", limited, "--wrap", "true", "-o", "/dev/null"])
    before = account_jobs(slurm, limited)
    assert len(before) == 2
    out = cli(
        "submit",
        *site(tmp_path, pg_queue_url, limited, "limits.max_queued_jobs=10"),
        "--workers",
        "10",
        check=False,
    )
    assert out.returncode == 7, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr
    assert "2 already queued there" in lines[0]
    assert "the largest launch that fits now is --workers 8" in lines[0]
    assert account_jobs(slurm, limited) == before  # a refused launch submits nothing
    assert cli_json("status", "--all")["launches"] == []  # and records none


def test_refused_half_way_is_partial_and_resume_finishes_it(limited, slurm, pg_queue_url, tmp_path):
    """The profile says 10, the centre (the wrapper) takes 4: arrays of 2, the third refused."""
    args = site(
        tmp_path, pg_queue_url, limited, "limits.max_queued_jobs=10", "arrays.max_array_size=2"
    )
    out = cli("submit", *args, "--workers", "6", check=False)
    assert out.returncode == 6, out.stdout + out.stderr
    message = out.stderr.strip().splitlines()
    assert len(message) == 1 and "Traceback" not in out.stderr
    assert "is partial: 2 job(s) submitted, 1 not" in message[0]
    assert "Job violates accounting/QOS policy" in message[0]
    launch_id = message[0].split()[2]  # "error: launch ID is partial: ..."
    assert f"hpclaunch submit --resume {launch_id}" in message[0]

    report = cli_json("status", "--launch", launch_id)
    (launch,) = report["launches"]
    assert launch["status"] == "partial"
    recorded = {e["job_id"] for e in launch["elements"] if e["job_id"]}
    assert recorded == account_jobs(slurm, limited)  # nothing unknown to hpclaunch
    assert len(recorded) == 2
    assert [e["state"] for e in launch["elements"]].count("NOT_SUBMITTED") == 2

    # Resumed too early: the profile's limit leaves room but the centre refuses again; the
    # launch stays partial, in one line, and nothing new is queued.
    again = cli("submit", "--resume", launch_id, check=False)
    assert again.returncode == 6 and len(again.stderr.strip().splitlines()) == 1
    assert "Job violates accounting/QOS policy" in again.stderr
    assert account_jobs(slurm, limited) == recorded
    (launch,) = cli_json("status", "--launch", launch_id)["launches"]
    assert launch["status"] == "partial"

    release(slurm, recorded)  # the queue drains: workers find no task and leave
    wait_until(lambda: not account_jobs(slurm, limited), timeout=180, what="jobs drained")
    resumed = cli_json("submit", "--resume", launch_id)
    (job,) = resumed["jobs"]
    assert job["chunk"] == 2 and job["elements"] == 2
    assert account_jobs(slurm, limited) == {job["job_id"]}
    (launch,) = cli_json("status", "--launch", launch_id)["launches"]
    assert "NOT_SUBMITTED" not in [e["state"] for e in launch["elements"]]
    assert {e["job_id"] for e in launch["elements"]} == recorded | {job["job_id"]}
    nothing = cli("submit", "--resume", launch_id, check=False)
    assert nothing.returncode == 2 and "nothing left to submit" in nothing.stderr
