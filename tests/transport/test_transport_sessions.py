"""``hpclaunch connect``: one login (one one-time code) serves every later command.

The one-time code is typed into a real terminal (a pty) that the system ssh
asks on, and the MFA sshd's own log counts the codes it accepted.
"""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from testenv_fixtures import write_ssh_config

from hpclaunch.transport import OpenSSHTransport, open_transport

pytestmark = pytest.mark.ssh


def in_terminal(
    argv: list[str], env: dict, answer: str, timeout: float = 60
) -> tuple[int, str, int]:
    """Run ``argv`` on a new pty (its controlling terminal), answering password prompts.

    Returns (exit status, everything shown on the terminal, prompts answered).
    """
    pid, fd = pty.fork()
    if pid == 0:  # the child: the pty is its terminal
        try:
            os.execve(argv[0], argv, env)
        finally:
            os._exit(127)
    shown, prompts, pending = b"", 0, b""
    end = time.monotonic() + timeout
    try:
        while time.monotonic() < end:
            ready, _, _ = select.select([fd], [], [], 0.2)
            if not ready:
                continue
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            shown += chunk
            pending += chunk
            if b"assword" in pending and pending.rstrip().endswith(b":"):
                os.write(fd, answer.encode() + b"\n")
                prompts += 1
                pending = b""
        else:
            os.kill(pid, signal.SIGKILL)
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    return os.waitstatus_to_exitcode(status), shown.decode(errors="replace"), prompts


@pytest.fixture
def mfa_site(mfa_sshd, private_home, tmp_path, monkeypatch):
    """A site 'mfa' (default transport: paramiko) whose host is an ssh config alias."""
    config = write_ssh_config(
        tmp_path / "ssh_config",
        {
            "mfacluster": {
                "HostName": "127.0.0.1",
                "Port": str(mfa_sshd.port),
                "User": mfa_sshd.user,
                "IdentityFile": str(mfa_sshd.key),
                "IdentitiesOnly": "yes",
                "UserKnownHostsFile": str(mfa_sshd.known_hosts),
            }
        },
    )
    monkeypatch.setenv("HPCLAUNCH_SSH_CONFIG", str(config))
    sites = private_home / "sites"
    sites.mkdir(parents=True, exist_ok=True)
    (sites / "mfa.yaml").write_text("scheduler: slurm\nhost: mfacluster\n")
    return "mfa"


def _hpclaunch(*args: str) -> list[str]:
    return [sys.executable, "-P", "-m", "hpclaunch", *args]


def _cli(*args: str) -> subprocess.CompletedProcess:
    """hpclaunch in a process with no terminal: it can never ask for a code."""
    return subprocess.run(
        _hpclaunch(*args),
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )


def _many_commands_in_fresh_processes(n: int) -> list[str]:
    """n separate processes, each a new transport for the site: who answered."""
    script = (
        "from hpclaunch.transport import open_transport\n"
        "with open_transport('mfacluster', {'allow_agent': False}) as t:\n"
        "    t.write_file('hpclaunch-session-probe', b'x')\n"
        "    assert t.read_file('hpclaunch-session-probe') == b'x'\n"
        "    print(type(t).__name__, t.run(['whoami']).stdout.strip(), t.connections_opened)\n"
    )
    out = []
    for _ in range(n):
        proc = subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # no terminal: a prompt would fail, not be answered
        )
        assert proc.returncode == 0, proc.stderr
        out.append(proc.stdout.strip())
    return out


def test_connect_then_many_commands_ask_for_one_code(mfa_sshd, mfa_site):
    accepted = mfa_sshd.accepted_codes()
    status, shown, prompts = in_terminal(
        _hpclaunch("connect", mfa_site, "--for", "1h"), dict(os.environ), mfa_sshd.answer
    )
    assert status == 0, shown
    assert prompts == 1 and f"connected to {mfa_site}" in shown
    runs = _many_commands_in_fresh_processes(12)
    # Every later process went through the session (even though the profile says
    # paramiko), logged in as the user, and opened no connection of its own.
    assert set(runs) == {f"OpenSSHTransport {mfa_sshd.user} 0"}
    listing = _cli("connect", "--list")
    assert "mfa" in listing.stdout and "open" in listing.stdout and "in 0h59m" in listing.stdout
    (session,) = json.loads(_cli("connect", "--list", "--json").stdout)
    assert session["sites"] == ["mfa"] and session["state"] == "open"
    assert session["destination"] == f"{mfa_sshd.user}@127.0.0.1:{mfa_sshd.port}"
    assert mfa_sshd.accepted_codes() - accepted == 1  # the server asked for one code in all


def test_disconnect_ends_the_session_then_commands_need_a_login(mfa_sshd, mfa_site):
    status, shown, _ = in_terminal(
        _hpclaunch("connect", mfa_site), dict(os.environ), mfa_sshd.answer
    )
    assert status == 0, shown
    assert _cli("disconnect", mfa_site).stdout.strip() == f"disconnected from {mfa_site}"
    assert "no open sessions" in _cli("connect", "--list").stdout
    again = _cli("disconnect", mfa_site)
    assert (again.returncode, again.stdout.strip()) == (0, f"no open session for {mfa_site}")
    # Back to the profile's own transport (paramiko), which would have to log in.
    assert type(open_transport("mfacluster", {"allow_agent": False})).__name__ == "SSHTransport"


def test_dropped_session_logs_in_again_with_one_prompt_never_retried(mfa_sshd, mfa_site):
    status, shown, _ = in_terminal(
        _hpclaunch("connect", mfa_site), dict(os.environ), mfa_sshd.answer
    )
    assert status == 0, shown
    transport = OpenSSHTransport("mfacluster", {"allow_agent": False})
    socket = _session_socket()
    _kill_master(socket)  # the network dropped it: the record says it should be open
    assert "dropped" in _cli("connect", "--list").stdout

    issued, failed = mfa_sshd.prompts_issued(), mfa_sshd.failed_logins()
    knocks = mfa_sshd.connections_seen()
    # Without a terminal: one clear line, and the server saw no failed login.
    script = (
        "from hpclaunch.transport import open_transport\n"
        "open_transport('mfacluster', {'allow_agent': False}).run(['true'])\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    assert proc.returncode != 0 and "NoTerminalError" in proc.stderr
    assert "hpclaunch connect" in proc.stderr.strip().splitlines()[-1]
    assert (mfa_sshd.prompts_issued(), mfa_sshd.failed_logins()) == (issued, failed)
    # Once known to need a person, later processes without a terminal do not even
    # connect (a status loop in the background must not knock every few seconds).
    # The first one did connect (with its key, no code); sshd logs it as it closes.
    end = time.monotonic() + 10
    while mfa_sshd.connections_seen() == knocks and time.monotonic() < end:
        time.sleep(0.1)
    seen = mfa_sshd.connections_seen()
    assert seen == knocks + 1
    again = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    assert again.returncode != 0 and "hpclaunch connect mfa" in again.stderr
    time.sleep(1)  # time for sshd to log a connection, had there been one
    assert mfa_sshd.connections_seen() == seen

    accepted = mfa_sshd.accepted_codes()
    status, shown, prompts = in_terminal(
        [sys.executable, "-c", script], dict(os.environ), mfa_sshd.answer
    )
    assert (status, prompts) == (0, 1), shown
    assert transport.session_alive()  # re-opened as the session, for the others to reuse
    assert set(_many_commands_in_fresh_processes(3)) == {f"OpenSSHTransport {mfa_sshd.user} 0"}
    assert mfa_sshd.accepted_codes() - accepted == 1


def test_connect_without_a_terminal_is_one_clear_line_and_no_failed_login(mfa_sshd, mfa_site):
    failed = mfa_sshd.failed_logins()
    proc = _cli("connect", mfa_site)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and "Traceback" not in proc.stderr
    assert "no terminal to ask on" in lines[-1]
    assert mfa_sshd.failed_logins() == failed  # nothing a lockout policy would count


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["connect"], "name a site"),
        (["connect", "mfa", "--for", "forever"], "expected a duration"),
        (["connect", "mfa", "--for", "30d"], "from 1 minute to 7 days"),
        (["disconnect", "nosuch"], "no site profile named 'nosuch'"),
    ],
)
def test_bad_input_is_one_line_and_a_non_zero_exit(mfa_site, args, message):
    proc = _cli(*args)
    assert proc.returncode != 0
    assert proc.stderr.strip().count("\n") == 0 and message in proc.stderr


def test_a_session_serves_a_paramiko_profile_until_it_expires(sshd, private_home, tmp_path):
    options = {
        "user": sshd.user,
        "port": sshd.port,
        "identity_file": str(sshd.key),
        "known_hosts": str(sshd.known_hosts),
        "config_file": "none",
        "allow_agent": False,
    }
    session = OpenSSHTransport("127.0.0.1", options)
    record = session.open_session("plain", 120)
    assert record.sites == ("plain",)
    with open_transport("127.0.0.1", options) as t:
        assert isinstance(t, OpenSSHTransport)
        first = t.run("echo $SSH_CONNECTION").stdout
        assert t.connections_opened == 0
    with open_transport("127.0.0.1", options) as t:
        assert t.run("echo $SSH_CONNECTION").stdout == first  # the same TCP connection
    assert session.session_alive()  # closing a user of the session leaves it open
    # An expired session is not used, and the next transport that looks ends it.
    from dataclasses import replace

    from hpclaunch.transport import sessions

    sessions.write_record(replace(record, expires=sessions.now_iso(-1)))
    assert type(open_transport("127.0.0.1", options)).__name__ == "SSHTransport"
    with OpenSSHTransport("127.0.0.1", options) as t:
        assert t.run("echo $SSH_CONNECTION").stdout != first
        assert t.connections_opened == 1
    assert sessions.read_record(record.key) is None


def _session_socket() -> Path:
    from hpclaunch.transport import sessions

    return next(
        p for p in sessions.control_dir().iterdir() if p.name.startswith("s-") and p.is_socket()
    )


def _kill_master(socket: Path) -> None:
    proc = subprocess.run(
        ["ssh", "-F", "none", "-o", f"ControlPath={socket}", "-O", "check", "x"],
        capture_output=True,
        text=True,
    )
    pid = int(proc.stderr.split("pid=")[1].split(")")[0])
    os.kill(pid, signal.SIGKILL)
    end = time.monotonic() + 10
    while time.monotonic() < end:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)


def test_a_working_day_on_an_mfa_site_asks_for_one_code(
    mfa_sshd, mfa_site, private_home, slurm, pg_queue_url, monkeypatch
):
    """connect, submit, ten status, status --watch (five refreshes), logs, cancel."""
    import shutil
    import tempfile

    monkeypatch.setenv("HPCLAUNCH_HOME", str(private_home))  # pg_queue_url set its own

    workdir = Path(tempfile.mkdtemp(prefix="hpclaunch-mfa-work-"))
    shutil.chown(workdir, user=mfa_sshd.user)  # the MFA user's files on the "cluster"
    (private_home / "sites" / "mfa.yaml").write_text(
        "extends: tests-slurm\nhost: mfacluster\n"
        f"workdir: {workdir}\n"
        f"worker:\n  command: {Path(sys.executable).parent / 'hpclaunch'}\n"
        f"database:\n  url: {pg_queue_url}\n"
        "extra_directives: ['--begin=now+1hour']\n"  # stays pending: nothing runs
    )
    accepted, issued = mfa_sshd.accepted_codes(), mfa_sshd.prompts_issued()
    try:
        status, shown, prompts = in_terminal(
            _hpclaunch("connect", mfa_site, "--for", "2h"), dict(os.environ), mfa_sshd.answer
        )
        assert (status, prompts) == (0, 1), shown
        submitted = _cli("submit", "--site", mfa_site, "--workers", "2", "--json")
        assert submitted.returncode == 0, submitted.stderr
        launch = json.loads(submitted.stdout)["launch_id"]
        for _ in range(10):
            view = _cli("status", "--launch", launch, "--json")
            assert view.returncode == 0, view.stderr
            (row,) = json.loads(view.stdout)["launches"]
            assert {e["state"] for e in row["elements"]} == {"PENDING"}  # seen via squeue
        watch = subprocess.Popen(
            _hpclaunch("status", "--launch", launch, "--watch", "--interval", "1", "--json"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )
        refreshes, end = 0, time.monotonic() + 120
        assert watch.stdout is not None
        while refreshes < 5 and time.monotonic() < end:
            line = watch.stdout.readline()
            if not line:
                break
            refreshes += '"scheduler_calls"' in line
        watch.send_signal(signal.SIGINT)
        _, err = watch.communicate(timeout=30)
        assert refreshes == 5, err
        logs = _cli("logs", launch, "--element", "0")
        assert "Traceback" not in logs.stderr  # a pending element has no log yet: fine
        cancelled = _cli("cancel", launch)
        assert cancelled.returncode == 0, cancelled.stderr
        queued = slurm.run(["squeue", "-h", "-u", mfa_sshd.user, "-o", "%i"]).stdout.split()
        assert queued == []
    finally:
        _cli("disconnect", mfa_site)
        slurm.run(["scancel", "-u", mfa_sshd.user])
        shutil.rmtree(workdir, ignore_errors=True)
    # One code typed, one accepted, no other keyboard-interactive exchange at all.
    assert mfa_sshd.accepted_codes() - accepted == 1
    assert mfa_sshd.prompts_issued() - issued == 1
