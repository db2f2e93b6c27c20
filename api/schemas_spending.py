"""Request and response models of spending: shops' settings and tills, payment QRs, pay codes,
payments, refunds and the shops' payment events."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal

from fastapi import Path, Query
from pydantic import Field, StringConstraints

from api.schemas import ByValue, Input, Output, PlainText, Reason
from points.pointtypes import CODE_PATTERN
from redemption.flows import PAY_CODE_LIMIT_MAX
from redemption.merchants import (
    AUTO_CONFIRM_MAX,
    CONFIRM_TIMEOUT_MAX,
    CONFIRM_TIMEOUT_MIN,
    FEE_BPS_MAX,
    REFUND_WINDOW_MAX,
    ConfirmMode,
)
from redemption.payments import (
    AMOUNT_MAX,
    PAGE_LIMIT_MAX,
    REFERENCE_MAX,
    EventKind,
    Flow,
    State,
)

#: The id of a payment QR or a pay code (32 hexadecimal digits).
RequestId = Annotated[str, Path(pattern=r"^[0-9a-f]{32}$")]
EventCursor = Annotated[
    int | None, Query(ge=0, le=10**18, description="the cursor of the last poll, or an event id")
]
Limit = Annotated[int, Query(ge=1, le=PAGE_LIMIT_MAX)]
#: The points of one payment.
PaymentAmount = Annotated[int, Field(ge=1, le=AMOUNT_MAX)]
TypeCode = Annotated[str, StringConstraints(pattern=CODE_PATTERN)]
#: A shop's cash-out fee in basis points (a JSON integer, 0 to 1,000 = 10 %).
FeeBps = Annotated[int, Field(ge=0, le=FEE_BPS_MAX, examples=[150])]
Reference = Annotated[
    str, StringConstraints(max_length=REFERENCE_MAX, pattern=r"^[\x20-\x7e]*$"), PlainText
]
#: A scanned QR text (the longest token with a 40-character origin is under 200 characters).
ScannedText = Annotated[str, StringConstraints(min_length=1, max_length=300)]


# Shops ---------------------------------------------------------------------------------------


class MerchantSettingsPublic(Output):
    merchant_id: str
    accepted_point_types: list[str]
    confirm_mode: ConfirmMode
    auto_confirm_max: int
    confirm_timeout_seconds: int
    refund_window_days: int
    #: The cash-out fee deducted at settlement, in basis points: floor(yen × fee_bps / 10,000).
    fee_bps: int
    updated_at: datetime


class MerchantSettingsChange(Input):
    """Only the fields sent change; a reason is kept in the audit trail."""

    accepted_point_types: list[TypeCode] | None = Field(default=None, max_length=20)
    confirm_mode: Annotated[ConfirmMode, ByValue] | None = None
    auto_confirm_max: int | None = Field(default=None, ge=0, le=AUTO_CONFIRM_MAX)
    confirm_timeout_seconds: int | None = Field(
        default=None, ge=CONFIRM_TIMEOUT_MIN, le=CONFIRM_TIMEOUT_MAX
    )
    refund_window_days: int | None = Field(default=None, ge=0, le=REFUND_WINDOW_MAX)
    #: The cash-out fee in basis points (0 to 1,000).
    fee_bps: FeeBps | None = None
    reason: Reason


class MerchantFeeChange(Input):
    fee_bps: FeeBps
    reason: Reason


class TillCreate(Input):
    name: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100), PlainText
    ] = Field(examples=["レジ1"])


class TillPublic(Output):
    id: str
    merchant_id: str
    staff_id: str
    name: str
    status: str
    #: The printed store QR's text and an SVG of it (80 mm) to print.
    store_qr: str
    store_qr_svg: str
    created_at: datetime


class TillCreated(TillPublic):
    #: The till's token, shown once: the till sends it as its bearer token.
    token: str


# Payment QRs and pay codes -------------------------------------------------------------------


class PaymentRequestCreate(Input):
    amount: PaymentAmount
    #: The point type paid in; may be left out when the shop accepts one only.
    point_type: TypeCode | None = None
    #: The shop's own reference, such as a receipt number.
    reference: Reference = ""
    expires_in_seconds: int = Field(default=120, ge=30, le=300)


class PaymentRequestPublic(Output):
    id: str
    amount: int
    point_type: str
    reference: str
    #: ``open``, ``paid``, ``expired`` or ``cancelled``.
    state: Literal["open", "paid", "expired", "cancelled"]
    token: str
    svg: str
    created_at: datetime
    expires_at: datetime
    payment: MerchantPaymentPublic | None


class PayCodeCreate(Input):
    pass


class PayCodePublic(Output):
    id: str
    state: Literal["open", "used", "expired"]
    #: Present when the code was just made: the text to show as a QR or barcode.
    token: str | None = None
    svg: str | None = None
    #: The most one pay code pays (the resident may lower it in settings).
    limit: int
    created_at: datetime
    expires_at: datetime
    payment: ResidentPaymentPublic | None


class PayCodePaymentCreate(Input):
    #: The pay code the till scanned.
    token: ScannedText
    amount: PaymentAmount
    point_type: TypeCode | None = None
    reference: Reference = ""


class PaymentSettingsPublic(Output):
    pay_code_limit: int
    pay_code_limit_max: int


class PaymentSettingsChange(Input):
    pay_code_limit: int = Field(ge=1, le=PAY_CODE_LIMIT_MAX)


# Paying (the resident) -----------------------------------------------------------------------


class ScanInput(Input):
    #: A payment QR or a store QR the wallet scanned.
    token: ScannedText


class PreviewPublic(Output):
    flow: Flow
    merchant_id: str
    merchant_name_ja: str
    merchant_name_en: str
    till_name: str
    #: The payment QR's amount; null for a store QR (the resident types it).
    amount: int | None
    reference: str
    point_types: list[str]
    #: What the resident can spend now, per point type.
    balances: dict[str, int]
    #: A payment QR's amount taken from the balance (null for a store QR).
    balance_after: int | None
    expires_at: datetime | None


class PaymentCreate(Input):
    token: ScannedText
    #: A store QR: the amount the resident typed. A payment QR: may be sent, and must match.
    amount: PaymentAmount | None = None
    point_type: TypeCode | None = None


# Payments ------------------------------------------------------------------------------------


class PaymentBase(Output):
    id: str
    merchant_id: str
    merchant_name_ja: str
    merchant_name_en: str
    #: None for an exchange in the wallet app or a card payment made at the city counter.
    till_id: str | None
    till_name: str | None
    point_type: str
    amount: int
    refunded: int
    state: State
    flow: Flow
    reference: str
    created_at: datetime
    #: A store-QR payment awaiting the shop: when it is voided unless confirmed.
    confirm_by: datetime | None
    resolved_at: datetime | None
    entry_id: int
    resolution_entry_id: int | None
    refund_entry_ids: list[int]


class MerchantPaymentPublic(PaymentBase):
    #: The shop's own pseudonym of the resident (the same at this shop, unlinkable elsewhere).
    customer: str


class ResidentPaymentPublic(PaymentBase):
    pass


class FinancePaymentPublic(PaymentBase):
    #: The resident's pseudonymous id.
    resident_id: str


class DayTotalsPublic(Output):
    day: date
    count: int
    amount: int
    refunded: int
    net: int
    pending: int


class MerchantPaymentPage(Output):
    items: list[MerchantPaymentPublic]
    next_cursor: str | None
    #: The totals of the day listed.
    totals: DayTotalsPublic


class RefundCreate(Input):
    amount: PaymentAmount
    reason: Annotated[str, StringConstraints(max_length=500), PlainText] = ""


class FinanceRefundCreate(Input):
    amount: PaymentAmount
    #: Why finance refunds for the shop (the dispute): required, audited.
    reason: Reason


class PaymentEventPublic(Output):
    #: Pass as ``after`` (or ``Last-Event-ID``) to get the events after this one.
    id: int
    kind: EventKind
    at: datetime
    payment: MerchantPaymentPublic


class PaymentEventPage(Output):
    items: list[PaymentEventPublic]
    #: The cursor to poll with next (the last event's id, or the one sent).
    cursor: int
