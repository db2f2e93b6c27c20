"""Payments at shops: the records, their states, their events, and the lists (issue 17 part 4).

A **payment** is one row (``Payment``) that the shop, the resident and finance read. The money
is in the ledger: the row names the entry that took the points (``entry_id``: a posted spend, or
for a store-QR payment awaiting the shop a hold) and the refunds (``PaymentRefund``). Its
**state** is read from the ledger every time, never stored, so it cannot disagree with it:

===================  =========================================================================
``pending``          a hold the shop has not confirmed (``hold``, no resolution in the ledger)
``voided``           the hold was voided: declined by the shop or timed out (the
                     ``hold_timeouts`` job)
``posted``           the points were taken: at once, or the hold was posted
``partly_refunded``  posted, and refunds gave back part of it
``refunded``         posted, and refunds gave all of it back
===================  =========================================================================

Who sees whom: the shop sees a resident only as a **pseudonym of its own**, an HMAC of the
merchant and the resident under the server's secret key (``customer_ref``), so shops cannot link
a resident across shops; finance sees the resident's pseudonymous id; the resident sees the
shop's name.

**Events** feed the shop's device (server-sent events and their polling twin): every payment act
appends a ``PaymentEvent`` (``created`` for a hold awaiting the shop, ``posted``, ``voided``,
``refunded``) in its own transaction, after raising the shop's ``event_count``, which takes the
shop's settings row lock; so the shop's events get their ids in commit order and a cursor
(``after``) never skips one. A hold voided by the ``hold_timeouts`` job (which knows nothing of
shops) is announced by ``announce_resolved``, which the job runs after voiding (the shell wires
it), and again at the next run if a crash came between.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, Session, SQLModel, col, select

from ledger import Phase
from ledger import schema as ledger_schema
from ledger.model import from_us
from points.calendar import start_of_day, tokyo_date
from points.errors import NotFound
from points.pointtypes import PointType
from points.registry import Merchant
from points.sqlbase import UTCDateTime
from redemption.merchants import MerchantSettings, Till

#: The largest amount of one payment.
AMOUNT_MAX = 10_000_000
REFERENCE_MAX = 64
PAGE_LIMIT_MAX = 200


def _id_column(*, primary_key: bool = False) -> Any:
    return Field(
        default=None,
        sa_column=sa.Column(
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=primary_key,
            autoincrement=True,
        ),
    )


class Flow(enum.StrEnum):
    #: The shop's device keyed the amount and showed a payment QR; the resident paid it.
    PAYMENT_QR = "payment_qr"
    #: The resident showed a pay code; the shop's device scanned it and keyed the amount.
    PAY_CODE = "pay_code"
    #: The resident scanned the till's printed QR and typed the amount.
    STORE_QR = "store_qr"
    #: The till scanned (or keyed) the resident's card and the resident typed the PIN; or, with
    #: no till, counter staff acted for the resident, who typed the PIN (assisted).
    CARD = "card"
    #: The resident exchanged points for goods from a city counter's catalog in the wallet app.
    EXCHANGE = "exchange"


class State(enum.StrEnum):
    PENDING = "pending"
    POSTED = "posted"
    VOIDED = "voided"
    PARTLY_REFUNDED = "partly_refunded"
    REFUNDED = "refunded"


class EventKind(enum.StrEnum):
    CREATED = "created"
    POSTED = "posted"
    VOIDED = "voided"
    REFUNDED = "refunded"


class Payment(SQLModel, table=True):
    __tablename__ = "payment"
    __table_args__ = (
        sa.CheckConstraint(f"amount BETWEEN 1 AND {AMOUNT_MAX}", name="amount"),
        sa.CheckConstraint("refunded >= 0 AND refunded <= amount", name="refunded_within_amount"),
        sa.CheckConstraint(
            "flow IN ('payment_qr', 'pay_code', 'store_qr', 'card', 'exchange')", name="flow"
        ),
        sa.CheckConstraint("till_id IS NOT NULL OR flow IN ('card', 'exchange')", name="till"),
        sa.CheckConstraint("(hold AND confirm_by IS NOT NULL) OR NOT hold", name="hold_deadline"),
        sa.CheckConstraint("NOT hold OR flow = 'store_qr'", name="hold_only_store_qr"),
        sa.CheckConstraint("(flow = 'payment_qr') = (request_id IS NOT NULL)", name="request"),
        sa.CheckConstraint("(flow = 'pay_code') = (pay_code_id IS NOT NULL)", name="pay_code"),
        sa.CheckConstraint("(flow = 'card') = (card_id IS NOT NULL)", name="card"),
        sa.Index("ix_payment_merchant_id_seq", "merchant_id", "seq"),
        sa.Index("ix_payment_resident_id_seq", "resident_id", "seq"),
        sa.Index("ix_payment_merchant_id_created_at", "merchant_id", "created_at"),
    )

    #: The order payments were recorded in (the lists' cursor).
    seq: int | None = _id_column(primary_key=True)
    id: str = Field(max_length=32, unique=True)
    merchant_id: str = Field(foreign_key="merchant.id", max_length=32)
    #: The till that took it; none for an exchange in the wallet or an assisted card payment.
    till_id: str | None = Field(default=None, foreign_key="till.id", max_length=32)
    resident_id: str = Field(foreign_key="resident.id", max_length=32)
    point_type_id: str = Field(foreign_key="point_type.id", max_length=32)
    amount: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    refunded: int = Field(default=0, sa_column=sa.Column(sa.BigInteger, nullable=False))
    flow: str = Field(max_length=16)
    reference: str = Field(default="", max_length=REFERENCE_MAX)
    #: The payment QR paid (flow payment_qr) or the pay code scanned (flow pay_code): once each.
    request_id: str | None = Field(default=None, max_length=32, unique=True)
    pay_code_id: str | None = Field(default=None, max_length=32, unique=True)
    #: The resident's card (flow card).
    card_id: str | None = Field(default=None, foreign_key="card.id", max_length=32)
    #: The ledger entry that took the points: a posted spend, or a hold (``hold``).
    entry_id: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False, unique=True))
    hold: bool = Field(default=False)
    #: When a hold is voided unless the shop confirms it (the hold's timeout).
    confirm_by: datetime | None = Field(
        default=None, sa_column=sa.Column(UTCDateTime(), nullable=True)
    )
    #: A hold whose resolution was not announced to the shop's device yet.
    awaiting: bool = Field(default=False, index=True)
    created_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))


class PaymentRefund(SQLModel, table=True):
    __tablename__ = "payment_refund"

    entry_id: int = Field(sa_column=sa.Column(sa.BigInteger, primary_key=True, autoincrement=False))
    payment_id: str = Field(foreign_key="payment.id", max_length=32, index=True)
    amount: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    #: The member of the shop's staff who refunded.
    staff_id: str = Field(max_length=32)
    created_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))


class PaymentEvent(SQLModel, table=True):
    __tablename__ = "payment_event"
    __table_args__ = (
        sa.CheckConstraint("kind IN ('created', 'posted', 'voided', 'refunded')", name="kind"),
        sa.Index("ix_payment_event_merchant_id_id", "merchant_id", "id"),
    )

    id: int | None = _id_column(primary_key=True)
    merchant_id: str = Field(max_length=32)
    payment_id: str = Field(max_length=32)
    kind: str = Field(max_length=16)
    at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))


@dataclass(frozen=True, slots=True)
class PaymentView:
    """A payment as read: the row, its state from the ledger, and the names around it."""

    payment: Payment
    state: State
    #: The entry that posted a hold, or voided it (``None`` while pending, or when not a hold).
    resolution_entry_id: int | None
    resolved_at: datetime | None
    refund_entry_ids: list[int]
    merchant_name_ja: str
    merchant_name_en: str
    till_name: str | None
    point_type_code: str

    @property
    def spend_entry_id(self) -> int | None:
        """The posted entry that took the points (what a refund returns), if posted."""
        if not self.payment.hold:
            return self.payment.entry_id
        return self.resolution_entry_id if self.state not in (State.PENDING, State.VOIDED) else None

    def customer_ref(self, key: bytes) -> str:
        return customer_ref(key, self.payment.merchant_id, self.payment.resident_id)


def customer_ref(key: bytes, merchant_id: str, resident_id: str) -> str:
    """The shop's own pseudonym of a resident: the same at one shop, unlinkable across shops."""
    digest = hmac.new(key, f"{merchant_id}\x00{resident_id}".encode(), hashlib.sha256).digest()
    return "cus_" + base64.b32encode(digest[:10]).decode("ascii").lower()


# States, read from the ledger ----------------------------------------------------------------

_resolution = ledger_schema.entry.alias("resolution")


def _state_case() -> Any:
    p = Payment.__table__.c  # type: ignore[attr-defined]
    return sa.case(
        (sa.and_(p.hold, _resolution.c.id.is_(None)), State.PENDING.value),
        (sa.and_(p.hold, _resolution.c.phase == int(Phase.VOID_PENDING)), State.VOIDED.value),
        (p.refunded == 0, State.POSTED.value),
        (p.refunded < p.amount, State.PARTLY_REFUNDED.value),
        else_=State.REFUNDED.value,
    )


def _views_query() -> Any:
    p = Payment.__table__  # type: ignore[attr-defined]
    till = Till.__table__  # type: ignore[attr-defined]
    merchant = Merchant.__table__  # type: ignore[attr-defined]
    point_type = PointType.__table__  # type: ignore[attr-defined]
    return (
        sa.select(
            p,
            _state_case().label("state"),
            _resolution.c.id.label("resolution_id"),
            _resolution.c.recorded_at_us.label("resolved_at_us"),
            merchant.c.name_ja.label("merchant_name_ja"),
            merchant.c.name_en.label("merchant_name_en"),
            till.c.name.label("till_name"),
            point_type.c.code.label("point_type_code"),
        )
        .select_from(p)
        .outerjoin(_resolution, _resolution.c.pending_id == p.c.entry_id)
        .join(merchant, merchant.c.id == p.c.merchant_id)
        .outerjoin(till, till.c.id == p.c.till_id)
        .join(point_type, point_type.c.id == p.c.point_type_id)
    )


def _views(session: Session, query: Any) -> list[PaymentView]:
    rows = session.execute(query).all()
    ids = [row.id for row in rows]
    refunds: dict[str, list[int]] = {}
    if ids:
        for payment_id, entry_id in session.execute(
            sa.select(col(PaymentRefund.payment_id), col(PaymentRefund.entry_id))
            .where(col(PaymentRefund.payment_id).in_(ids))
            .order_by(col(PaymentRefund.entry_id))
        ).all():
            refunds.setdefault(payment_id, []).append(entry_id)
    columns = Payment.__table__.c.keys()  # type: ignore[attr-defined]
    views = []
    for row in rows:
        mapping = row._mapping
        payment = Payment(**{name: mapping[name] for name in columns})
        views.append(
            PaymentView(
                payment=payment,
                state=State(row.state),
                resolution_entry_id=row.resolution_id,
                resolved_at=from_us(row.resolved_at_us) if row.resolved_at_us is not None else None,
                refund_entry_ids=refunds.get(payment.id, []),
                merchant_name_ja=row.merchant_name_ja,
                merchant_name_en=row.merchant_name_en,
                till_name=row.till_name,
                point_type_code=row.point_type_code,
            )
        )
    return views


def view(
    session: Session,
    payment_id: str,
    *,
    merchant_id: str | None = None,
    resident_id: str | None = None,
) -> PaymentView:
    """One payment, if the caller may see it (a shop its own, a resident their own)."""
    p = Payment.__table__.c  # type: ignore[attr-defined]
    query = _views_query().where(p.id == payment_id)
    if merchant_id is not None:
        query = query.where(p.merchant_id == merchant_id)
    if resident_id is not None:
        query = query.where(p.resident_id == resident_id)
    found = _views(session, query)
    if not found:
        raise NotFound(f"no payment {payment_id}")
    return found[0]


def views_by_id(session: Session, payment_ids: list[str]) -> dict[str, PaymentView]:
    if not payment_ids:
        return {}
    p = Payment.__table__.c  # type: ignore[attr-defined]
    return {v.payment.id: v for v in _views(session, _views_query().where(p.id.in_(payment_ids)))}


@dataclass(frozen=True, slots=True)
class Filters:
    merchant_id: str | None = None
    resident_id: str | None = None
    #: Tokyo dates, both included.
    from_day: date | None = None
    to_day: date | None = None
    state: State | None = None


def list_views(
    session: Session, filters: Filters, *, before: int | None, limit: int
) -> list[PaymentView]:
    """Payments newest first, ``limit`` of them recorded before the cursor ``before`` (a
    ``seq``)."""
    p = Payment.__table__.c  # type: ignore[attr-defined]
    query = _views_query()
    if filters.merchant_id is not None:
        query = query.where(p.merchant_id == filters.merchant_id)
    if filters.resident_id is not None:
        query = query.where(p.resident_id == filters.resident_id)
    if filters.from_day is not None:
        query = query.where(p.created_at >= start_of_day(filters.from_day))
    if filters.to_day is not None:
        query = query.where(p.created_at < start_of_day(filters.to_day + timedelta(days=1)))
    if filters.state is not None:
        query = query.where(_state_case() == filters.state.value)
    if before is not None:
        query = query.where(p.seq < before)
    return _views(session, query.order_by(p.seq.desc()).limit(limit))


@dataclass(frozen=True, slots=True)
class DayTotals:
    day: date
    #: Payments posted (partly refunded ones included), and their points.
    count: int
    amount: int
    refunded: int
    #: What the shop took that day: amount less refunded.
    net: int
    pending: int


def day_totals(session: Session, merchant_id: str, day: date) -> DayTotals:
    """The shop's totals of one Tokyo day, by the payments made that day."""
    p = Payment.__table__.c  # type: ignore[attr-defined]
    state = _state_case()
    posted = state.in_([State.POSTED.value, State.PARTLY_REFUNDED.value, State.REFUNDED.value])
    query = (
        sa.select(
            sa.func.count().filter(posted),
            sa.func.coalesce(sa.func.sum(p.amount).filter(posted), 0),
            sa.func.coalesce(sa.func.sum(p.refunded).filter(posted), 0),
            sa.func.count().filter(state == State.PENDING.value),
        )
        .select_from(Payment.__table__)  # type: ignore[attr-defined]
        .outerjoin(_resolution, _resolution.c.pending_id == p.entry_id)
        .where(
            p.merchant_id == merchant_id,
            p.created_at >= start_of_day(day),
            p.created_at < start_of_day(day + timedelta(days=1)),
        )
    )
    count, amount, refunded, pending = session.execute(query).one()
    return DayTotals(
        day, int(count), int(amount), int(refunded), int(amount - refunded), int(pending)
    )


def today(now: datetime) -> date:
    return tokyo_date(now)


# Events --------------------------------------------------------------------------------------


def record_event(
    session: Session, merchant_id: str, payment_id: str, kind: EventKind, now: datetime
) -> None:
    """Append one event of the shop, after taking its settings row's lock (so the shop's events
    get their ids in the order they commit)."""
    raised = session.execute(
        sa.update(MerchantSettings)
        .where(col(MerchantSettings.merchant_id) == merchant_id)
        .values(event_count=col(MerchantSettings.event_count) + 1)
    )
    assert raised.rowcount == 1, "the shop's settings are made before its first payment"  # type: ignore[attr-defined]
    session.add(PaymentEvent(merchant_id=merchant_id, payment_id=payment_id, kind=kind, at=now))
    session.flush()


@dataclass(frozen=True, slots=True)
class EventView:
    id: int
    kind: EventKind
    at: datetime
    payment: PaymentView


def events_after(session: Session, merchant_id: str, after: int, *, limit: int) -> list[EventView]:
    """The shop's events after the cursor ``after`` (an event id), oldest first."""
    rows = session.exec(
        select(PaymentEvent)
        .where(PaymentEvent.merchant_id == merchant_id, col(PaymentEvent.id) > after)
        .order_by(col(PaymentEvent.id))
        .limit(limit)
    ).all()
    payments = views_by_id(session, sorted({row.payment_id for row in rows}))
    return [
        EventView(row.id or 0, EventKind(row.kind), row.at, payments[row.payment_id])
        for row in rows
    ]


def last_event_id(session: Session, merchant_id: str) -> int:
    """The id of the shop's newest event (0 when none): where a new listener starts."""
    found = session.exec(
        select(sa.func.max(PaymentEvent.id)).where(PaymentEvent.merchant_id == merchant_id)
    ).one()
    return int(found or 0)


def announce_resolved(session: Session, now: datetime, *, limit: int = 1000) -> int:
    """Announce the holds resolved outside the shop's acts (voided by the timeout job): an
    event each, and the payment no longer awaiting. Returns how many."""
    p = Payment.__table__.c  # type: ignore[attr-defined]
    rows = session.execute(
        sa.select(p.id, p.merchant_id, _resolution.c.phase)
        .select_from(Payment.__table__)  # type: ignore[attr-defined]
        .join(_resolution, _resolution.c.pending_id == p.entry_id)
        .where(p.awaiting)
        .order_by(p.seq)
        .limit(limit)
    ).all()
    announced = 0
    for payment_id, merchant_id, phase in rows:
        kind = EventKind.VOIDED if phase == int(Phase.VOID_PENDING) else EventKind.POSTED
        # Conditional: a second run racing this one waits for the row, then finds it done.
        taken = session.execute(
            sa.update(Payment)
            .where(col(Payment.id) == payment_id, col(Payment.awaiting))
            .values(awaiting=False)
        )
        if taken.rowcount == 1:  # type: ignore[attr-defined]
            record_event(session, merchant_id, payment_id, kind, now)
            announced += 1
    return announced
