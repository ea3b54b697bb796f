"""The task queue: a database table that workers pull from.

Two access paths share one schema:

* ``queue.driver`` + ``queue.claims``: plain DB-API (sqlite3 / psycopg) for the
  worker's hot path, because importing SQLAlchemy alone costs ~0.2 s of every
  array element's cold start;
* ``queue.schema`` + ``queue.store`` + ``queue.api``: SQLAlchemy Core for the CLI,
  the Python API and Alembic migrations.
"""
