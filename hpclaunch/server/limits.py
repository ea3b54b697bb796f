"""The server's open-file limit: each long-polling worker holds one socket."""

from __future__ import annotations

import resource

CEILING = 1 << 20  # when the hard limit is unlimited, ask for this many


def raise_open_files() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; return the soft limit now in force.

    Why: a default soft limit of 1024 would refuse connections long before the
    database or the event loop is the bottleneck.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = CEILING if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            return soft
        return target
    return soft
