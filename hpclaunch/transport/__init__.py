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
    The SSH connection is opened lazily, on first use.
    """
    if host is None or host == "" or (host == "localhost" and not ssh_options):
        return LocalTransport()
    from hpclaunch.transport.ssh import SSHTransport

    return SSHTransport(host, ssh_options)


def __getattr__(name: str):
    if name == "SSHTransport":  # imported lazily: paramiko is slow to import
        from hpclaunch.transport.ssh import SSHTransport

        return SSHTransport
    raise AttributeError(name)
