"""Routes: what the reconciling server routes each endpoint's traffic to, for the other servers sharing
the database (several front doors).

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "routes",
        sa.Column("endpoint_name", sa.String(63), primary_key=True),
        sa.Column("snapshot", sa.JSON, nullable=False),
        sa.Column("published_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("routes")
