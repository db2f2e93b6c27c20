"""Request and response models of residents' cards: issuing, blocking, reissuing, unlocking,
PIN changes (counter staff), paying with a card and PIN (a till), the card limits (admins).

A PIN and a card number are plain strings here, checked by ``redemption.cards`` so that a wrong
one gets its own code (``pin_invalid``, ``card_number_invalid``) rather than a generic
validation error; neither is ever echoed back, logged or stored in an idempotency record.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import Field, StringConstraints, field_validator

from api.schemas import AddressNumber, Input, ObjectId, Output, Reason, ResidentPublic
from api.schemas_earning import ExpiryLinePublic, WalletPublic
from api.schemas_spending import (
    FinancePaymentPublic,
    MerchantPaymentPublic,
    PaymentAmount,
    Reference,
    ScannedText,
    TypeCode,
)
from redemption.card_print import SHEET_CARDS_MAX
from redemption.cards import PIN_ATTEMPTS_MAX, Card, CardStatus, grouped

#: Typed on a staff device or a till (checked by ``redemption.cards``: 4 to 6 digits).
PinText = Annotated[str, StringConstraints(max_length=32)]
#: 16 digits as printed, spaces or hyphens allowed (checked by ``redemption.cards``).
CardNumberText = Annotated[str, StringConstraints(max_length=40)]


class CardIssue(Input):
    #: The PIN the resident chose on the staff device.
    pin: PinText


class CardReissue(Input):
    reason: Reason
    #: A new PIN, if the resident wants one; otherwise the PIN stays.
    pin: PinText | None = None


class CardLookup(Input):
    """The card by its scanned QR or its typed number (exactly one)."""

    card_qr: ScannedText | None = None
    card_number: CardNumberText | None = None


class PinChange(Input):
    new_pin: PinText
    #: The old PIN, typed by the resident; without it, ``reason`` says how staff checked the
    #: resident's identity.
    old_pin: PinText | None = None
    reason: Annotated[str, StringConstraints(strip_whitespace=True, max_length=500)] = ""


class CardPrintSheet(Input):
    """The cards to print on one A4 sheet, in order (2 columns × 5 rows)."""

    card_ids: list[ObjectId] = Field(min_length=1, max_length=SHEET_CARDS_MAX)

    @field_validator("card_ids", mode="after")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("name each card once")
        return value


class CardPublic(Output):
    id: str
    resident_id: str
    #: As printed: four groups of four digits.
    number: str
    last4: str
    #: The card QR as printed (no secret in it).
    qr: str
    status: CardStatus
    locked: bool
    pin_attempts_left: int
    replaces: str | None
    created_at: datetime

    @classmethod
    def of(cls, card: Card) -> CardPublic:
        return cls(
            id=card.id,
            resident_id=card.resident_id,
            number=grouped(card.number),
            last4=card.last4,
            qr=card.text,
            status=CardStatus(card.status),
            locked=card.locked,
            pin_attempts_left=max(0, PIN_ATTEMPTS_MAX - card.pin_attempts),
            replaces=card.replaces,
            created_at=card.created_at,
        )


class CardAndPin(Input):
    """A card named by its scanned QR (``card_qr``) or its typed number (``card_number``), and
    the PIN the resident typed: what every payment by card carries (``api.card_payments``)."""

    card_qr: ScannedText | None = None
    card_number: CardNumberText | None = None
    pin: PinText


class CardPaymentCreate(CardAndPin):
    """The till scanned the card (``card_qr``) or keyed its number (``card_number``), keyed the
    amount, and the resident typed the PIN."""

    amount: PaymentAmount
    point_type: TypeCode | None = None
    reference: Reference = ""


class AssistedPaymentCreate(CardAndPin):
    """Counter staff pay a shop on the resident's behalf: the resident handed over the card and
    typed the PIN on the staff device; ``reason`` says why staff act for the resident."""

    merchant_id: ObjectId
    amount: PaymentAmount
    point_type: TypeCode | None = None
    reason: Reason


class CardReceipt(Output):
    """For a printed or spoken receipt: what the card has left."""

    card_last4: str
    point_type: str
    balance: int
    #: The nearest expiry date and the points that expire then (null: none that expire).
    nearest_expiry: ExpiryLinePublic | None


class CardPaymentPublic(MerchantPaymentPublic):
    receipt: CardReceipt


class CardPolicyPublic(Output):
    point_type: str
    #: What one card may pay in this point type per Tokyo day.
    daily_limit: int
    #: How many card payments one card may make at one shop per Tokyo day.
    payments_per_shop: int


class CardPolicyChange(Input):
    daily_limit: int = Field(ge=1, le=10_000_000)
    payments_per_shop: int = Field(ge=1, le=1_000)


class AssistedPaymentPublic(FinancePaymentPublic):
    """A payment counter staff made on a resident's behalf, as the counter sees it (with the
    resident's pseudonymous id), and the receipt to read out or print for the resident."""

    receipt: CardReceipt


class ResidentFind(Input):
    """The resident at the counter, by exactly one of: the card's scanned QR, its typed number,
    the resident address number (宛名番号), or the resident's id."""

    card_qr: ScannedText | None = None
    card_number: CardNumberText | None = None
    address_number: AddressNumber | None = None
    resident_id: ObjectId | None = None


class AssistedResident(Output):
    """What counter staff see of the resident in front of them: the resident, the card (the one
    handed over, or else the resident's active card), and the wallets with their balance by
    expiry date and the coming expiry."""

    resident: ResidentPublic
    card: CardPublic | None
    wallets: list[WalletPublic]
