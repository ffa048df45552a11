"""Metric samples: each server's per-interval CloudWatch metrics of every endpoint variant, the history
GetMetricStatistics, GetMetricData and alarms read.

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "metric_samples",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("server_id", sa.String(32), nullable=False),
        sa.Column("namespace", sa.String(64), nullable=False),
        sa.Column("metric_name", sa.String(64), nullable=False),
        sa.Column("endpoint_name", sa.String(63), nullable=False),
        sa.Column("variant_name", sa.String(63), nullable=False),
        sa.Column("start", sa.Float, nullable=False),
        sa.Column("seconds", sa.Float, nullable=False),
        sa.Column("count", sa.Integer, nullable=False),
        sa.Column("total", sa.Float, nullable=False),
        sa.Column("minimum", sa.Float, nullable=False),
        sa.Column("maximum", sa.Float, nullable=False),
        sa.Column("buckets", sa.JSON, nullable=True),
    )
    op.create_index(
        "ix_metric_samples_metric",
        "metric_samples",
        ["namespace", "metric_name", "endpoint_name", "variant_name", "start"],
    )
    op.create_index("ix_metric_samples_start", "metric_samples", ["start"])


def downgrade() -> None:
    op.drop_index("ix_metric_samples_start", "metric_samples")
    op.drop_index("ix_metric_samples_metric", "metric_samples")
    op.drop_table("metric_samples")
