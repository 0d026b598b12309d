"""Sites: each site's baseline state (learning in its grace period, or detecting).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sites",
        sa.Column("site_id", sa.String(128), primary_key=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("grace_elapsed_s", sa.Float, nullable=False),
        sa.Column("grace_s", sa.Float, nullable=False),
        sa.Column("grace_windows", sa.Integer, nullable=False),
        sa.Column("devices_own", sa.Integer, nullable=False),
        sa.Column("updated_at_us", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("sites")
