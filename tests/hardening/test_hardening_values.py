"""A task's values never kill a worker; one tag rule wherever a tag enters."""

from __future__ import annotations

import json

import pytest
from hardening_helpers import one_error_line, run_main

from hpclaunch.errors import UserError
from hpclaunch.queue.batches import parse_batch


def _count(queue_url: str) -> int:
    return len(json.loads(run_main("tasks", "--json").out))


@pytest.mark.parametrize(
    "option",
    [
        ["--timeout", "inf"],
        ["--timeout", "1e12"],
        ["--timeout", "nan"],
        ["--timeout", "0"],
        ["--expected-runtime", "-inf"],
        ["--priority", str(2**31)],
        ["--priority", str(-(2**63))],
        ["--max-attempts", str(2**40)],
        ["-t", "a/b"],
        ["-t", "--wrap=x"],
        ["-t", "x" * 70],
        [x for i in range(9) for x in ("-t", f"t{i}")],
    ],
)
def test_enqueue_refuses_values_a_worker_cannot_use(queue_url, option):
    ran = run_main("enqueue", *option, "--call", "math:floor", "--args", "[1.5]")
    assert option[0] in one_error_line(ran)
    assert _count(queue_url) == 0


@pytest.mark.parametrize(
    "argv",
    [
        ["tasks", "show", str(2**64)],
        ["tasks", "cancel", str(2**70)],
        ["tasks", "--batch", str(2**64)],
        ["tasks", "why", str(2**64)],
    ],
)
def test_ids_beyond_64_bits_are_one_line(queue_url, argv):
    one_error_line(run_main(*argv))


@pytest.mark.parametrize(
    "option",
    [["--lease", "nan"], ["--lease", "inf"], ["--grace", "inf"], ["--wait-timeout", "nan"]],
)
def test_worker_refuses_non_finite_seconds(queue_url, option):
    one_error_line(run_main("worker", "--singleflow", *option))


def test_a_huge_timeout_from_the_api_is_refused_and_a_valid_task_still_runs(queue_url):
    from hpclaunch import Queue

    q = Queue(queue_url)
    for bad in (float("inf"), 1e12, float("nan")):
        with pytest.raises(UserError, match="timeout"):
            q.enqueue_call("math:floor", [1.5], timeout=bad)
    handle = q.enqueue_call("math:floor", [2.5], timeout=1e8)  # the largest allowed
    ran = run_main("worker", "--singleflow")
    assert ran.code == 0, ran
    assert handle.result() == 2


@pytest.mark.parametrize(
    "text",
    [
        "name: x\ncommand: echo\ntimeout: .inf\n",
        "name: x\ncommand: echo\ntimeout: .nan\n",
        "name: x\ncommand: echo\ntimeout: 1.0e12\n",
        f"name: x\ncommand: echo\npriority: {2**40}\n",
        "name: x\ncommand: echo\ntags: [a/b]\n",
        "name: x\ncommand: echo\ntags: ['--wrap=x']\n",
    ],
)
def test_batch_files_use_the_same_rules(text):
    with pytest.raises(UserError):
        parse_batch(text)


@pytest.mark.parametrize("tags", [["a/b"], ["--wrap=x"], ["x" * 70], [f"t{i}" for i in range(9)]])
def test_render_and_profiles_refuse_tags_a_worker_would_refuse(tmp_path, monkeypatch, tags):
    monkeypatch.setenv("HPCLAUNCH_HOME", str(tmp_path / "home"))
    argv = ["render", "--site", "tests-slurm", "-n", "2"]
    for tag in tags:
        argv += ["-t", tag]
    one_error_line(run_main(*argv))
    site = tmp_path / "s.yaml"
    site.write_text(
        "extends: tests-slurm\nworker:\n  tags: [" + ", ".join(repr(t) for t in tags) + "]\n"
    )
    assert "tags" in one_error_line(run_main("render", "--site", str(site), "-n", "2"))


def test_every_tag_render_accepts_a_worker_accepts(tmp_path, monkeypatch):
    from hpclaunch.tasks.payloads import worker_tag_sets

    monkeypatch.setenv("HPCLAUNCH_HOME", str(tmp_path / "home"))
    tags = ["gpu", "a100:80g", "x" * 64, "v1.2+rc-3_b"]
    argv = ["render", "--site", "tests-slurm", "-n", "2", "--json"]
    for tag in tags:
        argv += ["-t", tag]
    ran = run_main(*argv)
    assert ran.code == 0, ran
    assert worker_tag_sets(tags)


@pytest.mark.parametrize(
    "field, value",
    [
        ("timeout", float("inf")),
        ("timeout", float("nan")),
        ("expected_runtime", 1e12),
        ("priority", 2**40),
        ("max_attempts", 0),
        ("tags", "a/b"),
        ("tags", "b,a"),
    ],
)
def test_no_task_spec_holds_a_value_a_worker_cannot_use(field, value):
    from hpclaunch.queue.batches import TaskSpec

    good = dict(
        kind="command",
        payload={"argv": ["true"]},
        tags="default",
        priority=0,
        max_attempts=3,
        timeout=None,
        expected_runtime=None,
    )
    TaskSpec(**good)
    with pytest.raises(UserError):
        TaskSpec(**{**good, field: value})


def _plant_timeout(url: str, task_id: int, value: float) -> None:
    """A row written before validation existed (or by another client)."""
    if url.startswith("sqlite"):
        import sqlite3

        with sqlite3.connect(url.split(":///", 1)[1]) as conn:
            conn.execute("UPDATE tasks SET timeout = ? WHERE id = ?", (value, task_id))
    else:
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("UPDATE tasks SET timeout = %s WHERE id = %s", (value, task_id))


def test_a_stored_huge_timeout_does_not_kill_the_worker(queue_url):
    from hpclaunch import Queue

    q = Queue(queue_url)
    first = q.enqueue_call("math:floor", [1.5])
    second = q.enqueue_call("math:floor", [3.5])
    _plant_timeout(queue_url, first.id, 1e12)
    ran = run_main("worker", "--close-on-empty-queue", "--wait-timeout", "0")
    assert ran.code == 0, ran
    assert (first.result(), second.result()) == (1, 3)
