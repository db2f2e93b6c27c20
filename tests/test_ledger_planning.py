"""The pure planning of a write (``ledger.planning``): plain values in, decisions out.

No database here: the account rows, holds, reversals and recorded idempotency keys are written
out by hand, as the storage layer would read them under its locks. The same rules are exercised
end to end, on both databases, by tests/test_ledger_operations.py and tests/test_ledger_guards.py.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

import pytest

from ledger import errors
from ledger.model import (
    MAX_AMOUNT,
    AccountFlags,
    BatchMode,
    Delta,
    Entry,
    NewEntry,
    Phase,
    Posting,
    Side,
    ValidEntry,
    to_us,
    validate_entry,
)
from ledger.planning import (
    EARLIER_IN_BATCH,
    AccountRow,
    Hold,
    IdempotencyKey,
    WritePlan,
    idempotency_keys,
    plan_write,
)

NOW_US = to_us(datetime(2026, 4, 1, 9, 0, tzinfo=UTC))
LEDGER = 1
OTHER_LEDGER = 2
SOURCE, WALLET, MERCHANT, CLOSED, ELSEWHERE = 1, 2, 3, 4, 5
HOLD_ID = 50
GUARDED = int(AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS)


def account(
    account_id: int,
    *,
    ledger_id: int = LEDGER,
    normal_side: Side = Side.CREDIT,
    flags: int = 0,
    closed: bool = False,
    debits_posted: int = 0,
    credits_posted: int = 0,
    debits_pending: int = 0,
    credits_pending: int = 0,
) -> AccountRow:
    return AccountRow(
        account_id,
        ledger_id,
        300,
        int(normal_side),
        None,
        flags,
        closed,
        debits_posted,
        credits_posted,
        debits_pending,
        credits_pending,
        NOW_US,
    )


def book(**changes: AccountRow) -> dict[int, AccountRow]:
    """Source (debit-normal, unflagged), a wallet holding 10 that may not go below zero, a
    merchant, a closed account, and an account of another ledger."""
    accounts = {
        SOURCE: account(SOURCE, normal_side=Side.DEBIT, debits_posted=10),
        WALLET: account(WALLET, flags=GUARDED, credits_posted=10),
        MERCHANT: account(MERCHANT),
        CLOSED: account(CLOSED, closed=True),
        ELSEWHERE: account(ELSEWHERE, ledger_id=OTHER_LEDGER),
    }
    for row in changes.values():
        accounts[row.id] = row
    return accounts


def transfer(
    debit: int, credit: int, amount: int, *, key: str | None = None, kind: str = "transfer"
) -> ValidEntry:
    return validate_entry(
        NewEntry(
            [Posting(debit, Side.DEBIT, amount), Posting(credit, Side.CREDIT, amount)],
            kind=kind,
            namespace="shop" if key else None,
            idempotency_key=key,
        )
    )


def plan(
    valid: Sequence[ValidEntry],
    mode: BatchMode = BatchMode.ATOMIC,
    *,
    single: bool = False,
    accounts: Mapping[int, AccountRow] | None = None,
    holds: Mapping[int, Hold] | None = None,
    reversed_by: Mapping[int, int | None] | None = None,
    existing: Mapping[IdempotencyKey, tuple[int, bytes]] | None = None,
) -> WritePlan:
    return plan_write(
        valid,
        mode,
        single=single,
        now_us=NOW_US,
        accounts=book() if accounts is None else accounts,
        holds=holds or {},
        reversed_by=reversed_by or {},
        existing=existing or {},
    )


def written(result: WritePlan, first_id: int = 100) -> dict[int, Entry]:
    """The accepted entries as the storage layer would return them, ids from ``first_id``."""
    return {
        planned.index: planned.recorded(first_id + number, NOW_US)
        for number, planned in enumerate(result.accepted)
    }


def hold(*, resolved_by: int | None = None, timeout_at_us: int | None = None) -> Hold:
    """A hold of 5 from the wallet to the merchant."""
    return Hold(
        HOLD_ID,
        LEDGER,
        Phase.PENDING,
        timeout_at_us,
        [Posting(WALLET, Side.DEBIT, 5), Posting(MERCHANT, Side.CREDIT, 5)],
        resolved_by=resolved_by,
    )


def held_book() -> dict[int, AccountRow]:
    return book(
        wallet=account(WALLET, flags=GUARDED, credits_posted=10, debits_pending=5),
        merchant=account(MERCHANT, credits_pending=5),
    )


def post_hold(amount: int) -> ValidEntry:
    return validate_entry(
        NewEntry([Posting(WALLET, Side.DEBIT, amount), Posting(MERCHANT, Side.CREDIT, amount)]),
        phase=Phase.POST_PENDING,
        pending_id=HOLD_ID,
    )


def void_hold() -> ValidEntry:
    return validate_entry(NewEntry(()), phase=Phase.VOID_PENDING, pending_id=HOLD_ID)


# Deduplication -------------------------------------------------------------------------------


def test_a_replay_is_not_written_and_returns_the_recorded_entry() -> None:
    entry = transfer(WALLET, MERCHANT, 4, key="k1")
    assert idempotency_keys([entry, transfer(WALLET, MERCHANT, 1)]) == {("shop", "k1")}
    assert entry.content_digest is not None
    result = plan([entry], existing={("shop", "k1"): (41, entry.content_digest)})
    assert result.accepted == []
    assert result.account_deltas() == []
    assert result.replayed_ids() == [41]
    original = result.entries[0].recorded(41, NOW_US - 1)
    (answer,) = result.results({}, {41: original})
    assert (answer.entry, answer.error, answer.replayed) == (original, None, True)


def test_a_key_recorded_with_other_content_is_an_idempotency_conflict() -> None:
    entry = transfer(WALLET, MERCHANT, 4, key="k1")
    existing = {("shop", "k1"): (41, b"another digest")}
    with pytest.raises(errors.IdempotencyConflict) as raised:
        plan([entry], single=True, existing=existing)
    assert raised.value.entry_id == 41
    with pytest.raises(errors.BatchRejected) as rejected:
        plan([transfer(SOURCE, WALLET, 1), entry], existing=existing)
    assert (rejected.value.index, rejected.value.cause.code) == (1, "idempotency_conflict")
    result = plan([entry, transfer(SOURCE, WALLET, 1)], BatchMode.INDEPENDENT, existing=existing)
    assert [planned.index for planned in result.accepted] == [1]
    assert isinstance(result.refused[0], errors.IdempotencyConflict)


def test_a_key_repeated_in_one_batch_is_written_once() -> None:
    entry = transfer(WALLET, MERCHANT, 4, key="k1")
    result = plan([entry, entry])
    assert [planned.index for planned in result.accepted] == [0]
    first, second = result.results(written(result), {})
    assert first.entry is not None and first.entry.id == 100 and not first.replayed
    assert (second.entry, second.replayed) == (first.entry, True)
    # The same key with other content in the same batch: a conflict.
    other = transfer(WALLET, MERCHANT, 5, key="k1")
    with pytest.raises(errors.BatchRejected) as rejected:
        plan([entry, other])
    assert (rejected.value.index, rejected.value.cause.code) == (1, "idempotency_conflict")


# Deltas and flags ------------------------------------------------------------------------------


def test_deltas_are_summed_per_account() -> None:
    result = plan(
        [transfer(SOURCE, WALLET, 3), transfer(WALLET, MERCHANT, 7), transfer(SOURCE, WALLET, 2)]
    )
    assert [planned.ledger_id for planned in result.accepted] == [LEDGER] * 3
    assert result.account_deltas() == [
        (SOURCE, Delta(debits_posted=5)),
        (WALLET, Delta(debits_posted=7, credits_posted=5)),
        (MERCHANT, Delta(credits_posted=7)),
    ]


def test_an_atomic_batch_is_checked_on_its_summed_state() -> None:
    # Spending 15 of 10 is fine when the same batch brings 10 more, in whichever order.
    accepted = plan([transfer(WALLET, MERCHANT, 15), transfer(SOURCE, WALLET, 10)])
    assert len(accepted.accepted) == 2
    # Two spends of 6 are each fine on 10, but not together: only the sum shows it, and the
    # last entry that spent is blamed.
    spends = [transfer(WALLET, MERCHANT, 6), transfer(SOURCE, MERCHANT, 1)]
    spends.append(transfer(WALLET, MERCHANT, 6, kind="second spend"))
    with pytest.raises(errors.BatchRejected) as rejected:
        plan(spends)
    assert rejected.value.index == 2
    assert isinstance(rejected.value.cause, errors.InsufficientFunds)
    assert rejected.value.cause.context["available"] == 10
    # One entry alone raises its own error, not BatchRejected.
    with pytest.raises(errors.InsufficientFunds):
        plan([transfer(WALLET, MERCHANT, 11)], single=True)


def test_an_independent_batch_refuses_one_entry_and_keeps_the_others() -> None:
    valid = [
        transfer(WALLET, MERCHANT, 15),  # 15 of 10: refused (entry by entry, in order)
        transfer(SOURCE, WALLET, 10),
        transfer(WALLET, MERCHANT, 6),
        transfer(WALLET, MERCHANT, 6, kind="second spend"),  # 12 of 20: kept
        transfer(WALLET, MERCHANT, 9, kind="third spend"),  # 21 of 20: refused
    ]
    result = plan(valid, BatchMode.INDEPENDENT)
    assert [planned.index for planned in result.accepted] == [1, 2, 3]
    assert sorted(result.refused) == [0, 4]
    assert all(isinstance(error, errors.InsufficientFunds) for error in result.refused.values())
    assert result.account_deltas()[1] == (WALLET, Delta(debits_posted=12, credits_posted=10))
    answers = result.results(written(result), {})
    assert [answer.error is None for answer in answers] == [False, True, True, True, False]
    assert [answer.entry.id for answer in answers if answer.entry is not None] == [100, 101, 102]


def test_a_total_beyond_64_bits_is_refused() -> None:
    near_limit = book(source=account(SOURCE, normal_side=Side.DEBIT, debits_posted=MAX_AMOUNT - 5))
    with pytest.raises(errors.TotalOverflow) as raised:
        plan([transfer(SOURCE, MERCHANT, 6)], single=True, accounts=near_limit)
    assert raised.value.context["account_id"] == SOURCE
    # Two entries of 3 each fit; their sum does not.
    with pytest.raises(errors.BatchRejected) as rejected:
        plan(
            [transfer(SOURCE, MERCHANT, 3), transfer(SOURCE, MERCHANT, 3, kind="again")],
            accounts=near_limit,
        )
    assert rejected.value.cause.code == "total_overflow"
    independent = plan(
        [transfer(SOURCE, MERCHANT, 3), transfer(SOURCE, MERCHANT, 3, kind="again")],
        BatchMode.INDEPENDENT,
        accounts=near_limit,
    )
    assert ([p.index for p in independent.accepted], list(independent.refused)) == ([0], [1])


# Accounts --------------------------------------------------------------------------------------


def test_closed_missing_and_mixed_accounts_are_refused() -> None:
    result = plan(
        [
            transfer(SOURCE, CLOSED, 1),
            transfer(SOURCE, 99, 1),
            transfer(SOURCE, ELSEWHERE, 1),
            transfer(SOURCE, MERCHANT, 1),
        ],
        BatchMode.INDEPENDENT,
    )
    assert [planned.index for planned in result.accepted] == [3]
    assert isinstance(result.refused[0], errors.AccountClosed)
    assert isinstance(result.refused[1], errors.AccountNotFound)
    assert isinstance(result.refused[2], errors.MixedLedgers)


# Holds and reversals ---------------------------------------------------------------------------


def test_a_hold_is_posted_within_its_amount_and_the_rest_released() -> None:
    result = plan([post_hold(3)], single=True, accounts=held_book(), holds={HOLD_ID: hold()})
    assert result.account_deltas() == [
        (WALLET, Delta(debits_posted=3, debits_pending=-5)),
        (MERCHANT, Delta(credits_posted=3, credits_pending=-5)),
    ]


def test_a_hold_is_not_posted_beyond_its_amount() -> None:
    with pytest.raises(errors.HoldAmountExceeded) as raised:
        plan([post_hold(6)], single=True, accounts=held_book(), holds={HOLD_ID: hold()})
    assert raised.value.context["held"] == 5
    assert raised.value.context["requested"] == 6


def test_a_hold_resolved_or_timed_out_is_refused() -> None:
    with pytest.raises(errors.HoldAlreadyResolved) as raised:
        resolved = {HOLD_ID: hold(resolved_by=77)}
        plan([void_hold()], single=True, accounts=held_book(), holds=resolved)
    assert raised.value.context["resolved_by"] == 77
    expired = {HOLD_ID: hold(timeout_at_us=NOW_US)}
    with pytest.raises(errors.HoldExpired):
        plan([post_hold(5)], single=True, accounts=held_book(), holds=expired)
    # A void is allowed after the timeout.
    assert len(plan([void_hold()], accounts=held_book(), holds=expired).accepted) == 1
    with pytest.raises(errors.EntryNotFound):
        plan([void_hold()], single=True, accounts=held_book(), holds={})


def test_an_earlier_entry_of_the_batch_is_seen_without_an_id() -> None:
    holds = {HOLD_ID: hold()}
    reversed_by: dict[int, int | None] = {60: None}
    accounts = held_book()
    before = (copy.deepcopy(holds), dict(reversed_by), dict(accounts))
    reversal = validate_entry(
        NewEntry([Posting(MERCHANT, Side.DEBIT, 1), Posting(SOURCE, Side.CREDIT, 1)]),
        reverses_id=60,
    )
    result = plan(
        [void_hold(), post_hold(5), reversal, reversal],
        BatchMode.INDEPENDENT,
        accounts=accounts,
        holds=holds,
        reversed_by=reversed_by,
    )
    assert [planned.index for planned in result.accepted] == [0, 2]
    resolved = result.refused[1]
    assert isinstance(resolved, errors.HoldAlreadyResolved)
    # Resolved by an entry of this batch, which has no id yet: no id is made up for it.
    assert resolved.context["resolved_by"] is None
    assert isinstance(result.refused[3], errors.AlreadyReversed)
    # The plan kept its own view: what was read is unchanged.
    assert (holds, reversed_by, accounts) == before
    assert EARLIER_IN_BATCH.value == "an earlier entry of this batch"
