"""The resident's own wallet endpoints: only ever the caller's own data.

``/me/wallets`` shows a wallet for each point type the resident holds or held points of (none
of the city's other types): the balance that can be spent now, what is held for payments
awaiting confirmation, the balance by expiry date, and a notice ("N pt expire on D") for the
nearest expiry within the notice window (``POINTS_EXPIRY_NOTICE_DAYS``, 60 by
default). The history lists the entries touching the wallet, newest first, with a line in
Japanese and English.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlmodel import Session

from api.bodies import StrictRoute
from api.deps import ResidentDep, ServicesDep
from api.schemas import PROTECTED_ERRORS, Page, ResidentPublic
from api.schemas_earning import NumericCursor, PointTypeCode, WalletHistoryLine, WalletPublic
from api.wallet_views import resident_history, resident_wallet, resident_wallets
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
