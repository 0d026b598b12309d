"""``/api/v1/suppressions``: analysts' rules that make the fog count, instead of post, the alerts they match.

Roles: ``analyst`` creates, lists, changes, revokes and reads the audit; a fog polls the active rules
(``GET /active``, either role) and reports how many alerts each rule suppressed (``POST /hits``, role
``ingest``). Every change — created, updated, revoked, and each hits report — writes an audit row with the
calling key's name and id and the time, in the same transaction as the change.

A rule matches an alert when *every* matcher it has matches (the fog applies it: ``fog/suppression.py``):
``site_id`` and ``device_id`` equal, ``technique_id`` among the alert's techniques, ``peer`` among the
addresses of its top peers (``evidence.peers``). A rule is *active* until revoked or past ``expires_at``;
revoked and expired rules are kept with their audit.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query, status
from sqlalchemy import Select, or_, select, update
from sqlalchemy.orm import Session

from cloud.api.deps import AnalystDep, AttackDep, IngestDep, Principal, PrincipalDep, SessionDep
from cloud.api.errors import AUTH_RESPONSES, BODY_RESPONSES, StrictJSONRoute, unprocessable
from cloud.api.paging import keyset_page
from cloud.models import SuppressionAuditRow, SuppressionRow
from cloud.schemas import (
    ID_PATTERN,
    SUPPRESSION_ID_PATTERN,
    SUPPRESSIONS_ACTIVE_MAX,
    AuditEntryPublic,
    AuditPage,
    SuppressionCreate,
    SuppressionHits,
    SuppressionHitsResult,
    SuppressionPublic,
    SuppressionRule,
    SuppressionRules,
    SuppressionsPage,
    SuppressionUpdate,
)
from cloud.services.convert import dt_to_us, readable, us_to_dt

router = APIRouter(prefix="/suppressions", tags=["suppressions"], route_class=StrictJSONRoute,
                   responses=AUTH_RESPONSES)

SuppressionIdPath = Annotated[str, Path(pattern=SUPPRESSION_ID_PATTERN, description="The suppression's ID.")]
NOT_FOUND = {404: {"description": "No such suppression."}}


def _now_us() -> int:
    return dt_to_us(datetime.now(UTC))


def _dt(us: int | None) -> datetime | None:
    return None if us is None else us_to_dt(us)


def is_active(row: SuppressionRow, now_us: int) -> bool:
    """Neither revoked nor expired at ``now_us`` (epoch microseconds)."""
    return row.revoked_at_us is None and (row.expires_at_us is None or row.expires_at_us > now_us)


def _active_clause(now_us: int) -> Any:
    return (SuppressionRow.revoked_at_us.is_(None)) & or_(SuppressionRow.expires_at_us.is_(None),
                                                           SuppressionRow.expires_at_us > now_us)


def suppression_public(row: SuppressionRow, now_us: int | None = None) -> SuppressionPublic:
    """A stored suppression as its public schema (``active`` as of ``now_us``, default now)."""
    return SuppressionPublic(
        suppression_id=row.suppression_id, site_id=row.site_id, device_id=row.device_id, peer=row.peer,
        technique_id=row.technique_id, reason=readable(row.reason), created_by=readable(row.created_by),
        created_at=us_to_dt(row.created_at_us), expires_at=_dt(row.expires_at_us), revoked_at=_dt(row.revoked_at_us),
        revoked_by=readable(row.revoked_by), source_alert_id=row.source_alert_id,
        active=is_active(row, _now_us() if now_us is None else now_us), hit_count=row.hit_count or 0,
        last_hit_at=_dt(row.last_hit_at_us))


def _audit(session: Session, suppression_id: str, action: str, who: Principal, at_us: int,
           detail: dict[str, Any]) -> None:
    session.add(SuppressionAuditRow(suppression_id=suppression_id, action=action, key_name=who.name,
                                    key_id=who.key_id, at_us=at_us, detail=detail))


def _get_or_404(session: Session, suppression_id: str) -> SuppressionRow:
    row = session.get(SuppressionRow, suppression_id)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no suppression with suppression_id {suppression_id!r}")
    return row


def _iso(dt: datetime | None) -> str | None:
    return None if dt is None else dt.astimezone(UTC).isoformat().replace("+00:00", "Z")


@router.post("", response_model=SuppressionPublic, status_code=status.HTTP_201_CREATED, responses=BODY_RESPONSES)
def create_suppression(body: SuppressionCreate, session: SessionDep, table: AttackDep,
                       who: AnalystDep) -> SuppressionPublic:
    """Create a rule (at least one of ``device_id``, ``peer``, ``technique_id``; optional ``site_id``,
    ``expires_at`` in the future, ``source_alert_id``; a ``reason``). An unknown ATT&CK technique, a peer that is
    not an IP or MAC address or a past expiry is refused with 422. Audited as ``created``."""
    if body.technique_id is not None and body.technique_id not in table:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=[unprocessable(
            ["body", "technique_id"], f"unknown ATT&CK technique id {body.technique_id!r}: not in the bundled "
            "ATT&CK table", "unknown_technique", body.technique_id)])
    now = _now_us()
    row = SuppressionRow(suppression_id=uuid.uuid4().hex, site_id=body.site_id, device_id=body.device_id,
                         peer=body.peer, technique_id=body.technique_id, reason=body.reason, created_by=who.name,
                         created_at_us=now,
                         expires_at_us=None if body.expires_at is None else dt_to_us(body.expires_at),
                         revoked_at_us=None, revoked_by=None, hit_count=0, last_hit_at_us=None,
                         source_alert_id=body.source_alert_id)
    session.add(row)
    session.flush()  # the audit row's foreign key needs the rule first (PostgreSQL checks it per statement)
    _audit(session, row.suppression_id, "created", who, now, body.model_dump(mode="json"))
    session.commit()
    return suppression_public(row, now)


@router.get("", response_model=SuppressionsPage)
def list_suppressions(
    session: SessionDep,
    _: AnalystDep,
    state: Annotated[Literal["active", "all"], Query(description="active: neither revoked nor expired; all: "
                                                                 "every rule ever made.")] = "active",
    device_id: Annotated[str | None, Query(pattern=ID_PATTERN, description="Rules of this device.")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=400, description="next_cursor of the previous page.")] = None,
) -> SuppressionsPage:
    """Suppressions, newest first; keyset pagination through ``cursor``."""
    now = _now_us()
    stmt: Select = select(SuppressionRow)
    if state == "active":
        stmt = stmt.where(_active_clause(now))
    if device_id is not None:
        stmt = stmt.where(SuppressionRow.device_id == device_id)
    rows, next_cursor = keyset_page(session, stmt, SuppressionRow.created_at_us, SuppressionRow.suppression_id,
                                    limit, cursor)
    return SuppressionsPage(items=[suppression_public(r, now) for r in rows], next_cursor=next_cursor)


# Declared before "/{suppression_id}" routes (and their pattern is 32 hex digits anyway): never shadowed.
@router.get("/active", response_model=SuppressionRules)
def active_rules(session: SessionDep, _: PrincipalDep) -> SuppressionRules:
    """The rules in force now (unrevoked, unexpired), newest first, with only what a fog needs to apply them
    (either role: the fog polls this with its ingest key)."""
    now = _now_us()
    rows = session.scalars(select(SuppressionRow).where(_active_clause(now))
                           .order_by(SuppressionRow.created_at_us.desc(), SuppressionRow.suppression_id.desc())
                           .limit(SUPPRESSIONS_ACTIVE_MAX + 1)).all()
    return SuppressionRules(items=[SuppressionRule(suppression_id=r.suppression_id, site_id=r.site_id,
                                                   device_id=r.device_id, peer=r.peer, technique_id=r.technique_id,
                                                   expires_at=_dt(r.expires_at_us))
                                   for r in rows[:SUPPRESSIONS_ACTIVE_MAX]],
                            truncated=len(rows) > SUPPRESSIONS_ACTIVE_MAX, generated_at=us_to_dt(now))


@router.post("/hits", response_model=SuppressionHitsResult, responses=BODY_RESPONSES)
def report_hits(body: SuppressionHits, session: SessionDep, who: IngestDep) -> SuppressionHitsResult:
    """A fog reports how many alerts each rule suppressed since its last report: each known rule's
    ``hit_count`` grows by its count and ``last_hit_at`` becomes now, with one ``hits`` audit row per rule
    (the ingest key's name); unknown ids are ignored and listed in ``unknown``."""
    now = _now_us()
    ids = sorted(body.counts)
    known = set(session.scalars(select(SuppressionRow.suppression_id)
                                .where(SuppressionRow.suppression_id.in_(ids)))) if ids else set()
    counted = [i for i in ids if i in known]
    for sid in counted:
        n = body.counts[sid]
        session.execute(update(SuppressionRow).where(SuppressionRow.suppression_id == sid)
                        .values(hit_count=SuppressionRow.hit_count + n, last_hit_at_us=now))
        _audit(session, sid, "hits", who, now, {"count": n})
    session.commit()
    return SuppressionHitsResult(counted=counted, unknown=[i for i in ids if i not in known])


@router.get("/{suppression_id}", response_model=SuppressionPublic, responses=NOT_FOUND)
def read_suppression(suppression_id: SuppressionIdPath, session: SessionDep, _: AnalystDep) -> SuppressionPublic:
    """One suppression."""
    return suppression_public(_get_or_404(session, suppression_id))


@router.patch("/{suppression_id}", response_model=SuppressionPublic,
              responses={**NOT_FOUND, 409: {"description": "The suppression is revoked."}, **BODY_RESPONSES})
def update_suppression(suppression_id: SuppressionIdPath, body: SuppressionUpdate, session: SessionDep,
                       who: AnalystDep) -> SuppressionPublic:
    """Change a rule's ``reason`` or ``expires_at`` (``null``: never expires; otherwise in the future). A revoked
    rule cannot change (409). Audited as ``updated`` with the values before and after."""
    row = _get_or_404(session, suppression_id)
    if row.revoked_at_us is not None:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=f"suppression {suppression_id} is revoked; create a "
                                                             "new one instead")
    now = _now_us()
    before: dict[str, Any] = {}
    after: dict[str, Any] = {}
    if "reason" in body.model_fields_set and body.reason != row.reason:
        before["reason"], after["reason"] = row.reason, body.reason
        row.reason = body.reason
    if "expires_at" in body.model_fields_set:
        new = None if body.expires_at is None else dt_to_us(body.expires_at)
        if new != row.expires_at_us:
            before["expires_at"], after["expires_at"] = _iso(_dt(row.expires_at_us)), _iso(body.expires_at)
            row.expires_at_us = new
    if after:
        _audit(session, suppression_id, "updated", who, now, {"before": before, "after": after})
    session.commit()
    return suppression_public(row, now)


@router.delete("/{suppression_id}", response_model=SuppressionPublic, responses=NOT_FOUND)
def revoke_suppression(suppression_id: SuppressionIdPath, session: SessionDep, who: AnalystDep) -> SuppressionPublic:
    """Revoke a rule (soft: it is kept, inactive, with its audit); answers the record. Revoking a revoked rule
    changes nothing. Audited as ``revoked``. The fogs stop applying it at their next refresh."""
    row = _get_or_404(session, suppression_id)
    now = _now_us()
    if row.revoked_at_us is None:
        row.revoked_at_us, row.revoked_by = now, who.name
        _audit(session, suppression_id, "revoked", who, now, {})
        session.commit()
    return suppression_public(row, now)


@router.get("/{suppression_id}/audit", response_model=AuditPage, responses=NOT_FOUND)
def suppression_audit(
    suppression_id: SuppressionIdPath,
    session: SessionDep,
    _: AnalystDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    cursor: Annotated[str | None, Query(pattern=r"^[0-9]{1,18}$", description="next_cursor of the previous "
                                                                                "page.")] = None,
) -> AuditPage:
    """The rule's changes, oldest first: who (key name and id), when, what."""
    _get_or_404(session, suppression_id)
    stmt = select(SuppressionAuditRow).where(SuppressionAuditRow.suppression_id == suppression_id)
    if cursor is not None:
        stmt = stmt.where(SuppressionAuditRow.id > int(cursor))
    rows = session.scalars(stmt.order_by(SuppressionAuditRow.id).limit(limit + 1)).all()
    more = len(rows) > limit
    rows = rows[:limit]
    return AuditPage(items=[AuditEntryPublic(id=r.id, suppression_id=r.suppression_id, action=r.action,
                                             key_name=readable(r.key_name), key_id=r.key_id, at=us_to_dt(r.at_us),
                                             detail=readable(r.detail) or {}) for r in rows],
                     next_cursor=str(rows[-1].id) if more else None)
