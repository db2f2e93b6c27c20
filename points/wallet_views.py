"""What a resident sees of a wallet: the balance by expiry date and the history (DESIGN §4, §10).

Read models only; nothing here writes. ``wallet_view`` counts what can be spent now (unexpired
buckets, less what holds keep) by expiry date, with the nearest expiry inside the notice window
("N pt expire on D"). ``wallet_history`` lists the entries that touched the wallet, newest first,
with the net change to the wallet and words for the resident in Japanese and English.
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


#: Readable words for the kinds of entry a resident sees: (Japanese, English).
KIND_WORDS: dict[str, tuple[str, str]] = {
    "award": ("付与", "awarded"),
    "payment": ("支払い", "payment"),
    "payment_post": ("支払い", "payment"),
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
