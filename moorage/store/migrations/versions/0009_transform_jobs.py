"""Batch transform jobs.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "transform_jobs",
        sa.Column("name", sa.String(63), primary_key=True),
        sa.Column("arn", sa.String(2048), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("failure_reason", sa.Text(), nullable=True),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("model", sa.JSON(), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("creation_time", sa.Float(), nullable=False),
        sa.Column("last_modified_time", sa.Float(), nullable=False),
        sa.Column("start_time", sa.Float(), nullable=True),
        sa.Column("end_time", sa.Float(), nullable=True),
        sa.Column("records_done", sa.Integer(), nullable=False),
        sa.Column("records_total", sa.Integer(), nullable=False),
        sa.Column("objects_done", sa.Integer(), nullable=False),
        sa.Column("objects_total", sa.Integer(), nullable=False),
        sa.Column("finished", sa.JSON(), nullable=False),
    )
    op.create_index("ix_transform_jobs_status", "transform_jobs", ["status"])


def downgrade() -> None:
    op.drop_index("ix_transform_jobs_status", table_name="transform_jobs")
    op.drop_table("transform_jobs")
