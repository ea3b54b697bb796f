"""``hpclaunch serve``: run the queue's HTTP server (the work is in ``hpclaunch.server``)."""

from __future__ import annotations

from pathlib import Path

import click

from hpclaunch.server.pool import DEFAULT_SIZE, MAX_SIZE


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", type=click.IntRange(1, 65535), default=8097, show_default=True, help="TCP port."
)
@click.option(
    "--tls-cert",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="PEM certificate (chain) to serve HTTPS; needs --tls-key.",
)
@click.option(
    "--tls-key",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="PEM private key for --tls-cert.",
)
@click.option(
    "--pool-size",
    type=click.IntRange(1, MAX_SIZE),
    default=DEFAULT_SIZE,
    show_default=True,
    help="Database connections the server holds at most.",
)
@click.option(
    "--allow-pickle",
    is_flag=True,
    help="Accept pickle tasks (run_cloud) over HTTP; refused by default.",
)
@click.option(
    "--access-log",
    is_flag=True,
    help="Log one line per request (off by default: a busy worker fleet makes thousands a second).",
)
@click.pass_context
def serve(
    ctx: click.Context,
    host: str,
    port: int,
    tls_cert: Path | None,
    tls_key: Path | None,
    pool_size: int,
    allow_pickle: bool,
    access_log: bool,
) -> None:
    """Serve the queue over HTTP (the API under /api/v1/, GET /healthz) from this database."""
    from hpclaunch.server.run import serve as run_server

    run_server(
        ctx.obj["database_url"],
        host=host,
        port=port,
        tls_cert=tls_cert,
        tls_key=tls_key,
        pool_size=pool_size,
        allow_pickle=allow_pickle,
        access_log=access_log,
    )
