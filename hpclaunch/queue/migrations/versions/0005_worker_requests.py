"""Workers over HTTP: recorded answers to client request IDs, and a wake-up on new work.

``workers.token_id``: the server's worker token that registered the row (NULL
for a direct-database worker); only that token may act for the worker.

``worker_requests`` keeps the answer to each worker request (claim, finish,
release) under the client's request ID, so a retry whose first reply was lost
gets the same answer, whichever server process it reaches, after a restart too.
Rows older than a day are deleted by the server (``queue.requests.expire``).

PostgreSQL only: two triggers ``pg_notify('hpclaunch_tasks', tags)`` when a task
becomes pending (inserted pending, or its status changed to pending), so a task
enqueued from anywhere wakes long-polling claims (``queue.wake``). SQLite has no
notifications: its listeners poll ``PRAGMA data_version``.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

NOTIFY_FUNCTION = """
CREATE OR REPLACE FUNCTION hpclaunch_notify_pending() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('hpclaunch_tasks', NEW.tags);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql
"""
TRIGGERS = (
    "CREATE TRIGGER hpclaunch_task_inserted AFTER INSERT ON tasks FOR EACH ROW "
    "WHEN (NEW.status = 'pending') EXECUTE FUNCTION hpclaunch_notify_pending()",
    "CREATE TRIGGER hpclaunch_task_requeued AFTER UPDATE OF status ON tasks FOR EACH ROW "
    "WHEN (NEW.status = 'pending' AND OLD.status IS DISTINCT FROM 'pending') "
    "EXECUTE FUNCTION hpclaunch_notify_pending()",
)


def upgrade() -> None:
    op.add_column("workers", sa.Column("token_id", Id, nullable=True))
    op.create_table(
        "worker_requests",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("worker_id", Id, nullable=False),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("op", sa.String(16), nullable=False),
        sa.Column("task_id", Id, nullable=True),
        sa.Column("claim_token", sa.String(40), nullable=True),
        sa.Column("answer", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.UniqueConstraint("worker_id", "request_id", name="uq_worker_requests"),
    )
    op.create_index("ix_worker_requests_created", "worker_requests", ["created_at"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute(NOTIFY_FUNCTION)
        for statement in TRIGGERS:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS hpclaunch_task_requeued ON tasks")
        op.execute("DROP TRIGGER IF EXISTS hpclaunch_task_inserted ON tasks")
        op.execute("DROP FUNCTION IF EXISTS hpclaunch_notify_pending()")
    op.drop_index("ix_worker_requests_created", table_name="worker_requests")
    op.drop_table("worker_requests")
    with op.batch_alter_table("workers") as batch:
        batch.drop_column("token_id")
