"""HTML from templates: the Jinja environment, its filters, and ``page()`` (pure).

Autoescaping is on for every template; SVG from ``charts`` is marked safe by
the filters that draw it, since those functions escape every text they embed.
"""

from __future__ import annotations

import json
import time
from functools import lru_cache
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from hpclaunch.server.ui import charts


def age(seconds: float | None) -> str:
    """``42 s``, ``5 min``, ``3.2 h``, ``2.0 d``: how long ago, for people."""
    if seconds is None:
        return "–"
    seconds = max(seconds, 0.0)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def when(epoch: float | None) -> str:
    if epoch is None:
        return "–"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(epoch)) + " UTC"


def duration(start: float | None, end: float | None) -> str:
    if start is None or end is None:
        return "–"
    return charts._seconds(max(end - start, 0.0))


def pretty(text: str | None) -> str:
    """JSON text indented for reading (as is when it is not JSON)."""
    if text is None:
        return ""
    try:
        return json.dumps(json.loads(text), indent=2, sort_keys=True, ensure_ascii=False)
    except ValueError:
        return text


@lru_cache(maxsize=1)
def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("hpclaunch.server.ui", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        age=age,
        when=when,
        pretty=pretty,
        progress_svg=lambda counts: Markup(charts.progress(counts)),
    )
    env.globals.update(duration=duration, STACK=charts.STACK)
    return env


def page(template: str, **context: Any) -> str:
    """Render one page of the dashboard."""
    return environment().get_template(template).render(**context)
