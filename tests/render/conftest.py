"""Shared fixtures: an isolated HPCLAUNCH_HOME and project folder per test."""

from __future__ import annotations

import pytest


@pytest.fixture
def home(tmp_path, monkeypatch):
    """An empty ~/.hpclaunch, and a project folder as the current directory."""
    hp = tmp_path / "hpclaunch-home"
    (hp / "sites").mkdir(parents=True)
    project = tmp_path / "project"
    project.mkdir()
    monkeypatch.setenv("HPCLAUNCH_HOME", str(hp))
    monkeypatch.chdir(project)
    return hp
