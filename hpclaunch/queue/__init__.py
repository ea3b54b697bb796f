"""The task queue: a database table that workers pull from.

One runtime access path: every operation on rows (the worker's, the CLI's, the
Python API's, ``launches``') runs over ``queue.driver`` (plain DB-API: sqlite3 /
psycopg), because importing SQLAlchemy alone costs ~0.2 s of every command and
array element's cold start. Where things are:

* ``queue.transitions``: the token-fenced statements every task transition is
  made of; ``queue.claims`` (the worker's operations) and ``queue.operations``
  (reap, retry, cancel, scheduler verdicts, ...) are built from them;
* ``queue.store``: enqueueing and listings; ``queue.history``: ``tasks why``;
* ``queue.db``: the CLI's and API's retried connection; ``queue.api``: ``Queue``;
* ``queue.schema`` + ``queue.migrate`` + ``queue/migrations``: SQLAlchemy and
  Alembic, for the schema only (loaded by ``hpclaunch db upgrade`` or when a
  fresh SQLite file is created, never when the schema is current).
"""
