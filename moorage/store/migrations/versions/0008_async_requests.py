"""Asynchronous inference: the queue of accepted InvokeEndpointAsync requests.

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
    op.create_table(
        "async_requests",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("endpoint_name", sa.String(63), nullable=False),
        sa.Column("inference_id", sa.String(64), nullable=False),
        sa.Column("output_id", sa.String(36), nullable=False),
        sa.Column("input_location", sa.Text, nullable=True),
        sa.Column("body", sa.LargeBinary, nullable=True),
        sa.Column("content_type", sa.Text, nullable=True),
        sa.Column("accept", sa.Text, nullable=True),
        sa.Column("custom_attributes", sa.Text, nullable=True),
        sa.Column("output_location", sa.Text, nullable=False),
        sa.Column("failure_location", sa.Text, nullable=False),
        sa.Column("notification", sa.JSON, nullable=True),
        sa.Column("accepted_at", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
        sa.Column("invocation_timeout", sa.Float, nullable=False),
        sqlite_autoincrement=True,  # a seq is never reused
    )
    # the dispatcher asks for an endpoint's oldest rows by seq
    op.create_index("ix_async_requests_endpoint_seq", "async_requests", ["endpoint_name", "seq"])


def downgrade() -> None:
    op.drop_index("ix_async_requests_endpoint_seq", table_name="async_requests")
    op.drop_table("async_requests")
