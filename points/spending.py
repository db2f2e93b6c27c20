"""The spending service: taking points from a wallet, holds, and refunds (DESIGN §4).

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

Every path that moves points locks the wallet's row first (``points.wallets.lock_wallet``) and
then checks its idempotency key, so a retry that waited for the first attempt returns its entry.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlmodel import Session, select

from ledger import Entry, LedgerTx, NewEntry, Phase, Posting, Side
from ledger.errors import HoldNotPending, IdempotencyConflict
from points.calendar import usable_at
from points.errors import InvalidInput
from points.pointtypes import PointType
from points.wallets import (
    BUCKETS_PER_SPEND_MAX,
    Bucket,
    InsufficientPoints,
    SpendReturn,
    WalletBucket,
    WalletClosed,
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
        for account_id, (valid_until, _program) in bucket_keys(
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


def _owner_of(session: Session, account_id: int) -> str:
    bucket = session.get(WalletBucket, account_id)
    assert bucket is not None
    return bucket.resident_id
