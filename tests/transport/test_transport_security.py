"""Host-key verification and authentication against the real test sshd, for
both transports (paramiko and the system OpenSSH) unless marked paramiko-only."""

from __future__ import annotations

import os
import subprocess

import paramiko
import pytest

from hpclaunch.transport import AuthenticationError, HostKeyError, NoTerminalError, SSHTransport
from hpclaunch.transport.hostkeys import fingerprint

pytestmark = pytest.mark.ssh


def _name(sshd) -> str:
    return f"[{sshd.host}]:{sshd.port}"


def test_known_host_key_connects(make_transport, ssh_options):
    with make_transport("127.0.0.1", ssh_options) as t:
        assert t.run(["true"]).ok


def test_unknown_host_key_is_refused_with_its_fingerprint(
    make_transport, ssh_options, host_key, tmp_path
):
    known = tmp_path / "known_hosts"
    known.write_text("")
    with pytest.raises(HostKeyError) as info:
        make_transport("127.0.0.1", dict(ssh_options, known_hosts=str(known))).run(["true"])
    message = str(info.value)
    assert "is not known" in message and fingerprint(host_key) in message
    assert "ssh-keyscan" in message and "\n" not in message
    assert known.read_text() == ""  # nothing recorded


def test_accept_new_records_the_key_then_it_is_known(
    make_transport, sshd, ssh_options, host_key, tmp_path
):
    known = tmp_path / "dot_ssh" / "known_hosts"
    options = dict(ssh_options, known_hosts=str(known), accept_new_host_key=True)
    with make_transport("127.0.0.1", options) as t:
        assert t.run(["true"]).ok
    recorded = paramiko.HostKeys(str(known)).lookup(_name(sshd))
    assert recorded and list(recorded.values())[0].asbytes() == host_key.asbytes()
    with make_transport("127.0.0.1", dict(options, accept_new_host_key=False)) as t:
        assert t.run(["true"]).ok


def test_changed_host_key_is_refused_even_with_accept_new(
    make_transport, sshd, ssh_options, make_key, tmp_path
):
    other = paramiko.PKey.from_path(make_key("impostor"))
    known = tmp_path / "known_hosts"
    known.write_text(f"{_name(sshd)} {other.get_name()} {other.get_base64()}\n")
    options = dict(ssh_options, known_hosts=str(known), accept_new_host_key=True)
    with pytest.raises(HostKeyError) as info:
        make_transport("127.0.0.1", options).run(["true"])
    message = str(info.value)
    assert "CHANGED" in message and fingerprint(other) in message and "ssh-keygen -R" in message
    assert known.read_text().count("\n") == 1  # the old key was not replaced


def test_key_not_authorized_is_one_clear_line(make_transport, ssh_options, make_key):
    stranger = make_key("stranger")
    with pytest.raises(AuthenticationError) as info:
        make_transport("127.0.0.1", dict(ssh_options, identity_file=str(stranger))).run(["true"])
    message = str(info.value)
    assert "\n" not in message
    assert "refused authentication" in message and str(stranger) in message


def test_missing_key_file_is_named(make_transport, ssh_options, tmp_path):
    missing = tmp_path / "no_such_key"
    with pytest.raises(AuthenticationError, match=f"identity file {missing} does not exist"):
        make_transport("127.0.0.1", dict(ssh_options, identity_file=str(missing))).run(["true"])


def test_public_key_given_as_identity_is_explained(make_transport, sshd, ssh_options):
    pub = f"{sshd.key}.pub"
    with pytest.raises(AuthenticationError, match="it is a public key"):
        make_transport("127.0.0.1", dict(ssh_options, identity_file=pub)).run(["true"])


@pytest.fixture
def encrypted_key(sshd, tmp_path):
    """The authorized test key, re-encrypted with a passphrase (as users keep keys)."""
    path = tmp_path / "id_encrypted"
    path.write_bytes(sshd.key.read_bytes())
    path.chmod(0o600)
    subprocess.run(
        ["ssh-keygen", "-q", "-p", "-P", "", "-N", "s3cret", "-f", str(path)], check=True
    )
    return path


@pytest.mark.parametrize("kind", ["paramiko"])  # OpenSSH asks on the terminal itself
def test_encrypted_key_asks_for_its_passphrase(ssh_options, encrypted_key):
    asked = []

    def prompter(text, echo):
        asked.append((text, echo))
        return "s3cret"

    options = dict(ssh_options, identity_file=str(encrypted_key))
    with SSHTransport("127.0.0.1", options, prompter=prompter) as t:
        assert t.run(["true"]).ok
        assert t.run(["true"]).ok
    assert asked == [(f"Enter passphrase for key '{encrypted_key}': ", False)]  # asked once


@pytest.mark.parametrize("kind", ["paramiko"])
def test_encrypted_key_without_terminal_says_what_to_do(ssh_options, encrypted_key):
    def no_terminal(text, echo):
        raise NoTerminalError("no terminal")

    options = dict(ssh_options, identity_file=str(encrypted_key))
    with pytest.raises(AuthenticationError) as info:
        SSHTransport("127.0.0.1", options, prompter=no_terminal).run(["true"])
    message = str(info.value)
    assert "\n" not in message
    assert "encrypted" in message and f"ssh-add {encrypted_key}" in message


@pytest.fixture
def agent(sshd, tmp_path, monkeypatch):
    """A real ssh-agent holding the test key."""
    sock = tmp_path / "agent.sock"
    proc = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL)
    try:
        for _ in range(100):
            if sock.exists():
                break
            subprocess.run(["sleep", "0.05"])
        env = dict(os.environ, SSH_AUTH_SOCK=str(sock))
        subprocess.run(
            ["ssh-add", "-q", str(sshd.key)], env=env, check=True, stderr=subprocess.DEVNULL
        )
        monkeypatch.setenv("SSH_AUTH_SOCK", str(sock))
        yield sock
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_agent_key_is_used(make_transport, agent, ssh_options, tmp_path):
    options = dict(ssh_options, allow_agent=True, identity_file=str(tmp_path / "absent_key"))
    with make_transport("127.0.0.1", options) as t:
        assert t.run(["true"]).ok
