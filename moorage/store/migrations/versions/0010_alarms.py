"""Alarms: CloudWatch metric alarms on Moorage's own metrics and their history (deployment guardrails).

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alarms",
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("arn", sa.String(2048), nullable=False),
        sa.Column("spec", sa.JSON, nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("state_reason", sa.Text, nullable=False),
        sa.Column("state_reason_data", sa.Text, nullable=True),
        sa.Column("state_updated", sa.Float, nullable=False),
        sa.Column("state_transitioned", sa.Float, nullable=False),
        sa.Column("configuration_updated", sa.Float, nullable=False),
        sa.Column("tags", sa.JSON, nullable=False),
    )
    op.create_table(
        "alarm_history",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("alarm_name", sa.String(255), nullable=False, index=True),
        sa.Column("timestamp", sa.Float, nullable=False, index=True),
        sa.Column("item_type", sa.String(32), nullable=False),
        sa.Column("summary", sa.Text, nullable=False),
        sa.Column("data", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("alarm_history")
    op.drop_table("alarms")
