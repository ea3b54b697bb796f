"""Initial queue schema: batches, workers, tasks, task_attempts.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "batches",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("created_by", sa.String(100), nullable=True),
        sa.Column("spec", sa.Text, nullable=False),
        sa.Column("n_tasks", sa.Integer, nullable=False),
        sa.Column("canceled_at", sa.Float, nullable=True),
    )
    op.create_table(
        "workers",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("tags", sa.String(512), nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("heartbeat_at", sa.Float, nullable=False),
        sa.Column("stopped_at", sa.Float, nullable=True),
        sa.Column("exit_reason", sa.String(32), nullable=True),
        sa.Column("exit_detail", sa.Text, nullable=True),
        sa.Column("lease", sa.Float, nullable=False),
        sa.Column("scheduler", sa.String(16), nullable=True),
        sa.Column("job_id", sa.String(64), nullable=True),
        sa.Column("array_job_id", sa.String(64), nullable=True),
        sa.Column("array_index", sa.Integer, nullable=True),
        sa.Column("launch_id", sa.String(64), nullable=True),
        sa.Column("version", sa.String(32), nullable=True),
    )
    op.create_index("ix_workers_status", "workers", ["status"])
    op.create_index("ix_workers_launch", "workers", ["launch_id"])
    op.create_table(
        "tasks",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("batch_id", Id, sa.ForeignKey("batches.id"), nullable=True),
        sa.Column("name", sa.String(200), nullable=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("pickled", sa.LargeBinary, nullable=True),
        sa.Column("tags", sa.String(512), nullable=False),
        sa.Column("priority", sa.Integer, nullable=False, server_default="0"),
        sa.Column("max_attempts", sa.Integer, nullable=False, server_default="3"),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("timeout", sa.Float, nullable=True),
        sa.Column("expected_runtime", sa.Float, nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(64), nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("started_at", sa.Float, nullable=True),
        sa.Column("finished_at", sa.Float, nullable=True),
        sa.Column("worker_id", Id, sa.ForeignKey("workers.id"), nullable=True),
        sa.Column("claim_token", sa.String(40), nullable=True),
        sa.Column("lease_expires_at", sa.Float, nullable=True),
        sa.Column("exit_code", sa.Integer, nullable=True),
        sa.Column("result", sa.Text, nullable=True),
        sa.Column("result_pickled", sa.LargeBinary, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("stdout_tail", sa.Text, nullable=True),
        sa.Column("stderr_tail", sa.Text, nullable=True),
        sa.Column("log_dir", sa.Text, nullable=True),
    )
    pending = sa.text("status = 'pending'")
    running = sa.text("status = 'running'")
    op.create_index(
        "ix_tasks_pending",
        "tasks",
        [sa.text("priority DESC"), "id"],
        postgresql_where=pending,
        sqlite_where=pending,
    )
    op.create_index(
        "ix_tasks_running_lease",
        "tasks",
        ["lease_expires_at"],
        postgresql_where=running,
        sqlite_where=running,
    )
    op.create_index("ix_tasks_status", "tasks", ["status"])
    if op.get_context().dialect.name == "postgresql":
        # A queue table churns: vacuum and re-plan it early, not after 20% dead rows.
        op.execute(
            "ALTER TABLE tasks SET (autovacuum_vacuum_scale_factor = 0.02, "
            "autovacuum_analyze_scale_factor = 0.02)"
        )
    op.create_index("ix_tasks_batch", "tasks", ["batch_id"])
    op.create_index("ix_tasks_worker", "tasks", ["worker_id"])
    op.create_table(
        "task_attempts",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("task_id", Id, sa.ForeignKey("tasks.id"), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("worker_id", Id, sa.ForeignKey("workers.id"), nullable=True),
        sa.Column("started_at", sa.Float, nullable=True),
        sa.Column("finished_at", sa.Float, nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(64), nullable=True),
        sa.Column("exit_code", sa.Integer, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
    )
    op.create_index("ix_task_attempts_task", "task_attempts", ["task_id"])


def downgrade() -> None:
    op.drop_table("task_attempts")
    op.drop_table("tasks")
    op.drop_table("workers")
    op.drop_table("batches")
