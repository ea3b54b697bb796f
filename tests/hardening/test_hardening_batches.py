"""Batch files and profiles: bounded YAML, and parameters that stay one shell word."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hardening_helpers import one_error_line, run_main

from hpclaunch.errors import UserError
from hpclaunch.queue.batches import parse_batch

BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
    for p, c in zip("abcdefgh", "bcdefghi", strict=True)
)


def _tasks() -> list[dict]:
    return json.loads(run_main("tasks", "--json").out)


def test_an_alias_bomb_under_an_unknown_key_is_refused_at_once(queue_url, tmp_path):
    batch = tmp_path / "bomb.yaml"
    batch.write_text(BOMB + "name: x\ncommand: echo\n")
    assert len(batch.read_bytes()) < 600
    assert "aliases" in one_error_line(run_main("enqueue", "-f", str(batch)))
    assert _tasks() == []


def test_an_alias_bomb_in_a_profile_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("HPCLAUNCH_HOME", str(tmp_path / "home"))
    site = tmp_path / "bomb.yaml"
    site.write_text("scheduler: slurm\n" + BOMB)
    assert "aliases" in one_error_line(run_main("render", "--site", str(site), "-n", "1"))


@pytest.mark.parametrize(
    "text, words",
    [
        ('name: x\ncommand: "{run:>100000000}"\n', "width"),
        ('name: x\ncommand: "echo {run}"\nn_runs: 1000000\nparams: {}\n', "not both"),
        ("name: x\nname: y\ncommand: echo\n", "twice"),
        ("base: {name: x}\n<<: {command: echo}\n", "merge"),
        ('name: x\ncommand: "{run.nope}"\n', "not allowed"),
        ('name: x\ncommand: "{run[0]}"\n', "not allowed"),
        ('name: x\ncommand: "{a.__class__}"\nparams: {a: [1]}\n', "not allowed"),
        ('name: x\ncommand: "{run:Z}"\n', "format code"),
    ],
)
def test_batch_files_refuse_with_one_line_and_store_nothing(queue_url, tmp_path, text, words):
    batch = tmp_path / "b.yaml"
    batch.write_text(text)
    assert words in one_error_line(run_main("enqueue", "-f", str(batch)))
    assert _tasks() == []


def test_a_batch_whose_payloads_add_up_too_large_is_refused():
    text = 'name: x\ncommand: "echo {run:>100000}"\nn_runs: 1000\n'
    with pytest.raises(UserError, match="MiB"):
        parse_batch(text)


@pytest.mark.parametrize(
    "data", [b"\xff\xfe\x00b\x00", b"name: x\ncommand: \xe9cho\n", b"\x00\x01"]
)
def test_binary_and_non_utf8_batch_files_are_one_line(queue_url, tmp_path, data):
    batch = tmp_path / "b.yaml"
    batch.write_bytes(data)
    one_error_line(run_main("enqueue", "-f", str(batch)))
    assert _tasks() == []


def test_parameter_values_are_one_shell_word_and_raw_is_explicit(queue_url, tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("keep me")
    out = tmp_path / "out"
    out.mkdir()
    batch = tmp_path / "b.yaml"
    batch.write_text(
        "name: quoting\n"
        f'command: "printf %s {{v}} > {out}/{{run:03d}}; '
        f'printf %s {{w!raw}} >> {out}/{{run:03d}}"\n'
        "params:\n"
        f"  v: ['x; rm -f {victim}', '$(rm -f {victim})', '`rm -f {victim}`', \"it's\"]\n"
        "  w: ['$((1+2))']\n"
    )
    ran = run_main("enqueue", "-f", str(batch))
    assert ran.code == 0, ran
    ran = run_main("worker", "--close-on-empty-queue", "--wait-timeout", "0")
    assert ran.code == 0, ran
    assert victim.read_text() == "keep me"
    got = sorted(p.read_text() for p in out.iterdir())
    assert got == sorted(
        [f"x; rm -f {victim}3", f"$(rm -f {victim})3", f"`rm -f {victim}`3", "it's3"]
    )
    assert sorted(p.name for p in out.iterdir()) == ["000", "001", "002", "003"]


def test_connection_file_not_utf8_is_one_line(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    conn = home / "database.yaml"
    conn.write_bytes(b"url: \xff\xfe\n")
    os.chmod(conn, 0o600)
    monkeypatch.setenv("HPCLAUNCH_HOME", str(home))
    monkeypatch.delenv("HPCLAUNCH_DATABASE_URL", raising=False)
    monkeypatch.delenv("HPCLAUNCH_DATABASE_FILE", raising=False)
    assert "UTF-8" in one_error_line(run_main("db", "current"))


def test_set_with_a_hash_value_is_text_not_null(tmp_path, monkeypatch):
    monkeypatch.setenv("HPCLAUNCH_HOME", str(tmp_path / "home"))
    ran = run_main("sites", "show", "tests-slurm", "--set", "resources.account=#x", "--json")
    # '#x' is not a valid account word: refused, not silently dropped to null
    assert "#x" in one_error_line(ran)


def test_profile_expansion_is_bounded_by_depth(tmp_path, monkeypatch):
    monkeypatch.setenv("HPCLAUNCH_HOME", str(tmp_path / "home"))
    site = Path(tmp_path / "deep.yaml")
    site.write_text("scheduler: slurm\ndescription: " + "[" * 5000 + "]" * 5000 + "\n")
    one_error_line(run_main("render", "--site", str(site), "-n", "1"))
