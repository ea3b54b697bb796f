"""Dashboard tests: a real ``hpclaunch serve``, real queues, real headless Chromium."""

from __future__ import annotations

import sys
from pathlib import Path

# The server tests' helpers (a real server process on a free port) serve here too.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "server"))
