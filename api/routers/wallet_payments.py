"""The resident's paying endpoints: scan and pay, pay codes, my payments, my pay settings.

Only ever the caller's own payments and codes. A payment QR is paid at its amount; a store QR
takes the amount the resident typed and waits for the shop's confirmation (``pending``) unless
the shop confirms such amounts automatically. The pay code is shown by the wallet for a till to
scan; the wallet learns it was used by reading the code (``GET /me/pay-codes/{id}``).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlmodel import Session

from api.bodies import StrictRoute
from api.deps import ResidentDep, ServicesDep
from api.payment_views import QR_SIZE_MM, for_resident
from api.safety import VALUE_MOVING, IdempotencyDep
from api.schemas import PROTECTED_ERRORS, Page, PathId
from api.schemas_earning import NumericCursor
from api.schemas_spending import (
    Limit,
    PayCodeCreate,
    PayCodePublic,
    PaymentCreate,
    PaymentSettingsChange,
    PaymentSettingsPublic,
    PreviewPublic,
    RequestId,
    ResidentPaymentPublic,
    ScanInput,
)
from points import qrrender
from redemption import flows, payments

router = APIRouter(
    prefix="/api/v1/me", tags=["resident"], responses=PROTECTED_ERRORS, route_class=StrictRoute
)


@router.post(
    "/payment-previews",
    response_model=PreviewPublic,
    summary="What paying a scanned QR would be (nothing is paid)",
)
def preview_payment(body: ScanInput, caller: ResidentDep, services: ServicesDep) -> PreviewPublic:
    """For a scanned payment QR: the shop, the amount, my balance and my balance after. For a
    store QR: the shop, the point types it accepts and my balances (I type the amount). The
    token goes in the body, never in a URL. Refusals: `token_*` (422), `payment_request_paid`,
    `payment_request_cancelled`, `merchant_not_active`."""
    now = services.clock()

    def work(session: Session) -> PreviewPublic:
        found = flows.preview(
            session, caller.principal_id, now, body.token, signing=services.signing
        )
        after = None
        if found.amount is not None:
            after = found.balances[found.point_types[0].code] - found.amount
        return PreviewPublic(
            flow=found.flow,
            merchant_id=found.merchant.id,
            merchant_name_ja=found.merchant.name_ja,
            merchant_name_en=found.merchant.name_en,
            till_name=found.till_name,
            amount=found.amount,
            reference=found.reference,
            point_types=[p.code for p in found.point_types],
            balances=found.balances,
            balance_after=after,
            expires_at=found.expires_at,
        )

    return services.read(work)


@router.post(
    "/payments",
    status_code=201,
    response_model=ResidentPaymentPublic,
    openapi_extra=VALUE_MOVING,
    summary="Pay a scanned payment QR or store QR",
)
def pay(
    body: PaymentCreate, caller: ResidentDep, services: ServicesDep, idempotency: IdempotencyDep
) -> JSONResponse:
    """Pays the scanned QR from my wallet, earliest-expiring points first. A payment QR is paid
    at its amount (`amount`, if sent, must match: `amount_mismatch`) and is `posted`; a store QR
    needs `amount` (and `point_type` when the shop takes several) and is `pending` until the shop
    confirms it, or `posted` at once where the shop confirms such amounts automatically.
    Requires an `Idempotency-Key`: keep it until you have an answer. Refusals: `token_*` (422),
    `payment_request_paid`, `payment_request_cancelled`, `insufficient_balance` (with
    `available`), `point_type_not_accepted`, `wallet_closed`, `merchant_not_active`."""
    now = services.clock()

    def work(session: Session) -> tuple[int, Any]:
        paid = flows.pay(
            session,
            caller.principal_id,
            now,
            body.token,
            amount=body.amount,
            point_type=body.point_type,
            signing=services.signing,
        )
        return 201, for_resident(paid).model_dump(mode="json")

    return idempotency.run(caller, body, work)


@router.get("/payments", response_model=Page[ResidentPaymentPublic], summary="My payments")
def my_payments(
    caller: ResidentDep, services: ServicesDep, cursor: NumericCursor = None, limit: Limit = 50
) -> Page[ResidentPaymentPublic]:
    """My payments at shops, newest first, paged, each naming the shop, with its state and the
    points refunded."""

    def work(session: Session) -> Page[ResidentPaymentPublic]:
        items = payments.list_views(
            session,
            payments.Filters(resident_id=caller.principal_id),
            before=int(cursor) if cursor is not None else None,
            limit=limit,
        )
        return Page(
            items=[for_resident(item) for item in items],
            next_cursor=str(items[-1].payment.seq) if len(items) == limit else None,
        )

    return services.read(work)


@router.get(
    "/payments/{payment_id}", response_model=ResidentPaymentPublic, summary="One of my payments"
)
def my_payment(
    payment_id: PathId, caller: ResidentDep, services: ServicesDep
) -> ResidentPaymentPublic:
    """One of my payments (for a store-QR payment: whether the shop confirmed it)."""
    found = services.read(
        lambda session: payments.view(session, payment_id, resident_id=caller.principal_id)
    )
    return for_resident(found)


@router.post(
    "/pay-codes", status_code=201, response_model=PayCodePublic, summary="A one-time pay code"
)
def new_pay_code(body: PayCodeCreate, caller: ResidentDep, services: ServicesDep) -> PayCodePublic:
    """A pay code to show the shop (its text and an SVG), valid for 90 seconds and usable once;
    the till scans it and keys the amount, up to my pay-code limit."""
    now = services.clock()

    def work(session: Session) -> PayCodePublic:
        made = flows.issue_pay_code(session, caller.principal_id, now, signing=services.signing)
        return PayCodePublic(
            id=made.pay_code.id,
            state="open",
            token=made.text,
            svg=qrrender.svg(made.text, QR_SIZE_MM, quick=True),
            limit=made.limit,
            created_at=made.pay_code.created_at,
            expires_at=made.pay_code.expires_at,
            payment=None,
        )

    return services.write(work)


@router.get("/pay-codes/{code_id}", response_model=PayCodePublic, summary="Was my pay code used?")
def my_pay_code(code_id: RequestId, caller: ResidentDep, services: ServicesDep) -> PayCodePublic:
    """`open`, `used` (with the payment it made) or `expired`."""
    now = services.clock()

    def work(session: Session) -> PayCodePublic:
        found = flows.pay_code_view(session, caller.principal_id, code_id, now)
        return PayCodePublic(
            id=found.pay_code.id,
            state=found.state,
            limit=flows.pay_code_limit(session, caller.principal_id),
            created_at=found.pay_code.created_at,
            expires_at=found.pay_code.expires_at,
            payment=for_resident(found.payment) if found.payment is not None else None,
        )

    return services.read(work)


@router.get(
    "/payment-settings", response_model=PaymentSettingsPublic, summary="My payment settings"
)
def my_payment_settings(caller: ResidentDep, services: ServicesDep) -> PaymentSettingsPublic:
    """The most one pay code may pay (5,000 pt unless I lowered it)."""
    limit = services.read(lambda session: flows.pay_code_limit(session, caller.principal_id))
    return PaymentSettingsPublic(pay_code_limit=limit, pay_code_limit_max=flows.PAY_CODE_LIMIT_MAX)


@router.put(
    "/payment-settings", response_model=PaymentSettingsPublic, summary="Change my pay-code limit"
)
def change_payment_settings(
    body: PaymentSettingsChange, caller: ResidentDep, services: ServicesDep
) -> PaymentSettingsPublic:
    """Lower (or raise again, up to 5,000 pt) the most one pay code may pay."""
    now = services.clock()
    limit = services.write(
        lambda session: flows.set_pay_code_limit(
            session, caller.principal_id, body.pay_code_limit, now
        )
    )
    return PaymentSettingsPublic(pay_code_limit=limit, pay_code_limit_max=flows.PAY_CODE_LIMIT_MAX)
