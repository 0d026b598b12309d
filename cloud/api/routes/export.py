"""``/api/v1/export``: alerts as ECS JSON lines, as a STIX 2.1 bundle, or their techniques as an ATT&CK
Navigator layer (role ``analyst``)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud.api.deps import AnalystDep, AttackDep, SessionDep, TimeQuery
from cloud.api.errors import AUTH_RESPONSES, StrictJSONRoute
from cloud.api.paging import time_bounds_us
from cloud.models import AlertRow, ExplanationRow
from cloud.schemas import ID_PATTERN
from cloud.services.export import ecs_lines, navigator_layer, stix_bundle
from cloud.services.writer import row_dict

router = APIRouter(prefix="/export", tags=["export"], route_class=StrictJSONRoute, responses=AUTH_RESPONSES)

SiteQ = Annotated[str | None, Query(pattern=ID_PATTERN)]
TimeQ = Annotated[TimeQuery | None, Query(description="ISO 8601 (naive = UTC).")]
LimitQ = Annotated[int, Query(ge=1, le=100_000)]


def _rows(session: Session, site_id: str | None, since: datetime | None, until: datetime | None,
          limit: int) -> list[dict[str, Any]]:
    stmt = select(AlertRow)
    since_us, until_us = time_bounds_us(since, until)
    if site_id is not None:
        stmt = stmt.where(AlertRow.site_id == site_id)
    if since_us is not None:
        stmt = stmt.where(AlertRow.ts_us >= since_us)
    if until_us is not None:
        stmt = stmt.where(AlertRow.ts_us < until_us)
    return [row_dict(r) for r in session.scalars(stmt.order_by(AlertRow.ts_us, AlertRow.alert_id).limit(limit))]


@router.get("/ecs", response_model=None, response_class=Response,
            responses={200: {"content": {"application/x-ndjson": {}}, "description": "One ECS document per line."}})
def export_ecs(session: SessionDep, _: AnalystDep, table: AttackDep, site_id: SiteQ = None, since: TimeQ = None,
               until: TimeQ = None, limit: LimitQ = 10_000) -> Response:
    """Alerts (oldest first) as ECS-style JSON lines."""
    rows = _rows(session, site_id, since, until, limit)
    ids = [r["alert_id"] for r in rows]
    expl: dict[str, dict[str, Any]] = {}
    for i in range(0, len(ids), 500):
        for e in session.scalars(select(ExplanationRow).where(ExplanationRow.alert_id.in_(ids[i:i + 500]))):
            expl[e.alert_id] = {"summary": e.body.get("summary"), "source": e.source}
    return Response("".join(ecs_lines(rows, table, expl)), media_type="application/x-ndjson")


@router.get("/stix", response_model=dict[str, Any])
def export_stix(session: SessionDep, _: AnalystDep, table: AttackDep, site_id: SiteQ = None, since: TimeQ = None,
                until: TimeQ = None, limit: LimitQ = 10_000) -> dict[str, Any]:
    """Alerts as a STIX 2.1 bundle of sightings referencing ATT&CK attack-patterns."""
    return stix_bundle(_rows(session, site_id, since, until, limit), table)


@router.get("/navigator", response_model=dict[str, Any])
def export_navigator(session: SessionDep, _: AnalystDep, table: AttackDep, site_id: SiteQ = None, since: TimeQ = None,
                     until: TimeQ = None, limit: LimitQ = 100_000,
                     domain: Annotated[Literal["enterprise-attack", "ics-attack"], Query(
                         description="ATT&CK domain of the layer (one per layer).")] = "enterprise-attack",
                     ) -> dict[str, Any]:
    """The techniques of the alerts in a time range as an ATT&CK Navigator layer (JSON, format 4.5): each scored
    with its number of alerts; open it in https://mitre-attack.github.io/attack-navigator/ (Open Existing Layer)."""
    name = "marlids alerts" + (f" at {site_id}" if site_id else "") + (f" from {since.isoformat()}" if since else "") \
        + (f" until {until.isoformat()}" if until else "")
    return navigator_layer(_rows(session, site_id, since, until, limit), table, domain=domain, name=name)
