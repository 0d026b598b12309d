"""SQLAlchemy 2 tables of the cloud service (the Alembic migrations in ``cloud/migrations`` create them).

Times are stored as integer microseconds since the epoch (UTC): exact, sortable, the same on SQLite
and PostgreSQL.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    """Declarative base of every cloud table."""


class AlertRow(Base):
    """One alert as received from a fog coordinator, plus its triage state."""

    __tablename__ = "alerts"

    alert_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    ts_us: Mapped[int] = mapped_column(BigInteger, nullable=False)
    site_id: Mapped[str] = mapped_column(String(128), nullable=False, index=True)
    device_id: Mapped[str] = mapped_column(String(128), nullable=False, index=True)
    level: Mapped[int] = mapped_column(SmallInteger, nullable=False, index=True)
    attack_class: Mapped[str] = mapped_column(String(64), nullable=False)
    confidence: Mapped[float] = mapped_column(Float, nullable=False)
    technique_ids: Mapped[list[str]] = mapped_column(JSON, nullable=False)
    tactics: Mapped[list[dict[str, Any]]] = mapped_column(JSON, nullable=False)
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    policy_version: Mapped[str] = mapped_column(String(128), nullable=False)
    status: Mapped[str] = mapped_column(String(32), nullable=False, default="new", index=True)
    note: Mapped[str | None] = mapped_column(Text, nullable=True)
    received_at_us: Mapped[int] = mapped_column(BigInteger, nullable=False)
    updated_at_us: Mapped[int] = mapped_column(BigInteger, nullable=False)
    incident_id: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)

    __table_args__ = (Index("ix_alerts_ts_id", "ts_us", "alert_id"),)


class AlertTechniqueRow(Base):
    """Alert × ATT&CK technique, so the technique filter is an indexed lookup on every database."""

    __tablename__ = "alert_techniques"

    alert_id: Mapped[str] = mapped_column(String(128), ForeignKey("alerts.alert_id", ondelete="CASCADE"),
                                          primary_key=True)
    technique_id: Mapped[str] = mapped_column(String(16), primary_key=True, index=True)


class ExplanationRow(Base):
    """The explanation of one alert (built-in or model-written, always validated)."""

    __tablename__ = "explanations"

    alert_id: Mapped[str] = mapped_column(String(128), ForeignKey("alerts.alert_id", ondelete="CASCADE"),
                                          primary_key=True)
    source: Mapped[str] = mapped_column(String(160), nullable=False)
    body: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    created_at_us: Mapped[int] = mapped_column(BigInteger, nullable=False)


class ApiKeyRow(Base):
    """An API key: only its SHA-256 digest is kept."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128), nullable=False)
    key_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    role: Mapped[str] = mapped_column(String(16), nullable=False)
    created_at_us: Mapped[int] = mapped_column(BigInteger, nullable=False)
    revoked: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)


class SiteRow(Base):
    """A site's baseline state as its fog last reported it (``PUT /api/v1/sites/{site_id}``)."""

    __tablename__ = "sites"

    site_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    state: Mapped[str] = mapped_column(String(16), nullable=False)
    grace_elapsed_s: Mapped[float] = mapped_column(Float, nullable=False)
    grace_s: Mapped[float] = mapped_column(Float, nullable=False)
    grace_windows: Mapped[int] = mapped_column(Integer, nullable=False)
    devices_own: Mapped[int] = mapped_column(Integer, nullable=False)
    updated_at_us: Mapped[int] = mapped_column(BigInteger, nullable=False)


class IncidentRow(Base):
    """Alerts grouped as one attack (:mod:`cloud.services.incidents`): one actor, one technique family, a
    time span with gaps of at most ``GAP_S`` between its alerts."""

    __tablename__ = "incidents"

    incident_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    key: Mapped[str] = mapped_column(String(400), nullable=False, index=True)
    attack_class: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    actor: Mapped[str] = mapped_column(String(200), nullable=False)
    actor_role: Mapped[str] = mapped_column(String(16), nullable=False)
    site_ids: Mapped[list[str]] = mapped_column(JSON, nullable=False)
    device_ids: Mapped[list[str]] = mapped_column(JSON, nullable=False)
    technique_ids: Mapped[list[str]] = mapped_column(JSON, nullable=False)
    first_ts_us: Mapped[int] = mapped_column(BigInteger, nullable=False)
    last_ts_us: Mapped[int] = mapped_column(BigInteger, nullable=False, index=True)
    alert_count: Mapped[int] = mapped_column(Integer, nullable=False)
    max_level: Mapped[int] = mapped_column(SmallInteger, nullable=False, index=True)
    status: Mapped[str] = mapped_column(String(32), nullable=False, default="new", index=True)
    note: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at_us: Mapped[int] = mapped_column(BigInteger, nullable=False)
    updated_at_us: Mapped[int] = mapped_column(BigInteger, nullable=False)


class SuppressionRow(Base):
    """An analyst's suppression rule (``/api/v1/suppressions``): the fog counts, instead of posting, the alerts
    it matches. Every given matcher (site, device, peer, technique) must match; a revoked or expired rule is
    inactive but kept, with its audit trail."""

    __tablename__ = "suppressions"

    suppression_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    site_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    device_id: Mapped[str | None] = mapped_column(String(128), nullable=True, index=True)
    peer: Mapped[str | None] = mapped_column(String(64), nullable=True)
    technique_id: Mapped[str | None] = mapped_column(String(16), nullable=True)
    reason: Mapped[str] = mapped_column(Text, nullable=False)
    created_by: Mapped[str] = mapped_column(String(128), nullable=False)
    created_at_us: Mapped[int] = mapped_column(BigInteger, nullable=False, index=True)
    expires_at_us: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    revoked_at_us: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    revoked_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    hit_count: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    last_hit_at_us: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    source_alert_id: Mapped[str | None] = mapped_column(String(128), nullable=True)


class SuppressionAuditRow(Base):
    """One change of a suppression (``created``, ``updated``, ``revoked``, ``hits``): who (the key's name and
    id), when, and what (``detail``)."""

    __tablename__ = "suppression_audit"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    suppression_id: Mapped[str] = mapped_column(String(32), ForeignKey("suppressions.suppression_id",
                                                                       ondelete="CASCADE"), nullable=False, index=True)
    action: Mapped[str] = mapped_column(String(16), nullable=False)
    key_name: Mapped[str] = mapped_column(String(128), nullable=False)
    key_id: Mapped[int] = mapped_column(Integer, nullable=False)
    at_us: Mapped[int] = mapped_column(BigInteger, nullable=False)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
