"""Where hpclaunch keeps its files, and where its shipped data lives."""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    """The per-user folder (``HPCLAUNCH_HOME`` or ``~/.hpclaunch``)."""
    env = os.environ.get("HPCLAUNCH_HOME")
    return Path(env).expanduser() if env else Path.home() / ".hpclaunch"


def shipped_dir(name: str) -> Path:
    """A top-level data folder (``templates`` or ``site-configs``).

    An installed wheel carries it inside the package; a source checkout (or an
    editable install) has it beside the package.
    """
    package = Path(__file__).resolve().parent
    inside = package / name
    return inside if inside.is_dir() else package.parent / name
