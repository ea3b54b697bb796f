"""What only the OpenSSH transport can do: ssh config Include, SSH certificates,
and ``transport: auto`` choosing it when the config needs it."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from testenv_fixtures import missing, write_ssh_config

from hpclaunch.transport import AuthenticationError, OpenSSHTransport, open_transport

pytestmark = pytest.mark.ssh


def test_host_defined_only_in_an_included_file(sshd, tmp_path):
    included = write_ssh_config(
        tmp_path / "conf.d" / "cluster.conf", {"includedcluster": sshd.config_options()}
    )
    main = tmp_path / "config"
    main.write_text(f"Include {included.parent}/*.conf\n\nHost *\n    ServerAliveInterval 60\n")
    for transport in ("openssh", "auto"):
        options = {"config_file": str(main), "allow_agent": False, "transport": transport}
        with open_transport("includedcluster", options) as t:
            assert isinstance(t, OpenSSHTransport)  # auto: paramiko cannot read Include
            assert t.run(["whoami"]).stdout.strip() == sshd.user


def test_auto_keeps_paramiko_for_a_plain_config_and_takes_openssh_for_controlmaster(sshd, tmp_path):
    plain = write_ssh_config(tmp_path / "plain", {"c": sshd.config_options()})
    master = write_ssh_config(tmp_path / "master", {"c": sshd.config_options(ControlMaster="auto")})
    auto = {"allow_agent": False, "transport": "auto"}
    with open_transport("c", dict(auto, config_file=str(plain))) as t:
        assert type(t).__name__ == "SSHTransport"
        assert t.run(["true"]).ok
    with open_transport("c", dict(auto, config_file=str(master))) as t:
        assert isinstance(t, OpenSSHTransport)
        assert t.run(["true"]).ok


class CertServer:
    """An sshd that trusts user certificates signed by a test CA (and no plain keys)."""

    def __init__(self, folder: Path, port: int, user: str, known_hosts: Path, ca: Path):
        self.folder, self.port, self.user = folder, port, user
        self.known_hosts, self.ca = known_hosts, ca

    def sign(self, key: Path, principal: str, validity: str = "+1h") -> Path:
        subprocess.run(
            ["ssh-keygen", "-q", "-s", str(self.ca), "-I", "hpclaunch-test", "-n", principal,
             "-V", validity, f"{key}.pub"],
            check=True,
        )  # fmt: skip
        return Path(f"{key}-cert.pub")


@pytest.fixture(scope="module")
def cert_sshd(sshd, tmp_path_factory):
    folder = tmp_path_factory.mktemp("cert_sshd")
    for name in ("host_key", "ca"):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(folder / name)], check=True
        )
    # sshd reads the CA key as the user: pytest's tmp folders are private.
    public = Path(tempfile.mkdtemp(prefix="hpclaunch-ca-"))
    public.chmod(0o755)
    shutil.copy(folder / "ca.pub", public / "ca.pub")
    (public / "ca.pub").chmod(0o644)
    with socket.create_server(("127.0.0.1", 0)) as s:
        port = s.getsockname()[1]
    config = folder / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {folder}/host_key\n"
        f"PidFile {folder}/sshd.pid\nTrustedUserCAKeys {public}/ca.pub\n"
        "AuthorizedKeysFile none\nPubkeyAuthentication yes\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
    )
    known = folder / "known_hosts"
    host_public = (folder / "host_key.pub").read_text().split()
    known.write_text(f"[127.0.0.1]:{port} {host_public[0]} {host_public[1]}\n")
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
                    missing(
                        f"the certificate sshd did not start: {(folder / 'sshd.log').read_text()}"
                    )
                time.sleep(0.05)
        yield CertServer(folder, port, sshd.user, known, folder / "ca")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(public, ignore_errors=True)


def _options(server: CertServer, key: Path) -> dict:
    return {
        "user": server.user,
        "port": server.port,
        "identity_file": str(key),
        "known_hosts": str(server.known_hosts),
        "config_file": "none",
        "allow_agent": False,
        "transport": "openssh",
    }


def test_login_with_a_certificate_signed_by_the_centre_ca(cert_sshd, make_key):
    key = make_key("id_sshproxy")  # as NERSC's sshproxy leaves: a key and its -cert.pub
    cert_sshd.sign(key, cert_sshd.user)
    with open_transport("127.0.0.1", _options(cert_sshd, key)) as t:
        assert t.run(["whoami"]).stdout.strip() == cert_sshd.user
    assert "ED25519-CERT" in (cert_sshd.folder / "sshd.log").read_text()
    cert = Path(f"{key}-cert.pub")  # a common slip: naming the certificate itself
    with pytest.raises(AuthenticationError, match=f"name the private key \\({key};"):
        open_transport("127.0.0.1", _options(cert_sshd, cert)).run(["true"])


def test_the_same_key_without_a_certificate_or_with_an_expired_one_is_refused(cert_sshd, make_key):
    key = make_key("id_plain")
    with pytest.raises(AuthenticationError, match="refused authentication"):
        open_transport("127.0.0.1", _options(cert_sshd, key)).run(["true"])
    expired = make_key("id_expired")
    cert_sshd.sign(expired, cert_sshd.user, validity="20200101:20200102")
    with pytest.raises(AuthenticationError) as info:
        open_transport("127.0.0.1", _options(cert_sshd, expired)).run(["true"])
    assert "\n" not in str(info.value)


def test_more_commands_at_once_than_one_connection_allows_all_run(cert_sshd, make_key):
    """sshd's MaxSessions (10 by default) caps one session: the 11th+ command waits."""
    from concurrent.futures import ThreadPoolExecutor

    key = make_key("id_busy")
    cert_sshd.sign(key, cert_sshd.user)
    options = _options(cert_sshd, key)
    OpenSSHTransport("127.0.0.1", options).open_session("busy", 300)

    def one(i: int) -> tuple[str, int]:
        with open_transport("127.0.0.1", dict(options, transport="paramiko")) as t:
            out = t.run(f"sleep 1; echo {i}").stdout.strip()
            return out, t.connections_opened

    with ThreadPoolExecutor(max_workers=14) as pool:
        results = list(pool.map(one, range(14)))
    assert results == [(str(i), 0) for i in range(14)]  # all ran, all through the session
