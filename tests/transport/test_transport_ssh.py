"""Both SSH transports (paramiko, OpenSSH) against the real test sshd: commands,
files, one connection."""

from __future__ import annotations

import pytest
from testenv_fixtures import write_ssh_config

from hpclaunch.transport import CommandTimeout, ConnectError, open_transport

pytestmark = pytest.mark.ssh


def test_run_reports_stdout_stderr_and_exit_code(ssh_options):
    with open_transport("127.0.0.1", ssh_options) as t:
        result = t.run(["sh", "-c", 'echo "out $1"; echo err >&2; exit 3', "sh", "a 'b' $c"])
    assert (result.returncode, result.stdout, result.stderr) == (3, "out a 'b' $c\n", "err\n")


def test_shell_string_runs_in_the_remote_shell_with_slurm_conf(ssh_options, slurm):
    with open_transport("127.0.0.1", ssh_options) as t:
        assert t.run("echo $((6*7)) $SLURM_CONF").stdout == f"42 {slurm.conf}\n"


def test_input_reaches_the_remote_command(ssh_options):
    with open_transport("127.0.0.1", ssh_options) as t:
        assert t.run(["cat"], input=b"x" * 200_000).stdout == "x" * 200_000


def test_file_round_trip(ssh_options, tmp_path):
    folder = tmp_path / "remote" / "deep"
    with open_transport("127.0.0.1", ssh_options) as t:
        t.makedirs(str(folder))
        t.makedirs(str(folder))
        t.write_file(str(folder / "job.sh"), b"#!/bin/bash\necho one\n", mode=0o750)
        t.write_file(str(folder / "job.sh"), b"#!/bin/bash\necho two\n", mode=0o750)
        assert t.read_file(str(folder / "job.sh")) == b"#!/bin/bash\necho two\n"
        listing = t.run(["ls", "-A", str(folder)]).stdout.split()
        mode = t.run(["stat", "-c", "%a", str(folder / "job.sh")]).stdout.strip()
        with pytest.raises(FileNotFoundError):
            t.read_file(str(folder / "missing"))
    assert listing == ["job.sh"]  # the temporary file was renamed, none left over
    assert mode == "750"


def test_one_connection_serves_many_commands_and_transfers(ssh_options, tmp_path):
    with open_transport("127.0.0.1", ssh_options) as t:
        seen = {t.run("echo $SSH_CONNECTION").stdout for _ in range(20)}
        for i in range(10):
            t.write_file(str(tmp_path / f"f{i}"), str(i).encode())
            assert t.read_file(str(tmp_path / f"f{i}")) == str(i).encode()
        assert t.connections_opened == 1
    assert len(seen) == 1  # the same client port every time: one TCP connection


def test_ssh_config_alias_supplies_host_port_user_and_key(sshd, tmp_path, kind):
    config = write_ssh_config(tmp_path / "config", {"testcluster": sshd.config_options()})
    options = {"config_file": str(config), "allow_agent": False, "transport": kind}
    with open_transport("testcluster", options) as t:
        assert t.run(["whoami"]).stdout.strip() == sshd.user


def test_proxyjump_through_two_hops(sshd, tmp_path, make_transport, kind):
    config = write_ssh_config(
        tmp_path / "config",
        {
            "hop1": sshd.config_options(),
            "hop2": sshd.config_options(),
            "cluster": sshd.config_options(ProxyJump="hop1,hop2"),
        },
    )
    t = make_transport("cluster", {"config_file": str(config), "allow_agent": False})
    with t:
        if kind == "paramiko":
            assert [j.name for j in t.route.jumps] == ["hop1", "hop2"]
        assert t.run(["echo", "through"]).stdout == "through\n"
        # The far end sees the connection come from the last hop (an sshd on this machine).
        assert t.run("echo $SSH_CONNECTION").stdout.split()[0] == "127.0.0.1"
        assert t.connections_opened == 1


def test_proxyjump_hop_with_unknown_host_key_is_refused(sshd, tmp_path, kind):
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    config = write_ssh_config(
        tmp_path / "config",
        {
            "hop1": sshd.config_options(),
            "cluster": sshd.config_options(ProxyJump="hop1", UserKnownHostsFile=str(empty)),
        },
    )
    with pytest.raises(Exception, match="host key for .* is not known"):
        options = {"config_file": str(config), "allow_agent": False, "transport": kind}
        open_transport("cluster", options).run(["true"])


def test_command_timeout_leaves_the_connection_usable(ssh_options):
    with open_transport("127.0.0.1", ssh_options) as t:
        with pytest.raises(CommandTimeout, match="did not finish within 0.5 s"):
            t.run(["sleep", "5"], timeout=0.5)
        assert t.run(["echo", "still here"]).stdout == "still here\n"
        assert t.connections_opened == 1


def test_nothing_listening_is_one_clear_line_after_bounded_retries(ssh_options):
    import socket

    with socket.create_server(("127.0.0.1", 0)) as s:
        port = s.getsockname()[1]  # closed again when the block ends: nothing listens
    options = dict(ssh_options, port=port, connect_attempts=2)
    with pytest.raises(ConnectError) as info:
        open_transport("127.0.0.1", options).run(["true"], idempotent=True)
    message = str(info.value)
    assert "\n" not in message
    assert f":{port}" in message and "tried 2 times" in message
