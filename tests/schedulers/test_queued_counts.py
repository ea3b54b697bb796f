"""Counting the jobs that already count against a submit limit (``queued_jobs_argv``).

SLURM: ``squeue -h -r -o %F`` prints one line per array element (pending ones
included) with the array's base job ID, so elements are lines and jobs distinct
IDs. PBS: ``qselect`` prints an array once; the qselect line is taken from the
real OpenPBS 23.06 capture (tests/schedulers/fixtures/openpbs-23.06,
qstat_qselect_edge.txt: ``12[].pbshost``).
"""

from __future__ import annotations

import pytest
from conftest import FIXTURES

from hpclaunch.schedulers import ParseError, get_scheduler


def test_slurm_counts_elements_and_jobs_from_one_squeue():
    slurm = get_scheduler("slurm")
    assert slurm.queued_jobs_argv("user", None) == ["squeue", "-h", "-r", "--me", "-o", "%F"]
    assert slurm.queued_jobs_argv("project", "abc") == [
        "squeue",
        "-h",
        "-r",
        "-A",
        "abc",
        "-o",
        "%F",
    ]
    assert slurm.queued_jobs_argv("project", None) is None
    counted = slurm.parse_queued_jobs("101\n101\n101\n102\n")
    assert counted.counted(True) == (4, True)
    assert counted.counted(False) == (2, True)
    assert slurm.parse_queued_jobs("").counted(True) == (0, True)
    with pytest.raises(ParseError):
        slurm.parse_queued_jobs("101_[0-3]\n")


def test_pbs_array_lines_make_the_count_a_lower_bound():
    text = (FIXTURES / "openpbs-23.06" / "qstat_qselect_edge.txt").read_text()
    lines = text.splitlines()
    array_line = lines[lines.index("$ qselect -x -N hpcl-0899a21c94-0") + 1]
    assert array_line == "12[].pbshost"
    pbs = get_scheduler("pbs")
    counted = pbs.parse_queued_jobs(f"{array_line}\n13.pbshost\n")
    assert counted.counted(False) == (2, True)
    assert counted.counted(True) == (2, False)  # the array's subjobs are not listed
    assert pbs.parse_queued_jobs("13.pbshost\n").counted(True) == (1, True)
    assert pbs.queued_jobs_argv("project", "proj1") == ["qselect", "-A", "proj1"]
