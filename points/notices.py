"""Expiry notices: who has points expiring soon, for the letters residents without a phone get.

The wallet shows its own banner ("N pt expire on D", ``points.wallet_views.wallet_view``). For
residents who use a printed card instead, counter staff and admins download a mail-merge list:
one row per resident with points expiring within N days — the city's resident address number
(宛名番号, which the city's own systems turn into a postal address), the name, how many points
expire and when first. It is the one place where personal fields leave the registry in bulk, so
it is built for staff only, on request, and never logged.

CSV for Excel in Japan: UTF-8 with a byte order mark (Excel then reads it as UTF-8), or CP932
(Shift_JIS as Windows writes it) on request; a character CP932 cannot hold becomes 〓 (the
customary placeholder), so a rare kanji in a name never makes the file fail. A name or address
number that a spreadsheet would run as a formula is written as text (``points.spreadsheet``).

**The card's last four digits** (issue 19): a resident who pays with a printed card reads on
the letter which card it is about (``card_last4``, the last column, so that mail-merge
templates of the earlier columns keep working; empty when the resident has no active card).
Cards live in ``redemption``, which the domain of points may not import (DESIGN §2,
``lint-imports``), and reading the ``card`` table here by name would hide that dependency
from the contracts. So the caller that may see both (the API) passes the lookup in
(``CardDigits``: ``redemption.cards.active_last4``), as ``points.qrtokens.verify`` takes its
revocation lookups; without one the column is empty.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import sqlalchemy as sa
from sqlmodel import Session

from ledger import schema as ledger_schema
from points.calendar import tokyo_date
from points.pointtypes import PointType
from points.registry import Resident, ResidentStatus
from points.spreadsheet import csv_text
from points.wallets import Wallet, WalletBucket, WalletStatus

ENCODINGS = ("utf-8", "cp932")
HEADER = (
    "resident_id",
    "address_number",
    "name",
    "point_type",
    "expiring_points",
    "first_expiry_date",
    "balance",
    "card_last4",
)
#: Resident ids to the last four digits of each one's active card (residents without one are
#: left out): ``redemption.cards.active_last4``.
CardDigits = Callable[[Session, Sequence[str]], Mapping[str, str]]


@dataclass(frozen=True, slots=True)
class Notice:
    resident_id: str
    address_number: str | None
    name: str | None
    point_type: str
    expiring_points: int
    first_expiry_date: date
    #: Everything the resident can still spend (expiring or not).
    balance: int
    #: The last four digits of the resident's active card ("": none).
    card_last4: str = ""


def expiring(
    session: Session,
    point_type: PointType,
    now: datetime,
    within_days: int,
    *,
    resident_id: str | None = None,
    card_digits: CardDigits | None = None,
) -> list[Notice]:
    """Residents of active, open wallets with points expiring within ``within_days`` (only
    ``resident_id``, when given: the notice the counter prints for the resident in front of
    it is this same query, so it says what the letter says), each with the last four digits of
    their active card when ``card_digits`` looks them up."""
    today = tokyo_date(now)
    horizon = today + timedelta(days=within_days)
    bucket = WalletBucket.__table__  # type: ignore[attr-defined]
    account = ledger_schema.account
    wallet = Wallet.__table__  # type: ignore[attr-defined]
    resident = Resident.__table__  # type: ignore[attr-defined]
    available = account.c.credits_posted - account.c.debits_posted - account.c.debits_pending
    soon = sa.and_(bucket.c.valid_until <= horizon, available > 0)
    expiring_points = sa.func.sum(sa.case((soon, available), else_=0))
    first = sa.func.min(sa.case((soon, bucket.c.valid_until), else_=None)).label("first_expiry")
    rows = session.connection().execute(
        sa.select(
            resident.c.id,
            resident.c.address_number,
            resident.c.name,
            expiring_points.label("expiring"),
            first,
            sa.func.sum(sa.case((available > 0, available), else_=0)).label("balance"),
        )
        .select_from(bucket)
        .join(account, account.c.id == bucket.c.account_id)
        .join(
            wallet,
            sa.and_(
                wallet.c.resident_id == bucket.c.resident_id,
                wallet.c.point_type_id == bucket.c.point_type_id,
            ),
        )
        .join(resident, resident.c.id == bucket.c.resident_id)
        .where(
            bucket.c.point_type_id == point_type.id,
            bucket.c.valid_until >= today,
            wallet.c.status == WalletStatus.OPEN,
            resident.c.status == ResidentStatus.ACTIVE,
            account.c.closed.is_(False),
            *([bucket.c.resident_id == resident_id] if resident_id is not None else []),
        )
        .group_by(resident.c.id, resident.c.address_number, resident.c.name)
        .having(expiring_points > 0)
        .order_by(first, resident.c.id)
    )
    found = list(rows)
    digits = card_digits(session, [row.id for row in found]) if card_digits is not None else {}
    return [
        Notice(
            resident_id=row.id,
            address_number=row.address_number,
            name=row.name,
            point_type=point_type.code,
            expiring_points=int(row.expiring),
            first_expiry_date=_as_date(row.first_expiry),
            balance=int(row.balance),
            card_last4=digits.get(row.id, ""),
        )
        for row in found
    ]


def _as_date(value: object) -> date:
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value))  # SQLite returns MIN() of dates as text


def to_csv(notices: list[Notice], encoding: str = "utf-8") -> bytes:
    """The list as CSV bytes: UTF-8 with a BOM, or CP932 (〓 for what it cannot hold)."""
    if encoding not in ENCODINGS:
        raise ValueError(f"encoding is one of {ENCODINGS}")
    text = csv_text(
        HEADER,
        (
            (
                notice.resident_id,
                notice.address_number or "",
                notice.name or "",
                notice.point_type,
                notice.expiring_points,
                notice.first_expiry_date.isoformat(),
                notice.balance,
                notice.card_last4,
            )
            for notice in notices
        ),
    )
    if encoding == "utf-8":
        return b"\xef\xbb\xbf" + text.encode("utf-8")
    return "".join(_cp932(character) for character in text).encode("cp932")


def _cp932(character: str) -> str:
    try:
        character.encode("cp932")
    except UnicodeEncodeError:
        return "〓"
    return character
