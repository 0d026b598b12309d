"""Suppressions: analyst rules that make the fog count, instead of post, the alerts they match; and their audit.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "suppressions",
        sa.Column("suppression_id", sa.String(32), primary_key=True),
        sa.Column("site_id", sa.String(128), nullable=True),
        sa.Column("device_id", sa.String(128), nullable=True),
        sa.Column("peer", sa.String(64), nullable=True),
        sa.Column("technique_id", sa.String(16), nullable=True),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("created_at_us", sa.BigInteger, nullable=False),
        sa.Column("expires_at_us", sa.BigInteger, nullable=True),
        sa.Column("revoked_at_us", sa.BigInteger, nullable=True),
        sa.Column("revoked_by", sa.String(128), nullable=True),
        sa.Column("hit_count", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("last_hit_at_us", sa.BigInteger, nullable=True),
        sa.Column("source_alert_id", sa.String(128), nullable=True),
    )
    for col in ("device_id", "created_at_us"):
        op.create_index(f"ix_suppressions_{col}", "suppressions", [col])
    op.create_table(
        "suppression_audit",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("suppression_id", sa.String(32),
                  sa.ForeignKey("suppressions.suppression_id", ondelete="CASCADE"), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("key_name", sa.String(128), nullable=False),
        sa.Column("key_id", sa.Integer, nullable=False),
        sa.Column("at_us", sa.BigInteger, nullable=False),
        sa.Column("detail", sa.JSON, nullable=False),
    )
    op.create_index("ix_suppression_audit_suppression_id", "suppression_audit", ["suppression_id"])


def downgrade() -> None:
    op.drop_table("suppression_audit")
    op.drop_table("suppressions")
