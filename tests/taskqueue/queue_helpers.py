"""Helpers shared by the queue tests: run the real CLI and workers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def hpclaunch_cmd(*args: str) -> list[str]:
    return [sys.executable, "-P", "-m", "hpclaunch", *args]


def run_cli(*args: str, check: bool = False, timeout: float = 120, **kw):
    """Run the real CLI in a subprocess (the way a user does)."""
    return subprocess.run(
        hpclaunch_cmd(*args),
        capture_output=True,
        text=True,
        check=check,
        timeout=timeout,
        env={**os.environ, **kw.pop("env", {})},
        **kw,
    )


def start_worker(*args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen(
        hpclaunch_cmd("worker", *args),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def marker_counts(folder: Path) -> dict[str, int]:
    return {p.name: len(p.read_text().splitlines()) for p in folder.iterdir()}
