"""What every transport offers, and the errors it raises.

A transport runs commands and moves files on one machine, here or over SSH.
It knows nothing about schedulers: callers build the argv and parse output.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, Self, runtime_checkable

from hpclaunch.errors import UserError

DEFAULT_COMMAND_TIMEOUT = 120.0


@dataclass(frozen=True)
class CommandResult:
    """The outcome of one command; ``stdout``/``stderr`` decoded as UTF-8."""

    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


class TransportError(UserError):
    """The machine could not be reached or talked to (message says what to do)."""

    exit_code = 5


class ConnectError(TransportError):
    """No connection could be made (after retrying transient failures)."""


class HostKeyError(TransportError):
    """The server's host key is unknown or differs from the recorded one."""


class AuthenticationError(TransportError):
    """The server refused every credential, or one could not be loaded."""


class NoTerminalError(AuthenticationError):
    """A passphrase/one-time code is needed but there is no terminal to ask on."""


class CommandTimeout(TransportError):
    """A command did not finish within its timeout (it may still be running)."""


class AmbiguousCommandError(TransportError):
    """The connection dropped after a non-idempotent command was sent.

    The command may or may not have run: the caller must find out (e.g. look
    for the job it would have created) before trying again.
    """

    def __init__(self, message: str, *, command: str, host: str):
        super().__init__(message)
        self.command = command
        self.host = host


def command_line(argv: Sequence[str] | str) -> str:
    """A shell command line: a string is used as is, a list is quoted."""
    if isinstance(argv, str):
        return argv
    if not argv:
        raise ValueError("empty argv")
    return shlex.join(str(a) for a in argv)


def as_bytes(data: str | bytes | None) -> bytes | None:
    return data.encode() if isinstance(data, str) else data


def decode(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


@runtime_checkable
class Transport(Protocol):
    """Run commands and move files on one machine, over one connection."""

    @property
    def host(self) -> str | None:
        """``None`` for this machine, else the host as the user named it."""
        ...

    #: How many connections were opened (0 for local; reconnects count).
    connections_opened: int

    def run(
        self,
        argv: Sequence[str] | str,
        *,
        timeout: float | None = DEFAULT_COMMAND_TIMEOUT,
        input: str | bytes | None = None,
        idempotent: bool = False,
    ) -> CommandResult:
        """Run a command (a list is quoted; a string goes to the shell)."""
        ...

    def read_file(self, path: str) -> bytes: ...

    def write_file(self, path: str, data: bytes, mode: int = 0o644) -> None:
        """Write atomically: a temporary file beside ``path``, then a rename."""
        ...

    def makedirs(self, path: str) -> None: ...

    def close(self) -> None: ...

    def __enter__(self) -> Self: ...

    def __exit__(self, *exc: object) -> None: ...
