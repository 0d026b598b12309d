"""``/api/v1/alerts``: ingest (role ``ingest``), list, read and triage (role ``analyst``)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import Select, func, or_, select
from sqlalchemy.orm import Session

from cloud.api.deps import AnalystDep, IngestDep, SessionDep, TimeQuery
from cloud.api.errors import AUTH_RESPONSES, BODY_RESPONSES, StrictJSONRoute, unprocessable
from cloud.api.metrics import Metrics
from cloud.api.paging import keyset_page, time_bounds_us
from cloud.models import AlertRow, AlertTechniqueRow, ExplanationRow
from cloud.schemas import (
    ALERT_ID_PATTERN,
    ID_PATTERN,
    TECHNIQUE_ID_PATTERN,
    AlertCreate,
    AlertPublic,
    AlertsPage,
    AlertUpdate,
    ExplanationPublic,
    TriageStatus,
)
from cloud.services.attack import AttackTable, UnknownTechniqueError
from cloud.services.convert import alert_public, alert_public_json, alert_to_row, dt_to_us, explanation_public
from cloud.services.writer import AlertWriter, QueueFullError, row_dict

router = APIRouter(prefix="/alerts", tags=["alerts"], route_class=StrictJSONRoute, responses=AUTH_RESPONSES)

AlertIdPath = Annotated[str, Path(pattern=ALERT_ID_PATTERN, description="The alert's ID.")]


def _explanations(session: Session, ids: list[str]) -> dict[str, ExplanationPublic]:
    if not ids:
        return {}
    rows = session.scalars(select(ExplanationRow).where(ExplanationRow.alert_id.in_(ids)))
    out = {r.alert_id: explanation_public(r.source, r.body, r.created_at_us) for r in rows}
    return {k: v for k, v in out.items() if v is not None}


@router.post("", response_model=AlertPublic, status_code=status.HTTP_201_CREATED,
             responses={200: {"model": AlertPublic, "description": "Already stored: the stored alert, unchanged."},
                        **BODY_RESPONSES, 503: {"description": "Ingest queue full; retry later."}})
async def create_alert(alert: AlertCreate, request: Request, _: IngestDep) -> Response:
    """Store an alert; answer once it is committed. Idempotent by ``alert_id``: a repeat gets the stored
    alert (200) and never creates a duplicate. Unknown ATT&CK technique IDs are refused with 422, and so is
    text that is not valid Unicode, a non-finite number or a ``ts`` outside 1970 … 9999 (epoch seconds);
    an alert refused with any error is not stored.

    The hot path: the writer, table and metrics come from ``app.state`` rather than dependencies, and
    the answer is serialized straight from the stored row (it is what :class:`AlertPublic` documents).
    """
    t0 = time.perf_counter()
    writer: AlertWriter = request.app.state.writer
    table: AttackTable = request.app.state.attack_table
    metrics: Metrics = request.app.state.metrics
    evidence = alert.evidence.model_dump()
    try:
        ids, tactics = table.map_alert(alert.attack_class, alert.technique_ids, evidence)
    except UnknownTechniqueError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            detail=[unprocessable(["body", "technique_ids"], str(exc), "unknown_technique",
                                                  exc.technique_id)]) from None
    try:
        stored, created = await writer.submit_alert(alert_to_row(alert, ids, tactics, evidence))
    except QueueFullError as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=str(exc),
                            headers={"Retry-After": "1"}) from None
    metrics.alerts.labels("created" if created else "duplicate").inc()
    metrics.ingest_s.observe(time.perf_counter() - t0)
    if created:
        return Response(alert_public_json(stored), media_type="application/json",
                        status_code=status.HTTP_201_CREATED)
    expl = await run_in_threadpool(_stored_explanation, request, stored["alert_id"])
    return Response(alert_public(stored, expl).model_dump_json(), media_type="application/json")


def _stored_explanation(request: Request, alert_id: str) -> ExplanationPublic | None:
    with request.app.state.session_factory() as session:
        return _explanations(session, [alert_id]).get(alert_id)


@router.get("", response_model=AlertsPage)
def list_alerts(
    session: SessionDep,
    _: AnalystDep,
    site_id: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    device_id: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    level: Annotated[int | None, Query(ge=0, le=4, description="Exact level.")] = None,
    min_level: Annotated[int | None, Query(ge=0, le=4, description="Level at least this.")] = None,
    technique: Annotated[str | None, Query(pattern=TECHNIQUE_ID_PATTERN,
                                           description="ATT&CK ID, e.g. T1046; T1498 also matches T1498.001.")] = None,
    status_: Annotated[TriageStatus | None, Query(alias="status", description="Triage status.")] = None,
    since: Annotated[TimeQuery | None, Query(description="ts ≥ since (ISO 8601; naive = UTC).")] = None,
    until: Annotated[TimeQuery | None, Query(description="ts < until (ISO 8601; naive = UTC).")] = None,
    q: Annotated[str | None, Query(min_length=1, max_length=100,
                                   description="Free text: a case-insensitive substring of the site, device, attack "
                                               "class, alert or incident ID.")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=400, description="next_cursor of the previous page.")] = None,
) -> AlertsPage:
    """Alerts newest first, filtered; keyset pagination through ``cursor``."""
    stmt: Select = select(AlertRow)
    if q is not None:
        pattern = "%" + q.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        stmt = stmt.where(or_(*(func.lower(col).like(pattern, escape="\\") for col in (
            AlertRow.site_id, AlertRow.device_id, AlertRow.attack_class, AlertRow.alert_id, AlertRow.incident_id))))
    if site_id is not None:
        stmt = stmt.where(AlertRow.site_id == site_id)
    if device_id is not None:
        stmt = stmt.where(AlertRow.device_id == device_id)
    if level is not None:
        stmt = stmt.where(AlertRow.level == level)
    if min_level is not None:
        stmt = stmt.where(AlertRow.level >= min_level)
    if status_ is not None:
        stmt = stmt.where(AlertRow.status == status_.value)
    since_us, until_us = time_bounds_us(since, until)
    if since_us is not None:
        stmt = stmt.where(AlertRow.ts_us >= since_us)
    if until_us is not None:
        stmt = stmt.where(AlertRow.ts_us < until_us)
    if technique is not None:  # a parent ID matches its sub-techniques too (T1498 → T1498.001)
        match = AlertTechniqueRow.technique_id == technique
        if "." not in technique:
            match = or_(match, AlertTechniqueRow.technique_id.like(technique + ".%"))
        stmt = stmt.where(AlertRow.alert_id.in_(select(AlertTechniqueRow.alert_id).where(match)))
    return alerts_page(session, stmt, limit, cursor)


def alerts_page(session: Session, stmt: Select, limit: int, cursor: str | None) -> AlertsPage:
    """One :class:`AlertsPage` of the alerts ``stmt`` selects, newest first, with their explanations."""
    rows, next_cursor = keyset_page(session, stmt, AlertRow.ts_us, AlertRow.alert_id, limit, cursor)
    expl = _explanations(session, [r.alert_id for r in rows])
    return AlertsPage(items=[alert_public(row_dict(r), expl.get(r.alert_id)) for r in rows], next_cursor=next_cursor)


def _get_or_404(session: Session, alert_id: str) -> AlertRow:
    row = session.get(AlertRow, alert_id)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no alert with alert_id {alert_id!r}")
    return row


@router.get("/{alert_id}", response_model=AlertPublic, responses={404: {"description": "No such alert."}})
def read_alert(alert_id: AlertIdPath, session: SessionDep, _: AnalystDep) -> AlertPublic:
    """One alert with its explanation (``explanation_status`` is ``pending`` until the worker wrote it)."""
    row = _get_or_404(session, alert_id)
    return alert_public(row_dict(row), _explanations(session, [alert_id]).get(alert_id))


@router.patch("/{alert_id}", response_model=AlertPublic,
              responses={404: {"description": "No such alert."}, **BODY_RESPONSES})
def update_alert(alert_id: AlertIdPath, update: AlertUpdate, session: SessionDep, _: AnalystDep) -> AlertPublic:
    """Triage: set the status (new, acknowledged, false_positive, resolved) and/or the analyst note."""
    row = _get_or_404(session, alert_id)
    if update.status is not None:
        row.status = update.status.value
    if update.note is not None:
        row.note = update.note
    row.updated_at_us = dt_to_us(datetime.now(UTC))
    session.commit()
    return alert_public(row_dict(row), _explanations(session, [alert_id]).get(alert_id))
