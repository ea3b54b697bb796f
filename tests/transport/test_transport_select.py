"""The profile's ssh.transport reaches open_transport(), which picks the client."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import asdict

import pytest

from hpclaunch.errors import UserError
from hpclaunch.sites import load_profile
from hpclaunch.transport import OpenSSHTransport, SSHOptions, open_transport

pytestmark = pytest.mark.ssh


def _site(home, name: str, ssh_block: str) -> None:
    sites = home / "sites"
    sites.mkdir(parents=True, exist_ok=True)
    (sites / f"{name}.yaml").write_text(f"scheduler: slurm\nhost: 127.0.0.1\nssh:\n{ssh_block}")


def _options_from(profile, sshd) -> dict:
    """What launches/ builds from a profile (its ssh section), plus the test sshd's files."""
    ssh = {k: v for k, v in asdict(profile.ssh).items() if v not in (None, False)}
    return dict(ssh, known_hosts=str(sshd.known_hosts), config_file="none", allow_agent=False)


def test_profile_transport_openssh_gives_the_openssh_transport(sshd, private_home):
    _site(
        private_home,
        "viaopenssh",
        f"  transport: openssh\n  port: {sshd.port}\n  user: {sshd.user}\n"
        f"  identity_file: {sshd.key}\n",
    )
    profile = load_profile("viaopenssh", [])
    assert profile.ssh.transport == "openssh"
    with open_transport(profile.host, _options_from(profile, sshd)) as t:
        assert isinstance(t, OpenSSHTransport)
        assert t.run(["whoami"]).stdout.strip() == sshd.user


def test_default_profile_keeps_paramiko(sshd, private_home):
    _site(private_home, "plain", f"  port: {sshd.port}\n  user: {sshd.user}\n")
    profile = load_profile("plain", [])
    assert profile.ssh.transport == "paramiko"
    assert type(open_transport(profile.host, _options_from(profile, sshd))).__name__ == (
        "SSHTransport"
    )


def test_a_misspelt_transport_is_one_line_naming_the_file_and_the_choices(private_home):
    _site(private_home, "typo", "  transport: opensh\n")
    with pytest.raises(UserError) as info:
        load_profile("typo", [])
    message = str(info.value)
    assert "typo.yaml:4: ssh.transport" in message and "did you mean 'openssh'" in message
    with pytest.raises(UserError, match="transport must be paramiko or openssh or auto"):
        SSHOptions.from_mapping({"transport": "putty"})
    with pytest.raises(UserError, match="status_interval must be a number of seconds"):
        SSHOptions.from_mapping({"status_interval": 0})
    assert SSHOptions.from_mapping({"status-interval": 45}).status_interval == 45.0
    proc = subprocess.run(
        [sys.executable, "-P", "-m", "hpclaunch", "connect", "typo"], capture_output=True, text=True
    )
    assert proc.returncode != 0 and proc.stderr.count("\n") == 1 and "ssh.transport" in proc.stderr
