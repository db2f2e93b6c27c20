"""Resident wallets as expiry buckets, and closing a wallet (DESIGN §4).

A resident's wallet for a point type is the set of its **bucket accounts**: one ledger account
per (program, valid-until date), created on demand, flagged *debits must not exceed credits* so
none can go negative whatever the caller does. ``wallet_bucket`` maps each bucket account to its
key; it holds no amounts (the ledger is the only source of truth, no lot table to drift from it).
A bucket valid until D can be spent until the end of D in Tokyo (``points.calendar.usable_at``).

This module holds the wallet's tables (``Wallet``, ``WalletBucket``, and ``SpendReturn``, which
records ``points.spending``'s refunds), the buckets as the ledger has them (``Bucket``,
``buckets``), the wallet's errors, and its life: opened on first use, closed by counter staff.
Spending, holds and refunds are ``points.spending``; what a resident sees (balance by expiry
date, history) is ``points.wallet_views``.

Concurrency: a spend, a refund or a closure first locks the wallet's row (``lock_wallet``:
``FOR UPDATE``; SQLite writes are serialised by ``BEGIN IMMEDIATE``), so it plans on balances no
one else is spending from; awards only credit buckets and take a shared lock (``FOR SHARE``, in
``open_wallet``), so they never wait for each other but cannot land in a wallet being closed.
The ledger's flag is the last word.

A wallet is **closed** (a resident moved out or died) by counter staff: its balance goes to
expired points in one entry per ``BUCKETS_PER_SPEND_MAX`` buckets, recorded with the reason, the
bucket accounts are closed in the ledger, and nothing can be awarded to or spent from it again
until counter staff reopen it (``reopen_wallet``: the resident came back).
A wallet with a hold pending is not closed: the hold is posted or voided first.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

import sqlalchemy as sa
from sqlmodel import Field, Session, SQLModel, col, select

from ledger import LedgerTx, NewEntry, Posting, Side
from ledger import schema as ledger_schema
from ledger.model import POSTINGS_PER_ENTRY_MAX
from points import audit, people
from points.accounts import ACCOUNT_RULES, AccountCode
from points.auth import Principal
from points.calendar import usable_at
from points.errors import (
    InvalidInput,
    NotFound,
    ResidentNotActive,
    WalletClosed,
    WalletHasPending,
    WalletNotClosed,
)
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


@dataclass(frozen=True, slots=True)
class ResidentLookup:
    """What a department may learn of a resident it knows by address number: nothing personal."""

    resident_id: str
    #: The resident has a wallet open, of any point type.
    wallet_open: bool


def look_up_resident(session: Session, address_number: str) -> ResidentLookup:
    """The resident with this address number (宛名番号), for a department: their pseudonymous
    id and whether they have any open wallet (a resident without one has no wallet yet, which
    their first award opens, or had theirs closed: moved out, deceased). Unknown and shared
    numbers are refused as for an award by number (``people.one_resident``)."""
    resident_id = people.resident_id_of(session, resident_id=None, address_number=address_number)
    open_wallet = session.exec(
        select(Wallet.point_type_id)
        .where(Wallet.resident_id == resident_id, Wallet.status == WalletStatus.OPEN)
        .limit(1)
    ).first()
    return ResidentLookup(resident_id, wallet_open=open_wallet is not None)


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


def point_types_of_resident(session: Session, resident_id: str) -> list[PointType]:
    """The point types of the resident's wallets (opened on the first points received, or
    closed), by code: what the wallet app and the counter list."""
    return list(
        session.exec(
            select(PointType)
            .join(Wallet, col(Wallet.point_type_id) == col(PointType.id))
            .where(Wallet.resident_id == resident_id)
            .order_by(col(PointType.code))
        )
    )


def lock_wallet(session: Session, point_type: PointType, resident_id: str) -> Wallet | None:
    """The wallet's row, locked for update (``None`` when it was never opened): whoever spends
    from or closes the wallet takes this lock first, so they plan on balances no one else moves."""
    return session.exec(
        select(Wallet)
        .where(Wallet.resident_id == resident_id, Wallet.point_type_id == point_type.id)
        .with_for_update()
    ).first()


def bucket_keys(session: Session, account_ids: Sequence[int]) -> dict[int, tuple[date, str]]:
    """(valid until, program) of each of these accounts that is a wallet bucket."""
    rows = session.exec(
        select(
            col(WalletBucket.account_id),
            col(WalletBucket.valid_until),
            col(WalletBucket.program_id),
        ).where(col(WalletBucket.account_id).in_(list(account_ids)))
    )
    return {int(account_id): (valid_until, program) for account_id, valid_until, program in rows}


# Closing ----------------------------------------------------------------------------------


def _check_counter_act(session: Session, resident_id: str, reason: str) -> None:
    """What closing and reopening a wallet both need: a reason, and the resident."""
    if not reason.strip():
        raise InvalidInput("a reason is required", field="reason")
    if session.get(Resident, resident_id) is None:
        raise NotFound(f"no resident {resident_id}", object_id=resident_id)


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
    _check_counter_act(session, resident_id, reason)
    wallet = lock_wallet(session, point_type, resident_id)
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


def reopen_wallet(
    session: Session,
    actor: Principal,
    now: datetime,
    point_type: PointType,
    resident_id: str,
    *,
    reason: str,
) -> Wallet:
    """Open a closed wallet again (the resident came back), audited with the reason and the
    closure it undoes. The points moved to expired at the closure stay expired: what the
    resident receives from now on is theirs. Its bucket accounts are opened again, so an award
    to a bucket of the same program and expiry day lands where it did before."""
    _check_counter_act(session, resident_id, reason)
    wallet = lock_wallet(session, point_type, resident_id)
    if wallet is None or wallet.status != WalletStatus.CLOSED:
        raise WalletNotClosed(f"the wallet of resident {resident_id} is not closed")
    tx = LedgerTx(session.connection(), lambda: now)
    for bucket in buckets(session, resident_id, point_type.id):
        if bucket.closed:
            tx.reopen_account(bucket.account_id)
    closure = {
        "closed_at": wallet.closed_at.isoformat() if wallet.closed_at else None,
        "closed_reason": wallet.closed_reason,
        "closed_by": wallet.closed_by,
    }
    wallet.status = WalletStatus.OPEN
    wallet.closed_at = wallet.closed_reason = wallet.closed_by = None
    session.add(wallet)
    audit.record(
        session,
        actor=actor,
        action="wallet.reopen",
        object_type="resident",
        object_id=resident_id,
        at=now,
        reason=reason,
        details={"point_type": point_type.code, **closure},
    )
    session.flush()
    return wallet
