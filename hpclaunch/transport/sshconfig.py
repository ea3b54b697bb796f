"""Resolve a host name to the hops of an SSH connection, as OpenSSH would.

Reads ``~/.ssh/config`` (or the configured file) with ``paramiko.SSHConfig``:
Host aliases, HostName, User, Port, IdentityFile, IdentitiesOnly,
UserKnownHostsFile, StrictHostKeyChecking, ProxyJump (several hops) and
ProxyCommand. Pure apart from reading the config file.
"""

from __future__ import annotations

import getpass
import os
import re
from dataclasses import dataclass
from pathlib import Path

import paramiko

from hpclaunch.errors import UserError
from hpclaunch.transport.options import SSHOptions, config_file_for

DEFAULT_IDENTITIES = ("id_ed25519", "id_ecdsa", "id_rsa")
MAX_JUMPS = 8


@dataclass(frozen=True)
class Endpoint:
    """One SSH server to connect to (a jump host or the destination)."""

    name: str  # as the user or the config named it
    hostname: str
    port: int
    user: str
    identity_files: tuple[Path, ...]
    identities_explicit: bool  # named by config/options, not OpenSSH's defaults
    identities_only: bool
    proxy_command: str | None = None

    @property
    def known_hosts_name(self) -> str:
        """The name OpenSSH records in known_hosts for this server."""
        return self.hostname if self.port == 22 else f"[{self.hostname}]:{self.port}"

    def describe(self) -> str:
        where = f"{self.user}@{self.hostname}:{self.port}"
        return where if self.name == self.hostname else f"{self.name} ({where})"


@dataclass(frozen=True)
class Route:
    """The jump hosts (in order) and the destination; host-key settings."""

    jumps: tuple[Endpoint, ...]
    target: Endpoint
    known_hosts_files: tuple[Path, ...]  # the user's: the first records new keys
    global_known_hosts_files: tuple[Path, ...]
    accept_new: bool


_HOST_SPEC = re.compile(
    r"^(?:ssh://)?(?:(?P<user>[^@/\s]+)@)?(?P<host>[^@:/\s]+)(?::(?P<port>\d+))?$"
)


def parse_host_spec(spec: str) -> tuple[str | None, str, int | None]:
    """``[ssh://][user@]host[:port]`` -> (user, host, port)."""
    match = _HOST_SPEC.match(spec.strip())
    if not match:
        raise UserError(f"invalid SSH host {spec!r}: expected [user@]host[:port]")
    port = match["port"]
    return match["user"], match["host"], int(port) if port else None


def load_config(options: SSHOptions) -> paramiko.SSHConfig:
    chosen = config_file_for(options)
    if chosen and chosen.lower() == "none":
        return paramiko.SSHConfig()
    path = Path(chosen or "~/.ssh/config").expanduser()
    if not path.is_file():
        if chosen:
            raise UserError(f"ssh config file {path} does not exist; fix ssh config_file")
        return paramiko.SSHConfig()
    try:
        return paramiko.SSHConfig.from_path(str(path))
    except Exception as exc:  # noqa: BLE001 - any parse failure is the user's file
        raise UserError(f"cannot read ssh config {path}: {exc}") from exc


def resolve(host: str, options: SSHOptions, config: paramiko.SSHConfig | None = None) -> Route:
    """Where and how to connect for ``host`` (an alias or ``[user@]host[:port]``)."""
    config = config if config is not None else load_config(options)
    user, name, port = parse_host_spec(host)
    entry = config.lookup(name)
    target = _endpoint(
        name,
        entry,
        user=options.user or user,
        port=options.port or port,
        extra_identities=options.identity_file,
        override_identities=bool(options.identity_file),
    )
    jump_spec = options.proxy_jump or entry.get("proxyjump")
    jumps = _jumps(jump_spec, config, options, depth=0) if jump_spec else ()
    if jumps and target.proxy_command:
        target = _replace_proxy(target)
    user_files = options.known_hosts or tuple(
        (entry.get("userknownhostsfile") or "~/.ssh/known_hosts ~/.ssh/known_hosts2").split()
    )
    global_files = tuple((entry.get("globalknownhostsfile") or "/etc/ssh/ssh_known_hosts").split())
    strict = str(entry.get("stricthostkeychecking", "ask")).lower()
    return Route(
        jumps=jumps,
        target=target,
        known_hosts_files=tuple(_path(f) for f in user_files),
        global_known_hosts_files=tuple(_path(f) for f in global_files),
        # "no"/"off" are treated as accept-new: a changed key is never accepted.
        accept_new=options.accept_new_host_key or strict in ("accept-new", "no", "off"),
    )


def _jumps(spec: str, config, options: SSHOptions, depth: int) -> tuple[Endpoint, ...]:
    if spec.strip().lower() == "none":
        return ()
    if depth > MAX_JUMPS:
        raise UserError(f"ProxyJump chain is longer than {MAX_JUMPS} hops (a loop?): {spec}")
    hops: list[Endpoint] = []
    for i, hop in enumerate(s.strip() for s in spec.split(",")):
        user, name, port = parse_host_spec(hop)
        entry = config.lookup(name)
        if i == 0 and entry.get("proxyjump"):
            # The first hop's own ProxyJump applies, as in OpenSSH.
            hops.extend(_jumps(entry["proxyjump"], config, options, depth + 1))
        hops.append(
            _endpoint(name, entry, user=user, port=port, extra_identities=options.identity_file)
        )
    return tuple(hops)


def _endpoint(
    name: str,
    entry: dict,
    *,
    user: str | None,
    port: int | None,
    extra_identities: tuple[str, ...] = (),
    override_identities: bool = False,
) -> Endpoint:
    configured = [] if override_identities else list(entry.get("identityfile", []))
    named = list(extra_identities) + configured
    explicit = bool(named)
    files = named or [f"~/.ssh/{n}" for n in DEFAULT_IDENTITIES]
    try:
        port_value = port or int(entry.get("port", 22))
    except ValueError as exc:
        raise UserError(f"ssh config: Port for {name} is not a number") from exc
    return Endpoint(
        name=name,
        hostname=entry.get("hostname", name),
        port=port_value,
        user=user or entry.get("user") or getpass.getuser(),
        identity_files=tuple(dict.fromkeys(_path(f) for f in files)),
        identities_explicit=explicit,
        identities_only=str(entry.get("identitiesonly", "no")).lower() == "yes",
        proxy_command=_proxy_command(entry),
    )


def _proxy_command(entry: dict) -> str | None:
    command = entry.get("proxycommand")
    return None if not command or command.lower() == "none" else command


def _replace_proxy(endpoint: Endpoint) -> Endpoint:
    # ProxyJump wins over ProxyCommand (OpenSSH uses whichever comes first;
    # paramiko's lookup cannot tell, so the explicit jump list is kept).
    return Endpoint(**{**endpoint.__dict__, "proxy_command": None})


def _path(value: str) -> Path:
    return Path(os.path.expandvars(value)).expanduser()
