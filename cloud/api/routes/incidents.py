"""``/api/v1/incidents``: the alerts of one attack, grouped (role ``analyst``; rule in
:mod:`cloud.services.incidents`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, status
from sqlalchemy import Select, select, update
from sqlalchemy.orm import Session

from cloud.api.deps import AnalystDep, SessionDep, TimeQuery
from cloud.api.errors import AUTH_RESPONSES, BODY_RESPONSES, StrictJSONRoute
from cloud.api.paging import keyset_page, time_bounds_us
from cloud.api.routes.alerts import alerts_page
from cloud.models import AlertRow, IncidentRow
from cloud.schemas import (
    ID_PATTERN,
    AlertsPage,
    AlertUpdate,
    AttackClass,
    IncidentPublic,
    IncidentsPage,
    TriageStatus,
)
from cloud.services.convert import dt_to_us, readable, us_to_dt

router = APIRouter(prefix="/incidents", tags=["incidents"], route_class=StrictJSONRoute, responses=AUTH_RESPONSES)

IncidentIdPath = Annotated[str, Path(pattern=r"^[0-9a-f]{32}$", description="The incident's ID.")]


def incident_public(row: IncidentRow) -> IncidentPublic:
    """A stored incident as its public schema."""
    return IncidentPublic(
        incident_id=row.incident_id, attack_class=readable(row.attack_class), actor=readable(row.actor),
        actor_role=row.actor_role, site_ids=readable(row.site_ids), device_ids=readable(row.device_ids),
        technique_ids=readable(row.technique_ids), first_ts=us_to_dt(row.first_ts_us), last_ts=us_to_dt(row.last_ts_us),
        alert_count=row.alert_count, max_level=row.max_level, status=row.status, note=readable(row.note),
        created_at=us_to_dt(row.created_at_us), updated_at=us_to_dt(row.updated_at_us))


def _get_or_404(session: Session, incident_id: str) -> IncidentRow:
    row = session.get(IncidentRow, incident_id)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no incident with incident_id {incident_id!r}")
    return row


@router.get("", response_model=IncidentsPage)
def list_incidents(
    session: SessionDep,
    _: AnalystDep,
    site_id: Annotated[str | None, Query(pattern=ID_PATTERN, description="With an alert at this site.")] = None,
    device_id: Annotated[str | None, Query(pattern=ID_PATTERN, description="With an alert of this device.")] = None,
    attack_class: Annotated[AttackClass | None, Query(description="Technique family.")] = None,
    min_level: Annotated[int | None, Query(ge=0, le=4, description="Highest alert level at least this.")] = None,
    status_: Annotated[TriageStatus | None, Query(alias="status", description="Triage status.")] = None,
    since: Annotated[TimeQuery | None, Query(description="Active at or after (last alert ≥ since; ISO 8601).")] = None,
    until: Annotated[TimeQuery | None, Query(description="Active before (first alert < until; ISO 8601).")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=400, description="next_cursor of the previous page.")] = None,
) -> IncidentsPage:
    """Incidents, most recently active first, filtered; keyset pagination through ``cursor``."""
    stmt: Select = select(IncidentRow)
    if site_id is not None:
        stmt = stmt.where(IncidentRow.incident_id.in_(select(AlertRow.incident_id).where(AlertRow.site_id == site_id)))
    if device_id is not None:
        stmt = stmt.where(IncidentRow.incident_id.in_(
            select(AlertRow.incident_id).where(AlertRow.device_id == device_id)))
    if attack_class is not None:
        stmt = stmt.where(IncidentRow.attack_class == attack_class)
    if min_level is not None:
        stmt = stmt.where(IncidentRow.max_level >= min_level)
    if status_ is not None:
        stmt = stmt.where(IncidentRow.status == status_.value)
    since_us, until_us = time_bounds_us(since, until)
    if since_us is not None:
        stmt = stmt.where(IncidentRow.last_ts_us >= since_us)
    if until_us is not None:
        stmt = stmt.where(IncidentRow.first_ts_us < until_us)
    rows, next_cursor = keyset_page(session, stmt, IncidentRow.last_ts_us, IncidentRow.incident_id, limit, cursor)
    return IncidentsPage(items=[incident_public(r) for r in rows], next_cursor=next_cursor)


@router.get("/{incident_id}", response_model=IncidentPublic, responses={404: {"description": "No such incident."}})
def read_incident(incident_id: IncidentIdPath, session: SessionDep, _: AnalystDep) -> IncidentPublic:
    """One incident."""
    return incident_public(_get_or_404(session, incident_id))


@router.get("/{incident_id}/alerts", response_model=AlertsPage, responses={404: {"description": "No such incident."}})
def incident_alerts(
    incident_id: IncidentIdPath,
    session: SessionDep,
    _: AnalystDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, Query(max_length=400, description="next_cursor of the previous page.")] = None,
) -> AlertsPage:
    """The incident's alerts, newest first, with their explanations; keyset pagination through ``cursor``."""
    _get_or_404(session, incident_id)
    return alerts_page(session, select(AlertRow).where(AlertRow.incident_id == incident_id), limit, cursor)


@router.patch("/{incident_id}", response_model=IncidentPublic,
              responses={404: {"description": "No such incident."}, **BODY_RESPONSES})
def update_incident(incident_id: IncidentIdPath, update_: AlertUpdate, session: SessionDep,
                    _: AnalystDep) -> IncidentPublic:
    """Triage an incident: its status applies to every one of its alerts (the note stays on the incident).
    A ``resolved`` or ``false_positive`` incident takes no new alerts: later ones of the same actor open a
    new incident."""
    row = _get_or_404(session, incident_id)
    now = dt_to_us(datetime.now(UTC))
    if update_.status is not None:
        row.status = update_.status.value
        session.execute(update(AlertRow).where(AlertRow.incident_id == incident_id)
                        .values(status=update_.status.value, updated_at_us=now))
    if update_.note is not None:
        row.note = update_.note
    row.updated_at_us = now
    session.commit()
    return incident_public(row)
