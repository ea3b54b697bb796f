"""The people's API on a real server, as a user of each role notices it (SQLite and PostgreSQL)."""

from __future__ import annotations

import getpass

import pytest
from api_helpers import GROUP_A, call, make_accounts
from server_helpers import run_cli, running_server


@pytest.fixture
def api(queue_url, tmp_path):
    accounts = make_accounts(queue_url)
    with running_server(tmp_path / "serve.log") as (_, base):
        yield base, accounts.tokens
    assert "Traceback" not in (tmp_path / "serve.log").read_text()


def test_enqueue_and_inspect_tasks(api):
    base, tok = api
    alice, bob, admin = tok["alice"], tok["bob"], tok["admin"]
    status, made = call(
        base, "POST", "/api/v1/tasks", token=alice, body={"command": ["echo", "hi"], "tags": ["x"]}
    )
    assert (status, made["tags"]) == (201, "x")
    task_id = made["task_ids"][0]
    status, task = call(base, "GET", f"/api/v1/tasks/{task_id}", token=alice)
    assert status == 200
    assert (task["owner"], task["owner_group"], task["status"]) == ("alice", GROUP_A, "pending")
    assert task["payload"] == '{"argv": ["echo", "hi"]}' and task["attempt_history"] == []
    assert "claim_token" not in task and "pickled" not in task
    # A shell string and a call, through the CLI's payload builders.
    assert (
        call(base, "POST", "/api/v1/tasks", token=alice, body={"command": "echo $HOME"})[0] == 201
    )
    status, made = call(
        base, "POST", "/api/v1/tasks", token=bob, body={"call": "math:sqrt", "args": [4]}
    )
    assert status == 201
    bob_task = made["task_ids"][0]
    # Mistakes: one sentence each, with the right status.
    for body, expected, words in (
        ({"call": "not a target"}, 422, "bad call target"),
        ({"command": ["echo"], "call": "m:f"}, 422, "exactly one of"),
        ({"command": ["echo"], "colour": 1}, 422, "unknown field 'colour'"),
        ({"command": ["echo"], "priority": "high"}, 422, "priority must be a whole number"),
        ({"command": ["echo"], "tags": ["bad tag"]}, 422, "tag"),
        ({"command": ["echo"], "timeout": -1}, 422, "timeout"),
        ({"pickle": "AAAA"}, 403, "--allow-pickle"),
        ([1, 2], 400, "JSON object"),
    ):
        status, reply = call(base, "POST", "/api/v1/tasks", token=alice, body=body)
        assert status == expected and words in reply["error"], (body, reply)
        assert list(reply) == ["error"] and "\n" not in reply["error"]
    status, reply = call(base, "POST", "/api/v1/tasks", token=alice, data=b"{not json")
    assert status == 400 and reply["error"].startswith("the request body is not JSON")
    # Each user sees its group's tasks; another group's task is "not found".
    assert call(base, "GET", f"/api/v1/tasks/{bob_task}", token=alice)[0] == 404
    assert call(base, "GET", f"/api/v1/tasks/{task_id}", token=bob)[0] == 404
    assert call(base, "GET", f"/api/v1/tasks/{task_id}", token=tok["carol"])[0] == 200
    assert call(base, "GET", f"/api/v1/tasks/{bob_task}", token=admin)[0] == 200
    ids = lambda token, q="": [  # noqa: E731
        t["id"] for t in call(base, "GET", f"/api/v1/tasks{q}", token=token)[1]["items"]
    ]
    assert ids(alice) == [task_id, task_id + 1] and ids(bob) == [bob_task]
    assert ids(admin) == [task_id, task_id + 1, bob_task]
    assert ids(alice, "?tag=x") == [task_id] and ids(alice, "?status=running") == []
    assert call(base, "GET", "/api/v1/tasks?status=done", token=alice)[0] == 400
    # Steering: cancel, retry, why.
    status, reply = call(base, "POST", f"/api/v1/tasks/{task_id}/cancel", token=carol_token(tok))
    assert (status, reply) == (200, {"canceled": [task_id], "status": "canceled"})
    status, reply = call(base, "POST", f"/api/v1/tasks/{task_id}/cancel", token=alice)
    assert (status, reply) == (200, {"canceled": [], "status": "canceled"})
    assert call(base, "POST", f"/api/v1/tasks/{bob_task}/cancel", token=alice)[0] == 404
    assert call(base, "GET", f"/api/v1/tasks/{bob_task}", token=bob)[1]["status"] == "pending"
    status, reply = call(base, "GET", f"/api/v1/tasks/{task_id}/why", token=alice)
    assert status == 200 and reply["task"]["status"] == "canceled" and reply["verdict"]
    assert call(base, "GET", f"/api/v1/tasks/{bob_task}/why", token=alice)[0] == 404
    status, reply = call(base, "POST", f"/api/v1/tasks/{task_id}/retry", token=alice)
    assert (status, reply) == (200, {"retried": [task_id]})
    status, reply = call(base, "POST", f"/api/v1/tasks/{task_id}/retry", token=alice)
    assert status == 409 and "only failed or canceled" in reply["error"]
    assert call(base, "GET", "/api/v1/tasks/99999999999999999999", token=alice)[0] == 404
    status, stats = call(base, "GET", "/api/v1/stats", token=alice)
    assert status == 200 and stats["total"] == 2 and stats["by_status"]["pending"] == 2
    assert call(base, "GET", "/api/v1/stats", token=admin)[1]["total"] == 3


def carol_token(tok: dict[str, str]) -> str:
    """Carol shares alice's group: she steers alice's tasks."""
    return tok["carol"]


def test_batches_and_paging(api):
    base, tok = api
    alice, bob = tok["alice"], tok["bob"]
    yaml_text = b"name: sweep\ncommand: echo {x}\nparams:\n  x: [1, 2, 3, 4, 5]\n"
    status, made = call(base, "POST", "/api/v1/batches", token=alice, data=yaml_text)
    assert status == 201 and made["name"] == "sweep" and len(made["task_ids"]) == 5
    batch_id = made["batch_id"]
    json_batch = {"name": "other", "call": "math:sqrt", "n_runs": 2}
    status, theirs = call(base, "POST", "/api/v1/batches", token=bob, body=json_batch)
    assert status == 201 and len(theirs["task_ids"]) == 2
    status, reply = call(base, "POST", "/api/v1/batches", token=alice, data=b"name: x\ncolour: 1\n")
    assert status == 422 and "colour: unknown key" in reply["error"]
    assert call(base, "POST", "/api/v1/batches", token=alice, data=b"  ")[0] == 400
    assert call(base, "POST", "/api/v1/batches", token=alice, data=b"\xff\xfe")[0] == 400
    status, reply = call(base, "GET", f"/api/v1/batches/{batch_id}", token=alice)
    assert status == 200 and reply["owner"] == "alice" and reply["counts"]["pending"] == 5
    assert call(base, "GET", f"/api/v1/batches/{batch_id}", token=bob)[0] == 404
    assert call(base, "POST", f"/api/v1/batches/{batch_id}/cancel", token=bob)[0] == 404
    listed = call(base, "GET", "/api/v1/batches", token=bob)[1]["items"]
    assert [b["id"] for b in listed] == [theirs["batch_id"]]
    status, reply = call(base, "POST", f"/api/v1/batches/{batch_id}/cancel", token=alice)
    assert status == 200 and reply["canceled"] == made["task_ids"]
    counts = call(base, "GET", f"/api/v1/batches/{batch_id}", token=alice)[1]["counts"]
    assert counts["canceled"] == 5
    status, reply = call(base, "POST", f"/api/v1/batches/{batch_id}/retry", token=alice)
    assert status == 200 and reply["retried"] == made["task_ids"]
    # Paging: limit and an opaque cursor walk every row once, in ID order.
    seen, cursor = [], None
    while True:
        q = f"?batch={batch_id}&limit=2" + (f"&cursor={cursor}" if cursor else "")
        status, page = call(base, "GET", f"/api/v1/tasks{q}", token=alice)
        assert status == 200 and len(page["items"]) <= 2
        seen += [t["id"] for t in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == made["task_ids"]
    # newest=true: the newest `limit` of the caller's reach, oldest first, one page.
    status, page = call(base, "GET", "/api/v1/tasks?newest=true&limit=2", token=alice)
    assert status == 200 and page["next_cursor"] is None
    assert [t["id"] for t in page["items"]] == made["task_ids"][-2:]
    status, page = call(base, "GET", "/api/v1/tasks?newest=1", token=bob)
    assert [t["id"] for t in page["items"]] == theirs["task_ids"]  # not alice's
    for q, words in (
        ("?newest=true&cursor=eyJhZnRlciI6MX0", "no cursor"),  # {"after":1}
        ("?newest=maybe", "newest"),
        ("?limit=0", "limit"),
        ("?limit=1001", "limit"),
        ("?limit=abc", "limit"),
        ("?cursor=garbage!", "cursor"),
        ("?cursor=eyJhZnRlciI6LTF9", "cursor"),  # {"after":-1}
    ):
        status, reply = call(base, "GET", f"/api/v1/tasks{q}", token=alice)
        assert status == 400 and words in reply["error"], q


def test_workers_and_launches(api, queue_url):
    base, tok = api
    alice, bob, admin = tok["alice"], tok["bob"], tok["admin"]
    status, made = call(base, "POST", "/api/v1/tasks", token=alice, body={"command": ["true"]})
    assert status == 201
    # A real worker (the administrator's direct path) runs alice's task.
    run = run_cli("worker", "--singleflow", "--wait-timeout", "0", timeout=120)
    assert run.returncode == 0, run.stderr
    task = call(base, "GET", f"/api/v1/tasks/{made['task_ids'][0]}", token=alice)[1]
    assert task["status"] == "completed" and task["attempt_history"]
    seen = lambda token, q="": call(base, "GET", f"/api/v1/workers{q}", token=token)  # noqa: E731
    assert seen(alice) == (200, {"items": [], "next_cursor": None})  # it has exited
    status, page = seen(alice, "?all=true")
    assert status == 200 and [w["id"] for w in page["items"]] == [task["worker_id"]]
    assert page["items"][0]["completed"] == 1
    assert seen(bob, "?all=true")[1]["items"] == []  # it never ran bob's group's work
    assert len(seen(admin, "?all=1")[1]["items"]) == 1
    assert seen(alice, "?all=maybe")[0] == 400
    # Launches: a user sees the ones it submitted; the admin every one.
    from hpclaunch.queue import driver, launch_rows

    conn = driver.connect(queue_url)
    try:
        launch_rows.create_launch(
            conn,
            launch_id="l-test-1",
            site="local",
            host=None,
            scheduler="local",
            workdir="/tmp/w",
            log_dir="/tmp/w/logs",
            workers_count=1,
            tags="default",
            profile={"scheduler": "local"},
            chunks=[],
        )
    finally:
        conn.close()
    assert call(base, "GET", "/api/v1/launches", token=alice)[1]["items"] == []
    assert call(base, "GET", "/api/v1/launches/l-test-1", token=alice)[0] == 404
    status, reply = call(base, "GET", "/api/v1/launches/l-test-1", token=admin)
    assert status == 200 and reply["id"] == "l-test-1" and reply["jobs"] == []
    listed = call(base, "GET", "/api/v1/launches?limit=1", token=admin)[1]
    assert [x["id"] for x in listed["items"]] == ["l-test-1"] and listed["next_cursor"] is None
    assert reply["submitted_by"] == getpass.getuser()
