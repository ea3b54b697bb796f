"""PBS adapter on real OpenPBS 23.06.06 output.

Source: tests/schedulers/fixtures/openpbs-23.06/README.md (a one-node OpenPBS
server built from openpbs/openpbs commit cd7ab5eda, captured 2026-12-01); the
``e2e*.txt`` transcripts there show each failure these tests reproduce.
"""

from __future__ import annotations

import json

import pytest
from conftest import FIXTURES

from hpclaunch.schedulers import get_scheduler, pbs

REAL = FIXTURES / "openpbs-23.06"


def real(name: str) -> str:
    return (REAL / name).read_text(encoding="utf-8")


def by_id(states):
    return {s.job_id: s for s in states}


def test_fixtures_readme_names_the_source():
    readme = real("README.md")
    assert "OpenPBS 23.06.06" in readme and "cd7ab5eda" in readme


# --- item 1: a walltime kill is TIMEOUT ------------------------------------------------


def test_walltime_kill_is_timeout_not_failed():
    # e2e3b_timeout_final.txt: both elements were requeued as FAILED "exit status -29".
    states = by_id(pbs.parse_status(real("qstat_f_json_t_x_timeout_A_final.json")))
    for i in (0, 1):
        s = states[f"15[{i}].pbshost"]
        assert s.state == "TIMEOUT", s
        assert s.exit_code == -29
        assert "walltime" in (s.reason or "")


@pytest.mark.parametrize(
    ("code", "state", "name"),
    [
        (-21, "FAILED", "JOB_EXEC_FAIL_SECURITY"),
        (-22, "FAILED", "JOB_EXEC_HOOKERROR"),
        (-23, "FAILED", "JOB_EXEC_FAIL_KRB5"),
        (-24, "FAILED", "JOB_EXEC_KILL_NCPUS_BURST"),
        (-25, "FAILED", "JOB_EXEC_KILL_NCPUS_SUM"),
        (-26, "OUT_OF_MEMORY", "JOB_EXEC_KILL_VMEM"),
        (-27, "OUT_OF_MEMORY", "JOB_EXEC_KILL_MEM"),
        (-28, "TIMEOUT", "JOB_EXEC_KILL_CPUT"),
        (-29, "TIMEOUT", "JOB_EXEC_KILL_WALLTIME"),
        (-30, "FAILED", "JOB_EXEC_JOINJOB"),
        (-14, "NODE_FAIL", "JOB_EXEC_RERUN_SIS_FAIL"),
    ],
)
def test_every_job_exec_code_from_job_h(code, state, name):
    # OpenPBS src/include/job.h (commit cd7ab5eda): the JOB_EXEC_* exit values.
    text = json.dumps({"Jobs": {"7.s": {"job_state": "F", "Exit_status": code}}})
    got = pbs.parse_status(text)[0]
    assert (got.state, got.exit_code) == (state, code)
    assert name in got.reason


def test_unknown_negative_code_falls_back_to_the_limit_in_the_comment():
    attrs = {
        "job_state": "F",
        "Exit_status": -77,
        "comment": "Job run at Tue and exceeded resource walltime",
    }
    got = pbs.parse_status(json.dumps({"Jobs": {"7.s": attrs}}))[0]
    assert got.state == "TIMEOUT"
    attrs["comment"] = "Job run at Tue and exceeded resource mem"
    got = pbs.parse_status(json.dumps({"Jobs": {"7.s": attrs}}))[0]
    assert got.state == "OUT_OF_MEMORY"


def test_unknown_negative_code_falls_back_to_resources_used():
    attrs = {
        "job_state": "F",
        "Exit_status": -77,
        "Resource_List": {"walltime": "00:00:30"},
        "resources_used": {"walltime": "00:00:59"},
    }
    assert pbs.parse_status(json.dumps({"Jobs": {"7.s": attrs}}))[0].state == "TIMEOUT"


def test_qdel_of_a_running_subjob_is_cancelled_not_timeout():
    # 271 = 256 + SIGTERM is what OpenPBS 23.06 records for a qdel, well inside the walltime.
    states = by_id(pbs.parse_status(real("qstat_f_json_t_x_qdel_running_array.json")))
    for i in (0, 1):
        s = states[f"13[{i}].pbshost"]
        assert (s.state, s.exit_code) == ("CANCELLED", 271)


def test_completed_array_is_completed():
    states = pbs.parse_status(real("qstat_f_json_t_x_e2e_completed.json"))
    assert [s.state for s in states] == ["COMPLETED"] * 4


# --- item 2: subjobs that never started are CANCELLED, not FAILED ------------------------


def test_subjobs_never_started_after_an_outside_qdel_are_cancelled():
    # e2e4_external_qdel.txt: 13[2]/13[3] ("Exit_status": 1, "Subjob finished", never run)
    # were read as FAILED "exit code 1" and marked the launch broken.
    states = by_id(pbs.parse_status(real("qstat_f_json_t_x_qdel_running_array.json")))
    for i in (2, 3):
        s = states[f"13[{i}].pbshost"]
        assert s.state == "CANCELLED", s
        assert "never started" in s.reason


def test_array_deleted_while_queued_is_cancelled_never_started():
    states = pbs.parse_status(real("qstat_f_json_t_x_deleted_queued_array.json"))
    assert [(s.job_id, s.state) for s in states] == [
        ("3[0].pbshost", "CANCELLED"),
        ("3[1].pbshost", "CANCELLED"),
    ]
    assert all("never started" in s.reason for s in states)


def test_a_subjob_that_ran_and_failed_is_still_failed():
    attrs = {"job_state": "F", "Exit_status": 1, "exec_host": "n1/0", "run_count": 1}
    got = pbs.parse_status(json.dumps({"Jobs": {"7[2].s": attrs}}))[0]
    assert (got.state, got.reason) == ("FAILED", "exit code 1")


# --- item 3: qdel of a finished job counts as already gone ---------------------------------


def test_qdel_of_a_finished_job_is_already_gone():
    # e2e5_cancel_finished.txt / qdel_queued_arrays.txt: exit status 35.
    sched = get_scheduler("pbs")
    assert sched.already_gone("qdel: Job has finished 12[].pbshost\n")
    assert sched.already_gone("qdel: Job has finished 12[1].pbshost\n")
    assert sched.already_gone("qdel: Unknown Job Id 999[].pbshost\n")
    assert not sched.already_gone("qdel: Unauthorized Request  12[].pbshost\n")


# --- items 4 and 5: what a status command's run says, as a scheduler-level API ------------


def test_unknown_job_id_with_json_on_stdout_keeps_the_known_jobs():
    # qstat_mixed_unknown.*: exit status 153, "Unknown Job Id 999[].pbshost" on stderr.
    answer = get_scheduler("pbs").interpret_status(
        real("qstat_mixed_unknown.stdout"), real("qstat_mixed_unknown.stderr"), 153
    )
    assert answer.error is None
    assert [s.job_id for s in answer.states] == [f"12[{i}].pbshost" for i in range(4)]
    assert answer.unknown == ("999[].pbshost",)
    assert answer.notes and "999[].pbshost" in answer.notes[0]


def test_history_off_is_detected():
    text = real("qstat_history_off.txt")
    body = text[text.index("{") : text.index("}") + 1]
    msg = "qstat: PBS is not configured to maintain job history 18.pbshost\n"
    for stdout, stderr in ((body, msg), (msg + body, "")):  # stderr, or merged into stdout
        answer = get_scheduler("pbs").interpret_status(stdout, stderr, 0)
        assert answer.error is None and answer.states == []
        assert answer.accounting is False
        assert any("job history is off" in n for n in answer.notes)


def test_a_real_qstat_failure_is_still_an_error():
    answer = get_scheduler("pbs").interpret_status("", "qstat: cannot connect to server\n", 1)
    assert answer.error is not None and "cannot connect" in answer.error


def test_other_schedulers_keep_the_default_reading():
    slurm = get_scheduler("slurm")
    assert slurm.interpret_status("", "squeue: error: Invalid job id specified\n", 1).states == []
    failed = slurm.interpret_status("", "squeue: error: slurm_load_jobs: timeout\n", 1)
    assert failed.error is not None and "timeout" in failed.error
    assert slurm.interpret_status("", "", 0).accounting is True
