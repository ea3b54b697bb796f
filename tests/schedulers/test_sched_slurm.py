"""SLURM adapter on output captured from the real local cluster (fixtures/slurm/capture.sh)."""

from __future__ import annotations

import pytest
from conftest import fixture_header, load_fixture

from hpclaunch.errors import UserError
from hpclaunch.schedulers import STATES, ParseError, slurm

CAPTURED = [
    "slurm/sbatch_parsable.txt",
    "slurm/squeue_pending_array_r.txt",
    "slurm/squeue_pending_array_combined.txt",
    "slurm/squeue_running_array.txt",
    "slurm/squeue_mixed_states.txt",
    "slurm/squeue_completed_array.txt",
    "slurm/squeue_timeout.txt",
    "slurm/squeue_find_by_name.txt",
    "slurm/sacct_local.txt",
]


def by_id(states):
    return {s.job_id: s for s in states}


@pytest.mark.parametrize("name", CAPTURED)
def test_captured_fixtures_say_how(name):
    header = fixture_header(name)
    assert "Captured from the real local SLURM" in header
    assert "# Date: " in header and "# Command: " in header


def test_sbatch_parsable_captured():
    job = slurm.parse_submit(load_fixture("slurm/sbatch_parsable.txt"))
    assert job.job_id.isdigit() and job.cluster is None and job.array is False


def test_sbatch_parsable_with_cluster():
    # sbatch(1): "--parsable Outputs only the job id number and the cluster name if present.
    # The values are separated by a semicolon." (-M needs slurmdbd, absent locally.)
    job = slurm.parse_submit("4242;perlmutter\n")
    assert (job.job_id, job.cluster) == ("4242", "perlmutter")


def test_sbatch_errors_are_parse_errors():
    with pytest.raises(ParseError, match="sbatch did not print a job ID"):
        slurm.parse_submit("")
    with pytest.raises(ParseError):
        slurm.parse_submit("sbatch: error: Batch job submission failed: Invalid account\n")


def test_pending_array_one_line_per_element():
    states = slurm.parse_status(load_fixture("slurm/squeue_pending_array_r.txt"))
    assert [s.array_index for s in states] == list(range(10))
    assert {s.state for s in states} == {"PENDING"}
    assert {s.reason for s in states} == {"JobHeldUser"}
    base = states[0].array_job_id
    assert all(s.job_id == f"{base}_{s.array_index}" for s in states)


def test_pending_array_combined_range_is_expanded():
    # Without -r, squeue folds pending elements into "20_[0-9%2]"; the result must be the same.
    combined = slurm.parse_status(load_fixture("slurm/squeue_pending_array_combined.txt"))
    expanded = slurm.parse_status(load_fixture("slurm/squeue_pending_array_r.txt"))
    assert combined == expanded


def test_running_array():
    states = slurm.parse_status(load_fixture("slurm/squeue_running_array.txt"))
    assert sorted(s.array_index for s in states) == [0, 1, 2, 3]
    assert {s.state for s in states} == {"RUNNING"}
    assert {s.reason for s in states} == {None}


def test_mixed_states_cancelled_failed_running():
    states = slurm.parse_status(load_fixture("slurm/squeue_mixed_states.txt"))
    counts = {}
    for s in states:
        counts[s.state] = counts.get(s.state, 0) + 1
    # one element scancel'ed while running + a held array cancelled while pending
    assert counts == {"CANCELLED": 11, "FAILED": 1, "RUNNING": 3}
    (failed,) = [s for s in states if s.state == "FAILED"]
    assert failed.array_index is None and failed.array_job_id is None
    assert failed.reason == "NonZeroExitCode"


def test_completed_array():
    states = by_id(slurm.parse_status(load_fixture("slurm/squeue_completed_array.txt")))
    base = next(iter(states.values())).array_job_id
    assert states[f"{base}_1"].state == "CANCELLED"
    assert [states[f"{base}_{i}"].state for i in (0, 2, 3)] == ["COMPLETED"] * 3
    assert all(s.terminal for s in states.values())


def test_timeout_captured():
    (job,) = slurm.parse_status(load_fixture("slurm/squeue_timeout.txt"))
    assert job.state == "TIMEOUT" and job.reason == "TimeLimit" and job.terminal


def test_find_by_name_dedupes_array_elements():
    assert len(slurm.parse_find_by_name(load_fixture("slurm/squeue_find_by_name.txt"))) == 1


def test_accounting_disabled_is_recognised():
    assert slurm.accounting_unavailable(load_fixture("slurm/sacct_local.txt"))
    assert not slurm.accounting_unavailable("sacct: error: Invalid field requested")


def test_sacct_documented_states_and_steps():
    states = by_id(slurm.parse_accounting(load_fixture("slurm/sacct_documented_reconstructed.txt")))
    # steps (.batch, .extern, .0) are folded into their job
    assert not any("." in k for k in states)
    assert states["5000_0"].state == "COMPLETED" and states["5000_0"].exit_code == 0
    assert states["5000_1"].state == "OUT_OF_MEMORY"
    assert states["5000_2"].state == "TIMEOUT"
    assert states["5000_3"].state == "CANCELLED"
    assert states["5000_3"].reason == "cancelled by uid 1000"
    assert states["5000_3"].raw_state == "CANCELLED by 1000"
    assert [states[f"5000_{i}"].state for i in range(4, 8)] == ["PENDING"] * 4
    assert states["5010"].state == "FAILED" and states["5010"].exit_code == 3
    assert states["5010"].reason == "exit code 3"
    # FAILED job whose batch step ran out of memory (older SLURM) -> OUT_OF_MEMORY
    assert states["5020"].state == "OUT_OF_MEMORY"
    assert states["5030"].state == "PREEMPTED"
    assert states["5040"].state == "NODE_FAIL"
    assert states["5050"].state == "BOOT_FAIL"
    assert states["5060"].state == "RUNNING"


def test_cancelled_by_root():
    (job,) = slurm.parse_accounting("77|77|CANCELLED by 0|0:15|None\n")
    assert job.state == "CANCELLED" and job.reason == "cancelled by uid 0"


def test_every_documented_state_is_mapped():
    for word in slurm.STATE_MAP:
        assert slurm.normalise_state(word) in STATES
    for code, word in slurm.SHORT_STATE_CODES.items():
        assert slurm.normalise_state(code) == slurm.STATE_MAP[word]
    assert slurm.normalise_state("SOME_NEW_STATE") == "UNKNOWN"
    with pytest.raises(ParseError):
        slurm.normalise_state("running?")


def test_range_specs():
    assert slurm.expand_ranges("1,3-7:2,10") == [1, 3, 5, 7, 10]
    assert slurm.expand_ranges("0-3%1") == [0, 1, 2, 3]
    with pytest.raises(ParseError):
        slurm.expand_ranges("5-1")
    with pytest.raises(ParseError):
        slurm.expand_ranges("0-99999999999")


def test_argv_builders():
    assert slurm.submit_argv("/w/a.sh", extra=["--array=0-3"]) == [
        "sbatch",
        "--parsable",
        "--array=0-3",
        "/w/a.sh",
    ]
    argv = slurm.status_argv(["12", "13_4"])
    assert argv[:2] == ["squeue", "-h"] and "-r" in argv
    assert argv[argv.index("-j") + 1] == "12,13_4"
    assert argv[argv.index("-o") + 1] == slurm.SQUEUE_FORMAT
    assert slurm.accounting_argv(["12"])[:3] == ["sacct", "-n", "-P"]
    assert slurm.cancel_argv(["12", "13"]) == ["scancel", "12", "13"]
    assert slurm.cancel_argv(["12"], element=4) == ["scancel", "12_4"]
    assert slurm.find_by_name_argv("hpcl-ab12-c0") == [
        "squeue",
        "-h",
        "-t",
        "all",
        "-n",
        "hpcl-ab12-c0",
        "-o",
        "%F",
    ]


def test_argv_builders_refuse_unsafe_values():
    with pytest.raises(UserError, match="invalid SLURM job ID"):
        slurm.status_argv(["12,13"])
    with pytest.raises(UserError):
        slurm.cancel_argv(["12 && reboot"])
    with pytest.raises(UserError):
        slurm.cancel_argv(["12_3"], element=1)
    with pytest.raises(UserError):
        slurm.cancel_argv(["12"], element=-1)
    with pytest.raises(UserError):
        slurm.find_by_name_argv("a,b")


def test_squeue_unknown_ids_recognised():
    assert slurm.no_such_jobs("slurm_load_jobs error: Invalid job id specified\n")
    assert not slurm.no_such_jobs("squeue: error: Unable to contact slurm controller")


def test_garbage_lines():
    with pytest.raises(ParseError, match="expected 5"):
        slurm.parse_status("JOBID PARTITION NAME\n")
    with pytest.raises(ParseError):
        slurm.parse_status("abc|1|N/A|RUNNING|None\n")
    with pytest.raises(ParseError):
        slurm.parse_accounting("1|1|COMPLETED|zero|None\n")
