"""Every parser fed random text or bytes returns results or raises ParseError, nothing else."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hpclaunch.schedulers import (
    STATES,
    JobState,
    ParseError,
    SubmittedJob,
    local,
    pbs,
    sge,
    slurm,
    torque,
)

PARSERS = [
    slurm.parse_submit,
    slurm.parse_status,
    slurm.parse_accounting,
    slurm.parse_find_by_name,
    pbs.parse_submit,
    pbs.parse_status,
    pbs.parse_status_text,
    pbs.parse_accounting,
    pbs.parse_find_by_name,
    torque.parse_submit,
    torque.parse_status,
    torque.parse_status_xml,
    torque.parse_accounting,
    torque.parse_find_by_name,
    local.parse_exit_record,
    local.parse_status,
    sge.parse_submit,
    sge.parse_status,
    sge.parse_accounting,
    sge.parse_find_by_name,
]

# Text that looks a little like scheduler output, so fuzzing reaches past the first check.
_pieces = st.sampled_from(
    [
        "|",
        "\n",
        "_",
        "[",
        "]",
        "%",
        "-",
        ",",
        ":",
        ".",
        " = ",
        "Job Id: ",
        "    ",
        "\t",
        "1234",
        "7",
        "0-99%4",
        "PENDING",
        "RUNNING",
        "CANCELLED by 0",
        "OUT_OF_MEMORY",
        "0:9",
        ".batch",
        ".extern",
        "None",
        "job_state",
        "exit_status",
        "Exit_status",
        "C",
        "F",
        "X",
        "-11",
        "271",
        "{",
        "}",
        '"Jobs"',
        '"job_state"',
        '"R"',
        "<Data>",
        "<Job>",
        "</Job>",
        "<Job_Id>",
        "</Job_Id>",
        "server.example",
        "inf",
        "\\",
        "exit",
        "signal",
        "cancelled",
        "<job_info>",
        "<job_list>",
        "</job_list>",
        "<JB_job_number>",
        "</JB_job_number>",
        "<state>",
        "</state>",
        "hqw",
        "<tasks>",
        "1-6:1",
        "==============",
        "failed       100 : assumedly after job",
        "jobnumber   ",
        "taskid      ",
        "category     -l h_rt=5",
        "137   (Killed)",
    ]
)
scheduler_like = st.lists(_pieces, max_size=40).map("".join)


def _check(parser, data):
    try:
        result = parser(data)
    except ParseError as exc:
        message = str(exc)
        assert message and "\n" not in message
        return
    if isinstance(result, list):
        for item in result:
            assert isinstance(item, str | JobState)
            if isinstance(item, JobState):
                assert item.state in STATES
    else:
        assert isinstance(result, SubmittedJob | tuple)


@pytest.mark.parametrize("parser", PARSERS, ids=lambda p: f"{p.__module__}.{p.__name__}")
# HPCLAUNCH_FUZZ_EXAMPLES raises the count for a longer local hunt.
@settings(
    max_examples=int(os.environ.get("HPCLAUNCH_FUZZ_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(data=st.one_of(st.text(), scheduler_like, st.binary()))
def test_parsers_never_crash(parser, data):
    _check(parser, data)


ARGV_BUILDERS = [
    slurm.status_argv,
    slurm.accounting_argv,
    slurm.cancel_argv,
    pbs.status_argv,
    pbs.accounting_argv,
    pbs.cancel_argv,
    torque.status_argv,
    torque.accounting_argv,
    torque.cancel_argv,
    sge.status_argv,
    sge.accounting_argv,
    sge.cancel_argv,
]


@pytest.mark.parametrize("build", ARGV_BUILDERS, ids=lambda b: f"{b.__module__}.{b.__name__}")
@settings(max_examples=100, deadline=None)
@given(ids=st.lists(st.one_of(st.text(max_size=12), st.sampled_from(["12", "12_3", "1[].s"]))))
def test_argv_builders_accept_only_job_ids(build, ids):
    """Random IDs either become arguments that cannot be read as options, or a UserError."""
    from hpclaunch.errors import UserError

    try:
        argv = build(ids)
    except UserError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    assert all(isinstance(a, str) and a for a in argv)
    for job_id in ids:  # every accepted ID starts with a digit: never read as an option
        assert job_id.strip()[:1].isdigit()


@pytest.mark.parametrize("module", [slurm, pbs, torque, sge], ids=lambda m: m.NAME)
@settings(max_examples=100, deadline=None)
@given(name=st.text(max_size=30))
def test_job_names_are_validated(module, name):
    from hpclaunch.errors import UserError

    try:
        argv = module.find_by_name_argv(name)
    except UserError:
        return
    assert name in argv and not name.startswith("-") and not any(c.isspace() for c in name)


@pytest.mark.parametrize("name", ["slurm", "pbs", "torque", "sge", "local"])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    stdout=st.one_of(st.text(), scheduler_like),
    stderr=st.one_of(
        st.text(max_size=80),
        st.sampled_from(
            [
                "qstat: Unknown Job Id 17[].pbshost\n",
                "qstat: PBS is not configured to maintain job history 18.pbshost\n",
                "squeue: error: Invalid job id specified\n",
            ]
        ),
    ),
    returncode=st.sampled_from([0, 1, 35, 153]),
)
def test_status_interpretation_never_crashes(name, stdout, stderr, returncode):
    from hpclaunch.schedulers import StatusAnswer, get_scheduler

    try:
        answer = get_scheduler(name).interpret_status(stdout, stderr, returncode)
    except ParseError:
        return
    assert isinstance(answer, StatusAnswer)
    assert all(s.state in STATES for s in answer.states)
