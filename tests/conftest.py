"""Suite-wide pytest setup: the real test environment's fixtures, and a check
that the suite exercises the installed package rather than the source tree."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest_plugins = ["testenv_fixtures", "queue_fixtures"]


def pytest_report_header(config):
    import hpclaunch

    return f"hpclaunch imported from {Path(hpclaunch.__file__).parent}"


def pytest_sessionstart(session):
    expected = os.environ.get("HPCLAUNCH_TEST_PACKAGE_DIR")
    if not expected:
        return
    import hpclaunch

    actual = Path(hpclaunch.__file__).resolve().parent
    if actual != Path(expected).resolve():
        pytest.exit(
            f"hpclaunch was imported from {actual}, not the installed {expected}: "
            "the source tree shadows the package (is there a tests/__init__.py?)",
            returncode=3,
        )
