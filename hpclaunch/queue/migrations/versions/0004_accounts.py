"""Accounts: users in groups, hashed tokens, and an owner and group on tasks and batches.

Rows that exist before this migration (and work enqueued straight into the
database) belong to the ``local`` user and group: the server defaults.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("group_name", sa.String(100), nullable=False),
        sa.Column("admin", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.UniqueConstraint("name", name="uq_users_name"),
    )
    op.create_table(
        "tokens",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("user_id", Id, sa.ForeignKey("users.id"), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("share_group", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=True),
        sa.Column("revoked_at", sa.Float(), nullable=True),
        sa.UniqueConstraint("token_hash", name="uq_tokens_hash"),
    )
    op.create_index("ix_tokens_user", "tokens", ["user_id"])
    for table in ("tasks", "batches"):
        op.add_column(
            table, sa.Column("owner", sa.String(100), nullable=False, server_default="local")
        )
        op.add_column(
            table,
            sa.Column("owner_group", sa.String(100), nullable=False, server_default="local"),
        )


def downgrade() -> None:
    for table in ("tasks", "batches"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("owner_group")
            batch.drop_column("owner")
    op.drop_index("ix_tokens_user", table_name="tokens")
    op.drop_table("tokens")
    op.drop_table("users")
