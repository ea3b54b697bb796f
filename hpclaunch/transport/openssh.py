"""Commands and files over the system OpenSSH client, through a master connection.

Why the system ``ssh``: it reads the user's whole ssh config (Include, Match,
certificates, ProxyCommand/ProxyJump, agent) and asks for one-time codes on
the terminal exactly as in the user's shell, and its master connections
(ControlMaster) can outlive one hpclaunch command: ``hpclaunch connect``
logs in once and later commands reuse the socket without a prompt.

Every command and file transfer is one ``ssh`` client multiplexed over the
master (never a new login). Files go through the same channel (``cat`` out,
``cat > tmp && mv`` in) rather than sftp/scp: one code path, one error model
(exit codes, the ambiguous-reply rule), the atomic rename happens on the
server, and it works where the sftp subsystem is disabled.

A client never logs in by itself (that could ask for a second one-time code):
its ProxyCommand creates a flag file and fails, so if the master is gone the
client fails before sending anything and we know the command did not run. A
255 exit while the master died is ambiguous.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import math
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import tenacity

from hpclaunch.errors import UserError
from hpclaunch.transport import sessions
from hpclaunch.transport.base import (
    DEFAULT_COMMAND_TIMEOUT,
    AmbiguousCommandError,
    AuthenticationError,
    CommandResult,
    CommandTimeout,
    ConnectError,
    HostKeyError,
    NoTerminalError,
    TransportError,
    as_bytes,
    command_line,
    decode,
)
from hpclaunch.transport.options import SSHOptions, config_file_for
from hpclaunch.transport.sshconfig import parse_host_spec

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Printed (as a hint in ssh's output) by a client's ProxyCommand when no master answered.
NO_MASTER = "hpclaunch-no-master-connection"
#: How long a master opened for one CLI call stays when idle (it is closed on exit).
OWN_MASTER_PERSIST = 600
_TRANSIENT = (
    "connection refused",
    "connection timed out",
    "operation timed out",
    "connection reset",
    "connection closed",
    "kex_exchange_identification",
    "banner exchange",
    "no route to host",
    "network is unreachable",
    "broken pipe",
)
_FILE_MISSING = 66
_MUX_NOT_SENT = ("mux_client_hello_exchange", "Control socket connect")
#: How long a command waits for a free channel on a shared connection (MaxSessions).
MUX_WAIT = 120.0


class _NotSent(Exception):
    """A transient failure before the command reached the server."""


class _Dropped(Exception):
    """The master connection died after the command was sent."""


def ssh_binary() -> str | None:
    return shutil.which("ssh")


def terminal_available() -> bool:
    """A controlling terminal ssh could ask a passphrase or one-time code on."""
    try:
        fd = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
    except OSError:
        return False
    os.close(fd)
    return True


def master_alive(path: Path) -> bool:
    """A master connection answers on the control socket ``path``."""
    if not path.exists():
        return False
    try:
        proc = subprocess.run(
            ["ssh", "-F", "none", "-o", _control_path(path), "-O", "check", "x"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return proc.returncode == 0


class OpenSSHTransport:
    """The Transport over the system ``ssh``, multiplexed over one master connection."""

    def __init__(self, host: str, options: SSHOptions | Mapping[str, Any] | None = None):
        self.host = host
        self.options = SSHOptions.from_mapping(options)
        user, name, port = parse_host_spec(host)
        self._destination = f"{user}@{name}" if user else name
        self._port = self.options.port or port
        binary = ssh_binary()
        if binary is None:
            raise TransportError(
                "the OpenSSH client (ssh) is not installed; install it or set ssh.transport: "
                "paramiko in the site profile"
            )
        self._ssh = binary
        self._key: str | None = None
        self._where: str | None = None
        self._path: Path | None = None  # the master in use
        self._owned = False  # opened by this object (closed with it)
        self._suspect = False  # the master may be gone: check before use
        self.connections_opened = 0

    # ------------------------------------------------------------ arguments

    def _config_args(self) -> list[str]:
        chosen = config_file_for(self.options)
        if chosen is None:
            return []
        if chosen.lower() != "none":
            path = Path(chosen).expanduser()
            if not path.is_file():
                raise UserError(f"ssh config file {path} does not exist; fix ssh config_file")
            chosen = str(path)
        return ["-F", chosen]

    def _login_args(self) -> list[str]:
        """What a new login needs: who, where, which keys, how to check the host."""
        o = self.options
        args = self._config_args()
        if o.user:
            args += ["-l", o.user]
        if self._port:
            args += ["-p", str(self._port)]
        keys = [Path(os.path.expandvars(name)).expanduser() for name in o.identity_file]
        agent = o.allow_agent and bool(os.environ.get("SSH_AUTH_SOCK"))
        named = 0
        for key in keys:
            if agent and not key.exists():
                continue  # as OpenSSH does: the agent may hold it
            _check_identity(key)
            args += ["-i", str(key)]
            named += 1
        if named:  # the named keys replace the defaults (as with paramiko), agent or not
            args += ["-o", "IdentitiesOnly=yes"]
        if o.proxy_jump:
            args += ["-o", f"ProxyJump={o.proxy_jump}"]
        if o.known_hosts:
            files = [str(Path(os.path.expandvars(f)).expanduser()) for f in o.known_hosts]
            args += ["-o", "UserKnownHostsFile=" + " ".join(f'"{f}"' for f in files)]
        strict = "accept-new" if o.accept_new_host_key else "yes"
        args += ["-o", f"StrictHostKeyChecking={strict}"]
        if not o.allow_agent:
            args += ["-o", "IdentityAgent=none"]
        if o.connect_timeout:
            args += ["-o", f"ConnectTimeout={max(1, math.ceil(o.connect_timeout))}"]
        if o.keepalive:
            args += ["-o", f"ServerAliveInterval={max(1, math.ceil(o.keepalive))}"]
            args += ["-o", "ServerAliveCountMax=3"]
        # One code per login attempt: a wrong answer is never re-asked into a lockout.
        args += ["-o", "NumberOfPasswordPrompts=1", "-o", "ConnectionAttempts=1"]
        if not terminal_available():
            # Nobody to type a code: keys and certificates only, so the server never
            # records a failed password/one-time-code attempt (those lead to lockouts).
            args += ["-o", "BatchMode=yes"]
        return args + _QUIET

    def _client_args(self, path: Path, flag: Path) -> list[str]:
        """A client that only ever talks through the master at ``path``.

        Should the master not answer, ssh would log in by itself: its ProxyCommand
        instead creates ``flag`` (how we know nothing was sent) and fails.
        """
        script = f'echo {NO_MASTER} >&2; : > "$0"; exit 1'
        return [
            self._ssh,
            "-o",
            f"ProxyCommand=sh -c {shlex.quote(script)} {shlex.quote(str(flag))}",
            *self._config_args(),
            "-o",
            "ControlMaster=no",
            "-o",
            _control_path(path),
            "-o",
            "BatchMode=yes",
            *_QUIET,
            self._destination,
            "--",
        ]

    # --------------------------------------------------------------- naming

    def control_key(self) -> str:
        """OpenSSH's ``%C`` for this destination (the session socket's name)."""
        if self._key is None:
            args = [self._ssh, "-G", *self._login_args(), "-o", "ControlPath=%C"]
            proc = subprocess.run(
                [*args, self._destination], capture_output=True, text=True, timeout=30
            )
            values = dict(line.split(" ", 1) for line in proc.stdout.splitlines() if " " in line)
            if proc.returncode != 0 or "controlpath" not in values:
                raise UserError(
                    f"ssh cannot read its config for {self.host}: {_one_line(proc.stderr)}"
                )
            self._key = values["controlpath"].strip()
            port = values.get("port", "22")
            self._where = f"{values.get('user', '?')}@{values.get('hostname', self.host)}:{port}"
        return self._key

    def _describe(self) -> str:
        self.control_key()
        where = self._where or self.host
        return where if self.host in where else f"{self.host} ({where})"

    # ------------------------------------------------------- master sockets

    def _alive(self, path: Path) -> bool:
        return master_alive(path)

    def in_session(self) -> bool:
        """``hpclaunch connect`` opened a session for this destination that has not
        expired (its master may have dropped: the next command logs in again)."""
        record = sessions.read_record(self.control_key())
        return record is not None and not record.expired()

    def session_alive(self) -> bool:
        """A live ``connect`` session serves this destination (and has not expired)."""
        key = self.control_key()
        record = sessions.read_record(key)
        if record is None or record.expired():
            return False
        return self._alive(sessions.session_socket(key))

    def _master(self) -> Path:
        """The socket of a live master, opening one (one login) if needed."""
        if self._path is not None and not self._suspect and self._path.exists():
            return self._path
        if self._path is not None and self._alive(self._path):
            self._suspect = False
            return self._path
        key = self.control_key()
        record = sessions.read_record(key)
        socket = sessions.session_socket(key)
        if record is not None and record.expired():
            self._exit_master(socket, gently=True)  # other processes may be using it
            sessions.remove_record(key)
            record = None
        if record is not None:
            # A session (hpclaunch connect): reuse it, or re-open it once if it dropped.
            with sessions.locked(key):
                if not self._alive(socket):
                    self._reopen_session(socket, key)
            self._path, self._owned, self._suspect = socket, False, False
            return socket
        if self._alive(socket):  # a session opened without a record (e.g. still being written)
            self._path, self._owned, self._suspect = socket, False, False
            return socket
        if self._path is None or not self._owned:
            self._path = sessions.control_dir() / f"t-{uuid.uuid4().hex[:8]}-{key[:16]}"
        self._open_master(self._path, OWN_MASTER_PERSIST)
        self._owned, self._suspect = True, False
        return self._path

    def _reopen_session(self, socket: Path, key: str) -> None:
        """Log in again for a dropped session: once, and only if someone can answer."""
        record = sessions.read_record(key)
        if record is None:
            raise _NotSent("the session was ended meanwhile")
        if record.needs_login and not terminal_available():
            raise NoTerminalError(
                f"the session to {record.destination} dropped and logging in again needs a "
                f"one-time code; run 'hpclaunch connect {record.sites[0]}' in a terminal"
            )
        log.info("ssh %s: the session dropped; logging in again", self.host)
        try:
            self._open_master(socket, math.ceil(record.remaining()) or 1)
        except NoTerminalError:
            sessions.write_record(replace(record, needs_login=True))
            raise
        if record.needs_login:
            sessions.write_record(replace(record, needs_login=False))

    def _open_master(self, path: Path, persist: int) -> None:
        """Log in (prompts, if any, on the terminal) and leave a master at ``path``."""
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # a stale socket of a dead master
        args = [
            self._ssh,
            *self._login_args(),
            "-o",
            "ControlMaster=yes",
            "-o",
            _control_path(path),
            "-o",
            f"ControlPersist={persist}",
            "-o",
            "ClearAllForwardings=yes",
            "-N",
            "-f",
            self._destination,
        ]
        if self.options.accept_new_host_key and self.options.known_hosts:
            first = Path(os.path.expandvars(self.options.known_hosts[0])).expanduser()
            first.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        limit = 300 + (self.options.connect_timeout or 60)  # a person may be typing a code
        with tempfile.TemporaryFile() as err:
            try:
                proc = subprocess.run(
                    args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                    timeout=limit,
                )  # fmt: skip
            except subprocess.TimeoutExpired as exc:
                raise ConnectError(
                    f"logging in to {self._describe()} took over {limit:g} s; try again"
                ) from exc
            err.seek(0)
            stderr = decode(err.read())
        if proc.returncode == 0 and self._alive(path):
            self.connections_opened += 1
            return
        self._login_failed(stderr, args)

    def _login_failed(self, stderr: str, args: list[str]) -> None:
        text = stderr.lower()
        where = self._describe()
        said = _one_line(stderr)
        if "remote host identification has changed" in text:
            offending = re.search(r"Offending \S+ key in (\S+):(\d+)", stderr)
            sent = re.search(r"(SHA256:\S+)", stderr)
            recorded = _recorded_fingerprint(offending[1], int(offending[2])) if offending else None
            raise HostKeyError(
                f"the host key of {where} has CHANGED"
                + (f" (recorded {recorded})" if recorded else "")
                + (f" (it now sends {sent[1]})" if sent else "")
                + "; this can be an attack. Only if the centre announced a new key, remove "
                "the old one"
                + (f" (in {offending[1]} line {offending[2]})" if offending else "")
                + f" with ssh-keygen -R '{_known_name(stderr, where)}' and connect again"
            )
        if "host key verification failed" in text or "host key is known for" in text:
            name = _known_name(stderr, where)
            fingerprint = self._offered_fingerprint(args)
            host, _, port = name.strip("[").partition("]:")
            keyscan = f"ssh-keyscan {'-p ' + port + ' ' if port else ''}{host}"
            raise HostKeyError(
                f"the host key for {name} is not known"
                + (f" (it sends {fingerprint})" if fingerprint else "")
                + f"; check it against the centre's published fingerprints, then add it with "
                f"{keyscan} >> ~/.ssh/known_hosts (or set ssh.accept_new_host_key: true)"
            )
        if "could not resolve hostname" in text:
            raise ConnectError(f"cannot connect to {where}: unknown host name ({said})")
        if "passphrase" in text or "/dev/tty" in text or "askpass" in text:
            raise AuthenticationError(
                f"logging in to {where} needs a passphrase or one-time code and there is no "
                f"terminal to ask on; run 'hpclaunch connect SITE' in a terminal, or ssh-add "
                f"your key ({said})"
            )
        interactive = "keyboard-interactive" in text or "password" in text
        if "permission denied" in text and interactive and not terminal_available():
            raise NoTerminalError(
                f"logging in to {where} needs a one-time code or password and there is no "
                "terminal to ask on (nothing was tried); run 'hpclaunch connect SITE' in a "
                "terminal first"
            )
        if "permission denied" in text or "too many authentication failures" in text:
            keys = ", ".join(self.options.identity_file) or "your default keys and agent"
            raise AuthenticationError(
                f"{where} refused authentication (offered {keys}); ssh says: {said}"
            )
        if any(w in text for w in _TRANSIENT) or not text.strip():
            raise _NotSent(said or "ssh failed without a message")
        raise ConnectError(f"cannot connect to {where}: {said}")

    def _offered_fingerprint(self, args: list[str]) -> str | None:
        """The key the server offers: ssh -v prints it before refusing (no login attempted)."""
        probe = [args[0], "-v", "-o", "BatchMode=yes", *args[1:]]
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            proc = subprocess.run(
                probe, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60
            )
            found = re.findall(r"Server host key: \S+ (SHA256:\S+)", proc.stderr)
            return found[-1] if found else None
        return None

    def _exit_master(self, path: Path, *, gently: bool = False) -> None:
        """End the master at ``path``; ``gently``: let commands under way finish first."""
        if path.exists():
            op = "stop" if gently else "exit"
            with contextlib.suppress(subprocess.SubprocessError, OSError):
                subprocess.run(
                    [self._ssh, "-F", "none", "-o", _control_path(path), "-O", op, "x"],
                    stdin=subprocess.DEVNULL, capture_output=True, timeout=30,
                )  # fmt: skip

    # ------------------------------------------------------------- sessions

    def open_session(self, site: str, seconds: float) -> sessions.SessionRecord:
        """Log in once and keep the master for ``seconds`` (``hpclaunch connect``)."""
        key = self.control_key()
        socket = sessions.session_socket(key)
        with sessions.locked(key):
            old = sessions.read_record(key)
            if not (old is not None and not old.expired() and self._alive(socket)):
                self._exit_master(socket)
                self._call(lambda: self._open_master(socket, math.ceil(seconds)), idempotent=True)
                old = None
            sites = tuple(dict.fromkeys((*(old.sites if old else ()), site)))
            record = sessions.SessionRecord(
                key=key,
                destination=self._where or self.host,
                sites=sites,
                opened=old.opened if old else sessions.now_iso(),
                expires=sessions.now_iso(seconds),
            )
            sessions.write_record(record)
        return record

    def close_session(self) -> bool:
        """End this destination's session; False when there was none."""
        key = self.control_key()
        socket = sessions.session_socket(key)
        with sessions.locked(key):
            had = sessions.read_record(key) is not None or self._alive(socket)
            self._exit_master(socket, gently=True)  # commands under way finish
            sessions.remove_record(key)
        return had

    # -------------------------------------------------------------- running

    def connect(self) -> None:
        """Open (or find) the master connection now."""
        self._call(lambda: self._master(), idempotent=True)

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
        self._suspect = True

    def _call(self, op: Callable[[], T], *, idempotent: bool) -> T:
        try:
            for attempt in self._retrying(idempotent=idempotent):
                with attempt:
                    return op()
        except _NotSent as exc:
            raise ConnectError(
                f"cannot connect to {self._describe()}: {exc} (tried "
                f"{self.options.connect_attempts} times); check that the host is up and "
                "reachable, and its HostName/Port"
            ) from exc
        except _Dropped as exc:
            if not idempotent:
                raise
            raise ConnectError(
                f"the connection to {self._describe()} kept dropping: {exc} (tried "
                f"{self.options.connect_attempts} times)"
            ) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _exchange(
        self, command: str, timeout: float | None, data: bytes | None
    ) -> tuple[int, bytes, bytes]:
        path = self._master()
        waited, pause = 0.0, 0.2
        while True:
            proc, unsent = self._client(path, command, timeout, data)
            if proc.returncode != 255:
                return proc.returncode, proc.stdout, proc.stderr
            stderr = decode(proc.stderr)
            refused = "Session open refused" in stderr  # the server said no: nothing ran
            if (refused or unsent) and self._alive(path):
                # sshd's MaxSessions reached by the processes sharing one session (a
                # client then tries a login of its own, which its ProxyCommand stops):
                # wait for a free channel; the server saw no login, so no lockout risk.
                if waited >= MUX_WAIT:
                    raise TransportError(
                        f"{self._describe()} refused a new session on the shared connection "
                        f"for {MUX_WAIT:g} s (its MaxSessions is reached); try again later"
                    )
                time.sleep(pause)
                waited, pause = waited + pause, min(pause * 2, 4.0)
                continue
            if unsent or any(w in stderr for w in _MUX_NOT_SENT):
                self._suspect = True  # the master was gone before the command left
                raise _NotSent("the master connection had ended")
            if not self._alive(path):
                self._suspect = True
                raise _Dropped(_one_line(stderr) or "the master connection ended")
            return proc.returncode, proc.stdout, proc.stderr  # the command's own 255

    def _client(
        self, path: Path, command: str, timeout: float | None, data: bytes | None
    ) -> tuple[subprocess.CompletedProcess[bytes], bool]:
        """Run one client; also whether it fell back to a login (so sent nothing)."""
        flag = path.with_name(f"u-{uuid.uuid4().hex[:12]}")
        try:
            proc = subprocess.run(
                [*self._client_args(path, flag), command],
                input=data if data is not None else b"",
                capture_output=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired as exc:
            raise CommandTimeout(
                f"'{command}' did not finish within {timeout:g} s on {self.host}; "
                "it may still be running there"
            ) from exc
        finally:
            unsent = flag.exists()
            flag.unlink(missing_ok=True)
        return proc, unsent

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
            code, out, err = self._call(
                lambda: self._exchange(command, timeout, data), idempotent=idempotent
            )
        except _Dropped as exc:
            raise AmbiguousCommandError(
                f"the connection to {self._describe()} dropped after '{command}' was sent "
                f"({exc}); it may or may not have run there: check before running it again",
                command=command,
                host=self.host,
            ) from exc
        return CommandResult(code, decode(out), decode(err))

    # ---------------------------------------------------------------- files

    def _file_op(self, script: str, args: Sequence[str], data: bytes | None = None) -> bytes:
        command = shlex.join(["sh", "-c", script, "sh", *args])
        code, out, err = self._call(
            # No time limit (as with sftp): a big file on a slow link takes what it takes;
            # a dead connection is caught by the master's keepalives.
            lambda: self._exchange(command, None, data),
            idempotent=True,
        )
        if code == 0:
            return out
        message = _one_line(decode(err)) or f"exit status {code}"
        path = args[0] if args else ""
        if code == _FILE_MISSING:
            raise FileNotFoundError(errno.ENOENT, f"no such file on {self.host}", path)
        if "permission denied" in message.lower():
            raise PermissionError(errno.EACCES, f"{message} on {self.host}", path)
        raise OSError(errno.EIO, f"{message} on {self.host}", path)

    def read_file(self, path: str) -> bytes:
        script = f'[ -e "$1" ] || exit {_FILE_MISSING}; exec cat -- "$1"'
        return self._file_op(script, [_remote_path(path)])

    def write_file(self, path: str, data: bytes, mode: int = 0o644) -> None:
        """Write atomically: a temporary file beside ``path``, then a POSIX rename."""
        script = (
            't="$(dirname -- "$1")/.$(basename -- "$1").$2.tmp"; '
            'if cat > "$t" && chmod "$3" "$t" && mv -f -- "$t" "$1"; then exit 0; fi; '
            'rm -f -- "$t"; exit 1'
        )
        token = uuid.uuid4().hex[:12]
        self._file_op(script, [_remote_path(path), token, f"{mode & 0o7777:o}"], data)

    def makedirs(self, path: str) -> None:
        self._file_op('exec mkdir -p -- "$1"', [_remote_path(path)])

    # ------------------------------------------------------------- lifetime

    def close(self) -> None:
        """Close a master this object opened; a ``connect`` session stays."""
        if self._path is not None and self._owned:
            self._exit_master(self._path)
        self._path, self._owned = None, False

    def __enter__(self) -> OpenSSHTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"OpenSSHTransport({self.host!r})"


_QUIET = ["-o", "LogLevel=ERROR", "-o", "RequestTTY=no", "-o", "RemoteCommand=none"]


def _control_path(path: Path) -> str:
    """The ``-o ControlPath=`` argument, quoted: a home folder may contain spaces."""
    return f'ControlPath="{path}"'


def _check_identity(path: Path) -> None:
    """Name a missing or public key file plainly (ssh would only warn and go on)."""
    if not path.is_file():
        raise AuthenticationError(f"identity file {path} does not exist; fix ssh identity_file")
    with contextlib.suppress(OSError):
        head = path.read_bytes()[:64]
        if head.startswith((b"ssh-", b"ecdsa-", b"sk-")) and b"PRIVATE" not in head:
            private = str(path).removesuffix(".pub").removesuffix("-cert")
            raise AuthenticationError(
                f"identity file {path}: it is a public key or certificate; name the private "
                f"key ({private}; ssh finds {private}-cert.pub beside it by itself)"
            )


def _recorded_fingerprint(file: str, line: int) -> str | None:
    """The fingerprint of the known_hosts entry ssh names as offending."""
    with contextlib.suppress(OSError, IndexError, subprocess.SubprocessError):
        entry = Path(file).expanduser().read_text().splitlines()[line - 1]
        fields = entry.split()
        if fields and fields[0].startswith("@"):
            fields = fields[1:]
        proc = subprocess.run(
            ["ssh-keygen", "-l", "-f", "-"],
            input=" ".join(fields[1:3]) + "\n",
            capture_output=True,
            text=True,
            timeout=30,
        )
        found = re.search(r"(SHA256:\S+)", proc.stdout)
        return found[1] if found else None
    return None


def _remote_path(path: str) -> str:
    """The remote shell starts in the home folder: ``~/x`` becomes ``x``."""
    if path == "~":
        return "."
    if path.startswith("~/"):
        return path[2:] or "."
    return path


def _known_name(stderr: str, fallback: str) -> str:
    found = re.search(r"host key is known for (\S+)", stderr) or re.search(
        r"Add correct host key in \S+ to get rid of this message.*?(\[?[\w.:-]+\]?(?::\d+)?)",
        stderr,
    )
    return found[1] if found else fallback


def _one_line(text: str) -> str:
    lines = [
        line.strip()
        for line in text.replace("\r", "\n").splitlines()
        if line.strip() and NO_MASTER not in line and not set(line.strip()) <= {"@"}
    ]
    return "; ".join(lines)[:500]
