"""A submission whose reply is lost is never sent twice.

Everything here is real: the sshd, the TCP connection the relay drops, sbatch and
the SLURM controller. The only test hook is timing: the uploaded script is
swapped for a FIFO so the test knows the moment the real sbatch reads it, holds
the server's replies from then on, waits until the job is in squeue, and then
cuts the connection: sbatch ran, its reply was never read.
"""

from __future__ import annotations

import os
import threading
import time

from launch_helpers import hpclaunch_exe
from relay import TcpRelay

from hpclaunch.transport import SSHTransport


class FifoScripts(SSHTransport):
    """Uploads each script as usual, then replaces it with a FIFO feeding the same text."""

    def __init__(self, *args, on_read, **kwargs):
        super().__init__(*args, **kwargs)
        self.on_read = on_read
        self.feeders: list[threading.Thread] = []

    def write_file(self, path, data, mode=0o644):
        super().write_file(path, data, mode)
        if path.endswith(".sh"):
            os.unlink(path)
            os.mkfifo(path, 0o755)

            def feed():
                with open(path, "wb") as fifo:  # blocks until sbatch opens the script
                    self.on_read(path)
                    fifo.write(data)

            feeder = threading.Thread(target=feed, daemon=True)
            feeder.start()
            self.feeders.append(feeder)


def test_lost_sbatch_reply_then_retry_leaves_exactly_one_job(sshd, slurm, pg_queue_url, tmp_path):
    from hpclaunch.launches import submit
    from hpclaunch.queue import launch_rows as records
    from hpclaunch.queue.db import connect
    from hpclaunch.sites import load_profile, parse_set

    keys = [line for line in sshd.known_hosts.read_text().splitlines() if line.strip()]
    relay = TcpRelay((sshd.host, sshd.port))
    known = tmp_path / "known_hosts"
    known.write_text("".join(f"[127.0.0.1]:{relay.port} {' '.join(k.split()[1:])}\n" for k in keys))
    job_seen = threading.Event()

    def hold_then_cut(path):
        relay.hold()  # from now on no reply from the server reaches us
        name = os.path.basename(path)[:-3]
        end = time.monotonic() + 30
        while time.monotonic() < end:
            out = slurm.run(["squeue", "-h", "-n", name, "-o", "%i"]).stdout
            if out.strip():
                job_seen.set()
                break
            time.sleep(0.05)
        relay.cut()

    def delayed_cut(path):
        threading.Thread(target=hold_then_cut, args=(path,), daemon=True).start()

    options = {
        "user": sshd.user,
        "port": relay.port,
        "identity_file": str(sshd.key),
        "known_hosts": str(known),
        "config_file": "none",
        "allow_agent": False,
    }
    transport = FifoScripts("127.0.0.1", options, on_read=delayed_cut)
    profile = load_profile(
        "tests-slurm",
        [
            parse_set(s)
            for s in (
                f"workdir={tmp_path / 'work'}",
                f"worker.command={hpclaunch_exe()}",
                f"database.url={pg_queue_url}",
                "extra_directives=[--begin=now+1hour]",
            )
        ],
    )
    engine = connect(pg_queue_url)
    try:
        result = submit.submit(engine, pg_queue_url, profile, 3, transport=transport)
        assert job_seen.is_set(), "sbatch never ran before the cut"
        (job,) = result.jobs
        assert transport.connections_opened == 2  # the first one was cut
        assert result.scheduler_calls == 2  # the lost sbatch, then one look-up by name
        name = job["job_name"]
        in_queue = slurm.run(["squeue", "-h", "-n", name, "-o", "%F"]).stdout.split()
        assert sorted(set(in_queue)) == [job["job_id"]]  # exactly one job, the recorded one
        (launch,) = records.list_launches(engine)
        assert launch["status"] == "submitted"
        assert [j["job_id"] for j in launch["jobs"]] == [job["job_id"]]
    finally:
        slurm.run(
            ["scancel", "-n", f"hpcl-{result.plan.launch_id}-0"]
        ) if "result" in locals() else None
        relay.close()
