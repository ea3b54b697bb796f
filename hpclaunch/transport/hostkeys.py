"""Host-key verification against known_hosts, like OpenSSH.

An unknown key is refused (or, with accept-new, recorded); a key that differs
from the recorded one is always refused. Messages carry the SHA256
fingerprint and what to do.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

import paramiko

from hpclaunch.transport.base import HostKeyError

_RSA_ALGORITHMS = ("rsa-sha2-512", "rsa-sha2-256")


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's ``SHA256:...`` fingerprint of a public key."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


class KnownHosts:
    """The user's known_hosts files (the first records new keys) and the global ones."""

    def __init__(self, user_files: Iterable[Path], global_files: Iterable[Path] = ()):
        self.user_files = tuple(user_files)
        self.global_files = tuple(global_files)
        self._entries: list[tuple[Path, paramiko.HostKeys]] = []
        for path in (*self.user_files, *self.global_files):
            keys = paramiko.HostKeys()
            if path.is_file():
                try:
                    keys.load(str(path))
                except (OSError, paramiko.SSHException):
                    continue
            self._entries.append((path, keys))

    def lookup(self, name: str) -> list[tuple[Path, paramiko.PKey]]:
        """Every recorded key for ``name``, with the file it came from."""
        found: list[tuple[Path, paramiko.PKey]] = []
        for path, keys in self._entries:
            entry = keys.lookup(name)
            if entry:
                found.extend((path, key) for key in entry.values())
        return found

    def preferred_algorithms(self, name: str, supported: Iterable[str]) -> list[str] | None:
        """Host-key algorithms to ask for, so the server offers a recorded type."""
        supported = list(supported)
        wanted: list[str] = []
        for _, key in self.lookup(name):
            kind = key.get_name()
            algos = _RSA_ALGORITHMS if kind == "ssh-rsa" else (kind,)
            wanted.extend(a for a in algos if a in supported and a not in wanted)
        if not wanted:
            return None
        return wanted + [a for a in supported if a not in wanted]

    def verify(self, name: str, key: paramiko.PKey, *, accept_new: bool, port_hint: str) -> None:
        """Return if ``key`` is the recorded key for ``name``; else record or refuse."""
        recorded = self.lookup(name)
        offered = fingerprint(key)
        for _, known in recorded:
            if known.get_name() == key.get_name() and known.asbytes() == key.asbytes():
                return
        if recorded:
            path, known = next(
                ((p, k) for p, k in recorded if k.get_name() == key.get_name()), recorded[0]
            )
            raise HostKeyError(
                f"host key for {name} has CHANGED: the server offers {key.get_name()} "
                f"{offered} but {path} records {known.get_name()} {fingerprint(known)}; "
                "someone may be intercepting the connection. If the cluster's admins "
                f"confirm the new key, run: ssh-keygen -R '{name}' -f {path}, then connect again"
            )
        if not accept_new:
            where = self.user_files[0] if self.user_files else Path("~/.ssh/known_hosts")
            raise HostKeyError(
                f"host key for {name} is not known ({key.get_name()} {offered}); "
                "check the fingerprint with the cluster's documentation or admins, then "
                f"record it with: ssh-keyscan {port_hint}{_bare(name)} >> {where} "
                "(or connect once with ssh), or allow accepting new host keys "
                "(accept_new_host_key)"
            )
        self.record(name, key)

    def record(self, name: str, key: paramiko.PKey) -> Path:
        """Append ``name key`` to the first user known_hosts file."""
        if not self.user_files:
            raise HostKeyError(f"no known_hosts file to record the key for {name} in")
        path = self.user_files[0]
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        line = f"{name} {key.get_name()} {key.get_base64()}\n"
        needs_newline = (
            path.is_file() and path.stat().st_size > 0 and not path.read_bytes().endswith(b"\n")
        )
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "a") as f:
            f.write(("\n" if needs_newline else "") + line)
        for entry_path, keys in self._entries:
            if entry_path == path:
                keys.add(name, key.get_name(), key)
        return path


def _bare(name: str) -> str:
    return name[1:].split("]:")[0] if name.startswith("[") else name
