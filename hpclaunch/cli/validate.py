"""Click types for values checked at the command line, by the rules in ``hpclaunch.validate``.

A bad value is a usage error (one line, exit 2) before anything is stored or started.
"""

from __future__ import annotations

from typing import Any

import click

from hpclaunch import validate
from hpclaunch.errors import UserError


class Seconds(click.ParamType):
    """A finite number of seconds in [minimum, MAX_SECONDS] (no inf, nan or 1e12)."""

    name = "seconds"

    def __init__(self, minimum: float = 0.0, *, allow_zero: bool = True) -> None:
        self.minimum = minimum
        self.allow_zero = allow_zero

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, float):
            number: object = value
        else:
            try:
                number = float(str(value).strip())
            except ValueError:
                self.fail(f"{value!r} is not a number of seconds", param, ctx)
        try:
            return validate.check_seconds(
                number, name="the value", minimum=self.minimum, allow_zero=self.allow_zero
            )
        except UserError as exc:
            self.fail(str(exc).replace("the value ", ""), param, ctx)


class Duration(Seconds):
    """Seconds, or a number with a unit: ``20s``, ``15m``, ``2h``, ``1d``."""

    name = "duration"
    UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        text = str(value).strip().lower()
        if text and text[-1] in self.UNITS:
            try:
                value = float(text[:-1]) * self.UNITS[text[-1]]
            except ValueError:
                self.fail(f"{text!r} is not a duration such as 20s, 15m or 2h", param, ctx)
        return super().convert(value, param, ctx)


ROW_ID = click.IntRange(1, validate.ID_MAX)
PRIORITY = click.IntRange(-validate.INT32_MAX, validate.INT32_MAX)
ATTEMPTS = click.IntRange(1, validate.INT32_MAX)
COUNT = click.IntRange(1, validate.INT32_MAX)


def tags_option(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> tuple:
    """Check ``-t`` tags by the one tag rule (workers would refuse them later)."""
    try:
        validate.check_tags(value)
    except UserError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from None
    return value


def worker_tags_option(ctx: click.Context, param: click.Parameter, value: tuple) -> tuple:
    """Like :func:`tags_option` (but a worker may take a reserved tag: the doctor's
    probe worker does), plus the limit of tags per worker."""
    try:
        validate.check_tags(value, worker=True)
    except UserError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from None
    return value
