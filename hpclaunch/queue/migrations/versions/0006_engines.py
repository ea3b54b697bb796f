"""Engines (SIMX): a task may name an engine instead of a command; workers list theirs.

``tasks.engine`` is what the claim matches (a task of engine E goes only to a
worker that provides E); the task's ``param`` and run index live in its payload.
``workers.engines`` is what a worker advertised, for ``workers`` and ``/workers``.

Revision ID: 0006
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("tasks", sa.Column("engine", sa.String(64), nullable=True))
    op.add_column("workers", sa.Column("engines", sa.String(512), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("workers") as batch:
        batch.drop_column("engines")
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("engine")
