"""The shop's endpoints (merchant staff and tills): only their own shop's objects.

A till (a device of the shop: ``redemption.merchants``) takes payments: it shows payment QRs and
scans pay codes. Any member of the shop's staff reads the shop's payments, confirms or declines
store-QR payments and refunds. The device learns of payments from the shop's events: a stream of
server-sent events that ends within a minute and resumes with ``Last-Event-ID``, and its polling
twin with an ``after`` cursor (``redemption.payments`` says why the cursor never skips one).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import date, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query
from fastapi.responses import JSONResponse
from sqlmodel import Session
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.concurrency import run_in_threadpool

from api.bodies import StrictRoute
from api.card_payments import pay_with_pin
from api.deps import MerchantDep, Services, ServicesDep
from api.payment_views import (
    card_receipt,
    for_merchant,
    request_public,
    settings_public,
    till_public,
)
from api.safety import VALUE_MOVING, Idempotency, IdempotencyDep
from api.schemas import PROTECTED_ERRORS, MerchantPublic, PathId
from api.schemas_cards import CardPaymentCreate, CardPaymentPublic
from api.schemas_earning import NumericCursor
from api.schemas_spending import (
    DayTotalsPublic,
    EventCursor,
    Limit,
    MerchantPaymentPage,
    MerchantPaymentPublic,
    MerchantSettingsPublic,
    PayCodePaymentCreate,
    PaymentEventPage,
    PaymentEventPublic,
    PaymentRequestCreate,
    PaymentRequestPublic,
    RefundCreate,
    RequestId,
    TillPublic,
)
from points.auth import Principal
from points.people import get
from points.registry import Merchant
from redemption import flows, merchants, payments
from redemption.payments import PaymentView

router = APIRouter(
    prefix="/api/v1/merchant",
    tags=["merchant"],
    responses=PROTECTED_ERRORS,
    route_class=StrictRoute,
)


@router.get("", response_model=MerchantPublic, summary="The merchant I work for")
def my_merchant(caller: MerchantDep, services: ServicesDep) -> MerchantPublic:
    """The merchant the calling member of merchant staff works for; no other merchant is visible."""
    assert caller.merchant_id is not None
    merchant_id = caller.merchant_id

    def work(session: Session) -> MerchantPublic:
        return MerchantPublic.model_validate(get(session, Merchant, merchant_id))

    return services.read(work)


# Settings and tills --------------------------------------------------------------------------


@router.get("/settings", response_model=MerchantSettingsPublic, summary="My shop's settings")
def my_settings(caller: MerchantDep, services: ServicesDep) -> MerchantSettingsPublic:
    """The point types the shop accepts, how store-QR payments are confirmed, the confirmation
    timeout, the refund window and the cash-out fee (`fee_bps`, basis points deducted at
    settlement). Admins change them (finance too for the fee)."""
    assert caller.merchant_id is not None
    merchant_id, now = caller.merchant_id, services.clock()
    return settings_public(
        services.read(lambda session: merchants.settings_view(session, merchant_id, now))
    )


@router.get("/tills", response_model=list[TillPublic], summary="My shop's tills")
def my_tills(caller: MerchantDep, services: ServicesDep) -> list[TillPublic]:
    """Every till (device) of the shop, with its printed store QR."""
    assert caller.merchant_id is not None
    merchant_id = caller.merchant_id
    tills = services.read(lambda session: merchants.list_tills(session, merchant_id))
    return [till_public(till) for till in tills]


@router.get("/till", response_model=TillPublic, summary="The till I am")
def my_till(caller: MerchantDep, services: ServicesDep) -> TillPublic:
    """The calling till and its printed store QR (`till_required` for shop staff who are not a
    till)."""
    return till_public(services.read(lambda session: merchants.till_of(session, caller)))


# Payment QRs ---------------------------------------------------------------------------------


@router.post(
    "/payment-requests",
    status_code=201,
    response_model=PaymentRequestPublic,
    summary="Show a payment QR for an amount",
)
def create_payment_request(
    body: PaymentRequestCreate, caller: MerchantDep, services: ServicesDep
) -> PaymentRequestPublic:
    """The till keys an amount (and a reference such as a receipt number) and gets a payment QR
    (its text and an SVG) valid for `expires_in_seconds` (120 by default). The resident's wallet
    scans and pays it; the till learns of the payment from its events or by reading the request.
    Refusals: `till_required`, `merchant_not_active`, `point_type_not_accepted`."""
    now = services.clock()

    def work(session: Session) -> PaymentRequestPublic:
        found = flows.create_request(
            session,
            caller,
            now,
            amount=body.amount,
            point_type=body.point_type,
            reference=body.reference,
            signing=services.signing,
            lifetime=timedelta(seconds=body.expires_in_seconds),
        )
        return request_public(found, services.pseudonym_key)

    return services.write(work)


@router.get(
    "/payment-requests/{request_id}",
    response_model=PaymentRequestPublic,
    summary="A payment QR and whether it was paid",
)
def get_payment_request(
    request_id: RequestId, caller: MerchantDep, services: ServicesDep
) -> PaymentRequestPublic:
    """`open`, `paid` (with the payment), `expired` or `cancelled`."""
    assert caller.merchant_id is not None
    merchant_id, now = caller.merchant_id, services.clock()
    found = services.read(lambda session: flows.request_view(session, merchant_id, request_id, now))
    return request_public(found, services.pseudonym_key)


@router.post(
    "/payment-requests/{request_id}/cancel",
    response_model=PaymentRequestPublic,
    summary="Cancel an unpaid payment QR",
)
def cancel_payment_request(
    request_id: RequestId, caller: MerchantDep, services: ServicesDep
) -> PaymentRequestPublic:
    """A wrong amount keyed: the QR can no longer be paid. A paid one is `payment_request_paid`
    (refund it instead); cancelling twice answers the cancelled request."""
    now = services.clock()

    def work(session: Session) -> PaymentRequestPublic:
        found = flows.cancel_request(session, caller, now, request_id, signing=services.signing)
        return request_public(found, services.pseudonym_key)

    return services.write(work)


# Pay codes -----------------------------------------------------------------------------------


@router.post(
    "/pay-code-payments",
    status_code=201,
    response_model=MerchantPaymentPublic,
    openapi_extra=VALUE_MOVING,
    summary="Take a payment by a resident's scanned pay code",
)
def pay_by_code(
    body: PayCodePaymentCreate,
    caller: MerchantDep,
    services: ServicesDep,
    idempotency: IdempotencyDep,
) -> JSONResponse:
    """The till scanned the resident's one-time pay code and keyed the amount: paid at once.
    Requires an `Idempotency-Key`. Refusals: `token_*` (422), `pay_code_used`,
    `pay_code_limit_exceeded` (a payment QR takes larger amounts), `insufficient_balance`
    (with `available`), `point_type_not_accepted`, `wallet_closed`, `merchant_not_active`,
    `till_required`."""
    now = services.clock()

    def work(session: Session) -> tuple[int, Any]:
        paid = flows.pay_by_code(
            session,
            caller,
            now,
            body.token,
            amount=body.amount,
            point_type=body.point_type,
            reference=body.reference,
            signing=services.signing,
        )
        return 201, for_merchant(paid, services.pseudonym_key).model_dump(mode="json")

    return idempotency.run(caller, body, work)


@router.post(
    "/card-payments",
    status_code=201,
    response_model=CardPaymentPublic,
    openapi_extra=VALUE_MOVING,
    summary="Take a payment by a resident's card and PIN",
)
def pay_by_card(
    body: CardPaymentCreate,
    caller: MerchantDep,
    services: ServicesDep,
    idempotency: IdempotencyDep,
) -> JSONResponse:
    """The till scanned the resident's card (`card_qr`) or keyed its number (`card_number`),
    keyed the amount, and the resident typed the PIN on the till: paid at once. The answer's
    `receipt` has what the card has left and the nearest expiry, for a printed or spoken
    receipt. Requires an `Idempotency-Key` (the PIN enters its fingerprint only keyed with the
    server's secret). The PIN is counted before it is compared: `pin_incorrect` (with
    `attempts_left`), then `card_locked` after 5 wrong; a till with 10 wrong PINs in an hour is
    refused `pin_attempts_exceeded` (429, `Retry-After`). Other refusals: `pin_invalid`,
    `card_number_invalid`, `card_blocked`, `card_daily_limit_exceeded`,
    `card_shop_limit_exceeded`, `insufficient_balance`, `point_type_not_accepted`,
    `wallet_closed`, `merchant_not_active`, `till_required`, `token_*` (422), `not_found`."""
    now = services.clock()

    def at_the_till(session: Session) -> str:
        till, _ = flows.card_till(session, caller, body.point_type)
        return till.id

    def pay(session: Session, card_id: str) -> tuple[int, Any]:
        paid = flows.pay_by_card(
            session,
            caller,
            now,
            card_id,
            amount=body.amount,
            point_type=body.point_type,
            reference=body.reference,
        )
        receipt = card_receipt(session, paid, now, services.settings.expiry_notice_days)
        answer = for_merchant(paid, services.pseudonym_key).model_dump(mode="json")
        return 201, {**answer, "receipt": receipt.model_dump(mode="json")}

    return pay_with_pin(body, caller, services, idempotency, now, place=at_the_till, pay=pay)


# Payments ------------------------------------------------------------------------------------


@router.get("/payments", response_model=MerchantPaymentPage, summary="My shop's payments of a day")
def list_payments(
    caller: MerchantDep,
    services: ServicesDep,
    day: Annotated[date | None, Query(description="a Tokyo day; today by default")] = None,
    cursor: NumericCursor = None,
    limit: Limit = 50,
) -> MerchantPaymentPage:
    """The shop's payments of one day (today in Tokyo by default), newest first, paged, with the
    day's totals: posted payments, their points, refunded points, net, and pending ones."""
    assert caller.merchant_id is not None
    merchant_id = caller.merchant_id
    listed_day = day or payments.today(services.clock())

    def work(session: Session) -> MerchantPaymentPage:
        items = payments.list_views(
            session,
            payments.Filters(merchant_id=merchant_id, from_day=listed_day, to_day=listed_day),
            before=int(cursor) if cursor is not None else None,
            limit=limit,
        )
        totals = payments.day_totals(session, merchant_id, listed_day)
        return MerchantPaymentPage(
            items=[for_merchant(item, services.pseudonym_key) for item in items],
            next_cursor=str(items[-1].payment.seq) if len(items) == limit else None,
            totals=DayTotalsPublic.model_validate(totals),
        )

    return services.read(work)


@router.get("/payments/{payment_id}", response_model=MerchantPaymentPublic, summary="One payment")
def get_payment(
    payment_id: PathId, caller: MerchantDep, services: ServicesDep
) -> MerchantPaymentPublic:
    """One of the shop's payments; another shop's is not found."""
    assert caller.merchant_id is not None
    merchant_id = caller.merchant_id
    found = services.read(
        lambda session: payments.view(session, payment_id, merchant_id=merchant_id)
    )
    return for_merchant(found, services.pseudonym_key)


def _resolve(
    act: Callable[[Session, Principal, datetime, str], PaymentView],
    payment_id: str,
    caller: Principal,
    services: Services,
    idempotency: Idempotency,
) -> JSONResponse:
    now = services.clock()

    def work(session: Session) -> tuple[int, Any]:
        done = act(session, caller, now, payment_id)
        return 200, for_merchant(done, services.pseudonym_key).model_dump(mode="json")

    return idempotency.run(caller, None, work, namespace=f"merchant:{caller.merchant_id}")


@router.post(
    "/payments/{payment_id}/confirm",
    response_model=MerchantPaymentPublic,
    openapi_extra=VALUE_MOVING,
    summary="Confirm a store-QR payment that arrived",
)
def confirm_payment(
    payment_id: PathId, caller: MerchantDep, services: ServicesDep, idempotency: IdempotencyDep
) -> JSONResponse:
    """The shop saw the payment arrive and confirms it: posted. Requires an `Idempotency-Key`
    (shared by the shop's staff). Refusals: `payment_not_pending` (already confirmed, declined or
    timed out), `payment_timed_out`."""
    return _resolve(flows.confirm, payment_id, caller, services, idempotency)


@router.post(
    "/payments/{payment_id}/decline",
    response_model=MerchantPaymentPublic,
    openapi_extra=VALUE_MOVING,
    summary="Decline a store-QR payment",
)
def decline_payment(
    payment_id: PathId, caller: MerchantDep, services: ServicesDep, idempotency: IdempotencyDep
) -> JSONResponse:
    """The amount is not what the customer owes, or nobody is there: voided, the points stay
    with the resident. Requires an `Idempotency-Key`. Refusals: `payment_not_pending`."""
    return _resolve(flows.decline, payment_id, caller, services, idempotency)


@router.post(
    "/payments/{payment_id}/refunds",
    status_code=201,
    response_model=MerchantPaymentPublic,
    openapi_extra=VALUE_MOVING,
    summary="Refund all or part of a payment",
)
def refund_payment(
    payment_id: PathId,
    body: RefundCreate,
    caller: MerchantDep,
    services: ServicesDep,
    idempotency: IdempotencyDep,
) -> JSONResponse:
    """Gives `amount` back to the buckets the payment came from, with their original expiry (the
    share of a bucket expired since goes to expired points). Partial refunds may repeat up to
    what was paid. Requires an `Idempotency-Key`. Refusals: `refund_exceeds_payment` (with
    `refundable`), `refund_window_over`, `refund_not_allowed` (a pending or voided payment)."""
    now = services.clock()

    def work(session: Session) -> tuple[int, Any]:
        done = flows.refund(session, caller, now, payment_id, body.amount)
        return 201, for_merchant(done, services.pseudonym_key).model_dump(mode="json")

    return idempotency.run(caller, body, work, namespace=f"merchant:{caller.merchant_id}")


# Events --------------------------------------------------------------------------------------

#: A stream ends after ``POINTS_EVENT_STREAM_SECONDS`` (55 by default); the client resumes it
#: with Last-Event-ID.
STREAM_POLL_SECONDS = 0.5
EVENTS_LIMIT = 100


def _events(services: Services, merchant_id: str, after: int | None) -> PaymentEventPage:
    def work(session: Session) -> PaymentEventPage:
        start = after if after is not None else payments.last_event_id(session, merchant_id)
        found = payments.events_after(session, merchant_id, start, limit=EVENTS_LIMIT)
        return PaymentEventPage(
            items=[
                PaymentEventPublic(
                    id=event.id,
                    kind=event.kind,
                    at=event.at,
                    payment=for_merchant(event.payment, services.pseudonym_key),
                )
                for event in found
            ],
            cursor=found[-1].id if found else start,
        )

    result: PaymentEventPage = services.read(work)
    return result


@router.get(
    "/payment-events",
    response_model=PaymentEventPage,
    summary="New and finished payments since a cursor (polling)",
)
def poll_payment_events(
    caller: MerchantDep, services: ServicesDep, after: EventCursor = None
) -> PaymentEventPage:
    """The shop's payment events after `after`, oldest first (at most 100): `created` (a
    store-QR payment awaiting confirmation), `posted`, `voided` (declined or timed out),
    `refunded`, each with the payment as it is now. Without `after`, no events and the cursor to
    start from. The same data as the event stream."""
    assert caller.merchant_id is not None
    return _events(services, caller.merchant_id, after)


@router.get(
    "/payment-events/stream",
    summary="New and finished payments, live (server-sent events)",
    response_class=EventSourceResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def stream_payment_events(
    caller: MerchantDep,
    services: ServicesDep,
    after: EventCursor = None,
    last_event_id: Annotated[
        str | None, Header(alias="Last-Event-ID", pattern=r"^[0-9]{1,18}$")
    ] = None,
) -> EventSourceResponse:
    """The events of `/payment-events` as server-sent events (`event: payment`, `id:` the
    event's id, `data:` the event as JSON). A new stream starts at the newest event and first
    sends an id-only message with that cursor. The stream ends within 60 seconds; reconnect with
    `Last-Event-ID` (browsers do) to resume. Send the bearer token in the Authorization header
    (read it with `fetch()`): a token never goes in a URL."""
    assert caller.merchant_id is not None
    merchant_id = caller.merchant_id
    start = int(last_event_id) if last_event_id is not None else after

    async def events() -> AsyncIterator[ServerSentEvent]:
        loop = asyncio.get_running_loop()
        ends = loop.time() + services.settings.event_stream_seconds
        cursor = start
        while True:
            page = await run_in_threadpool(_events, services, merchant_id, cursor)
            for item in page.items:
                yield ServerSentEvent(data=item.model_dump_json(), event="payment", id=str(item.id))
            if cursor is None:
                # Tell a new listener where it started: an id-only message sets the client's
                # last event id without an event, so a reconnect resumes from there.
                yield ServerSentEvent(id=str(page.cursor))
            cursor = page.cursor
            if len(page.items) == EVENTS_LIMIT:
                continue
            if loop.time() >= ends:
                return
            await asyncio.sleep(STREAM_POLL_SECONDS)

    return EventSourceResponse(events(), ping=15, send_timeout=10)
