"""The smaller ones: each a thing a user would notice."""

from __future__ import annotations

import json
import time

import pytest
from hardening_helpers import one_error_line, run_main


def test_a_misspelt_option_is_not_enqueued_as_the_command(queue_url):
    line = one_error_line(run_main("enqueue", "--prioritty", "5", "echo", "hi"))
    assert "--prioritty" in line and "--" in line
    assert json.loads(run_main("tasks", "--json").out) == []
    ran = run_main("enqueue", "--", "echo", "--prioritty")  # after the program: its argument
    assert ran.code == 0, ran


def test_cancel_says_why_a_task_was_not_canceled(queue_url):
    assert run_main("enqueue", "--", "true").code == 0
    assert run_main("tasks", "cancel", "1").code == 0
    ran = run_main("tasks", "cancel", "1")
    assert ran.code == 0
    assert "0 task(s) canceled" in ran.out
    assert "already canceled" in ran.err


def test_escape_sequences_in_task_names_are_shown_not_sent(queue_url):
    name = "evil\x1b]0;pwned\x07\x1b[2J[red]x[/red]"
    assert run_main("enqueue", "--name", name, "--", "true").code == 0
    for argv in (["tasks"], ["tasks", "show", "1"]):
        ran = run_main(*argv)
        assert ran.code == 0, ran
        assert "\x1b" not in ran.out and "\x07" not in ran.out
        assert "\\x1b" in ran.out
    assert "[red]x[/red]" in run_main("tasks").out  # rich markup printed literally


def test_escape_sequences_in_task_output_are_shown_not_sent(queue_url):
    assert run_main("enqueue", "--", "printf", "a\\033]0;pwned\\007b").code == 0
    assert run_main("worker", "--singleflow").code == 0
    ran = run_main("tasks", "show", "1")
    assert "\x1b" not in ran.out and "\\x1b" in ran.out


def test_batches_table_has_one_canceled_status_column(queue_url, tmp_path):
    batch = tmp_path / "b.yaml"
    batch.write_text("name: b\ncommand: 'true'\nn_runs: 2\n")
    assert run_main("enqueue", "-f", str(batch)).code == 0
    header = next(line for line in run_main("batches").out.splitlines() if "name" in line)
    assert header.count("canceled") == 2 and "batch canceled" in header


def test_json_never_prints_infinity(queue_url):
    from hpclaunch.cli.output import json_safe

    assert json.dumps(json_safe({"a": float("inf"), "b": [float("nan")]}), allow_nan=False)
    ran = run_main("stats", "--json")
    assert "Infinity" not in ran.out and "NaN" not in ran.out


def test_render_dash_o_dash_writes_to_stdout(tmp_path, monkeypatch):
    monkeypatch.setenv("HPCLAUNCH_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    ran = run_main("render", "--site", "tests-slurm", "-n", "1", "-o", "-")
    assert ran.code == 0, ran
    assert ran.out.startswith("#!/bin/bash")
    assert not (tmp_path / "-").exists()


@pytest.mark.parametrize("value", ["scatter,walltime=99:00:00", "a,b"])
def test_place_cannot_smuggle_another_resource(tmp_path, monkeypatch, value):
    monkeypatch.setenv("HPCLAUNCH_HOME", str(tmp_path / "home"))
    ran = run_main("render", "--site", "derecho", "-n", "1", "--set", f"resources.place={value}")
    assert "place" in one_error_line(ran)


def test_an_unknown_host_fails_at_once(tmp_path, monkeypatch):
    monkeypatch.setenv("HPCLAUNCH_HOME", str(tmp_path / "home"))
    start = time.monotonic()
    ran = run_main("--database", "postgresql://u@nosuch.invalid/db", "tasks")
    assert "nosuch.invalid" in one_error_line(ran)
    assert time.monotonic() - start < 8
