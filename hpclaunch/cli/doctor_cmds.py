"""``hpclaunch doctor``: one table of checks for a site, each failure with its fix."""

from __future__ import annotations

import click

from hpclaunch.cli.output import print_json, print_table
from hpclaunch.cli.sites_cmds import collect_overrides, override_options, warn_shadowing
from hpclaunch.errors import UserError


@click.command()
@click.option("--site", required=True, metavar="NAME", help="Site profile (or a .yaml path).")
@click.option(
    "--import",
    "imports",
    multiple=True,
    metavar="MODULE",
    help="A module the probe job must import.",
)
@click.option("--no-probe", is_flag=True, help="Only the checks from here; submit no job.")
@override_options
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def doctor(ctx, site, imports, no_probe, as_json, **kwargs):
    """Check a site: profile, SSH, workdir, remote hpclaunch, scheduler, queue, limits,
    database; then a tiny probe job that answers from a compute node.

    \b
      hpclaunch doctor --site frontier --import numpy
      hpclaunch doctor --site polaris --no-probe
    """
    from hpclaunch import sites as site_api
    from hpclaunch.cli.launch_cmds import _queue_and_url
    from hpclaunch.launches import doctor as doc
    from hpclaunch.transport import open_transport

    for name in imports:
        if not all(part.isidentifier() for part in name.split(".")):
            raise UserError(f"--import {name!r} is not a module name")
    profile = site_api.load_profile(site, collect_overrides(kwargs))
    warn_shadowing(site)
    conn, url = _queue_and_url(ctx)
    with open_transport(profile.host, profile.ssh) as transport:
        checks = doc.local_checks(profile, conn, transport)
    if not no_probe and all(c.ok is not False for c in checks):
        checks += doc.probe(conn, url, profile, list(imports))
    failed = [c for c in checks if c.ok is False]
    if as_json:
        print_json(
            {
                "site": profile.name,
                "ok": not failed,
                "checks": [
                    {"check": c.name, "ok": c.ok, "detail": c.detail, "fix": c.fix} for c in checks
                ],
            }
        )
    else:
        print_table(
            f"doctor: {profile.name}",
            ["check", "result", "detail", "fix"],
            [
                [c.name, {True: "ok", False: "FAIL", None: "-"}[c.ok], c.detail, c.fix]
                for c in checks
            ],
        )
    if failed:
        raise UserError(
            f"doctor: {len(failed)} check(s) failed on {profile.name}; first: {failed[0].name}: "
            f"{failed[0].detail}" + (f"; {failed[0].fix}" if failed[0].fix else ""),
            exit_code=1,
        )
