"""The resident's own wallet endpoints: only ever the caller's own data.

``/me/wallets`` shows a wallet for each point type the resident holds or held points of (none
of the city's other types): the balance that can be spent now, what is held for payments
awaiting confirmation, the balance by expiry date, and a notice ("N pt expire on D") for the
nearest expiry within the notice window (``POINTS_EXPIRY_NOTICE_DAYS``, 60 by
default). The history lists the entries touching the wallet, newest first, with a line in
Japanese and English.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from sqlmodel import Session

from api.bodies import StrictRoute
from api.deps import ResidentDep, ServicesDep
from api.safety import VALUE_MOVING, IdempotencyDep
from api.schemas import PROTECTED_ERRORS, Page, ResidentPublic
from api.schemas_earning import (
    CheckInCreate,
    CheckInPublic,
    NumericCursor,
    PointTypeCode,
    WalletHistoryLine,
    WalletPublic,
)
from api.wallet_views import resident_history, resident_wallet, resident_wallets
from issuers import events
from points import people
from points.people import get
from points.registry import Resident

router = APIRouter(
    prefix="/api/v1/me", tags=["resident"], responses=PROTECTED_ERRORS, route_class=StrictRoute
)

Limit = Annotated[int, Query(ge=1, le=people.PAGE_LIMIT_MAX)]


@router.get("", response_model=ResidentPublic, summary="My profile")
def my_profile(caller: ResidentDep, services: ServicesDep) -> ResidentPublic:
    """The resident's own profile: pseudonymous id, personal data as registered (none when
    self-enrolled), verification and status."""

    def work(session: Session) -> ResidentPublic:
        return ResidentPublic.model_validate(get(session, Resident, caller.principal_id))

    return services.read(work)


@router.get("/wallets", response_model=list[WalletPublic], summary="My wallets")
def my_wallets(caller: ResidentDep, services: ServicesDep) -> list[WalletPublic]:
    """Every point type's wallet of the resident: balance, points held by pending payments, the
    balance by expiry date, and the nearest expiry within the notice window ("N pt expire on D").
    A point type the resident never earned shows an empty wallet."""
    now, days = services.clock(), services.settings.expiry_notice_days
    return services.read(lambda session: resident_wallets(session, caller.principal_id, now, days))


@router.get("/wallets/{point_type}", response_model=WalletPublic, summary="My wallet of one type")
def my_wallet(
    point_type: PointTypeCode, caller: ResidentDep, services: ServicesDep
) -> WalletPublic:
    """The resident's wallet of one point type (by its code, e.g. `pt`): balance, held points,
    balance by expiry date and the expiry notice."""
    now, days = services.clock(), services.settings.expiry_notice_days
    return services.read(
        lambda session: resident_wallet(session, caller.principal_id, point_type, now, days)
    )


@router.get(
    "/wallets/{point_type}/history",
    response_model=Page[WalletHistoryLine],
    summary="What came into and went out of my wallet, newest first",
)
def my_wallet_history(
    point_type: PointTypeCode,
    caller: ResidentDep,
    services: ServicesDep,
    cursor: NumericCursor = None,
    limit: Limit = 50,
) -> Page[WalletHistoryLine]:
    """The entries that touched the resident's wallet, newest first, paged: awards, payments (one
    line each), expiries, each `posted`, `pending` or `voided`, with a Japanese and an English
    text."""

    def work(session: Session) -> Page[WalletHistoryLine]:
        items = resident_history(
            session,
            caller.principal_id,
            point_type,
            before=int(cursor) if cursor is not None else None,
            limit=limit,
        )
        return Page(
            items=items,
            next_cursor=str(items[-1].entry_id) if len(items) == limit else None,
        )

    return services.read(work)


@router.post(
    "/check-ins",
    status_code=201,
    response_model=CheckInPublic,
    openapi_extra=VALUE_MOVING,
    responses={200: {"model": CheckInPublic, "description": "I had checked in before"}},
    summary="Check in at a volunteering event by its scanned QR token",
)
def check_in(
    body: CheckInCreate, caller: ResidentDep, services: ServicesDep, idempotency: IdempotencyDep
) -> JSONResponse:
    """Records my attendance and awards the event's points in one transaction. Requires an
    `Idempotency-Key`; a second check-in at the same event answers the first again (200,
    `replayed: true`). Refusals: `token_*` (422), `event_closed`, `outside_check_in_window`,
    `event_full`, `already_awarded` (the department awarded this event by file), and the
    award rules' (`budget_exhausted`, `cap_exceeded`, ...)."""
    now = services.clock()

    def work(session: Session) -> tuple[int, Any]:
        result = events.check_in_with_token(
            session,
            caller,
            now,
            body.token,
            keys=services.keys,
            origin=services.settings.public_origin,
            resident_id=caller.principal_id,
        )
        public = CheckInPublic(
            event_id=result.event.id,
            event_name=result.event.name,
            award_id=result.award.id or 0,
            amount=result.award.amount,
            replayed=result.replayed,
        )
        return (200 if result.replayed else 201), public.model_dump(mode="json")

    return idempotency.run(caller, body, work)
