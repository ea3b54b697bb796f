"""The ``hpclaunch`` command line: a lazy click group.

Subcommands live in their own modules and are imported only when named, so
``hpclaunch worker`` (on the critical path of every array element) never pays
for rich, Jinja or paramiko.
"""

from __future__ import annotations

import importlib
import sys

import click

from hpclaunch.errors import UserError

# command name -> "module:attribute"; each area owns its module.
COMMANDS: dict[str, str] = {
    # the queue
    "enqueue": "hpclaunch.cli.queue_cmds:enqueue",
    "tasks": "hpclaunch.cli.queue_cmds:tasks",
    "batches": "hpclaunch.cli.queue_cmds:batches",
    "workers": "hpclaunch.cli.queue_cmds:workers",
    "stats": "hpclaunch.cli.queue_cmds:stats",
    "db": "hpclaunch.cli.queue_cmds:db",
    "results": "hpclaunch.cli.results_cmds:results",
    "purge": "hpclaunch.cli.results_cmds:purge",
    "worker": "hpclaunch.cli.worker_cmds:worker",
    "cluster": "hpclaunch.cli.worker_cmds:cluster",
    # sites and scripts
    "sites": "hpclaunch.cli.sites_cmds:sites",
    "render": "hpclaunch.cli.sites_cmds:render",
    # launches
    "submit": "hpclaunch.cli.launch_cmds:submit",
    "status": "hpclaunch.cli.launch_cmds:status",
    "cancel": "hpclaunch.cli.launch_cmds:cancel",
    "logs": "hpclaunch.cli.launch_cmds:logs",
    "launches": "hpclaunch.cli.launch_cmds:launches",
    "reconcile": "hpclaunch.cli.launch_cmds:reconcile",
    "lost": "hpclaunch.cli.fault_cmds:lost",
    "doctor": "hpclaunch.cli.doctor_cmds:doctor",
    "connect": "hpclaunch.cli.session_cmds:connect",
    "disconnect": "hpclaunch.cli.session_cmds:disconnect",
    # the HTTP server
    "serve": "hpclaunch.cli.serve_cmds:serve",
    "user": "hpclaunch.cli.account_cmds:user",
    "token": "hpclaunch.cli.account_cmds:token",
}

# The commands that reach the queue through `hpclaunch serve` with --server / HPCLAUNCH_SERVER.
SERVER_COMMANDS = frozenset({"enqueue", "tasks", "batches", "workers", "stats"})

SHORT_HELP: dict[str, str] = {
    "enqueue": "Put tasks on the queue (a command, a call, or a batch file).",
    "tasks": "List, inspect, retry, cancel and reap tasks.",
    "batches": "List batches of tasks (wait: until a batch is done).",
    "results": "A batch's parameters and outcomes, one row per task (csv, json, jsonl).",
    "purge": "Delete old finished tasks, their attempts and local logs.",
    "workers": "List workers (with --all, even long-gone ones).",
    "stats": "Task counts per status and tag.",
    "db": "Create or upgrade the queue database.",
    "worker": "Run a worker that pulls tasks from the queue.",
    "cluster": "Run N local workers under one supervisor.",
    "sites": "List site profiles, or show one resolved.",
    "render": "Write the batch scripts for a site without submitting.",
    "submit": "Render, upload and submit worker job arrays to a site.",
    "status": "Queue and scheduler state of launches, in one view.",
    "cancel": "Cancel a launch and return its tasks to the queue.",
    "logs": "Show an array element's stdout/stderr.",
    "launches": "List what was submitted, where, with which job IDs.",
    "reconcile": "Turn scheduler verdicts into task outcomes (status does it too).",
    "lost": "Tasks whose workers are gone.",
    "doctor": "Check a site end to end: profile, SSH, scheduler, database, a probe job.",
    "connect": "Log in to a site once and reuse the login (--list: sessions).",
    "disconnect": "End a site's session.",
    "serve": "Serve the queue over HTTP (an ASGI server).",
    "user": "Add the server's users (each in one group).",
    "token": "Create, list and revoke the server's API tokens.",
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                return None  # not built yet
            raise
        return getattr(module, attr, None)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Listing help must not import every subcommand module.
        rows = [(name, SHORT_HELP.get(name, "")) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--database",
    "database_url",
    metavar="URL",
    default=None,
    help="Queue database URL (overrides HPCLAUNCH_DATABASE_URL and ~/.hpclaunch/database.yaml).",
)
@click.option(
    "--server",
    metavar="URL",
    default=None,
    help="An `hpclaunch serve` URL for the queue commands (overrides HPCLAUNCH_SERVER); "
    "token from HPCLAUNCH_TOKEN or HPCLAUNCH_TOKEN_FILE.",
)
@click.option(
    "--ca-bundle",
    metavar="FILE",
    default=None,
    help="CA certificates to verify the server (default: HPCLAUNCH_CA_BUNDLE, else the system's).",
)
@click.option(
    "--insecure-http", is_flag=True, help="Allow plain http:// to a server on another host."
)
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
@click.version_option(package_name="hpclaunch", prog_name="hpclaunch")
@click.pass_context
def cli(
    ctx: click.Context,
    database_url: str | None,
    server: str | None,
    ca_bundle: str | None,
    insecure_http: bool,
    debug: bool,
) -> None:
    """hpclaunch: feed HPC clusters from a database task queue."""
    import os

    ctx.ensure_object(dict)
    if server and database_url:
        raise UserError("give --server or --database, not both")
    if server and ctx.invoked_subcommand not in SERVER_COMMANDS:
        raise UserError(
            f"`{ctx.invoked_subcommand}` does not work through --server; "
            f"these do: {', '.join(sorted(SERVER_COMMANDS))}"
        )
    if not server and database_url is None and ctx.invoked_subcommand in SERVER_COMMANDS:
        server = os.environ.get("HPCLAUNCH_SERVER") or None
    ctx.obj["database_url"] = database_url
    ctx.obj["server"] = server
    ctx.obj["ca_bundle"] = ca_bundle
    ctx.obj["insecure_http"] = insecure_http
    ctx.obj["debug"] = debug


def _describe(exc: BaseException) -> str | None:
    """A one-line message for failures that are the user's to fix, else None."""
    if isinstance(exc, UserError):
        return str(exc)
    module = type(exc).__module__
    if module.startswith(("psycopg", "sqlite3")):
        from hpclaunch.queue.db import describe_db_error

        described = describe_db_error(exc)
        if described is not None:
            return described
    else:
        orig = getattr(exc, "orig", None)  # a DB-API error wrapped (SQLAlchemy, in migrations)
        if not isinstance(orig, BaseException):
            return None
        exc, module = orig, type(orig).__module__
    if module == "sqlite3" or module.startswith("psycopg"):
        # A raw DB-API error (the worker's path, and a file that is not a database).
        lines = str(exc).strip().splitlines()
        first = lines[0] if lines else type(exc).__name__
        return (
            f"database error: {first}; check the queue database "
            "(`hpclaunch db current` shows which one is used)"
        )
    return None


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    try:
        code = cli.main(args=args, prog_name="hpclaunch", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        from hpclaunch.queue.urls import redact

        usage = " ".join(exc.format_message().split())
        ctx = getattr(exc, "ctx", None)
        if isinstance(exc, click.UsageError) and ctx is not None:
            usage += f" (see `{ctx.command_path} --help`)"
        click.echo(f"error: {redact(usage)}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - the one place errors meet the user
        message = _describe(exc)
        if message is None or debug:
            raise
        from hpclaunch.queue.urls import redact

        # One line, never a secret: a driver's message may quote the URL it was given.
        click.echo(f"error: {redact(' '.join(message.split()))}", err=True)
        sys.exit(exc.exit_code if isinstance(exc, UserError) else 4)
    sys.exit(code if isinstance(code, int) else 0)
