"""Watchers: the one idle worker that waits for a silent owner's task to come back.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    # No foreign key: SQLite cannot add one to an existing table without a copy,
    # and a watcher that is gone simply no longer counts.
    op.add_column("tasks", sa.Column("watcher_id", Id, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("watcher_id")
