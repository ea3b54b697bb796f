"""``hpclaunch user`` and ``hpclaunch token``: accounts for ``hpclaunch serve``.

These run where the database is: whoever can open it directly is its administrator.
"""

from __future__ import annotations

import click

from hpclaunch.cli.output import emit, fmt_time, print_json, print_table
from hpclaunch.cli.validate import ROW_ID


def _run(ctx: click.Context, fn, *args, **kwargs):
    from hpclaunch.queue import db

    return db.run(ctx.obj["database_url"], fn, *args, **kwargs)


@click.group()
def user() -> None:
    """Manage the server's users (each belongs to one group)."""


@user.command("add")
@click.argument("name")
@click.option("--group", "group", required=True, help="The user's group.")
@click.option("--admin", is_flag=True, help="An administrator (may hold an admin token).")
@click.pass_context
def user_add(ctx: click.Context, name: str, group: str, admin: bool) -> None:
    """Create user NAME in a group."""
    from hpclaunch.queue import accounts

    _run(ctx, accounts.add_user, name, group, admin=admin)
    click.echo(f"user {name} added to group {group}" + (" (admin)" if admin else ""))


@click.group()
def token() -> None:
    """Create, list and revoke API tokens."""


@token.command("create")
@click.option("--user", "user_name", required=True, help="Whose token.")
@click.option("--role", type=click.Choice(["user", "worker", "admin"]), required=True)
@click.option(
    "--expires",
    type=click.FloatRange(0, 3650, min_open=True),
    default=None,
    metavar="DAYS",
    help="Valid for DAYS days (default: until revoked).",
)
@click.option("--share-group", is_flag=True, help="A worker token that claims its group's tasks.")
@click.option("--json", "as_json", is_flag=True, help='Print {"id": ..., "token": ...}.')
@click.pass_context
def token_create(
    ctx: click.Context,
    user_name: str,
    role: str,
    expires: float | None,
    share_group: bool,
    as_json: bool,
) -> None:
    """Create a token; it is printed once and only its hash is kept."""
    from hpclaunch.queue import accounts

    token_id, secret = _run(
        ctx, accounts.create_token, user_name, role, expires_days=expires, share_group=share_group
    )
    if as_json:
        print_json({"id": token_id, "token": secret})
        return
    click.echo(secret)
    click.echo(f"token {token_id} for {user_name} ({role}); it is shown only now", err=True)


@token.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def token_list(ctx: click.Context, as_json: bool) -> None:
    """List tokens (never their secrets)."""
    from hpclaunch.queue import accounts

    rows = _run(ctx, accounts.list_tokens)
    for row in rows:
        row["share_group"] = bool(row["share_group"])

    def table() -> None:
        print_table(
            "tokens",
            ["id", "user", "group", "role", "share group", "created", "expires", "revoked"],
            [
                [
                    r["id"],
                    r["user"],
                    r["group_name"],
                    r["role"],
                    "yes" if r["share_group"] else "",
                    fmt_time(r["created_at"]),
                    fmt_time(r["expires_at"]) if r["expires_at"] else "never",
                    fmt_time(r["revoked_at"]) if r["revoked_at"] else "",
                ]
                for r in rows
            ],
            empty="no tokens",
        )

    emit(as_json, rows, table)


@token.command("revoke")
@click.argument("token_id", type=ROW_ID)
@click.pass_context
def token_revoke(ctx: click.Context, token_id: int) -> None:
    """Revoke token TOKEN_ID for good."""
    from hpclaunch.queue import accounts

    _run(ctx, accounts.revoke_token, token_id)
    click.echo(f"token {token_id} revoked")
