"""The pure parts of the API: cursors, limits, IDs, bodies; the client's URL and token rules."""

from __future__ import annotations

import pytest

from hpclaunch.errors import UserError
from hpclaunch.queue.http_client import check_url, read_token
from hpclaunch.queue.remote import task_body
from hpclaunch.server import params
from hpclaunch.server.params import ApiError


@pytest.mark.parametrize("key", [0, 1, 2**63 - 1])
def test_cursor_round_trip(key):
    cursor = params.encode_cursor(key)
    assert params.decode_cursor(cursor) == key and "=" not in cursor


@pytest.mark.parametrize(
    "cursor", ["", "!!", "eyJhZnRlciI6LTF9", params.encode_cursor("x"), "a" * 500]
)
def test_bad_cursors_are_400(cursor):
    with pytest.raises(ApiError) as caught:
        params.decode_cursor(cursor)
    assert caught.value.status == 400


def test_launch_cursor_and_ids():
    assert params.decode_cursor(params.encode_cursor("l-2026.1"), str) == "l-2026.1"
    with pytest.raises(ApiError):
        params.decode_cursor(params.encode_cursor("a\x00b"), str)
    assert params.row_id("42", "task") == 42
    for bad in ("0", "-1", "1e3", "9" * 20, "٣"):
        with pytest.raises(ApiError) as caught:
            params.row_id(bad, "task")
        assert caught.value.status == 404


def test_limits_and_pages():
    assert params.limit(None) == 100 and params.limit("1000") == 1000
    for bad in ("0", "1001", "-5", "x"):
        with pytest.raises(ApiError):
            params.limit(bad)
    rows = [{"id": i} for i in (3, 5, 9)]
    assert params.page(rows, 3) == {"items": rows, "next_cursor": None}
    two = params.page(rows, 2)
    assert two["items"] == rows[:2] and params.decode_cursor(two["next_cursor"]) == 5


@pytest.mark.parametrize(
    "body, status",
    [
        (b"[]", 400),
        (b"{", 400),
        (b'{"a": NaN}', 400),
        (b"\xff", 400),
        (b'{"a": "x\\u0000"}', 422),
        (b'{"a": "\\ud800"}', 422),
        (b'{"a": ' * 200 + b"1" + b"}" * 200, 422),
    ],
)
def test_bodies(body, status):
    with pytest.raises(ApiError) as caught:
        params.json_object(body)
    assert caught.value.status == status and "\n" not in caught.value.message


def test_client_url_rules():
    assert check_url("http://127.0.0.1:8097/") == "http://127.0.0.1:8097"
    assert check_url("http://localhost:1") == "http://localhost:1"
    assert check_url("http://[::1]:1") == "http://[::1]:1"
    assert check_url("https://queue.lab.org") == "https://queue.lab.org"
    assert check_url("http://queue.lab.org", insecure_http=True) == "http://queue.lab.org"
    for bad in ("http://queue.lab.org", "ftp://x", "queue.lab.org", "https://u:p@h"):
        with pytest.raises(UserError):
            check_url(bad)


def test_token_sources(tmp_path):
    assert read_token({"HPCLAUNCH_TOKEN": " hpl_a \n"}) == "hpl_a"
    path = tmp_path / "t"
    path.write_text("hpl_b\n")
    path.chmod(0o640)
    with pytest.raises(UserError, match="chmod 600"):
        read_token({"HPCLAUNCH_TOKEN_FILE": str(path)})
    path.chmod(0o600)
    assert read_token({"HPCLAUNCH_TOKEN_FILE": str(path)}) == "hpl_b"
    with pytest.raises(UserError, match="HPCLAUNCH_TOKEN"):
        read_token({})


def test_task_body_round_trips_the_cli_payloads():
    from hpclaunch.queue.batches import TaskSpec

    spec = TaskSpec(
        kind="command",
        payload={"argv": ["echo", "hi"], "cwd": "/tmp", "env": {"A": "1"}},
        tags="a,b",
        priority=2,
        max_attempts=1,
        timeout=5.0,
        expected_runtime=None,
        name="n",
    )
    assert task_body(spec) == {
        "command": ["echo", "hi"],
        "shell": False,
        "cwd": "/tmp",
        "env": {"A": "1"},
        "tags": ["a", "b"],
        "priority": 2,
        "max_attempts": 1,
        "timeout": 5.0,
        "name": "n",
    }
