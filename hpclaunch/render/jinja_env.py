"""The Jinja environment for batch-script templates.

StrictUndefined (a typo in a template is an error, not an empty string),
``keep_trailing_newline``, block trimming so ``{% if %}`` lines vanish, and a
``finalize`` hook that refuses any value holding a line break or other control
character: whatever a template does, a value cannot add a line to the script.
"""

from __future__ import annotations

import functools
from pathlib import Path

import jinja2
import jinja2.sandbox

from hpclaunch import paths
from hpclaunch.errors import UserError
from hpclaunch.sites import checks


class Line(str):
    """Text produced by :func:`opt`: a whole, already checked, directive line."""


def _checked(value: object) -> str:
    text = str(value)
    bad = checks.control_char(text, allow_tab=True)
    if bad:
        raise UserError(
            f"a value for the batch script contains the control character {bad}: "
            f"{checks.show(text)}; remove it"
        )
    return text


def _finalize(value: object) -> object:
    if isinstance(value, Line):
        return value
    if value is None:
        raise UserError("a template printed an unset value; use opt() for optional directives")
    return _checked(value)


def opt(prefix: str, value: object) -> Line:
    """``prefix + value`` and a newline, or nothing when ``value`` is unset/empty/zero/false.

    Use as ``{{ opt("#SBATCH --account=", r.account) -}}``: the helper brings
    its own newline, ``-}}`` eats the template's.
    """
    if value is None or value == "" or value is False or value == 0:
        return Line("")
    return Line(f"{_checked(prefix)}{_checked(value)}\n")


def part(prefix: str, value: object) -> str:
    """``prefix + value`` inside a line (e.g. ``:mem=4gb``), or nothing when unset."""
    if value is None or value == "" or value is False or value == 0:
        return ""
    return _checked(prefix) + _checked(value)


def shvar(name: str) -> str:
    """``"${NAME:-}"``: a variable's value, empty (not an error) when unset."""
    if not checks.ENV_NAME.fullmatch(name):
        raise UserError(f"{checks.show(name)} is not a variable name")
    return f'"${{{name}:-}}"'


def template_dirs() -> tuple[Path, ...]:
    """Template search path: ``~/.hpclaunch/templates/``, then the shipped ``templates/``."""
    return (paths.home() / "templates", paths.shipped_dir("templates"))


@functools.lru_cache(maxsize=16)
def environment(dirs: tuple[Path, ...]) -> jinja2.Environment:
    # The sandbox: a profile's own template cannot reach Python (os.system via
    # __globals__, __subclasses__, ...); a template that tries fails to render.
    env = jinja2.sandbox.SandboxedEnvironment(
        loader=jinja2.FileSystemLoader([str(d) for d in dirs if d.is_dir()]),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,  # noqa: S701 - shell scripts, not HTML; values are checked instead
        finalize=_finalize,
    )
    env.globals.update(opt=opt, part=part, shvar=shvar)
    return env


def get_template(name: str, extra_dir: Path | None = None) -> jinja2.Template:
    """Find ``name`` on the template search path (``extra_dir`` first, if given)."""
    dirs = ((extra_dir,) if extra_dir else ()) + template_dirs()
    try:
        return environment(dirs).get_template(name)
    except jinja2.TemplateNotFound as exc:
        where = ", ".join(str(d) for d in dirs)
        raise UserError(
            f"template {exc.name!r} not found (looked in {where}); check the "
            "profile's 'template:' or add the file"
        ) from None
    except jinja2.TemplateSyntaxError as exc:
        raise UserError(
            f"{exc.filename or name}:{exc.lineno}: template error: {exc.message}"
        ) from None
