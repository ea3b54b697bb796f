"""The scheduler interface: one registry, one class each, and what depends on it."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from hpclaunch import paths
from hpclaunch.errors import UserError
from hpclaunch.render import plan_launch
from hpclaunch.schedulers import SCHEDULERS, get_scheduler
from hpclaunch.schedulers.base import Scheduler
from hpclaunch.schedulers.pbs import Pbs
from hpclaunch.sites import load_profile, parse_set
from hpclaunch.worker.identity import scheduler_identity


@pytest.mark.parametrize("name", SCHEDULERS)
def test_every_registered_scheduler_has_a_class_and_a_shipped_template(name):
    scheduler = get_scheduler(name)
    assert isinstance(scheduler, Scheduler) and scheduler.name == name
    assert (paths.shipped_dir("templates") / scheduler.template).is_file()
    assert get_scheduler(name.upper()) is scheduler


def test_aliases_and_unknown_names():
    assert get_scheduler("openpbs") is get_scheduler("pbs") is get_scheduler("PBSPro")
    with pytest.raises(UserError, match="unknown scheduler 'lsf': use one of slurm, pbs"):
        get_scheduler("lsf")


def test_torque_is_a_pbs_with_its_own_rules():
    torque, pbs = get_scheduler("torque"), get_scheduler("pbs")
    assert isinstance(torque, Pbs)
    assert pbs.array_min_elements == 2 and torque.array_min_elements == 1
    assert torque.status_argv(["12.srv"])[:3] == ["qstat", "-f", "-1"]
    assert torque.submit_argv("/s.sh") == pbs.submit_argv("/s.sh") == ["qsub", "/s.sh"]


def test_a_torque_worker_registers_as_torque_and_a_pbs_one_as_pbs():
    torque_env = {
        "HPCLAUNCH_SCHEDULER": "torque",
        "PBS_JOBID": "1098[3].head",
        "PBS_ARRAYID": "3",
    }
    assert scheduler_identity(torque_env) == {
        "scheduler": "torque",
        "job_id": "1098[3].head",
        "array_job_id": "1098[].head",
        "array_index": 3,
    }
    pbs_env = {"HPCLAUNCH_SCHEDULER": "pbs", "PBS_JOBID": "77[0].srv", "PBS_ARRAY_INDEX": "0"}
    assert scheduler_identity(pbs_env)["scheduler"] == "pbs"
    assert scheduler_identity(pbs_env)["array_job_id"] == "77[].srv"


def test_scripts_rendered_before_the_export_are_still_recognised():
    slurm_env = {"SLURM_JOB_ID": "9", "SLURM_ARRAY_JOB_ID": "8", "SLURM_ARRAY_TASK_ID": "1"}
    assert scheduler_identity(slurm_env) == {
        "scheduler": "slurm",
        "job_id": "9",
        "array_job_id": "8",
        "array_index": 1,
    }
    assert scheduler_identity({"PBS_JOBID": "5.srv"})["scheduler"] == "pbs"
    assert scheduler_identity({"HPCLAUNCH_LOCAL_JOB_ID": "42"})["job_id"] == "42"
    assert scheduler_identity({})["scheduler"] is None


def test_the_worker_does_not_import_the_adapters():
    code = (
        "import sys, hpclaunch.worker.loop\n"
        "heavy = [m for m in sys.modules if m.split('.')[0] in "
        "('jinja2', 'yaml', 'sqlalchemy', 'paramiko')\n"
        " or m in ('hpclaunch.schedulers.slurm', 'hpclaunch.schedulers.base')]\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _log_directives(script: str) -> list[str]:
    return [
        line for line in script.splitlines() if re.match(r"#(SBATCH|PBS|\$) -(-output|o)\b", line)
    ]


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("HPCLAUNCH_HOME", str(tmp_path))
    return tmp_path


@pytest.mark.parametrize(
    ("site", "sets", "job_id", "expanded"),
    [
        # the template's output directive with the job's ID and element 1 filled in
        ("tests-slurm", [], "555", {"%A": "555", "%a": "1"}),
        ("derecho", [], "555[].desched1", {"^array_index^": "1"}),
        ("derecho", ["scheduler=torque"], "555[].srv", {".out": ".out-1"}),
    ],
)
def test_log_paths_agree_with_the_templates(home, site, sets, job_id, expanded):
    """`hpclaunch logs` reads where the template told the scheduler to write."""
    profile = load_profile(
        site,
        [
            parse_set(s)
            for s in ["workdir=/w", "resources.account=a1", "worker.workers_per_job=1", *sets]
        ],
    )
    plan = plan_launch(profile, 3, "L1")
    (chunk,) = plan.chunks
    (directive,) = _log_directives(chunk.script)
    written = directive.split()[-1].split("=", 1)[-1]
    for placeholder, value in expanded.items():
        written = written.replace(placeholder, value)
    scheduler = get_scheduler(profile.scheduler)
    out, _ = scheduler.log_paths("/w/L1", chunk.job_name, job_id, 1)
    assert out == written


@pytest.mark.parametrize("name", SCHEDULERS)
def test_every_script_tells_its_workers_which_scheduler_runs_them(home, name):
    sets = ["workdir=/w", "resources.account=a1", f"scheduler={name}"]
    profile = load_profile("derecho", [parse_set(s) for s in sets])
    for chunk in plan_launch(profile, 2, "L1").chunks:
        assert f"\nexport HPCLAUNCH_SCHEDULER={name}\n" in chunk.script


@pytest.mark.parametrize("name", SCHEDULERS)
def test_workers_write_their_output_in_the_launch_folder_where_logs_reads_it(home, name):
    """PBS keeps -o/-e in its spool until the job ends, so the batch
    script sends each worker's output to files in the launch folder itself, on every
    scheduler, named by Scheduler.worker_log_paths (what `logs` and `logs --follow` read)."""
    sets = ["workdir=/w", "resources.account=a1", f"scheduler={name}"]
    profile = load_profile("derecho", [parse_set(s) for s in sets])
    scheduler = get_scheduler(name)
    for chunk in plan_launch(profile, 4, "L1").chunks:
        (line,) = [ln for ln in chunk.script.splitlines() if " --launch-id " in ln and "&" in ln]
        index = None
        if chunk.array:
            var = scheduler.environment.array_index
            base = scheduler.environment.index_base
            index = f"$(( ${{{var}}} - {base} ))" if base else f"${{{var}}}"
        out, err = scheduler.worker_log_paths("/w/L1", chunk.job_name, index)
        assert f">> {out} 2>> {err} &" in line, line
        # the scheduler's own -o/-e keep the shell's messages, under other names
        if chunk.array:
            assert out not in scheduler.log_paths("/w/L1", chunk.job_name, "9", 1)
    # `logs` for element 1 reads the file element 1's workers write to
    assert scheduler.worker_log_paths("/w/L1", "j", 1)[0] == "/w/L1/j.1.workers.out"
    assert scheduler.worker_log_paths("/w/L1", "j", None)[1] == "/w/L1/j.workers.err"
