"""The dashboard under ``/ui/``: pages rendered on the server, its own cookie sessions.

One job per module: ``routes`` (handlers, login, actions), ``session`` (signed
cookies and CSRF tokens, pure), ``cache`` (page data shared by viewers),
``charts`` (SVG, pure), ``render`` (Jinja). Reads are the named operations of
``queue.dashboard`` and ``queue.dashboard_infra``.
"""

from hpclaunch.server.ui.routes import ui_routes

__all__ = ["ui_routes"]
