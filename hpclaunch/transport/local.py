"""Commands and files on this machine (``scheduler: local`` and local sites)."""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from hpclaunch.paths import private_dir
from hpclaunch.transport.base import (
    DEFAULT_COMMAND_TIMEOUT,
    CommandResult,
    CommandTimeout,
    as_bytes,
    command_line,
    decode,
)


class LocalTransport:
    """The Transport for this machine: subprocess and plain file I/O."""

    host: str | None = None

    def __init__(self) -> None:
        self.connections_opened = 0

    def run(
        self,
        argv: Sequence[str] | str,
        *,
        timeout: float | None = DEFAULT_COMMAND_TIMEOUT,
        input: str | bytes | None = None,
        idempotent: bool = False,
    ) -> CommandResult:
        args = ["/bin/sh", "-c", argv] if isinstance(argv, str) else [str(a) for a in argv]
        try:
            proc = subprocess.run(
                args,
                input=as_bytes(input),
                stdin=None if input is not None else subprocess.DEVNULL,
                capture_output=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise CommandTimeout(
                f"'{command_line(argv)}' did not finish within {timeout:g} s on this machine"
            ) from exc
        except FileNotFoundError:
            return CommandResult(127, "", f"{args[0]}: command not found\n")
        except PermissionError as exc:
            return CommandResult(126, "", f"{args[0]}: {exc.strerror}\n")
        return CommandResult(proc.returncode, decode(proc.stdout), decode(proc.stderr))

    def read_file(self, path: str) -> bytes:
        return Path(path).expanduser().read_bytes()

    def write_file(self, path: str, data: bytes, mode: int = 0o644) -> None:
        target = Path(path).expanduser()
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.chmod(tmp, mode)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def makedirs(self, path: str) -> None:
        """Folders hpclaunch creates hold scripts and logs: 0700 whatever the umask."""
        private_dir(Path(path).expanduser(), what="launch folder")

    def close(self) -> None:
        pass

    def __enter__(self) -> LocalTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return "LocalTransport()"
