"""Traffic: each server's running invocation totals per endpoint variant, so the server that runs
autoscaling counts the invocations every server carried (several front doors).

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "traffic",
        sa.Column("server_id", sa.String(64), primary_key=True),
        sa.Column("endpoint_name", sa.String(63), primary_key=True),
        sa.Column("variant_name", sa.String(63), primary_key=True),
        sa.Column("totals", sa.JSON, nullable=False),
        sa.Column("reported_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("traffic")
