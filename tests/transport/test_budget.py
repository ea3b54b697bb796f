"""The shared status budget: one scheduler query per interval across processes."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

from hpclaunch.transport import budget

# A status loop: ask for the (pretend) squeue answer every 50 ms for `duration`
# seconds from `start`; the fetch records who ran it and when, and takes 0.2 s.
LOOP = r"""
import json, os, sys, time
from hpclaunch.transport import budget

calls, start, duration = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])

def squeue():
    with open(calls, "a") as f:
        f.write(json.dumps({"pid": os.getpid(), "at": time.time()}) + "\n")
    time.sleep(0.2)
    return {"by": os.getpid()}

time.sleep(max(0.0, start - time.time()))
seen = []
while time.time() < start + duration:
    seen.append(budget.cached("longleaf:squeue", 1.0, squeue)["by"])
    time.sleep(0.05)
print(json.dumps(seen))
"""


def _loops(tmp_path: Path, n: int, duration: float) -> tuple[list[dict], dict[int, list[int]]]:
    """Run n loops at once: (the fetches made, each loop's pid -> whose answers it saw)."""
    calls = tmp_path / "calls.jsonl"
    start = time.time() + 1.0
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", LOOP, str(calls), str(start), str(duration)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(n)
    ]
    seen = {p.pid: json.loads(p.communicate(timeout=60)[0]) for p in procs}
    assert all(p.returncode == 0 for p in procs)
    return [json.loads(line) for line in calls.read_text().splitlines()], seen


def test_two_status_loops_make_at_most_one_call_per_interval(tmp_path, monkeypatch):
    monkeypatch.setenv("HPCLAUNCH_HOME", str(tmp_path / "home"))
    calls, seen = _loops(tmp_path, 2, duration=3.5)
    times = sorted(c["at"] for c in calls)
    assert 2 <= len(times) <= 4  # 3.5 s at one call a second (not ~2 x 14 unshared)
    assert all(b - a >= 1.0 for a, b in zip(times, times[1:], strict=False))
    # Each loop got an answer every 50 ms or so; between them they saw answers
    # fetched by the other process: the cache is shared, not per process.
    for answers in seen.values():
        assert len(answers) > 2 * len(times)
    assert any(set(answers) - {pid} for pid, answers in seen.items())


def test_invalidate_makes_the_next_view_ask_again(tmp_path, monkeypatch):
    monkeypatch.setenv("HPCLAUNCH_HOME", str(tmp_path / "home"))
    asked = []

    def squeue():
        asked.append(1)
        return f"answer {len(asked)}"

    assert budget.reading("site:a", 60, squeue).fetched_now
    again = budget.reading("site:a", 60, squeue)  # within the interval: from the cache
    assert (again.value, again.fetched_now) == ("answer 1", False)
    assert budget.cached("site:b", 60, squeue) == "answer 2"  # another site: its own budget
    budget.invalidate("site:a")  # e.g. after submit or cancel
    assert budget.cached("site:a", 60, squeue) == "answer 3"
    reading = budget.last("site:a")
    assert reading is not None and reading.value == "answer 3" and reading.age < 5


def test_a_failed_query_is_not_cached_and_the_file_is_private(tmp_path, monkeypatch):
    monkeypatch.setenv("HPCLAUNCH_HOME", str(tmp_path / "home"))

    def broken():
        raise RuntimeError("squeue timed out")

    try:
        budget.cached("site:a", 60, broken)
    except RuntimeError:
        pass
    assert budget.cached("site:a", 60, lambda: "ok") == "ok"
    folder = tmp_path / "home" / "budget"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for path in folder.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    (next(p for p in folder.iterdir() if p.suffix == ".json")).write_text("{damaged")
    assert budget.cached("site:a", 60, lambda: "again") == "again"
    assert os.access(folder, os.W_OK)
