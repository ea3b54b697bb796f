"""Elastic workers (``submit --keep``) on the real local SLURM.

300 tasks of about one second, ``--max-workers 8 --drain-within 20s``: a sampler
counts the keeper's array elements still queued or running (``squeue`` on the
test's own account) every half second, independently of hpclaunch. The keeper
is killed (SIGKILL) mid-run and started again: it takes its lease back from the
database and neither loses the workers it started nor doubles them.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import threading
import time

from launch_helpers import cli, cli_json, hpclaunch_exe, queue_counts, wait_until


def alive(slurm, account: str) -> int:
    out = subprocess.run(
        ["squeue", "-h", "-r", "-A", account, "-o", "%i"],
        env=slurm.env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    return len(out.stdout.split()) if out.returncode == 0 else -1


def keeper(tmp_path, pg_url: str, account: str) -> subprocess.Popen:
    return subprocess.Popen(
        [
            hpclaunch_exe(),
            "submit",
            "--site",
            "tests-slurm",
            "--keep",
            "--max-workers",
            "8",
            "--drain-within",
            "20s",
            "--every",
            "2",
            "--account",
            account,
            "--set",
            f"workdir={tmp_path / 'work'}",
            "--set",
            f"worker.command={hpclaunch_exe()}",
            "--set",
            f"database.url={pg_url}",
            "--set",
            "worker.mode=draining",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ.copy(),
    )


def test_keep_tops_up_to_the_cap_drains_the_queue_and_survives_a_restart(
    slurm, pg_queue_url, tmp_path, monkeypatch
):
    monkeypatch.setenv("SLURM_CONF", str(slurm.conf))
    account = "keep" + secrets.token_hex(4)
    batch = tmp_path / "work.yaml"
    batch.write_text('name: work\ncommand: "sleep 1"\nn_runs: 300\n')
    cli("enqueue", "--file", str(batch))
    samples: list[int] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            samples.append(alive(slurm, account))
            time.sleep(0.5)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    first = keeper(tmp_path, pg_queue_url, account)
    try:
        wait_until(lambda: alive(slurm, account) >= 6, timeout=120, what="6 workers alive")
        first.send_signal(signal.SIGKILL)  # no clean exit: its lease stays in the database
        first.wait(timeout=30)
        before = alive(slurm, account)
        second = keeper(tmp_path, pg_queue_url, account)
        out, err = second.communicate(timeout=420)
        assert second.returncode == 0, out + err
        assert "stopped submitting: no pending task left" in out
    finally:
        stop.set()
        sampler.join(timeout=5)
        if first.poll() is None:
            first.kill()
        subprocess.run(["scancel", "-A", account], env=slurm.env, capture_output=True)
    counts = queue_counts()
    assert counts.get("completed") == 300 and counts.get("pending", 0) == 0
    assert max(samples) <= 8, samples
    assert max(samples) >= 6, samples
    assert before > 0  # the workers outlived the killed loop: the restart had to count them
    assert alive(slurm, account) == 0  # no job left once the queue is empty
    launches = cli_json("status", "--all")["launches"]
    assert launches and all(la["status"] == "finished" for la in launches)
