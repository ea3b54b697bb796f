"""The probe ``hpclaunch doctor`` runs on a compute node: a call task, not a user's task.

Enqueued with the reserved tag ``hpclaunch-probe`` and claimed only by the probe
job's worker (started with that tag alone), so no ordinary worker takes it and
the probe worker takes nothing else. Its result (versions, imports, the GPUs this
worker slot sees) comes back through the queue as the task's JSON result.
"""

from __future__ import annotations

import importlib
import os
import platform
import socket
from importlib import metadata
from typing import Any

PROBE_TAG = "hpclaunch-probe"
DEVICE_VARIABLES = ("CUDA_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "ZE_AFFINITY_MASK")


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def run(imports: list[str]) -> dict[str, Any]:
    """What the compute node has: versions, the modules named, the devices this slot sees."""
    results: dict[str, str] = {}
    for name in imports:
        try:
            importlib.import_module(name)
            results[name] = "ok"
        except Exception as exc:  # any import failure is the answer, not an error
            results[name] = f"{type(exc).__name__}: {exc}"
    return {
        "host": socket.gethostname(),
        "python": platform.python_version(),
        "hpclaunch": _version("hpclaunch"),
        "cloudpickle": _version("cloudpickle"),
        "imports": results,
        "devices": {v: os.environ[v] for v in DEVICE_VARIABLES if v in os.environ},
    }
