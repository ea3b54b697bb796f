"""SQLAlchemy Core tables: the single description of the queue's schema.

Alembic migrations create these; ``tests/taskqueue/test_migrations.py`` checks that
the migrated database and this module agree. Times are float epoch seconds
(database clock where the database sets them) so SQLite and PostgreSQL compare
them the same way.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

metadata = MetaData()

# SQLite only auto-increments INTEGER PRIMARY KEY, PostgreSQL wants BIGINT.
Id = BigInteger().with_variant(Integer(), "sqlite")

batches = Table(
    "batches",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("created_by", String(100), nullable=True),
    Column("spec", Text, nullable=False),
    Column("n_tasks", Integer, nullable=False),
    Column("canceled_at", Float, nullable=True),
    # Who owns the row: the ``local`` user and group unless the server says otherwise.
    Column("owner", String(100), nullable=False, server_default="local"),
    Column("owner_group", String(100), nullable=False, server_default="local"),
    Index("ix_batches_group", "owner_group", "id"),
)

# The dashboard's cookie-signing secret: one row (id 1) shared by every server process.
ui_secrets = Table(
    "ui_secrets",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("secret", String(128), nullable=False),
    Column("created_at", Float, nullable=False),
)

# Accounts: every user belongs to one group; a token is stored as the SHA-256 of a
# high-entropy secret, so checking one is a unique-index lookup.
users = Table(
    "users",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("name", String(100), nullable=False),
    Column("group_name", String(100), nullable=False),
    Column("admin", Integer, nullable=False, server_default="0"),
    Column("created_at", Float, nullable=False),
    UniqueConstraint("name", name="uq_users_name"),
)

tokens = Table(
    "tokens",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("user_id", Id, ForeignKey("users.id"), nullable=False),
    Column("token_hash", String(64), nullable=False),
    Column("role", String(16), nullable=False),
    Column("share_group", Integer, nullable=False, server_default="0"),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=True),
    Column("revoked_at", Float, nullable=True),
    UniqueConstraint("token_hash", name="uq_tokens_hash"),
    Index("ix_tokens_user", "user_id"),
)

# One row per dashboard sign-in; the cookie names it (signed). Signing out ends it.
ui_sessions = Table(
    "ui_sessions",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("token_id", Id, ForeignKey("tokens.id"), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("ended_at", Float, nullable=True),
    Index("ix_ui_sessions_expires", "expires_at"),
)

workers = Table(
    "workers",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("tags", String(512), nullable=False),
    Column("mode", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("started_at", Float, nullable=False),
    Column("heartbeat_at", Float, nullable=False),
    Column("stopped_at", Float, nullable=True),
    Column("exit_reason", String(32), nullable=True),
    Column("exit_detail", Text, nullable=True),
    Column("lease", Float, nullable=False),
    Column("scheduler", String(16), nullable=True),
    Column("job_id", String(64), nullable=True),
    Column("array_job_id", String(64), nullable=True),
    Column("array_index", Integer, nullable=True),
    Column("launch_id", String(64), nullable=True),
    Column("version", String(32), nullable=True),
    # The server's worker token that registered it (NULL: a direct-database worker):
    # only that token may act for it.
    Column("token_id", Id, nullable=True),
    # The engines it has handlers for (comma-joined, sorted); NULL: none.
    Column("engines", String(512), nullable=True),
    Index("ix_workers_status", "status"),
    Index("ix_workers_launch", "launch_id"),
)

tasks = Table(
    "tasks",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("batch_id", Id, ForeignKey("batches.id"), nullable=True),
    Column("name", String(200), nullable=True),
    Column("kind", String(16), nullable=False),
    # kind 'engine': the named handler it needs (SIMX); only a worker that provides
    # it claims the task. NULL for every other kind. Its param and run are in payload.
    Column("engine", String(64), nullable=True),
    Column("payload", Text, nullable=False),
    Column("pickled", LargeBinary, nullable=True),
    # Canonical tag set: sorted, comma-joined. Workers match by subset.
    Column("tags", String(512), nullable=False),
    Column("priority", Integer, nullable=False, server_default="0"),
    Column("max_attempts", Integer, nullable=False, server_default="3"),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("timeout", Float, nullable=True),
    Column("expected_runtime", Float, nullable=True),
    Column("status", String(16), nullable=False),
    Column("reason", String(64), nullable=True),
    Column("created_at", Float, nullable=False),
    Column("started_at", Float, nullable=True),
    Column("finished_at", Float, nullable=True),
    Column("worker_id", Id, ForeignKey("workers.id"), nullable=True),
    # Fencing token of the current attempt: completions must present it.
    Column("claim_token", String(40), nullable=True),
    Column("lease_expires_at", Float, nullable=True),
    # The idle worker waiting for this attempt's silent owner (``claims.watch``);
    # it counts only while that worker heart-beats. A claim clears it.
    Column("watcher_id", Id, nullable=True),
    Column("exit_code", Integer, nullable=True),
    Column("result", Text, nullable=True),
    Column("result_pickled", LargeBinary, nullable=True),
    Column("error", Text, nullable=True),
    Column("stdout_tail", Text, nullable=True),
    Column("stderr_tail", Text, nullable=True),
    Column("log_dir", Text, nullable=True),
    # Who owns the row: the ``local`` user and group unless the server says otherwise.
    Column("owner", String(100), nullable=False, server_default="local"),
    Column("owner_group", String(100), nullable=False, server_default="local"),
    # Partial indexes: pending tasks in exactly the claim's order (a claim reads
    # one entry, never sorts), running tasks by lease (the reaper). Both stay
    # small however many finished tasks the table holds.
    Index(
        "ix_tasks_pending",
        text("priority DESC"),
        "id",
        postgresql_where=text("status = 'pending'"),
        sqlite_where=text("status = 'pending'"),
    ),
    Index(
        "ix_tasks_running_lease",
        "lease_expires_at",
        postgresql_where=text("status = 'running'"),
        sqlite_where=text("status = 'running'"),
    ),
    Index("ix_tasks_status", "status"),
    Index("ix_tasks_batch", "batch_id"),
    Index("ix_tasks_worker", "worker_id"),
    # The dashboard, each covering its query (read from the index alone): finished
    # tasks by time, a batch's tasks by status, counts per group, tag set and status.
    Index("ix_tasks_finished", "finished_at", "status", "owner_group"),
    Index("ix_tasks_batch_status", "batch_id", "status", "id"),
    Index("ix_tasks_group_tags", "owner_group", "tags", "status"),
)

task_attempts = Table(
    "task_attempts",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("task_id", Id, ForeignKey("tasks.id"), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("worker_id", Id, ForeignKey("workers.id"), nullable=True),
    Column("started_at", Float, nullable=True),
    Column("finished_at", Float, nullable=False),
    # completed | failed | released | lost | canceled
    Column("outcome", String(16), nullable=False),
    Column("reason", String(64), nullable=True),
    Column("exit_code", Integer, nullable=True),
    Column("error", Text, nullable=True),
    Index("ix_task_attempts_task", "task_id"),
    Index("ix_task_attempts_worker", "worker_id"),
)

# Workers over HTTP: the answer to each claim/finish/release under the client's
# request ID, so a retry whose reply was lost gets the same answer (``queue.requests``).
worker_requests = Table(
    "worker_requests",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("worker_id", Id, nullable=False),
    Column("request_id", String(64), nullable=False),
    Column("op", String(16), nullable=False),
    Column("task_id", Id, nullable=True),
    Column("claim_token", String(40), nullable=True),  # a claim's: its task is received
    Column("answer", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    UniqueConstraint("worker_id", "request_id", name="uq_worker_requests"),
    Index("ix_worker_requests_created", "created_at"),
)

# --- launches (what was submitted where, with which scheduler job IDs) --------

launches = Table(
    "launches",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("site", String(100), nullable=False),
    Column("host", String(255), nullable=True),
    Column("scheduler", String(16), nullable=False),
    Column("workdir", Text, nullable=False),
    Column("log_dir", Text, nullable=False),
    Column("workers", Integer, nullable=False),
    Column("tags", String(512), nullable=False),
    # submitting | submitted | partial | failed | canceled | broken
    Column("status", String(16), nullable=False),
    Column("submitted_at", Float, nullable=False),
    Column("submitted_by", String(100), nullable=True),
    Column("profile", Text, nullable=False),
    Column("broken_reason", Text, nullable=True),
    Column("canceled_at", Float, nullable=True),
    # why the rest of a partial launch was not submitted (submit --resume sends it)
    Column("refused", Text, nullable=True),
    Column("keeper", String(200), nullable=True),  # the elastic keeper that submitted it
    Index("ix_launches_site_status", "site", "status"),
)

launch_jobs = Table(
    "launch_jobs",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("launch_id", String(64), ForeignKey("launches.id"), nullable=False),
    Column("chunk", Integer, nullable=False),
    Column("job_name", String(128), nullable=False),
    Column("job_id", String(64), nullable=True),
    Column("elements", Integer, nullable=False),
    Column("workers_per_element", Integer, nullable=False),
    Column("array", Integer, nullable=False),
    Column("script", Text, nullable=False),
    Column("script_path", Text, nullable=False),
    Column("submitted_at", Float, nullable=True),
    Index("ux_launch_jobs_chunk", "launch_id", "chunk", unique=True),
)

# The scheduler's last verdict on each array element (written by status/reconcile).
launch_elements = Table(
    "launch_elements",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("launch_id", String(64), ForeignKey("launches.id"), nullable=False),
    Column("job_id", String(64), nullable=False),
    Column("array_index", Integer, nullable=True),
    Column("state", String(32), nullable=False),
    Column("reason", Text, nullable=True),
    Column("exit_code", Integer, nullable=True),
    Column("seen_at", Float, nullable=False),
    Column("settled", Integer, nullable=False, server_default="0"),
    Index("ux_launch_elements", "launch_id", "job_id", "array_index", unique=True),
)

# Elastic keepers (``submit --keep``): one row per site + worker tags, with a lease.
keepers = Table(
    "keepers",
    metadata,
    Column("id", String(200), primary_key=True),
    Column("site", String(100), nullable=False),
    Column("holder", String(200), nullable=True),
    Column("lease_until", Float, nullable=False, server_default="0"),
    Column("started_at", Float, nullable=False),
    Column("cycle_at", Float, nullable=True),
    Column("settings", Text, nullable=False),
    Column("stopped", Text, nullable=True),
)
