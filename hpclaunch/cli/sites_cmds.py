"""``hpclaunch sites``, ``hpclaunch sites show`` and ``hpclaunch render``: parsing and printing."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import click

from hpclaunch.cli.validate import COUNT, worker_tags_option
from hpclaunch.errors import UserError

_OVERRIDE_FLAGS = [
    ("--partition", "partition", "Partition (SLURM -p) or queue (PBS -q)."),
    ("--account", "account", "Account / allocation (-A)."),
    ("--qos", "qos", "SLURM quality of service."),
    ("--walltime", "walltime", "Walltime, HH:MM:SS or D-HH:MM:SS."),
    ("--cpus", "cpus", "CPUs per worker."),
    ("--mem", "mem", "Memory per job, e.g. 4G."),
    ("--gpus", "gpus", "GPUs per job (per node)."),
    ("--workers-per-job", "workers_per_job", "Workers side by side in each job/element."),
]


def override_options(func: Any) -> Any:
    """The flags that override profile values (shared with ``submit``)."""
    func = click.option(
        "--set",
        "sets",
        multiple=True,
        metavar="KEY.PATH=VALUE",
        help="Override any profile value, e.g. --set arrays.max_concurrent=50.",
    )(func)
    for flag, dest, text in reversed(_OVERRIDE_FLAGS):
        func = click.option(flag, dest, default=None, metavar="VALUE", help=text)(func)
    return func


def collect_overrides(kwargs: dict[str, Any]) -> list:
    """Pop the override flags from click's kwargs into ``Override`` objects."""
    from hpclaunch import sites as site_api

    flags = {dest: kwargs.pop(dest, None) for _, dest, _ in _OVERRIDE_FLAGS}
    out = site_api.flag_overrides(**flags)
    out += [site_api.parse_set(expr) for expr in kwargs.pop("sets", ())]
    return out


def warn_shadowing(site: str) -> str | None:
    """Say on stderr when a profile in ./site-configs replaces one of the same name."""
    from hpclaunch.sites.loader import shadowing

    note = shadowing(site)
    if note:
        click.echo(f"warning: {note}", err=True)
    return note


def _console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=False)


# --------------------------------------------------------------------------- sites
@click.group(name="sites", invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_context
def sites(ctx: click.Context, as_json: bool) -> None:
    """List site profiles (name, scheduler, host, description)."""
    if ctx.invoked_subcommand is not None:
        return
    from hpclaunch import sites as site_api
    from hpclaunch.sites.loader import display

    rows = []
    for name, path in site_api.available().items():
        row: dict[str, Any] = {"name": name, "file": display(path)}
        try:
            profile = site_api.load_profile(name)
        except UserError as exc:
            row.update(scheduler=None, host=None, description="", error=str(exc))
        else:
            row.update(
                scheduler=profile.scheduler,
                host=profile.host,
                description=profile.description,
                error=None,
            )
        rows.append(row)
    if as_json:
        from hpclaunch.cli.output import print_json

        print_json(rows)
        return
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    for column in ("name", "scheduler", "host", "description"):
        table.add_column(column, overflow="fold")
    for row in rows:
        if row["error"]:
            table.add_row(row["name"], "[red]invalid[/red]", "", f"[red]{_esc(row['error'])}[/red]")
        else:
            table.add_row(
                row["name"],
                row["scheduler"],
                _esc(row["host"] or "(this machine)"),
                _esc(row["description"]),
            )
    console = _console()
    console.print(table)
    if not rows:
        console.print("no site profiles found")


def _esc(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def _flatten(data: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(data, dict) and data:
        out = []
        for key, value in data.items():
            out += _flatten(value, f"{prefix}.{key}" if prefix else key)
        return out
    return [(prefix, data)]


@sites.command("show")
@click.argument("name")
@override_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def show(name: str, as_json: bool, **kwargs: Any) -> None:
    """Show the resolved profile NAME and where each value came from."""
    from hpclaunch import sites as site_api

    profile = site_api.load_profile(name, collect_overrides(kwargs))
    shadows = warn_shadowing(name)
    data = profile.to_dict()
    meta = {k: data.pop(k) for k in ("name", "path", "chain")}
    meta["shadowing"] = shadows
    rows = [(key, value, _source(profile, key)) for key, value in _flatten(data)]
    if as_json:
        from hpclaunch.cli.output import print_json

        print_json({**meta, "profile": data, "sources": {k: s for k, _, s in rows}})
        return
    from rich.table import Table

    console = _console()
    console.print(f"[bold]{_esc(profile.name)}[/bold]: {_esc(profile.description)}")
    console.print(f"from {_esc(' <- '.join(profile.chain))}")
    table = Table(box=None, pad_edge=False)
    table.add_column("key", no_wrap=True)
    table.add_column("value", overflow="fold")
    table.add_column("from", no_wrap=True)
    for key, value, source in rows:
        shown = json.dumps(value) if not isinstance(value, str) else value
        table.add_row(key, _esc(shown), _esc(source))
    console.print(table)


def _source(profile: Any, key: str) -> str:
    if key in profile.provenance:
        return profile.provenance[key]
    if key.startswith("database."):
        return next(
            (v for k, v in profile.provenance.items() if k.startswith("database.")), "default"
        )
    return "default"


# --------------------------------------------------------------------------- render
@click.command("render")
@click.option("--site", required=True, metavar="NAME", help="Site profile (or a .yaml path).")
@click.option("--workers", "-n", required=True, type=COUNT, help="Number of workers.")
@override_options
@click.option(
    "-t",
    "--tag",
    "tags",
    multiple=True,
    metavar="TAG",
    callback=worker_tags_option,
    help="Worker tags (replace the profile's).",
)
@click.option("--launch-id", default=None, help="Launch ID (default: derived from the inputs).")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the script to FILE (one-script plans).",
)
@click.option(
    "--out-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Write every script into DIR as <job name>.sh.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the plan (with scripts) as JSON.")
def render(
    site: str,
    workers: int,
    tags: tuple[str, ...],
    launch_id: str | None,
    output: Path | None,
    out_dir: Path | None,
    as_json: bool,
    **kwargs: Any,
) -> None:
    """Write the batch scripts for a site without submitting (no SSH, no database)."""
    from hpclaunch import sites as site_api
    from hpclaunch.render import plan_launch

    if output is not None and out_dir is not None:
        raise UserError("give either -o FILE or --out-dir DIR, not both")
    if output is not None and str(output) == "-":
        output = None  # -o -: the script goes to stdout, as without -o
    profile = site_api.load_profile(site, collect_overrides(kwargs))
    warn_shadowing(site)
    plan = plan_launch(profile, workers, launch_id, tags=list(tags) or None)
    if output is not None and len(plan.chunks) > 1:
        raise UserError(
            f"the plan has {len(plan.chunks)} scripts; use --out-dir DIR to write them all"
        )
    written: list[Path] = []
    if output is not None:
        written = _write_all({output: plan.chunks[0].script})
    elif out_dir is not None:
        written = _write_all({out_dir / c.filename: c.script for c in plan.chunks})
    if as_json:
        data = plan.to_dict()
        data["written"] = [str(p) for p in written]
        from hpclaunch.cli.output import print_json

        print_json(data)
        return
    _print_plan(plan, written)
    if not written:
        if len(plan.chunks) == 1:
            click.echo(plan.chunks[0].script, nl=False)
        else:
            for chunk in plan.chunks:
                click.echo(f"# ==> {chunk.filename} <==")
                click.echo(chunk.script, nl=False)


def _print_plan(plan: Any, written: list[Path]) -> None:
    from rich.table import Table

    console = _console(stderr=True)
    console.print(
        f"site {_esc(plan.site)} ({plan.scheduler}), launch {_esc(plan.launch_id)}: "
        f"{plan.workers} worker(s) in {len(plan.chunks)} script(s); submit from "
        f"{_esc(plan.workdir)}, logs in {_esc(plan.log_dir)}"
    )
    table = Table(box=None, pad_edge=False)
    for column in ("job name", "kind", "elements", "workers/element", "workers"):
        table.add_column(column)
    for c in plan.chunks:
        table.add_row(
            c.job_name,
            "array" if c.array else "job",
            str(c.elements),
            str(c.workers_per_element),
            str(c.workers),
        )
    console.print(table)
    for warning in plan.warnings:
        console.print(f"[yellow]warning:[/yellow] {_esc(warning)}")
    for path in written:
        console.print(f"wrote {_esc(str(path))}")


def _write_all(files: dict[Path, str]) -> list[Path]:
    """Write every file or none: temporary files first, then renames."""
    staged: list[tuple[str, Path]] = []
    try:
        for path, text in files.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
            staged.append((tmp, path))
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
                handle.write(text)
            os.chmod(tmp, 0o755)
        for tmp, path in staged:
            os.replace(tmp, path)
    except OSError as exc:
        for tmp, _ in staged:
            Path(tmp).unlink(missing_ok=True)
        raise UserError(f"cannot write {exc.filename}: {exc.strerror}") from None
    return [path for _, path in staged]
