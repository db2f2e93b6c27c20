"""The point ledger's chart of accounts (DESIGN §3): the ``code`` of each kind of account.

The city's liability for points is the resident buckets plus the merchant payables not yet
settled. Owner references are opaque ids (no personal data in the ledger).
"""

from __future__ import annotations

import enum

from ledger import AccountFlags, Side


class AccountCode(enum.IntEnum):
    CITY_FUNDING = 100
    PROGRAM_BUDGET = 200
    RESIDENT_BUCKET = 300
    MERCHANT_PAYABLE = 400
    EXPIRED_POINTS = 500
    SETTLED = 600
    #: Points set aside from a budget for a bulk upload, paid out row by row.
    BULK_CLEARING = 700


#: Normal side and flags of each kind of account.
ACCOUNT_RULES: dict[AccountCode, tuple[Side, AccountFlags]] = {
    AccountCode.CITY_FUNDING: (Side.DEBIT, AccountFlags.NONE),
    AccountCode.PROGRAM_BUDGET: (Side.CREDIT, AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS),
    AccountCode.RESIDENT_BUCKET: (Side.CREDIT, AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS),
    # A refund after settlement may turn a payable negative; it is netted next period.
    AccountCode.MERCHANT_PAYABLE: (Side.CREDIT, AccountFlags.NONE),
    AccountCode.EXPIRED_POINTS: (Side.CREDIT, AccountFlags.NONE),
    AccountCode.SETTLED: (Side.CREDIT, AccountFlags.NONE),
    AccountCode.BULK_CLEARING: (Side.CREDIT, AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS),
}
