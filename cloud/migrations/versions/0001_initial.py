"""Initial schema: alerts, alert_techniques, explanations, api_keys.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alerts",
        sa.Column("alert_id", sa.String(128), primary_key=True),
        sa.Column("ts_us", sa.BigInteger, nullable=False),
        sa.Column("site_id", sa.String(128), nullable=False),
        sa.Column("device_id", sa.String(128), nullable=False),
        sa.Column("level", sa.SmallInteger, nullable=False),
        sa.Column("attack_class", sa.String(64), nullable=False),
        sa.Column("confidence", sa.Float, nullable=False),
        sa.Column("technique_ids", sa.JSON, nullable=False),
        sa.Column("tactics", sa.JSON, nullable=False),
        sa.Column("evidence", sa.JSON, nullable=False),
        sa.Column("policy_version", sa.String(128), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("note", sa.Text, nullable=True),
        sa.Column("received_at_us", sa.BigInteger, nullable=False),
        sa.Column("updated_at_us", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_alerts_ts_id", "alerts", ["ts_us", "alert_id"])
    op.create_index("ix_alerts_site_id", "alerts", ["site_id"])
    op.create_index("ix_alerts_device_id", "alerts", ["device_id"])
    op.create_index("ix_alerts_level", "alerts", ["level"])
    op.create_index("ix_alerts_status", "alerts", ["status"])
    op.create_table(
        "alert_techniques",
        sa.Column("alert_id", sa.String(128), sa.ForeignKey("alerts.alert_id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("technique_id", sa.String(16), primary_key=True),
    )
    op.create_index("ix_alert_techniques_technique_id", "alert_techniques", ["technique_id"])
    op.create_table(
        "explanations",
        sa.Column("alert_id", sa.String(128), sa.ForeignKey("alerts.alert_id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("source", sa.String(160), nullable=False),
        sa.Column("body", sa.JSON, nullable=False),
        sa.Column("created_at_us", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("created_at_us", sa.BigInteger, nullable=False),
        sa.Column("revoked", sa.Boolean, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("api_keys")
    op.drop_table("explanations")
    op.drop_index("ix_alert_techniques_technique_id", "alert_techniques")
    op.drop_table("alert_techniques")
    op.drop_table("alerts")
