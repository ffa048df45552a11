"""Registered images: the environment and command that stand in for an image URI.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "images",
        sa.Column("uri", sa.String(2048), primary_key=True),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("python", sa.String(16), nullable=False),
        sa.Column("python_note", sa.Text, nullable=True),
        sa.Column("requirements", sa.JSON, nullable=False),
        sa.Column("command", sa.JSON, nullable=True),
        sa.Column("own_server", sa.Boolean, nullable=False),
        sa.Column("environment", sa.JSON, nullable=False),
        sa.Column("dropped", sa.JSON, nullable=False),
        sa.Column("registered_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("images")
