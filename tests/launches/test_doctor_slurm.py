"""``hpclaunch doctor`` against the local SLURM over the real test sshd.

The probe job is a real SLURM job whose worker claims only the reserved probe
task; its answer comes back through the real PostgreSQL queue. The failing cases
are a module the nodes lack (``--import``) and a database the job cannot reach
(the job's ``database.url`` points at a closed port while doctor's own is fine).
"""

from __future__ import annotations

import json
import time

import pytest
from launch_helpers import cli, hpclaunch_exe


@pytest.fixture
def ssh_site(sshd, slurm, tmp_path, monkeypatch):
    from testenv_fixtures import write_ssh_config

    home = tmp_path / "laptop-home"
    write_ssh_config(home / ".ssh" / "config", {"hpcl-test": sshd.config_options()})
    monkeypatch.setenv("HOME", str(home))
    return ["--site", "tests-slurm-ssh", "--set", "host=hpcl-test"]


def doctor(ssh_site, tmp_path, db_url: str, *extra: str):
    started = time.monotonic()
    out = cli(
        "doctor",
        *ssh_site,
        "--set",
        f"workdir={tmp_path / 'work'}",
        "--set",
        f"worker.command={hpclaunch_exe()}",
        "--set",
        f"database.url={db_url}",
        *extra,
        check=False,
        timeout=420,
    )
    return out, time.monotonic() - started


def checks(out) -> dict[str, dict]:
    return {c["check"]: c for c in json.loads(out.stdout)["checks"]}


def test_doctor_passes_and_prints_its_table(ssh_site, pg_queue_url, tmp_path):
    # The probe's tag is reserved: no user task carries it, so the probe worker can
    # never run a user's work (one line, nothing enqueued).
    env = {"HPCLAUNCH_DATABASE_URL": pg_queue_url}
    refused = cli("enqueue", "-t", "hpclaunch-probe", "--", "true", check=False, env=env)
    assert refused.returncode != 0 and "reserved" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert json.loads(cli("tasks", "--json", env=env).stdout) == []
    out, _ = doctor(ssh_site, tmp_path, pg_queue_url, "--import", "json")
    assert out.returncode == 0, out.stdout + out.stderr
    for row in ("ssh", "workdir", "remote hpclaunch", "scheduler commands", "database"):
        assert row in out.stdout
    assert "probe job" in out.stdout and "answered from" in out.stdout
    assert "import json" in out.stdout and "FAIL" not in out.stdout


def test_a_missing_module_fails_with_its_line_and_fix(ssh_site, pg_queue_url, tmp_path):
    out, _ = doctor(ssh_site, tmp_path, pg_queue_url, "--import", "no_such_mod_13", "--json")
    assert out.returncode == 1
    found = checks(out)
    assert found["probe job"]["ok"] is True
    bad = found["import no_such_mod_13"]
    assert bad["ok"] is False and "No module named" in bad["detail"]
    assert "install no_such_mod_13" in bad["fix"]
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr


def test_an_unreachable_database_is_reported_from_the_jobs_stderr(
    ssh_site, pg_queue_url, tmp_path, monkeypatch
):
    monkeypatch.setenv("HPCLAUNCH_DATABASE_URL", pg_queue_url)  # doctor's own: reachable
    out, took = doctor(ssh_site, tmp_path, "postgresql://postgres@127.0.0.1:1/nodb", "--json")
    assert out.returncode == 1
    found = checks(out)
    assert found["database"]["ok"] is True
    probe = found["probe job"]
    assert probe["ok"] is False and "without reaching the queue" in probe["detail"]
    assert "unreachable" in probe["detail"] and "reachable from compute nodes" in probe["fix"]
    assert took < 300  # within the probe's walltime, not waited on forever


def test_no_probe_reports_an_unknown_queue_in_one_line(ssh_site, pg_queue_url, tmp_path):
    out, _ = doctor(ssh_site, tmp_path, pg_queue_url, "--partition", "nosuchq", "--no-probe")
    assert out.returncode == 1
    assert "unknown queue nosuchq" in out.stdout
    assert out.stderr.strip().count("\n") == 0 and "queue" in out.stderr
    assert "probe job" not in out.stdout
