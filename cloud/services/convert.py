"""Conversions between stored rows and the public schemas.

Reads never fail on what the store holds: a row written before the API refused unencodable text (or
written by hand) may carry lone surrogates or non-finite numbers in its JSON columns; :func:`readable`
turns them into U+FFFD and ``null`` before a row becomes a public schema or an export line.
"""

from __future__ import annotations

import logging
import math
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pydantic_core
from pydantic import ValidationError

from cloud.schemas import AlertCreate, AlertPublic, Evidence, ExplanationPublic

log = logging.getLogger(__name__)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SURROGATES = re.compile("[\ud800-\udfff]")


def readable(value: Any) -> Any:
    """``value`` (JSON-like: str, numbers, lists, dicts) with every lone surrogate replaced by U+FFFD and
    every non-finite float by None, so it always serializes as JSON; unchanged objects are returned as is."""
    if isinstance(value, str):
        return value if value.isascii() or not _SURROGATES.search(value) else _SURROGATES.sub("\ufffd", value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, list):
        return [readable(v) for v in value]
    if isinstance(value, dict):
        return {readable(k): readable(v) for k, v in value.items()}
    return value


def readable_row(row: dict[str, Any]) -> dict[str, Any]:
    """A stored alert's columns made serializable (:func:`readable`)."""
    return {k: readable(v) for k, v in row.items()}


def stored_evidence(row: dict[str, Any]) -> Evidence:
    """The evidence of a stored alert (a :func:`readable_row`) as the schema; evidence that no longer
    validates (written around the API) becomes empty evidence, with a warning naming the alert."""
    try:
        return Evidence.model_validate(row["evidence"])
    except ValidationError as exc:
        log.warning("stored alert %s: evidence does not match the schema and is shown empty (%s)", row["alert_id"],
                    str(exc).splitlines()[0])
        return Evidence()


def us_to_dt(us: int) -> datetime:
    """Epoch microseconds → aware UTC datetime."""
    return EPOCH + timedelta(microseconds=us)


def dt_to_us(dt: datetime) -> int:
    """Aware (or naive-as-UTC) datetime → epoch microseconds, exactly."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    delta = dt - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def s_to_us(seconds: float) -> int:
    """Epoch seconds → epoch microseconds, rounded to the microsecond (whole seconds exactly)."""
    whole = math.floor(seconds)
    return whole * 1_000_000 + round((seconds - whole) * 1_000_000)


def alert_to_row(alert: AlertCreate, technique_ids: list[str], tactics: list[dict[str, str]],
                 evidence: dict[str, Any] | None = None) -> dict[str, Any]:
    """Columns of a new alert row (``evidence``: ``alert.evidence.model_dump()`` if already computed)."""
    now = dt_to_us(datetime.now(UTC))
    return {
        "alert_id": alert.alert_id, "ts_us": s_to_us(alert.ts), "site_id": alert.site_id,
        "device_id": alert.device_id, "level": alert.level, "attack_class": alert.attack_class,
        "confidence": alert.confidence, "technique_ids": technique_ids, "tactics": tactics,
        "evidence": alert.evidence.model_dump() if evidence is None else evidence, "policy_version": alert.policy_version,
        "status": "new", "note": None, "received_at_us": now, "updated_at_us": now, "incident_id": None,
    }


def explanation_public(source: str, body: dict[str, Any], created_at_us: int) -> ExplanationPublic | None:
    """A stored explanation as its public schema (None, logged, for a stored body that no longer validates:
    the alert is then shown with its explanation pending rather than not at all)."""
    try:
        return ExplanationPublic(**readable(body), source=readable(source), created_at=us_to_dt(created_at_us))
    except (ValidationError, TypeError) as exc:
        log.warning("a stored explanation (source %r) does not match the schema and is not shown: %s",
                    readable(source), str(exc).splitlines()[0])
        return None


def alert_public(row: dict[str, Any], explanation: ExplanationPublic | None = None) -> AlertPublic:
    """A stored alert (as a column dict) as its public schema.

    The row is made serializable first (:func:`readable`); evidence that no longer validates (written
    around the API) is shown empty, with a warning naming the alert, so one bad row never takes a
    listing down.
    """
    row = readable_row(row)
    evidence = stored_evidence(row)
    return AlertPublic(
        alert_id=row["alert_id"], ts=us_to_dt(row["ts_us"]), site_id=row["site_id"], device_id=row["device_id"],
        level=row["level"], attack_class=row["attack_class"], confidence=row["confidence"] or 0.0,
        technique_ids=row["technique_ids"], tactics=row["tactics"], evidence=evidence,
        policy_version=row["policy_version"], status=row["status"], note=row["note"],
        received_at=us_to_dt(row["received_at_us"]), updated_at=us_to_dt(row["updated_at_us"]),
        explanation_status="ready" if explanation is not None else "pending", explanation=explanation,
        incident_id=row.get("incident_id"))


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
        "explanation_status": "pending", "explanation": None, "incident_id": row.get("incident_id"),
    }
    return pydantic_core.to_json(doc)  # compact UTF-8 JSON, serialized in Rust
