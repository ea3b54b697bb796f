"""A lost sbatch reply over either transport: ambiguous, never re-sent, and the
look-up the caller must make finds exactly one job (real sshd, real SLURM).

The only hook is timing: sbatch reads its script from a FIFO, so the test knows
when sbatch runs; it then holds the server's replies, waits until the job is in
squeue, and cuts the connection: sbatch ran, its reply was never read.
"""

from __future__ import annotations

import os
import threading
import time
import uuid

import pytest

from hpclaunch.transport import AmbiguousCommandError

pytestmark = [pytest.mark.ssh, pytest.mark.slurm]


def test_lost_sbatch_reply_is_ambiguous_and_leaves_exactly_one_job(
    relay, ssh_options, make_transport, slurm, tmp_path
):
    name = f"hpcl-lost-{uuid.uuid4().hex[:8]}"
    script = tmp_path / "job.sh"
    os.mkfifo(script, 0o755)
    job_seen = threading.Event()

    def feed_then_cut():
        with open(script, "wb") as fifo:  # blocks until sbatch opens the script
            relay.hold()  # from now on no reply from the server reaches us
            fifo.write(b"#!/bin/bash\ntrue\n")
        end = time.monotonic() + 30
        while time.monotonic() < end:
            if slurm.run(["squeue", "-h", "-n", name, "-o", "%i"]).stdout.strip():
                job_seen.set()
                break
            time.sleep(0.05)
        relay.cut()

    feeder = threading.Thread(target=feed_then_cut, daemon=True)
    options = dict(ssh_options, port=relay.port, known_hosts=str(relay.known_hosts))
    sbatch = [
        "sbatch", "--parsable", "-J", name, "-p", slurm.partition, "--begin=now+1hour",
        "-o", "/dev/null", str(script),
    ]  # fmt: skip
    try:
        with make_transport("127.0.0.1", options) as t:
            t.connect()
            feeder.start()
            with pytest.raises(AmbiguousCommandError) as info:
                t.run(sbatch)
            feeder.join(timeout=60)
            assert job_seen.is_set(), "sbatch never ran before the cut"
            assert "may or may not have run" in str(info.value)
            # What the caller must do before trying again: look for the job by name.
            found = t.run(["squeue", "-h", "-n", name, "-o", "%i"], idempotent=True)
            assert t.connections_opened == 2  # the cut one, then one for the look-up
        assert len(found.stdout.split()) == 1  # exactly one job: sbatch was not re-sent
        in_queue = slurm.run(["squeue", "-h", "-n", name, "-o", "%i"]).stdout.split()
        assert in_queue == found.stdout.split()
    finally:
        slurm.run(["scancel", "-n", name])
