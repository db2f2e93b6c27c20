"""Program budgets, by fiscal year: finance and admins allocate and make the year-end decision.

These are the only writes finance makes; each is value-moving (an ``Idempotency-Key`` is
required), a ledger entry, and an audit event with the reason given.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlmodel import Session

from api.bodies import StrictRoute
from api.deps import AuditorDep, ServicesDep
from api.safety import VALUE_MOVING, IdempotencyDep
from api.schemas import PROTECTED_ERRORS, PathId
from api.schemas_earning import (
    AllocationCreate,
    AllocationPublic,
    BudgetPublic,
    FiscalYear,
    YearEndCreate,
)
from issuers import awards, programs

router = APIRouter(
    prefix="/api/v1/budgets", tags=["budgets"], responses=PROTECTED_ERRORS, route_class=StrictRoute
)


def budget_public(
    session: Session, program_id: str, fiscal_year: int, now: datetime
) -> BudgetPublic:
    program = programs.get_program(session, program_id)
    view = awards.budget_view(session, program, fiscal_year, now)
    return BudgetPublic(program_id=program_id, **dataclasses.asdict(view))


@router.get(
    "/{program_id}/{fiscal_year}",
    response_model=BudgetPublic,
    summary="A program's budget for a fiscal year: allocated, awarded, remaining",
)
def get_budget(
    program_id: PathId, fiscal_year: FiscalYear, caller: AuditorDep, services: ServicesDep
) -> BudgetPublic:
    """A program's budget for a fiscal year (April to March): allocated, awarded, awards, residents
    awarded and what remains; `none` when nothing was allocated."""
    now = services.clock()
    return services.read(lambda session: budget_public(session, program_id, fiscal_year, now))


@router.post(
    "/{program_id}/{fiscal_year}/allocations",
    status_code=201,
    response_model=AllocationPublic,
    openapi_extra=VALUE_MOVING,
    summary="Allocate points from city funding to the program's budget for the year",
)
def allocate(
    program_id: PathId,
    fiscal_year: FiscalYear,
    body: AllocationCreate,
    caller: AuditorDep,
    services: ServicesDep,
    idempotency: IdempotencyDep,
) -> JSONResponse:
    """Allocates points from city funding to a program's budget for a fiscal year. `amount` is a
    JSON integer of at least 1; requires an `Idempotency-Key`. Only for the fiscal years the
    program's dates reach, at most a year ahead (`fiscal_year_outside_program`); a decided year
    is `budget_closed`."""
    now = services.clock()

    def work(session: Session) -> tuple[int, Any]:
        entry = programs.allocate(
            session, caller, now, program_id, fiscal_year, body.amount, reason=body.reason
        )
        budget = budget_public(session, program_id, fiscal_year, now)
        return 201, AllocationPublic(entry_id=entry.id, budget=budget).model_dump(mode="json")

    return idempotency.run(caller, body, work)


@router.post(
    "/{program_id}/{fiscal_year}/year-end",
    response_model=BudgetPublic,
    openapi_extra=VALUE_MOVING,
    summary="Close a finished year's budget: the remainder lapses or carries over",
)
def year_end(
    program_id: PathId,
    fiscal_year: FiscalYear,
    body: YearEndCreate,
    caller: AuditorDep,
    services: ServicesDep,
    idempotency: IdempotencyDep,
) -> JSONResponse:
    """The year-end decision for a finished fiscal year: the remainder lapses to city funding or
    carries over into the next year's budget. Only after the year ended in Tokyo
    (`fiscal_year_not_ended`), and once (`budget_closed`). Requires an `Idempotency-Key`."""
    now = services.clock()

    def work(session: Session) -> tuple[int, Any]:
        programs.close_budget(
            session, caller, now, program_id, fiscal_year, body.decision, reason=body.reason
        )
        return 200, budget_public(session, program_id, fiscal_year, now).model_dump(mode="json")

    return idempotency.run(caller, body, work)
