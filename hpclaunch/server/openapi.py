"""The OpenAPI 3.0 document of every route the server answers (data, written by hand).

Hand-written rather than generated: Starlette has no validation layer to
generate it from, and a plain dict keeps the contract readable in review. Row
schemas are permissive (``additionalProperties``) so a new column is not a
breaking change; the worker routes' bodies name the fields the HTTP worker
session sends and allow more.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

PATH = "/api/v1/openapi.json"
STATUSES = ["pending", "running", "completed", "failed", "canceled"]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _nullable(kind: str) -> dict[str, Any]:
    return {"type": kind, "nullable": True}


ERROR = _json(_ref("Error"), "an error: one clear sentence")
ID_PARAM = {
    "name": "id",
    "in": "path",
    "required": True,
    "schema": {"type": "integer", "minimum": 1},
}
PAGING = [
    {
        "name": "limit",
        "in": "query",
        "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
    },
    {
        "name": "cursor",
        "in": "query",
        "description": "opaque: the next_cursor of the previous page",
        "schema": {"type": "string"},
    },
]


def _op(
    summary: str,
    reply: dict[str, Any],
    *,
    params: list[dict[str, Any]] | None = None,
    body: dict[str, Any] | None = None,
    status: str = "200",
    tag: str = "people",
) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "tags": [tag],
        "responses": {status: _json(reply), "default": ERROR},
    }
    if params:
        op["parameters"] = params
    if body is not None:
        op["requestBody"] = {"required": True, "content": body}
    return op


def _page(item: str) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["items", "next_cursor"],
        "properties": {
            "items": {"type": "array", "items": _ref(item)},
            "next_cursor": _nullable("string"),
        },
    }


def _row(required: list[str], **properties: Any) -> dict[str, Any]:
    return {
        "type": "object",
        "required": required,
        "properties": properties,
        "additionalProperties": True,
    }


JSON_BODY = {"application/json": {"schema": _ref("TaskRequest")}}
ANY_OBJECT = {"type": "object", "additionalProperties": True}
WORKER_BODY = {"application/json": {"schema": ANY_OBJECT}}
INT = {"type": "integer"}
NUM = _nullable("number")
STR = _nullable("string")

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {"error": {"type": "string"}},
    },
    "TaskRequest": {
        "type": "object",
        "description": "exactly one of command, call or pickle",
        "properties": {
            "command": {
                "oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]
            },
            "shell": {"type": "boolean"},
            "cwd": {"type": "string"},
            "env": {"type": "object", "additionalProperties": {"type": "string"}},
            "call": {"type": "string", "description": "package.module:function"},
            "args": {"type": "array"},
            "kwargs": {"type": "object"},
            "pickle": {
                "type": "string",
                "description": "base64 of cloudpickle.dumps((fn, args, kwargs)); only on a "
                "server started with --allow-pickle",
            },
            "tags": {"type": "array", "items": {"type": "string"}},
            "priority": {"type": "integer"},
            "max_attempts": {"type": "integer", "minimum": 1},
            "timeout": {"type": "number"},
            "expected_runtime": {"type": "number"},
            "name": {"type": "string", "maxLength": 200},
        },
        "additionalProperties": False,
    },
    "Enqueued": _row(["task_ids"], task_ids={"type": "array", "items": INT}),
    "BatchEnqueued": _row(
        ["batch_id", "task_ids"],
        batch_id=INT,
        name={"type": "string"},
        task_ids={"type": "array", "items": INT},
    ),
    "TaskSummary": _row(
        ["id", "status", "tags"],
        id=INT,
        name=STR,
        kind={"type": "string"},
        status={"type": "string", "enum": STATUSES},
        tags={"type": "string"},
        priority=INT,
        attempts=INT,
        max_attempts=INT,
        batch_id=_nullable("integer"),
        worker_id=_nullable("integer"),
        exit_code=_nullable("integer"),
        reason=STR,
        created_at={"type": "number"},
        started_at=NUM,
        finished_at=NUM,
    ),
    "Task": _row(
        ["id", "status", "payload", "attempt_history", "has_pickled_result"],
        id=INT,
        status={"type": "string", "enum": STATUSES},
        payload={"type": "string", "description": "the payload as JSON text"},
        result={**STR, "description": "the JSON result as text"},
        owner={"type": "string"},
        owner_group={"type": "string"},
        has_pickled_result={"type": "boolean"},
        attempt_history={"type": "array", "items": ANY_OBJECT},
    ),
    "Why": _row(
        ["task", "attempts", "verdict"],
        task=ANY_OBJECT,
        attempts={"type": "array", "items": ANY_OBJECT},
        running={**ANY_OBJECT, "nullable": True},
        verdict={"type": "string"},
    ),
    "Canceled": _row(
        ["canceled"], canceled={"type": "array", "items": INT}, status={"type": "string"}
    ),
    "Retried": _row(["retried"], retried={"type": "array", "items": INT}),
    "Batch": _row(
        ["id", "name", "n_tasks", "counts"],
        id=INT,
        name={"type": "string"},
        n_tasks=INT,
        spec=ANY_OBJECT,
        owner={"type": "string"},
        owner_group={"type": "string"},
        counts={"type": "object", "additionalProperties": INT},
        canceled_at=NUM,
    ),
    "Worker": _row(
        ["id", "host", "status"],
        id=INT,
        host={"type": "string"},
        pid=INT,
        status={"type": "string"},
        tags={"type": "string"},
        completed=INT,
        failed=INT,
        current_task=_nullable("integer"),
    ),
    "Launch": _row(
        ["id", "site", "status", "jobs"],
        id={"type": "string"},
        site={"type": "string"},
        status={"type": "string"},
        jobs={"type": "array", "items": ANY_OBJECT},
    ),
    "Stats": _row(
        ["total", "by_status", "by_tag", "workers_running"],
        total=INT,
        by_status={"type": "object", "additionalProperties": INT},
        by_tag={"type": "object", "additionalProperties": ANY_OBJECT},
        workers_running=INT,
    ),
}

TASK_FILTERS = [
    {"name": "status", "in": "query", "schema": {"type": "string", "enum": STATUSES}},
    {"name": "tag", "in": "query", "schema": {"type": "string"}},
    {"name": "batch", "in": "query", "schema": {"type": "integer", "minimum": 1}},
    *PAGING,
]
BATCH_FILE = {
    "application/x-yaml": {"schema": {"type": "string"}},
    "application/json": {"schema": ANY_OBJECT},
}


def _worker(summary: str, with_id: bool = False, status: str = "200") -> dict[str, Any]:
    return {
        "post": _op(
            summary,
            ANY_OBJECT,
            params=[ID_PARAM] if with_id else None,
            body=WORKER_BODY,
            status=status,
            tag="workers",
        )
    }


PATHS: dict[str, Any] = {
    "/healthz": {
        "get": {
            "summary": "liveness: whether the database answers (no authentication)",
            "tags": ["health"],
            "security": [],
            "responses": {
                "200": _json(_row(["status"], status={"type": "string"})),
                "503": _json(_row(["status"], status={"type": "string"}), "database unavailable"),
            },
        }
    },
    PATH: {"get": _op("this document", ANY_OBJECT, tag="meta")},
    "/api/v1/tasks": {
        "post": _op(
            "enqueue one task as the caller", _ref("Enqueued"), body=JSON_BODY, status="201"
        ),
        "get": _op("list tasks in the caller's reach", _page("TaskSummary"), params=TASK_FILTERS),
    },
    "/api/v1/tasks/{id}": {"get": _op("one task in full", _ref("Task"), params=[ID_PARAM])},
    "/api/v1/tasks/{id}/why": {
        "get": _op("a task's attempts and a verdict", _ref("Why"), params=[ID_PARAM])
    },
    "/api/v1/tasks/{id}/cancel": {
        "post": _op("cancel a pending or running task", _ref("Canceled"), params=[ID_PARAM])
    },
    "/api/v1/tasks/{id}/retry": {
        "post": _op("retry a failed or canceled task", _ref("Retried"), params=[ID_PARAM])
    },
    "/api/v1/batches": {
        "post": _op(
            "enqueue a batch file (YAML or JSON) in one transaction",
            _ref("BatchEnqueued"),
            body=BATCH_FILE,
            status="201",
        ),
        "get": _op("list batches with task counts", _page("Batch"), params=PAGING),
    },
    "/api/v1/batches/{id}": {"get": _op("one batch", _ref("Batch"), params=[ID_PARAM])},
    "/api/v1/batches/{id}/cancel": {
        "post": _op("cancel a batch's live tasks", _ref("Canceled"), params=[ID_PARAM])
    },
    "/api/v1/batches/{id}/retry": {
        "post": _op("retry a batch's failed and canceled tasks", _ref("Retried"), params=[ID_PARAM])
    },
    "/api/v1/workers": {
        "get": _op(
            "list workers (all=true: long-gone ones too)",
            _page("Worker"),
            params=[{"name": "all", "in": "query", "schema": {"type": "boolean"}}, *PAGING],
        ),
        **_worker("a worker registers (worker token)", status="201"),
    },
    "/api/v1/launches": {"get": _op("list launches", _page("Launch"), params=PAGING)},
    "/api/v1/launches/{id}": {
        "get": _op(
            "one launch with its jobs",
            _ref("Launch"),
            params=[{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}],
        )
    },
    "/api/v1/stats": {"get": _op("task counts per status and tag", _ref("Stats"))},
    "/api/v1/claim": _worker(
        "long-poll for a task (worker token); body: worker, wait, remaining, request_id"
    ),
    "/api/v1/tasks/{id}/heartbeat": _worker(
        "renew a claimed task's lease; body: worker, token, request_id", True
    ),
    "/api/v1/tasks/{id}/finish": _worker(
        "record a task's outcome; body: worker, token, request_id, outcome", True
    ),
    "/api/v1/tasks/{id}/release": _worker(
        "give a claimed task back; body: worker, token, request_id, reason", True
    ),
    "/api/v1/workers/{id}/exit": _worker(
        "record why a worker exited; body: reason, detail, request_id", True
    ),
}

DOCUMENT: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {
        "title": "hpclaunch queue API",
        "version": "1",
        "description": "Every route but /healthz needs the Authorization header (Bearer "
        "TOKEN, or Basic with the token's user name and the token). Errors are "
        '{"error": "one clear sentence"}.',
    },
    "servers": [{"url": "/"}],
    "security": [{"bearer": []}, {"basic": []}],
    "paths": PATHS,
    "components": {
        "schemas": SCHEMAS,
        "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer"},
            "basic": {"type": "http", "scheme": "basic"},
        },
    },
}


def openapi_route() -> Route:
    """``GET /api/v1/openapi.json`` (any valid token: it describes, it holds no data)."""

    async def document(request: Request) -> Response:
        return JSONResponse(DOCUMENT)

    return Route(PATH, document, methods=["GET"])
