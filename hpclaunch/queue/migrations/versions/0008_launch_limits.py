"""Launches refused half-way: why the rest of a partial launch was not submitted.

Revision ID: 0008
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The scheduler's refusal (or the limit) that stopped the submission; the chunks
    # without a job ID are what `hpclaunch submit --resume` submits later.
    op.add_column("launches", sa.Column("refused", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("launches") as batch:
        batch.drop_column("refused")
