"""The dashboard: the shared cookie-signing secret, sessions, and indexes its pages read by.

``ui_secrets`` holds one row (``id = 1``): every server process signs and checks
session cookies with it, so a session survives a restart and works behind a
load balancer. ``ui_sessions`` is one row per sign-in: signing out (or the
token's revocation) ends it for every copy of the cookie. The indexes keep
every page bounded at 100,000 tasks: finished tasks by time (the per-minute
chart), tasks by batch and status (progress bars, the filtered task table) and
by group, attempts by worker (the launch timeline).

Revision ID: 0007
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "ui_secrets",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("secret", sa.String(128), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
    )
    op.create_table(
        "ui_sessions",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("token_id", Id, sa.ForeignKey("tokens.id"), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.Column("ended_at", sa.Float(), nullable=True),
    )
    op.create_index("ix_ui_sessions_expires", "ui_sessions", ["expires_at"])
    op.create_index("ix_tasks_finished", "tasks", ["finished_at", "status", "owner_group"])
    op.create_index("ix_tasks_batch_status", "tasks", ["batch_id", "status", "id"])
    op.create_index("ix_tasks_group_tags", "tasks", ["owner_group", "tags", "status"])
    op.create_index("ix_task_attempts_worker", "task_attempts", ["worker_id"])
    op.create_index("ix_batches_group", "batches", ["owner_group", "id"])


def downgrade() -> None:
    op.drop_index("ix_batches_group", table_name="batches")
    op.drop_index("ix_task_attempts_worker", table_name="task_attempts")
    op.drop_index("ix_tasks_group_tags", table_name="tasks")
    op.drop_index("ix_tasks_batch_status", table_name="tasks")
    op.drop_index("ix_tasks_finished", table_name="tasks")
    op.drop_index("ix_ui_sessions_expires", table_name="ui_sessions")
    op.drop_table("ui_sessions")
    op.drop_table("ui_secrets")
