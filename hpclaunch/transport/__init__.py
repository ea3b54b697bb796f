"""Run commands and move files on a machine, here or over SSH.

``open_transport(host, ssh_options)`` is the entry point; ``None`` means this
machine. Transports know nothing about schedulers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hpclaunch.transport.base import (
    DEFAULT_COMMAND_TIMEOUT,
    AmbiguousCommandError,
    AuthenticationError,
    CommandResult,
    CommandTimeout,
    ConnectError,
    HostKeyError,
    NoTerminalError,
    Transport,
    TransportError,
)
from hpclaunch.transport.local import LocalTransport
from hpclaunch.transport.options import SSHOptions

__all__ = [
    "DEFAULT_COMMAND_TIMEOUT",
    "AmbiguousCommandError",
    "AuthenticationError",
    "CommandResult",
    "CommandTimeout",
    "ConnectError",
    "HostKeyError",
    "LocalTransport",
    "NoTerminalError",
    "OpenSSHTransport",
    "SSHOptions",
    "SSHTransport",
    "Transport",
    "TransportError",
    "open_transport",
]


def open_transport(
    host: str | None, ssh_options: Mapping[str, Any] | SSHOptions | None = None
) -> Transport:
    """A transport for ``host`` (an ssh config alias or ``[user@]host[:port]``).

    ``None``, ``""`` and ``"localhost"`` without SSH options mean this machine.
    An unexpired ``hpclaunch connect`` session for the destination is always used
    (whatever ``ssh.transport`` says: it is what spares the user a login);
    otherwise ``ssh.transport`` picks paramiko or the system OpenSSH.
    The SSH connection is opened lazily, on first use.
    """
    options = SSHOptions.from_mapping(ssh_options)
    if host is None or host == "" or (host == "localhost" and options == SSHOptions()):
        return LocalTransport()
    from hpclaunch.transport.select import choose

    if choose(host, options) == "openssh":
        from hpclaunch.transport.openssh import OpenSSHTransport

        return OpenSSHTransport(host, options)
    from hpclaunch.transport.ssh import SSHTransport

    return SSHTransport(host, options)


def __getattr__(name: str):
    if name == "SSHTransport":  # imported lazily: paramiko is slow to import
        from hpclaunch.transport.ssh import SSHTransport

        return SSHTransport
    if name == "OpenSSHTransport":
        from hpclaunch.transport.openssh import OpenSSHTransport

        return OpenSSHTransport
    raise AttributeError(name)
