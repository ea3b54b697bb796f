"""One transport (one SSH connection, one login) per host, for as long as the caller keeps it.

A CLI call keeps one pool for all its work; ``status --watch`` keeps one for every
refresh, so an MFA site asks for one code per watch, not one per refresh.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hpclaunch.launches.model import Launch


class TransportPool:
    """Transports keyed by host, opened on first use and closed together."""

    def __init__(self, factory: Callable[[Launch], Any] | None = None):
        self.factory = factory
        self.open: dict[str | None, Any] = {}

    def get(self, launch: Launch) -> Any:
        if launch.host not in self.open:
            if self.factory is not None:
                self.open[launch.host] = self.factory(launch)
            else:
                from hpclaunch.transport import open_transport

                self.open[launch.host] = open_transport(launch.host, launch.ssh_options)
        return self.open[launch.host]

    @property
    def connections(self) -> int:
        """Connections opened so far by every transport of the pool (reconnects count)."""
        return sum(getattr(t, "connections_opened", 0) for t in self.open.values())

    def close(self) -> None:
        for transport in self.open.values():
            transport.close()
        self.open.clear()

    def __enter__(self) -> TransportPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
