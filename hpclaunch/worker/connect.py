"""Which queue session a worker opens: HTTP for a server's URL, else the database.

Here, not beside the interface in ``queue/session.py``: the interface must not
import its implementations (they import it). Each implementation is imported
only when chosen, so the HTTP path never loads the database driver.
"""

from __future__ import annotations

from collections.abc import Callable

from hpclaunch.queue.session import QueueSession, is_server_url


def open_session(
    url: str,
    *,
    wait: float,
    log: Callable[[str], None],
    stop: Callable[[], bool],
    insecure_http: bool = False,
    ca_bundle: str | None = None,
) -> QueueSession:
    """The session for a queue URL: HTTP for a server's URL, else the database.

    Each implementation is imported only when chosen: the HTTP path never loads
    the database driver, the database path never the HTTP client."""
    if is_server_url(url):
        from hpclaunch.queue.http_session import HttpSession

        return HttpSession(
            url, wait=wait, log=log, stop=stop, insecure_http=insecure_http, ca_bundle=ca_bundle
        )
    from hpclaunch.queue.db_session import DatabaseSession

    return DatabaseSession(url, wait=wait, log=log, stop=stop)
