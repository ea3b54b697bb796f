"""Shared helpers for the scheduler adapter tests."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


def load_fixture(relpath: str) -> str:
    """A fixture's body: its leading '#' lines name the source and are dropped."""
    text = (FIXTURES / relpath).read_text(encoding="utf-8")
    lines = text.splitlines(keepends=True)
    while lines and lines[0].startswith("#"):
        lines.pop(0)
    return "".join(lines)


def fixture_header(relpath: str) -> str:
    text = (FIXTURES / relpath).read_text(encoding="utf-8")
    return "".join(ln for ln in text.splitlines(keepends=True) if ln.startswith("#"))


@pytest.fixture
def slurm_cluster() -> dict[str, str]:
    """The local test SLURM (scripts/testenv.sh up); skip without it unless it is required."""
    required = os.environ.get("HPCLAUNCH_TESTENV_REQUIRED") == "1"
    problem = None
    if not os.environ.get("SLURM_CONF"):
        problem = "SLURM_CONF is not set (source $HPCLAUNCH_TESTENV_DIR/env.sh)"
    elif shutil.which("sbatch") is None:
        problem = "sbatch is not installed"
    else:
        probe = subprocess.run(["sinfo", "-h"], capture_output=True, text=True, timeout=30)
        if probe.returncode != 0:
            problem = f"sinfo failed: {probe.stderr.strip()[:200]}"
    if problem:
        if required:
            pytest.fail(f"local SLURM required but unavailable: {problem}")
        pytest.skip(f"local SLURM unavailable: {problem}")
    return dict(os.environ)
