"""Application Auto Scaling: scalable targets, scaling policies, scaling activities.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "scalable_targets",
        sa.Column("resource_id", sa.String(1600), primary_key=True),
        sa.Column("scalable_dimension", sa.String(128), primary_key=True),
        sa.Column("service_namespace", sa.String(32), nullable=False),
        sa.Column("endpoint_key", sa.String(63), nullable=False),
        sa.Column("endpoint_name", sa.String(63), nullable=False),
        sa.Column("variant_name", sa.String(63), nullable=False),
        sa.Column("arn", sa.String(2048), nullable=False),
        sa.Column("min_capacity", sa.Integer, nullable=False),
        sa.Column("max_capacity", sa.Integer, nullable=False),
        sa.Column("suspended_state", sa.JSON, nullable=False),
        sa.Column("tags", sa.JSON, nullable=False),
        sa.Column("creation_time", sa.Float, nullable=False),
        sa.Column("bounds_pending_since", sa.Float, nullable=True),
    )
    op.create_index("ix_scalable_targets_endpoint_key", "scalable_targets", ["endpoint_key"])
    op.create_table(
        "scaling_policies",
        sa.Column("resource_id", sa.String(1600), primary_key=True),
        sa.Column("scalable_dimension", sa.String(128), primary_key=True),
        sa.Column("policy_name", sa.String(256), primary_key=True),
        sa.Column("arn", sa.String(2048), nullable=False, unique=True),
        sa.Column("service_namespace", sa.String(32), nullable=False),
        sa.Column("policy_type", sa.String(32), nullable=False),
        sa.Column("configuration", sa.JSON, nullable=False),
        sa.Column("alarms", sa.JSON, nullable=False),
        sa.Column("creation_time", sa.Float, nullable=False),
    )
    op.create_table(
        "scaling_activities",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("activity_id", sa.String(64), nullable=False, unique=True),
        sa.Column("service_namespace", sa.String(32), nullable=False),
        sa.Column("resource_id", sa.String(1600), nullable=False),
        sa.Column("scalable_dimension", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("policy_name", sa.String(256), nullable=True),
        sa.Column("from_capacity", sa.Integer, nullable=True),
        sa.Column("capacity", sa.Integer, nullable=True),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("cause", sa.Text, nullable=False),
        sa.Column("start_time", sa.Float, nullable=False),
        sa.Column("end_time", sa.Float, nullable=True),
        sa.Column("status_code", sa.String(16), nullable=False),
        sa.Column("status_message", sa.Text, nullable=True),
        sa.Column("not_scaled_reasons", sa.JSON, nullable=True),
    )
    op.create_index("ix_scaling_activities_resource_id", "scaling_activities", ["resource_id"])
    op.create_index("ix_scaling_activities_status_code", "scaling_activities", ["status_code"])


def downgrade() -> None:
    op.drop_index("ix_scaling_activities_status_code", "scaling_activities")
    op.drop_index("ix_scaling_activities_resource_id", "scaling_activities")
    op.drop_table("scaling_activities")
    op.drop_table("scaling_policies")
    op.drop_index("ix_scalable_targets_endpoint_key", "scalable_targets")
    op.drop_table("scalable_targets")
