"""``/healthz`` (open) and ``/metrics`` (Prometheus text; any valid key)."""

from __future__ import annotations

from fastapi import APIRouter, Response, status
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from cloud.api.deps import MetricsDep, PrincipalDep, SessionDep
from cloud.api.errors import AUTH_RESPONSES, StrictJSONRoute
from cloud.schemas import Health

router = APIRouter(tags=["health"], route_class=StrictJSONRoute)


@router.get("/healthz", response_model=Health, responses={503: {"model": Health, "description": "Database down."}})
def healthz(session: SessionDep) -> Health | JSONResponse:
    """Liveness and database reachability; the one endpoint open without a key (503 if the database
    cannot be reached)."""
    try:
        session.execute(text("SELECT 1"))
    except Exception:  # noqa: BLE001 - report, do not crash the probe
        return JSONResponse(Health(status="error", database="error").model_dump(),
                            status_code=status.HTTP_503_SERVICE_UNAVAILABLE)
    return Health(status="ok", database="ok")


@router.get("/metrics", response_model=None, response_class=Response,
            responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format."},
                       **AUTH_RESPONSES})
def metrics(_: PrincipalDep, m: MetricsDep) -> Response:
    """Prometheus metrics (send the key as ``Authorization: Bearer <key>`` from the scraper)."""
    return Response(generate_latest(m.registry), media_type=CONTENT_TYPE_LATEST)
