"""The ledger's API as a user of a money ledger sees it: typed refusals that write nothing,
idempotency, batches, balances, history, holds and reversals."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from ledger_helpers import (
    MAX,
    Chart,
    all_totals,
    count,
    fund,
    make_chart,
    row_counts,
    seal_and_verify,
    snapshot,
    totals,
    transfer,
)
from sqlalchemy.engine import Engine

from ledger import AccountFlags, BatchMode, Ledger, NewEntry, Phase, Posting, Side, errors


@pytest.fixture
def chart(ledger_: Ledger) -> Chart:
    chart = make_chart(ledger_)
    fund(ledger_, chart, 100)
    return chart


def assert_nothing_written(engine: Engine, before: Any) -> None:
    assert snapshot(engine) == before


# Bad requests: a typed error and nothing written ---------------------------------------------


def test_malformed_entries_are_refused_and_write_nothing(
    ledger_: Ledger, engine: Engine, chart: Chart
) -> None:
    # Amounts are integers in 1 .. 2**63-1, and so is the total of an entry.
    before = snapshot(engine)
    for amount in (0, -5, 10.0, True, MAX + 1, "10", None):
        with pytest.raises(errors.InvalidAmount):
            ledger_.post(transfer(chart.source.id, chart.wallet.id, amount))
        with pytest.raises(errors.InvalidAmount):
            ledger_.post(
                NewEntry(
                    [
                        Posting(chart.source.id, Side.DEBIT, 10),
                        Posting(chart.wallet.id, Side.CREDIT, amount),
                        Posting(chart.merchant.id, Side.CREDIT, 10),
                    ]
                )
            )
    half = 2**62
    with pytest.raises(errors.InvalidAmount):
        ledger_.post(
            NewEntry(
                [
                    Posting(chart.source.id, Side.DEBIT, half),
                    Posting(chart.source.id, Side.DEBIT, half),
                    Posting(chart.merchant.id, Side.CREDIT, half),
                    Posting(chart.merchant.id, Side.CREDIT, half),
                ]
            )
        )
    assert_nothing_written(engine, before)

    # Debits equal credits.
    before = snapshot(engine)
    with pytest.raises(errors.UnbalancedEntry) as raised:
        ledger_.post(
            NewEntry(
                [
                    Posting(chart.source.id, Side.DEBIT, 10),
                    Posting(chart.wallet.id, Side.CREDIT, 9),
                ]
            )
        )
    assert (raised.value.debits, raised.value.credits) == (10, 9)
    with pytest.raises(errors.UnbalancedEntry):
        ledger_.post(
            NewEntry(
                [Posting(chart.source.id, Side.DEBIT, 10), Posting(chart.wallet.id, Side.DEBIT, 10)]
            )
        )
    assert_nothing_written(engine, before)

    # Metadata is at most 4,096 bytes of canonical JSON, without floats.
    before = snapshot(engine)
    for metadata in (
        {"note": "x" * 4100},
        {"note": "ポ" * 1400},  # 4,200 bytes of UTF-8 in 1,400 characters
        {"rate": 1.5},
        {"nested": [{"price": 0.1}]},
    ):
        with pytest.raises(errors.InvalidMetadata):
            ledger_.post(transfer(chart.source.id, chart.wallet.id, 10, metadata=metadata))
    assert_nothing_written(engine, before)
    # {"note":"..."} is 11 bytes around the text: 4,096 bytes in all.
    metadata = {"note": "x" * (4096 - 11)}
    entry = ledger_.post(transfer(chart.source.id, chart.wallet.id, 10, metadata=metadata))
    assert ledger_.get_entry(entry.id).metadata == metadata


def test_text_that_is_not_utf8_encodable_is_a_typed_error(
    ledger_: Ledger, engine: Engine, chart: Chart
) -> None:
    before = snapshot(engine)
    outcomes = {}
    for name, options in {
        "metadata": {"metadata": {"note": "\ud800"}},
        "description": {"description": "refund \ud800"},
        "kind": {"kind": "award\udfff"},
        "idempotency_key": {"namespace": "shop", "idempotency_key": "k\ud800"},
    }.items():
        try:
            ledger_.post(transfer(chart.source.id, chart.wallet.id, 10, **options))
        except errors.InvalidRequest as error:
            outcomes[name] = "InvalidRequest"
            assert isinstance(error, errors.InvalidMetadata | errors.InvalidField)
        except Exception as error:
            outcomes[name] = type(error).__name__
        else:
            outcomes[name] = "accepted"
    assert_nothing_written(engine, before)
    assert outcomes == dict.fromkeys(outcomes, "InvalidRequest")


def test_entries_naming_unusable_accounts_are_refused(
    ledger_: Ledger, engine: Engine, chart: Chart
) -> None:
    # An account that does not exist.
    before = snapshot(engine)
    with pytest.raises(errors.AccountNotFound) as raised:
        ledger_.post(transfer(chart.source.id, 987_654, 10))
    assert raised.value.account_id == 987_654
    assert_nothing_written(engine, before)
    with pytest.raises(errors.AccountNotFound):
        ledger_.balance(987_654)

    # Accounts of two ledgers in one entry.
    other = make_chart(ledger_, "yen")
    before = snapshot(engine)
    with pytest.raises(errors.MixedLedgers) as raised:
        ledger_.post(transfer(chart.source.id, other.merchant.id, 10))
    assert raised.value.context["ledger_ids"] == sorted([chart.ledger_id, other.ledger_id])
    assert_nothing_written(engine, before)

    # A closed account.
    closed = ledger_.close_account(chart.merchant.id)
    assert closed.closed
    before = snapshot(engine)
    with pytest.raises(errors.AccountClosed) as raised:
        ledger_.post(transfer(chart.wallet.id, chart.merchant.id, 10))
    assert raised.value.account_id == chart.merchant.id
    with pytest.raises(errors.AccountClosed):
        ledger_.post(transfer(chart.merchant.id, chart.wallet.id, 10, pending=True))
    assert_nothing_written(engine, before)
    assert ledger_.balance(chart.wallet.id).available == 100


def test_total_overflow_is_refused(ledger_: Ledger, engine: Engine, chart: Chart) -> None:
    extra = ledger_.create_account(ledger_id=chart.ledger_id, code=100, normal_side=Side.DEBIT)
    ledger_.post(transfer(chart.source.id, chart.merchant.id, MAX - 100))
    assert totals(ledger_, chart.source.id) == (MAX, 0, 0, 0)
    before = snapshot(engine)
    with pytest.raises(errors.TotalOverflow) as raised:
        ledger_.post(transfer(chart.source.id, extra.id, 1))
    assert raised.value.context["account_id"] == chart.source.id
    with pytest.raises(errors.TotalOverflow) as raised:
        ledger_.post(transfer(chart.source.id, extra.id, 1, pending=True))
    assert raised.value.context["account_id"] == chart.source.id
    with pytest.raises(errors.TotalOverflow) as raised:
        ledger_.post(transfer(extra.id, chart.merchant.id, 101))
    assert raised.value.context["account_id"] == chart.merchant.id
    assert_nothing_written(engine, before)
    # Up to the limit itself is fine.
    ledger_.post(transfer(extra.id, chart.merchant.id, 100))
    assert totals(ledger_, chart.merchant.id) == (0, MAX, 0, 0)
    seal_and_verify(ledger_)


# Idempotency ----------------------------------------------------------------------------------


def keyed(chart: Chart, amount: int = 10, **options: Any) -> NewEntry:
    options.setdefault("idempotency_key", "award-1")
    return transfer(
        chart.source.id,
        chart.wallet.id,
        amount,
        kind="award",
        metadata={"program": "volunteering"},
        namespace="awards",
        **options,
    )


def test_repeat_returns_the_original_and_different_content_conflicts(
    ledger_: Ledger, engine: Engine, chart: Chart
) -> None:
    # The same key and content: the original entry, and nothing posted.
    original = ledger_.post(keyed(chart))
    before = snapshot(engine)
    again = ledger_.post(keyed(chart))
    assert again == original
    assert_nothing_written(engine, before)
    assert ledger_.balance(chart.wallet.id).posted == 110
    assert ledger_.find_entry("awards", "award-1") == original

    # The same key with different content: a conflict naming the original.
    for changed in (
        keyed(chart, 11),
        transfer(
            chart.source.id,
            chart.merchant.id,
            10,
            kind="award",
            metadata={"program": "volunteering"},
            namespace="awards",
            idempotency_key="award-1",
        ),
        keyed(chart, description="a different description"),
        keyed(chart, pending=True),
    ):
        with pytest.raises(errors.IdempotencyConflict) as raised:
            ledger_.post(changed)
        assert raised.value.entry_id == original.id
    assert_nothing_written(engine, before)
    # The same key in another namespace is another request.
    other = ledger_.post(
        transfer(chart.source.id, chart.wallet.id, 10, namespace="shop", idempotency_key="award-1")
    )
    assert other.id != original.id

    # find_entry looks an entry up by (namespace, key).
    entry = ledger_.post(
        transfer(chart.wallet.id, chart.merchant.id, 7, namespace="shop-1", idempotency_key="q-9")
    )
    found = ledger_.find_entry("shop-1", "q-9")
    assert found == entry
    assert found is not None
    assert found.postings == entry.postings
    assert ledger_.find_entry("shop-2", "q-9") is None
    assert ledger_.find_entry("shop-1", "q-10") is None
    with pytest.raises(errors.EntryNotFound):
        ledger_.get_entry(entry.id + 1000)


def test_effective_time_counts_as_content_only_when_given(
    ledger_: Ledger, engine: Engine, chart: Chart, clock: Any
) -> None:
    # A server-set effective time is not content: a retry an hour later still matches.
    original = ledger_.post(keyed(chart))
    assert original.effective_at == clock()
    clock.advance(hours=1)
    before = snapshot(engine)
    again = ledger_.post(keyed(chart))
    assert again.id == original.id
    assert again.effective_at == original.effective_at
    assert again.recorded_at == original.recorded_at
    assert_nothing_written(engine, before)

    # An explicit effective time is content.
    when = clock() - timedelta(days=1)
    backdated = ledger_.post(keyed(chart, effective_at=when, idempotency_key="award-2"))
    assert backdated.effective_at == when
    clock.advance(minutes=5)
    assert ledger_.post(keyed(chart, effective_at=when, idempotency_key="award-2")) == backdated
    before = snapshot(engine)
    for different in (when + timedelta(microseconds=1), None):  # None: a server-set time
        with pytest.raises(errors.IdempotencyConflict):
            ledger_.post(keyed(chart, effective_at=different, idempotency_key="award-2"))
    assert_nothing_written(engine, before)


def test_idempotent_batch_repeat_posts_nothing(
    ledger_: Ledger, engine: Engine, chart: Chart
) -> None:
    batch = [
        transfer(chart.source.id, chart.wallet.id, 5, namespace="b", idempotency_key="1"),
        transfer(chart.wallet.id, chart.merchant.id, 3, namespace="b", idempotency_key="2"),
    ]
    first = ledger_.post_batch(batch)
    assert [result.replayed for result in first] == [False, False]
    before = snapshot(engine)
    second = ledger_.post_batch(batch)
    assert [result.replayed for result in second] == [True, True]
    assert [r.entry for r in second] == [r.entry for r in first]
    assert_nothing_written(engine, before)


# Batches ------------------------------------------------------------------------------------


def test_independent_batch_processes_entries_in_order_and_reports_each(
    ledger_: Ledger, engine: Engine, chart: Chart
) -> None:
    # Each entry succeeds or fails alone; the results say which, in order.
    before = row_counts(engine)
    results = ledger_.post_batch(
        [
            transfer(chart.wallet.id, chart.merchant.id, 30),  # ok: 70 left
            transfer(chart.wallet.id, chart.merchant.id, 0),  # invalid amount
            transfer(chart.wallet.id, 424_242, 5),  # unknown account
            transfer(chart.wallet.id, chart.merchant.id, 80),  # more than the 70 left
            transfer(chart.wallet.id, chart.merchant.id, 70),  # ok: exactly what is left
            transfer(chart.wallet.id, chart.merchant.id, 1),  # nothing left
        ],
        BatchMode.INDEPENDENT,
    )
    assert [result.index for result in results] == list(range(6))
    kinds = [type(result.error) if result.error else None for result in results]
    assert kinds == [
        None,
        errors.InvalidAmount,
        errors.AccountNotFound,
        errors.InsufficientFunds,
        None,
        errors.InsufficientFunds,
    ]
    assert all((result.entry is None) == (result.error is not None) for result in results)
    after = row_counts(engine)
    assert after["ledger_entry"] == before["ledger_entry"] + 2
    assert after["ledger_posting"] == before["ledger_posting"] + 4
    assert totals(ledger_, chart.wallet.id) == (100, 100, 0, 0)
    seal_and_verify(ledger_)

    # Entries are checked in order: a debit before its funding credit fails.
    empty = ledger_.create_account(
        ledger_id=chart.ledger_id, code=300, normal_side=Side.CREDIT, flags=chart.wallet.flags
    )
    results = ledger_.post_batch(
        [transfer(empty.id, chart.merchant.id, 10), transfer(chart.source.id, empty.id, 10)],
        BatchMode.INDEPENDENT,
    )
    assert isinstance(results[0].error, errors.InsufficientFunds)
    assert results[0].entry is None
    assert results[1].error is None
    assert results[1].entry is not None
    assert totals(ledger_, empty.id) == (0, 10, 0, 0)
    assert ledger_.balance(empty.id).available == 10
    seal_and_verify(ledger_)


def test_atomic_batch_is_checked_on_its_final_state_and_all_or_nothing(
    ledger_: Ledger, engine: Engine, chart: Chart
) -> None:
    # A bad entry rejects the whole batch, naming its index and cause.
    before = snapshot(engine)
    with pytest.raises(errors.BatchRejected) as raised:
        ledger_.post_batch(
            [
                transfer(chart.wallet.id, chart.merchant.id, 30),
                transfer(chart.wallet.id, 424_242, 5),
            ]
        )
    assert raised.value.index == 1
    assert isinstance(raised.value.cause, errors.AccountNotFound)
    with pytest.raises(errors.BatchRejected) as raised:
        ledger_.post_batch(
            [
                transfer(chart.wallet.id, chart.merchant.id, 30),
                transfer(chart.wallet.id, chart.merchant.id, -1),
            ]
        )
    assert raised.value.index == 1
    assert isinstance(raised.value.cause, errors.InvalidAmount)
    assert_nothing_written(engine, before)

    # Flags hold on the state after the whole batch: a credit and a debit pass in either order.
    empty = ledger_.create_account(
        ledger_id=chart.ledger_id, code=300, normal_side=Side.CREDIT, flags=chart.wallet.flags
    )
    credit_first = [
        transfer(chart.source.id, empty.id, 10),
        transfer(empty.id, chart.merchant.id, 10),
    ]
    debit_first = list(reversed(credit_first))
    for batch in (credit_first, debit_first):
        results = ledger_.post_batch(batch, BatchMode.ATOMIC)
        assert [result.error for result in results] == [None, None]
        assert all(result.entry is not None for result in results)
    assert totals(ledger_, empty.id) == (20, 20, 0, 0)
    assert ledger_.balance(empty.id).available == 0

    # A final state that breaks the flag rejects the whole batch, naming the entry to blame.
    before = snapshot(engine)
    with pytest.raises(errors.BatchRejected) as raised:
        ledger_.post_batch(
            [
                transfer(chart.source.id, empty.id, 10),
                transfer(empty.id, chart.merchant.id, 8),
                transfer(empty.id, chart.merchant.id, 8),
            ]
        )
    assert isinstance(raised.value.cause, errors.InsufficientFunds)
    assert raised.value.index == 2
    assert_nothing_written(engine, before)
    seal_and_verify(ledger_)


# Balances -------------------------------------------------------------------------------------


def test_balance_is_signed_by_the_normal_side(ledger_: Ledger, chart: Chart) -> None:
    # Wallet (credit-normal): credited 100 by the fixture.
    ledger_.post(transfer(chart.wallet.id, chart.merchant.id, 25))
    ledger_.post(transfer(chart.wallet.id, chart.merchant.id, 15, pending=True))
    ledger_.post(transfer(chart.source.id, chart.wallet.id, 4, pending=True))
    wallet = ledger_.balance(chart.wallet.id)
    assert (wallet.debits_posted, wallet.credits_posted) == (25, 100)
    assert (wallet.debits_pending, wallet.credits_pending) == (15, 4)
    assert wallet.posted == 75
    assert wallet.pending == 4 - 15
    assert wallet.available == 75 - 15

    # Source (debit-normal): debited 100 + 4 pending, credited 3 + 6 pending.
    ledger_.post(transfer(chart.merchant.id, chart.source.id, 3))
    ledger_.post(transfer(chart.merchant.id, chart.source.id, 6, pending=True))
    source = ledger_.balance(chart.source.id)
    assert (source.debits_posted, source.credits_posted) == (100, 3)
    assert (source.debits_pending, source.credits_pending) == (4, 6)
    assert source.posted == 97
    assert source.pending == 4 - 6
    assert source.available == 97 - 6

    # Merchant (credit-normal, no flag): pending debits reduce what is available.
    merchant = ledger_.balance(chart.merchant.id)
    assert merchant.posted == 25 - 3
    assert merchant.pending == 15 - 6
    assert merchant.available == 22 - 6
    assert ledger_.get_account(chart.merchant.id).balance == merchant
    seal_and_verify(ledger_)


def test_flags_count_pending_debits_but_not_pending_credits(
    ledger_: Ledger, engine: Engine, chart: Chart
) -> None:
    # DEBITS_MUST_NOT_EXCEED_CREDITS: pending debits count, pending credits do not.
    ledger_.post(transfer(chart.wallet.id, chart.merchant.id, 60, pending=True))
    before = snapshot(engine)
    with pytest.raises(errors.InsufficientFunds) as raised:
        ledger_.post(transfer(chart.wallet.id, chart.merchant.id, 41))
    assert (raised.value.available, raised.value.requested) == (40, 41)
    # Pending credits are not spendable until posted.
    ledger_.post(transfer(chart.source.id, chart.wallet.id, 50, pending=True))
    with pytest.raises(errors.InsufficientFunds):
        ledger_.post(transfer(chart.wallet.id, chart.merchant.id, 41))
    assert row_counts(engine)["ledger_entry"] == before[0]["ledger_entry"] + 1
    ledger_.post(transfer(chart.wallet.id, chart.merchant.id, 40))
    assert ledger_.balance(chart.wallet.id).available == 0

    # CREDITS_MUST_NOT_EXCEED_DEBITS mirrors it.
    ledger_.post(transfer(chart.capped.id, chart.merchant.id, 20))
    before = snapshot(engine)
    with pytest.raises(errors.CreditsExceedDebits) as raised:
        ledger_.post(transfer(chart.source.id, chart.capped.id, 21))
    assert raised.value.account_id == chart.capped.id
    assert_nothing_written(engine, before)
    ledger_.post(transfer(chart.source.id, chart.capped.id, 20))
    assert ledger_.balance(chart.capped.id).posted == 0


# History --------------------------------------------------------------------------------------


def test_history_pages_newest_first_without_gaps_or_repeats(
    ledger_: Ledger, engine: Engine, chart: Chart, clock: Any
) -> None:
    for amount in range(1, 23):
        clock.advance(seconds=1)
        ledger_.post(transfer(chart.wallet.id, chart.merchant.id, 1, description=f"#{amount}"))
    with engine.connect() as connection:
        expected = [
            row[0]
            for row in connection.exec_driver_sql(
                f"SELECT id FROM ledger_posting WHERE account_id = {chart.wallet.id} "
                "ORDER BY id DESC"
            )
        ]
    assert len(expected) == 23

    seen: list[int] = []
    sizes = []
    cursor = None
    while True:
        page = ledger_.history(chart.wallet.id, limit=5, cursor=cursor)
        sizes.append(len(page.items))
        seen.extend(line.posting_id for line in page.items)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert sizes == [5, 5, 5, 5, 3]
    assert seen == expected
    first = ledger_.history(chart.wallet.id, limit=2).items
    assert [line.description for line in first] == ["#22", "#21"]
    assert first[0].side is Side.DEBIT
    assert first[0].amount == 1
    assert first[0].phase is Phase.POSTED
    assert first[0].recorded_at > first[1].recorded_at
    oldest = ledger_.history(chart.wallet.id, limit=1000).items[-1]
    assert (oldest.side, oldest.amount, oldest.kind) == (Side.CREDIT, 100, "transfer")

    # When the last page is exactly full there is no cursor to an empty page.
    exact = ledger_.history(chart.wallet.id, limit=23)
    assert len(exact.items) == 23
    assert exact.next_cursor is None


def test_history_rejects_invalid_cursor_and_limit(ledger_: Ledger, chart: Chart) -> None:
    for cursor in ("abc", "", "-1", "1.5", " 12", "0x10", "1" * 20):
        with pytest.raises(errors.InvalidField):
            ledger_.history(chart.wallet.id, cursor=cursor)
    for limit in (0, -1, 1001):
        with pytest.raises(errors.InvalidField):
            ledger_.history(chart.wallet.id, limit=limit)
    with pytest.raises(errors.AccountNotFound):
        ledger_.history(999)


def test_history_rejects_cursors_that_are_no_posting_id(ledger_: Ledger, chart: Chart) -> None:
    cursors = ("²", str(2**63))
    outcomes = {}
    for cursor in cursors:
        try:
            ledger_.history(chart.wallet.id, cursor=cursor)
        except errors.InvalidField:
            outcomes[cursor] = "InvalidField"
        except Exception as error:
            outcomes[cursor] = type(error).__name__
        else:
            outcomes[cursor] = "accepted"
    assert outcomes == dict.fromkeys(cursors, "InvalidField")


# Finding entries and closing accounts ----------------------------------------------------------


def test_close_account_refused_while_a_hold_is_pending(
    ledger_: Ledger, engine: Engine, chart: Chart
) -> None:
    hold = ledger_.post(transfer(chart.wallet.id, chart.merchant.id, 10, pending=True))
    for account in (chart.wallet, chart.merchant):
        with pytest.raises(errors.AccountHasPending) as raised:
            ledger_.close_account(account.id)
        assert raised.value.account_id == account.id
        assert not ledger_.get_account(account.id).closed
    ledger_.void_pending(hold.id)
    assert ledger_.close_account(chart.merchant.id).closed
    with pytest.raises(errors.AccountClosed):
        ledger_.post(transfer(chart.wallet.id, chart.merchant.id, 1))
    with pytest.raises(errors.AccountNotFound):
        ledger_.close_account(123_456)
    seal_and_verify(ledger_)


# Holds ----------------------------------------------------------------------------------------


def test_holds_post_in_full_in_part_or_void(ledger_: Ledger, engine: Engine, chart: Chart) -> None:
    hold = ledger_.post(transfer(chart.wallet.id, chart.merchant.id, 40, pending=True))
    assert hold.phase is Phase.PENDING
    assert totals(ledger_, chart.wallet.id) == (0, 100, 40, 0)
    posted = ledger_.post_pending(hold.id)
    assert posted.phase is Phase.POST_PENDING
    assert posted.pending_id == hold.id
    assert totals(ledger_, chart.wallet.id) == (40, 100, 0, 0)
    assert totals(ledger_, chart.merchant.id) == (0, 40, 0, 0)
    with pytest.raises(errors.HoldAlreadyResolved):
        ledger_.void_pending(hold.id)
    with pytest.raises(errors.HoldNotPending):
        ledger_.post_pending(posted.id)

    # A void releases everything the hold held.
    hold = ledger_.post(transfer(chart.wallet.id, chart.merchant.id, 60, pending=True))
    assert ledger_.balance(chart.wallet.id).available == 0
    void = ledger_.void_pending(hold.id)
    assert void.phase is Phase.VOID_PENDING
    assert void.postings == ()
    assert totals(ledger_, chart.wallet.id) == (40, 100, 0, 0)
    assert totals(ledger_, chart.merchant.id) == (0, 40, 0, 0)
    assert ledger_.balance(chart.wallet.id).available == 60
    with pytest.raises(errors.HoldAlreadyResolved):
        ledger_.post_pending(hold.id)

    # A partial post releases the rest of the hold.
    hold = ledger_.post(transfer(chart.wallet.id, chart.merchant.id, 50, pending=True))
    before = snapshot(engine)
    with pytest.raises(errors.HoldAmountExceeded):
        ledger_.post_pending(hold.id, amounts=[51, 51])
    with pytest.raises(errors.UnbalancedEntry):
        ledger_.post_pending(hold.id, amounts=[30, 20])
    assert_nothing_written(engine, before)
    posted = ledger_.post_pending(hold.id, amounts=[30, 30])
    assert [p.amount for p in posted.postings] == [30, 30]
    assert totals(ledger_, chart.wallet.id) == (40 + 30, 100, 0, 0)
    assert totals(ledger_, chart.merchant.id) == (0, 40 + 30, 0, 0)
    wallet = ledger_.balance(chart.wallet.id)
    assert (wallet.posted, wallet.pending, wallet.available) == (30, 0, 30)
    with pytest.raises(errors.HoldAlreadyResolved):
        ledger_.post_pending(hold.id, amounts=[20, 20])
    seal_and_verify(ledger_)


def test_post_after_timeout_is_refused_before_the_sweeper_runs(
    ledger_: Ledger, engine: Engine, chart: Chart, clock: Any
) -> None:
    hold = ledger_.post(
        transfer(
            chart.wallet.id,
            chart.merchant.id,
            40,
            pending=True,
            timeout_at=clock() + timedelta(minutes=10),
        )
    )
    clock.advance(minutes=10)  # exactly the timeout: expired
    before = snapshot(engine)
    with pytest.raises(errors.HoldExpired):
        ledger_.post_pending(hold.id)
    with pytest.raises(errors.HoldExpired):
        ledger_.post_pending(hold.id, amounts=[1, 1])
    assert_nothing_written(engine, before)
    assert totals(ledger_, chart.wallet.id) == (0, 100, 40, 0)
    # A void is still allowed after the timeout.
    ledger_.void_pending(hold.id)
    assert totals(ledger_, chart.wallet.id) == (0, 100, 0, 0)

    # A hold posted a microsecond before its timeout is accepted.
    in_time = ledger_.post(
        transfer(
            chart.wallet.id,
            chart.merchant.id,
            40,
            pending=True,
            timeout_at=clock() + timedelta(minutes=10),
        )
    )
    clock.advance(minutes=10, microseconds=-1)
    ledger_.post_pending(in_time.id)
    assert totals(ledger_, chart.wallet.id) == (40, 100, 0, 0)
    seal_and_verify(ledger_)


def test_void_expired_holds_voids_exactly_the_timed_out_ones(
    ledger_: Ledger, engine: Engine, chart: Chart, clock: Any
) -> None:
    start = clock()

    def hold(amount: int, timeout_minutes: int | None) -> Any:
        timeout = None if timeout_minutes is None else start + timedelta(minutes=timeout_minutes)
        return ledger_.post(
            transfer(chart.wallet.id, chart.merchant.id, amount, pending=True, timeout_at=timeout)
        )

    no_timeout = hold(3, None)
    posted_in_time = hold(5, 5)
    due_10, due_15, due_20 = hold(10, 10), hold(15, 15), hold(20, 20)
    ledger_.post_pending(posted_in_time.id)
    assert totals(ledger_, chart.wallet.id) == (5, 100, 3 + 10 + 15 + 20, 0)

    clock.advance(minutes=15)
    assert ledger_.void_expired_holds(clock()) == 2
    with engine.connect() as connection:
        voided = {
            row[0]
            for row in connection.exec_driver_sql(
                "SELECT pending_id FROM ledger_entry WHERE phase = 3"
            )
        }
    assert voided == {due_10.id, due_15.id}
    assert totals(ledger_, chart.wallet.id) == (5, 100, 3 + 20, 0)
    assert ledger_.void_expired_holds(clock()) == 0
    with pytest.raises(errors.HoldAlreadyResolved):
        ledger_.post_pending(due_10.id)
    ledger_.post_pending(due_20.id)  # still within its time
    clock.advance(days=365)
    assert ledger_.void_expired_holds(clock()) == 0  # a hold without a timeout never expires
    assert totals(ledger_, chart.wallet.id) == (25, 100, 3, 0)
    assert ledger_.get_entry(no_timeout.id).timeout_at is None
    seal_and_verify(ledger_)


# Reversals ------------------------------------------------------------------------------------


def test_reversal_swaps_sides(ledger_: Ledger, engine: Engine, chart: Chart) -> None:
    payment = ledger_.post(
        NewEntry(
            [
                Posting(chart.wallet.id, Side.DEBIT, 30),
                Posting(chart.merchant.id, Side.CREDIT, 25),
                Posting(chart.source.id, Side.CREDIT, 5),
            ]
        )
    )
    reversal = ledger_.reverse(payment.id, description="refund")
    assert reversal.reverses_id == payment.id
    assert reversal.phase is Phase.POSTED
    assert [(p.account_id, p.side, p.amount) for p in reversal.postings] == [
        (chart.wallet.id, Side.CREDIT, 30),
        (chart.merchant.id, Side.DEBIT, 25),
        (chart.source.id, Side.DEBIT, 5),
    ]
    assert ledger_.balance(chart.wallet.id).posted == 100
    assert ledger_.balance(chart.merchant.id).posted == 0

    before = snapshot(engine)
    with pytest.raises(errors.AlreadyReversed):
        ledger_.reverse(payment.id)
    with pytest.raises(errors.NotReversible):
        ledger_.reverse(reversal.id)
    assert_nothing_written(engine, before)
    seal_and_verify(ledger_)


def test_only_posted_entries_are_reversible(ledger_: Ledger, engine: Engine, chart: Chart) -> None:
    hold = ledger_.post(transfer(chart.wallet.id, chart.merchant.id, 10, pending=True))
    before = snapshot(engine)
    with pytest.raises(errors.NotReversible):
        ledger_.reverse(hold.id)
    assert_nothing_written(engine, before)
    void = ledger_.void_pending(hold.id)
    with pytest.raises(errors.NotReversible):
        ledger_.reverse(void.id)
    with pytest.raises(errors.EntryNotFound):
        ledger_.reverse(void.id + 100)
    # A posted resolution can be reversed.
    second = ledger_.post(transfer(chart.wallet.id, chart.merchant.id, 10, pending=True))
    posted = ledger_.post_pending(second.id)
    ledger_.reverse(posted.id)
    assert totals(ledger_, chart.wallet.id) == (10, 110, 0, 0)
    seal_and_verify(ledger_)

    # A reversal is an entry like any other: it may not overdraw a flagged account.
    funding = fund(ledger_, chart, 50)
    ledger_.post(transfer(chart.wallet.id, chart.merchant.id, 120))
    before = snapshot(engine)
    with pytest.raises(errors.InsufficientFunds):
        ledger_.reverse(funding.id)
    assert_nothing_written(engine, before)
    assert all_totals(engine) == before[1]
    assert count(engine, "ledger_entry", f"reverses_id = {funding.id}") == 0


def test_accounts_created_in_bulk_get_ids_in_the_order_asked(
    ledger_: Ledger, engine: Engine, chart: Chart
) -> None:
    owners = [f"owner-{n:04d}" for n in range(250)] + [None, "last"]
    ids = ledger_.transaction(
        lambda tx: tx.create_accounts(
            ledger_id=chart.ledger_id,
            code=300,
            normal_side=Side.CREDIT,
            owner_refs=owners,
            flags=AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS,
        )
    )
    assert len(set(ids)) == len(owners)
    assert min(ids) > max(chart.source.id, chart.wallet.id, chart.merchant.id, chart.capped.id)
    for account_id, owner in zip(ids, owners, strict=True):
        account = ledger_.get_account(account_id)
        assert (account.owner_ref, account.code, account.ledger_id) == (owner, 300, chart.ledger_id)
        assert account.flags == AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS
        assert (account.debits_posted, account.credits_posted, account.closed) == (0, 0, False)
    # They work as accounts: funded, and their flag holds.
    fund(ledger_, chart, 5, ids[7])
    with pytest.raises(errors.InsufficientFunds):
        ledger_.post(transfer(ids[7], chart.merchant.id, 6))
    # A bad owner anywhere in the list: nothing is created.
    before = snapshot(engine)
    with pytest.raises(errors.InvalidField):
        ledger_.transaction(
            lambda tx: tx.create_accounts(
                ledger_id=chart.ledger_id,
                code=300,
                normal_side=Side.CREDIT,
                owner_refs=["fine", "bad\x00owner"],
            )
        )
    assert_nothing_written(engine, before)
    seal_and_verify(ledger_)
