"""Launches refused half-way (why the rest waits), and elastic keepers (``submit --keep``).

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The scheduler's refusal (or the limit) that stopped the submission; the chunks
    # without a job ID are what `hpclaunch submit --resume` submits later.
    op.add_column("launches", sa.Column("refused", sa.Text(), nullable=True))
    # The elastic keeper whose cycle submitted the launch (NULL: a plain submit).
    op.add_column("launches", sa.Column("keeper", sa.String(200), nullable=True))
    # One row per elastic keeper (site + worker tags): its settings and a lease, so a
    # restarted loop takes over and two loops on one site never both submit.
    op.create_table(
        "keepers",
        sa.Column("id", sa.String(200), primary_key=True),
        sa.Column("site", sa.String(100), nullable=False),
        sa.Column("holder", sa.String(200), nullable=True),
        sa.Column("lease_until", sa.Float(), nullable=False, server_default="0"),
        sa.Column("started_at", sa.Float(), nullable=False),
        sa.Column("cycle_at", sa.Float(), nullable=True),
        sa.Column("settings", sa.Text(), nullable=False),
        sa.Column("stopped", sa.Text(), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("keepers")
    with op.batch_alter_table("launches") as batch:
        batch.drop_column("keeper")
        batch.drop_column("refused")
