"""Where OpenSSH master connections live, and the record of ``connect`` sessions.

Control sockets go in one private folder (mode 0700, owned by the user) with a
short path: a Unix socket path is limited to about 100 bytes, and OpenSSH
appends a random suffix while it creates one. A session (``hpclaunch connect``)
is a master socket ``s-<hash>`` (the hash is OpenSSH's ``%C`` for the
destination) plus a 0600 JSON record ``s-<hash>.json`` saying which sites it
serves and when it expires; OpenSSH itself only knows an idle timeout.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import stat
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from hpclaunch import paths
from hpclaunch.transport.base import TransportError

#: Longest folder kept under HPCLAUNCH_HOME; longer homes use a folder in /tmp.
MAX_DIR_LENGTH = 40


def _control_dir_path() -> Path:
    home = paths.home()
    folder = home / "ssh"
    if len(str(folder)) > MAX_DIR_LENGTH:
        digest = hashlib.sha256(str(home.resolve()).encode()).hexdigest()[:8]
        folder = Path("/tmp") / f"hpclaunch-{os.getuid()}-{digest}"
    return folder


def control_dir() -> Path:
    """The private folder for control sockets (created 0700; refused if unsafe)."""
    folder = _control_dir_path()
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = folder.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise TransportError(
            f"{folder} is not a folder of yours; remove it (it holds hpclaunch's SSH sockets)"
        )
    if info.st_mode & 0o077:
        folder.chmod(0o700)
    return folder


def session_socket(key: str) -> Path:
    return control_dir() / f"s-{key}"


@dataclass(frozen=True)
class SessionRecord:
    """A ``connect`` session: the destination's ``%C`` key, sites, and expiry (UTC)."""

    key: str
    destination: str
    sites: tuple[str, ...]
    opened: str
    expires: str
    #: The session dropped and logging in again needs a person (a one-time code):
    #: processes without a terminal fail at once instead of knocking on the server.
    needs_login: bool = False

    @property
    def expires_at(self) -> datetime:
        return datetime.fromisoformat(self.expires)

    def expired(self, now: datetime | None = None) -> bool:
        return (now or datetime.now(UTC)) >= self.expires_at

    def remaining(self, now: datetime | None = None) -> float:
        return max(0.0, (self.expires_at - (now or datetime.now(UTC))).total_seconds())


def _record_path(key: str) -> Path:
    return control_dir() / f"s-{key}.json"


def read_record(key: str) -> SessionRecord | None:
    try:
        data = json.loads(_record_path(key).read_text())
        return SessionRecord(
            key=data["key"],
            destination=data["destination"],
            sites=tuple(data["sites"]),
            opened=data["opened"],
            expires=data["expires"],
            needs_login=bool(data.get("needs_login", False)),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_record(record: SessionRecord) -> None:
    """Write atomically, readable by the user only."""
    path = _record_path(record.key)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({**asdict(record), "sites": list(record.sites)}, f)
    os.replace(tmp, path)


def remove_record(key: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        _record_path(key).unlink()


def records() -> list[SessionRecord]:
    """Every recorded session (live or not), soonest expiry first."""
    folder = control_dir()
    found = [read_record(p.name[2:-5]) for p in folder.glob("s-*.json")]
    return sorted((r for r in found if r is not None), key=lambda r: r.expires)


def any_records() -> bool:
    """Cheap test (no ssh spawned) used before looking for a session for a host."""
    folder = _control_dir_path()  # not created: plain paramiko users never get one
    try:
        return folder.is_dir() and any(folder.glob("s-*.json"))
    except OSError:
        return False


@contextlib.contextmanager
def locked(key: str) -> Iterator[None]:
    """One process at a time (re)opens the session for ``key``: never two prompts."""
    fd = os.open(control_dir() / f"s-{key}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def now_iso(offset_seconds: float = 0.0) -> str:
    from datetime import timedelta

    return (datetime.now(UTC) + timedelta(seconds=offset_seconds)).isoformat(timespec="seconds")
