"""The resident's own wallet endpoints: only ever the caller's own data."""

from __future__ import annotations

from fastapi import APIRouter
from sqlmodel import Session

from api.deps import ResidentDep, ServicesDep
from api.schemas import PROTECTED_ERRORS, ResidentPublic
from points.people import get
from points.registry import Resident

router = APIRouter(prefix="/api/v1/me", tags=["resident"], responses=PROTECTED_ERRORS)


@router.get("", response_model=ResidentPublic, summary="My profile")
def my_profile(caller: ResidentDep, services: ServicesDep) -> ResidentPublic:
    def work(session: Session) -> ResidentPublic:
        return ResidentPublic.model_validate(get(session, Resident, caller.principal_id))

    return services.read(work)
