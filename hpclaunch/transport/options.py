"""SSH options a site profile or caller may give, checked before use."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from hpclaunch.errors import UserError

TRANSPORTS = ("paramiko", "openssh", "auto")


@dataclass(frozen=True)
class SSHOptions:
    """How to reach a host over SSH, on top of what ``~/.ssh/config`` says.

    ``user``/``port``/``identity_file``/``proxy_jump`` override the ssh config
    for the destination. ``known_hosts`` replaces the user's known_hosts files
    (the first one is where ``accept_new_host_key`` records new keys).
    ``config_file`` is the ssh config to read (``"none"`` reads none).
    ``transport`` picks the SSH client: ``paramiko`` (built in), ``openssh``
    (the system ``ssh``: Include, certificates, ControlMaster sessions) or
    ``auto`` (OpenSSH when the ssh config needs it).
    """

    user: str | None = None
    port: int | None = None
    identity_file: tuple[str, ...] = ()
    proxy_jump: str | None = None
    known_hosts: tuple[str, ...] = ()
    config_file: str | None = None
    accept_new_host_key: bool = False
    allow_agent: bool = True
    connect_timeout: float = 15.0
    connect_attempts: int = 3
    keepalive: float = 30.0
    transport: str = "paramiko"
    #: Seconds between read-only scheduler queries of one site (transport/budget.py).
    status_interval: float = 30.0

    @classmethod
    def from_mapping(
        cls, values: SSHOptions | Mapping[str, Any] | None, *, where: str = "ssh options"
    ) -> SSHOptions:
        """Build from a plain dict (e.g. a profile's ``ssh:`` block), validating it."""
        if values is None:
            return cls()
        if isinstance(values, SSHOptions):
            return values
        known = {f.name: f for f in fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in values.items():
            name = str(key).replace("-", "_")
            if name not in known:
                raise UserError(
                    f"{where}: unknown key {key!r}; expected one of {', '.join(sorted(known))}"
                )
            kwargs[name] = _check(name, value, where)
        return cls(**kwargs)


def config_file_for(options: SSHOptions) -> str | None:
    """The ssh config to read: the option, else ``HPCLAUNCH_SSH_CONFIG``, else the default.

    The variable lets a user (or a test) point every hpclaunch command at one
    ssh config without editing profiles; ``None`` means OpenSSH's default.
    """
    return options.config_file or os.environ.get("HPCLAUNCH_SSH_CONFIG") or None


def _check(name: str, value: Any, where: str) -> Any:
    def bad(expected: str) -> UserError:
        return UserError(f"{where}: {name} must be {expected}, not {value!r}")

    if name in ("identity_file", "known_hosts"):
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list | tuple) or not all(isinstance(v, str) and v for v in items):
            raise bad("a path or a list of paths")
        return tuple(items)
    if name == "transport":
        if value not in TRANSPORTS:
            raise bad(" or ".join(TRANSPORTS))
        return value
    if name in ("accept_new_host_key", "allow_agent"):
        if not isinstance(value, bool):
            raise bad("true or false")
        return value
    if name in ("port", "connect_attempts"):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise bad("a positive whole number")
        if name == "port" and value > 65535:
            raise bad("a TCP port (1-65535)")
        return value
    if name == "status_interval":
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 1:
            raise bad("a number of seconds (at least 1)")
        return float(value)
    if name in ("connect_timeout", "keepalive"):
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise bad("a number of seconds")
        return float(value)
    if value is not None and (not isinstance(value, str) or not value.strip()):
        raise bad("a non-empty string")
    return value
