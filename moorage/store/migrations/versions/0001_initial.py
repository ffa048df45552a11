"""Initial schema: models, endpoint configs, endpoints.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "models",
        sa.Column("name", sa.String(63), primary_key=True),
        sa.Column("arn", sa.String(2048), nullable=False),
        sa.Column("creation_time", sa.Float, nullable=False),
        sa.Column("spec", sa.JSON, nullable=False),
        sa.Column("tags", sa.JSON, nullable=False),
    )
    op.create_table(
        "endpoint_configs",
        sa.Column("name", sa.String(63), primary_key=True),
        sa.Column("arn", sa.String(2048), nullable=False),
        sa.Column("creation_time", sa.Float, nullable=False),
        sa.Column("spec", sa.JSON, nullable=False),
        sa.Column("tags", sa.JSON, nullable=False),
    )
    op.create_table(
        "endpoints",
        sa.Column("name", sa.String(63), primary_key=True),
        sa.Column("name_key", sa.String(63), nullable=False),
        sa.Column("arn", sa.String(2048), nullable=False),
        sa.Column("config_name", sa.String(63), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("failure_reason", sa.Text, nullable=True),
        sa.Column("creation_time", sa.Float, nullable=False),
        sa.Column("last_modified_time", sa.Float, nullable=False),
        sa.Column("deployed", sa.JSON, nullable=True),
        sa.Column("pending", sa.JSON, nullable=True),
        sa.Column("pending_start_time", sa.Float, nullable=True),
        sa.Column("deployment_config", sa.JSON, nullable=True),
        sa.Column("tags", sa.JSON, nullable=False),
        sa.Column("generation", sa.Integer, nullable=False),
    )
    op.create_index("ix_endpoints_name_key", "endpoints", ["name_key"], unique=True)


def downgrade() -> None:
    op.drop_index("ix_endpoints_name_key", "endpoints")
    op.drop_table("endpoints")
    op.drop_table("endpoint_configs")
    op.drop_table("models")
