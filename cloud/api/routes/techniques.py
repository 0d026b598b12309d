"""``/api/v1/techniques``: the bundled MITRE ATT&CK table (v18.1; © The MITRE Corporation, see
``cloud/data/LICENSE.txt``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, status

from cloud.api.deps import AnalystDep, AttackDep
from cloud.api.errors import AUTH_RESPONSES, StrictJSONRoute
from cloud.schemas import TechniquePublic
from cloud.services.attack import UnknownTechniqueError

router = APIRouter(prefix="/techniques", tags=["techniques"], route_class=StrictJSONRoute, responses=AUTH_RESPONSES)


@router.get("/{technique_id}", response_model=TechniquePublic,
            responses={422: {"description": "Malformed or unknown technique ID."}})
def read_technique(technique_id: Annotated[str, Path(max_length=32, description="e.g. T1046 or T1498.001")],
                   _: AnalystDep, table: AttackDep) -> TechniquePublic:
    """Name, tactics and URL of one ATT&CK technique (enterprise or ICS)."""
    try:
        return TechniquePublic(**table.get(technique_id))
    except UnknownTechniqueError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            detail=[{"loc": ["path", "technique_id"], "msg": str(exc), "type": "unknown_technique",
                                     "input": technique_id}]) from None
