"""Fixtures for transport tests: options that reach the test sshd, its host
key, and a TCP relay in front of it that a test can cut (a real network
fault between the real client and the real server)."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import paramiko
import pytest
from relay import TcpRelay
from testenv_fixtures import missing, testenv_value

TRANSPORTS = ("paramiko", "openssh")


@pytest.fixture(autouse=True)
def private_home(tmp_path, monkeypatch):
    """An HPCLAUNCH_HOME of the test's own: its control sockets and sessions are its own.

    Masters left behind by a failing test are closed at the end.
    """
    monkeypatch.setenv("HPCLAUNCH_HOME", str(tmp_path / "hpclaunch_home"))
    monkeypatch.delenv("HPCLAUNCH_SSH_CONFIG", raising=False)
    yield tmp_path / "hpclaunch_home"
    from hpclaunch.transport import sessions

    folder = sessions.control_dir()
    for sock in folder.iterdir():
        if sock.is_socket():
            subprocess.run(
                ["ssh", "-F", "none", "-o", f"ControlPath={sock}", "-O", "exit", "x"],
                capture_output=True,
                timeout=30,
            )
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(params=TRANSPORTS)
def kind(request) -> str:
    """Each test using it runs once per SSH client: paramiko and the system OpenSSH."""
    return request.param


@pytest.fixture
def make_transport(kind):
    """``make_transport(host, options)``: the transport of this test's kind."""
    from hpclaunch.transport import OpenSSHTransport, SSHTransport

    def make(host: str, options: dict):
        cls = OpenSSHTransport if kind == "openssh" else SSHTransport
        return cls(host, dict(options, transport=kind))

    return make


@pytest.fixture
def ssh_options(sshd, kind) -> dict:
    """SSH options reaching the test sshd directly, with no ssh config file."""
    return {
        "transport": kind,
        "user": sshd.user,
        "port": sshd.port,
        "identity_file": str(sshd.key),
        "known_hosts": str(sshd.known_hosts),
        "config_file": "none",
        "allow_agent": False,
        "connect_timeout": 10,
    }


@pytest.fixture(scope="session")
def host_key(sshd) -> paramiko.PKey:
    """The test sshd's host key, as recorded in its known_hosts."""
    keys = paramiko.HostKeys(str(sshd.known_hosts))
    entry = keys.lookup(f"[{sshd.host}]:{sshd.port}")
    assert entry, f"{sshd.known_hosts} has no key for the test sshd"
    return next(iter(entry.values()))


@pytest.fixture
def relay(sshd, host_key, tmp_path) -> TcpRelay:
    """A cuttable relay to the sshd, and a known_hosts naming it (``relay.known_hosts``)."""

    r = TcpRelay((sshd.host, sshd.port))
    known = tmp_path / "relay_known_hosts"
    known.write_text(f"[127.0.0.1]:{r.port} {host_key.get_name()} {host_key.get_base64()}\n")
    r.known_hosts = known  # type: ignore[attr-defined]
    yield r
    r.close()


@pytest.fixture
def make_key(tmp_path):
    """``make_key(name, passphrase="")``: a fresh ed25519 key pair from ssh-keygen."""

    def make(name: str, passphrase: str = "") -> Path:
        path = tmp_path / name
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", passphrase, "-C", "test", "-f", str(path)],
            check=True,
        )
        return path

    return make


@dataclass(frozen=True)
class MfaServer:
    """An sshd wanting a key and then a keyboard-interactive answer (PAM password)."""

    port: int
    user: str
    answer: str = field(repr=False)
    key: Path
    known_hosts: Path
    log: Path  # sshd's log: one "Accepted keyboard-interactive" line per code accepted

    def accepted_codes(self) -> int:
        """How many keyboard-interactive answers the server accepted so far."""
        return self.log.read_text().count("Accepted keyboard-interactive")

    def prompts_issued(self) -> int:
        """How many keyboard-interactive exchanges the server started (right or wrong)."""
        return self.log.read_text().count("keyboard-interactive/pam")

    def connections_seen(self) -> int:
        """How many client connections the server logged (distinct client ports)."""
        ports = re.findall(r"127\.0\.0\.1 port (\d+)", self.log.read_text())
        return len(set(ports) - {str(self.port)})

    def failed_logins(self) -> int:
        """Failed PAM logins (what lockout policies such as faillock count)."""
        return self.log.read_text().count("Authentication failure")

    def options(self, **extra) -> dict:
        return {
            "user": self.user,
            "port": self.port,
            "identity_file": str(self.key),
            "known_hosts": str(self.known_hosts),
            "config_file": "none",
            "allow_agent": False,
            **extra,
        }


@pytest.fixture(scope="session")
def mfa_sshd(sshd, tmp_path_factory) -> MfaServer:
    user = testenv_value("HPCLAUNCH_TEST_MFA_USER")
    secret_file = testenv_value("HPCLAUNCH_TEST_MFA_PASSWORD_FILE")
    if not user or not secret_file or not Path(secret_file).is_file():
        missing("no MFA test user (HPCLAUNCH_TEST_MFA_USER / _PASSWORD_FILE)")
    folder = tmp_path_factory.mktemp("mfa_sshd")
    host_key_path = folder / "host_key"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key_path)], check=True
    )
    # sshd reads authorized_keys as the user: pytest's tmp folders are private.
    public_dir = Path(tempfile.mkdtemp(prefix="hpclaunch-mfa-"))
    public_dir.chmod(0o755)
    authorized = public_dir / "authorized_keys"
    authorized.write_text(Path(f"{sshd.key}.pub").read_text())
    authorized.chmod(0o644)
    with socket.create_server(("127.0.0.1", 0)) as s:
        port = s.getsockname()[1]
    config = folder / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key_path}\n"
        f"PidFile {folder}/sshd.pid\nAuthorizedKeysFile {authorized}\nUsePAM yes\n"
        "KbdInteractiveAuthentication yes\nPasswordAuthentication no\nStrictModes no\n"
        "AuthenticationMethods publickey,keyboard-interactive\n"
    )
    slurm_conf = testenv_value("SLURM_CONF")
    if slurm_conf:  # so the MFA user can reach the test SLURM, as on a login node
        with config.open("a") as f:
            f.write(f"SetEnv SLURM_CONF={slurm_conf}\n")
    known = folder / "known_hosts"
    public = Path(f"{host_key_path}.pub").read_text().split()
    known.write_text(f"[127.0.0.1]:{port} {public[0]} {public[1]}\n")
    proc = subprocess.Popen(
        ["/usr/sbin/sshd", "-D", "-f", str(config), "-E", str(folder / "sshd.log")]
    )
    try:
        end = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > end or proc.poll() is not None:
                    missing(f"the MFA sshd did not start: {(folder / 'sshd.log').read_text()}")
                time.sleep(0.05)
        answer = Path(secret_file).read_text().strip()
        yield MfaServer(port, user, answer, sshd.key, known, folder / "sshd.log")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(public_dir, ignore_errors=True)
