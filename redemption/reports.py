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


def payments_by_merchant(session: Session, start: date, end: date) -> Report:
    posting, entry = ledger_schema.posting, ledger_schema.entry
    payables = {p.account_id: p for p in session.exec(select(MerchantPayable)).all()}
    merchants = {m.id: m for m in session.exec(select(Merchant)).all()}
    types = {t.id: t.code for t in session.exec(select(PointType)).all()}
    query = (
        sa.select(
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
        .group_by(posting.c.account_id, posting.c.side)
    )
    sums: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    for account_id, side, count, amount in session.connection().execute(query):
        payable = payables[int(account_id)]
        merchant = merchants.get(payable.merchant_id)
        key = (
            merchant.category if merchant else "",
            payable.merchant_id,
            types.get(payable.point_type_id, payable.point_type_id),
        )
        if side == 2:
            sums[key][0] += int(count)
            sums[key][1] += int(amount)
        else:
            sums[key][2] += int(amount)
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
