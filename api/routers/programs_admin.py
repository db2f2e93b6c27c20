"""Administration of earning: point types and programs. Every act is audited.

Admins create point types (a ledger and its policy) and programs for departments, and move a
program through its statuses (draft, active, paused, closed). Budgets are allocated by finance or
admin (``api.routers.budgets``); departments award (``api.routers.issuer``).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response
from sqlmodel import Session

from api.bodies import StrictRoute
from api.deps import AdminDep, ServicesDep
from api.schemas import PROTECTED_ERRORS, ObjectId, Page, PathId
from api.schemas_earning import (
    BudgetCodeChange,
    IdCursor,
    PointTypeCreate,
    PointTypePublic,
    ProgramCreate,
    ProgramPublic,
    ProgramStatusChange,
    YenRateChange,
)
from issuers import programs
from points import people, pointtypes

router = APIRouter(
    prefix="/api/v1/admin", tags=["admin"], responses=PROTECTED_ERRORS, route_class=StrictRoute
)

DEFAULT_EXPIRY_MONTHS = 12
Limit = Annotated[int, Query(ge=1, le=people.PAGE_LIMIT_MAX)]


# Point types ------------------------------------------------------------------------------


@router.post(
    "/point-types", response_model=PointTypePublic, status_code=201, summary="Create a point type"
)
def create_point_type(
    body: PointTypeCreate, caller: AdminDep, services: ServicesDep
) -> PointTypePublic:
    """Creates a point type (a ledger and its policy): its code, names, unit, expiry rule (`months`
    after the month earned, a `fixed_date`, or `none`), who issues it and how it is funded.
    Operator-sold points valid for more than 6 months need a Payment Services Act reason
    (`payment_services_act`); a rule that makes no sense is `expiry_rule_invalid`. `yen_rate` is
    the whole yen paid to shops per point at settlement (1 to 100,000; 1 when left out)."""
    now = services.clock()
    fields = body.model_dump()
    if body.expiry_rule is pointtypes.ExpiryRule.MONTHS and body.expiry_months is None:
        fields["expiry_months"] = DEFAULT_EXPIRY_MONTHS
    new = pointtypes.NewPointType(**fields)
    return services.write(
        lambda session: PointTypePublic.model_validate(
            pointtypes.create_point_type(session, caller, now, new)
        )
    )


@router.get("/point-types", response_model=list[PointTypePublic], summary="Every point type")
def list_point_types(caller: AdminDep, services: ServicesDep) -> list[PointTypePublic]:
    """Every point type and its policy."""
    return services.read(
        lambda session: [
            PointTypePublic.model_validate(row) for row in pointtypes.list_point_types(session)
        ]
    )


@router.get(
    "/point-types/{point_type_id}", response_model=PointTypePublic, summary="One point type"
)
def get_point_type(
    point_type_id: PathId, caller: AdminDep, services: ServicesDep
) -> PointTypePublic:
    """One point type by id."""
    return services.read(
        lambda session: PointTypePublic.model_validate(
            pointtypes.get_point_type(session, point_type_id)
        )
    )


@router.put(
    "/point-types/{point_type_id}/yen-rate",
    response_model=PointTypePublic,
    summary="Change a point type's yen rate (409 rate_frozen once it has a payment)",
)
def set_yen_rate(
    point_type_id: PathId, body: YenRateChange, caller: AdminDep, services: ServicesDep
) -> PointTypePublic:
    """Sets the whole yen the city pays a shop per point of this type at settlement (1 to
    100,000), with the reason, recorded in the audit trail with the rates before and after. Once
    the type has a payment its rate is frozen (409 `rate_frozen`): a new rate needs a new point
    type. The same rate again changes nothing."""
    now = services.clock()
    return services.write(
        lambda session: PointTypePublic.model_validate(
            pointtypes.set_yen_rate(
                session, caller, now, point_type_id, body.yen_rate, reason=body.reason
            )
        )
    )


@router.delete(
    "/point-types/{point_type_id}",
    status_code=204,
    response_class=Response,
    summary="Delete a point type no program uses (409 point_type_in_use otherwise)",
)
def delete_point_type(point_type_id: PathId, caller: AdminDep, services: ServicesDep) -> Response:
    """Deletes a point type that no program uses (409 `point_type_in_use` otherwise); the deletion
    is recorded."""
    now = services.clock()
    services.write(
        lambda session: pointtypes.delete_point_type(
            session, caller, now, point_type_id, reason="deleted by an admin"
        )
    )
    return Response(status_code=204)


# Programs ---------------------------------------------------------------------------------


@router.post(
    "/programs",
    response_model=ProgramPublic,
    status_code=201,
    summary="Create a program for a department (in draft)",
)
def create_program(body: ProgramCreate, caller: AdminDep, services: ServicesDep) -> ProgramPublic:
    """Creates a department's program in draft: its module (`health_checkup`, `volunteering`,
    `fixed_award`), point type, amount per event (a JSON integer), dates (`YYYY-MM-DD`), optional
    caps per day, month and fiscal year, the module's `config`, and optionally its `budget_code`
    (款項目節, 1 to 64 characters)."""
    now = services.clock()
    new = programs.NewProgram(**body.model_dump())
    return services.write(
        lambda session: ProgramPublic.model_validate(
            programs.create_program(session, caller, now, new)
        )
    )


@router.get("/programs", response_model=Page[ProgramPublic], summary="List programs")
def list_programs(
    caller: AdminDep,
    services: ServicesDep,
    department_id: Annotated[ObjectId | None, Query()] = None,
    cursor: IdCursor = None,
    limit: Limit = 50,
) -> Page[ProgramPublic]:
    """Every program, by id, paged; optionally of one department."""

    def work(session: Session) -> Page[ProgramPublic]:
        rows = programs.list_programs(
            session, department_id=department_id, after=cursor, limit=limit
        )
        return Page(
            items=[ProgramPublic.model_validate(row) for row in rows],
            next_cursor=rows[-1].id if len(rows) == limit else None,
        )

    return services.read(work)


@router.get("/programs/{program_id}", response_model=ProgramPublic, summary="One program")
def get_program(program_id: PathId, caller: AdminDep, services: ServicesDep) -> ProgramPublic:
    """One program by id."""
    return services.read(
        lambda session: ProgramPublic.model_validate(programs.get_program(session, program_id))
    )


@router.post(
    "/programs/{program_id}/status",
    response_model=ProgramPublic,
    summary="Activate, pause or close a program",
)
def change_program_status(
    program_id: PathId, body: ProgramStatusChange, caller: AdminDep, services: ServicesDep
) -> ProgramPublic:
    """Activates, pauses or closes a program: a draft becomes active or closed, an active one
    paused or closed, a paused one active or closed, and a closed one nothing
    (`status_change_refused`). The reason is recorded in the audit trail."""
    now = services.clock()
    return services.write(
        lambda session: ProgramPublic.model_validate(
            programs.change_status(
                session, caller, now, program_id, body.status, reason=body.reason
            )
        )
    )


@router.put(
    "/programs/{program_id}/budget-code",
    response_model=ProgramPublic,
    summary="Set or clear a program's budget code (款項目節)",
)
def set_budget_code(
    program_id: PathId, body: BudgetCodeChange, caller: AdminDep, services: ServicesDep
) -> ProgramPublic:
    """Sets the budget line (款項目節, 1 to 64 characters without control characters) the
    program's points are paid from at settlement, or clears it with `null`; recorded in the
    audit trail with the codes before and after and the reason. The same code again changes
    nothing."""
    now = services.clock()
    return services.write(
        lambda session: ProgramPublic.model_validate(
            programs.set_budget_code(
                session, caller, now, program_id, body.budget_code, reason=body.reason
            )
        )
    )
