"""Engine tasks (SIMX's engine + param) through ``POST /api/v1/tasks`` and
``hpclaunch --server URL enqueue --engine``, run by a real worker's dummy engine."""

from __future__ import annotations

import json

from api_helpers import call, make_accounts
from server_helpers import run_cli, running_server
from waiting import wait_until

from hpclaunch.queue.batches import parse_batch

PARAM = {"step_count": 2, "step_delay": 0.01}


def test_engine_task_through_the_api_and_the_cli(queue_url, tmp_path):
    tok = make_accounts(queue_url).tokens
    alice = {"HPCLAUNCH_TOKEN": tok["alice"]}
    with running_server(tmp_path / "serve.log") as (_, base):
        body = {"engine": "dummy", "param": PARAM, "tags": ["eng"], "name": "one"}
        status, made = call(base, "POST", "/api/v1/tasks", token=tok["alice"], body=body)
        assert status == 201, made
        (api_id,) = made["task_ids"]
        out = run_cli(
            "--server",
            base,
            "enqueue",
            "--engine",
            "dummy",
            "--param",
            json.dumps({"step_count": 1, "step_delay": 0}),
            "-t",
            "eng",
            "--json",
            env=alice,
        )
        assert out.returncode == 0, out.stderr
        (cli_id,) = json.loads(out.stdout)["task_ids"]

        # The same task the batch loader builds for one run of an engine batch.
        loaded = parse_batch(f"name: one\nengine: dummy\nparam: {json.dumps(PARAM)}\n").tasks[0]
        status, task = call(base, "GET", f"/api/v1/tasks/{api_id}", token=tok["alice"])
        assert status == 200 and task["owner"] == "alice"
        assert (task["kind"], task["engine"]) == (loaded.kind, loaded.engine) == ("engine", "dummy")
        assert json.loads(task["payload"]) == loaded.payload

        # A real direct-database worker provides the built-in dummy engine and runs both.
        run = run_cli("worker", "--close-on-empty-queue", "-t", "eng", timeout=120)
        assert run.returncode == 0, run.stderr

        def done(task_id: int) -> dict:
            return call(base, "GET", f"/api/v1/tasks/{task_id}", token=tok["alice"])[1]

        wait_until(lambda: done(cli_id)["status"] == "completed", timeout=30, what="CLI task")
        assert json.loads(done(api_id)["result"]) == {"run": 0, "steps": 2}
        assert json.loads(done(cli_id)["result"]) == {"run": 0, "steps": 1}

        # Mistakes: one clear line each, nothing enqueued.
        for wrong, words in (
            ({"engine": "dummy", "command": "true"}, "exactly one of"),
            ({"engine": 7}, "engine must be an engine's name"),
            ({"engine": "no such/engine"}, "engine"),
            ({"call": "math:sqrt", "param": 1}, "param goes with engine, not call"),
            ({"engine": "dummy", "param": 1, "args": []}, "args goes with call, not engine"),
            ({"engine": "dummy", "cwd": "/tmp"}, "cwd goes with command, not engine"),
        ):
            status, reply = call(base, "POST", "/api/v1/tasks", token=tok["alice"], body=wrong)
            assert status == 422 and list(reply) == ["error"], (wrong, reply)
            assert words in reply["error"] and "\n" not in reply["error"], (wrong, reply)
        status, reply = call(base, "POST", "/api/v1/tasks", token=tok["worker"], body=body)
        assert status == 403 and "worker token" in reply["error"]
        for args, words in (
            (("--param", "{}", "--", "true"), "--param goes with --engine"),
            (("--engine", "dummy", "--param", "{nope"), "--param is not valid JSON"),
            (("--engine", "dummy", "--call", "math:sqrt"), "exactly one of"),
            (("--engine", "dummy", "--args", "[1]"), "--args/--kwargs go with --call"),
            (("--engine", "dummy", "--cwd", "/tmp"), "go with a command"),
            (("--engine", "bad name!"), "engine"),
        ):
            for where in (("--server", base), ()):
                out = run_cli(*where, "enqueue", *args, env=alice)
                assert out.returncode != 0 and words in out.stderr, (args, out.stderr)
                assert len(out.stderr.strip().splitlines()) == 1, out.stderr
        status, listed = call(base, "GET", "/api/v1/tasks", token=tok["admin"])
        assert sorted(t["id"] for t in listed["items"]) == sorted([api_id, cli_id])
    assert "Traceback" not in (tmp_path / "serve.log").read_text()
