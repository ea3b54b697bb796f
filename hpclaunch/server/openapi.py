"""The OpenAPI 3.0 document of every route the server answers (data, written by hand).

Hand-written rather than generated: Starlette has no validation layer to
generate it from, and a plain dict keeps the contract readable in review. Row
schemas are permissive (``additionalProperties``) so a new column is not a
breaking change; the worker routes' bodies name the fields the HTTP worker
session sends and allow more.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from hpclaunch.queue import wire
from hpclaunch.queue.session import Claimed, Outcome, Watch, WorkerInfo

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
        "description": "exactly one of command, call, pickle or engine",
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
            "engine": {
                "type": "string",
                "description": "an engine task (like a batch file's engine): a worker "
                "providing this engine runs it with param",
            },
            "param": {"description": "any JSON value handed to the engine (engine only)"},
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

STRINGS = {"type": "array", "items": {"type": "string"}}
_KINDS: dict[str, dict[str, Any]] = {
    "int": INT,
    "float": {"type": "number"},
    "str": {"type": "string"},
    "bool": {"type": "boolean"},
    "bytes": {"type": "string", "format": "byte", "description": "base64"},
    "list[str]": STRINGS,
    "tuple[str, ...]": STRINGS,
}


def _dataclass(cls: Any) -> dict[str, Any]:
    """The JSON shape ``queue.wire`` reads and writes for a session dataclass: derived
    from its fields so the document cannot drift from what the routes accept."""
    properties: dict[str, Any] = {}
    required = []
    for field in dataclasses.fields(cls):
        annotation = str(field.type)
        schema: dict[str, Any] = dict(_KINDS[annotation.replace("| None", "").strip()])
        if "None" in annotation:
            schema["nullable"] = True
        properties[field.name] = schema
        if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            required.append(field.name)
    return {"type": "object", "required": required, "properties": properties}


REQUEST_ID = {"type": "string", "minLength": 1, "maxLength": wire.MAX_REQUEST_ID}
HELD = {
    "worker": INT,
    "token": {"type": "string", "minLength": 1, "maxLength": 64},
    "attempt": INT,
    "max_attempts": INT,
    "started_at": {"type": "number"},
}
SCHEMAS.update(
    {
        "WorkerInfo": _dataclass(WorkerInfo),
        "Claimed": _dataclass(Claimed),
        "Outcome": _dataclass(Outcome),
        "Watch": _dataclass(Watch),
        "SimxBatch": _row(
            ["id", "name", "user", "group", "n_runs", "status", "counts"],
            id=INT,
            name={"type": "string"},
            engine=STR,
            user={"type": "string"},
            group={"type": "string"},
            n_runs=INT,
            created_at={"type": "number"},
            canceled_at=NUM,
            status={"type": "string"},
            counts={"type": "object", "additionalProperties": INT},
        ),
        "SimxRun": _row(
            ["run", "task_id", "status"],
            run=INT,
            task_id=INT,
            name=STR,
            status={"type": "string", "enum": STATUSES},
            attempts=INT,
            worker_id=_nullable("integer"),
            exit_code=_nullable("integer"),
            result={"description": "the run's JSON result"},
            error=STR,
            reason=STR,
        ),
        "SimxWorker": _row(
            ["id", "host", "status", "runs_completed", "runs_failed"],
            id=INT,
            host={"type": "string"},
            tags={"type": "array", "items": {"type": "string"}},
            engines={"type": "array", "items": {"type": "string"}},
            status={"type": "string"},
            runs_completed=INT,
            runs_failed=INT,
            current_task=_nullable("integer"),
        ),
        "SimxEnqueued": _row(
            ["id", "name", "n_runs", "first_task_id", "last_task_id", "warnings"],
            id=INT,
            name={"type": "string"},
            engine=STR,
            n_runs=INT,
            first_task_id=INT,
            last_task_id=INT,
            warnings={"type": "array", "items": {"type": "string"}},
        ),
    }
)
SCHEMAS["SimxBatchDetail"] = {
    "allOf": [
        _ref("SimxBatch"),
        _row(
            ["runs"],
            param={"description": "the batch's param"},
            runs={"type": "array", "items": _ref("SimxRun")},
        ),
    ]
}


def _body(required: list[str], **properties: Any) -> dict[str, Any]:
    """A worker route's JSON body (unknown keys are ignored: a newer worker's extras)."""
    schema = {"type": "object", "required": required, "properties": properties}
    return {"application/json": {"schema": schema}}


TASK_FILTERS = [
    {"name": "status", "in": "query", "schema": {"type": "string", "enum": STATUSES}},
    {"name": "tag", "in": "query", "schema": {"type": "string"}},
    {"name": "batch", "in": "query", "schema": {"type": "integer", "minimum": 1}},
    # One page of the newest ``limit`` tasks, oldest first (no cursor).
    {"name": "newest", "in": "query", "schema": {"type": "boolean"}},
    *PAGING,
]
BATCH_FILE = {
    "application/x-yaml": {"schema": {"type": "string"}},
    "application/json": {"schema": ANY_OBJECT},
}


def _worker(
    summary: str,
    reply: dict[str, Any],
    body: dict[str, Any],
    *,
    with_id: bool = False,
    status: str = "200",
) -> dict[str, Any]:
    """A worker route: a worker or admin token and the worker protocol header;
    a user token is refused (403), an incompatible protocol gets 426."""
    op = _op(
        summary,
        reply,
        params=[ID_PARAM, PROTOCOL] if with_id else [PROTOCOL],
        body=body,
        status=status,
        tag="workers",
    )
    return {"post": op}


def _simx(summary: str, reply: dict[str, Any], **kw: Any) -> dict[str, Any]:
    """A SIMX runweb route (a user or admin token; a worker token gets 403)."""
    return {"get": _op(summary, reply, tag="simx", **kw)}


PROTOCOL = {
    "name": wire.PROTOCOL_HEADER,
    "in": "header",
    "required": True,
    "description": "the worker protocol version; another gets 426 and one line saying "
    "which versions the server needs",
    "schema": {
        "type": "string",
        "enum": [str(n) for n in range(wire.MIN_PROTOCOL, wire.PROTOCOL + 1)],
    },
}
OK = _row(["ok"], ok={"type": "boolean"})
STATUS = _row(["status"], status={**STR, "description": "the task's status after it"})
N_PARAM = {"name": "n", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 0}}
SIMX_BATCHES = {"type": "array", "items": _ref("SimxBatch")}
SIMX_WORKERS = {"type": "array", "items": _ref("SimxWorker")}


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
        **_worker(
            "a worker registers (worker token); body: its description",
            _row(["worker"], worker=INT),
            {"application/json": {"schema": _ref("WorkerInfo")}},
            status="201",
        ),
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
        "long-poll for a task: wait seconds at most, until one is claimed",
        _row(["task"], task={**_ref("Claimed"), "nullable": True}),
        _body(
            ["worker", "info", "request_id"],
            worker=INT,
            info=_ref("WorkerInfo"),
            request_id=REQUEST_ID,
            wait={"type": "number", "minimum": 0, "maximum": wire.MAX_WAIT},
            remaining=NUM,
            watching=_nullable("integer"),
        ),
    ),
    "/api/v1/tasks/{id}/heartbeat": _worker(
        "renew a claimed task's lease (and the worker's)",
        OK,
        _body([*HELD, "lease"], **HELD, lease={"type": "number"}),
        with_id=True,
    ),
    "/api/v1/tasks/{id}/finish": _worker(
        "record a task's outcome (fenced by its claim token)",
        STATUS,
        _body(
            [*HELD, "request_id", "outcome"],
            **HELD,
            request_id=REQUEST_ID,
            outcome=_ref("Outcome"),
        ),
        with_id=True,
    ),
    "/api/v1/tasks/{id}/release": _worker(
        "give a claimed task back",
        STATUS,
        _body(
            [*HELD, "request_id", "reason"],
            **HELD,
            request_id=REQUEST_ID,
            reason={"type": "string", "minLength": 1, "maxLength": 64},
            walltime_releases=INT,
        ),
        with_id=True,
    ),
    "/api/v1/workers/{id}/exit": _worker(
        "record why a worker exited",
        OK,
        _body(
            ["reason"],
            reason={"type": "string", "minLength": 1, "maxLength": 32},
            detail=STR,
        ),
        with_id=True,
    ),
    "/api/v1/workers/{id}/heartbeat": _worker(
        "a worker without a task says it is alive",
        OK,
        _body(["lease"], lease={"type": "number"}),
        with_id=True,
    ),
    "/api/v1/workers/{id}/watch": _worker(
        "a task whose worker went silent, for a worker that may take it over",
        _row(["watch"], watch={**_ref("Watch"), "nullable": True}),
        _body(["info"], info=_ref("WorkerInfo"), within=NUM),
        with_id=True,
    ),
    "/api/v1/workers/{id}/reap": _worker(
        "take back tasks whose lease ended: [task ID, new status] pairs",
        _row(["reaped"], reaped={"type": "array", "items": {"type": "array"}}),
        _body([]),
        with_id=True,
    ),
    "/api/v1/workers/{id}/too-long": _worker(
        "how many claimable tasks would not fit in the time remaining",
        _row(["count"], count=INT),
        _body(["info"], info=_ref("WorkerInfo"), remaining={"type": "number"}),
        with_id=True,
    ),
    "/api/v1/workers/{id}/release-orphans": _worker(
        "put back tasks the worker holds but does not know about (a lost claim reply)",
        _row(["released"], released={"type": "array", "items": INT}),
        _body([]),
        with_id=True,
    ),
    "/batch": _simx("SIMX: the caller's group's batches", SIMX_BATCHES),
    "/batches": _simx("SIMX: the caller's group's batches", SIMX_BATCHES),
    "/batch/{n}": _simx(
        "SIMX: one batch with all its runs", _ref("SimxBatchDetail"), params=[N_PARAM]
    ),
    "/batch/new": {
        "post": _op(
            "SIMX: enqueue a batch-req.yaml (the raw body, whatever its Content-Type)",
            _ref("SimxEnqueued"),
            body={"application/x-yaml": {"schema": {"type": "string"}}},
            status="201",
            tag="simx",
        )
    },
    "/worker": _simx("SIMX: every worker the caller's group knows", SIMX_WORKERS),
    "/workers": _simx("SIMX: every worker the caller's group knows", SIMX_WORKERS),
    "/user/{name}": _simx(
        "SIMX: the batches that user started (in the caller's reach)",
        SIMX_BATCHES,
        params=[{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}],
    ),
}

DOCUMENT: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {
        "title": "hpclaunch queue API",
        "version": "1",
        "description": "Every route but /healthz needs the Authorization header (Bearer "
        "TOKEN, or Basic with the token's user name and the token). Errors are "
        '{"error": "one clear sentence"}. Roles: the people and SIMX routes serve user '
        "and admin tokens (a worker token gets 403); the worker routes (tag workers) "
        "serve worker and admin tokens (a user token gets 403).",
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
