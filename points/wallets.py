"""Resident wallets as expiry buckets, and the spending service (DESIGN §4).

A resident's wallet for a point type is the set of its **bucket accounts**: one ledger account
per (program, valid-until date), created on demand, flagged *debits must not exceed credits* so
none can go negative whatever the caller does. ``wallet_bucket`` maps each bucket account to its
key; it holds no amounts (the ledger is the only source of truth, no lot table to drift from it).

**Spending** takes N points from a wallet to one account in *one* entry, drawing the
earliest-expiring buckets first (ties by program id, then account id). A bucket valid until D
can be spent until the end of D in Tokyo (``points.calendar.usable_at``): the spend checks that
itself, so when the expiry job runs never decides what can be spent. A **hold** (a pending entry,
for a payment the merchant confirms later) draws only from buckets still valid at the hold's
timeout, so the expiry job never meets a bucket with points held on it.

**Returning points** goes back to the buckets they came from, latest expiry first:

* voiding a hold releases what it held (the ledger does that);
* posting a hold partly posts from the earliest-expiring of its buckets, so the part released is
  the latest-expiring;
* a refund of a posted spend credits the buckets it drew from (never more than each gave, less
  earlier refunds), latest expiry first; the share of a bucket that has expired since (or of a
  closed wallet) goes to the point type's expired-points account instead.

Concurrency: a spend, a refund or a closure first locks the wallet's row (``FOR UPDATE``; SQLite
writes are serialised by ``BEGIN IMMEDIATE``), so it plans on balances no one else is spending
from; awards only credit buckets and take a shared lock (``FOR SHARE``), so they never wait for
each other but cannot land in a wallet being closed. The ledger's flag is the last word.

A wallet is **closed** (a resident moved out or died) by counter staff: its balance goes to
expired points in one entry recorded with the reason, the bucket accounts are closed in the
ledger, and nothing can be awarded to or spent from it again.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, Session, SQLModel, col, select

from ledger import Entry, LedgerTx, NewEntry, Phase, Posting, Side
from ledger import schema as ledger_schema
from ledger.errors import HoldNotPending, IdempotencyConflict
from ledger.model import POSTINGS_PER_ENTRY_MAX, from_us
from points import audit
from points.accounts import ACCOUNT_RULES, AccountCode
from points.auth import Principal
from points.calendar import NEVER, tokyo_date, usable_at
from points.errors import Conflict, InvalidInput, NotFound
from points.pointtypes import PointType
from points.registry import Resident, ResidentStatus
from points.sqlbase import UTCDateTime

#: Buckets one spend can draw from (the other posting is the receiving account).
BUCKETS_PER_SPEND_MAX = POSTINGS_PER_ENTRY_MAX - 1


class WalletStatus(enum.StrEnum):
    OPEN = "open"
    CLOSED = "closed"


class Wallet(SQLModel, table=True):
    __tablename__ = "wallet"
    __table_args__ = (sa.CheckConstraint("status IN ('open', 'closed')", name="status"),)

    resident_id: str = Field(foreign_key="resident.id", primary_key=True, max_length=32)
    point_type_id: str = Field(foreign_key="point_type.id", primary_key=True, max_length=32)
    status: str = Field(default=WalletStatus.OPEN, max_length=16)
    created_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))
    closed_at: datetime | None = Field(default=None, sa_column=sa.Column(UTCDateTime()))
    closed_reason: str | None = Field(default=None, max_length=500)
    closed_by: str | None = Field(default=None, max_length=32)


class WalletBucket(SQLModel, table=True):
    __tablename__ = "wallet_bucket"
    __table_args__ = (
        sa.ForeignKeyConstraint(
            ["resident_id", "point_type_id"], ["wallet.resident_id", "wallet.point_type_id"]
        ),
        sa.UniqueConstraint(
            "resident_id", "point_type_id", "program_id", "valid_until", name="uq_wallet_bucket_key"
        ),
    )

    account_id: int = Field(
        sa_column=sa.Column(
            ledger_schema.Id, sa.ForeignKey(ledger_schema.account.c.id), primary_key=True
        )
    )
    resident_id: str = Field(max_length=32)
    point_type_id: str = Field(max_length=32)
    program_id: str = Field(foreign_key="program.id", max_length=32)
    #: The last day the points can be spent (``points.calendar.NEVER`` when they never expire).
    valid_until: date = Field(index=True)


class SpendReturn(SQLModel, table=True):
    """A refund of a posted spend: which entry it returned points of, and how many."""

    __tablename__ = "spend_return"
    __table_args__ = (sa.CheckConstraint("amount > 0", name="amount_positive"),)

    entry_id: int = Field(
        sa_column=sa.Column(
            ledger_schema.Id, sa.ForeignKey(ledger_schema.entry.c.id), primary_key=True
        )
    )
    spend_entry_id: int = Field(
        sa_column=sa.Column(
            ledger_schema.Id, sa.ForeignKey(ledger_schema.entry.c.id), nullable=False, index=True
        )
    )
    amount: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))


class InsufficientPoints(Conflict):
    code = "insufficient_balance"


class WalletClosed(Conflict):
    code = "wallet_closed"


class WalletHasPending(Conflict):
    code = "wallet_has_pending"


class ResidentNotActive(Conflict):
    code = "resident_not_active"


@dataclass(frozen=True, slots=True)
class Bucket:
    """One bucket of a wallet with its totals from the ledger."""

    account_id: int
    program_id: str
    valid_until: date
    posted: int
    #: Points held by pending spends (not yet posted or voided).
    held: int
    closed: bool

    @property
    def available(self) -> int:
        return self.posted - self.held

    def usable_at(self, instant: datetime) -> bool:
        return not self.closed and usable_at(self.valid_until, instant)


# Wallets and buckets ----------------------------------------------------------------------


def receiving_wallet(
    session: Session, point_type: PointType, resident_id: str
) -> tuple[str | None, Wallet | None]:
    """The resident's status (``None``: no such resident) and their wallet of the type
    (``None``: not opened yet), for an award to decide on (``check_can_receive``).

    The wallet's row is read under a shared lock: awards do not wait for each other, but a
    closure (which locks the row for update) waits for them, and they for it, so no award lands
    in a wallet closed under it."""
    resident = session.get(Resident, resident_id)
    wallet = session.exec(
        select(Wallet)
        .where(Wallet.resident_id == resident_id, Wallet.point_type_id == point_type.id)
        .with_for_update(read=True)
    ).first()
    return (resident.status if resident is not None else None), wallet


def open_wallet(session: Session, point_type: PointType, resident_id: str, now: datetime) -> Wallet:
    """The resident's wallet for the type, opened on first use; refuses a closed one and a
    resident who is not active."""
    resident_status, wallet = receiving_wallet(session, point_type, resident_id)
    check_can_receive(resident_status, wallet.status if wallet is not None else None)
    return wallet if wallet is not None else create_wallet(session, point_type, resident_id, now)


def create_wallet(
    session: Session, point_type: PointType, resident_id: str, now: datetime
) -> Wallet:
    wallet = Wallet(resident_id=resident_id, point_type_id=point_type.id, created_at=now)
    session.add(wallet)
    session.flush()  # a concurrent opener loses on the primary key and is retried
    return wallet


def check_can_receive(resident_status: str | None, wallet_status: str | None) -> None:
    """Whether points may be added to a wallet: the resident exists (``None``: no such
    resident) and is active, and the wallet (``None``: not opened yet) is not closed. The one
    place of this rule: ``open_wallet`` and every award (``issuers.eligibility``) call it."""
    if resident_status is None:
        raise NotFound("no such resident", field="resident_id")
    if wallet_status == WalletStatus.CLOSED:
        raise WalletClosed("the resident's wallet is closed")
    if resident_status != ResidentStatus.ACTIVE:
        raise ResidentNotActive(f"the resident is {resident_status}")


def bucket_for(
    session: Session,
    tx: LedgerTx,
    point_type: PointType,
    resident_id: str,
    program_id: str,
    valid_until: date,
) -> int:
    """The account id of the wallet's bucket for (program, valid_until), created on demand."""
    found = session.exec(
        select(WalletBucket.account_id).where(
            WalletBucket.resident_id == resident_id,
            WalletBucket.point_type_id == point_type.id,
            WalletBucket.program_id == program_id,
            WalletBucket.valid_until == valid_until,
        )
    ).first()
    if found is not None:
        return int(found)
    side, flags = ACCOUNT_RULES[AccountCode.RESIDENT_BUCKET]
    account = tx.create_account(
        ledger_id=point_type.ledger_id,
        code=int(AccountCode.RESIDENT_BUCKET),
        normal_side=side,
        owner_ref=resident_id,
        flags=flags,
    )
    session.add(
        WalletBucket(
            account_id=account.id,
            resident_id=resident_id,
            point_type_id=point_type.id,
            program_id=program_id,
            valid_until=valid_until,
        )
    )
    session.flush()  # a concurrent creator loses on the unique key and is retried
    return account.id


def buckets(session: Session, resident_id: str, point_type_id: str) -> list[Bucket]:
    """The wallet's buckets, earliest expiry first (ties by program, then account)."""
    account, bucket = ledger_schema.account, WalletBucket.__table__  # type: ignore[attr-defined]
    rows = session.connection().execute(
        sa.select(
            bucket.c.account_id,
            bucket.c.program_id,
            bucket.c.valid_until,
            account.c.credits_posted,
            account.c.debits_posted,
            account.c.debits_pending,
            account.c.closed,
        )
        .join(account, account.c.id == bucket.c.account_id)
        .where(bucket.c.resident_id == resident_id, bucket.c.point_type_id == point_type_id)
        .order_by(bucket.c.valid_until, bucket.c.program_id, bucket.c.account_id)
    )
    return [
        Bucket(
            account_id=row.account_id,
            program_id=row.program_id,
            valid_until=row.valid_until,
            posted=row.credits_posted - row.debits_posted,
            held=row.debits_pending,
            closed=bool(row.closed),
        )
        for row in rows
    ]


def _lock_wallet(session: Session, point_type: PointType, resident_id: str) -> Wallet | None:
    return session.exec(
        select(Wallet)
        .where(Wallet.resident_id == resident_id, Wallet.point_type_id == point_type.id)
        .with_for_update()
    ).first()


# Spending ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Spend:
    """What to take from a wallet and where it goes."""

    resident_id: str
    amount: int
    to_account_id: int
    kind: str = "payment"
    description: str = ""
    metadata: Mapping[str, Any] | None = None
    #: The caller's idempotency namespace and key for the entry (a retry returns the entry).
    namespace: str | None = None
    idempotency_key: str | None = None
    #: A hold (pending entry) that times out then; ``None`` spends at once.
    hold_until: datetime | None = None


def spend(session: Session, point_type: PointType, request: Spend, now: datetime) -> Entry:
    """Take ``request.amount`` from the wallet, earliest-expiring buckets first, in one entry."""
    if type(request.amount) is not int or request.amount <= 0:
        raise InvalidInput("amount is a positive integer", field="amount")
    tx = LedgerTx(session.connection(), lambda: now)
    # The key is checked after the wallet's lock: a retry that waited for the first attempt
    # then sees its entry (under READ COMMITTED each statement sees what committed before it).
    wallet = _lock_wallet(session, point_type, request.resident_id)
    if request.namespace is not None and request.idempotency_key is not None:
        earlier = tx.find_entry(request.namespace, request.idempotency_key)
        if earlier is not None:
            return _replayed(earlier, request)
    if request.hold_until is not None and request.hold_until <= now:
        raise InvalidInput("a hold's timeout is in the future", field="hold_until")
    if wallet is not None and wallet.status == WalletStatus.CLOSED:
        raise WalletClosed(f"the wallet of resident {request.resident_id} is closed")
    horizon = request.hold_until or now
    usable = (
        [b for b in buckets(session, request.resident_id, point_type.id) if b.usable_at(horizon)]
        if wallet is not None
        else []
    )
    draws = draw_earliest_first(usable, request.amount)
    if draws is None:
        available = sum(b.available for b in usable if b.available > 0)
        raise InsufficientPoints(
            f"the wallet holds {available} {point_type.unit} that can be spent"
            + (" before the hold's timeout" if request.hold_until is not None else "")
            + f"; {request.amount} asked",
            available=available,
            requested=request.amount,
        )
    if len(draws) > BUCKETS_PER_SPEND_MAX:
        raise InvalidInput(
            f"this spend would draw from {len(draws)} buckets; at most "
            f"{BUCKETS_PER_SPEND_MAX} per payment: split it"
        )
    postings = [Posting(account_id, Side.DEBIT, amount) for account_id, amount in draws]
    postings.append(Posting(request.to_account_id, Side.CREDIT, request.amount))
    return tx.post(
        NewEntry(
            postings,
            kind=request.kind,
            description=request.description,
            metadata=dict(request.metadata or {}),
            namespace=request.namespace,
            idempotency_key=request.idempotency_key,
            pending=request.hold_until is not None,
            timeout_at=request.hold_until,
        )
    )


def draw_earliest_first(ordered: Sequence[Bucket], amount: int) -> list[tuple[int, int]] | None:
    """(account id, amount) draws from ``ordered`` buckets, in order, until ``amount`` is
    covered; ``None`` when they hold too little."""
    draws: list[tuple[int, int]] = []
    left = amount
    for bucket in ordered:
        if left == 0:
            break
        take = min(bucket.available, left)
        if take > 0:
            draws.append((bucket.account_id, take))
            left -= take
    return None if left else draws


def _replayed(earlier: Entry, request: Spend) -> Entry:
    received = sum(
        p.amount
        for p in earlier.postings
        if p.account_id == request.to_account_id and p.side is Side.CREDIT
    )
    if received != request.amount:
        assert request.namespace is not None and request.idempotency_key is not None
        raise IdempotencyConflict(request.namespace, request.idempotency_key, earlier.id)
    return earlier


def capture_hold(
    session: Session,
    hold_id: int,
    now: datetime,
    *,
    amount: int | None = None,
    kind: str = "payment_capture",
    description: str = "",
    namespace: str | None = None,
    idempotency_key: str | None = None,
) -> Entry:
    """Post a spend's hold: in full, or ``amount`` of it taken from its earliest-expiring buckets
    (so what is released goes back to the latest-expiring, as returns do)."""
    tx = LedgerTx(session.connection(), lambda: now)
    hold = tx.get_entry(hold_id)
    if hold.phase is not Phase.PENDING:
        raise HoldNotPending(f"entry {hold_id} is not a hold", entry_id=hold_id)
    if amount is None:
        return tx.post_pending(
            hold_id,
            kind=kind,
            description=description,
            namespace=namespace,
            idempotency_key=idempotency_key,
        )
    held = sum(p.amount for p in hold.postings if p.side is Side.CREDIT)
    if type(amount) is not int or not 0 < amount <= held:
        raise InvalidInput(f"the amount to post is 1 to {held}", field="amount")
    expiry = {
        account_id: valid_until
        for account_id, (valid_until, _program) in _bucket_keys(
            session, [p.account_id for p in hold.postings]
        ).items()
    }
    order = sorted(
        (index for index, p in enumerate(hold.postings) if p.account_id in expiry),
        key=lambda index: (expiry[hold.postings[index].account_id], index),
    )
    amounts = [p.amount if p.account_id not in expiry else 0 for p in hold.postings]
    credits = [i for i, p in enumerate(hold.postings) if p.account_id not in expiry]
    if len(credits) != 1 or hold.postings[credits[0]].side is not Side.CREDIT:
        raise InvalidInput(f"entry {hold_id} is not a hold on a wallet")
    amounts[credits[0]] = amount
    left = amount
    for index in order:
        take = min(hold.postings[index].amount, left)
        amounts[index] = take
        left -= take
    return tx.post_pending(
        hold_id,
        amounts=amounts,
        kind=kind,
        description=description,
        namespace=namespace,
        idempotency_key=idempotency_key,
    )


def refund(
    session: Session,
    point_type: PointType,
    spend_entry_id: int,
    amount: int,
    now: datetime,
    *,
    kind: str = "refund",
    description: str = "",
    namespace: str | None = None,
    idempotency_key: str | None = None,
) -> Entry:
    """Return ``amount`` of a posted spend from the account it paid, to the buckets it drew
    from, latest expiry first; a bucket expired since (or a closed wallet's) gets nothing and
    its share goes to expired points."""
    if type(amount) is not int or amount <= 0:
        raise InvalidInput("amount is a positive integer", field="amount")
    tx = LedgerTx(session.connection(), lambda: now)
    original = tx.get_entry(spend_entry_id)
    if original.phase not in (Phase.POSTED, Phase.POST_PENDING):
        raise InvalidInput(f"entry {spend_entry_id} is not a posted spend")
    expiry = _bucket_keys(session, [p.account_id for p in original.postings])
    drawn = [p for p in original.postings if p.account_id in expiry and p.side is Side.DEBIT]
    paid = [p for p in original.postings if p.account_id not in expiry and p.side is Side.CREDIT]
    if not drawn or len(paid) != 1:
        raise InvalidInput(f"entry {spend_entry_id} is not a spend from a wallet")
    resident_id = _owner_of(session, drawn[0].account_id)
    wallet = _lock_wallet(session, point_type, resident_id)
    assert wallet is not None
    # After the lock, as for spends: a retry that waited for the first attempt sees its entry.
    if namespace is not None and idempotency_key is not None:
        earlier = tx.find_entry(namespace, idempotency_key)
        if earlier is not None:
            debited = sum(p.amount for p in earlier.postings if p.side is Side.DEBIT)
            if earlier.metadata.get("refund_of") != spend_entry_id or debited != amount:
                raise IdempotencyConflict(namespace, idempotency_key, earlier.id)
            return earlier
    earlier_returns = list(
        session.exec(select(SpendReturn).where(SpendReturn.spend_entry_id == spend_entry_id))
    )
    returned: dict[int, int] = {}
    for entry in tx.get_entries(r.entry_id for r in earlier_returns):
        for account_id, share in entry.metadata.get("buckets", []):
            returned[account_id] = returned.get(account_id, 0) + share
    returnable = sum(p.amount for p in drawn) - sum(r.amount for r in earlier_returns)
    if amount > returnable:
        raise InvalidInput(
            f"at most {returnable} of entry {spend_entry_id} can still be refunded",
            field="amount",
            returnable=returnable,
        )
    open_wallet_ = wallet.status == WalletStatus.OPEN
    closed_accounts = {
        b.account_id for b in buckets(session, resident_id, point_type.id) if b.closed
    }
    shares: list[tuple[int, int]] = []
    left = amount
    for posting in sorted(drawn, key=lambda p: (*expiry[p.account_id], p.account_id), reverse=True):
        room = posting.amount - returned.get(posting.account_id, 0)
        take = min(room, left)
        if take > 0:
            shares.append((posting.account_id, take))
            left -= take
    assert left == 0
    to_buckets: dict[int, int] = {}
    to_expired = 0
    for account_id, share in shares:
        if (
            open_wallet_
            and account_id not in closed_accounts
            and usable_at(expiry[account_id][0], now)
        ):
            to_buckets[account_id] = to_buckets.get(account_id, 0) + share
        else:
            to_expired += share
    postings = [Posting(paid[0].account_id, Side.DEBIT, amount)]
    postings += [
        Posting(account_id, Side.CREDIT, share) for account_id, share in to_buckets.items()
    ]
    if to_expired:
        postings.append(Posting(point_type.expired_account_id, Side.CREDIT, to_expired))
    entry = tx.post(
        NewEntry(
            postings,
            kind=kind,
            description=description,
            metadata={"refund_of": spend_entry_id, "buckets": [list(s) for s in shares]},
            namespace=namespace,
            idempotency_key=idempotency_key,
        )
    )
    session.add(SpendReturn(entry_id=entry.id, spend_entry_id=spend_entry_id, amount=amount))
    session.flush()
    return entry


def _bucket_keys(session: Session, account_ids: Sequence[int]) -> dict[int, tuple[date, str]]:
    """(valid until, program) of each of these accounts that is a wallet bucket."""
    rows = session.exec(
        select(
            col(WalletBucket.account_id),
            col(WalletBucket.valid_until),
            col(WalletBucket.program_id),
        ).where(col(WalletBucket.account_id).in_(list(account_ids)))
    )
    return {int(account_id): (valid_until, program) for account_id, valid_until, program in rows}


def _owner_of(session: Session, account_id: int) -> str:
    bucket = session.get(WalletBucket, account_id)
    assert bucket is not None
    return bucket.resident_id


# Closing ----------------------------------------------------------------------------------


def close_wallet(
    session: Session,
    actor: Principal,
    now: datetime,
    point_type: PointType,
    resident_id: str,
    *,
    reason: str,
) -> tuple[Wallet, int, list[int]]:
    """Close the wallet: its balance goes to expired points (recorded with the reason), its
    bucket accounts are closed. Returns the wallet, the points moved and the entry ids."""
    if not reason.strip():
        raise InvalidInput("a reason is required", field="reason")
    if session.get(Resident, resident_id) is None:
        raise NotFound(f"no resident {resident_id}", object_id=resident_id)
    wallet = _lock_wallet(session, point_type, resident_id)
    if wallet is None:
        # Never used: record the closure so nothing can be awarded to it later.
        wallet = Wallet(resident_id=resident_id, point_type_id=point_type.id, created_at=now)
    elif wallet.status == WalletStatus.CLOSED:
        raise WalletClosed(f"the wallet of resident {resident_id} is closed already")
    tx = LedgerTx(session.connection(), lambda: now)
    held = buckets(session, resident_id, point_type.id)
    if any(b.held for b in held):
        raise WalletHasPending(
            "points are held for a payment in progress; close the wallet after it is confirmed "
            "or declined"
        )
    with_points = [b for b in held if b.posted > 0]
    entry_ids: list[int] = []
    for start in range(0, len(with_points), BUCKETS_PER_SPEND_MAX):
        chunk = with_points[start : start + BUCKETS_PER_SPEND_MAX]
        total = sum(b.posted for b in chunk)
        postings = [Posting(b.account_id, Side.DEBIT, b.posted) for b in chunk]
        postings.append(Posting(point_type.expired_account_id, Side.CREDIT, total))
        entry_ids.append(
            tx.post(
                NewEntry(
                    postings,
                    kind="wallet_closed",
                    description=reason,
                    metadata={"resident_id": resident_id},
                )
            ).id
        )
    for bucket in held:
        if not bucket.closed:
            tx.close_account(bucket.account_id)
    wallet.status = WalletStatus.CLOSED
    wallet.closed_at = now
    wallet.closed_reason = reason
    wallet.closed_by = actor.principal_id
    session.add(wallet)
    moved = sum(b.posted for b in with_points)
    audit.record(
        session,
        actor=actor,
        action="wallet.close",
        object_type="resident",
        object_id=resident_id,
        at=now,
        reason=reason,
        details={"point_type": point_type.code, "moved": moved, "entries": entry_ids},
    )
    session.flush()
    return wallet, moved, entry_ids


# Reading ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ExpiryLine:
    valid_until: date
    amount: int


@dataclass(frozen=True, slots=True)
class WalletView:
    point_type: PointType
    status: str
    #: Points that can be spent now (unexpired buckets, less what holds keep).
    balance: int
    #: Points held by payments awaiting the merchant's confirmation.
    held: int
    #: Unexpired points by expiry date, earliest first (``NEVER`` last).
    by_expiry: list[ExpiryLine]
    #: The nearest expiry within the notice window, if any.
    expiring_soon: ExpiryLine | None


def wallet_view(
    session: Session, point_type: PointType, resident_id: str, now: datetime, notice_days: int
) -> WalletView:
    wallet = session.get(Wallet, (resident_id, point_type.id))
    status = wallet.status if wallet is not None else WalletStatus.OPEN
    live = [b for b in buckets(session, resident_id, point_type.id) if b.usable_at(now)]
    by_date: dict[date, int] = {}
    for bucket in live:
        if bucket.available > 0:
            by_date[bucket.valid_until] = by_date.get(bucket.valid_until, 0) + bucket.available
    lines = [ExpiryLine(day, amount) for day, amount in sorted(by_date.items())]
    horizon = tokyo_date(now) + timedelta(days=notice_days)
    soon = next((line for line in lines if line.valid_until != NEVER), None)
    return WalletView(
        point_type=point_type,
        status=status,
        balance=sum(line.amount for line in lines),
        held=sum(b.held for b in live),
        by_expiry=lines,
        expiring_soon=soon if soon is not None and soon.valid_until <= horizon else None,
    )


#: Readable words for the kinds of entry a resident sees: (Japanese, English).
KIND_WORDS: dict[str, tuple[str, str]] = {
    "award": ("付与", "awarded"),
    "payment": ("支払い", "payment"),
    "payment_capture": ("支払い", "payment"),
    "void_pending": ("支払い取消", "payment cancelled"),
    "hold_timeout": ("支払い期限切れ", "payment timed out"),
    "refund": ("返金", "refund"),
    "reversal": ("取消", "reversed"),
    "expiry": ("期限切れ", "expired"),
    "wallet_closed": ("ウォレット閉鎖", "wallet closed"),
}


class LineState(enum.StrEnum):
    POSTED = "posted"
    #: Points held for a payment awaiting the merchant's confirmation.
    HELD = "held"
    #: A hold that is over: confirmed (a separate line shows what was taken) or released.
    RELEASED = "released"


@dataclass(frozen=True, slots=True)
class HistoryItem:
    entry_id: int
    kind: str
    #: The net change to the wallet: positive when points came in.
    amount: int
    state: LineState
    at: datetime
    text_ja: str
    text_en: str


def wallet_history(
    session: Session,
    point_type: PointType,
    resident_id: str,
    *,
    before: int | None,
    limit: int,
) -> list[HistoryItem]:
    """Entries touching the wallet, newest first, ``limit`` of them before entry ``before``."""
    posting, entry = ledger_schema.posting, ledger_schema.entry
    bucket = WalletBucket.__table__  # type: ignore[attr-defined]
    signed = sa.case(
        (posting.c.side == int(Side.CREDIT), posting.c.amount), else_=-posting.c.amount
    )
    columns = (
        entry.c.id,
        entry.c.kind,
        entry.c.phase,
        entry.c["metadata"],
        entry.c.effective_at_us,
    )
    query = (
        sa.select(*columns, sa.func.sum(signed).label("net"))
        .select_from(posting)
        .join(entry, entry.c.id == posting.c.entry_id)
        .where(
            posting.c.account_id.in_(
                sa.select(bucket.c.account_id).where(
                    bucket.c.resident_id == resident_id,
                    bucket.c.point_type_id == point_type.id,
                )
            )
        )
        .group_by(*columns)
        .order_by(entry.c.id.desc())
        .limit(limit)
    )
    if before is not None:
        query = query.where(entry.c.id < before)
    connection = session.connection()
    rows = list(connection.execute(query))
    holds = [row.id for row in rows if row.phase == int(Phase.PENDING)]
    resolved = (
        set(
            connection.execute(
                sa.select(entry.c.pending_id).where(entry.c.pending_id.in_(holds))
            ).scalars()
        )
        if holds
        else set()
    )
    items = []
    for row in rows:
        metadata = json.loads(row.metadata) if row.metadata else {}
        ja, en = KIND_WORDS.get(row.kind, (row.kind, row.kind))
        if row.kind == "award":
            ja = f"{metadata.get('program_ja', '')} {ja}".strip()
            en = f"{metadata.get('program_en', '')}: {en}".strip(": ")
        state = LineState.POSTED
        if row.phase == int(Phase.PENDING):
            state = LineState.RELEASED if row.id in resolved else LineState.HELD
        items.append(
            HistoryItem(
                entry_id=row.id,
                kind=row.kind,
                amount=int(row.net),
                state=state,
                at=from_us(row.effective_at_us),
                text_ja=ja,
                text_en=en,
            )
        )
    return items
