"""``hpclaunch connect`` / ``disconnect``: log in to a site once, reuse it all day.

A session is an OpenSSH master connection (whatever the profile's
``ssh.transport``): ``connect`` logs in once, with any one-time-code prompt
asked by ``ssh`` on this terminal, and every later command for the site goes
through it without a prompt until it expires or ``disconnect`` ends it.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

import click

from hpclaunch.errors import UserError

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_SECONDS = 7 * 86400


def parse_duration(text: str) -> int:
    """``12h``, ``90m``, ``1d``, ``3600`` (seconds) -> seconds; at most a week."""
    match = re.fullmatch(r"\s*(\d+)\s*([smhd]?)\s*", text.lower())
    if not match:
        raise UserError(f"--for {text!r}: expected a duration like 12h, 90m or 1d")
    seconds = int(match[1]) * _UNITS[match[2] or "s"]
    if not 60 <= seconds <= MAX_SECONDS:
        raise UserError(f"--for {text!r}: a session lasts from 1 minute to 7 days")
    return seconds


def _transport_for(site: str):
    """The site's OpenSSH transport, with the profile's SSH options."""
    from hpclaunch import sites
    from hpclaunch.transport.openssh import OpenSSHTransport

    profile = sites.load_profile(site, [])
    if not profile.host:
        raise UserError(
            f"site {site} runs on this machine (no host): there is nothing to log in to"
        )
    return OpenSSHTransport(profile.host, profile.ssh)


def _when(iso: str) -> str:
    at = datetime.fromisoformat(iso)
    left = int((at - datetime.now(UTC)).total_seconds())
    local = at.astimezone().strftime("%Y-%m-%d %H:%M %Z")
    if left <= 0:
        return f"{local} (expired)"
    return f"{local} (in {left // 3600}h{left % 3600 // 60:02d}m)"


@click.command(name="connect")
@click.argument("site", required=False)
@click.option(
    "--for",
    "duration",
    default="12h",
    show_default=True,
    metavar="DURATION",
    help="How long the session lasts (e.g. 12h, 90m, 1d; at most 7d).",
)
@click.option("--list", "show", is_flag=True, help="Show open sessions and when they expire.")
@click.option("--json", "as_json", is_flag=True, help="With --list: print JSON.")
def connect(site: str | None, duration: str, show: bool, as_json: bool) -> None:
    """Log in to SITE once (one MFA prompt) and keep the login for later commands."""
    if show:
        _list(as_json)
        return
    if not site:
        raise UserError("name a site to connect to (hpclaunch connect SITE), or use --list")
    seconds = parse_duration(duration)
    transport = _transport_for(site)
    was_open = transport.session_alive()
    if not was_open:
        click.echo(f"Logging in to {site}; answer any prompt from ssh below.", err=True)
    record = transport.open_session(site, seconds)
    verb = "still connected" if was_open else "connected"
    click.echo(
        f"{verb} to {site} ({record.destination}) until {_when(record.expires)}; "
        f"later commands for {site} reuse this login. End it with: hpclaunch disconnect {site}"
    )


@click.command(name="disconnect")
@click.argument("site")
def disconnect(site: str) -> None:
    """End the session for SITE (the next command for it logs in again)."""
    if _transport_for(site).close_session():
        click.echo(f"disconnected from {site}")
    else:
        click.echo(f"no open session for {site}")


def _list(as_json: bool = False) -> None:
    from hpclaunch.transport import sessions
    from hpclaunch.transport.openssh import master_alive

    found = []
    for record in sessions.records():
        if record.expired():
            state = "expired"
        elif master_alive(sessions.session_socket(record.key)):
            state = "open"
        else:
            state = "dropped"
        found.append((record, state))
    if as_json:
        from hpclaunch.cli.output import print_json

        print_json(
            [
                {
                    "sites": list(r.sites),
                    "destination": r.destination,
                    "opened": r.opened,
                    "expires": r.expires,
                    "state": state,
                }
                for r, state in found
            ]
        )
        return
    if not found:
        click.echo("no open sessions (start one with: hpclaunch connect SITE)")
        return
    notes = {"dropped": "dropped (the next command logs in again)"}
    rows = [
        (", ".join(r.sites), r.destination, _when(r.expires), notes.get(state, state))
        for r, state in found
    ]
    header = ("SITES", "DESTINATION", "EXPIRES", "STATE")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(3)]
    for row in [header, *rows]:
        cells = zip(row[:3], widths, strict=True)
        click.echo("  ".join(cell.ljust(w) for cell, w in cells) + "  " + row[3])
