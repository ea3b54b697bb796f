"""The CLI's queue commands and ``Queue`` through a real server: the same output as
through the database, and one clear line for every misuse."""

from __future__ import annotations

import json
import os

import pytest
from api_helpers import make_accounts
from server_helpers import run_cli, running_server

COMPARED = [
    ("tasks",),
    ("tasks", "--json"),
    ("tasks", "--status", "pending", "--limit", "2"),
    ("tasks", "--tag", "x", "--json"),
    ("tasks", "--batch", "1"),
    ("tasks", "show", "1"),
    ("tasks", "show", "1", "--json"),
    ("tasks", "show", "4", "--json"),
    ("tasks", "why", "1"),
    ("tasks", "why", "2", "--json"),
    ("batches",),
    ("batches", "--json"),
    ("workers",),
    ("workers", "--all"),
    ("workers", "--all", "--json"),
    ("stats",),
    ("stats", "--json"),
]


def _ok(*args: str, env: dict[str, str] | None = None) -> str:
    out = run_cli(*args, env=env)
    assert out.returncode == 0, (args, out.stderr)
    return out.stdout


def test_cli_output_is_the_same_through_the_server(queue_url, tmp_path):
    tok = make_accounts(queue_url).tokens
    batch = tmp_path / "sweep.yaml"
    batch.write_text("name: sweep\ncommand: echo {x}\nparams:\n  x: [1, 2, 3]\n")
    _ok("enqueue", "-t", "x", "--", "true")  # 1: completed below
    _ok("enqueue", "--call", "math:sqrt", "--args", "[9]")  # 2: canceled below
    _ok("enqueue", "--file", str(batch))  # 3-5
    run = run_cli("worker", "--singleflow", "--wait-timeout", "0", "-t", "x")
    assert run.returncode == 0, run.stderr
    _ok("tasks", "cancel", "2")
    env = {"HPCLAUNCH_TOKEN": tok["admin"]}
    with running_server(tmp_path / "serve.log") as (_, base):
        for args in COMPARED:
            direct = _ok("--database", queue_url, *args)
            served = _ok("--server", base, *args, env=env)
            assert served == direct, args
        # HPCLAUNCH_SERVER works like --server.
        assert _ok("stats", env={**env, "HPCLAUNCH_SERVER": base}) == _ok("stats")
        # Steering through the server, as a user of group A.
        user = {"HPCLAUNCH_TOKEN": tok["alice"]}
        out = _ok("--server", base, "enqueue", "-t", "x", "--json", "--", "echo", "hi", env=user)
        assert json.loads(out) == {"task_ids": [6]}
        out = _ok("--server", base, "enqueue", "--file", str(batch), env=user)
        assert out.startswith("batch 2 (sweep): 3 tasks enqueued (IDs 7-9)")
        out = run_cli("--server", base, "tasks", "cancel", "6", "1", env=user)
        assert out.returncode == 3 and out.stderr.startswith("error: no task with ID 1")
        assert _ok("--server", base, "tasks", "cancel", "6", env=user) == "1 task(s) canceled\n"
        assert _ok("--server", base, "tasks", "retry", "6", env=user).startswith("1 task(s)")
        out = _ok("--server", base, "tasks", "--json", env=user)
        assert '"id": 6' in out and '"id": 1,' not in out  # alice sees only her group's
        out = _ok("--server", base, "tasks", "cancel", "--batch", "2", env=user)
        assert out == "3 task(s) canceled\n"
        # Misuse: one line, non-zero, never the token.
        token_file = tmp_path / "token"
        token_file.write_text(tok["alice"])
        token_file.chmod(0o644)
        for args, extra, words in (
            (("--server", base, "--database", queue_url, "stats"), user, "not both"),
            (("--server", "http://example.org:8097", "stats"), user, "plain http"),
            (("--server", "ftp://x", "stats"), user, "expected http(s)"),
            (("--server", base, "submit", "--site", "local"), user, "does not work through"),
            (("--server", base, "stats"), {"HPCLAUNCH_TOKEN": "hpl_wrong"}, "refused the token"),
            (("--server", base, "stats"), {"HPCLAUNCH_TOKEN_FILE": str(token_file)}, "chmod 600"),
            (("--server", base, "tasks", "show", "99"), user, "no task with ID 99"),
            (("--server", "http://127.0.0.1:1", "stats"), user, "cannot reach"),
        ):
            clean = {k: v for k, v in os.environ.items() if not k.startswith("HPCLAUNCH_TOKEN")}
            out = run_cli(*args, env={**clean, **extra})
            assert out.returncode != 0 and words in out.stderr, (args, out.stderr)
            assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr
            assert tok["alice"] not in out.stderr
        token_file.chmod(0o600)
        out = run_cli(
            "--server",
            base,
            "stats",
            env={"HPCLAUNCH_TOKEN": "", "HPCLAUNCH_TOKEN_FILE": str(token_file)},
        )
        assert out.returncode == 0, out.stderr
    assert tok["alice"] not in (tmp_path / "serve.log").read_text()


def test_python_queue_through_the_server(queue_url, tmp_path):
    from hpclaunch import Queue
    from hpclaunch.errors import UserError

    tok = make_accounts(queue_url).tokens
    with running_server(tmp_path / "serve.log") as (_, base):
        q = Queue(server=base, token=tok["alice"], tags=["py"])
        handle = q.enqueue_command(["echo", "hi"])
        assert handle.status == "pending" and handle.info()["owner"] == "alice"
        call = q.enqueue_call("math:sqrt", [16])
        batch_file = tmp_path / "b.yaml"
        batch_file.write_text("name: b\ncall: math:sqrt\nargs: [4]\nn_runs: 2\n")
        batch_id, handles = q.enqueue_batch(str(batch_file))
        assert q.batch(batch_id).counts()["pending"] == 2 and len(handles) == 2
        with pytest.raises(UserError, match="--allow-pickle"):
            q.run_cloud(sum, [1, 2])
        # A real worker (direct database) runs them; results come back over HTTP.
        run = run_cli("worker", "--close-on-empty-queue", "-t", "py", "-t", "default")
        assert run.returncode == 0, run.stderr
        assert call.result(timeout=30) == 4.0 and handle.result(timeout=30) == 0
        assert q.batch(batch_id).wait(timeout=30)["completed"] == 2
        assert handle.cancel() is False
        other = Queue(server=base, token=tok["bob"])
        with pytest.raises(UserError, match="no task"):
            other.task(handle.id)
        with pytest.raises(UserError, match="not both"):
            Queue(queue_url, server=base)
