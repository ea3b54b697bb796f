"""Who a worker is: host, pid, and the scheduler job it runs in (from the environment)."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from typing import Any

from hpclaunch.schedulers.environment import identify
from hpclaunch.schedulers.registry import ENVIRONMENTS


def scheduler_identity(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Scheduler, job ID, array job ID and array index, read from the job's environment.

    The batch script names its scheduler (``HPCLAUNCH_SCHEDULER``); each
    scheduler's variables are plain data in the registry, so nothing heavy loads.
    """
    return identify(ENVIRONMENTS, os.environ if environ is None else environ)


def hostname() -> str:
    return socket.gethostname()
