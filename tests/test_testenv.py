"""The test environment itself works: a SLURM array runs to completion, the
sshd lets the generated key in with the generated known_hosts and its sessions
reach the same SLURM, and the run's PostgreSQL database accepts connections."""

from __future__ import annotations

import time

import paramiko
import psycopg
import pytest
from testenv_fixtures import write_ssh_config


def _wait_gone_from_queue(slurm, job_id: str, limit: float = 120) -> None:
    """Poll squeue until the job has no pending/running element (a wait, not a timing test)."""
    end = time.monotonic() + limit
    while time.monotonic() < end:
        out = slurm.run(["squeue", "-h", "-j", job_id, "-t", "PD,R,CG", "-o", "%i"]).stdout
        if not out.strip():
            return
        time.sleep(0.3)
    pytest.fail(f"job {job_id} still queued after {limit}s")


@pytest.mark.slurm
def test_three_element_array_runs_to_completion(slurm, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    submitted = slurm.run(
        [
            "sbatch",
            "--parsable",
            "-p",
            slurm.partition,
            "--array=0-2",
            "--mem=100M",
            "-o",
            f"{out}/%A_%a.out",
            "--wrap",
            'echo "element $SLURM_ARRAY_TASK_ID"',
        ]
    ).stdout.strip()
    job_id = submitted.split(";")[0]
    assert job_id.isdigit()
    _wait_gone_from_queue(slurm, job_id)
    states = slurm.run(["squeue", "-h", "-t", "all", "-j", job_id, "-o", "%K %T"]).stdout
    assert sorted(line for line in states.split("\n") if line) == [
        "0 COMPLETED",
        "1 COMPLETED",
        "2 COMPLETED",
    ]
    texts = sorted((out / f"{job_id}_{k}.out").read_text().strip() for k in range(3))
    assert texts == ["element 0", "element 1", "element 2"]


@pytest.mark.ssh
@pytest.mark.slurm
def test_ssh_with_generated_key_reaches_slurm(sshd, slurm, tmp_path):
    config_path = write_ssh_config(tmp_path / "ssh_config", {"testcluster": sshd.config_options()})
    config = paramiko.SSHConfig.from_path(str(config_path)).lookup("testcluster")
    client = paramiko.SSHClient()
    client.load_host_keys(config["userknownhostsfile"])
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(
        config["hostname"],
        port=int(config["port"]),
        username=config["user"],
        key_filename=config["identityfile"][0],
        allow_agent=False,
        look_for_keys=False,
        timeout=10,
    )
    try:
        command = "squeue -h -o %P; echo conf=$SLURM_CONF"
        _, stdout, stderr = client.exec_command(command, timeout=30)
        output = stdout.read().decode()
        assert stdout.channel.recv_exit_status() == 0, stderr.read().decode()
    finally:
        client.close()
    assert f"conf={slurm.conf}" in output


@pytest.mark.postgres
def test_run_database_accepts_connections(pg_url):
    with psycopg.connect(pg_url, connect_timeout=5) as conn:
        assert conn.execute("select current_database()").fetchone()[0] == pg_url.rsplit("/", 1)[1]
