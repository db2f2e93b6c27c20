"""What a resident sees of a wallet: the balance by expiry date and the history (DESIGN §4, §10).

Read models only; nothing here writes. ``wallet_view`` counts what can be spent now (unexpired
buckets, less what holds keep) by expiry date, with the nearest expiry inside the notice window
("N pt expire on D").

``wallet_history`` lists the entries that touched the wallet, newest first, each with the net
change to the wallet, a state (``LineState``: posted, pending, voided) and words in Japanese and
English after the glossary (DESIGN §10). Each payment is one line and no points are shown twice:
a hold that was posted is left out, the entry that posted it being the payment; a hold voided
(by the merchant, or by the timeout job) stays, marked voided. Stored entries keep the kinds they
were written with (the ledger seals them); a former kind is read as today's (``FORMER_KINDS``).
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import sqlalchemy as sa
from sqlmodel import Session

from ledger import Phase, Side
from ledger import schema as ledger_schema
from ledger.model import from_us
from points.calendar import NEVER, tokyo_date
from points.pointtypes import PointType
from points.wallets import Wallet, WalletBucket, WalletStatus, buckets


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


# The history -----------------------------------------------------------------------------------

#: The words a resident sees for each kind of entry, (Japanese, English), after DESIGN §10.
KIND_WORDS: dict[str, tuple[str, str]] = {
    "award": ("付与", "awarded"),
    "payment": ("支払い", "payment"),
    "payment_post": ("支払い", "payment"),
    "refund": ("返還", "refund"),
    "reversal": ("訂正", "reversed"),
    "expiry": ("失効", "expired"),
    "wallet_closed": ("ウォレット閉鎖", "wallet closed"),
}

#: Kinds entries were once stored with, and the kind each is read as now. A stored entry is never
#: rewritten: its kind is part of the bytes the ledger's hash chain seals.
FORMER_KINDS: dict[str, str] = {"payment_capture": "payment_post"}

#: What the words of a voided hold end with, by the kind of the entry that voided it: the timeout
#: job's ``hold_timeout``, or anything else (the ledger's ``void_pending``, a merchant declining).
VOIDED_WORDS: dict[str, tuple[str, str]] = {
    "hold_timeout": ("取消（時間切れ）", " voided (timed out)")
}
VOIDED_WORDS_OTHERWISE = ("取消", " voided")


class LineState(enum.StrEnum):
    """What a line of the history stands for: ``posted``, the entry moved points; ``pending``, a
    hold awaiting the merchant's confirmation (its points cannot be spent meanwhile);
    ``voided``, a hold released in full, declined or timed out (its amount counts no longer).
    A hold that was posted is not a line of its own: the entry posting it is the payment."""

    POSTED = "posted"
    PENDING = "pending"
    VOIDED = "voided"


@dataclass(frozen=True, slots=True)
class HistoryItem:
    entry_id: int
    #: The entry's kind, a former kind read as today's (``FORMER_KINDS``).
    kind: str
    #: The net change to the wallet: positive when points came in. A pending or voided hold's
    #: is what it keeps or kept.
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
    """Entries touching the wallet, newest first, ``limit`` of them before entry ``before``; a
    posted hold is left out (its posting entry is the payment's line), so each payment is one
    line and no points are shown twice."""
    posting, entry = ledger_schema.posting, ledger_schema.entry
    resolution = entry.alias("resolution")
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
        resolution.c.phase.label("resolution_phase"),
        resolution.c.kind.label("resolution_kind"),
    )
    query = (
        sa.select(*columns, sa.func.sum(signed).label("net"))
        .select_from(posting)
        .join(entry, entry.c.id == posting.c.entry_id)
        # The entry that resolved a hold, if any (at most one: ``pending_id`` is unique).
        .outerjoin(resolution, resolution.c.pending_id == entry.c.id)
        .where(
            posting.c.account_id.in_(
                sa.select(bucket.c.account_id).where(
                    bucket.c.resident_id == resident_id,
                    bucket.c.point_type_id == point_type.id,
                )
            ),
            # Left out here, not after the query, so that ``limit`` and ``before`` page exactly.
            sa.or_(
                resolution.c.phase.is_(None),
                resolution.c.phase != int(Phase.POST_PENDING),
            ),
        )
        .group_by(*columns)
        .order_by(entry.c.id.desc())
        .limit(limit)
    )
    if before is not None:
        query = query.where(entry.c.id < before)
    items = []
    for row in session.connection().execute(query):
        kind = FORMER_KINDS.get(row.kind, row.kind)
        metadata = json.loads(row.metadata) if row.metadata else {}
        ja, en = KIND_WORDS.get(kind, (kind, kind))
        if kind == "award":
            ja = f"{metadata.get('program_ja', '')} {ja}".strip()
            en = f"{metadata.get('program_en', '')}: {en}".strip(": ")
        elif "shop_ja" in metadata:  # a payment, its posting or its refund names the shop
            ja = f"{metadata['shop_ja']} {ja}"
            en = f"{metadata.get('shop_en', '')}: {en}".strip(": ")
        state = LineState.POSTED
        if row.phase == int(Phase.PENDING):
            state = LineState.PENDING if row.resolution_phase is None else LineState.VOIDED
        if state is LineState.VOIDED:
            ja_end, en_end = VOIDED_WORDS.get(row.resolution_kind, VOIDED_WORDS_OTHERWISE)
            ja, en = ja + ja_end, en + en_end
        items.append(
            HistoryItem(
                entry_id=row.id,
                kind=kind,
                amount=int(row.net),
                state=state,
                at=from_us(row.effective_at_us),
                text_ja=ja,
                text_en=en,
            )
        )
    return items
