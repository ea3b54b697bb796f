"""Commands and files on a remote machine over one SSH connection (paramiko).

One ``SSHTransport`` holds one connection (through any jump hosts) and
serves every command and file transfer of a CLI call. Transient failures
(reset, timeout, EOF while connecting) are retried with exponential backoff;
a command that is not idempotent is never re-sent after it may have reached
the server: the caller gets ``AmbiguousCommandError`` and must check.
"""

from __future__ import annotations

import contextlib
import logging
import posixpath
import select
import socket
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import paramiko
import tenacity

from hpclaunch.transport.auth import Authenticator, Prompter, terminal_prompter
from hpclaunch.transport.base import (
    DEFAULT_COMMAND_TIMEOUT,
    AmbiguousCommandError,
    AuthenticationError,
    CommandResult,
    CommandTimeout,
    ConnectError,
    HostKeyError,
    TransportError,
    as_bytes,
    command_line,
    decode,
)
from hpclaunch.transport.hostkeys import KnownHosts
from hpclaunch.transport.options import SSHOptions
from hpclaunch.transport.sshconfig import Endpoint, Route, resolve

log = logging.getLogger(__name__)
T = TypeVar("T")
_POLL = 0.5


class _NotSent(Exception):
    """A transient failure before the command/transfer reached the server."""


class _Dropped(Exception):
    """The connection died after the command/transfer was sent."""


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, TransportError):
        return False
    if isinstance(exc, socket.gaierror):
        return False
    if isinstance(exc, OSError | EOFError):
        return True
    if isinstance(exc, paramiko.SSHException) and not isinstance(
        exc, paramiko.AuthenticationException
    ):
        text = str(exc).lower()
        return any(w in text for w in ("banner", "eof", "reset", "timeout", "timed out", "closed"))
    return False


class _Connection:
    """The live transports (jump hosts first, destination last) and a lazy SFTP."""

    def __init__(self, hops: list[paramiko.Transport]):
        self.hops = hops
        self._sftp: paramiko.SFTPClient | None = None

    @property
    def target(self) -> paramiko.Transport:
        return self.hops[-1]

    def alive(self) -> bool:
        return all(t.is_active() for t in self.hops)

    def sftp(self) -> paramiko.SFTPClient:
        if self._sftp is None:
            sftp = paramiko.SFTPClient.from_transport(self.target)
            if sftp is None:  # paramiko returns None when the channel cannot open
                raise paramiko.SSHException("could not open an SFTP channel")
            self._sftp = sftp
        return self._sftp

    def close(self) -> None:
        if self._sftp is not None:
            with contextlib.suppress(Exception):  # closing a dead connection
                self._sftp.close()
        for transport in reversed(self.hops):
            with contextlib.suppress(Exception):
                transport.close()


class SSHTransport:
    """The Transport for a remote host named like OpenSSH would name it."""

    def __init__(
        self,
        host: str,
        options: SSHOptions | Mapping[str, Any] | None = None,
        *,
        prompter: Prompter = terminal_prompter,
    ):
        self.host = host
        self.options = SSHOptions.from_mapping(options)
        self.route: Route = resolve(host, self.options)
        self.known_hosts = KnownHosts(
            self.route.known_hosts_files, self.route.global_known_hosts_files
        )
        self._auth = Authenticator(allow_agent=self.options.allow_agent, prompter=prompter)
        self._conn: _Connection | None = None
        self.connections_opened = 0

    # ------------------------------------------------------------ connecting

    def connect(self) -> None:
        """Open the connection now (it is otherwise opened on first use)."""
        self._call(lambda conn: None, idempotent=True)

    def _retrying(self, *, idempotent: bool) -> tenacity.Retrying:
        retry_on = (_NotSent, _Dropped) if idempotent else (_NotSent,)
        return tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.options.connect_attempts),
            wait=tenacity.wait_exponential(multiplier=0.5, max=8),
            retry=tenacity.retry_if_exception_type(retry_on),
            before_sleep=self._before_retry,
            reraise=True,
        )

    def _before_retry(self, state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        log.info("ssh %s: retrying after %s (attempt %d)", self.host, exc, state.attempt_number)
        self._drop()

    def _connection(self) -> _Connection:
        if self._conn is not None and self._conn.alive():
            return self._conn
        self._drop()
        try:
            self._conn = self._open()
        except (HostKeyError, AuthenticationError, ConnectError):
            raise
        except Exception as exc:
            if _transient(exc):
                raise _NotSent(_reason(exc)) from exc
            raise ConnectError(f"cannot connect to {self._describe()}: {_reason(exc)}") from exc
        self.connections_opened += 1
        return self._conn

    def _open(self) -> _Connection:
        hops: list[paramiko.Transport] = []
        try:
            for endpoint in (*self.route.jumps, self.route.target):
                sock = self._socket_for(endpoint, hops[-1] if hops else None)
                hops.append(self._handshake(endpoint, sock))
        except BaseException:
            _Connection(hops).close()
            raise
        return _Connection(hops)

    def _socket_for(self, endpoint: Endpoint, via: paramiko.Transport | None):
        timeout = self.options.connect_timeout or None
        if via is not None:
            try:
                return via.open_channel(
                    "direct-tcpip",
                    (endpoint.hostname, endpoint.port),
                    ("127.0.0.1", 0),
                    timeout=timeout,
                )
            except paramiko.ChannelException as exc:
                raise ConnectError(
                    f"the jump host could not reach {endpoint.describe()}: {exc.text}; "
                    "check HostName/Port and ProxyJump in your ssh config"
                ) from exc
        if endpoint.proxy_command:
            return paramiko.ProxyCommand(endpoint.proxy_command)
        return socket.create_connection((endpoint.hostname, endpoint.port), timeout=timeout)

    def _handshake(self, endpoint: Endpoint, sock) -> paramiko.Transport:
        transport = paramiko.Transport(sock)
        try:
            timeout: Any = self.options.connect_timeout or None  # paramiko takes None: no limit
            transport.banner_timeout = timeout
            transport.handshake_timeout = timeout
            transport.auth_timeout = timeout
            name = endpoint.known_hosts_name
            security = transport.get_security_options()
            preferred = self.known_hosts.preferred_algorithms(name, security.key_types)
            if preferred:
                security.key_types = preferred
            transport.start_client(timeout=timeout)
            key = transport.get_remote_server_key()
            port_hint = "" if endpoint.port == 22 else f"-p {endpoint.port} "
            self.known_hosts.verify(
                name, key, accept_new=self.route.accept_new, port_hint=port_hint
            )
            self._auth.authenticate(transport, endpoint)
            if self.options.keepalive:
                transport.set_keepalive(int(self.options.keepalive))
            return transport
        except BaseException:
            transport.close()
            raise

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _describe(self) -> str:
        via = "".join(f" via {j.describe()}" for j in self.route.jumps)
        return self.route.target.describe() + via

    def _call(self, op: Callable[[_Connection], T], *, idempotent: bool) -> T:
        try:
            for attempt in self._retrying(idempotent=idempotent):
                with attempt:
                    return op(self._connection())
        except _NotSent as exc:
            raise ConnectError(
                f"cannot connect to {self._describe()}: {exc} (tried "
                f"{self.options.connect_attempts} times); check that the host is up and "
                "reachable, and its HostName/Port"
            ) from exc
        except _Dropped as exc:
            if not idempotent:
                raise  # the caller says what an ambiguous outcome means
            raise ConnectError(
                f"the connection to {self._describe()} kept dropping: {exc} (tried "
                f"{self.options.connect_attempts} times)"
            ) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    # -------------------------------------------------------------- commands

    def run(
        self,
        argv: Sequence[str] | str,
        *,
        timeout: float | None = DEFAULT_COMMAND_TIMEOUT,
        input: str | bytes | None = None,
        idempotent: bool = False,
    ) -> CommandResult:
        """Run a command remotely (a list is quoted; a string goes to the remote shell).

        ``idempotent=True`` lets a dropped connection be retried by running the
        command again; otherwise a drop after sending raises AmbiguousCommandError.
        """
        command = command_line(argv)
        data = as_bytes(input)
        try:
            return self._call(
                lambda conn: self._run_once(conn, command, timeout, data), idempotent=idempotent
            )
        except _Dropped as exc:  # non-idempotent: not retried
            raise AmbiguousCommandError(
                f"the connection to {self._describe()} dropped after '{command}' was sent "
                f"({exc}); it may or may not have run there: check before running it again",
                command=command,
                host=self.host,
            ) from exc

    def _run_once(
        self, conn: _Connection, command: str, timeout: float | None, data: bytes | None
    ) -> CommandResult:
        try:
            chan = conn.target.open_session(timeout=self.options.connect_timeout or None)
        except Exception as exc:
            if isinstance(exc, paramiko.ChannelException) and conn.alive():
                raise TransportError(f"{self._describe()} refused a session: {exc.text}") from exc
            raise _NotSent(_reason(exc)) from exc
        try:
            return self._exchange(conn, chan, command, timeout, data)
        finally:
            chan.close()

    def _exchange(self, conn, chan, command, timeout, data) -> CommandResult:
        deadline = None if timeout is None else time.monotonic() + timeout
        out, err = bytearray(), bytearray()
        try:
            chan.exec_command(command)
            if data:
                chan.sendall(data)
            chan.shutdown_write()
            while True:
                while chan.recv_ready():
                    out += chan.recv(65536)
                while chan.recv_stderr_ready():
                    err += chan.recv_stderr(65536)
                if chan.closed or (chan.eof_received and chan.exit_status_ready()):
                    if not chan.recv_ready() and not chan.recv_stderr_ready():
                        break
                    continue
                if not conn.alive():
                    break
                wait = _POLL if deadline is None else min(_POLL, deadline - time.monotonic())
                if wait <= 0:
                    raise CommandTimeout(
                        f"'{command}' did not finish within {timeout:g} s on {self.host}; "
                        "it may still be running there"
                    )
                select.select([chan], [], [], wait)
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise _Dropped(_reason(exc)) from exc
        if chan.exit_status_ready() and chan.exit_status != -1:
            return CommandResult(chan.exit_status, decode(bytes(out)), decode(bytes(err)))
        if not conn.alive():
            raise _Dropped("connection lost before the command's exit status arrived")
        # Closed with no exit status: killed by a signal on the server.
        return CommandResult(-1, decode(bytes(out)), decode(bytes(err)) or "killed by a signal\n")

    # ----------------------------------------------------------------- files

    def read_file(self, path: str) -> bytes:
        remote = _sftp_path(path)

        def op(conn: _Connection) -> bytes:
            return self._sftp_op(conn, lambda sftp: _read(sftp, remote))

        return self._call(op, idempotent=True)

    def write_file(self, path: str, data: bytes, mode: int = 0o644) -> None:
        """Write atomically: a temporary file beside ``path``, then a POSIX rename."""
        remote = _sftp_path(path)

        def write(sftp: paramiko.SFTPClient) -> None:
            folder, name = posixpath.split(remote)
            tmp = posixpath.join(folder, f".{name}.{uuid.uuid4().hex[:12]}.tmp")
            try:
                with sftp.open(tmp, "wb") as f:
                    f.set_pipelined(True)
                    f.write(data)
                sftp.chmod(tmp, mode)
                sftp.posix_rename(tmp, remote)
            except BaseException:
                with contextlib.suppress(Exception):  # best effort on the way out
                    sftp.remove(tmp)
                raise

        self._call(lambda conn: self._sftp_op(conn, write), idempotent=True)

    def makedirs(self, path: str) -> None:
        remote = _sftp_path(path)

        def make(sftp: paramiko.SFTPClient) -> None:
            current = "/" if remote.startswith("/") else ""
            for part in [p for p in remote.split("/") if p]:
                current = posixpath.join(current, part) if current else part
                try:
                    sftp.stat(current)
                except FileNotFoundError:
                    try:
                        sftp.mkdir(current)
                    except OSError:
                        sftp.stat(current)  # made meanwhile by someone else: fine

        self._call(lambda conn: self._sftp_op(conn, make), idempotent=True)

    def _sftp_op(self, conn: _Connection, op: Callable[[paramiko.SFTPClient], T]) -> T:
        try:
            sftp = conn.sftp()
        except Exception as exc:
            if conn.alive():
                raise TransportError(f"{self._describe()} has no SFTP service: {exc}") from exc
            raise _NotSent(_reason(exc)) from exc
        try:
            return op(sftp)
        except (OSError, EOFError, paramiko.SSHException) as exc:
            if conn.alive() and not isinstance(exc, EOFError):
                raise  # a file error (missing, permission): the caller's to handle
            raise _Dropped(_reason(exc)) from exc

    # -------------------------------------------------------------- lifetime

    def close(self) -> None:
        self._drop()

    def __enter__(self) -> SSHTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SSHTransport({self.host!r})"


def _read(sftp: paramiko.SFTPClient, path: str) -> bytes:
    with sftp.open(path, "rb") as f:
        f.prefetch()
        return f.read()


def _sftp_path(path: str) -> str:
    """SFTP starts in the home folder: ``~/x`` becomes ``x``."""
    if path == "~":
        return "."
    if path.startswith("~/"):
        return path[2:] or "."
    return path


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    if isinstance(exc, socket.gaierror):
        return f"unknown host name ({text})"
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timed out"
    if isinstance(exc, EOFError) and not text:
        return "the server closed the connection"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
