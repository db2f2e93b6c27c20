"""Paying a shop: payment QR, pay code and store QR; confirming, declining and refunding
(issue 17 parts 2 and 3; DESIGN §6).

Each act is one transaction (the caller's unit of work) that writes one ledger entry through
the spending service (``points.spending``: earliest expiry first, holds, refunds to the source
buckets), the payment row (``redemption.payments``) and the shop's event. A payment is in one
point type, which the shop accepts (``point_type_not_accepted``); only an active shop's till
takes one (``merchant_not_active``, ``till_required``).

(a) **Payment QR**, the default: the till keys the amount (and a reference, such as a receipt
    number) and gets a payment token (valid 120 seconds by default). The resident's wallet
    previews it (shop, amount, balance after) and pays. The token is once-only
    (``points.qrtokens.mark_used``, written in the payment's transaction) and the payment row
    is unique per request, so it is paid at most once whatever happens: a second payer is told
    ``payment_request_paid``. The till may cancel an unpaid request (it marks the token used,
    so a payment racing the cancel either wins, or is told ``payment_request_cancelled``).
(b) **Pay code**: the resident's wallet gets a one-time pay code (90 seconds); the till scans it
    and keys the amount; paid at once, up to the resident's pay-code limit (5,000 pt, which the
    resident may lower: ``pay_code_limit_exceeded``); larger amounts take a payment QR. Used
    once: a second scan is ``pay_code_used``.
(c) **Store QR**: the resident scans the till's printed QR, types the amount and confirms. That
    is a hold until the shop's ``confirm_timeout_seconds``; the shop's device confirms it (posted)
    or declines it (voided), and the ``hold_timeouts`` job voids it when nobody did. A shop in
    ``auto_confirm`` mode has amounts up to its limit posted at once. A confirm after the
    deadline is ``payment_timed_out``; the ledger resolves a hold once, so a confirm, a decline
    and the job racing each other have one outcome and everybody reads it from the ledger.
(d) **Card and PIN** (``redemption.cards``): the till scans the resident's card or keys its
    number, keys the amount, and the resident types the PIN on the till; the PIN is counted and
    compared first (``cards.verify_pin``), then ``pay_by_card`` takes the points at once, within
    the card's limits of the day. Only a till takes card payments.

After the fact: a payment QR of a till revoked since is refused (``token_revoked``), a pay code
of a resident no longer active (``resident_not_active``), and a suspended shop's confirm
(``merchant_not_active``: it may still decline; what it leaves times out).

**Refunds** (any member of the shop's staff): full, or partial several times up to what was
paid, within the shop's refund window (``refund_window_over``) and only of a posted payment
(``refund_not_allowed``). Points go back to the buckets they came from with their original
expiry; the share of a bucket expired since goes to expired points (``points.spending.refund``).
The payment row's ``refunded`` grows by a conditional update under the row's lock and a CHECK
holds it within the amount, so racing refunds never return more than was paid.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlmodel import Field, Session, SQLModel, col, select

from ledger import LedgerTx
from ledger.errors import HoldAlreadyResolved, HoldExpired, HoldNotPending
from points import audit, qrtokens, spending
from points.auth import Principal, Role
from points.errors import InvalidInput, NotFound, ResidentNotActive, TokenRevoked, TokenUsed
from points.pointtypes import PointType, get_point_type
from points.registry import Merchant, Resident, ResidentStatus, new_id
from points.sqlbase import UTCDateTime
from points.wallet_views import wallet_view
from redemption import cards, catalog, merchants
from redemption.errors import (
    AmountMismatch,
    PayCodeLimitExceeded,
    PayCodeUsed,
    PaymentNotPending,
    PaymentRequestCancelled,
    PaymentRequestPaid,
    PaymentTimedOut,
    PointTypeNotAccepted,
    RefundExceedsPayment,
    RefundNotAllowed,
    RefundWindowOver,
)
from redemption.merchants import ConfirmMode, Till, TillStatus
from redemption.payments import (
    AMOUNT_MAX,
    REFERENCE_MAX,
    EventKind,
    Flow,
    Payment,
    PaymentRefund,
    PaymentView,
    State,
    record_event,
    view,
)

PAYMENT_QR_LIFETIME = timedelta(seconds=120)
PAYMENT_QR_LIFETIME_MIN = timedelta(seconds=30)
PAY_CODE_LIFETIME = timedelta(seconds=90)
#: The pay-code limit per payment; a resident may set a lower one.
PAY_CODE_LIMIT_MAX = 5_000


class PaymentRequest(SQLModel, table=True):
    """A payment QR a till showed: the amount it asks, until when."""

    __tablename__ = "payment_request"
    __table_args__ = (sa.CheckConstraint(f"amount BETWEEN 1 AND {AMOUNT_MAX}", name="amount"),)

    #: The token's request id (16 bytes) in hex.
    id: str = Field(primary_key=True, max_length=32)
    merchant_id: str = Field(foreign_key="merchant.id", max_length=32, index=True)
    till_id: str = Field(foreign_key="till.id", max_length=32)
    point_type_id: str = Field(foreign_key="point_type.id", max_length=32)
    amount: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    reference: str = Field(default="", max_length=REFERENCE_MAX)
    token: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    created_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))
    expires_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))
    cancelled_at: datetime | None = Field(
        default=None, sa_column=sa.Column(UTCDateTime(), nullable=True)
    )


class PayCode(SQLModel, table=True):
    """A one-time pay code a resident's wallet showed."""

    __tablename__ = "pay_code"

    #: The token's code id (16 bytes) in hex.
    id: str = Field(primary_key=True, max_length=32)
    resident_id: str = Field(foreign_key="resident.id", max_length=32, index=True)
    created_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))
    expires_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))


class ResidentPaySettings(SQLModel, table=True):
    __tablename__ = "resident_pay_settings"
    __table_args__ = (
        sa.CheckConstraint(
            f"pay_code_limit BETWEEN 1 AND {PAY_CODE_LIMIT_MAX}", name="pay_code_limit"
        ),
    )

    resident_id: str = Field(primary_key=True, foreign_key="resident.id", max_length=32)
    pay_code_limit: int = Field(default=PAY_CODE_LIMIT_MAX)
    updated_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))


@dataclass(frozen=True, slots=True)
class Signing:
    """What signing and verifying a token needs: the keys and the public origin."""

    keys: qrtokens.KeySource
    origin: str


@dataclass(frozen=True, slots=True)
class RequestView:
    request: PaymentRequest
    state: str  # open, paid, expired, cancelled
    payment: PaymentView | None
    point_type_code: str


@dataclass(frozen=True, slots=True)
class Preview:
    """What the resident's wallet shows before paying."""

    flow: Flow
    merchant: Merchant
    till_name: str
    #: The amount a payment QR asks (``None`` for a store QR: the resident types it).
    amount: int | None
    point_types: list[PointType]
    #: Per point type code: what the resident can spend now.
    balances: dict[str, int]
    expires_at: datetime | None
    reference: str


def _check_amount(amount: int) -> None:
    if type(amount) is not int or not 1 <= amount <= AMOUNT_MAX:
        raise InvalidInput(f"the amount is 1 to {AMOUNT_MAX:,}", field="amount")


def _check_reference(reference: str) -> str:
    if len(reference) > REFERENCE_MAX or not reference.isprintable():
        raise InvalidInput(
            f"a reference is at most {REFERENCE_MAX} printable characters", field="reference"
        )
    return reference


def _hex(raw: bytes) -> str:
    return raw.hex()


# (a) Payment QR ------------------------------------------------------------------------------


def create_request(
    session: Session,
    caller: Principal,
    now: datetime,
    *,
    amount: int,
    point_type: str | None,
    reference: str,
    signing: Signing,
    lifetime: timedelta = PAYMENT_QR_LIFETIME,
) -> RequestView:
    """A payment QR for the calling till."""
    _check_amount(amount)
    _check_reference(reference)
    if not PAYMENT_QR_LIFETIME_MIN <= lifetime <= qrtokens.PAYMENT_LIFETIME_MAX:
        raise InvalidInput("a payment QR lives 30 to 300 seconds", field="expires_in_seconds")
    till = merchants.till_of(session, caller)
    merchants.active_merchant(session, till.merchant_id)
    paid_in = merchants.accepted_type(session, till.merchant_id, point_type)
    request_id = qrtokens.new_id()
    expires_at = now + lifetime
    text = qrtokens.sign(
        qrtokens.PaymentToken(request_id, amount, expires_at),
        signing.keys,
        now,
        origin=signing.origin,
    )
    request = PaymentRequest(
        id=_hex(request_id),
        merchant_id=till.merchant_id,
        till_id=till.id,
        point_type_id=paid_in.id,
        amount=amount,
        reference=reference,
        token=text,
        created_at=now,
        # The token carries whole seconds.
        expires_at=datetime.fromtimestamp(int(expires_at.timestamp()), expires_at.tzinfo),
    )
    session.add(request)
    session.flush()
    return RequestView(request, "open", None, paid_in.code)


def request_view(session: Session, merchant_id: str, request_id: str, now: datetime) -> RequestView:
    request = session.get(PaymentRequest, request_id)
    if request is None or request.merchant_id != merchant_id:
        raise NotFound(f"no payment request {request_id}")
    return _request_view(session, request, now)


def _request_view(session: Session, request: PaymentRequest, now: datetime) -> RequestView:
    paid = session.exec(select(Payment.id).where(Payment.request_id == request.id)).first()
    payment = view(session, paid) if paid is not None else None
    if payment is not None:
        state = "paid"
    elif request.cancelled_at is not None:
        state = "cancelled"
    elif now >= request.expires_at:
        state = "expired"
    else:
        state = "open"
    code = get_point_type(session, request.point_type_id).code
    return RequestView(request, state, payment, code)


def cancel_request(
    session: Session, caller: Principal, now: datetime, request_id: str, *, signing: Signing
) -> RequestView:
    """Cancel an unpaid payment QR (a wrong amount keyed): it can no longer be paid."""
    assert caller.merchant_id is not None
    request = session.get(PaymentRequest, request_id)
    if request is None or request.merchant_id != caller.merchant_id:
        raise NotFound(f"no payment request {request_id}")
    current = _request_view(session, request, now)
    if current.state in ("paid", "cancelled"):
        if current.state == "paid":
            raise PaymentRequestPaid("the payment QR was paid already; refund it instead")
        return current
    token = qrtokens.PaymentToken(bytes.fromhex(request.id), request.amount, request.expires_at)
    try:
        qrtokens.mark_used(session, token, now)
    except TokenUsed:
        raise PaymentRequestPaid("the payment QR was paid already; refund it instead") from None
    request.cancelled_at = now
    session.add(request)
    session.flush()
    return _request_view(session, request, now)


def _payment_request_of(session: Session, token: qrtokens.PaymentToken) -> PaymentRequest:
    request = session.get(PaymentRequest, _hex(token.request_id))
    if request is None:
        raise TokenRevoked("this payment QR is not known here")
    return request


def _live_till(session: Session, request: PaymentRequest) -> Till:
    """The till that showed the payment QR, unless it was revoked since (a lost device)."""
    till = merchants.get_till(session, request.till_id)
    if till.status != TillStatus.ACTIVE:
        raise TokenRevoked("the till that showed this payment QR was revoked")
    return till


def _refuse_used_request(session: Session, request: PaymentRequest) -> None:
    if request.cancelled_at is not None:
        raise PaymentRequestCancelled("the shop cancelled this payment QR")
    if session.exec(select(Payment.id).where(Payment.request_id == request.id)).first():
        raise PaymentRequestPaid("this payment QR was paid already")


# Scanning (the resident's wallet) ------------------------------------------------------------


def _verify_scanned(
    session: Session, text: str, now: datetime, signing: Signing
) -> qrtokens.PaymentToken | qrtokens.StoreToken:
    token = qrtokens.verify(
        text,
        expect={qrtokens.Kind.PAYMENT, qrtokens.Kind.STORE},
        keys=signing.keys,
        now=now,
        origin=signing.origin,
        revoked={
            qrtokens.Kind.STORE: lambda t: (
                merchants.till_by_store_code(
                    session,
                    t.till_id,  # type: ignore[union-attr]
                )
                is None
            )
        },
    )
    assert isinstance(token, qrtokens.PaymentToken | qrtokens.StoreToken)
    return token


def _store_till(session: Session, token: qrtokens.StoreToken) -> Till:
    till = merchants.till_by_store_code(session, token.till_id)
    if till is None:  # the revocation lookup of ``verify`` refused it already
        raise TokenRevoked("the store QR was revoked")
    return till


def _balances(
    session: Session, resident_id: str, point_types: list[PointType], now: datetime
) -> dict[str, int]:
    return {p.code: wallet_view(session, p, resident_id, now, 1).balance for p in point_types}


def preview(
    session: Session, resident_id: str, now: datetime, text: str, *, signing: Signing
) -> Preview:
    """What paying the scanned payment QR or store QR would be: shop, amount, balances."""
    token = _verify_scanned(session, text, now, signing)
    if isinstance(token, qrtokens.PaymentToken):
        request = _payment_request_of(session, token)
        _refuse_used_request(session, request)
        merchant = merchants.active_merchant(session, request.merchant_id)
        till = _live_till(session, request)
        point_types = [get_point_type(session, request.point_type_id)]
        return Preview(
            Flow.PAYMENT_QR,
            merchant,
            till.name,
            request.amount,
            point_types,
            _balances(session, resident_id, point_types, now),
            request.expires_at,
            request.reference,
        )
    store_till = _store_till(session, token)
    merchant = merchants.active_merchant(session, store_till.merchant_id)
    point_types = merchants.accepted_point_types(session, store_till.merchant_id)
    return Preview(
        Flow.STORE_QR,
        merchant,
        store_till.name,
        None,
        point_types,
        _balances(session, resident_id, point_types, now),
        None,
        "",
    )


def pay(
    session: Session,
    resident_id: str,
    now: datetime,
    text: str,
    *,
    amount: int | None,
    point_type: str | None,
    signing: Signing,
) -> PaymentView:
    """Pay a scanned payment QR (its amount) or store QR (``amount`` typed by the resident)."""
    token = _verify_scanned(session, text, now, signing)
    if isinstance(token, qrtokens.PaymentToken):
        request = _payment_request_of(session, token)
        _refuse_used_request(session, request)
        if amount is not None and amount != request.amount:
            raise AmountMismatch(
                f"the payment QR asks {request.amount}; {amount} was sent",
                field="amount",
                asked=request.amount,
            )
        paid_in = get_point_type(session, request.point_type_id)
        if point_type is not None and point_type != paid_in.code:
            raise PointTypeNotAccepted(
                f"the payment QR is in {paid_in.code}",
                field="point_type",
                accepted=[paid_in.code],
            )
        merchants.active_merchant(session, request.merchant_id)
        merchants.accepted_type(session, request.merchant_id, paid_in.code)
        till = _live_till(session, request)
        try:
            qrtokens.mark_used(session, token, now)
        except TokenUsed:
            raise PaymentRequestPaid("this payment QR was paid already") from None
        return _take(
            session,
            now,
            till,
            paid_in,
            resident_id,
            request.amount,
            flow=Flow.PAYMENT_QR,
            reference=request.reference,
            request_id=request.id,
        )
    till = _store_till(session, token)
    merchants.active_merchant(session, till.merchant_id)
    if amount is None:
        raise InvalidInput("type the amount to pay", field="amount")
    _check_amount(amount)
    paid_in = merchants.accepted_type(session, till.merchant_id, point_type)
    settings = merchants.settings_of(session, till.merchant_id, now)
    at_once = (
        settings.confirm_mode == ConfirmMode.AUTO_CONFIRM and amount <= settings.auto_confirm_max
    )
    return _take(
        session,
        now,
        till,
        paid_in,
        resident_id,
        amount,
        flow=Flow.STORE_QR,
        reference="",
        hold_until=None if at_once else now + timedelta(seconds=settings.confirm_timeout_seconds),
    )


# (b) Pay code --------------------------------------------------------------------------------


def pay_code_limit(session: Session, resident_id: str) -> int:
    found = session.get(ResidentPaySettings, resident_id)
    return found.pay_code_limit if found is not None else PAY_CODE_LIMIT_MAX


def set_pay_code_limit(session: Session, resident_id: str, limit: int, now: datetime) -> int:
    if type(limit) is not int or not 1 <= limit <= PAY_CODE_LIMIT_MAX:
        raise InvalidInput(
            f"the pay-code limit is 1 to {PAY_CODE_LIMIT_MAX:,}", field="pay_code_limit"
        )
    found = session.get(ResidentPaySettings, resident_id)
    if found is None:
        found = ResidentPaySettings(resident_id=resident_id, pay_code_limit=limit, updated_at=now)
    found.pay_code_limit = limit
    found.updated_at = now
    session.add(found)
    session.flush()
    return limit


@dataclass(frozen=True, slots=True)
class NewPayCode:
    pay_code: PayCode
    text: str
    limit: int


def issue_pay_code(
    session: Session, resident_id: str, now: datetime, *, signing: Signing
) -> NewPayCode:
    code_id = qrtokens.new_id()
    expires_at = datetime.fromtimestamp(int((now + PAY_CODE_LIFETIME).timestamp()), now.tzinfo)
    text = qrtokens.sign(
        qrtokens.PayCodeToken(code_id, expires_at), signing.keys, now, origin=signing.origin
    )
    pay_code = PayCode(
        id=_hex(code_id), resident_id=resident_id, created_at=now, expires_at=expires_at
    )
    session.add(pay_code)
    session.flush()
    return NewPayCode(pay_code, text, pay_code_limit(session, resident_id))


@dataclass(frozen=True, slots=True)
class PayCodeView:
    pay_code: PayCode
    state: str  # open, used, expired
    payment: PaymentView | None


def pay_code_view(session: Session, resident_id: str, code_id: str, now: datetime) -> PayCodeView:
    pay_code = session.get(PayCode, code_id)
    if pay_code is None or pay_code.resident_id != resident_id:
        raise NotFound(f"no pay code {code_id}")
    paid = session.exec(select(Payment.id).where(Payment.pay_code_id == code_id)).first()
    payment = view(session, paid) if paid is not None else None
    state = "used" if payment else ("expired" if now >= pay_code.expires_at else "open")
    return PayCodeView(pay_code, state, payment)


def pay_by_code(
    session: Session,
    caller: Principal,
    now: datetime,
    text: str,
    *,
    amount: int,
    point_type: str | None,
    reference: str,
    signing: Signing,
) -> PaymentView:
    """The till scanned a resident's pay code and keyed the amount: paid at once."""
    _check_amount(amount)
    _check_reference(reference)
    till = merchants.till_of(session, caller)
    merchants.active_merchant(session, till.merchant_id)
    paid_in = merchants.accepted_type(session, till.merchant_id, point_type)
    token = qrtokens.verify(
        text,
        expect={qrtokens.Kind.PAY_CODE},
        keys=signing.keys,
        now=now,
        origin=signing.origin,
    )
    assert isinstance(token, qrtokens.PayCodeToken)
    pay_code = session.get(PayCode, _hex(token.code_id))
    if pay_code is None:
        raise TokenRevoked("this pay code is not known here")
    if session.exec(select(Payment.id).where(Payment.pay_code_id == pay_code.id)).first():
        raise PayCodeUsed("this pay code paid already: ask for a new one")
    resident = session.get(Resident, pay_code.resident_id)
    if resident is None or resident.status != ResidentStatus.ACTIVE:
        raise ResidentNotActive("the resident of this pay code cannot pay now")
    limit = pay_code_limit(session, pay_code.resident_id)
    if amount > limit:
        raise PayCodeLimitExceeded(
            f"a pay code pays at most {limit:,} {paid_in.unit}; show a payment QR instead",
            field="amount",
            limit=limit,
        )
    try:
        qrtokens.mark_used(session, token, now)
    except TokenUsed:
        raise PayCodeUsed("this pay code paid already: ask for a new one") from None
    return _take(
        session,
        now,
        till,
        paid_in,
        pay_code.resident_id,
        amount,
        flow=Flow.PAY_CODE,
        reference=reference,
        pay_code_id=pay_code.id,
    )


# (d) Card and PIN ----------------------------------------------------------------------------


def card_till(
    session: Session, caller: Principal, point_type: str | None
) -> tuple[Till, PointType]:
    """Before a PIN is typed: the caller is a till of an active shop that takes the point type
    (so other staff cannot spend a card's PIN attempts)."""
    till = merchants.till_of(session, caller)
    merchants.active_merchant(session, till.merchant_id)
    return till, merchants.accepted_type(session, till.merchant_id, point_type)


def pay_by_card(
    session: Session,
    caller: Principal,
    now: datetime,
    card_id: str,
    *,
    amount: int,
    point_type: str | None,
    reference: str,
) -> PaymentView:
    """The till named the card, the resident typed the right PIN (``cards.verify_pin``, which
    the caller ran first): paid at once, within the card's limits of the day."""
    till, paid_in = card_till(session, caller, point_type)
    return card_payment(session, now, till, paid_in, card_id, amount=amount, reference=reference)


def card_payment(
    session: Session,
    now: datetime,
    till: Till | None,
    paid_in: PointType,
    card_id: str,
    *,
    amount: int,
    reference: str,
    merchant_id: str | None = None,
) -> PaymentView:
    """Take ``amount`` from the card holder's points for the till's shop, after a correct PIN:
    the one card payment that a till's (``pay_by_card``) and the counter's
    (``pay_on_behalf``) share, so both meet the same checks and the card's limits of the day."""
    _check_amount(amount)
    _check_reference(reference)
    card = cards.get_card(session, card_id)
    cards.usable(session, card)
    payee = till.merchant_id if till is not None else merchant_id
    assert payee is not None
    cards.count_towards_limits(session, card, paid_in, payee, amount, now)
    return _take(
        session,
        now,
        till,
        paid_in,
        card.resident_id,
        amount,
        flow=Flow.CARD,
        reference=reference,
        card_id=card.id,
        merchant_id=payee,
    )


# (d') Card and PIN at the city counter: paying on the resident's behalf ----------------------

#: What an assisted payment's ``reference`` says to the shop (its lists show it).
ASSISTED_REFERENCE = "city counter"


def payee(session: Session, merchant_id: str, point_type: str | None) -> PointType:
    """A shop paid at the city counter: active, and the point type it takes."""
    merchants.active_merchant(session, merchant_id)
    return merchants.accepted_type(session, merchant_id, point_type)


def pay_on_behalf(
    session: Session,
    caller: Principal,
    now: datetime,
    card_id: str,
    *,
    merchant_id: str,
    amount: int,
    point_type: str | None,
    reason: str,
    reference: str = ASSISTED_REFERENCE,
    extra: Callable[[Session, PaymentView], None] | None = None,
) -> PaymentView:
    """Counter staff pay ``merchant_id`` from a card holder's points on the resident's behalf,
    after the resident typed the right PIN on the staff device (``cards.verify_pin`` with no
    till, which the caller ran first: staff never move points without it). The same card
    payment as at a till (``card_payment``: the card's limits of the day, earliest expiry
    first), recorded with no till (no shop device took it), audited
    (``card.assisted_payment``) with the member of staff, the resident's pseudonymous id and
    ``reason``; never the PIN.

    ``extra`` runs in the same transaction after the points were taken (an exchange records
    its goods there); a refusal there rolls the payment back."""
    if not reason.strip():
        raise InvalidInput("say why staff pay on the resident's behalf", field="reason")
    paid_in = payee(session, merchant_id, point_type)
    paid = card_payment(
        session,
        now,
        None,
        paid_in,
        card_id,
        amount=amount,
        reference=reference,
        merchant_id=merchant_id,
    )
    if extra is not None:
        extra(session, paid)
    card = cards.get_card(session, card_id)
    details = {
        "payment_id": paid.payment.id,
        "merchant_id": merchant_id,
        "point_type": paid_in.code,
        "amount": amount,
        "last4": card.last4,
    }
    cards.audit_card(session, caller, now, "card.assisted_payment", card, reason, details)
    return paid


# (e) Exchanges at a city counter ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Exchanged:
    payment: PaymentView
    exchange: catalog.Exchange
    item: catalog.CatalogItem


def exchange_in_wallet(
    session: Session, resident_id: str, now: datetime, item_id: str, quantity: int
) -> Exchanged:
    """The resident exchanges points for goods from a counter's catalog in the wallet app:
    the item leaves the stock and the points go to the counter in one transaction (flow
    ``exchange``, no till); the resident shows the receipt at the counter for the goods."""
    resident = session.get(Resident, resident_id)
    if resident is None or resident.status != ResidentStatus.ACTIVE:
        raise ResidentNotActive("the resident may not exchange points")
    reserved = catalog.reserve(session, now, item_id, quantity, resident_id)
    paid = _take(
        session,
        now,
        None,
        reserved.point_type,
        resident_id,
        reserved.amount,
        flow=Flow.EXCHANGE,
        reference=_exchange_reference(reserved),
        merchant_id=reserved.item.merchant_id,
    )
    done = catalog.record(session, now, reserved, paid.payment, catalog.Channel.WALLET)
    return Exchanged(paid, done, reserved.item)


def exchange_by_card(
    session: Session,
    caller: Principal,
    now: datetime,
    card_id: str,
    *,
    item_id: str,
    quantity: int,
) -> Exchanged:
    """A counter's till exchanges goods for the card's points, the resident having typed the
    right PIN (``cards.verify_pin``, run by the caller first): a card payment to the counter
    (the card's limits of the day apply) that takes the item from stock."""
    till = merchants.till_of(session, caller)
    merchants.active_merchant(session, till.merchant_id)
    card = cards.get_card(session, card_id)
    reserved = catalog.reserve(
        session, now, item_id, quantity, card.resident_id, merchant_id=till.merchant_id
    )
    paid = card_payment(
        session,
        now,
        till,
        reserved.point_type,
        card_id,
        amount=reserved.amount,
        reference=_exchange_reference(reserved),
    )
    done = catalog.record(session, now, reserved, paid.payment, catalog.Channel.CARD)
    return Exchanged(paid, done, reserved.item)


def exchange_on_behalf(
    session: Session,
    caller: Principal,
    now: datetime,
    card_id: str,
    *,
    item_id: str,
    quantity: int,
    reason: str,
) -> Exchanged:
    """Counter staff exchange goods for a card holder, who typed the PIN on the staff device:
    an assisted payment to the item's counter (``pay_on_behalf``) that takes the item from
    stock in the same transaction."""
    card = cards.get_card(session, card_id)
    reserved = catalog.reserve(session, now, item_id, quantity, card.resident_id)
    recorded: list[catalog.Exchange] = []
    paid = pay_on_behalf(
        session,
        caller,
        now,
        card_id,
        merchant_id=reserved.item.merchant_id,
        amount=reserved.amount,
        point_type=reserved.point_type.code,
        reason=reason,
        reference=_exchange_reference(reserved),
        extra=lambda inner, taken: recorded.append(
            catalog.record(inner, now, reserved, taken.payment, catalog.Channel.ASSISTED)
        ),
    )
    return Exchanged(paid, recorded[0], reserved.item)


def _exchange_reference(reserved: catalog.Reserved) -> str:
    """The payment's reference names the goods: what the counter's list shows."""
    return f"{reserved.item.name_ja[:50]} x{reserved.quantity}"


# Taking the points ---------------------------------------------------------------------------


def _shop_words(merchant: Merchant) -> dict[str, str]:
    """What a payment's entries record of the shop: the resident's history names it."""
    return {"merchant_id": merchant.id, "shop_ja": merchant.name_ja, "shop_en": merchant.name_en}


def _entry_words(current: PaymentView) -> dict[str, str]:
    """The metadata of an entry resolving or refunding a payment: the payment and its shop."""
    return {
        "payment_id": current.payment.id,
        "merchant_id": current.payment.merchant_id,
        "shop_ja": current.merchant_name_ja,
        "shop_en": current.merchant_name_en,
    }


def _take(
    session: Session,
    now: datetime,
    till: Till | None,
    point_type: PointType,
    resident_id: str,
    amount: int,
    *,
    flow: Flow,
    reference: str,
    request_id: str | None = None,
    pay_code_id: str | None = None,
    card_id: str | None = None,
    hold_until: datetime | None = None,
    merchant_id: str | None = None,
) -> PaymentView:
    """Take the points into the shop's payable and record the payment (and its event). The
    shop is the till's, or ``merchant_id`` when no till took it (an exchange in the wallet, an
    assisted payment at the city counter)."""
    payee = till.merchant_id if till is not None else merchant_id
    assert payee is not None
    merchant = merchants.get_merchant(session, payee)
    merchants.settings_of(session, payee, now)
    to_account = merchants.payable_account(session, payee, point_type, now)
    payment_id = new_id("pay")
    entry = spending.spend(
        session,
        point_type,
        spending.Spend(
            resident_id,
            amount,
            to_account,
            description=merchant.name_ja,
            metadata={"payment_id": payment_id, **_shop_words(merchant)},
            hold_until=hold_until,
        ),
        now,
    )
    held = hold_until is not None
    payment = Payment(
        id=payment_id,
        merchant_id=payee,
        till_id=till.id if till is not None else None,
        resident_id=resident_id,
        point_type_id=point_type.id,
        amount=amount,
        flow=flow,
        reference=reference,
        request_id=request_id,
        pay_code_id=pay_code_id,
        card_id=card_id,
        entry_id=entry.id,
        hold=held,
        confirm_by=hold_until,
        awaiting=held,
        created_at=now,
    )
    session.add(payment)
    session.flush()
    record_event(session, payee, payment_id, EventKind.CREATED if held else EventKind.POSTED, now)
    # As ``payments.view`` would read it back, without reading it back.
    return PaymentView(
        payment=payment,
        state=State.PENDING if held else State.POSTED,
        resolution_entry_id=None,
        resolved_at=None,
        refund_entry_ids=[],
        merchant_name_ja=merchant.name_ja,
        merchant_name_en=merchant.name_en,
        till_name=till.name if till is not None else None,
        point_type_code=point_type.code,
    )


# (c) Confirming and declining a store-QR payment ---------------------------------------------


def _locked(session: Session, merchant_id: str | None, payment_id: str) -> Payment:
    """The payment, locked; with ``merchant_id``, only that shop's."""
    payment = session.exec(
        select(Payment).where(Payment.id == payment_id).with_for_update()
    ).first()
    if payment is None or (merchant_id is not None and payment.merchant_id != merchant_id):
        raise NotFound(f"no payment {payment_id}")
    return payment


def _awaiting(session: Session, caller: Principal, payment_id: str) -> tuple[Payment, PaymentView]:
    """The shop's store-QR payment awaiting its answer, locked (``payment_not_pending``)."""
    assert caller.merchant_id is not None
    payment = _locked(session, caller.merchant_id, payment_id)
    current = view(session, payment_id)
    if current.state is not State.PENDING:
        raise PaymentNotPending(
            f"the payment is {current.state}, not awaiting confirmation", state=current.state
        )
    return payment, current


def confirm(session: Session, caller: Principal, now: datetime, payment_id: str) -> PaymentView:
    """The shop confirms a store-QR payment: the hold is posted."""
    payment, current = _awaiting(session, caller, payment_id)
    # A suspended shop takes no new points: what it does not confirm times out (or it declines).
    merchants.active_merchant(session, payment.merchant_id)
    assert payment.confirm_by is not None
    if now >= payment.confirm_by:
        raise PaymentTimedOut("the time to confirm this payment ran out; it is being voided")
    try:
        spending.post_hold(
            session,
            payment.entry_id,
            now,
            kind="payment_post",
            description=current.merchant_name_ja,
            metadata=_entry_words(current),
        )
    except HoldExpired:
        raise PaymentTimedOut("the time to confirm this payment ran out") from None
    except (HoldAlreadyResolved, HoldNotPending):
        raise PaymentNotPending("the payment is no longer awaiting confirmation") from None
    return _resolved(session, payment, EventKind.POSTED, now)


def decline(session: Session, caller: Principal, now: datetime, payment_id: str) -> PaymentView:
    """The shop declines a store-QR payment (what arrived is not what was paid): voided."""
    payment, _current = _awaiting(session, caller, payment_id)
    try:
        LedgerTx(session.connection(), lambda: now).void_pending(
            payment.entry_id, kind="payment_decline", description="declined by the shop"
        )
    except (HoldAlreadyResolved, HoldNotPending):
        raise PaymentNotPending("the payment is no longer awaiting confirmation") from None
    return _resolved(session, payment, EventKind.VOIDED, now)


def _resolved(session: Session, payment: Payment, kind: EventKind, now: datetime) -> PaymentView:
    session.execute(sa.update(Payment).where(col(Payment.id) == payment.id).values(awaiting=False))
    record_event(session, payment.merchant_id, payment.id, kind, now)
    session.expire_all()
    return view(session, payment.id)


# Refunds -------------------------------------------------------------------------------------


def refund(
    session: Session,
    caller: Principal,
    now: datetime,
    payment_id: str,
    amount: int,
    *,
    reason: str = "",
) -> PaymentView:
    """Give ``amount`` of a posted payment back to the buckets it came from.

    The caller is the shop's staff (its own payments), or finance refunding a disputed payment
    of any flow on the shop's behalf: then with a reason, in the audit trail, and inside the
    shop's refund window like any refund; it lowers the shop's payable the same way."""
    _check_amount(amount)
    on_behalf = caller.role is Role.FINANCE
    if on_behalf:
        if not reason.strip():
            raise InvalidInput("say why finance refunds on the shop's behalf", field="reason")
        payment = _locked(session, None, payment_id)
    else:
        assert caller.merchant_id is not None
        payment = _locked(session, caller.merchant_id, payment_id)
    current = view(session, payment_id)
    if current.state in (State.PENDING, State.VOIDED):
        raise RefundNotAllowed(
            f"a {current.state} payment took no points: nothing to refund", state=current.state
        )
    settings = merchants.settings_of(session, payment.merchant_id, now)
    if now > payment.created_at + timedelta(days=settings.refund_window_days):
        raise RefundWindowOver(
            f"the shop refunds within {settings.refund_window_days} days of a payment",
            refund_window_days=settings.refund_window_days,
        )
    refundable = payment.amount - payment.refunded
    if amount > refundable:
        raise RefundExceedsPayment(
            f"{refundable} of this payment can still be refunded; {amount} asked",
            field="amount",
            refundable=refundable,
        )
    spend_entry_id = current.spend_entry_id
    assert spend_entry_id is not None
    entry = spending.refund(
        session,
        get_point_type(session, payment.point_type_id),
        spend_entry_id,
        amount,
        now,
        description=current.merchant_name_ja,
        metadata=_entry_words(current),
    )
    raised = session.execute(
        sa.update(Payment)
        .where(col(Payment.id) == payment.id, col(Payment.refunded) + amount <= col(Payment.amount))
        .values(refunded=col(Payment.refunded) + amount)
    )
    if raised.rowcount != 1:  # type: ignore[attr-defined]  # pragma: no cover - the lock held
        raise RefundExceedsPayment("the payment was refunded meanwhile", refundable=0)
    session.add(
        PaymentRefund(
            entry_id=entry.id,
            payment_id=payment.id,
            amount=amount,
            staff_id=caller.principal_id,
            created_at=now,
        )
    )
    session.flush()
    record_event(session, payment.merchant_id, payment.id, EventKind.REFUNDED, now)
    if on_behalf:
        audit.record(
            session,
            actor=caller,
            action="payment.refund_on_behalf",
            object_type="payment",
            object_id=payment.id,
            at=now,
            reason=reason,
            details={"merchant_id": payment.merchant_id, "amount": amount, "entry_id": entry.id},
        )
    session.expire_all()
    return view(session, payment.id)
