"""The real local SLURM (scripts/testenv.sh) accepts the rendered scripts.

``sbatch --test-only`` validates a script and its directives against the
cluster's configuration without queueing a job. A small max_array_size forces
2,500 workers into many arrays, each indexed from 0.
"""

from __future__ import annotations

import subprocess

import pytest

from hpclaunch.render import plan_launch
from hpclaunch.sites import flag_overrides, load_profile, parse_set


@pytest.mark.slurm
@pytest.mark.parametrize("per_job", [1, 2])
@pytest.mark.parametrize("workers", [1, 50, 2500])
def test_sbatch_test_only_accepts_every_chunk(slurm, home, tmp_path, workers, per_job):
    profile = load_profile(
        "tests-slurm",
        flag_overrides(partition=slurm.partition, workers_per_job=str(per_job))
        + [
            parse_set("arrays.max_array_size=100"),
            parse_set("arrays.max_concurrent=4"),
            parse_set(f"workdir={tmp_path}"),
        ],
    )
    plan = plan_launch(profile, workers, f"t{workers}x{per_job}")
    assert sum(c.workers for c in plan.chunks) == workers
    if workers == 2500:
        assert len([c for c in plan.chunks if c.array]) == -(-2500 // per_job // 100)
    for chunk in plan.chunks:
        path = tmp_path / chunk.filename
        path.write_text(chunk.script)
        result = subprocess.run(
            ["sbatch", "--test-only", str(path)],
            env=slurm.env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, f"{chunk.filename}: {result.stderr.strip()}"
        assert "to start at" in result.stderr, result.stderr


@pytest.mark.slurm
def test_sbatch_rejects_an_array_above_the_clusters_limit(slurm, home, tmp_path):
    """The planner's split matters: one 10,002-element array is refused by this cluster."""
    profile = load_profile(
        "tests-slurm",
        flag_overrides(partition=slurm.partition)
        + [parse_set("arrays.max_array_size=20000"), parse_set(f"workdir={tmp_path}")],
    )
    (chunk,) = plan_launch(profile, 10002, "big").chunks
    path = tmp_path / chunk.filename
    path.write_text(chunk.script)
    result = subprocess.run(
        ["sbatch", "--test-only", str(path)],
        env=slurm.env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
