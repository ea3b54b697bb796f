"""Every route of the OpenAPI document, walked with every kind of caller.

Deny by default: no credentials, a cookie, a revoked or an expired token get
401 everywhere but /healthz; a worker token gets 403 (and no data) on every
people and SIMX route; a user token gets 403 on every worker route; a user gets
404 for another group's object; an admin sees all.
"""

from __future__ import annotations

import re

import pytest
from api_helpers import GROUP_A, call, make_accounts
from server_helpers import running_server

from hpclaunch.queue import wire

BATCH = b"name: walk\ncommand: echo {run}\nn_runs: 2\n"


def _requests(doc: dict, ids: dict[str, str]):
    """(tag, method, concrete path, body) for every operation of the document."""
    for template, item in sorted(doc["paths"].items()):
        for method, op in item.items():
            path = template
            for prefix, value in ids.items():
                if template.startswith(prefix):
                    path = re.sub(r"\{[a-z]+\}", value, template)
            path = path.replace("{id}", "1")
            body: object = None
            if (method, template) == ("post", "/api/v1/tasks"):
                body = {"command": ["true"]}
            elif (method, template) in (("post", "/api/v1/batches"), ("post", "/batch/new")):
                body = BATCH
            elif method == "post":
                body = {}
            yield op["tags"][0], method.upper(), path, body


def _send(base, method, path, body, **kw):
    if isinstance(body, bytes):
        return call(base, method, path, data=body, **kw)
    return call(base, method, path, body=body, data=b"" if body is None else None, **kw)


def test_every_route_with_every_role(queue_url, tmp_path):
    accounts = make_accounts(queue_url)
    tok = accounts.tokens
    log = tmp_path / "serve.log"
    with running_server(log) as (_, base):
        status, doc = call(base, "GET", "/api/v1/openapi.json", token=tok["alice"])
        assert status == 200 and doc["openapi"].startswith("3.")
        assert {"bearer", "basic"} <= set(doc["components"]["securitySchemes"])
        must_describe = {
            ("post", "/api/v1/claim"),
            ("post", "/api/v1/workers"),
            ("post", "/api/v1/tasks/{id}/finish"),
            ("post", "/api/v1/workers/{id}/exit"),
            ("get", "/healthz"),
            ("get", "/api/v1/stats"),
            ("get", "/batch/{n}"),
            ("post", "/batch/new"),
            ("post", "/api/v1/workers/{id}/release-orphans"),
        }
        described = {(m, p) for p, item in doc["paths"].items() for m in item}
        assert must_describe <= described and len(described) >= 35
        # Group A's objects: a task and a batch of alice's.
        status, made = call(base, "POST", "/api/v1/batches", token=tok["alice"], data=BATCH)
        assert status == 201
        task_id, batch_id = made["task_ids"][0], made["batch_id"]
        ids = {
            "/api/v1/tasks/": str(task_id),
            "/api/v1/batches/": str(batch_id),
            "/batch/": str(batch_id),
            "/user/": "alice",
        }
        requests = list(_requests(doc, ids))
        assert len(requests) == len(described)

        for tag, method, path, body in requests:
            where = f"{method} {path}"
            if tag == "health":
                assert _send(base, method, path, body)[0] == 200
                continue
            # (Revoked and expired tokens: test_revoked_and_expired; each failure of one
            # credential counts toward its slow-down, so they are not sent to every route.)
            denied = [{}, {"Cookie": f"session={tok['admin']}; token={tok['alice']}"}]
            for headers in denied:
                status, reply = _send(base, method, path, body, headers=headers)
                assert status == 401, (where, list(headers))
                assert reply == {"error": "authentication required: a valid token"}
            if tag == "meta":
                for role in ("alice", "bob", "admin", "worker"):
                    assert _send(base, method, path, body, token=tok[role])[0] == 200
                continue
            if tag == "workers":
                # The worker routes: a person's token is refused; a worker's or an
                # admin's passes (then an empty body is not enough: 4xx, never 5xx).
                for role in ("alice", "bob"):
                    status, reply = _send(base, method, path, body, token=tok[role])
                    assert status == 403, (where, role)
                    assert reply == {"error": "this route is for worker tokens"}
                speaks = {wire.PROTOCOL_HEADER: str(wire.PROTOCOL)}
                for role in ("worker", "admin"):
                    status, reply = _send(base, method, path, body, token=tok[role], headers=speaks)
                    assert status in (404, 422), (where, role, reply)
                    assert list(reply) == ["error"]
                continue
            status, reply = _send(base, method, path, body, token=tok["worker"])
            assert status == 403 and list(reply) == ["error"], where
            assert "worker token" in reply["error"]
            status, reply = _send(base, method, path, body, token=tok["bob"])
            if "{" in _template(doc, path) and "/user/" not in path:
                assert status == 404 and list(reply) == ["error"], where
            else:
                assert status in (200, 201), where
                rows = reply if isinstance(reply, list) else reply.get("items", [])
                for row in rows:
                    assert GROUP_A not in (row.get("owner_group"), row.get("group")), where
                    assert task_id not in (row.get("id"), row.get("current_task")), where
            status, reply = _send(base, method, path, body, token=tok["alice"])
            if path.startswith("/api/v1/launches/"):
                assert status == 404, where  # alice submitted no launch
            elif path.endswith("/retry") and "/tasks/" in path:
                assert status in (200, 409), where  # 409: the task was pending
            else:
                assert status in (200, 201), (where, reply)
            if method == "GET" and not path.startswith("/api/v1/launches/"):
                assert _send(base, method, path, body, token=tok["admin"])[0] == 200, where
        # No route reached data without a valid token, and none failed.
    text = log.read_text()
    assert "Traceback" not in text and " 500 " not in text
    for secret in tok.values():
        assert secret not in text


def _template(doc: dict, path: str) -> str:
    """The document's path for ``path`` (a fixed path such as /batch/new wins)."""
    if path in doc["paths"]:
        return path
    return next(p for p in doc["paths"] if _matches(p, path))


def _matches(template: str, path: str) -> bool:
    parts, given = template.split("/"), path.split("/")
    return len(parts) == len(given) and all(
        p == g or p.startswith("{") for p, g in zip(parts, given, strict=True)
    )


@pytest.mark.parametrize("role", ["alice", "admin"])
def test_cookie_is_never_a_credential(queue_url, tmp_path, role):
    """A browser's cookie holding a valid token is still 401 on the API."""
    tok = make_accounts(queue_url).tokens
    with running_server(tmp_path / "serve.log") as (_, base):
        for method, path in (("GET", "/api/v1/tasks"), ("POST", "/api/v1/tasks")):
            status, _ = call(
                base,
                method,
                path,
                data=b'{"command": ["true"]}',
                headers={"Cookie": f"hpclaunch_session={tok[role]}", "Origin": "http://evil"},
            )
            assert status == 401
        assert call(base, "GET", "/api/v1/tasks", token=tok[role])[0] == 200


def test_revoked_and_expired(queue_url, tmp_path):
    tok = make_accounts(queue_url).tokens
    with running_server(tmp_path / "serve.log") as (_, base):
        for label in ("revoked", "expired"):
            for method, path in (
                ("GET", "/api/v1/tasks"),
                ("POST", "/api/v1/batches"),
                ("GET", "/api/v1/openapi.json"),
            ):
                status, reply = call(base, method, path, token=tok[label], data=BATCH)
                assert status == 401 and reply == {
                    "error": "authentication required: a valid token"
                }
        assert call(base, "GET", "/api/v1/tasks", token=tok["alice"])[0] == 200


def test_path_values_no_row_can_have_are_not_found(queue_url, tmp_path):
    """IDs beyond a database integer, odd digits and names no account can have: 404,
    never a database error (a 500)."""
    tok = make_accounts(queue_url).tokens
    speaks = {wire.PROTOCOL_HEADER: str(wire.PROTOCOL)}
    huge = 2**63
    info = {
        **dict(host="h", pid=1, tags="default", tag_sets=["default"], mode="singleflow"),
        **dict(lease=60, allow_pickle=False, fit_deadline=False, version="0"),
    }
    with running_server(tmp_path / "serve.log") as (_, base):
        kw = {"token": tok["worker"], "headers": speaks}
        status, made = call(base, "POST", "/api/v1/workers", body=info, **kw)
        assert status == 201, made
        held = {"worker": made["worker"], "token": "t", "attempt": 1, "max_attempts": 3}
        held |= {"started_at": 0, "request_id": "r", "lease": 60, "outcome": {"ok": True}}
        for path, body in (
            (f"/api/v1/workers/{huge}/heartbeat", {"lease": 60}),
            (f"/api/v1/workers/{huge}/reap", {}),
            (f"/api/v1/tasks/{huge}/heartbeat", held),
            (f"/api/v1/tasks/{huge}/finish", held),
        ):
            status, reply = call(base, "POST", path, body=body, **kw)
            assert status == 404 and list(reply) == ["error"], (path, reply)
        for path in ("/batch/%C2%B2", f"/batch/{huge}", "/user/a%00b", "/user/..x"):
            status, reply = call(base, "GET", path, token=tok["alice"])
            assert status == 404 and list(reply) == ["error"], (path, reply)
        assert call(base, "GET", "/user/nobody", token=tok["alice"]) == (200, [])
    assert "Traceback" not in (tmp_path / "serve.log").read_text()
