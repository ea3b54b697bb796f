"""What the rendered scripts ask of the scheduler, and how they run their workers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from render_helpers import directives, first_command_line, plan

from hpclaunch.errors import UserError
from hpclaunch.sites import available


def test_slurm_script_asks_for_warning_signal_and_runs_worker_in_background(home):
    p = plan(workers=1, sets=["worker.grace=45"])
    script = p.chunks[0].script
    sbatch = directives(script, "#SBATCH")
    assert "--signal=B:USR1@45" in sbatch
    assert "--job-name=hpcl-L1-0" in sbatch
    assert "--output=/tmp/hpclaunch-tests/work/L1/hpcl-L1-0_%A_%a.out" in sbatch
    assert "--error=/tmp/hpclaunch-tests/work/L1/hpcl-L1-0_%A_%a.err" in sbatch
    worker = [line for line in script.splitlines() if " worker " in line][0]
    assert worker.strip().startswith("hpclaunch worker --singleflow")
    assert "--walltime 00:10:00 --launch-id L1 --grace 45" in worker
    assert worker.rstrip().endswith("&")
    assert "trap 'hpcl_forward USR1' USR1" in script
    assert "trap 'hpcl_forward TERM' TERM INT" in script
    assert 'wait "$hpcl_pid"' in script


def test_job_names_are_unique_per_chunk(home):
    p = plan(workers=25, sets=["arrays.max_array_size=10"])
    names = [c.job_name for c in p.chunks]
    assert names == ["hpcl-L1-0", "hpcl-L1-1", "hpcl-L1-2"]
    for chunk in p.chunks:
        assert f"--job-name={chunk.job_name}" in directives(chunk.script, "#SBATCH")
    assert [directives(c.script, "#SBATCH --array=") for c in p.chunks] == [
        ["0-9"],
        ["0-9"],
        ["0-4"],
    ]


def test_max_concurrent_throttles_each_array(home):
    p = plan(workers=5, sets=["arrays.max_concurrent=2"])
    assert directives(p.chunks[0].script, "#SBATCH --array=") == ["0-4%2"]


def test_draining_worker_options(home):
    p = plan(
        sets=[
            "worker.mode=draining",
            "worker.nitems_max=7",
            "worker.wait_timeout=60",
            "worker.close_on_empty_queue=false",
        ],
        tags=["gpu", "big"],
    )
    worker = [line for line in p.chunks[0].script.splitlines() if " worker " in line][0]
    assert "--singleflow" not in worker and "--close-on-empty-queue" not in worker
    assert "--nitems-max 7 --wait-timeout 60 -t gpu -t big" in worker


def test_unset_optional_directives_render_no_line(home):
    script = plan().chunks[0].script
    assert not any(
        d.startswith(("--account", "--qos", "--partition", "--constraint", "--gpus"))
        for d in directives(script, "#SBATCH")
    )
    script = plan(account="proj", qos="high", partition="debug", gpus="2").chunks[0].script
    assert {"--account=proj", "--qos=high", "--partition=debug", "--gpus-per-node=2"} <= set(
        directives(script, "#SBATCH")
    )


def test_database_password_never_reaches_the_script(home):
    with pytest.raises(UserError, match="password"):
        plan(sets=["database.url=postgresql://u:secret@db/q"])
    script = plan(sets=["database.env=MY_QUEUE_URL"]).chunks[0].script
    assert 'export HPCLAUNCH_DATABASE_URL="${MY_QUEUE_URL:-}"' in script
    script = (
        plan(sets=["database.url=postgresql://u@db.example.org/q?sslmode=require"]).chunks[0].script
    )
    assert (
        "export HPCLAUNCH_DATABASE_URL='postgresql://u@db.example.org/q?sslmode=require'" in script
    )


def test_required_keys_must_be_set_before_rendering(home):
    with pytest.raises(UserError, match=r"requires resources.account .*pass --account VALUE"):
        plan(sets=["required=[resources.account]"])
    assert "--account=p" in directives(
        plan(sets=["required=[resources.account]"], account="p").chunks[0].script, "#SBATCH"
    )


def test_rendering_is_byte_identical_across_processes(home, tmp_path):
    code = (
        "from hpclaunch.render import plan_launch; from hpclaunch.sites import *;"
        "p = load_profile('tests-slurm', [parse_set('env.B=2'), parse_set('env.A=1')]);"
        "import sys; sys.stdout.write(''.join(c.script for c in "
        "plan_launch(p, 30, None, tags=['x', 'y']).chunks))"
    )
    outputs = set()
    for seed in ("1", "2", "3"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        outputs.add(
            subprocess.run(
                [sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True
            ).stdout
        )
    assert len(outputs) == 1
    assert "export A=1\nexport B=2\n" in outputs.pop()


@pytest.mark.parametrize("name", sorted(available()))
def test_directives_come_before_the_first_command(home, name):
    """sbatch and qsub stop reading directives at the first command line (sbatch(1), qsub(1B))."""
    overrides = {"account": "proj1"}
    for chunk in plan(name, workers=3, **overrides).chunks:
        lines = chunk.script.splitlines()
        stop = first_command_line(chunk.script)
        assert lines[0] == "#!/bin/bash"
        late = [line for line in lines[stop:] if line.startswith(("#SBATCH", "#PBS"))]
        assert late == []


# ---------------------------------------------------------------- running the script itself
FAKE_WORKER = """#!/bin/bash
# stands in for `hpclaunch worker`: records its arguments and the signals it gets
echo "start $$ $*" >> "$HPCL_TEST_LOG"
trap 'echo "term $$" >> "$HPCL_TEST_LOG"; exit 0' TERM
trap 'echo "usr1 $$" >> "$HPCL_TEST_LOG"; exit 0' USR1
while :; do sleep 0.1; done
"""


def _lines(log: Path, prefix: str) -> list[str]:
    if not log.exists():
        return []
    return [line for line in log.read_text().splitlines() if line.startswith(prefix)]


def _wait_for(predicate, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def test_script_starts_k_workers_and_forwards_the_warning_signal(home, tmp_path):
    worker = tmp_path / "bin" / "fake-hpclaunch"
    worker.parent.mkdir()
    worker.write_text(FAKE_WORKER)
    worker.chmod(0o755)
    log = tmp_path / "workers.log"
    p = plan(
        workers=3,
        workers_per_job="3",
        sets=[f"worker.command={worker}", f"workdir={tmp_path / 'work'}"],
    )
    script = tmp_path / "job.sh"
    script.write_text(p.chunks[0].script)
    env = dict(os.environ, HPCL_TEST_LOG=str(log), HPCLAUNCH_DATABASE_URL="sqlite:///x")
    proc = subprocess.Popen(["bash", str(script)], env=env)
    try:
        assert _wait_for(lambda: len(_lines(log, "start ")) == 3)
        starts = _lines(log, "start ")
        assert all("worker --singleflow" in line and "--launch-id L1" in line for line in starts)
        proc.send_signal(signal.SIGUSR1)  # what SLURM sends GRACE seconds before the end
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert len(_lines(log, "usr1 ")) == 3  # the walltime warning reaches every worker as is
    assert (tmp_path / "work" / "L1").is_dir()


def test_script_refuses_to_start_without_its_database_variable(home, tmp_path):
    p = plan(sets=["database.env=MY_QUEUE_URL", f"workdir={tmp_path}"])
    script = tmp_path / "job.sh"
    script.write_text(p.chunks[0].script)
    env = {k: v for k, v in os.environ.items() if k != "MY_QUEUE_URL"}
    result = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True)
    assert result.returncode == 78
    assert "MY_QUEUE_URL is not set" in result.stderr


def test_local_scheduler_script_runs_all_workers(home, tmp_path):
    worker = tmp_path / "w.sh"
    worker.write_text('#!/bin/bash\necho "ran $*"\n')
    worker.chmod(0o755)
    p = plan("local", workers=2, sets=[f"worker.command={worker}", f"workdir={tmp_path}"])
    assert len(p.chunks) == 1 and p.chunks[0].workers == 2
    script = tmp_path / "run.sh"
    script.write_text(p.chunks[0].script)
    shell_out = subprocess.run(
        ["bash", str(script)], check=True, timeout=60, capture_output=True, text=True
    ).stdout
    # The workers' output is in the launch folder (where `logs` reads it), not the
    # shell's own stdout.
    live = tmp_path / "L1" / f"{p.chunks[0].job_name}.workers.out"
    out = live.read_text()
    assert out.count("ran worker") == 2 and "--walltime 24:00:00" in out
    assert "ran worker" not in shell_out


def test_a_failing_setup_line_ends_the_job_before_any_worker(home, tmp_path):
    worker = tmp_path / "w.sh"
    worker.write_text('#!/bin/bash\necho "ran $*"\n')
    worker.chmod(0o755)
    sites = home / "sites"
    sites.mkdir(exist_ok=True)
    (sites / "broken.yaml").write_text(
        f"extends: local\nworkdir: {tmp_path}\nworker:\n  command: {worker}\n"
        "setup:\n  - echo setting up\n  - module_load_that_does_not_exist gromacs\n"
    )
    from hpclaunch.render import plan_launch
    from hpclaunch.sites import load_profile

    script = tmp_path / "run.sh"
    script.write_text(plan_launch(load_profile("broken"), 1, "L2").chunks[0].script)
    done = subprocess.run(["bash", str(script)], timeout=60, capture_output=True, text=True)
    assert done.returncode != 0
    assert "setting up" in done.stdout and "ran worker" not in done.stdout


def test_a_grace_leaving_less_than_half_the_walltime_is_refused(home):
    # Walltime 30 s with the default grace of 30 s made the workers exit
    # at once without claiming a task (e2e3_timeout_submit.txt, real OpenPBS 23.06).
    with pytest.raises(UserError, match=r"worker.grace 30 s leaves less than half"):
        plan("derecho", account="P1", walltime="00:00:30")
    with pytest.raises(UserError, match="worker.grace"):
        plan("tests-slurm", walltime="00:01:00", sets=["worker.grace=31"])
    assert plan("tests-slurm", walltime="00:01:00", sets=["worker.grace=30"]).chunks


def test_a_failing_worker_leaves_its_last_words_in_the_shells_stderr(home, tmp_path):
    # The workers' stderr now goes to the launch folder; a worker that
    # cannot start must still be explained in the scheduler's -e file, which `status`
    # quotes when it marks the launch broken.
    p = plan(
        "local", workers=1, sets=["worker.command=/opt/nowhere/hpclaunch", f"workdir={tmp_path}"]
    )
    script = tmp_path / "run.sh"
    script.write_text(p.chunks[0].script)
    done = subprocess.run(["bash", str(script)], timeout=60, capture_output=True, text=True)
    assert done.returncode == 127
    assert "/opt/nowhere/hpclaunch" in done.stderr
    assert (
        "/opt/nowhere/hpclaunch"
        in (tmp_path / "L1" / f"{p.chunks[0].job_name}.workers.err").read_text()
    )
