"""Incidents: alerts grouped as one attack (one actor, one technique family, a time span).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "incidents",
        sa.Column("incident_id", sa.String(32), primary_key=True),
        sa.Column("key", sa.String(400), nullable=False),
        sa.Column("attack_class", sa.String(64), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("actor_role", sa.String(16), nullable=False),
        sa.Column("site_ids", sa.JSON, nullable=False),
        sa.Column("device_ids", sa.JSON, nullable=False),
        sa.Column("technique_ids", sa.JSON, nullable=False),
        sa.Column("first_ts_us", sa.BigInteger, nullable=False),
        sa.Column("last_ts_us", sa.BigInteger, nullable=False),
        sa.Column("alert_count", sa.Integer, nullable=False),
        sa.Column("max_level", sa.SmallInteger, nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("note", sa.Text, nullable=True),
        sa.Column("created_at_us", sa.BigInteger, nullable=False),
        sa.Column("updated_at_us", sa.BigInteger, nullable=False),
    )
    for col in ("key", "attack_class", "last_ts_us", "max_level", "status"):
        op.create_index(f"ix_incidents_{col}", "incidents", [col])
    with op.batch_alter_table("alerts") as batch:
        batch.add_column(sa.Column("incident_id", sa.String(32), nullable=True))
        batch.create_index("ix_alerts_incident_id", ["incident_id"])


def downgrade() -> None:
    with op.batch_alter_table("alerts") as batch:
        batch.drop_index("ix_alerts_incident_id")
        batch.drop_column("incident_id")
    op.drop_table("incidents")
