"""The spending service: payments, holds, refunds, and the orders they draw and return in
(DESIGN §4).

**Spending** takes N points from a wallet to one account in *one* entry, drawing the
earliest-expiring buckets first (ties by program id, then account id). A bucket valid until D
can be spent until the end of D in Tokyo (``points.calendar.usable_at``): the spend checks that
itself, so when the expiry job runs never decides what can be spent. A **hold** (a pending entry,
for a payment the merchant confirms later) draws only from buckets still valid at the hold's
timeout, so the expiry job never meets a bucket with points held on it. A hold is then *posted*
(in full, or in part) or *voided* (by the merchant through the ledger, or by the timeout job).

**Returning points** goes back to the buckets they came from, latest expiry first:

* voiding a hold releases what it held (the ledger does that);
* posting a hold partly posts from the earliest-expiring of its buckets, so the part released is
  the latest-expiring;
* a refund of a posted spend credits the buckets it drew from (never more than each gave, less
  earlier refunds), latest expiry first; the share of a bucket that has expired since (or of a
  closed wallet) goes to the point type's expired-points account instead.

The orders are pure functions at the end of this module, written once: ``draw`` for a payment, a
hold and a hold's partial post alike, ``return_latest_first`` for refunds
(``tests/test_draw_order.py`` holds them to their rules without a database).

Concurrency and retries: a spend and a refund lock the wallet's row first
(``points.wallets.lock_wallet``), so they plan on balances no one else is moving, and only then
check their idempotency key, so a retry that waited for the first attempt returns its entry.
Posting a hold plans only on what the hold keeps, which nothing else can take, and the ledger
resolves a hold at most once (a unique key on the resolved entry). Every path writes one entry
(and, for a refund, its ``spend_return`` row) in the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Protocol

from sqlmodel import Session, select

from ledger import Entry, LedgerTx, NewEntry, Phase, Posting, Side
from ledger.errors import HoldNotPending, IdempotencyConflict
from points.calendar import usable_at
from points.errors import InsufficientPoints, InvalidInput, WalletClosed
from points.pointtypes import PointType
from points.wallets import (
    BUCKETS_PER_SPEND_MAX,
    SpendReturn,
    WalletBucket,
    WalletStatus,
    bucket_keys,
    buckets,
    lock_wallet,
)


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
    wallet = lock_wallet(session, point_type, request.resident_id)
    if request.namespace is not None and request.idempotency_key is not None:
        earlier = tx.find_entry(request.namespace, request.idempotency_key)
        if earlier is not None:
            return _replayed(earlier, request)
    if request.hold_until is not None and request.hold_until <= now:
        raise InvalidInput("a hold's timeout is in the future", field="hold_until")
    if wallet is not None and wallet.status == WalletStatus.CLOSED:
        raise WalletClosed(f"the wallet of resident {request.resident_id} is closed")
    # A hold draws on what will still be valid at its timeout, so the expiry job never meets
    # points held on an expired bucket.
    horizon = request.hold_until or now
    wallet_buckets = (
        buckets(session, request.resident_id, point_type.id) if wallet is not None else []
    )
    draws = draw(wallet_buckets, request.amount, at=horizon)
    if draws is None:
        available = available_at(wallet_buckets, horizon)
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


def post_hold(
    session: Session,
    hold_id: int,
    now: datetime,
    *,
    amount: int | None = None,
    kind: str = "payment_post",
    description: str = "",
    metadata: Mapping[str, Any] | None = None,
    namespace: str | None = None,
    idempotency_key: str | None = None,
) -> Entry:
    """Post a spend's hold: in full, or ``amount`` of it drawn from its earliest-expiring buckets
    (so what is released goes back to the latest-expiring, as returns do). The entry's kind is
    ``payment_post`` unless the caller names another."""
    tx = LedgerTx(session.connection(), lambda: now)
    hold = tx.get_entry(hold_id)
    if hold.phase is not Phase.PENDING:
        raise HoldNotPending(f"entry {hold_id} is not a hold", entry_id=hold_id)
    if amount is None:
        return tx.post_pending(
            hold_id,
            kind=kind,
            description=description,
            metadata=metadata,
            namespace=namespace,
            idempotency_key=idempotency_key,
        )
    held = sum(p.amount for p in hold.postings if p.side is Side.CREDIT)
    if type(amount) is not int or not 0 < amount <= held:
        raise InvalidInput(f"the amount to post is 1 to {held}", field="amount")
    keys = bucket_keys(session, [p.account_id for p in hold.postings])
    receiving = [p for p in hold.postings if p.account_id not in keys]
    if len(receiving) != 1 or receiving[0].side is not Side.CREDIT:
        raise InvalidInput(f"entry {hold_id} is not a hold on a wallet")
    shares = [
        Share(p.account_id, keys[p.account_id][1], keys[p.account_id][0], p.amount)
        for p in hold.postings
        if p.account_id in keys
    ]
    # The hold drew only on buckets valid at its timeout, so drawing on its shares as at that
    # instant always covers the amount; a post after the timeout is the ledger's to refuse.
    draws = draw(shares, amount, at=hold.timeout_at or now)
    assert draws is not None
    taken = dict(draws)
    amounts = [
        taken.get(p.account_id, 0) if p.account_id in keys else amount for p in hold.postings
    ]
    return tx.post_pending(
        hold_id,
        amounts=amounts,
        kind=kind,
        description=description,
        metadata=metadata,
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
    metadata: Mapping[str, Any] | None = None,
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
    expiry = bucket_keys(session, [p.account_id for p in original.postings])
    drawn = [p for p in original.postings if p.account_id in expiry and p.side is Side.DEBIT]
    paid = [p for p in original.postings if p.account_id not in expiry and p.side is Side.CREDIT]
    if not drawn or len(paid) != 1:
        raise InvalidInput(f"entry {spend_entry_id} is not a spend from a wallet")
    resident_id = _owner_of(session, drawn[0].account_id)
    wallet = lock_wallet(session, point_type, resident_id)
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
    given = [
        Share(p.account_id, expiry[p.account_id][1], expiry[p.account_id][0], p.amount)
        for p in drawn
    ]
    # The limit above counts the refunds' amounts, this what they list per bucket: they agree.
    returns = return_latest_first(given, returned, amount)
    assert returns is not None
    to_buckets: dict[int, int] = {}
    to_expired = 0
    for account_id, points in returns:
        if (
            open_wallet_
            and account_id not in closed_accounts
            and usable_at(expiry[account_id][0], now)
        ):
            to_buckets[account_id] = to_buckets.get(account_id, 0) + points
        else:
            to_expired += points
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
            metadata={
                **(metadata or {}),
                "refund_of": spend_entry_id,
                "buckets": [list(r) for r in returns],
            },
            namespace=namespace,
            idempotency_key=idempotency_key,
        )
    )
    session.add(SpendReturn(entry_id=entry.id, spend_entry_id=spend_entry_id, amount=amount))
    session.flush()
    return entry


def _owner_of(session: Session, account_id: int) -> str:
    bucket = session.get(WalletBucket, account_id)
    assert bucket is not None
    return bucket.resident_id


# The draw and return orders: pure, the only place they are written -------------------------


class Drawable(Protocol):
    """A bucket as a draw sees it: its place in the order and the points it can give."""

    @property
    def account_id(self) -> int: ...

    @property
    def program_id(self) -> str: ...

    @property
    def valid_until(self) -> date: ...

    @property
    def available(self) -> int: ...

    def usable_at(self, instant: datetime) -> bool: ...


@dataclass(frozen=True, slots=True)
class Share:
    """The points one entry moved on one bucket: what a hold keeps there (a partial post draws
    on these) or what a posted spend took (a refund returns to these)."""

    account_id: int
    program_id: str
    valid_until: date
    amount: int

    @property
    def available(self) -> int:
        return self.amount

    def usable_at(self, instant: datetime) -> bool:
        return usable_at(self.valid_until, instant)


def draw_order(bucket: Drawable) -> tuple[date, str, int]:
    """The spending order: earliest expiry first, ties by program id, then account id."""
    return (bucket.valid_until, bucket.program_id, bucket.account_id)


def available_at(candidates: Iterable[Drawable], instant: datetime) -> int:
    """The points a draw at ``instant`` could take from ``candidates`` in all."""
    return sum(b.available for b in candidates if b.usable_at(instant) and b.available > 0)


def draw(
    candidates: Iterable[Drawable], amount: int, *, at: datetime
) -> list[tuple[int, int]] | None:
    """(account id, points) taking ``amount`` from the ``candidates`` usable at ``at`` (a payment:
    now; a hold: its timeout) in the spending order (``draw_order``), each no more than it has
    available; ``None`` when they have less than ``amount`` between them."""
    assert amount > 0
    draws: list[tuple[int, int]] = []
    left = amount
    for bucket in sorted((b for b in candidates if b.usable_at(at)), key=draw_order):
        if left == 0:
            break
        take = min(bucket.available, left)
        if take > 0:
            draws.append((bucket.account_id, take))
            left -= take
    return None if left else draws


def return_latest_first(
    given: Iterable[Share], returned: Mapping[int, int], amount: int
) -> list[tuple[int, int]] | None:
    """(account id, points) giving ``amount`` back to the buckets a spend took ``given`` from,
    latest expiry first (the spending order reversed), none more than it gave less what earlier
    returns gave it back (``returned``: account id to points); ``None`` when that room is less
    than ``amount`` in all."""
    assert amount > 0
    returns: list[tuple[int, int]] = []
    left = amount
    for share in sorted(given, key=draw_order, reverse=True):
        if left == 0:
            break
        take = min(share.amount - returned.get(share.account_id, 0), left)
        if take > 0:
            returns.append((share.account_id, take))
            left -= take
    return None if left else returns
