"""The Python API and the CLI as users meet them, including their mistakes."""

from __future__ import annotations

import json
import os
import stat

import pytest
from queue_helpers import run_cli, start_worker

from hpclaunch.queue.api import TaskFailed


def drain():
    assert start_worker("--close-on-empty-queue", "-q").wait(timeout=120) == 0


def square_plus(x, offset=0):
    return x * x + offset


def test_api_round_trip(queue):
    import sys

    import cloudpickle

    # The worker cannot import this test module: send square_plus by value.
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    call = queue.enqueue_call("math:pow", [2, 10])
    cloud = queue.run_cloud(lambda x, y=1: [x, y], 5, y=6)
    module_fn = queue.run_cloud(square_plus, 3, offset=1)
    command = queue.enqueue_command(["sh", "-c", "echo out; echo err >&2"])
    broken = queue.enqueue_call("math:sqrt", ["not a number"], max_attempts=1)
    drain()
    assert call.result() == 1024.0
    assert cloud.result() == [5, 6]
    assert module_fn.result() == 10
    assert command.result() == 0
    info = command.info()
    assert info["stdout_tail"] == "out\n" and info["stderr_tail"] == "err\n"
    assert os.path.exists(os.path.join(info["log_dir"], "attempt-1.out"))
    with pytest.raises(TaskFailed, match="failed") as exc:
        broken.result()
    assert "TypeError" in exc.value.task["error"]


def test_one_queue_shared_by_threads(queue):
    """Each thread gets its own connection (as the SQLAlchemy pool gave before)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(4) as pool:
        handles = list(pool.map(lambda i: queue.enqueue_command(["true"], name=f"t{i}"), range(20)))
    assert len({h.id for h in handles}) == 20
    assert [queue.task(h.id).info()["name"] for h in handles] == [f"t{i}" for i in range(20)]
    queue.close()
    assert queue.task(handles[0].id).status == "pending"  # reopens after close


def test_result_waits_with_timeout(queue):
    handle = queue.enqueue_command(["true"])
    with pytest.raises(TimeoutError):
        handle.result(timeout=0.3)


def test_cli_enqueue_command_call_and_listing(queue_url):
    out = run_cli("enqueue", "-t", "small", "--priority", "2", "--", "echo", "hi", check=True)
    assert "task 1 enqueued (tags small)" in out.stdout
    run_cli("enqueue", "--call", "math:pow", "--args", "[3, 2]", check=True)
    assert (
        start_worker("-t", "small", "-t", "default", "--close-on-empty-queue", "-q").wait(
            timeout=60
        )
        == 0
    )
    rows = json.loads(run_cli("tasks", "--json", check=True).stdout)
    assert [(r["id"], r["status"]) for r in rows] == [(1, "completed"), (2, "completed")]
    show = run_cli("tasks", "show", "1", check=True).stdout
    assert "hi" in show and "completed" in show
    shown = json.loads(run_cli("tasks", "show", "2", "--json", check=True).stdout)
    assert json.loads(shown["result"]) == 9.0
    stats = json.loads(run_cli("stats", "--json", check=True).stdout)
    assert stats["by_tag"]["small"]["completed"] == 1
    assert run_cli("tasks", "--tag", "small", "--json", check=True).stdout.count('"id"') == 1


def test_retry_and_cancel(queue):
    failing = queue.enqueue_command(["false"], max_attempts=1)
    drain()
    assert failing.status == "failed"
    out = run_cli("tasks", "retry", "--failed", check=True)
    assert "1 task(s) back on the queue" in out.stdout
    assert failing.info()["attempts"] == 0 and failing.status == "pending"
    assert run_cli("tasks", "cancel", str(failing.id), check=True).returncode == 0
    assert failing.status == "canceled"


def test_batch_file_expands_grid_and_cancels_as_a_whole(queue_url, tmp_path):
    batch = tmp_path / "sweep.yaml"
    batch.write_text(
        "name: sweep\n"
        "command: [echo, 'T={temp}', 'P={pressure}']\n"
        "tags: [default]\n"
        "params:\n  temp: [300, 400]\n  pressure: [1, 2, 3]\n"
    )
    out = run_cli("enqueue", "--file", str(batch), check=True)
    assert "batch 1 (sweep): 6 tasks enqueued" in out.stdout
    rows = json.loads(run_cli("tasks", "--batch", "1", "--json", check=True).stdout)
    assert len(rows) == 6
    listed = json.loads(run_cli("batches", "--json", check=True).stdout)
    assert listed[0]["counts"]["pending"] == 6
    assert "6 task(s) canceled" in run_cli("tasks", "cancel", "--batch", "1", check=True).stdout
    listed = json.loads(run_cli("batches", "--json", check=True).stdout)
    assert listed[0]["counts"]["canceled"] == 6 and listed[0]["canceled_at"]


BAD_BATCHES = {
    "unknown_key": ("name: a\ncomand: ls\n", "unknown key; did you mean 'command'"),
    "bad_yaml": ("name: a\ncommand: [ls\n", "not valid YAML"),
    "no_name": ("command: ls\n", "`name` is required"),
    "both_kinds": (
        "name: a\ncommand: ls\ncall: m:f\n",
        "exactly one of `command`, `call` or `engine`",
    ),
    "placeholder": (
        "name: a\ncommand: 'run {x} {y}'\nparams:\n  x: [1, 2]\n",
        "placeholder {y} is not a parameter",
    ),
    "n_runs": ("name: a\ncommand: ls\nn_runs: -3\n", "n_runs"),
    "bad_tag": ("name: a\ncommand: ls\ntags: ['a b']\n", "bad tag"),
    "bad_call": ("name: a\ncall: not-a-target\n", "bad call target"),
    "attempts": ("name: a\ncommand: ls\nmax_attempts: 0\n", "max_attempts"),
    "not_mapping": ("- a\n- b\n", "a batch file is a mapping"),
}


@pytest.mark.parametrize("case", sorted(BAD_BATCHES))
def test_bad_batch_file_inserts_nothing(queue_url, tmp_path, case):
    text, message = BAD_BATCHES[case]
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    out = run_cli("enqueue", "--file", str(path))
    assert out.returncode != 0
    assert message in out.stderr
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
    assert json.loads(run_cli("tasks", "--json", check=True).stdout) == []


BAD_CLI = [
    (["tasks", "show", "999"], "no task with ID 999"),
    (["enqueue", "--call", "math:pow", "--args", "[2,"], "--args is not valid JSON"),
    (["enqueue", "--call", "math:pow", "--kwargs", "[1]"], "--kwargs must be a JSON object"),
    (["enqueue"], "give exactly one of"),
    (["enqueue", "-t", "bad tag", "--", "ls"], "bad tag"),
    (["tasks", "retry", "999"], "no task with ID 999"),
    (["tasks", "cancel", "--batch", "42"], "no batch with ID 42"),
    (["worker", "--walltime", "ten minutes"], "bad walltime"),
    (["worker", "--deadline", "tomorrow"], "bad deadline"),
    (["--database", "mysql://x/y", "tasks"], "unsupported database URL"),
    (["--database", "postgresql://postgres@127.0.0.1:1/none", "tasks"], "cannot connect"),
]


@pytest.mark.parametrize("args,message", BAD_CLI, ids=[" ".join(a) for a, _ in BAD_CLI])
def test_user_mistakes_give_one_clear_line(queue_url, args, message):
    out = run_cli(*args)
    assert out.returncode != 0
    assert message in out.stderr
    assert "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr


def test_debug_shows_the_traceback(queue_url):
    out = run_cli("--debug", "tasks", "show", "999")
    assert out.returncode != 0 and "Traceback" in out.stderr


def test_connection_file_must_be_private(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    conn_file = home / "database.yaml"
    conn_file.write_text(f"url: sqlite:///{tmp_path / 'q.sqlite3'}\n")
    conn_file.chmod(0o644)
    env = {"HPCLAUNCH_HOME": str(home), "HPCLAUNCH_DATABASE_URL": ""}
    out = run_cli("tasks", env=env)
    assert out.returncode != 0 and "chmod 600" in out.stderr
    conn_file.chmod(stat.S_IRUSR | stat.S_IWUSR)
    out = run_cli("tasks", env=env)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "q.sqlite3").exists()


def test_database_url_precedence(tmp_path, monkeypatch):
    from hpclaunch.queue.urls import resolve_database_url

    monkeypatch.setenv("HPCLAUNCH_HOME", str(tmp_path))
    monkeypatch.delenv("HPCLAUNCH_DATABASE_URL", raising=False)
    monkeypatch.delenv("HPCLAUNCH_DATABASE_FILE", raising=False)
    assert resolve_database_url() == f"sqlite:///{tmp_path / 'hpclaunch.sqlite3'}"
    (tmp_path / "database.yaml").write_text("url: postgresql://u@file/db\n")
    (tmp_path / "database.yaml").chmod(0o600)
    assert resolve_database_url() == "postgresql://u@file/db"
    other = tmp_path / "other.yaml"
    other.write_text("url: postgresql://u@envfile/db\n")
    other.chmod(0o600)
    monkeypatch.setenv("HPCLAUNCH_DATABASE_FILE", str(other))
    assert resolve_database_url() == "postgresql://u@envfile/db"
    monkeypatch.setenv("HPCLAUNCH_DATABASE_URL", "postgresql://u@env/db")
    assert resolve_database_url() == "postgresql://u@env/db"
    assert resolve_database_url("sqlite:////x.db") == "sqlite:////x.db"
