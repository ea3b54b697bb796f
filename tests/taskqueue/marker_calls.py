"""Call targets for the batching tests: each run leaves a line in a file, so a
task run twice (or never) shows up."""

from __future__ import annotations

import os


def mark(path: str, name: int) -> int:
    """Append ``name`` to ``path`` (one O_APPEND write: lines never interleave)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, f"{name}\n".encode())
    finally:
        os.close(fd)
    return name
