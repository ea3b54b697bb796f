"""Start the server: check the database, raise the file limit, run uvicorn."""

from __future__ import annotations

import logging
from pathlib import Path

from hpclaunch.errors import UserError
from hpclaunch.queue import db
from hpclaunch.queue.urls import redact, resolve_database_url
from hpclaunch.server.app import create_app
from hpclaunch.server.limits import raise_open_files
from hpclaunch.server.pool import Pool


def serve(
    database_url: str | None,
    *,
    host: str,
    port: int,
    tls_cert: Path | None,
    tls_key: Path | None,
    pool_size: int,
    allow_pickle: bool = False,
    access_log: bool = False,
) -> None:
    """Run until SIGINT/SIGTERM. The database is opened first, so a wrong URL is one line."""
    if (tls_cert is None) != (tls_key is None):
        raise UserError("--tls-cert and --tls-key go together: give both or neither")
    for path in (tls_cert, tls_key):
        if path is not None and not path.is_file():
            raise UserError(f"{path}: no such file")
    url = resolve_database_url(database_url)
    first = db.connect(url)  # migrates a fresh SQLite file, refuses an old schema
    import uvicorn  # after the checks: a wrong flag costs no import

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    log = logging.getLogger("hpclaunch.server")
    nofile = raise_open_files()
    scheme = "https" if tls_cert else "http"
    log.info("queue database %s; open-file limit %d; pool of %d", redact(url), nofile, pool_size)
    log.info("listening on %s://%s:%d", scheme, host, port)
    if allow_pickle:
        log.info("pickle tasks accepted: whoever may enqueue runs any Python code on workers")
    app = create_app(Pool(url, pool_size, first=first), allow_pickle=allow_pickle)
    uvicorn.run(
        app,
        host=host,
        port=port,
        ssl_certfile=str(tls_cert) if tls_cert else None,
        ssl_keyfile=str(tls_key) if tls_key else None,
        log_level="info",
        access_log=access_log,
        server_header=False,
        timeout_graceful_shutdown=10,
    )
