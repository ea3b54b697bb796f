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
