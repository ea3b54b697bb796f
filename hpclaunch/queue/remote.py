"""The queue operations the CLI and ``Queue`` call, answered by ``hpclaunch serve``.

Each method has the name and the result shape of the database operation it
stands for (``store.list_tasks``, ``operations.cancel``, ``history.explain``...),
so a command prints the same thing whichever way it reached the queue.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from hpclaunch.errors import NotFound, UserError
from hpclaunch.queue.batches import Batch, TaskSpec
from hpclaunch.queue.http_client import CA_BUNDLE_ENV, ApiClient, read_token
from hpclaunch.validate import API_PAGE_MAX

V1 = "/api/v1"


def task_body(spec: TaskSpec, pickled: bytes | None = None) -> dict[str, Any]:
    """The API's JSON body for a task built by the CLI's payload builders (pure)."""
    payload = spec.payload
    body: dict[str, Any] = {
        "tags": spec.tags.split(","),
        "priority": spec.priority,
        "max_attempts": spec.max_attempts,
        "timeout": spec.timeout,
        "expected_runtime": spec.expected_runtime,
        "name": spec.name,
    }
    if spec.kind == "command":
        if "shell" in payload:
            body.update(command=payload["shell"], shell=True)
        else:
            body.update(command=payload["argv"], shell=False)
        body.update({k: payload[k] for k in ("cwd", "env") if k in payload})
    elif spec.kind == "call":
        body.update(call=payload["target"], args=payload["args"], kwargs=payload["kwargs"])
    elif spec.kind == "engine":
        body.update(engine=payload["engine"], param=payload["param"])
    elif spec.kind == "pickle" and pickled is not None:
        import base64

        body["pickle"] = base64.b64encode(pickled).decode()
    else:
        raise UserError(f"a {spec.kind} task cannot be sent to the server")
    return {k: v for k, v in body.items() if v is not None}


class RemoteQueue:
    """The server's answers to the queue operations, by the operations' names."""

    def __init__(self, client: ApiClient):
        self.client = client

    @classmethod
    def connect(
        cls,
        server: str,
        *,
        token: str | None = None,
        ca_bundle: str | None = None,
        insecure_http: bool = False,
    ) -> RemoteQueue:
        """A client for ``server`` (token and CA bundle from the environment unless given)."""
        return cls(
            ApiClient(
                server,
                token or read_token(),
                ca_bundle=ca_bundle or os.environ.get(CA_BUNDLE_ENV) or None,
                insecure_http=insecure_http,
            )
        )

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """What ``fn(conn, *args, **kwargs)`` returns on the database, asked of the server."""
        method = getattr(self, fn.__name__, None)
        if method is None:
            raise UserError("this is not available through a server; use --database")
        return method(*args, **kwargs)

    def _get(self, path: str, **query: Any) -> Any:
        return self.client.request("GET", V1 + path, query=query)

    def _post(self, path: str, body: Any = None, data: bytes | None = None) -> Any:
        return self.client.request("POST", V1 + path, body=body, data=data)

    # -- store ---------------------------------------------------------------
    def insert_tasks(self, specs: Sequence[TaskSpec], *, pickled: bytes | None = None) -> list[int]:
        return [self._post("/tasks", task_body(s, pickled))["task_ids"][0] for s in specs]

    def insert_batch(self, batch: Batch) -> tuple[int, list[int]]:
        import json

        made = self._post("/batches", data=json.dumps(batch.spec, default=str).encode())
        return int(made["batch_id"]), [int(i) for i in made["task_ids"]]

    def enqueue_batch(self, batch: Batch, caller: object) -> tuple[int, list[int]]:
        """The server checks the batch's user/group against the token, not ``caller``."""
        return self.insert_batch(batch)

    def list_tasks(
        self,
        *,
        status: str | None = None,
        tag: str | None = None,
        batch_id: int | None = None,
        limit: int | None = None,
        newest: bool = False,
    ) -> list[dict[str, Any]]:
        query = {"status": status, "tag": tag, "batch": batch_id}
        if newest and limit:
            if limit <= API_PAGE_MAX:  # one page of the newest, as the server reads them
                page = self.client.request(
                    "GET", V1 + "/tasks", query={**query, "newest": "true", "limit": limit}
                )
                return list(page["items"])
            return self.client.pages(V1 + "/tasks", query)[-limit:]  # pages run forward
        return self.client.pages(V1 + "/tasks", query, limit)

    def get_task(self, task_id: int) -> dict[str, Any]:
        return self._get(f"/tasks/{task_id}")

    def task_and_attempts(self, task_id: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        task = self.get_task(task_id)
        return task, task.pop("attempt_history")

    def task_status(self, task_id: int) -> str:
        return self.get_task(task_id)["status"]

    def list_batches(self) -> list[dict[str, Any]]:
        return self.client.pages(V1 + "/batches", {})

    def list_workers(self, *, include_gone: bool = False) -> list[dict[str, Any]]:
        return self.client.pages(V1 + "/workers", {"all": "true" if include_gone else None})

    def stats(self) -> dict[str, Any]:
        return self._get("/stats")

    def progress(self, batch_id: int) -> dict[str, int]:
        return self._get(f"/batches/{batch_id}")["counts"]

    def batch_info(self, batch_id: int) -> dict[str, Any]:
        return self._get(f"/batches/{batch_id}")

    # -- operations and history ----------------------------------------------
    def explain(self, task_id: int) -> dict[str, Any]:
        return self._get(f"/tasks/{task_id}/why")

    def cancel(self, task_ids: Iterable[int] = (), *, batch_id: int | None = None) -> list[int]:
        if batch_id is not None:
            return self._post(f"/batches/{batch_id}/cancel")["canceled"]
        ids = list(dict.fromkeys(task_ids))
        for task_id in ids:  # all or none missing, as on the database
            self.task_status(task_id)
        canceled: list[int] = []
        for task_id in ids:
            canceled += self._post(f"/tasks/{task_id}/cancel")["canceled"]
        return sorted(canceled)

    def retry(self, task_ids: Iterable[int] = (), *, all_failed: bool = False) -> list[int]:
        ids = list(dict.fromkeys(task_ids))
        if not ids and all_failed:
            ids = [t["id"] for t in self.list_tasks(status="failed")]
        elif not ids:
            raise UserError("name task IDs or pass --failed")
        for task_id in ids:  # refuse before changing anything, as on the database
            status = self.task_status(task_id)
            if status not in ("failed", "canceled"):
                raise UserError(
                    f"task {task_id} is {status}; only failed or canceled tasks can be retried"
                )
        retried: list[int] = []
        for task_id in ids:
            try:
                retried += self._post(f"/tasks/{task_id}/retry")["retried"]
            except NotFound:
                continue
        return sorted(retried)
