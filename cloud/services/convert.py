"""Conversions between stored rows and the public schemas."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pydantic_core

from cloud.schemas import AlertCreate, AlertPublic, ExplanationPublic

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def us_to_dt(us: int) -> datetime:
    """Epoch microseconds → aware UTC datetime."""
    return EPOCH + timedelta(microseconds=us)


def dt_to_us(dt: datetime) -> int:
    """Aware (or naive-as-UTC) datetime → epoch microseconds, exactly."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    delta = dt - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def alert_to_row(alert: AlertCreate, technique_ids: list[str], tactics: list[dict[str, str]],
                 evidence: dict[str, Any] | None = None) -> dict[str, Any]:
    """Columns of a new alert row (``evidence``: ``alert.evidence.model_dump()`` if already computed)."""
    now = dt_to_us(datetime.now(UTC))
    return {
        "alert_id": alert.alert_id, "ts_us": dt_to_us(alert.ts), "site_id": alert.site_id,
        "device_id": alert.device_id, "level": alert.level, "attack_class": alert.attack_class,
        "confidence": alert.confidence, "technique_ids": technique_ids, "tactics": tactics,
        "evidence": alert.evidence.model_dump() if evidence is None else evidence, "policy_version": alert.policy_version,
        "status": "new", "note": None, "received_at_us": now, "updated_at_us": now,
    }


def explanation_public(source: str, body: dict[str, Any], created_at_us: int) -> ExplanationPublic:
    """A stored explanation as its public schema."""
    return ExplanationPublic(**body, source=source, created_at=us_to_dt(created_at_us))


def alert_public(row: dict[str, Any], explanation: ExplanationPublic | None = None) -> AlertPublic:
    """A stored alert (as a column dict) as its public schema."""
    return AlertPublic(
        alert_id=row["alert_id"], ts=us_to_dt(row["ts_us"]), site_id=row["site_id"], device_id=row["device_id"],
        level=row["level"], attack_class=row["attack_class"], confidence=row["confidence"],
        technique_ids=row["technique_ids"], tactics=row["tactics"], evidence=row["evidence"],
        policy_version=row["policy_version"], status=row["status"], note=row["note"],
        received_at=us_to_dt(row["received_at_us"]), updated_at=us_to_dt(row["updated_at_us"]),
        explanation_status="ready" if explanation is not None else "pending", explanation=explanation)


def iso_z(us: int) -> str:
    """Epoch microseconds → ISO 8601 in UTC with a ``Z``, exactly as pydantic writes an aware datetime."""
    return us_to_dt(us).isoformat()[:-6] + "Z"  # drop "+00:00"; microseconds only when non-zero, as pydantic


def alert_public_json(row: dict[str, Any]) -> bytes:
    """A freshly stored alert (no explanation yet) as the JSON of :class:`AlertPublic`, without building
    the model: the ingest answer. Equal, once parsed, to ``alert_public(row).model_dump_json()``
    (the tests check it); the row's evidence was normalized by :class:`AlertCreate` on the way in."""
    doc = {
        "alert_id": row["alert_id"], "ts": iso_z(row["ts_us"]), "site_id": row["site_id"],
        "device_id": row["device_id"], "level": row["level"], "attack_class": row["attack_class"],
        "confidence": row["confidence"], "technique_ids": row["technique_ids"], "tactics": row["tactics"],
        "evidence": row["evidence"], "policy_version": row["policy_version"], "status": row["status"],
        "note": row["note"], "received_at": iso_z(row["received_at_us"]), "updated_at": iso_z(row["updated_at_us"]),
        "explanation_status": "pending", "explanation": None,
    }
    return pydantic_core.to_json(doc)  # compact UTF-8 JSON, serialized in Rust
