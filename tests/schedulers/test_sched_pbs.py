"""PBS Professional / OpenPBS adapter on samples from the PBS documentation."""

from __future__ import annotations

import json

import pytest
from conftest import fixture_header, load_fixture

from hpclaunch.errors import UserError
from hpclaunch.schedulers import ParseError, pbs


def by_id(states):
    return {s.job_id: s for s in states}


def test_fixtures_name_their_source():
    for name in ("pbs/qstat_f_json_pp483.txt", "pbs/qstat_f_json_array_reconstructed.txt"):
        header = fixture_header(name)
        assert "Source" in header or "RECONSTRUCTED" in header
        assert "qstat" in header


def test_submit_parses_plain_and_array_ids():
    # User's Guide: qsub prints "1234.server"; an array (qsub -J) prints "1234[].server".
    plain = pbs.parse_submit("1234.pbs01.example.org\n")
    assert (plain.job_id, plain.cluster, plain.array) == (
        "1234.pbs01.example.org",
        "pbs01.example.org",
        False,
    )
    array = pbs.parse_submit("1235[].pbs01\n")
    assert (array.job_id, array.cluster, array.array) == ("1235[].pbs01", "pbs01", True)


def test_submit_without_an_id_is_a_clear_error():
    with pytest.raises(ParseError, match="qsub did not print a job ID"):
        pbs.parse_submit("qsub: Unknown queue\n")


def test_documented_json_example_is_one_queued_job():
    states = pbs.parse_status(load_fixture("pbs/qstat_f_json_pp483.txt"))
    assert len(states) == 1
    job = states[0]
    assert job.job_id == "1.vbox"
    assert job.state == "PENDING" and job.raw_state == "Q"
    assert job.array_index is None and job.array_job_id is None
    assert job.reason == "Not Running: Insufficient amount of resource: ncpus"


def test_array_subjobs_are_expanded_and_classified():
    states = by_id(pbs.parse_status(load_fixture("pbs/qstat_f_json_array_reconstructed.txt")))
    # The array parent is replaced by its subjobs when -t lists them.
    assert "4242[].pbs01" not in states
    sub = [states[f"4242[{i}].pbs01"] for i in range(6)]
    assert [s.array_index for s in sub] == list(range(6))
    assert {s.array_job_id for s in sub} == {"4242[].pbs01"}
    assert [s.state for s in sub] == [
        "COMPLETED",
        "TIMEOUT",
        "OUT_OF_MEMORY",
        "CANCELLED",
        "RUNNING",
        "PENDING",
    ]
    # Real OpenPBS 23.06: -29 (JOB_EXEC_KILL_WALLTIME) is the walltime kill, not 271.
    assert sub[1].exit_code == -29 and "walltime" in sub[1].reason
    assert "mem" in sub[2].reason
    assert "SIGTERM" in sub[3].reason
    assert sub[5].reason.startswith("Not Running")


def test_finished_jobs_by_exit_status():
    states = by_id(pbs.parse_status(load_fixture("pbs/qstat_f_json_array_reconstructed.txt")))
    assert states["4250.pbs01"].state == "NODE_FAIL"
    assert "JOB_EXEC_RERUN_MS_FAIL" in states["4250.pbs01"].reason
    assert states["4251.pbs01"].state == "FAILED" and states["4251.pbs01"].reason == "exit code 1"
    assert states["4252.pbs01"].state == "PENDING" and states["4252.pbs01"].reason == "held"
    assert states["4253.pbs01"].state == "FAILED" and "SIGKILL" in states["4253.pbs01"].reason


@pytest.mark.parametrize(
    ("letter", "state"),
    [
        ("Q", "PENDING"),
        ("H", "PENDING"),
        ("W", "PENDING"),
        ("T", "PENDING"),
        ("R", "RUNNING"),
        ("B", "RUNNING"),
        ("E", "COMPLETING"),
        ("S", "SUSPENDED"),
        ("U", "SUSPENDED"),
        ("M", "UNKNOWN"),
    ],
)
def test_every_live_state_letter(letter, state):
    text = json.dumps({"Jobs": {"7.s": {"job_state": letter}}})
    assert pbs.parse_status(text)[0].state == state


@pytest.mark.parametrize(
    ("status", "state"),
    [
        (0, "COMPLETED"),
        (2, "FAILED"),
        (254, "FAILED"),
        (-1, "FAILED"),
        (-4, "NODE_FAIL"),
        (-11, "PREEMPTED"),
        (-12, "PREEMPTED"),
        (-14, "NODE_FAIL"),
        (-99, "FAILED"),
    ],
)
def test_finished_exit_statuses(status, state):
    text = json.dumps({"Jobs": {"7.s": {"job_state": "F", "Exit_status": status}}})
    assert pbs.parse_status(text)[0].state == state


def test_finished_without_exit_status_is_unknown_not_success():
    text = '{"Jobs": {"7.s": {"job_state": "F"}}}'
    assert pbs.parse_status(text)[0].state == "UNKNOWN"


def test_no_jobs_and_empty_output():
    assert pbs.parse_status('{"timestamp": 1, "pbs_version": "22", "pbs_server": "s"}') == []
    assert pbs.parse_status("") == []


def test_json_quirks_are_repaired():
    # Some qstat versions print a job named "inf" as a bare number and leave stray backslashes.
    text = '{"Jobs": {"9.s": {"Job_Name": inf, "job_state": "R", "Variable_List": "A=C:\\d"}}}'
    assert pbs.parse_status(text)[0].state == "RUNNING"


def test_garbage_is_a_parse_error():
    with pytest.raises(ParseError):
        pbs.parse_status("qstat: Unknown Job Id 12.s")
    with pytest.raises(ParseError):
        pbs.parse_status('{"Jobs": {"9.s": {"job_state": "Z"}}}')
    with pytest.raises(ParseError):
        pbs.parse_status('{"Jobs": {"not an id": {"job_state": "R"}}}')


def test_text_qstat_f_is_parsed_too():
    text = "Job Id: 55.s\n    Job_Name = x\n    job_state = F\n    Exit_status = 0\n"
    assert pbs.parse_status_text(text)[0].state == "COMPLETED"


def test_argv_builders():
    assert pbs.submit_argv("/w/run.pbs", extra=["-J", "0-3"]) == ["qsub", "-J", "0-3", "/w/run.pbs"]
    assert pbs.status_argv(["1[].s", "2.s"]) == [
        "qstat",
        "-f",
        "-F",
        "json",
        "-t",
        "-x",
        "1[].s",
        "2.s",
    ]
    assert pbs.cancel_argv(["1[].s"]) == ["qdel", "1[].s"]
    assert pbs.cancel_argv(["1[].s"], element=7) == ["qdel", "1[7].s"]
    assert pbs.find_by_name_argv("hpcl-1-c0") == ["qselect", "-x", "-N", "hpcl-1-c0"]
    assert pbs.parse_find_by_name("12[].s\n13.s\n12[].s\n") == ["12[].s", "13.s"]
    assert pbs.ARRAY_MIN_ELEMENTS == 2


def test_argv_builders_refuse_unsafe_values():
    with pytest.raises(UserError, match="invalid PBS job ID"):
        pbs.status_argv(["1.s; rm -rf ~"])
    with pytest.raises(UserError, match="invalid job name"):
        pbs.find_by_name_argv("name with space")
    with pytest.raises(UserError):
        pbs.cancel_argv(["1[3].s"], element=2)
    with pytest.raises(UserError):
        pbs.status_argv([])
