"""Torque adapter on samples from the Torque Administrator Guide."""

from __future__ import annotations

import pytest
from conftest import fixture_header, load_fixture

from hpclaunch.errors import UserError
from hpclaunch.schedulers import ParseError, torque


def by_id(states):
    return {s.job_id: s for s in states}


def test_fixtures_name_their_source():
    for name in (
        "torque/qstat_f_job_failure.txt",
        "torque/qstat_f_array_reconstructed.txt",
        "torque/qstat_x_reconstructed.txt",
    ):
        header = fixture_header(name)
        assert ("Source" in header or "RECONSTRUCTED" in header) and "qstat" in header


def test_documented_failure_example():
    (job,) = torque.parse_status(load_fixture("torque/qstat_f_job_failure.txt"))
    assert job.job_id == "179.host"
    assert job.raw_state == "C"
    assert job.state == "FAILED"
    assert job.exit_code == -1
    assert "JOB_EXEC_FAIL1" in job.reason


def test_folded_values_are_joined():
    # qstat folds long values mid-word; the parser must not treat the pieces as attributes.
    from hpclaunch.schedulers._pbs_common import parse_full_text

    ((_, attrs),) = parse_full_text(load_fixture("torque/qstat_f_job_failure.txt"))
    assert attrs["sched_hint"].endswith(
        "node1/0Bad UID for job execution REJHOST=pala.cridomain "
        "MSG=cannot find user 'user' in password file"
    )
    assert "PBS_O_WORKDIR=/opt/moab" in attrs["Variable_List"]
    assert attrs["exit_status"] == "-1"


def test_array_elements_and_limits():
    states = by_id(torque.parse_status(load_fixture("torque/qstat_f_array_reconstructed.txt")))
    assert "1098[].hostname" not in states
    el = [states[f"1098[{i}].hostname"] for i in range(6)]
    assert {s.array_job_id for s in el} == {"1098[].hostname"}
    assert [s.array_index for s in el] == list(range(6))
    assert [s.state for s in el] == [
        "COMPLETED",
        "TIMEOUT",
        "TIMEOUT",
        "OUT_OF_MEMORY",
        "RUNNING",
        "PENDING",
    ]
    assert "JOB_EXEC_OVERLIMIT_WT" in el[1].reason
    assert el[2].exit_code == 265 and "walltime" in el[2].reason


def test_xml_output():
    states = by_id(torque.parse_status_xml(load_fixture("torque/qstat_x_reconstructed.txt")))
    assert states["2001[0].hostname"].state == "COMPLETED"
    assert states["2001[1].hostname"].state == "TIMEOUT"
    assert states["2001[2].hostname"].state == "PENDING"
    assert torque.parse_status_xml("") == []  # Torque < 6.1 printed nothing for no jobs


def test_xml_garbage_and_entities_refused():
    with pytest.raises(ParseError):
        torque.parse_status_xml("<Data><Job>")
    with pytest.raises(ParseError):
        torque.parse_status_xml('<!DOCTYPE x [<!ENTITY a "b">]><Data/>')


@pytest.mark.parametrize(
    ("status", "state"),
    [
        (0, "COMPLETED"),
        (1, "FAILED"),
        (-3, "FAILED"),
        (-4, "NODE_FAIL"),
        (-8, "FAILED"),
        (-10, "OUT_OF_MEMORY"),
        (-11, "TIMEOUT"),
        (-12, "TIMEOUT"),
        (-13, "BOOT_FAIL"),
        (-14, "BOOT_FAIL"),
        (271, "CANCELLED"),
        (137, "FAILED"),
    ],
)
def test_completed_exit_statuses(status, state):
    text = f"Job Id: 5.h\n    job_state = C\n    exit_status = {status}\n"
    assert torque.parse_status(text)[0].state == state


@pytest.mark.parametrize(
    ("letter", "state"),
    [
        ("Q", "PENDING"),
        ("H", "PENDING"),
        ("W", "PENDING"),
        ("T", "PENDING"),
        ("R", "RUNNING"),
        ("E", "COMPLETING"),
        ("S", "SUSPENDED"),
    ],
)
def test_live_letters(letter, state):
    assert torque.parse_status(f"Job Id: 5.h\n    job_state = {letter}\n")[0].state == state


def test_submit_and_argv():
    # "qsub -t 0-4 job_script" prints "1098[].hostname" (Multiple Job Submission).
    sub = torque.parse_submit("1098[].hostname\n")
    assert (sub.job_id, sub.cluster, sub.array) == ("1098[].hostname", "hostname", True)
    assert torque.status_argv(["1098[].hostname"]) == ["qstat", "-f", "-1", "-t", "1098[].hostname"]
    assert torque.cancel_argv(["1098[].hostname"], element=3) == ["qdel", "1098[3].hostname"]
    assert torque.find_by_name_argv("hpcl-x") == ["qselect", "-N", "hpcl-x"]
    assert torque.parse_find_by_name("1098[].hostname\n") == ["1098[].hostname"]


def test_garbage_text_is_a_parse_error():
    with pytest.raises(ParseError, match="Job Id"):
        torque.parse_status("qstat: Unknown Job Id Error 12.h\n")
    with pytest.raises(ParseError):
        torque.parse_status("Job Id: 5.h\n    job_state = C\n    exit_status = abc\n")
    with pytest.raises(UserError):
        torque.cancel_argv(["$(reboot)"])
