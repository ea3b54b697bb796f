"""Small helpers for the render tests."""

from __future__ import annotations

from hpclaunch.render import plan_launch
from hpclaunch.sites import flag_overrides, load_profile, parse_set


def plan(site="tests-slurm", workers=1, *, sets=(), launch_id="L1", tags=None, **flags):
    profile = load_profile(site, flag_overrides(**flags) + [parse_set(s) for s in sets])
    return plan_launch(profile, workers, launch_id, tags=tags)


def directives(script: str, prefix: str) -> list[str]:
    return [line[len(prefix) :].strip() for line in script.splitlines() if line.startswith(prefix)]


def first_command_line(script: str) -> int:
    for number, line in enumerate(script.splitlines()):
        if number and line.strip() and not line.lstrip().startswith("#"):
            return number
    return len(script.splitlines())
