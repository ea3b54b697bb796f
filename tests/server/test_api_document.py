"""The OpenAPI document describes every route the app serves, and nothing else."""

from __future__ import annotations

import re

from starlette.routing import Route

from hpclaunch.server.app import create_app
from hpclaunch.server.auth import is_dashboard
from hpclaunch.server.openapi import DOCUMENT
from hpclaunch.server.pool import Pool


def _shape(path: str) -> str:
    """A path with its parameters unnamed: ``/tasks/{task_id:int}`` and ``/tasks/{id}`` match."""
    return re.sub(r"\{[^}]*\}", "{}", path)


def test_the_document_lists_every_route(tmp_path):
    app = create_app(Pool(f"sqlite:///{tmp_path / 'q.db'}"))
    served = set()
    for route in app.routes:
        if is_dashboard(route.path):  # HTML pages for browsers (docs/dashboard.md), not the API
            continue
        assert isinstance(route, Route), route
        served |= {(m, _shape(route.path)) for m in route.methods or () if m != "HEAD"}
    described = {
        (method.upper(), _shape(path))
        for path, item in DOCUMENT["paths"].items()
        for method in item
    }
    assert served - described == set(), "served but not in hpclaunch/server/openapi.py"
    assert described - served == set(), "in the document but not served"
    # The SIMX and worker routes are among them (the seams this test guards).
    assert {("GET", "/batch/{}"), ("POST", "/batch/new"), ("POST", "/api/v1/workers")} <= served
    assert ("POST", "/api/v1/workers/{}/release-orphans") in served


def test_every_operation_says_who_may_call_it():
    """Each operation has one tag, and each tag one documented role rule."""
    tags = {op["tags"][0] for item in DOCUMENT["paths"].values() for op in item.values()}
    assert tags == {"health", "meta", "people", "simx", "workers"}
    roles = DOCUMENT["info"]["description"]
    assert "a worker token gets 403" in roles and "a user token gets 403" in roles
