"""Site profiles: YAML files describing how to run workers on a cluster.

Public API::

    load_profile(name, overrides=(), cwd=None) -> Profile
    available(cwd=None) -> dict[str, Path]
    flag_overrides(partition=..., account=..., ...) -> list[Override]
    parse_set("key.path=value") -> Override
"""

from __future__ import annotations

from hpclaunch.sites.loader import (
    FLAG_KEYS,
    Override,
    available,
    candidates,
    flag_overrides,
    load_profile,
    parse_set,
    search_dirs,
)
from hpclaunch.sites.model import (
    Arrays,
    DatabaseAccess,
    Profile,
    Resources,
    RetryRule,
    SSHOptions,
    WorkerProfile,
)

__all__ = [
    "FLAG_KEYS",
    "Arrays",
    "DatabaseAccess",
    "Override",
    "Profile",
    "Resources",
    "RetryRule",
    "SSHOptions",
    "WorkerProfile",
    "available",
    "candidates",
    "flag_overrides",
    "load_profile",
    "parse_set",
    "search_dirs",
]
