"""Helpers for launch tests: the CLI in a subprocess, waiting, marker files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from waiting import wait_until  # noqa: F401 - re-exported for the launch tests


def hpclaunch_exe() -> str:
    """The installed console script (what a batch script on the cluster calls)."""
    exe = Path(sys.executable).parent / "hpclaunch"
    assert exe.exists(), f"no hpclaunch console script beside {sys.executable}"
    return str(exe)


def cli(*args: str, check: bool = True, env: dict | None = None, timeout: float = 300):
    out = subprocess.run(
        [hpclaunch_exe(), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
    if check and out.returncode != 0:
        raise AssertionError(
            f"hpclaunch {' '.join(args)} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}"
        )
    return out


def cli_json(*args: str, **kw):
    return json.loads(cli(*args, "--json", **kw).stdout)


def enqueue_markers(tmp_path: Path, n: int, name: str = "work") -> Path:
    """n command tasks, each appending a line to its own marker file."""
    markers = tmp_path / "markers"
    markers.mkdir(exist_ok=True)
    batch = tmp_path / f"{name}.yaml"
    batch.write_text(f'name: {name}\ncommand: "echo ran >> {markers}/{{run}}"\nn_runs: {n}\n')
    cli("enqueue", "--file", str(batch))
    return markers


def queue_counts() -> dict[str, int]:
    return cli_json("stats")["by_status"]


def marker_counts(folder: Path) -> dict[str, int]:
    return {p.name: len(p.read_text().splitlines()) for p in folder.iterdir()}
