"""``/api/v1/sites``: each site's baseline state (role ``ingest`` reports it, role ``analyst`` reads it)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Path
from sqlalchemy import select

from cloud.api.deps import AnalystDep, IngestDep, SessionDep
from cloud.api.errors import AUTH_RESPONSES, BODY_RESPONSES, StrictJSONRoute
from cloud.models import SiteRow
from cloud.schemas import ID_PATTERN, SitePublic, SiteStateUpdate
from cloud.services.convert import dt_to_us, us_to_dt

router = APIRouter(prefix="/sites", tags=["sites"], route_class=StrictJSONRoute, responses=AUTH_RESPONSES)


def _public(row: SiteRow) -> SitePublic:
    return SitePublic(site_id=row.site_id, state=row.state, grace_elapsed_s=row.grace_elapsed_s, grace_s=row.grace_s,
                      grace_windows=row.grace_windows, devices_own=row.devices_own,
                      updated_at=us_to_dt(row.updated_at_us))


@router.put("/{site_id}", response_model=SitePublic, responses=BODY_RESPONSES)
def put_site_state(site_id: Annotated[str, Path(pattern=ID_PATTERN, description="The site's ID.")],
                   body: SiteStateUpdate, session: SessionDep, _: IngestDep) -> SitePublic:
    """Record a site's baseline state (the fog reports every change: learning in the grace period, then
    detecting). Idempotent: the latest report wins."""
    now = dt_to_us(datetime.now(UTC))
    row = session.get(SiteRow, site_id)
    if row is None:
        row = SiteRow(site_id=site_id, **body.model_dump(), updated_at_us=now)
        session.add(row)
    else:
        for k, v in body.model_dump().items():
            setattr(row, k, v)
        row.updated_at_us = now
    session.commit()
    return _public(row)


@router.get("", response_model=list[SitePublic])
def list_sites(session: SessionDep, _: AnalystDep) -> list[SitePublic]:
    """Every site that reported a baseline state, by site id."""
    return [_public(r) for r in session.scalars(select(SiteRow).order_by(SiteRow.site_id))]
