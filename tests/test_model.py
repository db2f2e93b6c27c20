"""The ledger's pure rules, without a database."""

from __future__ import annotations

import contextlib
import hashlib
import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger import AccountFlags, Balance, NewEntry, Posting, Side, errors
from ledger.model import (
    MAX_AMOUNT,
    METADATA_MAX_BYTES,
    Delta,
    Phase,
    Totals,
    canonical_json,
    check_amount,
    content_digest,
    from_us,
    to_us,
    validate_entry,
)

WALLET = AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS


def transfer(amount: int = 10, **options: object) -> NewEntry:
    return NewEntry([Posting(1, Side.DEBIT, amount), Posting(2, Side.CREDIT, amount)], **options)  # type: ignore[arg-type]


@pytest.mark.parametrize("amount", [0, -1, MAX_AMOUNT + 1, 1.0, True, "5", None])
def test_bad_amounts_are_refused(amount: object) -> None:
    with pytest.raises(errors.InvalidAmount):
        check_amount(amount)


def test_largest_amount_is_accepted() -> None:
    assert check_amount(MAX_AMOUNT) == MAX_AMOUNT


def test_unbalanced_entry_names_both_sums() -> None:
    entry = NewEntry([Posting(1, Side.DEBIT, 10), Posting(2, Side.CREDIT, 9)])
    with pytest.raises(errors.UnbalancedEntry) as caught:
        validate_entry(entry)
    assert (caught.value.debits, caught.value.credits) == (10, 9)


def test_multi_posting_entry_balances() -> None:
    entry = NewEntry(
        [Posting(1, Side.DEBIT, 7), Posting(2, Side.DEBIT, 3), Posting(3, Side.CREDIT, 10)]
    )
    assert len(validate_entry(entry).postings) == 3


def test_an_entry_needs_two_postings() -> None:
    with pytest.raises(errors.InvalidField):
        validate_entry(NewEntry([Posting(1, Side.DEBIT, 10)]))


def test_entry_total_must_fit_64_bits() -> None:
    entry = NewEntry(
        [
            Posting(1, Side.DEBIT, MAX_AMOUNT),
            Posting(2, Side.DEBIT, 1),
            Posting(3, Side.CREDIT, MAX_AMOUNT),
            Posting(4, Side.CREDIT, 1),
        ]
    )
    with pytest.raises(errors.InvalidAmount):
        validate_entry(entry)


def test_metadata_is_canonical() -> None:
    assert canonical_json({"b": 1, "a": ["é", None, True]}) == '{"a":["é",null,true],"b":1}'


@pytest.mark.parametrize(
    "metadata",
    [
        {"price": 1.5},
        {"nested": {"deep": [0.1]}},
        {"blob": "x" * (METADATA_MAX_BYTES + 1)},
        {"when": datetime.now(UTC)},
        {1: "non-string key"},
        {"huge": 2**64},
    ],
)
def test_bad_metadata_is_refused(metadata: dict[object, object]) -> None:
    with pytest.raises(errors.InvalidMetadata):
        validate_entry(transfer(metadata=metadata))


def test_too_deep_metadata_is_refused() -> None:
    value: object = "leaf"
    for _ in range(20):
        value = [value]
    with pytest.raises(errors.InvalidMetadata):
        canonical_json({"deep": value})


#: Plain metadata values: what the fast writers of canonical_json and content_digest handle.
SCALARS = st.one_of(
    st.text(max_size=20), st.integers(-MAX_AMOUNT, MAX_AMOUNT), st.booleans(), st.none()
)


@given(st.dictionaries(st.text(max_size=12), SCALARS, max_size=8))
def test_flat_metadata_is_written_exactly_as_json_dumps_writes_it(
    metadata: dict[str, object],
) -> None:
    """The one-loop writer for flat metadata gives json.dumps's very text (stored digests of
    earlier requests depend on it), and refuses what cannot be encoded (lone surrogates)."""
    expected = json.dumps(metadata, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    try:
        expected.encode("utf-8")
    except UnicodeEncodeError:
        with pytest.raises(errors.InvalidMetadata):
            canonical_json(metadata)
        return
    assert canonical_json(metadata) == expected


@given(
    kind=st.text(max_size=10),
    description=st.text(max_size=10),
    metadata_json=st.text(max_size=30),
    effective_at_us=st.none() | st.integers(0, 2**62),
    phase=st.sampled_from(list(Phase)),
    timeout_at_us=st.none() | st.integers(0, 2**62),
    pending_id=st.none() | st.integers(1, 2**62),
    reverses_id=st.none() | st.integers(1, 2**62),
    postings=st.lists(
        st.builds(
            Posting,
            st.integers(1, 2**62),
            st.sampled_from(list(Side)),
            st.integers(1, MAX_AMOUNT),
        ),
        max_size=4,
    ),
)
def test_the_request_digest_is_the_hash_of_its_json_document(
    kind: str,
    description: str,
    metadata_json: str,
    effective_at_us: int | None,
    phase: Phase,
    timeout_at_us: int | None,
    pending_id: int | None,
    reverses_id: int | None,
    postings: list[Posting],
) -> None:
    """Digests stored by earlier versions must keep matching: the document is still the JSON
    that json.dumps writes."""
    document = [
        kind,
        description,
        metadata_json,
        effective_at_us,
        int(phase),
        timeout_at_us,
        pending_id,
        reverses_id,
        [[p.account_id, int(p.side), p.amount] for p in postings],
    ]
    text = json.dumps(document, separators=(",", ":"), ensure_ascii=False)
    arguments = {
        "kind": kind,
        "description": description,
        "metadata_json": metadata_json,
        "effective_at_us": effective_at_us,
        "phase": phase,
        "timeout_at_us": timeout_at_us,
        "pending_id": pending_id,
        "reverses_id": reverses_id,
        "postings": postings,
    }
    try:
        encoded = text.encode("utf-8")
    except UnicodeEncodeError:
        with pytest.raises(UnicodeEncodeError):
            content_digest(**arguments)  # type: ignore[arg-type]
        return
    assert content_digest(**arguments) == hashlib.sha256(encoded).digest()  # type: ignore[arg-type]


def test_key_needs_namespace() -> None:
    with pytest.raises(errors.InvalidField):
        validate_entry(transfer(idempotency_key="k"))


def test_key_longer_than_255_is_refused() -> None:
    with pytest.raises(errors.InvalidField):
        validate_entry(transfer(namespace="n", idempotency_key="k" * 256))


def test_digest_ignores_server_time_but_not_content() -> None:
    base = validate_entry(transfer(namespace="n", idempotency_key="k"))
    assert validate_entry(transfer(namespace="n", idempotency_key="k")).content_digest == (
        base.content_digest
    )
    changed = [
        transfer(11, namespace="n", idempotency_key="k"),
        transfer(description="other", namespace="n", idempotency_key="k"),
        transfer(metadata={"a": 1}, namespace="n", idempotency_key="k"),
        transfer(effective_at=datetime(2026, 1, 1, tzinfo=UTC), namespace="n", idempotency_key="k"),
        transfer(pending=True, namespace="n", idempotency_key="k"),
    ]
    for entry in changed:
        assert validate_entry(entry).content_digest != base.content_digest


def test_naive_instants_are_refused() -> None:
    with pytest.raises(errors.InvalidField):
        to_us(datetime(2026, 1, 1))


@given(
    st.datetimes(
        timezones=st.just(UTC), min_value=datetime(1970, 1, 1), max_value=datetime(9999, 1, 1)
    )
)
def test_instants_round_trip_exactly(instant: datetime) -> None:
    assert from_us(to_us(instant)) == instant


def test_instants_are_stored_in_utc() -> None:
    tokyo = timezone(timedelta(hours=9))
    assert to_us(datetime(2026, 4, 1, 9, 0, tzinfo=tokyo)) == to_us(
        datetime(2026, 4, 1, 0, 0, tzinfo=UTC)
    )


def test_timeout_only_on_pending() -> None:
    with pytest.raises(errors.InvalidField):
        validate_entry(transfer(timeout_at=datetime(2026, 1, 1, tzinfo=UTC)))
    assert validate_entry(transfer(pending=True)).phase is Phase.PENDING


def wallet(credits: int = 100, debits: int = 0, pending: int = 0) -> Totals:
    return Totals(1, int(WALLET), debits, credits, pending, 0)


def test_flag_refuses_overspending_with_context() -> None:
    totals = wallet(credits=100, debits=30, pending=20)
    with pytest.raises(errors.InsufficientFunds) as caught:
        totals.apply(Delta(debits_posted=51))
    assert (caught.value.available, caught.value.requested) == (50, 51)
    assert totals.debits_posted == 30, "a refused delta changes nothing"
    totals.apply(Delta(debits_posted=50))
    assert totals.debits_posted == 80


def test_pending_debits_count_against_the_flag() -> None:
    totals = wallet(credits=100)
    totals.apply(Delta(debits_pending=100))
    with pytest.raises(errors.InsufficientFunds):
        totals.apply(Delta(debits_posted=1))
    totals.apply(Delta(debits_pending=-100, debits_posted=60))
    assert (totals.debits_posted, totals.debits_pending) == (60, 0)


def test_credit_flag() -> None:
    totals = Totals(1, int(AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS), 50, 0, 0, 0)
    with pytest.raises(errors.CreditsExceedDebits):
        totals.apply(Delta(credits_posted=51))


def test_totals_may_not_overflow() -> None:
    totals = Totals(1, 0, 0, MAX_AMOUNT, 0, 0)
    with pytest.raises(errors.TotalOverflow):
        totals.apply(Delta(credits_posted=1))


@given(st.lists(st.integers(1, 1000), max_size=30))
def test_flagged_wallet_never_goes_negative(spends: list[int]) -> None:
    totals = wallet(credits=5000)
    for amount in spends:
        with contextlib.suppress(errors.InsufficientFunds):
            totals.apply(Delta(debits_posted=amount))
        assert totals.debits_posted + totals.debits_pending <= totals.credits_posted


def test_balance_is_signed_by_normal_side() -> None:
    credit = Balance(
        1, Side.CREDIT, debits_posted=30, credits_posted=100, debits_pending=20, credits_pending=5
    )
    assert (credit.posted, credit.pending, credit.available) == (70, -15, 50)
    debit = Balance(
        2, Side.DEBIT, debits_posted=100, credits_posted=30, debits_pending=5, credits_pending=20
    )
    assert (debit.posted, debit.pending, debit.available) == (70, -15, 50)
