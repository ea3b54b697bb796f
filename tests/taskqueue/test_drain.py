"""Many workers drain a queue: every task runs exactly once, none is left behind."""

from __future__ import annotations

import subprocess

from queue_helpers import hpclaunch_cmd, marker_counts, run_cli

N_TASKS = 2000
N_WORKERS = 8


def test_eight_workers_drain_2000_tasks_exactly_once(queue_url, tmp_path):
    markers = tmp_path / "markers"
    markers.mkdir()
    batch = tmp_path / "batch.yaml"
    batch.write_text(
        f'name: markers\ncommand: "echo ran >> {markers}/{{run}}"\nn_runs: {N_TASKS}\n'
    )
    out = run_cli("enqueue", "--file", str(batch), check=True)
    assert f"{N_TASKS} tasks enqueued" in out.stdout

    procs = [
        subprocess.Popen(
            hpclaunch_cmd("worker", "--close-on-empty-queue", "-q"),
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(N_WORKERS)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err

    counts = marker_counts(markers)
    assert len(counts) == N_TASKS, "some tasks never ran"
    assert set(counts.values()) == {1}, "some task ran more than once"

    from hpclaunch.queue import store
    from hpclaunch.queue.db import connect

    stats = store.stats(connect(queue_url))
    assert stats["by_status"]["completed"] == N_TASKS
    assert stats["by_status"]["pending"] == stats["by_status"]["running"] == 0
    workers = store.list_workers(connect(queue_url), include_gone=True)
    assert len(workers) == N_WORKERS
    assert {w["exit_reason"] for w in workers} == {"empty_queue"}
    assert sum(w["completed"] for w in workers) == N_TASKS
