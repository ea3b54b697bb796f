"""How a host name becomes a route: ssh config aliases, ProxyJump chains, options."""

from __future__ import annotations

from pathlib import Path

import pytest
from testenv_fixtures import write_ssh_config

from hpclaunch.errors import UserError
from hpclaunch.transport import SSHOptions
from hpclaunch.transport.sshconfig import parse_host_spec, resolve


@pytest.fixture
def config(tmp_path) -> Path:
    return write_ssh_config(
        tmp_path / "config",
        {
            "longleaf": {
                "HostName": "longleaf.example.edu",
                "User": "alice",
                "Port": "2222",
                "IdentityFile": ["~/.ssh/id_cluster", "/keys/backup"],
                "ProxyJump": "bastion,carol@inner:2200",
                "UserKnownHostsFile": "/tmp/kh1 /tmp/kh2",
                "StrictHostKeyChecking": "accept-new",
            },
            "bastion": {"HostName": "gw.example.edu", "User": "bob", "ProxyJump": "outer"},
            "outer": {"HostName": "outer.example.edu"},
            "plain": {"HostName": "plain.example.edu", "IdentitiesOnly": "yes"},
        },
    )


def test_alias_gives_hostname_user_port_keys_and_known_hosts(config):
    route = resolve("longleaf", SSHOptions(config_file=str(config)))
    target = route.target
    assert (target.hostname, target.user, target.port) == ("longleaf.example.edu", "alice", 2222)
    assert target.identity_files == (Path("~/.ssh/id_cluster").expanduser(), Path("/keys/backup"))
    assert target.known_hosts_name == "[longleaf.example.edu]:2222"
    assert route.known_hosts_files == (Path("/tmp/kh1"), Path("/tmp/kh2"))
    assert route.accept_new


def test_proxyjump_hops_in_order_including_the_first_hops_own_jump(config):
    route = resolve("longleaf", SSHOptions(config_file=str(config)))
    hops = [(j.hostname, j.user, j.port) for j in route.jumps]
    assert hops[0][0] == "outer.example.edu"
    assert hops[1:] == [("gw.example.edu", "bob", 22), ("inner", "carol", 2200)]


def test_options_override_the_config(config):
    options = SSHOptions(
        config_file=str(config), user="zed", port=22, identity_file=("/k",), proxy_jump="none"
    )
    route = resolve("longleaf", options)
    assert (route.target.user, route.target.port) == ("zed", 22)
    assert route.target.identity_files == (Path("/k"),)
    assert route.jumps == ()
    assert route.target.known_hosts_name == "longleaf.example.edu"


def test_user_and_port_in_the_host_string(config):
    target = resolve("dave@plain:2022", SSHOptions(config_file=str(config))).target
    assert (target.user, target.hostname, target.port) == ("dave", "plain.example.edu", 2022)
    assert target.identities_only and not target.identities_explicit


def test_unknown_host_uses_openssh_defaults(tmp_path):
    route = resolve("somewhere", SSHOptions(config_file="none"))
    assert route.target.hostname == "somewhere" and route.target.port == 22
    assert [p.name for p in route.target.identity_files] == ["id_ed25519", "id_ecdsa", "id_rsa"]
    assert not route.accept_new


@pytest.mark.parametrize("spec", ["a b", "user@", "host:port", ""])
def test_bad_host_string_is_a_user_error(spec):
    with pytest.raises(UserError, match="invalid SSH host"):
        parse_host_spec(spec)


def test_options_are_validated_with_one_line_errors():
    with pytest.raises(UserError, match="unknown key 'pasword'"):
        SSHOptions.from_mapping({"pasword": "x"}, where="site longleaf: ssh")
    with pytest.raises(UserError, match="port must be a TCP port"):
        SSHOptions.from_mapping({"port": 70000})
    with pytest.raises(UserError, match="accept_new_host_key must be true or false"):
        SSHOptions.from_mapping({"accept-new-host-key": "yes"})
    options = SSHOptions.from_mapping({"identity_file": "~/.ssh/k", "connect_timeout": 5})
    assert options.identity_file == ("~/.ssh/k",) and options.connect_timeout == 5.0


def test_missing_config_file_named_explicitly_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        resolve("x", SSHOptions(config_file=str(tmp_path / "nope")))
