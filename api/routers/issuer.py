"""Department (issuer) endpoints: only their own department."""

from __future__ import annotations

from fastapi import APIRouter
from sqlmodel import Session

from api.deps import IssuerDep, ServicesDep
from api.schemas import PROTECTED_ERRORS, DepartmentPublic
from points.people import get
from points.registry import Department

router = APIRouter(prefix="/api/v1/issuer", tags=["issuer"], responses=PROTECTED_ERRORS)


@router.get("/department", response_model=DepartmentPublic, summary="The department I work for")
def my_department(caller: IssuerDep, services: ServicesDep) -> DepartmentPublic:
    assert caller.department_id is not None
    department_id = caller.department_id

    def work(session: Session) -> DepartmentPublic:
        return DepartmentPublic.model_validate(get(session, Department, department_id))

    return services.read(work)
