"""Launches: what was submitted where, its chunks' job IDs, per-element verdicts.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "launches",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("site", sa.String(100), nullable=False),
        sa.Column("host", sa.String(255), nullable=True),
        sa.Column("scheduler", sa.String(16), nullable=False),
        sa.Column("workdir", sa.Text, nullable=False),
        sa.Column("log_dir", sa.Text, nullable=False),
        sa.Column("workers", sa.Integer, nullable=False),
        sa.Column("tags", sa.String(512), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("submitted_at", sa.Float, nullable=False),
        sa.Column("submitted_by", sa.String(100), nullable=True),
        sa.Column("profile", sa.Text, nullable=False),
        sa.Column("broken_reason", sa.Text, nullable=True),
        sa.Column("canceled_at", sa.Float, nullable=True),
    )
    op.create_index("ix_launches_site_status", "launches", ["site", "status"])
    op.create_table(
        "launch_jobs",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("launch_id", sa.String(64), sa.ForeignKey("launches.id"), nullable=False),
        sa.Column("chunk", sa.Integer, nullable=False),
        sa.Column("job_name", sa.String(128), nullable=False),
        sa.Column("job_id", sa.String(64), nullable=True),
        sa.Column("elements", sa.Integer, nullable=False),
        sa.Column("workers_per_element", sa.Integer, nullable=False),
        sa.Column("array", sa.Integer, nullable=False),
        sa.Column("script", sa.Text, nullable=False),
        sa.Column("script_path", sa.Text, nullable=False),
        sa.Column("submitted_at", sa.Float, nullable=True),
    )
    op.create_index("ux_launch_jobs_chunk", "launch_jobs", ["launch_id", "chunk"], unique=True)
    op.create_table(
        "launch_elements",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("launch_id", sa.String(64), sa.ForeignKey("launches.id"), nullable=False),
        sa.Column("job_id", sa.String(64), nullable=False),
        sa.Column("array_index", sa.Integer, nullable=True),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("exit_code", sa.Integer, nullable=True),
        sa.Column("seen_at", sa.Float, nullable=False),
        sa.Column("settled", sa.Integer, nullable=False, server_default="0"),
    )
    op.create_index(
        "ux_launch_elements", "launch_elements", ["launch_id", "job_id", "array_index"], unique=True
    )


def downgrade() -> None:
    op.drop_table("launch_elements")
    op.drop_table("launch_jobs")
    op.drop_table("launches")
