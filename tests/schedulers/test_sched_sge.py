"""Grid Engine: command lines, and parsers fed output captured from a real SoGE 8.1.9 cell."""

from __future__ import annotations

import re

import pytest
from conftest import fixture_header, load_fixture

from hpclaunch.errors import UserError
from hpclaunch.render import plan_launch
from hpclaunch.schedulers import ParseError, get_scheduler, sge
from hpclaunch.sites import load_profile, parse_set
from hpclaunch.worker.identity import scheduler_identity

FIXTURES = [
    "sge/qsub_terse_array.txt",
    "sge/qsub_terse_plain.txt",
    "sge/qstat_xml_pending_array.xml",
    "sge/qstat_xml_running_array.xml",
    "sge/qstat_xml_mixed.xml",
    "sge/qstat_xml_j_name.xml",
    "sge/qstat_xml_j_unknown.xml",
    "sge/qacct_exit3.txt",
    "sge/qacct_h_rt.txt",
    "sge/qacct_qdel.txt",
    "sge/qacct_array.txt",
    "sge/qacct_no_accounting.txt",
    "sge/qdel_unknown.txt",
]


@pytest.mark.parametrize("name", FIXTURES)
def test_fixtures_name_their_source(name):
    header = fixture_header(name)
    assert "Source:" in header and "8.1.9" in header and "command:" in header


def test_qsub_terse_gives_the_job_number():
    array = sge.parse_submit(load_fixture("sge/qsub_terse_array.txt"))
    assert (array.job_id, array.array) == ("2", True)
    plain = sge.parse_submit(load_fixture("sge/qsub_terse_plain.txt"))
    assert (plain.job_id, plain.array) == ("3", False)
    with pytest.raises(ParseError, match="qsub -terse did not print a job ID"):
        sge.parse_submit('Your job 3 ("x") has been submitted\n')


def test_submit_and_cancel_command_lines():
    assert sge.submit_argv("/w/L/hpcl-L-0.sh") == ["qsub", "-terse", "/w/L/hpcl-L-0.sh"]
    assert sge.cancel_argv(["7", "8"]) == ["qdel", "7", "8"]
    assert sge.cancel_argv(["7"], element=0) == ["qdel", "7", "-t", "1"]  # tasks count from 1
    with pytest.raises(UserError, match="invalid Grid Engine job ID"):
        sge.cancel_argv(["7; rm -rf ~"])
    with pytest.raises(UserError, match="one element of one Grid Engine job"):
        sge.cancel_argv(["7", "8"], element=2)


def test_pending_task_ranges_become_elements_counted_from_zero():
    states = sge.parse_status(load_fixture("sge/qstat_xml_pending_array.xml"))
    assert [(s.job_id, s.array_job_id, s.array_index, s.state) for s in states] == [
        (f"2.{t}", "2", t - 1, "PENDING") for t in range(1, 7)
    ]


def test_running_tasks_and_the_rest_of_the_array():
    states = sge.parse_status(load_fixture("sge/qstat_xml_running_array.xml"))
    by_index = {s.array_index: s.state for s in states}
    assert by_index == {
        0: "RUNNING",
        1: "RUNNING",
        2: "PENDING",
        3: "PENDING",
        4: "PENDING",
        5: "PENDING",
    }


def test_plain_jobs_held_jobs_and_arrays_together():
    states = sge.parse_status(load_fixture("sge/qstat_xml_mixed.xml"))
    plain = {s.job_id: (s.state, s.reason) for s in states if s.array_job_id is None}
    assert plain == {"4": ("RUNNING", None), "5": ("RUNNING", None), "6": ("PENDING", "held")}
    assert sorted(s.array_index for s in states if s.array_job_id == "2") == [2, 3, 4, 5]


@pytest.mark.parametrize(
    ("letters", "state", "reason"),
    [
        ("qw", "PENDING", None),
        ("hqw", "PENDING", "held"),
        ("r", "RUNNING", None),
        ("t", "RUNNING", None),
        ("Rr", "RUNNING", None),
        ("dr", "RUNNING", "being deleted (qdel)"),  # a cancel waits until it is gone
        ("s", "SUSPENDED", "suspended"),
        ("S", "SUSPENDED", "suspended"),
        ("Eqw", "FAILED", "error state: the job cannot start (qstat -j shows why)"),
    ],
)
def test_state_letters(letters, state, reason):
    assert sge.state_of(letters) == (state, reason)


def test_empty_status_output_and_xml_garbage():
    assert sge.parse_status("") == []
    for bad in ("<job_info><job_list>", "not xml", "<other/>", '<?xml version="1.0"?><x>'):
        with pytest.raises(ParseError):
            sge.parse_status(bad)
    with pytest.raises(ParseError, match="DOCTYPE"):
        sge.parse_status('<!DOCTYPE x [<!ENTITY a "b">]><job_info/>')
    bad_number = "<job_info><job_info><job_list><JB_job_number>x</JB_job_number></job_list>"
    with pytest.raises(ParseError, match="job number"):
        sge.parse_status(bad_number + "</job_info></job_info>")


def test_accounting_verdicts():
    (exit3,) = sge.parse_accounting(load_fixture("sge/qacct_exit3.txt"))
    assert (exit3.job_id, exit3.state, exit3.exit_code, exit3.reason) == (
        "3",
        "FAILED",
        3,
        "exit code 3",
    )
    (timeout,) = sge.parse_accounting(load_fixture("sge/qacct_h_rt.txt"))
    assert timeout.state == "TIMEOUT" and "h_rt" in timeout.reason
    (deleted,) = sge.parse_accounting(load_fixture("sge/qacct_qdel.txt"))
    assert deleted.state == "CANCELLED" and "SIGKILL" in deleted.reason
    tasks = sge.parse_accounting(load_fixture("sge/qacct_array.txt"))
    assert [(s.array_job_id, s.array_index, s.state) for s in tasks] == [
        ("2", i, "COMPLETED") for i in range(6)
    ]
    assert sge.parse_accounting(load_fixture("sge/qacct_no_accounting.txt")) == []


def test_accounting_of_a_memory_limit_and_a_rerun():
    record = load_fixture("sge/qacct_h_rt.txt")
    oom = record.replace("-l h_rt=5", "-l h_rt=600,h_vmem=4M")
    (state,) = sge.parse_accounting(oom)
    assert state.state == "OUT_OF_MEMORY"
    rescheduled = re.sub(r"failed\s+37\s+:.*", "failed       25  : rescheduling", record)
    assert sge.parse_accounting(rescheduled)[0].state == "PREEMPTED"
    twice = load_fixture("sge/qacct_h_rt.txt") + load_fixture("sge/qacct_exit3.txt").replace(
        "jobnumber    3", "jobnumber    4"
    )
    (last,) = sge.parse_accounting(twice)  # one job run twice: the newest record counts
    assert last.state == "FAILED" and last.exit_code == 3


def test_accounting_runs_qacct_once_per_job_in_one_command():
    argv = sge.accounting_argv(["4", "5"])
    assert argv[:2] == ["sh", "-c"] and argv[-2:] == ["4", "5"]
    with pytest.raises(UserError):
        sge.accounting_argv(["4 5"])


def test_find_by_name():
    assert sge.find_by_name_argv("hpcl-L-0") == ["qstat", "-xml", "-j", "hpcl-L-0"]
    assert sge.parse_find_by_name(load_fixture("sge/qstat_xml_j_name.xml")) == ["5"]
    assert sge.parse_find_by_name(load_fixture("sge/qstat_xml_j_unknown.xml")) == []


def test_a_job_that_is_gone_is_not_a_failed_cancel():
    scheduler = get_scheduler("sge")
    assert scheduler.already_gone(load_fixture("sge/qdel_unknown.txt"))
    assert not scheduler.already_gone("denied: you are not the owner of job 5")


def test_worker_identity_maps_task_ids_to_elements():
    env = {"HPCLAUNCH_SCHEDULER": "sge", "JOB_ID": "2", "SGE_TASK_ID": "3"}
    assert scheduler_identity(env) == {
        "scheduler": "sge",
        "job_id": "2",
        "array_job_id": "2",
        "array_index": 2,
    }
    plain = {"HPCLAUNCH_SCHEDULER": "sge", "JOB_ID": "9", "SGE_TASK_ID": "undefined"}
    assert scheduler_identity(plain)["array_index"] is None
    assert scheduler_identity(plain)["array_job_id"] is None


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("HPCLAUNCH_HOME", str(tmp_path))
    return tmp_path


def test_render_prints_a_task_array_with_its_throttle(home):
    profile = load_profile("sge-example", [parse_set("arrays.max_concurrent=4")])
    (chunk,) = plan_launch(profile, 20, "L1").chunks
    lines = chunk.script.splitlines()
    assert "#$ -t 1-20" in lines and "#$ -tc 4" in lines
    assert "export HPCLAUNCH_SCHEDULER=sge" in lines
    assert not any("%" in line for line in lines if line.startswith("#$"))


def test_log_paths_follow_the_template(home):
    profile = load_profile("sge-example", [parse_set("workdir=/w")])
    (chunk,) = plan_launch(profile, 3, "L1").chunks
    (out_directive,) = [ln for ln in chunk.script.splitlines() if ln.startswith("#$ -o ")]
    written = out_directive.split()[-1].replace("$TASK_ID", "1")  # task 1 = element 0
    assert get_scheduler("sge").log_paths("/w/L1", chunk.job_name, "2", 0)[0] == written
