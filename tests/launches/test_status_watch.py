"""``status --watch`` keeps one SSH connection, and watches share one scheduler query.

On an MFA site every new connection is a new one-time code, so N refreshes must
cost one login. The connections are counted where they arrive: a TCP relay in
front of the real test sshd counts every connection it accepts; the scheduler
calls are what each refresh reports.
"""

from __future__ import annotations

import json
import os
import subprocess
import time

from launch_helpers import cli, cli_json, enqueue_markers, hpclaunch_exe
from relay import TcpRelay

REFRESHES = 5


def test_two_watches_share_one_squeue_and_one_ssh_connection(
    sshd, slurm, pg_queue_url, tmp_path, monkeypatch
):
    from testenv_fixtures import write_ssh_config

    relay = TcpRelay((sshd.host, sshd.port))
    keys = [line for line in sshd.known_hosts.read_text().splitlines() if line.strip()]
    known = tmp_path / "known_hosts"
    known.write_text("".join(f"[127.0.0.1]:{relay.port} {' '.join(k.split()[1:])}\n" for k in keys))
    home = tmp_path / "laptop-home"
    write_ssh_config(
        home / ".ssh" / "config",
        {
            "hpcl-watch": sshd.config_options(
                HostName="127.0.0.1", Port=str(relay.port), UserKnownHostsFile=str(known)
            )
        },
    )
    monkeypatch.setenv("HOME", str(home))
    enqueue_markers(tmp_path, 2)
    site = ["--site", "tests-slurm-ssh", "--set", "host=hpcl-watch"]
    out = cli_json(
        "submit",
        *site,
        "--workers",
        "3",
        "--set",
        f"workdir={tmp_path / 'work'}",
        "--set",
        f"worker.command={hpclaunch_exe()}",
        "--set",
        f"database.url={pg_queue_url}",
        "--set",
        "extra_directives=[--begin=now+1hour]",  # stays pending: the watch sees it live
        "--set",
        "ssh.status_interval=30",
    )
    try:
        before = relay.accepted
        first, second = _watch(), _watch()  # two loops at once, as two terminals would
        reports = _reports(first) + _reports(second)
        assert len(reports) == 2 * REFRESHES
        for report in reports:
            (launch,) = [la for la in report["launches"] if la["id"] == out["launch_id"]]
            assert launch["state_counts"] == {"PENDING": 3}
        # One squeue answers both loops for ssh.status_interval (30 s): the others
        # are the shared view, and say how old it is.
        assert sum(r["scheduler_calls"] for r in reports) == 1
        assert any("scheduler view from" in note for r in reports for note in r["notes"])
        # The loop that asked kept one connection for all its refreshes; the other,
        # served by the shared view, never needed to log in at all.
        assert relay.accepted - before == 1, "a refresh opened its own SSH connection"
    finally:
        cli("cancel", out["launch_id"], check=False)
        relay.close()


def _watch() -> subprocess.Popen:
    return subprocess.Popen(
        [hpclaunch_exe(), "status", "--watch", "--interval", "1", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )


def _reports(watch: subprocess.Popen) -> list[dict]:
    """The first REFRESHES JSON reports a watch prints; then it is stopped."""
    reports: list[dict] = []
    decoder = json.JSONDecoder()
    buffer = ""
    deadline = time.monotonic() + 120
    assert watch.stdout is not None
    try:
        while len(reports) < REFRESHES and time.monotonic() < deadline:
            line = watch.stdout.readline()
            if not line:
                break
            buffer += line
            try:
                report, end = decoder.raw_decode(buffer.strip())
            except json.JSONDecodeError:
                continue
            reports.append(report)
            buffer = buffer.strip()[end:]
    finally:
        watch.terminate()
        _, err = watch.communicate(timeout=30)
    assert len(reports) == REFRESHES, f"watch printed {len(reports)} reports; stderr: {err}"
    return reports
