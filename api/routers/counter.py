"""City counter staff: the resident in front of them, nothing more.

Counter staff find a resident by id or by the exact resident address number (宛名番号), never by
browsing; they register verified residents, correct their details, mark self-enrolled residents
verified after checking identity, issue enrolment codes, and revoke a lost phone's tokens.
They read a resident's wallets (for residents without a phone, who ask at the counter), and
close a wallet when the resident moved out or died: its balance goes to expired points, with
the reason recorded. With admins, they download the list of residents with points expiring
soon, for the letters sent to residents without a phone.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response
from fastapi.responses import JSONResponse
from sqlmodel import Session, select

from api.bodies import StrictRoute
from api.deps import CounterDep, ServicesDep, require
from api.safety import VALUE_MOVING, IdempotencyDep, rate_limited
from api.schemas import (
    PROTECTED_ERRORS,
    AddressNumber,
    CounterResidentCreate,
    EnrolmentCodeCreated,
    PathId,
    ReasonInput,
    ResidentCorrection,
    ResidentPublic,
    RevokedCount,
)
from api.schemas_earning import PointTypeCode, WalletClosedPublic, WalletPublic
from api.wallet_views import resident_wallet, resident_wallets
from points import access, notices, people, pointtypes, wallets
from points.auth import Principal, Role
from points.calendar import tokyo_date
from points.errors import NotFound
from points.pointtypes import CODE_PATTERN
from points.registry import Resident
from redemption import cards

#: The mail-merge list carries personal data in bulk: counter staff and admins only.
NoticeStaffDep = Annotated[Principal, require(Role.COUNTER, Role.ADMIN)]

router = APIRouter(
    prefix="/api/v1/counter", tags=["counter"], responses=PROTECTED_ERRORS, route_class=StrictRoute
)


@router.post(
    "/residents",
    response_model=ResidentPublic,
    status_code=201,
    summary="Register a resident whose identity was checked at the counter",
)
def register_resident(
    body: CounterResidentCreate, caller: CounterDep, services: ServicesDep
) -> ResidentPublic:
    """Registers a resident whose identity was checked at the counter: name and resident address
    number are required, the birth year optional. The resident is verified."""
    now = services.clock()

    def work(session: Session) -> ResidentPublic:
        resident = people.create_resident(
            session,
            caller,
            now,
            name=body.name,
            address_number=body.address_number,
            birth_year=body.birth_year,
            verified=True,
        )
        return ResidentPublic.model_validate(resident)

    return services.write(work)


@router.get(
    "/residents",
    response_model=ResidentPublic,
    summary="Find the resident with this exact resident address number",
)
def find_resident(
    caller: CounterDep,
    services: ServicesDep,
    address_number: Annotated[AddressNumber, Query()],
) -> ResidentPublic:
    """The resident with exactly this resident address number (宛名番号); there is no browsing or
    partial search."""

    def work(session: Session) -> ResidentPublic:
        resident = session.exec(
            select(Resident).where(Resident.address_number == address_number)
        ).first()
        if resident is None:
            raise NotFound("no resident has that address number")
        return ResidentPublic.model_validate(resident)

    return services.read(work)


@router.get("/residents/{resident_id}", response_model=ResidentPublic, summary="One resident")
def get_resident(resident_id: PathId, caller: CounterDep, services: ServicesDep) -> ResidentPublic:
    """One resident by id, with personal data, for the resident at the counter."""
    return services.read(
        lambda session: ResidentPublic.model_validate(people.get(session, Resident, resident_id))
    )


@router.patch(
    "/residents/{resident_id}",
    response_model=ResidentPublic,
    summary="Correct a resident's personal details",
)
def correct_resident(
    resident_id: PathId, body: ResidentCorrection, caller: CounterDep, services: ServicesDep
) -> ResidentPublic:
    """Corrects a resident's name, resident address number or birth year; the reason is recorded in
    the audit trail. An erased resident cannot be corrected."""
    now = services.clock()
    changes = {name: getattr(body, name) for name in body.model_fields_set if name != "reason"}

    def work(session: Session) -> ResidentPublic:
        resident = people.correct_resident(
            session, caller, now, resident_id, changes=changes, reason=body.reason
        )
        return ResidentPublic.model_validate(resident)

    return services.write(work)


@router.post(
    "/residents/{resident_id}/verify",
    response_model=ResidentPublic,
    summary="Mark a self-enrolled resident verified after checking identity",
)
def verify_resident(
    resident_id: PathId, body: ReasonInput, caller: CounterDep, services: ServicesDep
) -> ResidentPublic:
    """Marks a self-enrolled resident verified after counter staff checked their identity; the
    reason is recorded."""
    now = services.clock()

    def work(session: Session) -> ResidentPublic:
        resident = people.correct_resident(
            session, caller, now, resident_id, changes={"verified": True}, reason=body.reason
        )
        return ResidentPublic.model_validate(resident)

    return services.write(work)


@router.post(
    "/residents/{resident_id}/enrolment-codes",
    dependencies=[rate_limited("enrolment_code_issue")],
    response_model=EnrolmentCodeCreated,
    status_code=201,
    summary="A single-use code that binds a phone to this wallet",
)
def create_enrolment_code(
    resident_id: PathId, caller: CounterDep, services: ServicesDep
) -> EnrolmentCodeCreated:
    """A single-use enrolment code, valid for 15 minutes, that binds a phone to this verified
    resident's wallet (`POST /api/v1/enrolments/code`). Takes no body (or `{}`). Rate-limited per
    member of counter staff."""
    now = services.clock()

    def work(session: Session) -> EnrolmentCodeCreated:
        enrolment, code = access.create_enrolment_code(
            session, caller, now, resident_id, secret_key=services.settings.secret_key_bytes
        )
        return EnrolmentCodeCreated(
            resident_id=resident_id, code=code, expires_at=enrolment.expires_at
        )

    return services.write(work)


@router.post(
    "/residents/{resident_id}/revoke-tokens",
    response_model=RevokedCount,
    summary="Revoke every wallet token of a resident (a lost phone)",
)
def revoke_resident_tokens(
    resident_id: PathId, body: ReasonInput, caller: CounterDep, services: ServicesDep
) -> RevokedCount:
    """Revokes every wallet token of a resident (a lost or replaced phone) and returns how many were
    revoked; the reason is recorded. The resident enrols the new phone with a new code."""
    now = services.clock()

    def work(session: Session) -> RevokedCount:
        people.get(session, Resident, resident_id)
        count = access.revoke_principal_tokens(session, caller, now, resident_id, body.reason)
        return RevokedCount(revoked=count)

    return services.write(work)


@router.get(
    "/residents/{resident_id}/wallets",
    response_model=list[WalletPublic],
    summary="A resident's wallets (balance, expiry dates), for a resident at the counter",
)
def resident_wallets_at_counter(
    resident_id: PathId, caller: CounterDep, services: ServicesDep
) -> list[WalletPublic]:
    """A resident's wallets (balance, held points, balance by expiry date, expiry notice), read to a
    resident without a phone at the counter."""
    now, days = services.clock(), services.settings.expiry_notice_days
    return services.read(lambda session: resident_wallets(session, resident_id, now, days))


@router.post(
    "/residents/{resident_id}/wallets/{point_type}/close",
    response_model=WalletClosedPublic,
    openapi_extra=VALUE_MOVING,
    summary="Close a wallet (moved out, deceased): its balance goes to expired points",
)
def close_wallet(
    resident_id: PathId,
    point_type: PointTypeCode,
    body: ReasonInput,
    caller: CounterDep,
    services: ServicesDep,
    idempotency: IdempotencyDep,
) -> JSONResponse:
    """Closes a resident's wallet of one point type when the resident moved out or died: its balance
    goes to expired points with the reason, and the wallet takes no more points. Requires an
    `Idempotency-Key`."""
    now = services.clock()

    def work(session: Session) -> tuple[int, Any]:
        found = pointtypes.find_point_type(session, point_type)
        wallet, moved, entry_ids = wallets.close_wallet(
            session, caller, now, found, resident_id, reason=body.reason
        )
        closed = WalletClosedPublic(
            resident_id=resident_id,
            point_type=found.code,
            status=wallet.status,
            moved_to_expired=moved,
            entry_ids=entry_ids,
            closed_at=wallet.closed_at,
            closed_reason=wallet.closed_reason,
        )
        return 200, closed.model_dump(mode="json")

    return idempotency.run(caller, body, work)


@router.post(
    "/residents/{resident_id}/wallets/{point_type}/reopen",
    response_model=WalletPublic,
    openapi_extra=VALUE_MOVING,
    summary="Reopen a closed wallet (the resident came back)",
    description="Opens a wallet closed at the counter again, audited with the reason, so that "
    "awards reach it again. The points moved to expired when it was closed stay expired. Only a "
    "closed wallet can be reopened (409 `wallet_not_closed`); a resident who is not active "
    "still receives nothing until their status is active again. Needs an `Idempotency-Key`.",
)
def reopen_wallet(
    resident_id: PathId,
    point_type: PointTypeCode,
    body: ReasonInput,
    caller: CounterDep,
    services: ServicesDep,
    idempotency: IdempotencyDep,
) -> JSONResponse:
    now, days = services.clock(), services.settings.expiry_notice_days

    def work(session: Session) -> tuple[int, Any]:
        found = pointtypes.find_point_type(session, point_type)
        wallets.reopen_wallet(session, caller, now, found, resident_id, reason=body.reason)
        reopened = resident_wallet(session, resident_id, found.code, now, days)
        return 200, reopened.model_dump(mode="json")

    return idempotency.run(caller, body, work)


@router.get(
    "/expiry-notices",
    response_class=Response,
    responses={
        200: {
            "description": "CSV for mail merge: one row per resident with points expiring soon",
            "content": {"text/csv": {"schema": {"type": "string"}}},
        }
    },
    summary="Residents with points expiring within N days, as CSV for letters (mail merge)",
)
def expiry_notices(
    caller: NoticeStaffDep,
    services: ServicesDep,
    point_type: Annotated[str, Query(pattern=CODE_PATTERN)] = "pt",
    within_days: Annotated[int, Query(ge=1, le=366)] = 60,
    encoding: Annotated[Literal["utf-8", "cp932"], Query()] = "utf-8",
) -> Response:
    """The residents with points expiring within N days, one CSV row each, for letters to residents
    without a phone (mail merge), each with the last four digits of the resident's active card
    (`card_last4`, the last column; empty without one). UTF-8 with BOM by default, or CP932
    (`encoding=cp932`). Counter staff and admins only."""
    now = services.clock()

    def work(session: Session) -> bytes:
        found = pointtypes.find_point_type(session, point_type)
        listed = notices.expiring(session, found, now, within_days, card_digits=cards.active_last4)
        return notices.to_csv(listed, encoding)

    content = services.read(work)
    filename = f"expiry-notices-{point_type}-{tokyo_date(now).isoformat()}.csv"
    return Response(
        content,
        # CP932's registered name is Windows-31J (Shift_JIS lacks some of its characters).
        media_type=f"text/csv; charset={'Windows-31J' if encoding == 'cp932' else 'utf-8'}",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
