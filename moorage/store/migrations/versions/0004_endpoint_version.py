"""Endpoint rows carry a version: every write bumps it and is conditional on the version read.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # existing rows start at version 1, as a newly created endpoint does
    op.add_column("endpoints", sa.Column("version", sa.Integer, nullable=False, server_default="1"))


def downgrade() -> None:
    with op.batch_alter_table("endpoints") as batch:
        batch.drop_column("version")
