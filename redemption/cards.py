"""Resident cards with a PIN, for residents without a phone (issue 19 parts 1, 3 and 4;
DESIGN §6 flow (c)).

**A card** (``Card``) is issued by counter staff to a verified, active resident, who chooses a
PIN on the staff device. It carries two ways to name it, neither of them a secret:

- the **card QR**: a signed card token (``points.qrtokens.CardToken``) with a random 128-bit id
  (``code``), signed once and kept as text so the printed card and the server agree, like a
  till's store QR; the server resolves the id and refuses it once the card is blocked;
- the **card number**: 16 digits, the last a Luhn check digit, printed under the QR for typing
  when a camera fails. The check digit catches a mistyped digit before any lookup.

A resident has at most one active card (a partial unique index). Blocking (lost, stolen) and
reissuing (a new id and number; the PIN and the balance stay) are audited with the reason.

**The PIN** (4 to 6 digits; trivial ones refused: one digit repeated, a straight run, a
repeated pair, the most common PINs, the resident's birth year) is stored only as
``scrypt(HMAC-SHA256(pepper, pin), salt)``. The pepper is a file in the key directory
(``points.keys``), never in the database, so a copy of the database alone cannot test the
10**6 PINs. A PIN never reaches a log, a response, an audit detail or an idempotency record
(the API keys the request fingerprint with the server's secret: ``api.safety``).

**Attempts.** At most ``PIN_ATTEMPTS_MAX`` (5) wrong PINs are ever compared per card, across all
devices: each attempt is first *counted and committed* (``begin_attempt``: a conditional update
``pin_attempts < 5`` and a ``PinAttempt`` row, in a transaction of its own), and only then is
the PIN compared (``check_pin``), so concurrent guesses cannot all be tried. A correct PIN
resets the count; after 5 wrong the card is ``card_locked`` until counter staff unlock it after
checking the resident's identity (audited). Each till is limited too: its attempts are counted
under its row lock, and when ``TILL_WRONG_PINS_PER_HOUR`` (10) of the last hour's attempts were
wrong (or are still being compared), it is refused ``pin_attempts_exceeded`` with the seconds
until the oldest of them leaves the hour, so a stolen till cannot guess through a stack of
cards. A PIN typed at the city counter (no till: an assisted payment, a PIN change) is bounded
the same way per member of counter staff (``STAFF_WRONG_PINS_PER_HOUR``): a counter PC is held
by staff as a till is by a shop. Attempt rows are written even when the payment is then
refused.

**Paying with a card** (``pay_by_card``, after a correct PIN): only a till; limits per card
per point type per Tokyo day (``CardPolicy``: 10,000 pt and 3 payments per shop by default,
settable per point type by admins), held by counter rows raised conditionally with CHECKs
(``amount <= cap``, ``payments <= payments_cap``), so concurrent payments cannot beat them. A
refund does not give the day's allowance back: the limits bound what a dishonest till that
kept the number and the PIN can take, and a refund is that till's own act.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import itertools
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Protocol

import sqlalchemy as sa
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from sqlalchemy.engine import Engine
from sqlmodel import Field, Session, SQLModel, col, select

from points import audit, qrtokens
from points.auth import Principal
from points.calendar import tokyo_date
from points.errors import InvalidInput, NotFound, ResidentNotActive
from points.pointtypes import PointType
from points.registry import Resident, ResidentStatus, Staff, Verification, new_id
from points.sqlbase import UTCDateTime, insert_missing
from points.uow import unit_of_work
from redemption.errors import (
    CardBlocked,
    CardDailyLimitExceeded,
    CardExists,
    CardLocked,
    CardMerchantLimitExceeded,
    CardNumberInvalid,
    PinAttemptsExceeded,
    PinIncorrect,
    PinInvalid,
)
from redemption.merchants import Till

PIN_ATTEMPTS_MAX = 5
TILL_WRONG_PINS_PER_HOUR = 10
#: The same bound for a member of counter staff typing PINs on a staff device (no till).
STAFF_WRONG_PINS_PER_HOUR = TILL_WRONG_PINS_PER_HOUR
TILL_WINDOW = timedelta(hours=1)
#: PIN attempts are kept this long (who tried which card where, for an inquiry), then purged.
PIN_ATTEMPTS_KEPT = timedelta(days=366)
CARD_DAILY_LIMIT_DEFAULT = 10_000
CARD_PAYMENTS_PER_SHOP_DEFAULT = 3
CARD_NUMBER_DIGITS = 16
PIN_LENGTHS = (4, 6)
#: scrypt at n=2**14, r=8 (16 MiB, about 50 ms a PIN here): slow for a thief who has the
#: database and the pepper; a till waits for one comparison per attempt.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
SALT_SIZE, HASH_SIZE = 16, 32
#: The most used PINs beyond the patterns ``trivial_pin`` refuses (published PIN studies).
COMMON_PINS = frozenset(
    {"1004", "2000", "6969", "1122", "1313", "2001", "1010", "5683", "0852", "2580", "1379"}
)


class CardStatus(enum.StrEnum):
    ACTIVE = "active"
    #: Lost or stolen (or the resident may no longer pay): refused everywhere.
    BLOCKED = "blocked"
    #: Reissued: the new card replaced it.
    REPLACED = "replaced"


class AttemptOutcome(enum.StrEnum):
    #: Counted, not compared yet (or the comparing process died: it counts as wrong).
    PENDING = "pending"
    WRONG = "wrong"
    CORRECT = "correct"


class Card(SQLModel, table=True):
    __tablename__ = "card"
    __table_args__ = (
        sa.CheckConstraint("status IN ('active', 'blocked', 'replaced')", name="status"),
        sa.CheckConstraint(f"pin_attempts BETWEEN 0 AND {PIN_ATTEMPTS_MAX}", name="pin_attempts"),
        sa.Index(
            "uq_card_resident_id_active",
            "resident_id",
            unique=True,
            sqlite_where=sa.text("status = 'active'"),
            postgresql_where=sa.text("status = 'active'"),
        ),
    )

    id: str = Field(primary_key=True, max_length=32)
    resident_id: str = Field(foreign_key="resident.id", max_length=32, index=True)
    #: The random id the card QR carries.
    code: bytes = Field(
        sa_column=sa.Column(sa.LargeBinary(qrtokens.ID_SIZE), nullable=False, unique=True)
    )
    #: The 16-digit number printed under the QR (the last digit a Luhn check digit).
    number: str = Field(max_length=CARD_NUMBER_DIGITS, unique=True)
    #: The card QR as printed (signed once) and the key id that signed it.
    text: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    kid: int = Field(sa_column=sa.Column(sa.Integer, nullable=False, index=True))
    #: salt (16 bytes) || scrypt(HMAC-SHA256(pepper, PIN), salt) (32 bytes).
    pin_hash: bytes = Field(
        sa_column=sa.Column(sa.LargeBinary(SALT_SIZE + HASH_SIZE), nullable=False)
    )
    #: Wrong PINs since the last correct one (attempts being compared count already).
    pin_attempts: int = Field(default=0)
    status: str = Field(default=CardStatus.ACTIVE, max_length=16)
    #: The card this one replaced (a reissue).
    replaces: str | None = Field(default=None, max_length=32)
    created_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))
    updated_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))

    @property
    def locked(self) -> bool:
        return self.pin_attempts >= PIN_ATTEMPTS_MAX

    @property
    def last4(self) -> str:
        return self.number[-4:]


class PinAttempt(SQLModel, table=True):
    """One PIN typed for a card: counted before it is compared."""

    __tablename__ = "pin_attempt"
    __table_args__ = (
        sa.CheckConstraint("outcome IN ('pending', 'wrong', 'correct')", name="outcome"),
        sa.Index("ix_pin_attempt_till_id_at", "till_id", "at"),
    )

    id: int | None = Field(
        default=None,
        sa_column=sa.Column(
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
    )
    card_id: str = Field(foreign_key="card.id", max_length=32, index=True)
    #: The till it was typed on (None at the city counter).
    till_id: str | None = Field(default=None, foreign_key="till.id", max_length=32)
    #: Who sent it: the till's or the counter's member of staff.
    staff_id: str = Field(max_length=32)
    outcome: str = Field(default=AttemptOutcome.PENDING, max_length=16)
    at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))


class CardPolicy(SQLModel, table=True):
    """The card limits of a point type (the defaults apply while there is no row)."""

    __tablename__ = "card_policy"
    __table_args__ = (
        sa.CheckConstraint("daily_limit >= 1", name="daily_limit"),
        sa.CheckConstraint("payments_per_shop >= 1", name="payments_per_shop"),
    )

    point_type_id: str = Field(primary_key=True, foreign_key="point_type.id", max_length=32)
    daily_limit: int = Field(default=CARD_DAILY_LIMIT_DEFAULT)
    payments_per_shop: int = Field(default=CARD_PAYMENTS_PER_SHOP_DEFAULT)
    updated_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))


class CardDay(SQLModel, table=True):
    """What a card paid in a point type on one Tokyo day, held within the day's limit."""

    __tablename__ = "card_day"
    __table_args__ = (sa.CheckConstraint("amount >= 0 AND amount <= cap", name="within_cap"),)

    card_id: str = Field(primary_key=True, foreign_key="card.id", max_length=32)
    point_type_id: str = Field(primary_key=True, foreign_key="point_type.id", max_length=32)
    day: date = Field(primary_key=True)
    amount: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    cap: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))


class CardShopDay(SQLModel, table=True):
    """How many card payments a card made at one shop on one Tokyo day, held within the cap."""

    __tablename__ = "card_shop_day"
    __table_args__ = (sa.CheckConstraint("payments >= 0 AND payments <= cap", name="within_cap"),)

    card_id: str = Field(primary_key=True, foreign_key="card.id", max_length=32)
    merchant_id: str = Field(primary_key=True, foreign_key="merchant.id", max_length=32)
    day: date = Field(primary_key=True)
    payments: int = Field(default=0)
    cap: int = Field(default=CARD_PAYMENTS_PER_SHOP_DEFAULT)


class PepperSource(Protocol):
    def pin_pepper(self) -> bytes: ...


@dataclass(frozen=True, slots=True)
class CardSigning:
    """What issuing a card needs: the signing keys, the public origin and the PIN pepper."""

    keys: qrtokens.KeySource
    origin: str
    pepper: PepperSource


# Card numbers --------------------------------------------------------------------------------


def luhn_digit(digits: str) -> str:
    """The Luhn check digit of ``digits`` (the digit that makes the whole number valid)."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 0:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return str((10 - total % 10) % 10)


def new_card_number() -> str:
    body = "".join(secrets.choice("0123456789") for _ in range(CARD_NUMBER_DIGITS - 1))
    return body + luhn_digit(body)


def normalize_card_number(text: str) -> str:
    """The 16 digits of a typed card number (spaces and hyphens dropped), or
    ``card_number_invalid`` for a wrong length or a failed check digit."""
    if type(text) is not str:
        raise CardNumberInvalid("a card number is 16 digits", field="card_number")
    digits = text.replace(" ", "").replace("-", "")
    if len(digits) != CARD_NUMBER_DIGITS or not (digits.isascii() and digits.isdigit()):
        raise CardNumberInvalid("a card number is 16 digits", field="card_number")
    if luhn_digit(digits[:-1]) != digits[-1]:
        raise CardNumberInvalid(
            "this card number has a mistyped digit: check it against the card", field="card_number"
        )
    return digits


def grouped(number: str) -> str:
    """``1234 5678 9012 3456``, as printed."""
    return " ".join(number[i : i + 4] for i in range(0, len(number), 4))


# PINs ----------------------------------------------------------------------------------------


def check_pin_shape(pin: object) -> str:
    if type(pin) is not str or not (pin.isascii() and pin.isdigit()):
        raise PinInvalid("a PIN is 4 to 6 digits", field="pin")
    if not PIN_LENGTHS[0] <= len(pin) <= PIN_LENGTHS[1]:
        raise PinInvalid("a PIN is 4 to 6 digits", field="pin")
    return pin


def trivial_pin(pin: str, birth_year: int | None) -> bool:
    """One digit repeated, a straight run up or down, a repeated pair or triple, a common PIN,
    or the resident's birth year (also as its last two digits twice, e.g. 5151 for 1951)."""
    steps = {int(b) - int(a) for a, b in itertools.pairwise(pin)}
    if len(set(pin)) == 1 or steps in ({1}, {-1}):
        return True
    if any(len(pin) % n == 0 and pin == pin[:n] * (len(pin) // n) for n in (2, 3)):
        return True
    if pin in COMMON_PINS:
        return True
    if birth_year is not None:
        year = f"{birth_year:04d}"
        if year in pin or pin == year[2:] * 2:
            return True
    return False


def check_new_pin(pin: object, resident: Resident) -> str:
    checked = check_pin_shape(pin)
    if trivial_pin(checked, resident.birth_year):
        raise PinInvalid(
            "this PIN is too easy to guess (one digit repeated, digits in a row, a repeated "
            "pair, a birth year): choose another",
            field="pin",
        )
    return checked


def _derive(pin: str, salt: bytes, pepper: bytes) -> bytes:
    peppered = hmac.new(pepper, pin.encode("ascii"), hashlib.sha256).digest()
    return Scrypt(salt=salt, length=HASH_SIZE, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P).derive(peppered)


def hash_pin(pin: str, pepper: bytes) -> bytes:
    salt = secrets.token_bytes(SALT_SIZE)
    return salt + _derive(pin, salt, pepper)


def pin_matches(pin: str, stored: bytes, pepper: bytes) -> bool:
    salt, expected = stored[:SALT_SIZE], stored[SALT_SIZE:]
    return hmac.compare_digest(_derive(pin, salt, pepper), expected)


# Finding cards -------------------------------------------------------------------------------


def get_card(session: Session, card_id: str) -> Card:
    card = session.get(Card, card_id)
    if card is None:
        raise NotFound(f"no card {card_id}")
    return card


def card_by_number(session: Session, number: str) -> Card:
    digits = normalize_card_number(number)
    card = session.exec(select(Card).where(Card.number == digits)).first()
    if card is None:
        raise NotFound("no card with this number")
    return card


def card_by_token(session: Session, text: str, signing: CardSigning, now: datetime) -> Card:
    token = qrtokens.verify(
        text, expect={qrtokens.Kind.CARD}, keys=signing.keys, now=now, origin=signing.origin
    )
    assert isinstance(token, qrtokens.CardToken)
    card = session.exec(select(Card).where(Card.code == token.card_id)).first()
    if card is None:
        raise NotFound("no card with this QR")
    return card


def find_card(
    session: Session,
    *,
    card_number: str | None,
    card_qr: str | None,
    signing: CardSigning,
    now: datetime,
) -> Card:
    """The card a till or the counter names: by its scanned QR or its typed number (one of)."""
    if (card_number is None) == (card_qr is None):
        raise InvalidInput("name the card by card_qr or card_number (one of them)", field="card")
    if card_qr is not None:
        return card_by_token(session, card_qr, signing, now)
    assert card_number is not None
    return card_by_number(session, card_number)


def active_card_of(session: Session, resident_id: str) -> Card | None:
    return session.exec(
        select(Card).where(Card.resident_id == resident_id, Card.status == CardStatus.ACTIVE)
    ).first()


def active_last4(session: Session, resident_ids: Sequence[str]) -> dict[str, str]:
    """The last four digits of the active card of each of ``resident_ids`` that has one (for
    the expiry letters: ``points.notices.CardDigits``), read in chunks of 500 ids."""
    found: dict[str, str] = {}
    for start in range(0, len(resident_ids), 500):
        chunk = list(resident_ids[start : start + 500])
        rows = session.exec(
            select(Card.resident_id, Card.number).where(
                col(Card.resident_id).in_(chunk), Card.status == CardStatus.ACTIVE
            )
        )
        found.update({resident_id: number[-4:] for resident_id, number in rows})
    return found


def cards_of(session: Session, resident_id: str) -> list[Card]:
    return list(
        session.exec(
            select(Card).where(Card.resident_id == resident_id).order_by(col(Card.created_at))
        )
    )


def holder(session: Session, card: Card) -> Resident:
    """The card's resident, when the card still names an active resident: an active card of an
    active, not erased resident (else ``card_blocked``). Whether the PIN is locked is not asked:
    a check-in by card (``api.routers.issuer``) needs no PIN."""
    if card.status != CardStatus.ACTIVE:
        raise CardBlocked("this card is blocked: the resident asks at the city counter")
    resident = session.get(Resident, card.resident_id)
    if resident is None or resident.status != ResidentStatus.ACTIVE or resident.erased_at:
        raise CardBlocked("this card is blocked: the resident asks at the city counter")
    return resident


def usable(session: Session, card: Card) -> Resident:
    """The card's resident, when the card may pay now: active, not locked, the resident active."""
    resident = holder(session, card)
    if card.locked:
        raise CardLocked(
            "this card is locked after 5 wrong PINs: the resident asks at the city counter"
        )
    return resident


def live_cards(source: Session | Engine, kid: int) -> int:
    """Active cards whose QR ``kid`` signed (``points.keys.PRINTED_TOKEN_COUNTERS``)."""
    query = (
        sa.select(sa.func.count())
        .select_from(Card)
        .where(col(Card.kid) == kid, col(Card.status) == CardStatus.ACTIVE)
    )
    if isinstance(source, Session):
        return int(source.exec(query).one()[0])  # type: ignore[call-overload]
    with source.connect() as connection:
        return int(connection.execute(query).scalar_one())


# Issuing, blocking, reissuing (counter staff) -----------------------------------------------


@dataclass(frozen=True, slots=True)
class NewCard:
    card: Card
    resident: Resident


def _make_card(
    session: Session,
    resident_id: str,
    pin_hash: bytes,
    now: datetime,
    signing: CardSigning,
    replaces: str | None = None,
) -> Card:
    code = qrtokens.new_id()
    kid, _ = signing.keys.signing_key()
    text = qrtokens.sign(qrtokens.CardToken(code), signing.keys, now, origin=signing.origin)
    number = new_card_number()
    while session.exec(select(Card.id).where(Card.number == number)).first() is not None:
        number = new_card_number()  # pragma: no cover - 10**15 numbers
    card = Card(
        id=new_id("crd"),
        resident_id=resident_id,
        code=code,
        number=number,
        text=text,
        kid=kid,
        pin_hash=pin_hash,
        replaces=replaces,
        created_at=now,
        updated_at=now,
    )
    session.add(card)
    session.flush()
    return card


def _card_holder(session: Session, resident_id: str) -> Resident:
    resident = session.get(Resident, resident_id)
    if resident is None:
        raise NotFound(f"no resident {resident_id}")
    if resident.status != ResidentStatus.ACTIVE or resident.erased_at is not None:
        raise ResidentNotActive("a card is issued to an active resident only")
    if resident.verification != Verification.VERIFIED:
        raise InvalidInput(
            "check the resident's identity first (mark the resident verified), then issue the card",
            field="resident_id",
        )
    return resident


def issue_card(
    session: Session,
    caller: Principal,
    now: datetime,
    resident_id: str,
    pin: str,
    *,
    signing: CardSigning,
) -> NewCard:
    """A card for a verified resident, who chose ``pin`` on the staff device (audited)."""
    resident = _card_holder(session, resident_id)
    checked = check_new_pin(pin, resident)
    if active_card_of(session, resident_id) is not None:
        raise CardExists("the resident has a card already: block it and reissue")
    card = _make_card(
        session, resident_id, hash_pin(checked, signing.pepper.pin_pepper()), now, signing
    )
    audit_card(session, caller, now, "card.issue", card, "", {"last4": card.last4})
    return NewCard(card, resident)


def block_card(
    session: Session, caller: Principal, now: datetime, card_id: str, reason: str
) -> Card:
    """Block a lost or stolen card (audited with the reason); its balance is the resident's."""
    card = _locked_card(session, card_id)
    if card.status == CardStatus.ACTIVE:
        card.status = CardStatus.BLOCKED
        card.updated_at = now
        session.add(card)
        audit_card(session, caller, now, "card.block", card, reason, {"last4": card.last4})
    return card


def reissue_card(
    session: Session,
    caller: Principal,
    now: datetime,
    card_id: str,
    reason: str,
    *,
    pin: str | None,
    signing: CardSigning,
) -> NewCard:
    """A new card (new id and number) in place of ``card_id``, which is blocked if it was not
    (audited). The resident keeps the PIN unless they choose a new one; the count of wrong PINs
    starts again, since staff checked the resident's identity."""
    old = _locked_card(session, card_id)
    if old.status == CardStatus.REPLACED:
        raise CardBlocked("this card was reissued already: reissue the newest card")
    resident = _card_holder(session, old.resident_id)
    pin_hash = old.pin_hash
    if pin is not None:
        pin_hash = hash_pin(check_new_pin(pin, resident), signing.pepper.pin_pepper())
    old.status = CardStatus.REPLACED
    old.updated_at = now
    session.add(old)
    session.flush()
    card = _make_card(session, old.resident_id, pin_hash, now, signing, replaces=old.id)
    details = {"replaces": old.id, "last4": card.last4, "new_pin": pin is not None}
    audit_card(session, caller, now, "card.reissue", card, reason, details)
    return NewCard(card, resident)


def unlock_card(
    session: Session, caller: Principal, now: datetime, card_id: str, reason: str
) -> Card:
    """After 5 wrong PINs: counter staff checked the resident's identity (audited)."""
    card = _locked_card(session, card_id)
    if card.status != CardStatus.ACTIVE:
        raise CardBlocked("this card is blocked: reissue it instead")
    before = card.pin_attempts
    card.pin_attempts = 0
    card.updated_at = now
    session.add(card)
    audit_card(session, caller, now, "card.unlock", card, reason, {"wrong_pins": before})
    return card


def change_pin_checked(
    session: Session,
    caller: Principal,
    now: datetime,
    card_id: str,
    new_pin: str,
    *,
    reason: str,
    old_pin_correct: bool,
    pepper: PepperSource,
) -> Card:
    """A new PIN: after the old PIN was typed correctly (``old_pin_correct``, an attempt that
    ``begin_attempt`` counted), or after staff checked the resident's identity (``reason``
    says how). Audited; the PIN itself never is."""
    if not old_pin_correct and not reason.strip():
        raise InvalidInput(
            "without the old PIN, say how the resident's identity was checked", field="reason"
        )
    card = _locked_card(session, card_id)
    resident = usable_for_pin_change(session, card)
    card.pin_hash = hash_pin(check_new_pin(new_pin, resident), pepper.pin_pepper())
    card.pin_attempts = 0
    card.updated_at = now
    session.add(card)
    audit_card(
        session, caller, now, "card.change_pin", card, reason, {"with_old_pin": old_pin_correct}
    )
    return card


def usable_for_pin_change(session: Session, card: Card) -> Resident:
    if card.status != CardStatus.ACTIVE:
        raise CardBlocked("this card is blocked: reissue it instead")
    resident = session.get(Resident, card.resident_id)
    if resident is None or resident.status != ResidentStatus.ACTIVE:
        raise CardBlocked("this card is blocked: the resident asks at the city counter")
    return resident


def audit_card(
    session: Session,
    caller: Principal,
    now: datetime,
    action: str,
    card: Card,
    reason: str,
    details: dict[str, object],
) -> None:
    """An act on a card in the audit trail: with the resident, never a PIN."""
    audit.record(
        session,
        actor=caller,
        action=action,
        object_type="card",
        object_id=card.id,
        at=now,
        reason=reason,
        details={"resident_id": card.resident_id, **details},
    )


def _locked_card(session: Session, card_id: str) -> Card:
    card = session.exec(select(Card).where(Card.id == card_id).with_for_update()).first()
    if card is None:
        raise NotFound(f"no card {card_id}")
    return card


# PIN attempts --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Attempt:
    """An attempt counted and committed: the PIN may be compared now."""

    attempt_id: int
    card_id: str
    resident_id: str
    pin_hash: bytes
    #: Wrong PINs counted so far, this attempt included.
    counted: int


def begin_attempt(
    engine: Engine,
    now: datetime,
    card_id: str,
    *,
    staff_id: str,
    till_id: str | None,
) -> Attempt:
    """Count one PIN attempt for the card (and the till), and commit it, before any comparing:
    refused ``card_blocked``, ``card_locked`` (5 counted) or ``pin_attempts_exceeded`` (the
    till's hour is full). Its own transaction: the count stays whatever happens next."""

    def work(session: Session) -> Attempt:
        card = get_card(session, card_id)
        usable(session, card)
        if till_id is not None:
            _count_till(session, till_id, now)
        else:
            _count_staff(session, staff_id, now)
        raised = (
            session.connection()
            .execute(
                sa.update(Card)
                .where(
                    col(Card.id) == card_id,
                    col(Card.status) == CardStatus.ACTIVE,
                    col(Card.pin_attempts) < PIN_ATTEMPTS_MAX,
                )
                .values(pin_attempts=col(Card.pin_attempts) + 1)
                .returning(col(Card.pin_attempts), col(Card.pin_hash))
            )
            .first()
        )
        if raised is None:
            session.expire_all()
            usable(session, get_card(session, card_id))
            raise AssertionError("the card refused an attempt it allows")  # pragma: no cover
        attempt = PinAttempt(card_id=card_id, till_id=till_id, staff_id=staff_id, at=now)
        session.add(attempt)
        session.flush()
        assert attempt.id is not None
        return Attempt(attempt.id, card_id, card.resident_id, bytes(raised[1]), int(raised[0]))

    return unit_of_work(engine, work)


def _count_till(session: Session, till_id: str, now: datetime) -> None:
    """Under the till's row lock (attempts of one till are counted one at a time): refuse when
    the last hour holds ``TILL_WRONG_PINS_PER_HOUR`` wrong or uncompared attempts."""
    session.exec(select(Till.id).where(Till.id == till_id).with_for_update()).one()
    _refuse_a_full_hour(
        session,
        now,
        col(PinAttempt.till_id) == till_id,
        f"this till typed {TILL_WRONG_PINS_PER_HOUR} wrong PINs in the last hour: "
        "wait, or ask the city counter",
    )


def _count_staff(session: Session, staff_id: str, now: datetime) -> None:
    """The city counter's twin of ``_count_till``, for attempts typed on a staff device (no
    till: an assisted payment, a PIN change with the old PIN). A counter PC is held by staff
    as a till is held by a shop, so it gets the same bound, per member of staff
    (``STAFF_WRONG_PINS_PER_HOUR``), under the staff row's lock. The query reads the attempts
    through the ``(till_id, at)`` index (``till_id IS NULL``, the last hour), so it needs no
    index (and no migration) of its own."""
    session.exec(select(Staff.id).where(Staff.id == staff_id).with_for_update()).one()
    _refuse_a_full_hour(
        session,
        now,
        sa.and_(col(PinAttempt.till_id).is_(None), col(PinAttempt.staff_id) == staff_id),
        f"{STAFF_WRONG_PINS_PER_HOUR} wrong PINs were typed at this member of staff's counter "
        "in the last hour: wait, or ask a supervisor",
    )


def _refuse_a_full_hour(
    session: Session, now: datetime, whose: sa.ColumnElement[bool], message: str
) -> None:
    """``pin_attempts_exceeded`` when the last hour holds 10 wrong or uncompared attempts of
    ``whose`` (a till's, or a member of counter staff's), with the seconds until the oldest of
    them leaves the hour."""
    most = TILL_WRONG_PINS_PER_HOUR
    counted = list(
        session.exec(
            select(PinAttempt.at)
            .where(
                whose,
                col(PinAttempt.at) > now - TILL_WINDOW,
                PinAttempt.outcome != AttemptOutcome.CORRECT,
            )
            .order_by(col(PinAttempt.at))
        )
    )
    if len(counted) >= most:
        frees_at = counted[len(counted) - most] + TILL_WINDOW
        wait = max(1, int((frees_at - now).total_seconds()) + 1)
        raise PinAttemptsExceeded(message, retry_after_seconds=wait)


def check_pin(engine: Engine, now: datetime, attempt: Attempt, pin: str, pepper: bytes) -> None:
    """Compare the PIN of a counted attempt and record the outcome: a correct PIN resets the
    card's count; a wrong one is ``pin_incorrect`` with the attempts left."""
    correct = pin_matches(pin, attempt.pin_hash, pepper)

    def record(session: Session) -> None:
        connection = session.connection()
        connection.execute(
            sa.update(PinAttempt)
            .where(col(PinAttempt.id) == attempt.attempt_id)
            .values(outcome=AttemptOutcome.CORRECT if correct else AttemptOutcome.WRONG)
        )
        if correct:
            connection.execute(
                sa.update(Card)
                .where(col(Card.id) == attempt.card_id)
                .values(pin_attempts=0, updated_at=now)
            )

    unit_of_work(engine, record)
    if not correct:
        left = max(0, PIN_ATTEMPTS_MAX - attempt.counted)
        raise PinIncorrect(
            "the PIN is wrong"
            + (
                f": {left} more tries before the card locks"
                if left
                else ": the card is now locked; the resident asks at the city counter"
            ),
            field="pin",
            attempts_left=left,
        )


def verify_pin(
    engine: Engine,
    now: datetime,
    card_id: str,
    pin: object,
    *,
    staff_id: str,
    till_id: str | None,
    pepper: bytes,
) -> Attempt:
    """Count, commit, then compare (the whole PIN check of a till or the counter)."""
    checked = check_pin_shape(pin)
    attempt = begin_attempt(engine, now, card_id, staff_id=staff_id, till_id=till_id)
    check_pin(engine, now, attempt, checked, pepper)
    return attempt


# Limits and paying ---------------------------------------------------------------------------


def policy_of(session: Session, point_type: PointType, now: datetime) -> CardPolicy:
    """The point type's card limits (the defaults while admins set none)."""
    policy = session.get(CardPolicy, point_type.id)
    return policy if policy is not None else CardPolicy(point_type_id=point_type.id, updated_at=now)


def set_policy(
    session: Session,
    caller: Principal,
    now: datetime,
    point_type: PointType,
    *,
    daily_limit: int,
    payments_per_shop: int,
) -> CardPolicy:
    """Admins set a point type's card limits (audited)."""
    for name, value, most in (
        ("daily_limit", daily_limit, 10_000_000),
        ("payments_per_shop", payments_per_shop, 1_000),
    ):
        if type(value) is not int or not 1 <= value <= most:
            raise InvalidInput(f"{name} is 1 to {most:,}", field=name)
    policy = session.get(CardPolicy, point_type.id)
    before = (
        {"daily_limit": policy.daily_limit, "payments_per_shop": policy.payments_per_shop}
        if policy is not None
        else None
    )
    if policy is None:
        policy = CardPolicy(point_type_id=point_type.id, updated_at=now)
    policy.daily_limit = daily_limit
    policy.payments_per_shop = payments_per_shop
    policy.updated_at = now
    session.add(policy)
    audit.record(
        session,
        actor=caller,
        action="card_policy.set",
        object_type="point_type",
        object_id=point_type.code,
        at=now,
        details={
            "before": before,
            "after": {"daily_limit": daily_limit, "payments_per_shop": payments_per_shop},
        },
    )
    session.flush()
    return policy


def count_towards_limits(
    session: Session,
    card: Card,
    point_type: PointType,
    merchant_id: str,
    amount: int,
    now: datetime,
) -> None:
    """Raise the card's counters of the day, each only while it stays within its cap."""
    policy = policy_of(session, point_type, now)
    day = tokyo_date(now)
    connection = session.connection()
    _open(
        connection,
        CardDay,
        {"card_id": card.id, "point_type_id": point_type.id, "day": day},
        {"amount": 0, "cap": policy.daily_limit},
    )
    raised = connection.execute(
        sa.update(CardDay)
        .where(
            col(CardDay.card_id) == card.id,
            col(CardDay.point_type_id) == point_type.id,
            col(CardDay.day) == day,
            col(CardDay.amount) + amount <= policy.daily_limit,
        )
        .values(amount=col(CardDay.amount) + amount, cap=policy.daily_limit)
    )
    if raised.rowcount != 1:
        so_far = connection.execute(
            sa.select(col(CardDay.amount)).where(
                col(CardDay.card_id) == card.id,
                col(CardDay.point_type_id) == point_type.id,
                col(CardDay.day) == day,
            )
        ).scalar_one()
        left = max(0, policy.daily_limit - int(so_far))
        raise CardDailyLimitExceeded(
            f"a card pays at most {policy.daily_limit:,} {point_type.unit} a day; "
            f"{left:,} {point_type.unit} left today",
            field="amount",
            limit=policy.daily_limit,
            left_today=left,
        )
    _open(
        connection,
        CardShopDay,
        {"card_id": card.id, "merchant_id": merchant_id, "day": day},
        {"payments": 0, "cap": policy.payments_per_shop},
    )
    counted = connection.execute(
        sa.update(CardShopDay)
        .where(
            col(CardShopDay.card_id) == card.id,
            col(CardShopDay.merchant_id) == merchant_id,
            col(CardShopDay.day) == day,
            col(CardShopDay.payments) < policy.payments_per_shop,
        )
        .values(payments=col(CardShopDay.payments) + 1, cap=policy.payments_per_shop)
    )
    if counted.rowcount != 1:
        raise CardMerchantLimitExceeded(
            f"a card pays a shop at most {policy.payments_per_shop} times a day",
            limit=policy.payments_per_shop,
        )


def _open(
    connection: sa.Connection, model: type[SQLModel], key: dict[str, object], values: dict[str, int]
) -> None:
    insert_missing(connection, model, {**key, **values})


def purge_attempts(session: Session, before: datetime) -> int:
    """Delete PIN attempts made before ``before`` (the ``purge`` job, a year on): the hourly
    limits look back an hour, a card's count lives on the card, so only inquiries read them."""
    deleted = session.execute(sa.delete(PinAttempt).where(col(PinAttempt.at) < before))
    return int(deleted.rowcount)  # type: ignore[attr-defined]
