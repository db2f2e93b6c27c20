"""Payments by merchant and category (docs/reports.md), read from the merchant payables.

A payment credits the merchant's payable, a refund debits it; settlement and its recovery move
the payable's balance and are not payments. So, for entries posted (phase 0 or 2) and recorded
from ``start`` to ``end`` (Tokyo dates, inclusive): ``paid`` is the credits to each payable,
``refunded`` the debits, ``net`` the difference, ``payments`` the number of entries crediting it.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta

import sqlalchemy as sa
from sqlmodel import Session, select

from ledger import schema as ledger_schema
from points.pointtypes import PointType
from points.registry import Merchant
from points.reports import POSTED_PHASES, Report, cutoff_us
from redemption import settlement
from redemption.merchants import MerchantPayable

NOT_PAYMENTS = (settlement.SETTLEMENT_KIND, settlement.RECOVERY_KIND)
_PAYABLE = sa.table("merchant_payable", sa.column("account_id", sa.BigInteger))


def _payable_sums(
    session: Session, start: date, end: date, month_firsts: list[date] | None = None
) -> list[tuple[int, int, int, int, int]]:
    """(month index, payable account, side, entries, points) of the posted payment entries
    recorded from ``start`` to ``end``; the month index is 0 without ``month_firsts``, else the
    index of the Tokyo month (its first day in ``month_firsts``) the entry was recorded in."""
    posting, entry = ledger_schema.posting, ledger_schema.entry
    month: sa.ColumnElement[int] = sa.literal_column("0")
    grouped: list[sa.ColumnElement[object]] = [posting.c.account_id, posting.c.side]
    if month_firsts and len(month_firsts) > 1:  # one month: every entry's index is 0
        month = sa.case(
            *(
                (entry.c.recorded_at_us < cutoff_us(first - timedelta(days=1)), index)
                for index, first in enumerate(month_firsts[1:])
            ),
            else_=len(month_firsts) - 1,
        )
        grouped.insert(0, sa.literal_column("month_index"))
    query = (
        sa.select(
            month.label("month_index"),
            posting.c.account_id,
            posting.c.side,
            sa.func.count(posting.c.id),
            sa.func.sum(posting.c.amount),
        )
        .join(entry, entry.c.id == posting.c.entry_id)
        .join(_PAYABLE, _PAYABLE.c.account_id == posting.c.account_id)
        .where(
            entry.c.phase.in_(POSTED_PHASES),
            entry.c.kind.not_in(NOT_PAYMENTS),
            entry.c.recorded_at_us >= cutoff_us(start - timedelta(days=1)),
            entry.c.recorded_at_us < cutoff_us(end),
        )
        .group_by(*grouped)
    )
    return [
        (int(index), int(account_id), int(side), int(count), int(amount))
        for index, account_id, side, count, amount in session.connection().execute(query)
    ]


def payments_by_merchant(session: Session, start: date, end: date) -> Report:
    payables = {p.account_id: p for p in session.exec(select(MerchantPayable)).all()}
    merchants = {m.id: m for m in session.exec(select(Merchant)).all()}
    types = {t.id: t.code for t in session.exec(select(PointType)).all()}
    sums: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    for _, account_id, side, count, amount in _payable_sums(session, start, end):
        payable = payables[account_id]
        merchant = merchants.get(payable.merchant_id)
        key = (
            merchant.category if merchant else "",
            payable.merchant_id,
            types.get(payable.point_type_id, payable.point_type_id),
        )
        _add(sums[key], side, count, amount)
    rows = [
        (
            category,
            merchant_id,
            merchants[merchant_id].name_ja if merchant_id in merchants else "",
            point_type,
            count,
            paid,
            refunded,
            paid - refunded,
        )
        for (category, merchant_id, point_type), (count, paid, refunded) in sorted(sums.items())
    ]
    return Report(
        "payments-by-merchant",
        (
            "category",
            "merchant_id",
            "merchant_name",
            "point_type",
            "payments",
            "paid",
            "refunded",
            "net",
        ),
        rows,
        {"from": start.isoformat(), "to": end.isoformat()},
    )


def _add(sums: list[int], side: int, count: int, amount: int) -> None:
    """[payments, paid, refunded]: a credit to a payable is a payment, a debit a refund."""
    if side == 2:
        sums[0] += count
        sums[1] += amount
    else:
        sums[2] += amount


def month_firsts(start: date, end: date) -> list[date]:
    """The first day of each month from ``start``'s to ``end``'s."""
    firsts = [start.replace(day=1)]
    while True:
        last = firsts[-1]
        following = date(last.year + last.month // 12, last.month % 12 + 1, 1)
        if following > end:
            return firsts
        firsts.append(following)


def payments_by_month(session: Session, start: date, end: date) -> Report:
    """Payments at all merchants by Tokyo month of recording and point type, for entries
    recorded from ``start`` to ``end``: every month of the range is a row for each point type
    that had a payment in the range (zeros included, for a chart)."""
    payables = {p.account_id: p for p in session.exec(select(MerchantPayable)).all()}
    types = {t.id: t.code for t in session.exec(select(PointType)).all()}
    firsts = month_firsts(start, end)
    sums: dict[tuple[int, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    for index, account_id, side, count, amount in _payable_sums(session, start, end, firsts):
        point_type_id = payables[account_id].point_type_id
        _add(sums[(index, types.get(point_type_id, point_type_id))], side, count, amount)
    rows: list[tuple[str, str, int, int, int, int]] = []
    for index, first in enumerate(firsts):
        for point_type in sorted({point_type for _, point_type in sums}):
            payments, paid, refunded = sums.get((index, point_type), [0, 0, 0])
            month = first.strftime("%Y-%m")
            rows.append((month, point_type, payments, paid, refunded, paid - refunded))
    return Report(
        "payments-by-month",
        ("month", "point_type", "payments", "paid", "refunded", "net"),
        rows,
        {"from": start.isoformat(), "to": end.isoformat()},
    )
