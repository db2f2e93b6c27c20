"""The draw and return orders of ``points.spending``, without a database.

Every path that takes points from a wallet (a payment, a hold, a hold's partial post) draws with
``draw``: from the buckets usable at one instant, earliest expiry first, ties by program id, then
account id. Every refund gives points back with ``return_latest_first``: the same order reversed,
never more to a bucket than it gave less what earlier refunds returned to it.

Dates are Tokyo dates: points valid until D are usable until D 14:59:59.999999 UTC.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from points.spending import Share, available_at, draw, draw_order, return_latest_first
from points.wallets import Bucket

NOW = datetime(2026, 7, 1, 3, 0, tzinfo=UTC)  # July 1, 12:00 in Tokyo
PROGRAMS = ("prg_a", "prg_b", "prg_c")


def bucket(
    account_id: int,
    valid_until: date,
    posted: int,
    *,
    program_id: str = "prg_a",
    held: int = 0,
    closed: bool = False,
) -> Bucket:
    return Bucket(account_id, program_id, valid_until, posted, held, closed)


# Strategies -----------------------------------------------------------------------------------


@st.composite
def wallets(draw_: st.DrawFn) -> list[Bucket]:
    """A wallet's buckets: distinct accounts, a few programs, expiry dates around ``NOW``,
    some points held, some buckets closed."""
    account_ids = draw_(st.lists(st.integers(1, 60), unique=True, max_size=10))
    made = []
    for account_id in account_ids:
        posted = draw_(st.integers(0, 50))
        made.append(
            bucket(
                account_id,
                NOW.date() + timedelta(days=draw_(st.integers(-3, 6))),
                posted,
                program_id=draw_(st.sampled_from(PROGRAMS)),
                held=draw_(st.integers(0, posted)),
                closed=draw_(st.sampled_from((False, False, False, True))),
            )
        )
    return made


#: The instant a draw is made for: now (a payment) or a hold's timeout, up to a few days ahead.
instants = st.integers(0, 4 * 24 * 60).map(lambda minutes: NOW + timedelta(minutes=minutes))


@st.composite
def spends(draw_: st.DrawFn) -> list[Share]:
    """What a posted spend took from each of a wallet's buckets."""
    account_ids = draw_(st.lists(st.integers(1, 60), unique=True, min_size=1, max_size=10))
    return [
        Share(
            account_id,
            draw_(st.sampled_from(PROGRAMS)),
            NOW.date() + timedelta(days=draw_(st.integers(-3, 6))),
            draw_(st.integers(1, 40)),
        )
        for account_id in account_ids
    ]


# The draw -------------------------------------------------------------------------------------


@given(candidates=wallets(), at=instants, amount=st.integers(1, 400))
def test_a_draw_takes_the_amount_within_what_each_usable_bucket_has_or_refuses(
    candidates: list[Bucket], at: datetime, amount: int
) -> None:
    draws = draw(candidates, amount, at=at)
    can = available_at(candidates, at)
    if amount > can:
        assert draws is None
        return
    assert draws is not None
    assert sum(points for _, points in draws) == amount
    by_id = {b.account_id: b for b in candidates}
    assert len({account_id for account_id, _ in draws}) == len(draws), "a bucket drawn twice"
    for account_id, points in draws:
        drawn_from = by_id[account_id]
        assert 0 < points <= drawn_from.available
        assert drawn_from.usable_at(at), f"drew on {drawn_from}, not usable at {at}"


@given(candidates=wallets(), at=instants, amount=st.integers(1, 400))
def test_a_draw_takes_the_earliest_expiry_first_ties_by_program_then_account(
    candidates: list[Bucket], at: datetime, amount: int
) -> None:
    draws = draw(candidates, amount, at=at)
    if draws is None:
        return
    by_id = {b.account_id: b for b in candidates}
    taken = dict(draws)
    # The draws come in the spending order ...
    keys = [draw_order(by_id[account_id]) for account_id, _ in draws]
    assert keys == sorted(keys)
    # ... and a bucket is drawn on only once every usable bucket before it is empty.
    last = max(keys)
    for earlier in candidates:
        if earlier.usable_at(at) and earlier.available > 0 and draw_order(earlier) < last:
            assert taken.get(earlier.account_id) == earlier.available, (earlier, draws)


@given(candidates=wallets(), at=instants, amount=st.integers(1, 400))
def test_a_draw_never_changes_with_the_order_it_is_given_the_buckets_in(
    candidates: list[Bucket], at: datetime, amount: int
) -> None:
    assert draw(candidates, amount, at=at) == draw(list(reversed(candidates)), amount, at=at)


def test_ties_at_one_expiry_date_go_by_program_id_before_account_id() -> None:
    july = date(2026, 7, 31)
    candidates = [
        bucket(5, july, 10, program_id="prg_b"),
        bucket(9, july, 20, program_id="prg_a"),
        bucket(7, july, 5, program_id="prg_a"),
        bucket(1, date(2026, 8, 31), 10, program_id="prg_a"),
    ]
    assert draw(candidates, 30, at=NOW) == [(7, 5), (9, 20), (5, 5)]
    assert draw(candidates, 45, at=NOW) == [(7, 5), (9, 20), (5, 10), (1, 10)]
    assert draw(candidates, 46, at=NOW) is None


def test_a_draw_skips_what_is_held_closed_or_expired_at_its_instant() -> None:
    candidates = [
        bucket(1, date(2026, 6, 30), 50),  # expired at the start of July 1 in Tokyo
        bucket(2, date(2026, 7, 1), 10, held=4),
        bucket(3, date(2026, 7, 2), 30, closed=True),
        bucket(4, date(2026, 7, 3), 10),
    ]
    assert available_at(candidates, NOW) == 6 + 10
    assert draw(candidates, 8, at=NOW) == [(2, 6), (4, 2)]
    # A hold timing out after July 1 in Tokyo (15:00 UTC) can use only the July 3 bucket.
    last_instant_of_july_1 = datetime(2026, 7, 1, 14, 59, 59, 999_999, tzinfo=UTC)
    assert draw(candidates, 8, at=last_instant_of_july_1) == [(2, 6), (4, 2)]
    assert draw(candidates, 8, at=last_instant_of_july_1 + timedelta(microseconds=1)) == [(4, 8)]
    assert draw(candidates, 11, at=last_instant_of_july_1 + timedelta(microseconds=1)) is None


def test_a_partial_post_draws_on_the_holds_shares_earliest_first() -> None:
    """A hold's shares as a partial post sees them: what is posted is the earliest-expiring,
    so what is released is the latest-expiring."""
    held = [
        Share(8, "prg_a", date(2026, 9, 30), 5),
        Share(3, "prg_b", date(2026, 7, 31), 10),
        Share(4, "prg_a", date(2026, 7, 31), 20),
        Share(6, "prg_b", date(2026, 8, 31), 10),
    ]
    timeout = NOW + timedelta(days=2)
    assert draw(held, 25, at=timeout) == [(4, 20), (3, 5)]
    assert draw(held, 45, at=timeout) == [(4, 20), (3, 10), (6, 10), (8, 5)]


# The return -----------------------------------------------------------------------------------


@st.composite
def returns_of_a_spend(draw_: st.DrawFn) -> tuple[list[Share], list[int]]:
    """A spend's shares and a series of refunds of it, in all no more than it took."""
    given = draw_(spends())
    left = sum(share.amount for share in given)
    amounts = []
    while left and draw_(st.booleans()):
        amount = draw_(st.integers(1, left))
        amounts.append(amount)
        left -= amount
    return given, amounts


@given(case=returns_of_a_spend(), extra=st.integers(1, 5))
def test_returns_never_give_a_bucket_more_than_it_gave_less_earlier_returns(
    case: tuple[list[Share], list[int]], extra: int
) -> None:
    given, amounts = case
    gave = {share.account_id: share.amount for share in given}
    returned: Counter[int] = Counter()
    for amount in amounts:
        shares = return_latest_first(given, returned, amount)
        assert shares is not None
        assert sum(points for _, points in shares) == amount
        assert len({account_id for account_id, _ in shares}) == len(shares)
        for account_id, points in shares:
            assert 0 < points <= gave[account_id] - returned[account_id]
        returned.update(dict(shares))
    room = sum(gave.values()) - sum(returned.values())
    assert return_latest_first(given, returned, room + extra) is None
    if room:
        last = return_latest_first(given, returned, room)
        assert last is not None
        returned.update(dict(last))
    # Everything returned: each bucket got back exactly what it gave.
    assert dict(returned) == gave


@given(given=spends(), data=st.data())
def test_a_return_goes_latest_expiry_first(given: list[Share], data: st.DataObject) -> None:
    total = sum(share.amount for share in given)
    amount = data.draw(st.integers(1, total), label="amount")
    shares = return_latest_first(given, {}, amount)
    assert shares is not None
    by_id = {share.account_id: share for share in given}
    keys = [draw_order(by_id[account_id]) for account_id, _ in shares]
    assert keys == sorted(keys, reverse=True)
    back = dict(shares)
    earliest = min(keys)
    for later in given:
        if draw_order(later) > earliest:
            assert back.get(later.account_id) == later.amount, (later, shares)


@given(candidates=wallets(), at=instants, data=st.data())
def test_returning_all_of_a_draw_gives_each_bucket_back_what_it_gave(
    candidates: list[Bucket], at: datetime, data: st.DataObject
) -> None:
    can = available_at(candidates, at)
    if not can:
        return
    amount = data.draw(st.integers(1, can), label="amount")
    draws = draw(candidates, amount, at=at)
    assert draws is not None
    by_id = {b.account_id: b for b in candidates}
    given = [
        Share(account_id, by_id[account_id].program_id, by_id[account_id].valid_until, points)
        for account_id, points in draws
    ]
    shares = return_latest_first(given, {}, amount)
    assert shares == list(reversed(draws))


def test_a_return_skips_what_earlier_returns_gave_back() -> None:
    given = [
        Share(1, "prg_a", date(2026, 7, 31), 20),
        Share(2, "prg_b", date(2026, 7, 31), 10),
        Share(3, "prg_a", date(2026, 8, 31), 10),
        Share(4, "prg_a", date(2026, 9, 30), 5),
    ]
    assert return_latest_first(given, {}, 8) == [(4, 5), (3, 3)]
    assert return_latest_first(given, {4: 5, 3: 3}, 10) == [(3, 7), (2, 3)]
    assert return_latest_first(given, {4: 5, 3: 10, 2: 3}, 27) == [(2, 7), (1, 20)]
    assert return_latest_first(given, {4: 5, 3: 10, 2: 3}, 28) is None
