"""Where hpclaunch keeps its files, and where its shipped data lives."""

from __future__ import annotations

import os
from pathlib import Path

from hpclaunch.errors import UserError

DIR_MODE = 0o700  # folders hpclaunch creates: only their owner may enter
FILE_MODE = 0o600  # files hpclaunch creates: queue, logs, task output


def home() -> Path:
    """The per-user folder (``HPCLAUNCH_HOME`` or ``~/.hpclaunch``)."""
    env = os.environ.get("HPCLAUNCH_HOME")
    return Path(env).expanduser() if env else Path.home() / ".hpclaunch"


def private_dir(path: Path, *, what: str = "folder") -> Path:
    """``path`` as a folder; any part hpclaunch creates is 0700 whatever the umask.

    Folders that already exist keep their mode (the user chose it).
    """
    path = Path(path)
    missing = []
    probe = path
    while not probe.exists() and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    try:
        for folder in reversed(missing):
            try:
                folder.mkdir(mode=DIR_MODE)
            except FileExistsError:
                continue
            os.chmod(folder, DIR_MODE)  # mkdir's mode is filtered by the umask
    except NotADirectoryError:
        raise UserError(f"{what} {path}: a part of it is a file, not a folder") from None
    except OSError as exc:
        raise UserError(f"cannot create {what} {path}: {exc.strerror}") from None
    if not path.is_dir():
        raise UserError(f"{what} {path} is a file, not a folder; point it at a folder")
    return path


def ensure_home() -> Path:
    """The per-user folder, created 0700 if missing (it holds the queue and logs)."""
    return private_dir(
        home(), what="HPCLAUNCH_HOME" if "HPCLAUNCH_HOME" in os.environ else "the folder"
    )


def private_file(path: Path) -> int:
    """Open ``path`` for writing (created 0600 whatever the umask); returns the fd."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    if os.fstat(fd).st_mode & 0o077:
        os.fchmod(fd, FILE_MODE)
    return fd


def shipped_dir(name: str) -> Path:
    """A top-level data folder (``templates`` or ``site-configs``).

    An installed wheel carries it inside the package; a source checkout (or an
    editable install) has it beside the package.
    """
    package = Path(__file__).resolve().parent
    inside = package / name
    return inside if inside.is_dir() else package.parent / name
