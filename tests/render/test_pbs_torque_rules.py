"""PBS Pro and Torque scripts checked against the rules in their documentation.

Sources (the rules each test encodes):
* Altair PBS Professional User's Guide, chapter "Job Arrays" (also OpenPBS qsub(1B)):
  an array is requested with ``-J X-Y[:Z][%max_subjobs]``; a job array must contain
  at least two subjobs (a one-element range is rejected); each subjob sees
  ``PBS_ARRAY_INDEX``; ``^array_index^`` in the -o/-e paths is replaced by the index;
  arrays must be rerunnable (``-r y``; ALCF "Running Jobs on Polaris" says the same).
* ALCF "Running Jobs using PBS" (docs.alcf.anl.gov/running-jobs/): "The -A, walltime,
  and filesystems are mandatory" on Polaris.
* NCAR Derecho "Starting and Monitoring Jobs with PBS" (arc.ucar.edu): ``-A`` project
  code is mandatory; ``-l select=N:ncpus=..``.
* Adaptive Computing TORQUE Administrator Guide 4.1, "Multiple job submission"
  (docs.adaptivecomputing.com/torque/4-1-3/.../multiJobSubmission.htm): arrays use
  ``-t`` with a comma list of ids or ranges (slot limit ``%N``), and each element sees
  ``PBS_ARRAYID``.
"""

from __future__ import annotations

import re

import pytest
from render_helpers import directives, plan

from hpclaunch.errors import UserError

PBS_J = re.compile(r"^(\d+)-(\d+)(?::(\d+))?(?:%(\d+))?$")
TORQUE_T = re.compile(r"^\d+(?:-\d+)?(?:,\d+(?:-\d+)?)*(?:%\d+)?$")


def pbs_rules(script: str) -> list[str]:
    d = directives(script, "#PBS")
    arrays = [x[3:] for x in d if x.startswith("-J ")]
    if arrays:
        match = PBS_J.match(arrays[0])
        assert match, f"-J {arrays[0]} does not follow X-Y[:Z][%max]"
        first, last = int(match.group(1)), int(match.group(2))
        assert last - first + 1 >= 2, "a PBS Pro array needs at least two subjobs"
        assert "-r y" in d, "PBS Pro job arrays must be rerunnable"
        assert all("^array_index^" in x for x in d if x.startswith(("-o ", "-e ")))
    else:
        assert not any("^array_index^" in x for x in d)
    assert any(x.startswith("-l walltime=") for x in d)
    assert any(re.match(r"-l select=\d+:ncpus=\d+", x) for x in d)
    return d


@pytest.mark.parametrize("workers", [1, 2, 3, 21, 41])
def test_polaris_scripts_follow_pbs_pro_and_alcf_rules(home, workers):
    p = plan("polaris", workers=workers, account="myproj")
    for chunk in p.chunks:
        d = pbs_rules(chunk.script)
        assert "-A myproj" in d
        assert "-l filesystems=home:eagle" in d
        assert "-l place=scatter" in d
        assert "-q preemptable" in d
        assert chunk.array == any(x.startswith("-J ") for x in d)
    assert sum(c.workers for c in p.chunks) == workers


def test_polaris_refuses_to_render_without_an_account(home):
    """-A is mandatory on Polaris: a profile lists it under 'required:' and render refuses."""
    (home / "sites" / "polaris.yaml").write_text(
        "extends: polaris\nrequired: [resources.account, resources.filesystems]\n"
    )
    with pytest.raises(UserError, match=r"polaris requires resources.account.*--account"):
        plan("polaris", workers=8)
    assert "-A p1" in directives(plan("polaris", workers=8, account="p1").chunks[0].script, "#PBS")


def test_derecho_scripts_follow_pbs_pro_rules_and_carry_the_account(home):
    p = plan("derecho", workers=300, account="UABC0001")
    for chunk in p.chunks:
        d = pbs_rules(chunk.script)
        assert "-A UABC0001" in d


def test_one_pbs_worker_is_a_plain_job(home):
    p = plan("tests-slurm", workers=1, sets=["scheduler=pbs"])
    (chunk,) = p.chunks
    assert not chunk.array
    d = pbs_rules(chunk.script)
    assert not any(x.startswith("-J") for x in d)
    # Plain jobs (a remainder on a preemptable queue) are rerunnable like the arrays.
    assert "-r y" in d


def test_polaris_remainder_job_is_rerunnable_like_its_arrays(home):
    """Polaris preemptable: 9 workers = 2 nodes of 4 + a remainder job of 1; all get -r y."""
    p = plan("polaris", workers=9, account="p1")
    assert [c.array for c in p.chunks] == [True, False]
    for chunk in p.chunks:
        assert "-r y" in directives(chunk.script, "#PBS")


def test_derecho_jobs_ask_for_the_whole_node_they_are_charged_for(home):
    """Derecho charges whole nodes: the remainder job (3 workers) asks ncpus=128 too."""
    p = plan("derecho", workers=131, account="p1")
    assert [c.workers for c in p.chunks] == [128, 3]
    for chunk in p.chunks:
        assert "-l select=1:ncpus=128" in directives(chunk.script, "#PBS")


def test_pbs_array_throttle_and_index_paths(home):
    p = plan("tests-slurm", workers=6, sets=["scheduler=pbs", "arrays.max_concurrent=2"])
    d = pbs_rules(p.chunks[0].script)
    assert "-J 0-5%2" in d
    assert "-o /tmp/hpclaunch-tests/work/L1/hpcl-L1-0.^array_index^.out" in d


@pytest.mark.parametrize("workers", [1, 5, 25])
def test_torque_scripts_follow_torque_rules(home, workers):
    p = plan(
        "tests-slurm",
        workers=workers,
        sets=["scheduler=torque", "arrays.max_array_size=10", "arrays.max_concurrent=3"],
    )
    for chunk in p.chunks:
        d = directives(chunk.script, "#PBS")
        (t,) = [x[3:] for x in d if x.startswith("-t ")]
        assert TORQUE_T.match(t)
        assert t.endswith("%3")
        assert "-l walltime=00:10:00" in d
        assert "-l nodes=1:ppn=1" in d
        assert "-l mem=100mb" in d
        # the worker reads PBS_ARRAY_INDEX; Torque provides PBS_ARRAYID
        assert 'export PBS_ARRAY_INDEX="${PBS_ARRAYID:-}"' in chunk.script
        assert not any(x.startswith(("-J", "-r")) for x in d)


@pytest.mark.parametrize(
    ("site", "prefix", "sets"),
    [
        ("derecho", "#PBS", ()),
        ("polaris", "#PBS", ()),
        ("derecho", "#PBS", ("scheduler=torque",)),
        ("sge-example", "#$", ()),
    ],
)
def test_no_variable_is_passed_from_the_submitting_shell(home, site, prefix, sets):
    # e2e8_submit_env_unset.txt (real OpenPBS 23.06): `#PBS -v VAR` with
    # VAR unset where qsub runs fails the submit ("qsub: cannot send environment with the
    # job"). The job reads the variable from its own environment, and says so if missing.
    script = plan(site, workers=2, account="P1", sets=sets).chunks[0].script
    assert not any(d.startswith(("-v ", "-V")) for d in directives(script, prefix))
    assert "HPCLAUNCH_DATABASE_URL is not set in the job environment" in script


def test_a_profile_database_url_is_exported_by_the_script_itself(home):
    script = (
        plan("derecho", account="P1", sets=["database.url=postgresql://u@db/q"]).chunks[0].script
    )
    assert "export HPCLAUNCH_DATABASE_URL=postgresql://u@db/q" in script
    assert not any(d.startswith("-v ") for d in directives(script, "#PBS"))
