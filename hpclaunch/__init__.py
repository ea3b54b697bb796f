"""hpclaunch: feed HPC clusters from a database task queue.

The top-level import stays light (workers import this package on every array
element), so the public Python API is loaded on first use.
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["BatchHandle", "Queue", "TaskHandle", "__version__"]


def __getattr__(name: str):
    if name in ("BatchHandle", "Queue", "TaskHandle"):
        from hpclaunch.queue import api

        return getattr(api, name)
    raise AttributeError(f"module 'hpclaunch' has no attribute {name!r}")
