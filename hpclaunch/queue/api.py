"""The Python API: ``from hpclaunch import Queue``.

q = Queue()                       # same database resolution as the CLI
q = Queue(server="https://queue.lab.org", token=...)   # through `hpclaunch serve`
h = q.enqueue_command(["echo", "hi"], tags=["small"])
h = q.run_cloud(my_function, 1, 2, x=3)   # Simmate's name; cloudpickled
h.result(timeout=600)
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from hpclaunch.errors import UserError
from hpclaunch.queue import db, operations, results, store
from hpclaunch.queue.batches import Batch, TaskSpec, load_batch_file
from hpclaunch.queue.driver import Connection
from hpclaunch.queue.urls import resolve_database_url
from hpclaunch.states import FINISHED_TASK_STATUSES, TaskStatus
from hpclaunch.tasks.payloads import call_payload, canonical_tags, check_limits, command_payload

if TYPE_CHECKING:
    from hpclaunch.queue.remote import RemoteQueue

FINAL = FINISHED_TASK_STATUSES
SERVER_ENV = "HPCLAUNCH_SERVER"
T = TypeVar("T")


class TaskFailed(Exception):
    """``TaskHandle.result()`` on a task that failed or was canceled."""

    def __init__(self, task: dict[str, Any]):
        self.task = task
        detail = (task.get("error") or "").strip().splitlines()
        super().__init__(
            f"task {task['id']} {task['status']}"
            + (f" ({task.get('reason')})" if task.get("reason") else "")
            + (f": {detail[-1]}" if detail else "")
        )


class TaskHandle:
    """A task on the queue: poll it, wait for it, fetch its result, cancel it."""

    def __init__(self, queue: Queue, task_id: int):
        self.queue = queue
        self.id = task_id

    def __repr__(self) -> str:
        return f"<TaskHandle {self.id}>"

    @property
    def status(self) -> str:
        return self.queue._call(store.task_status, self.id)

    def wait(self, timeout: float | None = None, poll: float = 0.2) -> str:
        """Block until the task is completed, failed or canceled; returns the status."""
        end = None if timeout is None else time.monotonic() + timeout
        delay = min(poll, 0.05)
        while True:
            status = self.status
            if status in FINAL:
                return status
            if end is not None and time.monotonic() >= end:
                raise TimeoutError(f"task {self.id} is still {status} after {timeout} s")
            time.sleep(delay)
            delay = min(delay * 2, poll * 10, 2.0)

    def result(self, timeout: float | None = None, *, unpickle: bool = True) -> Any:
        """The task's result (JSON, or unpickled for run_cloud); raises TaskFailed.

        Only a ``pickle`` task may have a pickled result (unpickling runs code from
        the database); ``unpickle=False`` refuses even those.
        """
        self.wait(timeout)
        task = self.info()
        if task["status"] != TaskStatus.COMPLETED:
            raise TaskFailed(task)
        if task.get("has_pickled_result") and "result_pickled" not in task:
            raise UserError(
                f"task {self.id} has a pickled result; a server never sends pickles "
                "(read it with a Queue on the database)"
            )
        if task.get("result_pickled") is not None:
            if task["kind"] != "pickle" or not unpickle:
                why = (
                    "unpickle=False" if task["kind"] == "pickle" else f"it is a {task['kind']} task"
                )
                raise UserError(f"task {self.id} has a pickled result; not unpickling it ({why})")
            import cloudpickle

            return cloudpickle.loads(task["result_pickled"])
        if task["result"] is not None:
            return json.loads(task["result"])
        return task["exit_code"]  # a command: its exit code

    def cancel(self) -> bool:
        return bool(self.queue._call(operations.cancel, [self.id]))

    def info(self) -> dict[str, Any]:
        return self.queue._call(store.get_task, self.id)


class BatchHandle:
    """A batch on the queue: wait for all its tasks, read their results as rows."""

    def __init__(self, queue: Queue, batch_id: int):
        self.queue = queue
        self.id = batch_id

    def __repr__(self) -> str:
        return f"<BatchHandle {self.id}>"

    def counts(self) -> dict[str, int]:
        """Task counts per status."""
        return self.queue._call(results.progress, self.id)

    def wait(
        self,
        timeout: float | None = None,
        poll: float = 0.5,
        on_progress: Callable[[dict[str, int]], None] | None = None,
    ) -> dict[str, int]:
        """Block until every task is completed, failed or canceled; returns the counts.

        Raises ``TimeoutError`` (the counts in its message) if tasks are still
        pending or running after ``timeout`` seconds.
        """
        end = None if timeout is None else time.monotonic() + timeout
        delay = min(poll, 0.05)
        while True:
            counts = self.counts()
            if on_progress is not None:
                on_progress(counts)
            live = counts[TaskStatus.PENDING] + counts[TaskStatus.RUNNING]
            if not live:
                return counts
            if end is not None and time.monotonic() >= end:
                raise TimeoutError(
                    f"batch {self.id}: {live} task(s) still pending or running after {timeout:g} s"
                )
            time.sleep(delay if end is None else max(0.0, min(delay, end - time.monotonic())))
            delay = min(delay * 2, poll * 10, 5.0)

    def results(self) -> Iterator[dict[str, Any]]:
        """One row per task (parameters, status, attempts, runtime, exit code, result,
        error), read in pages: a batch of any size streams."""
        if self.queue.remote is not None:
            raise UserError("results() reads the database; it is not available through a server")
        return results.iter_rows(self.queue.conn, self.id, call=db.call)


class Queue:
    """A connection to the task queue, with defaults for the tasks it enqueues."""

    def __init__(
        self,
        database: str | None = None,
        *,
        server: str | None = None,
        token: str | None = None,
        ca_bundle: str | None = None,
        insecure_http: bool = False,
        tags: Iterable[str] | None = None,
        priority: int = 0,
        max_attempts: int = 3,
    ):
        """The database (``database`` or the CLI's resolution), or ``hpclaunch serve``
        at ``server`` (or ``HPCLAUNCH_SERVER``) with ``token`` (else ``HPCLAUNCH_TOKEN``
        or ``HPCLAUNCH_TOKEN_FILE``)."""
        if server and database:
            raise UserError("give Queue a database or a server, not both")
        server = server or (None if database else os.environ.get(SERVER_ENV) or None)
        self.remote: RemoteQueue | None = None
        self._local = threading.local()
        self._opened: list[Connection] = []
        self._lock = threading.Lock()
        if server:
            from hpclaunch.queue.remote import RemoteQueue  # the HTTP client, only when used

            self.url = server
            self.remote = RemoteQueue.connect(
                server, token=token, ca_bundle=ca_bundle, insecure_http=insecure_http
            )
        else:
            self.url = resolve_database_url(database)
            self.conn  # noqa: B018 - connect (and check the schema) now, not at first use
        self.tags = list(tags or [])
        self.priority = priority
        self.max_attempts = max_attempts

    @property
    def conn(self) -> Connection:
        """This thread's connection: a Queue may be shared by threads, a connection not."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = db.connect(self.url)
            with self._lock:
                self._opened.append(conn)
        return conn

    def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(conn, ...)`` on the database, or the server's answer to it."""
        if self.remote is not None:
            return self.remote.call(fn, *args, **kwargs)
        return db.call(self.conn, fn, *args, **kwargs)

    def close(self) -> None:
        """Close the queue's database connections."""
        with self._lock:
            opened, self._opened = self._opened, []
        for conn in opened:
            conn.close()
        self._local = threading.local()

    def _insert(self, specs: list[TaskSpec], pickled: bytes | None = None) -> int:
        return self._call(store.insert_tasks, specs, pickled=pickled)[0]

    def _spec(
        self,
        kind: str,
        payload: dict,
        *,
        tags,
        priority,
        max_attempts,
        timeout,
        expected_runtime,
        name,
    ) -> TaskSpec:
        priority = self.priority if priority is None else priority
        max_attempts = self.max_attempts if max_attempts is None else max_attempts
        check_limits(
            priority=priority,
            max_attempts=max_attempts,
            timeout=timeout,
            expected_runtime=expected_runtime,
        )
        return TaskSpec(
            kind=kind,
            payload=payload,
            tags=canonical_tags(self.tags if tags is None else tags),
            priority=priority,
            max_attempts=max_attempts,
            timeout=timeout,
            expected_runtime=expected_runtime,
            name=name,
        )

    def enqueue_command(
        self,
        command: Sequence[str] | str,
        *,
        shell: bool | None = None,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        tags: Iterable[str] | None = None,
        priority: int | None = None,
        max_attempts: int | None = None,
        timeout: float | None = None,
        expected_runtime: float | None = None,
        name: str | None = None,
    ) -> TaskHandle:
        """A command: an argv list, or a string run by the shell."""
        shell = isinstance(command, str) if shell is None else shell
        payload = command_payload(command, shell=shell, cwd=cwd, env=env)
        spec = self._spec(
            "command",
            payload,
            tags=tags,
            priority=priority,
            max_attempts=max_attempts,
            timeout=timeout,
            expected_runtime=expected_runtime,
            name=name,
        )
        return TaskHandle(self, self._insert([spec]))

    def enqueue_call(
        self,
        target: str,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        tags: Iterable[str] | None = None,
        priority: int | None = None,
        max_attempts: int | None = None,
        timeout: float | None = None,
        expected_runtime: float | None = None,
        name: str | None = None,
    ) -> TaskHandle:
        """A call of ``package.module:function`` with JSON arguments; its JSON result is kept."""
        payload = call_payload(target, args, kwargs)
        spec = self._spec(
            "call",
            payload,
            tags=tags,
            priority=priority,
            max_attempts=max_attempts,
            timeout=timeout,
            expected_runtime=expected_runtime,
            name=name,
        )
        return TaskHandle(self, self._insert([spec]))

    def run_cloud(self, fn: Callable, /, *args: Any, **kwargs: Any) -> TaskHandle:
        """Schedule ``fn(*args, **kwargs)`` on a worker (cloudpickled, as in Simmate).

        Whoever can write the queue database can run code on the workers; workers
        started with ``--no-pickle`` refuse these tasks.
        """
        return self.submit_pickled(fn, args, kwargs)

    def submit_pickled(
        self,
        fn: Callable,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        tags: Iterable[str] | None = None,
        priority: int | None = None,
        max_attempts: int | None = None,
        timeout: float | None = None,
        expected_runtime: float | None = None,
        name: str | None = None,
    ) -> TaskHandle:
        """``run_cloud`` with task options (tags, priority, ...)."""
        import cloudpickle

        if not callable(fn):
            raise UserError(f"run_cloud needs a callable, got {type(fn).__name__}")
        blob = cloudpickle.dumps((fn, tuple(args), dict(kwargs or {})))
        label = name or getattr(fn, "__qualname__", None)
        spec = self._spec(
            "pickle",
            {"function": label},
            tags=tags,
            priority=priority,
            max_attempts=max_attempts,
            timeout=timeout,
            expected_runtime=expected_runtime,
            name=label,
        )
        return TaskHandle(self, self._insert([spec], pickled=blob))

    def enqueue_batch(self, batch: Batch | str) -> tuple[int, list[TaskHandle]]:
        """A batch (a parsed ``Batch`` or a batch file path), all tasks in one transaction."""
        if isinstance(batch, str):
            batch = load_batch_file(batch)
        from hpclaunch.queue import simx

        batch_id, ids = self._call(simx.enqueue_batch, batch, simx.ADMINISTRATOR)
        return batch_id, [TaskHandle(self, i) for i in ids]

    def batch(self, batch_id: int) -> BatchHandle:
        """A batch by ID (NotFound if there is none)."""
        self._call(results.batch_info, batch_id)
        return BatchHandle(self, batch_id)

    def task(self, task_id: int) -> TaskHandle:
        self._call(store.get_task, task_id)
        return TaskHandle(self, task_id)
