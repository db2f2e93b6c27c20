"""Administration: the registries, tokens, and verification runs. Every act is audited."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal

import sqlalchemy as sa
from fastapi import APIRouter, Query
from sqlmodel import Session, col, select

from api.bodies import StrictRoute
from api.deps import AdminDep, ServicesDep
from api.schemas import (
    ID_PATTERN,
    PROTECTED_ERRORS,
    DepartmentCreate,
    DepartmentPublic,
    MerchantCreate,
    MerchantPublic,
    MerchantStatusChange,
    ObjectId,
    Page,
    PathId,
    ReasonInput,
    ResidentCorrection,
    ResidentCreate,
    ResidentPublic,
    ResidentStatusChange,
    StaffCreate,
    StaffPublic,
    StaffStatusChange,
    TokenCreate,
    TokenCreated,
    TokenPublic,
    VerifyResultPublic,
)
from api.verify_view import verify_result
from points import access, audit, people
from points.auth import DeviceCode, Role, Token
from points.registry import Department, Merchant, Resident, Staff
from points.verification import verify_and_record
from redemption.merchants import Till

router = APIRouter(
    prefix="/api/v1/admin", tags=["admin"], responses=PROTECTED_ERRORS, route_class=StrictRoute
)

Cursor = Annotated[
    str | None, Query(pattern=ID_PATTERN, description="next_cursor of the page before")
]
Limit = Annotated[int, Query(ge=1, le=people.PAGE_LIMIT_MAX)]


def _next(items: list[str], limit: int) -> str | None:
    return items[-1] if len(items) == limit else None


# Departments -----------------------------------------------------------------------------


@router.post(
    "/departments", response_model=DepartmentPublic, status_code=201, summary="Create a department"
)
def create_department(
    body: DepartmentCreate, caller: AdminDep, services: ServicesDep
) -> DepartmentPublic:
    """Creates a city department (a program owner) with a unique code and its Japanese and English
    names."""
    now = services.clock()
    return services.write(
        lambda session: DepartmentPublic.model_validate(
            people.create_department(
                session, caller, now, code=body.code, name_ja=body.name_ja, name_en=body.name_en
            )
        )
    )


@router.get("/departments", response_model=Page[DepartmentPublic], summary="List departments")
def list_departments(
    caller: AdminDep, services: ServicesDep, cursor: Cursor = None, limit: Limit = 50
) -> Page[DepartmentPublic]:
    """Every department, by id, paged."""

    def work(session: Session) -> Page[DepartmentPublic]:
        rows = people.page(session, Department, after=cursor, limit=limit)
        return Page(
            items=[DepartmentPublic.model_validate(row) for row in rows],
            next_cursor=_next([row.id for row in rows], limit),
        )

    return services.read(work)


@router.get(
    "/departments/{department_id}", response_model=DepartmentPublic, summary="One department"
)
def get_department(
    department_id: PathId, caller: AdminDep, services: ServicesDep
) -> DepartmentPublic:
    """One department by id."""
    return services.read(
        lambda session: DepartmentPublic.model_validate(
            people.get(session, Department, department_id)
        )
    )


# Merchants -------------------------------------------------------------------------------


@router.post(
    "/merchants", response_model=MerchantPublic, status_code=201, summary="Register a merchant"
)
def create_merchant(
    body: MerchantCreate, caller: AdminDep, services: ServicesDep
) -> MerchantPublic:
    """Registers a local merchant (shop) where residents will spend points, or (`kind`
    `counter`) a city counter, which exchanges points for goods from its catalog."""
    now = services.clock()
    return services.write(
        lambda session: MerchantPublic.model_validate(
            people.create_merchant(
                session,
                caller,
                now,
                name_ja=body.name_ja,
                name_en=body.name_en,
                category=body.category,
                kind=body.kind,
            )
        )
    )


@router.get("/merchants", response_model=Page[MerchantPublic], summary="List merchants")
def list_merchants(
    caller: AdminDep, services: ServicesDep, cursor: Cursor = None, limit: Limit = 50
) -> Page[MerchantPublic]:
    """Every merchant, by id, paged."""

    def work(session: Session) -> Page[MerchantPublic]:
        rows = people.page(session, Merchant, after=cursor, limit=limit)
        return Page(
            items=[MerchantPublic.model_validate(row) for row in rows],
            next_cursor=_next([row.id for row in rows], limit),
        )

    return services.read(work)


@router.get("/merchants/{merchant_id}", response_model=MerchantPublic, summary="One merchant")
def get_merchant(merchant_id: PathId, caller: AdminDep, services: ServicesDep) -> MerchantPublic:
    """One merchant by id."""
    return services.read(
        lambda session: MerchantPublic.model_validate(people.get(session, Merchant, merchant_id))
    )


@router.post(
    "/merchants/{merchant_id}/status",
    response_model=MerchantPublic,
    summary="Suspend, reactivate or close a merchant",
)
def set_merchant_status(
    merchant_id: PathId, body: MerchantStatusChange, caller: AdminDep, services: ServicesDep
) -> MerchantPublic:
    """Suspends, reactivates or closes a merchant; the reason is recorded in the audit trail."""
    now = services.clock()
    return services.write(
        lambda session: MerchantPublic.model_validate(
            people.set_merchant_status(
                session, caller, now, merchant_id, status=body.status, reason=body.reason
            )
        )
    )


# Residents -------------------------------------------------------------------------------


@router.post(
    "/residents", response_model=ResidentPublic, status_code=201, summary="Register a resident"
)
def create_resident(
    body: ResidentCreate, caller: AdminDep, services: ServicesDep
) -> ResidentPublic:
    """Registers a resident, with or without personal data; `verified` when identity was checked."""
    now = services.clock()
    return services.write(
        lambda session: ResidentPublic.model_validate(
            people.create_resident(
                session,
                caller,
                now,
                name=body.name,
                address_number=body.address_number,
                birth_year=body.birth_year,
                verified=body.verified,
            )
        )
    )


@router.get("/residents", response_model=Page[ResidentPublic], summary="List residents")
def list_residents(
    caller: AdminDep, services: ServicesDep, cursor: Cursor = None, limit: Limit = 50
) -> Page[ResidentPublic]:
    """Every resident, with personal data, by id, paged."""

    def work(session: Session) -> Page[ResidentPublic]:
        rows = people.page(session, Resident, after=cursor, limit=limit)
        return Page(
            items=[ResidentPublic.model_validate(row) for row in rows],
            next_cursor=_next([row.id for row in rows], limit),
        )

    return services.read(work)


@router.get("/residents/{resident_id}", response_model=ResidentPublic, summary="One resident")
def get_resident(resident_id: PathId, caller: AdminDep, services: ServicesDep) -> ResidentPublic:
    """One resident by id, with personal data."""
    return services.read(
        lambda session: ResidentPublic.model_validate(people.get(session, Resident, resident_id))
    )


@router.patch(
    "/residents/{resident_id}",
    response_model=ResidentPublic,
    summary="Correct a resident's personal details",
)
def correct_resident(
    resident_id: PathId, body: ResidentCorrection, caller: AdminDep, services: ServicesDep
) -> ResidentPublic:
    """Corrects a resident's name, resident address number or birth year; the reason is recorded in
    the audit trail."""
    now = services.clock()
    changes = {name: getattr(body, name) for name in body.model_fields_set if name != "reason"}
    return services.write(
        lambda session: ResidentPublic.model_validate(
            people.correct_resident(
                session, caller, now, resident_id, changes=changes, reason=body.reason
            )
        )
    )


@router.post(
    "/residents/{resident_id}/status",
    response_model=ResidentPublic,
    summary="Change a resident's status (moved out, deceased, blocked, active)",
)
def set_resident_status(
    resident_id: PathId, body: ResidentStatusChange, caller: AdminDep, services: ServicesDep
) -> ResidentPublic:
    """Changes a resident's status (moved out, deceased, blocked, active again); the reason is
    recorded. A resident who is not active receives no points."""
    now = services.clock()
    return services.write(
        lambda session: ResidentPublic.model_validate(
            people.set_resident_status(
                session, caller, now, resident_id, status=body.status, reason=body.reason
            )
        )
    )


@router.post(
    "/residents/{resident_id}/erase",
    response_model=ResidentPublic,
    summary="Erase a resident's personal data (the pseudonymous id and ledger stay)",
)
def erase_resident(
    resident_id: PathId, body: ReasonInput, caller: AdminDep, services: ServicesDep
) -> ResidentPublic:
    """Erases a resident's personal data (APPI): name, address number and birth year are blanked;
    the pseudonymous id and the ledger stay. The reason is recorded."""
    now = services.clock()
    return services.write(
        lambda session: ResidentPublic.model_validate(
            people.erase_resident(session, caller, now, resident_id, reason=body.reason)
        )
    )


# Staff -----------------------------------------------------------------------------------


@router.post("/staff", response_model=StaffPublic, status_code=201, summary="Add staff")
def create_staff(body: StaffCreate, caller: AdminDep, services: ServicesDep) -> StaffPublic:
    """Adds a member of staff in one role; merchant staff belong to a merchant and issuers to a
    department."""
    now = services.clock()
    return services.write(
        lambda session: StaffPublic.model_validate(
            people.create_staff(
                session,
                caller,
                now,
                role=body.role,
                display_name=body.display_name,
                merchant_id=body.merchant_id,
                department_id=body.department_id,
            )
        )
    )


@router.get("/staff", response_model=Page[StaffPublic], summary="List staff")
def list_staff(
    caller: AdminDep, services: ServicesDep, cursor: Cursor = None, limit: Limit = 50
) -> Page[StaffPublic]:
    """Every member of staff, by id, paged."""

    def work(session: Session) -> Page[StaffPublic]:
        rows = people.page(session, Staff, after=cursor, limit=limit)
        return Page(
            items=[StaffPublic.model_validate(row) for row in rows],
            next_cursor=_next([row.id for row in rows], limit),
        )

    return services.read(work)


@router.get("/staff/{staff_id}", response_model=StaffPublic, summary="One member of staff")
def get_staff(staff_id: PathId, caller: AdminDep, services: ServicesDep) -> StaffPublic:
    """One member of staff by id."""
    return services.read(
        lambda session: StaffPublic.model_validate(people.get(session, Staff, staff_id))
    )


@router.post(
    "/staff/{staff_id}/status", response_model=StaffPublic, summary="Disable or re-enable staff"
)
def set_staff_status(
    staff_id: PathId, body: StaffStatusChange, caller: AdminDep, services: ServicesDep
) -> StaffPublic:
    """Disables or re-enables a member of staff; the reason is recorded. A disabled member's tokens
    stop working."""
    now = services.clock()
    return services.write(
        lambda session: StaffPublic.model_validate(
            people.set_staff_status(
                session, caller, now, staff_id, status=body.status, reason=body.reason
            )
        )
    )


# Tokens ----------------------------------------------------------------------------------


@router.post(
    "/tokens", response_model=TokenCreated, status_code=201, summary="Issue a token (shown once)"
)
def issue_token(body: TokenCreate, caller: AdminDep, services: ServicesDep) -> TokenCreated:
    """Issues a bearer token for a principal in its role, with an optional label and lifetime (1 to
    400 days). The token is in this answer only: only its hash is stored."""
    now = services.clock()
    lifetime = timedelta(days=body.lifetime_days) if body.lifetime_days else None

    def work(session: Session) -> TokenCreated:
        new = access.issue_token(
            session,
            caller,
            now,
            role=body.role,
            principal_id=body.principal_id,
            label=body.label,
            lifetime=lifetime,
        )
        return TokenCreated(
            id=new.token.id,
            prefix=new.token.prefix,
            token=new.secret,
            role=body.role,
            principal_id=body.principal_id,
            expires_at=new.token.expires_at,
        )

    return services.write(work)


@router.get(
    "/tokens",
    response_model=Page[TokenPublic],
    summary="List tokens (never their secrets), optionally of one principal, prefix, kind or state",
)
def list_tokens(
    caller: AdminDep,
    services: ServicesDep,
    principal_id: Annotated[ObjectId | None, Query()] = None,
    prefix: Annotated[str | None, Query(pattern=r"^kp_[A-Za-z0-9_-]{8}$")] = None,
    kind: Annotated[Literal["api", "device", "wallet"] | None, Query()] = None,
    state: Annotated[Literal["live", "revoked", "expired"] | None, Query()] = None,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> Page[TokenPublic]:
    """Tokens (never their secrets), by id, paged; optionally of one principal or with one visible
    prefix (`kp_xxxxxxxx`), to find a leaked token.

    `kind`: `device` the tokens of devices (every token of a till, and the sessions of staff PCs
    enrolled by a device code), `wallet` residents' wallet sessions, `api` the rest (tokens
    issued to staff and other systems).
    `state`: `live` (neither revoked nor expired), `revoked`, or `expired` (and not revoked)."""

    def work(session: Session) -> Page[TokenPublic]:
        query = select(Token).order_by(col(Token.id)).limit(limit)
        if principal_id is not None:
            query = query.where(Token.principal_id == principal_id)
        if prefix is not None:
            query = query.where(Token.prefix == prefix)
        enrolled = select(DeviceCode.token_id).where(col(DeviceCode.token_id).is_not(None))
        tills = select(Till.staff_id)
        device = sa.or_(col(Token.id).in_(enrolled), col(Token.principal_id).in_(tills))
        if kind == "device":
            query = query.where(device)
        elif kind == "wallet":
            query = query.where(Token.role == Role.RESIDENT)
        elif kind == "api":
            query = query.where(Token.role != Role.RESIDENT, sa.not_(device))
        now = services.clock()
        if state == "live":
            query = query.where(col(Token.revoked_at).is_(None), col(Token.expires_at) > now)
        elif state == "revoked":
            query = query.where(col(Token.revoked_at).is_not(None))
        elif state == "expired":
            query = query.where(col(Token.revoked_at).is_(None), col(Token.expires_at) <= now)
        if cursor is not None:
            query = query.where(col(Token.id) > cursor)
        rows = list(session.exec(query))
        return Page(
            items=[TokenPublic.model_validate(row) for row in rows],
            next_cursor=_next([row.id for row in rows], limit),
        )

    return services.read(work)


@router.post("/tokens/{token_id}/revoke", response_model=TokenPublic, summary="Revoke a token")
def revoke_token(
    token_id: PathId, body: ReasonInput, caller: AdminDep, services: ServicesDep
) -> TokenPublic:
    """Revokes a token at once; the reason is recorded. Revoking a revoked token changes nothing."""
    now = services.clock()
    return services.write(
        lambda session: TokenPublic.model_validate(
            access.revoke_token(session, caller, now, token_id, body.reason)
        )
    )


# Verification ----------------------------------------------------------------------------


@router.post(
    "/verify",
    response_model=VerifyResultPublic,
    status_code=201,
    summary="Verify the whole ledger now and record the result",
)
def run_verify(caller: AdminDep, services: ServicesDep) -> VerifyResultPublic:
    """Verifies the whole ledger now (totals, balanced entries, the seal chain, the schema's
    guards), records the result and returns it. Takes no body (or `{}`)."""
    _report, run = verify_and_record(
        services.ledger, unsealed_grace_seconds=services.settings.unsealed_grace_seconds
    )
    now = services.clock()
    services.write(
        lambda session: audit.record(
            session,
            actor=caller,
            action="ledger.verify",
            object_type="verify_run",
            object_id=str(run.id),
            at=now,
            details={"ok": run.ok},
        )
    )
    return verify_result(run)
