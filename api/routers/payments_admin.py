"""Payments and shops as finance and admins see them: every payment with filters (residents by
pseudonymous id), and the shops' settings and tills, which admins manage (audited)."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from sqlmodel import Session

from api.bodies import StrictRoute
from api.deps import AdminDep, AuditorDep, FinanceDep, ServicesDep
from api.payment_views import for_finance, settings_public, till_public
from api.safety import VALUE_MOVING, IdempotencyDep
from api.schemas import ID_PATTERN, PROTECTED_ERRORS, Page, PathId, ReasonInput
from api.schemas_cards import CardPolicyChange, CardPolicyPublic
from api.schemas_earning import NumericCursor, PointTypeCode
from api.schemas_spending import (
    FinancePaymentPublic,
    FinanceRefundCreate,
    Limit,
    MerchantFeeChange,
    MerchantSettingsChange,
    MerchantSettingsPublic,
    TillCreate,
    TillCreated,
    TillPublic,
)
from points.pointtypes import find_point_type
from redemption import cards, flows, merchants, payments
from redemption.payments import State

finance_router = APIRouter(
    prefix="/api/v1/finance", tags=["finance"], responses=PROTECTED_ERRORS, route_class=StrictRoute
)
admin_router = APIRouter(
    prefix="/api/v1/admin", tags=["admin"], responses=PROTECTED_ERRORS, route_class=StrictRoute
)


@finance_router.get(
    "/payments", response_model=Page[FinancePaymentPublic], summary="Payments at shops"
)
def list_payments(
    caller: AuditorDep,
    services: ServicesDep,
    merchant_id: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    from_day: Annotated[date | None, Query(alias="from", description="a Tokyo day")] = None,
    to_day: Annotated[date | None, Query(alias="to", description="a Tokyo day, included")] = None,
    state: Annotated[State | None, Query()] = None,
    cursor: NumericCursor = None,
    limit: Limit = 50,
) -> Page[FinancePaymentPublic]:
    """Every payment, newest first, paged, filtered by shop, Tokyo day range and state; the
    resident by pseudonymous id, the ledger entries of the payment, its hold's resolution and
    its refunds."""

    def work(session: Session) -> Page[FinancePaymentPublic]:
        items = payments.list_views(
            session,
            payments.Filters(
                merchant_id=merchant_id, from_day=from_day, to_day=to_day, state=state
            ),
            before=int(cursor) if cursor is not None else None,
            limit=limit,
        )
        return Page(
            items=[for_finance(item) for item in items],
            next_cursor=str(items[-1].payment.seq) if len(items) == limit else None,
        )

    return services.read(work)


@finance_router.get(
    "/payments/{payment_id}", response_model=FinancePaymentPublic, summary="One payment"
)
def get_payment(
    payment_id: PathId, caller: AuditorDep, services: ServicesDep
) -> FinancePaymentPublic:
    """One payment with its ledger entries."""
    return for_finance(services.read(lambda session: payments.view(session, payment_id)))


@finance_router.post(
    "/payments/{payment_id}/refunds",
    status_code=201,
    response_model=FinancePaymentPublic,
    openapi_extra=VALUE_MOVING,
    summary="Refund a disputed payment on the shop's behalf",
)
def refund_on_behalf(
    payment_id: PathId,
    body: FinanceRefundCreate,
    caller: FinanceDep,
    services: ServicesDep,
    idempotency: IdempotencyDep,
) -> JSONResponse:
    """Finance refunds all or part of a disputed payment of any flow for the shop (which cannot
    or will not), with the reason; it lowers the shop's payable like any refund and is in the
    audit trail. The shop's refund window applies. Requires an `Idempotency-Key`. Refusals:
    `refund_exceeds_payment` (with `refundable`), `refund_window_over`, `refund_not_allowed`,
    `validation_error` (no reason)."""
    now = services.clock()

    def work(session: Session) -> tuple[int, Any]:
        done = flows.refund(session, caller, now, payment_id, body.amount, reason=body.reason)
        return 201, for_finance(done).model_dump(mode="json")

    return idempotency.run(caller, body, work)


@finance_router.put(
    "/merchants/{merchant_id}/fee",
    response_model=MerchantSettingsPublic,
    summary="Set a shop's cash-out fee (finance or admin)",
)
def set_fee(
    merchant_id: PathId, body: MerchantFeeChange, caller: AuditorDep, services: ServicesDep
) -> MerchantSettingsPublic:
    """Sets the fee deducted from what the shop is paid at settlement, in basis points (0 to
    1,000, that is up to 10 %): fee = floor(yen × fee_bps / 10,000), shown on the shop's
    statement. Finance or an admin sets it, never the shop, which sees it in its settings;
    recorded in the audit trail (`merchant.settings`) with the values before and after and the
    reason."""
    now = services.clock()
    return settings_public(
        services.write(
            lambda session: merchants.set_fee(
                session, caller, now, merchant_id, body.fee_bps, reason=body.reason
            )
        )
    )


@admin_router.get(
    "/merchants/{merchant_id}/settings",
    response_model=MerchantSettingsPublic,
    summary="A shop's payment settings",
)
def get_settings(
    merchant_id: PathId, caller: AdminDep, services: ServicesDep
) -> MerchantSettingsPublic:
    """Accepted point types, confirmation mode, confirmation timeout, refund window, cash-out
    fee."""
    now = services.clock()
    return settings_public(
        services.read(lambda session: merchants.settings_view(session, merchant_id, now))
    )


@admin_router.patch(
    "/merchants/{merchant_id}/settings",
    response_model=MerchantSettingsPublic,
    summary="Change a shop's payment settings",
)
def change_settings(
    merchant_id: PathId, body: MerchantSettingsChange, caller: AdminDep, services: ServicesDep
) -> MerchantSettingsPublic:
    """Changes the fields sent (the accepted point types are replaced as a whole), the cash-out
    fee `fee_bps` (0 to 1,000 basis points) among them; recorded in the audit trail with the
    values before and after and the reason. The shop itself only reads its settings."""
    now = services.clock()
    change = merchants.SettingsChange(
        accepted_point_types=body.accepted_point_types,
        confirm_mode=body.confirm_mode,
        auto_confirm_max=body.auto_confirm_max,
        confirm_timeout_seconds=body.confirm_timeout_seconds,
        refund_window_days=body.refund_window_days,
        fee_bps=body.fee_bps,
    )
    return settings_public(
        services.write(
            lambda session: merchants.change_settings(
                session, caller, now, merchant_id, change, reason=body.reason
            )
        )
    )


@admin_router.post(
    "/merchants/{merchant_id}/tills",
    status_code=201,
    response_model=TillCreated,
    summary="Add a till (a device of the shop)",
)
def create_till(
    merchant_id: PathId, body: TillCreate, caller: AdminDep, services: ServicesDep
) -> TillCreated:
    """A till with its own member of staff, its token (shown once) and its printed store QR."""
    now = services.clock()

    def work(session: Session) -> TillCreated:
        made = merchants.create_till(
            session,
            caller,
            now,
            merchant_id,
            body.name,
            keys=services.keys,
            origin=services.settings.public_origin,
        )
        return TillCreated(**till_public(made.till).model_dump(), token=made.token.secret)

    return services.write(work)


@admin_router.get(
    "/merchants/{merchant_id}/tills", response_model=list[TillPublic], summary="A shop's tills"
)
def list_tills(merchant_id: PathId, caller: AdminDep, services: ServicesDep) -> list[TillPublic]:
    """Every till of the shop, revoked ones included."""

    def work(session: Session) -> list[TillPublic]:
        merchants.get_merchant(session, merchant_id)
        return [till_public(till) for till in merchants.list_tills(session, merchant_id)]

    return services.read(work)


@admin_router.post(
    "/tills/{till_id}/store-qr", response_model=TillPublic, summary="Reissue a till's store QR"
)
def reissue_store_qr(
    till_id: PathId, body: ReasonInput, caller: AdminDep, services: ServicesDep
) -> TillPublic:
    """A new printed store QR; the old sticker is refused (`token_revoked`) from now on."""
    now = services.clock()
    return till_public(
        services.write(
            lambda session: merchants.reissue_store_code(
                session,
                caller,
                now,
                till_id,
                keys=services.keys,
                origin=services.settings.public_origin,
                reason=body.reason,
            )
        )
    )


@admin_router.post("/tills/{till_id}/revoke", response_model=TillPublic, summary="Revoke a till")
def revoke_till(
    till_id: PathId, body: ReasonInput, caller: AdminDep, services: ServicesDep
) -> TillPublic:
    """A lost or retired device: its tokens and its store QR stop working."""
    now = services.clock()
    return till_public(
        services.write(
            lambda session: merchants.revoke_till(session, caller, now, till_id, reason=body.reason)
        )
    )


# Card limits ---------------------------------------------------------------------------------


@admin_router.get(
    "/point-types/{point_type}/card-policy",
    response_model=CardPolicyPublic,
    summary="The card limits of a point type",
)
def get_card_policy(
    point_type: PointTypeCode, caller: AdminDep, services: ServicesDep
) -> CardPolicyPublic:
    """What one card may pay per Tokyo day in this point type, and how many card payments it may
    make at one shop per day (10,000 pt and 3 unless set)."""
    now = services.clock()

    def work(session: Session) -> CardPolicyPublic:
        policy = cards.policy_of(session, find_point_type(session, point_type), now)
        return CardPolicyPublic(
            point_type=point_type,
            daily_limit=policy.daily_limit,
            payments_per_shop=policy.payments_per_shop,
        )

    return services.read(work)


@admin_router.put(
    "/point-types/{point_type}/card-policy",
    response_model=CardPolicyPublic,
    summary="Set the card limits of a point type",
)
def set_card_policy(
    point_type: PointTypeCode, body: CardPolicyChange, caller: AdminDep, services: ServicesDep
) -> CardPolicyPublic:
    """Sets both limits (audited with the values before and after). They bound what a dishonest
    till that kept a card's number and PIN could take in a day."""
    now = services.clock()

    def work(session: Session) -> CardPolicyPublic:
        policy = cards.set_policy(
            session,
            caller,
            now,
            find_point_type(session, point_type),
            daily_limit=body.daily_limit,
            payments_per_shop=body.payments_per_shop,
        )
        return CardPolicyPublic(
            point_type=point_type,
            daily_limit=policy.daily_limit,
            payments_per_shop=policy.payments_per_shop,
        )

    return services.write(work)
