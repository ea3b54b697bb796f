"""The Grid Engine adapter against the real one-node cell: a task array end to end."""

from __future__ import annotations

import json
import sys
import time
import uuid
from pathlib import Path

import pytest

from hpclaunch.schedulers import get_scheduler

sge_scheduler = get_scheduler("sge")
pytestmark = pytest.mark.sge


def poll(sge, job_ids, done, limit_s=120.0):
    """Ask qstat (then qacct) through the adapter until done(states) holds."""
    deadline = time.monotonic() + limit_s
    states = []
    while time.monotonic() < deadline:
        res = sge.run(sge_scheduler.status_argv(job_ids))
        assert res.returncode == 0, res.stderr
        states = sge_scheduler.parse_status(res.stdout)
        states = [s for s in states if (s.array_job_id or s.job_id) in job_ids]
        if not states:  # left the queue: accounting knows how it ended
            acct = sge.run(sge_scheduler.accounting_argv(job_ids))
            states = sge_scheduler.parse_accounting(acct.stdout)
        if done(states):
            return states
        time.sleep(1)
    pytest.fail(f"jobs {job_ids} never reached the expected states; last seen: {states}")


@pytest.fixture
def submitted(sge):
    ids: list[str] = []
    yield ids
    if ids:
        sge.run(sge_scheduler.cancel_argv(ids))


def test_a_task_array_runs_every_element_once_and_workers_see_their_index(sge, tmp_path, submitted):
    name = f"hpcl-live-{uuid.uuid4().hex[:8]}"
    script = tmp_path / f"{name}.sh"
    identity = (
        "import json; from hpclaunch.worker.identity import scheduler_identity; "
        "print(json.dumps(scheduler_identity()))"
    )
    script.write_text(
        "#!/bin/bash\n"
        f"#$ -N {name}\n#$ -S /bin/bash\n#$ -cwd\n#$ -l h_rt=00:05:00\n"
        "#$ -t 1-3\n#$ -tc 2\n"
        f"#$ -o {tmp_path}/{name}.$TASK_ID.out\n#$ -e {tmp_path}/{name}.$TASK_ID.err\n"
        "export HPCLAUNCH_SCHEDULER=sge\n"
        f"{sys.executable} -c '{identity}'\n"
    )
    res = sge.run(
        ["sh", "-c", f"cd {tmp_path} && " + " ".join(sge_scheduler.submit_argv(str(script)))]
    )
    assert res.returncode == 0, res.stderr
    job = sge_scheduler.parse_submit(res.stdout)
    submitted.append(job.job_id)
    assert job.array

    states = poll(
        sge,
        [job.job_id],
        lambda st: len(st) == 3 and all(s.terminal for s in st),
    )
    assert sorted((s.array_index, s.state) for s in states) == [
        (0, "COMPLETED"),
        (1, "COMPLETED"),
        (2, "COMPLETED"),
    ]
    for index in range(3):
        out_path, _ = sge_scheduler.log_paths(str(tmp_path), name, job.job_id, index)
        seen = json.loads(Path(out_path).read_text())
        assert seen == {
            "scheduler": "sge",
            "job_id": job.job_id,
            "array_job_id": job.job_id,
            "array_index": index,
        }


def test_find_by_name_and_cancel_one_element(sge, tmp_path, submitted):
    name = f"hpcl-live-{uuid.uuid4().hex[:8]}"
    script = tmp_path / f"{name}.sh"
    script.write_text(
        f"#!/bin/bash\n#$ -N {name}\n#$ -S /bin/bash\n#$ -o /dev/null\n#$ -j y\nsleep 300\n"
    )
    res = sge.run(sge_scheduler.submit_argv(str(script), extra=["-t", "1-2"]))
    assert res.returncode == 0, res.stderr
    job_id = sge_scheduler.parse_submit(res.stdout).job_id
    submitted.append(job_id)
    found = sge.run(sge_scheduler.find_by_name_argv(name))
    assert sge_scheduler.parse_find_by_name(found.stdout) == [job_id]
    assert sge.run(sge_scheduler.cancel_argv([job_id], element=1)).returncode == 0

    def second_gone(states):
        return 1 not in {s.array_index for s in states if not s.terminal} and any(
            s.array_index == 0 for s in states
        )

    poll(sge, [job_id], second_gone)
    assert sge.run(sge_scheduler.cancel_argv([job_id])).returncode == 0
    gone = sge.run(sge_scheduler.cancel_argv(["999999"]))
    assert gone.returncode != 0 and sge_scheduler.already_gone(gone.stderr + gone.stdout)
