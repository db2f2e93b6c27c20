"""``verify`` finds tampering and names the culprit.

Each test builds a small sealed ledger through the API, then tampers with the database by raw
SQL with the append-only triggers out of the way (``ledger_helpers.tamper``), the way someone
with database access could, and checks what ``verify`` reports.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from ledger_helpers import Chart, fund, make_chart, tamper, transfer
from sqlalchemy.engine import Engine

from ledger import Entry, Ledger, Problem, Report
from ledger.schema import EXPECTED_TRIGGERS


@dataclass(frozen=True)
class Book:
    chart: Chart
    funding: Entry
    payment: Entry
    hold: Entry
    resolved: Entry
    refund: Entry


@pytest.fixture
def book(ledger_: Ledger) -> Book:
    """A ledger with some history, sealed and verified."""
    chart = make_chart(ledger_)
    funding = fund(ledger_, chart, 500)
    payment = ledger_.post(transfer(chart.wallet.id, chart.merchant.id, 120, metadata={"q": "x"}))
    hold = ledger_.post(transfer(chart.wallet.id, chart.merchant.id, 50, pending=True))
    resolved = ledger_.post_pending(hold.id, amounts=[30, 30])
    refund = ledger_.reverse(payment.id)
    ledger_.post(transfer(chart.wallet.id, chart.merchant.id, 7, pending=True))
    assert ledger_.seal() == 6
    report = ledger_.verify(unsealed_grace_seconds=0)
    assert report.ok, report.problems
    assert (report.entries, report.accounts, report.sealed, report.unsealed) == (6, 4, 6, 0)
    return Book(chart, funding, payment, hold, resolved, refund)


def problems(report: Report, kind: str) -> list[Problem]:
    return [problem for problem in report.problems if problem.kind == kind]


def assert_clean(ledger_: Ledger) -> None:
    report = ledger_.verify()
    assert report.ok, report.problems


def test_verify_passes_when_sealed_and_reports_unsealed_entries_past_the_grace(
    ledger_: Ledger, book: Book, clock: Any
) -> None:
    report = ledger_.verify()
    assert report.ok
    assert report.problems == []

    late = [
        ledger_.post(transfer(book.chart.source.id, book.chart.wallet.id, amount))
        for amount in (1, 2, 3)
    ]
    clock.advance(seconds=10)
    report = ledger_.verify(unsealed_grace_seconds=10)
    assert report.ok, report.problems  # exactly at the grace period: not yet late
    assert report.unsealed == 3
    clock.advance(microseconds=1)
    report = ledger_.verify(unsealed_grace_seconds=10)
    assert [(p.kind, p.entry_id) for p in report.problems] == [("unsealed", late[0].id)]
    assert "and 2 more" in report.problems[0].message
    assert ledger_.seal() == 3
    clock.advance(days=1)
    report = ledger_.verify(unsealed_grace_seconds=10)
    assert report.ok, report.problems
    assert (report.sealed, report.unsealed) == (9, 0)


def test_altered_totals_name_the_account(ledger_: Ledger, engine: Engine, book: Book) -> None:
    merchant, wallet = book.chart.merchant.id, book.chart.wallet.id
    tamper(
        engine,
        f"UPDATE ledger_account SET credits_posted = credits_posted + 5 WHERE id = {merchant}",
    )
    report = ledger_.verify()
    assert not report.ok
    assert [(p.kind, p.account_id) for p in report.problems] == [("account", merchant)]
    assert report.problems[0].message == (
        f"account {merchant}: credits_posted is {120 + 30 + 5}, postings say {120 + 30}"
    )
    tamper(
        engine,
        f"UPDATE ledger_account SET credits_posted = credits_posted - 5 WHERE id = {merchant}",
    )
    assert_clean(ledger_)

    tamper(engine, f"UPDATE ledger_account SET debits_pending = 0 WHERE id = {wallet}")
    report = ledger_.verify()
    assert [(p.kind, p.account_id) for p in report.problems] == [("account", wallet)]
    assert "debits_pending is 0, postings say 7" in report.problems[0].message


def test_altered_postings_name_the_entry(ledger_: Ledger, engine: Engine, book: Book) -> None:
    payment, wallet, merchant = book.payment.id, book.chart.wallet.id, book.chart.merchant.id

    # Both postings of the payment changed alike: the entry still balances, but the totals it
    # touched and its seal no longer match.
    tamper(engine, f"UPDATE ledger_posting SET amount = 100 WHERE entry_id = {payment}")
    report = ledger_.verify()
    assert not report.ok
    assert problems(report, "entry") == []
    seal_problems = problems(report, "seal")
    assert [(p.entry_id, p.sequence) for p in seal_problems] == [(payment, 2)]
    assert f"entry {payment} does not match its seal" in seal_problems[0].message
    assert {p.account_id for p in problems(report, "account")} == {wallet, merchant}
    tamper(engine, f"UPDATE ledger_posting SET amount = 120 WHERE entry_id = {payment}")
    assert_clean(ledger_)

    # One posting changed: the entry no longer balances.
    tamper(
        engine,
        f"UPDATE ledger_posting SET amount = 119 WHERE entry_id = {payment} "
        f"AND account_id = {wallet}",
    )
    report = ledger_.verify()
    entry_problems = problems(report, "entry")
    assert [p.entry_id for p in entry_problems] == [payment]
    assert f"entry {payment} is unbalanced" in entry_problems[0].message
    assert [p.entry_id for p in problems(report, "seal")] == [payment]
    assert [p.account_id for p in problems(report, "account")] == [wallet]
    tamper(engine, f"UPDATE ledger_posting SET amount = 120 WHERE entry_id = {payment}")
    assert_clean(ledger_)

    # A posting deleted from a resolution.
    resolved = book.resolved.id
    tamper(
        engine,
        f"DELETE FROM ledger_posting WHERE entry_id = {resolved} AND account_id = {merchant}",
    )
    report = ledger_.verify()
    assert [p.entry_id for p in problems(report, "entry")] == [resolved]
    assert [p.entry_id for p in problems(report, "seal")] == [resolved]
    assert [p.account_id for p in problems(report, "account")] == [merchant]


def test_altered_entry_is_caught_by_its_seal(ledger_: Ledger, engine: Engine, book: Book) -> None:
    refund = book.refund.id
    tamper(engine, f"UPDATE ledger_entry SET description = 'nothing to see' WHERE id = {refund}")
    report = ledger_.verify()
    assert [(p.kind, p.entry_id, p.sequence) for p in report.problems] == [("seal", refund, 5)]
    tamper(engine, f"UPDATE ledger_entry SET description = '' WHERE id = {refund}")
    assert_clean(ledger_)

    tamper(
        engine, f"UPDATE ledger_entry SET effective_at_us = effective_at_us - 1 WHERE id = {refund}"
    )
    report = ledger_.verify()
    assert [(p.kind, p.entry_id, p.sequence) for p in report.problems] == [("seal", refund, 5)]


def test_altered_seals_name_the_seal(ledger_: Ledger, engine: Engine, book: Book) -> None:
    with engine.connect() as connection:
        original = bytes(
            connection.exec_driver_sql(
                "SELECT hash FROM ledger_seal WHERE sequence = 3"
            ).scalar_one()
        )
    tamper(engine, "UPDATE ledger_seal SET hash = previous_hash WHERE sequence = 3")
    report = ledger_.verify()
    assert not report.ok
    first = report.problems[0]
    assert (first.kind, first.sequence, first.entry_id) == ("seal", 3, book.hold.id)
    assert all(p.kind == "seal" for p in report.problems)
    if engine.dialect.name == "sqlite":
        literal = f"X'{original.hex()}'"
    else:
        literal = f"decode('{original.hex()}', 'hex')"
    tamper(engine, f"UPDATE ledger_seal SET hash = {literal} WHERE sequence = 3")
    assert_clean(ledger_)

    # Dropping the last seal (as if that entry were never sealed) leaves the head past the chain.
    tamper(engine, "DELETE FROM ledger_seal WHERE sequence = 6")
    report = ledger_.verify()
    assert [(p.kind, p.sequence) for p in report.problems] == [("seal", 5)]
    assert "head" in report.problems[0].message


def test_missing_or_disabled_guards_are_schema_problems(
    backend: str, ledger_: Ledger, engine: Engine, book: Book
) -> None:
    if backend == "sqlite":
        dropped = "ledger_posting_no_update"
        statements = [f"DROP TRIGGER {dropped}"]
        expected = [f"trigger {dropped} is missing"]
    else:
        dropped = "ledger_posting_append_only"
        statements = [
            f"DROP TRIGGER {dropped} ON ledger_posting",
            "ALTER TABLE ledger_entry DISABLE TRIGGER ledger_entry_balanced",
            "ALTER TABLE ledger_account DROP CONSTRAINT ck_ledger_account_debits_within_credits",
        ]
        expected = [
            f"trigger {dropped} is missing",
            "trigger ledger_entry_balanced is disabled",
            "CHECK constraint ck_ledger_account_debits_within_credits is missing",
        ]
    assert dropped in EXPECTED_TRIGGERS[backend]
    with engine.connect() as connection:
        for statement in statements:
            connection.exec_driver_sql(statement)
        connection.commit()
    report = ledger_.verify()
    assert [(p.kind, p.message) for p in report.problems] == [
        ("schema", message) for message in expected
    ]
