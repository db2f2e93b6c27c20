"""City counter staff acting for a resident without a phone (issue 19 part 5).

Counter staff find the resident in front of them by the card handed over (its QR or number),
the resident address number (宛名番号) or the resident's id; see the wallets (balance, balance
by expiry date, the coming expiry); print the expiry notice the letters carry; and pay a shop
on the resident's behalf, only with the PIN the resident types on the staff device.

**Staff never move a resident's points without the PIN.** An assisted payment is the till's
card payment (``api.card_payments.pay_with_pin``: the PIN counted and committed before it is
compared, 5 wrong per card, the card's limits of the day) with the counter in the till's place:
wrong PINs are bounded per member of counter staff (10 an hour, like a till: a counter PC is
staff-held), and the payment is audited (``card.assisted_payment``) with the member of staff,
the resident's pseudonymous id and the reason, never the PIN.

**Reads are not audited**, as for the counter's other reads (``api.routers.counter``: a
resident by id or address number, their wallets, their cards): the audit trail records acts,
and an audit event is a write on one hash chain that every request would then queue on. What
staff did for the resident (a payment, a card blocked or a PIN changed) is audited where it
happens.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse, JSONResponse, Response
from sqlmodel import Session

from api import notice_page
from api.bodies import StrictRoute
from api.card_payments import pay_with_pin
from api.deps import CounterDep, ServicesDep
from api.payment_views import card_receipt, for_finance
from api.safety import VALUE_MOVING, IdempotencyDep
from api.schemas import HTML_PAGE, PROTECTED_ERRORS, PathId, ResidentPublic
from api.schemas_cards import (
    AssistedPaymentCreate,
    AssistedPaymentPublic,
    AssistedResident,
    CardPublic,
    ResidentFind,
)
from api.wallet_views import resident_wallets
from points import notices, people
from points.calendar import tokyo_date
from points.errors import InvalidInput
from points.registry import Resident
from points.wallets import point_types_of_resident
from redemption import cards, flows

#: The letters' window by default (``GET /api/v1/counter/expiry-notices``).
NOTICE_DAYS_DEFAULT = 60

router = APIRouter(
    prefix="/api/v1/counter", tags=["counter"], responses=PROTECTED_ERRORS, route_class=StrictRoute
)


@router.post(
    "/residents/find",
    response_model=AssistedResident,
    summary="Find the resident at the counter by card, card number, address number or id",
)
def find_resident(
    body: ResidentFind, caller: CounterDep, services: ServicesDep
) -> AssistedResident:
    """The resident named by exactly one of `card_qr` (the card's scanned QR), `card_number`,
    `address_number` (宛名番号, exact) or `resident_id`, with the card (the one handed over,
    even blocked or replaced, else the resident's active card) and the wallets: balance, held
    points, balance by expiry date and the coming expiry. No browsing, no partial search.
    Refusals: `validation_error` (none or several keys), `card_number_invalid`, `token_*`
    (422), `not_found` (409 `conflict` when two residents share an address number)."""
    now, signing = services.clock(), services.card_signing
    days = services.settings.expiry_notice_days
    keys = (body.card_qr, body.card_number, body.address_number, body.resident_id)
    if sum(value is not None for value in keys) != 1:
        raise InvalidInput(
            "name the resident by exactly one of card_qr, card_number, address_number and "
            "resident_id",
            field="resident",
        )

    def work(session: Session) -> AssistedResident:
        card: cards.Card | None = None
        if body.card_qr is not None or body.card_number is not None:
            card = cards.find_card(
                session,
                card_number=body.card_number,
                card_qr=body.card_qr,
                signing=signing,
                now=now,
            )
            resident_id = card.resident_id
        else:
            resident_id = people.resident_id_of(
                session, resident_id=body.resident_id, address_number=body.address_number
            )
        resident = people.get(session, Resident, resident_id)
        if card is None:
            card = cards.active_card_of(session, resident_id)
        return AssistedResident(
            resident=ResidentPublic.model_validate(resident),
            card=CardPublic.of(card) if card is not None else None,
            wallets=resident_wallets(session, resident_id, now, days),
        )

    return services.read(work)


@router.get(
    "/residents/{resident_id}/expiry-notice",
    response_class=Response,
    responses=HTML_PAGE,
    summary="The resident's expiry notice, as the letters say it, as a page to print (A4)",
)
def expiry_notice(
    resident_id: PathId,
    caller: CounterDep,
    services: ServicesDep,
    within_days: Annotated[int, Query(ge=1, le=366)] = NOTICE_DAYS_DEFAULT,
) -> HTMLResponse:
    """The notice the expiry letters carry (`GET /api/v1/counter/expiry-notices`, the same
    query for this one resident): the address number, the name, and per point type the points
    expiring within `within_days` (60 unless told), the first date they expire on and the
    balance. A page in Japanese, then English, laid out for A4; not cached. A resident with
    nothing expiring gets a page that says so. Refusal: `not_found`."""
    now = services.clock()

    def work(session: Session) -> str:
        resident = people.get(session, Resident, resident_id)
        lines = [
            notice_page.NoticeLine(point_type, notice)
            for point_type in point_types_of_resident(session, resident_id)
            for notice in notices.expiring(
                session,
                point_type,
                now,
                within_days,
                resident_id=resident_id,
                card_digits=cards.active_last4,
            )
        ]
        return notice_page.render(resident, lines, tokyo_date(now), within_days)

    return HTMLResponse(services.read(work), headers=notice_page.HEADERS)


@router.post(
    "/assisted-payments",
    status_code=201,
    response_model=AssistedPaymentPublic,
    openapi_extra=VALUE_MOVING,
    summary="Pay a shop on a resident's behalf, with the PIN the resident typed",
)
def assisted_payment(
    body: AssistedPaymentCreate,
    caller: CounterDep,
    services: ServicesDep,
    idempotency: IdempotencyDep,
) -> JSONResponse:
    """The resident handed over the card (`card_qr` scanned, or `card_number` typed) and typed
    the PIN on the staff device; staff pay `amount` to the shop `merchant_id` for them, saying
    why (`reason`). Exactly a till's card payment: the PIN is counted before it is compared
    (`pin_incorrect` with `attempts_left`, `card_locked` after 5 wrong), the card's limits of
    the day apply, and nothing but the attempt is written on a wrong PIN. A member of staff
    with 10 wrong PINs in an hour is refused `pin_attempts_exceeded` (429, `Retry-After`).
    Audited with the member of staff, the resident's pseudonymous id and the reason; the shop
    sees the payment with the reference `city counter`. Requires an `Idempotency-Key` (the
    PIN enters its fingerprint only keyed with the server's secret). Other refusals:
    `pin_invalid`, `card_number_invalid`, `card_blocked`, `card_daily_limit_exceeded`,
    `card_shop_limit_exceeded`, `insufficient_balance`, `point_type_not_accepted`,
    `merchant_not_active`, `token_*` (422), `not_found`."""
    now = services.clock()

    def at_the_counter(session: Session) -> None:
        # Before any attempt: the shop exists, is active and takes the point type.
        flows.payee(session, body.merchant_id, body.point_type)

    def pay(session: Session, card_id: str) -> tuple[int, Any]:
        paid = flows.pay_on_behalf(
            session,
            caller,
            now,
            card_id,
            merchant_id=body.merchant_id,
            amount=body.amount,
            point_type=body.point_type,
            reason=body.reason,
        )
        receipt = card_receipt(session, paid, now, services.settings.expiry_notice_days)
        answer = AssistedPaymentPublic(**for_finance(paid).model_dump(), receipt=receipt)
        return 201, answer.model_dump(mode="json")

    return pay_with_pin(body, caller, services, idempotency, now, place=at_the_counter, pay=pay)
