"""One GPU per worker with the local scheduler: real workers, a fake device list.

`submit --site local` starts one job (process) per worker on this machine; each
takes the next device slot of the list the submitting shell was given
(``CUDA_VISIBLE_DEVICES=7,3,5,1``), and every task records the variable it ran with.
"""

from __future__ import annotations

from launch_helpers import cli, cli_json, queue_counts, wait_until


def test_each_local_worker_gets_its_own_device_from_the_inherited_list(queue_url, tmp_path):
    seen = tmp_path / "seen"
    seen.mkdir()
    batch = tmp_path / "gpu.yaml"
    batch.write_text(
        f'name: gpu\ncommand: "echo $CUDA_VISIBLE_DEVICES > {seen}/{{run}}; sleep 1"\nn_runs: 4\n'
    )
    cli("enqueue", "--file", str(batch))
    out = cli_json(
        "submit",
        "--site",
        "local",
        "--workers",
        "4",
        "--set",
        f"workdir={tmp_path / 'runs'}",
        "--set",
        "resources.gpus=4",
        "--set",
        "resources.gpu_vendor=nvidia",
        "--set",
        "worker.gpus_per_worker=1",
        "--set",
        "worker.nitems_max=1",  # each of the 4 workers runs exactly one of the 4 tasks
        env={"CUDA_VISIBLE_DEVICES": "7,3,5,1"},
    )
    assert len(out["jobs"]) == 4
    wait_until(lambda: queue_counts().get("completed") == 4, what="4 tasks completed")
    devices = sorted(p.read_text().strip() for p in seen.iterdir())
    assert devices == ["1", "3", "5", "7"]
