"""``points ledger demo``: the chart of accounts at work on a few entries.

Safe to run again: the ledger, accounts and entries are found by their codes, owner references
and idempotency keys, so a second run posts nothing new and prints the same balances.
"""

from __future__ import annotations

from collections.abc import Callable

from ledger import Account, Ledger, LedgerTx, NewEntry, Posting, Side
from ledger.errors import InsufficientFunds, LedgerNotFound
from points.accounts import ACCOUNT_RULES, AccountCode

NAMESPACE = "demo"


def run_demo(ledger: Ledger, *, echo: Callable[[str], None] = print) -> None:
    accounts = ledger.transaction(_accounts)
    city, health, volunteering, bucket_health, bucket_volunteering, merchant = (
        accounts["city"],
        accounts["budget:health-checkup:FY2026"],
        accounts["budget:volunteering:FY2026"],
        accounts["bucket:R-0001:health-checkup:2027-11-30"],
        accounts["bucket:R-0001:volunteering:2027-12-31"],
        accounts["payable:M-0001"],
    )

    def entry(key: str, kind: str, description: str, *lines: tuple[Account, Side, int]) -> None:
        ledger.post(
            NewEntry(
                [Posting(account.id, side, amount) for account, side, amount in lines],
                kind=kind,
                description=description,
                namespace=NAMESPACE,
                idempotency_key=key,
            )
        )

    debit, credit = Side.DEBIT, Side.CREDIT
    entry(
        "alloc-health",
        "allocation",
        "FY2026 budget: health checkup",
        (city, debit, 100_000),
        (health, credit, 100_000),
    )
    entry(
        "alloc-volunteering",
        "allocation",
        "FY2026 budget: volunteering",
        (city, debit, 50_000),
        (volunteering, credit, 50_000),
    )
    entry(
        "award-health",
        "award",
        "health checkup attended",
        (health, debit, 500),
        (bucket_health, credit, 500),
    )
    entry(
        "award-volunteering",
        "award",
        "river clean-up",
        (volunteering, debit, 300),
        (bucket_volunteering, credit, 300),
    )
    entry(
        "spend-1",
        "payment",
        "paid at a local shop (earliest expiry first)",
        (bucket_health, debit, 500),
        (bucket_volunteering, debit, 100),
        (merchant, credit, 600),
    )
    try:
        entry(
            "spend-2",
            "payment",
            "more than the wallet holds",
            (bucket_volunteering, debit, 1_000),
            (merchant, credit, 1_000),
        )
    except InsufficientFunds as refused:
        echo(f"refused as it should be: {refused.message}")

    sealed = ledger.seal()
    report = ledger.verify(unsealed_grace_seconds=0)
    echo("")
    echo(f"{'account':45} {'debits':>10} {'credits':>10} {'balance':>10}")
    for name, account in accounts.items():
        balance = ledger.balance(account.id)
        echo(
            f"{name:45} {balance.debits_posted:>10,} {balance.credits_posted:>10,} "
            f"{balance.posted:>10,}"
        )
    echo("")
    echo(
        f"sealed {sealed} new entries; verify: "
        f"{'no problems' if report.ok else report.problems[0].message}"
    )


def _accounts(tx: LedgerTx) -> dict[str, Account]:
    try:
        point_ledger = tx.get_ledger("ledger-demo")
    except LedgerNotFound:
        point_ledger = tx.create_ledger("ledger-demo", "Chart of accounts demo")
    wanted = {
        "city": AccountCode.CITY_FUNDING,
        "budget:health-checkup:FY2026": AccountCode.PROGRAM_BUDGET,
        "budget:volunteering:FY2026": AccountCode.PROGRAM_BUDGET,
        "bucket:R-0001:health-checkup:2027-11-30": AccountCode.RESIDENT_BUCKET,
        "bucket:R-0001:volunteering:2027-12-31": AccountCode.RESIDENT_BUCKET,
        "payable:M-0001": AccountCode.MERCHANT_PAYABLE,
    }
    found: dict[str, Account] = {}
    for owner_ref, code in wanted.items():
        existing = tx.find_accounts(point_ledger.id, owner_ref=owner_ref)
        if existing:
            found[owner_ref] = existing[0]
            continue
        normal_side, flags = ACCOUNT_RULES[code]
        found[owner_ref] = tx.create_account(
            ledger_id=point_ledger.id,
            code=int(code),
            normal_side=normal_side,
            owner_ref=owner_ref,
            flags=flags,
        )
    return found
