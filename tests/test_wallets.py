"""Wallets as expiry buckets (``points.wallets``, ``points.spending``, ``points.wallet_views``):
spending order, holds, refunds, closing, reading, idempotency and concurrency, on SQLite and
(when configured) PostgreSQL.

Points get into wallets the real way (programs, budgets, awards: ``issuers``); a wallet's
buckets are read back from the ledger. Dates are Tokyo dates: a Tokyo day starts at 15:00 UTC
the day before, so points valid until D are spendable until D 14:59:59.999999 UTC.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from concurrency import run_together
from conftest import FakeClock
from earning_helpers import ACTOR, Earning
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

import ledger
from issuers import awards, programs
from issuers.programs import Program, ProgramStatus
from ledger import Balance, Entry, LedgerTx, Phase, Side
from ledger.errors import (
    HoldAlreadyResolved,
    HoldExpired,
    HoldNotPending,
    IdempotencyConflict,
)
from points import spending, wallet_views, wallets
from points.audit import AuditEvent
from points.calendar import NEVER, TOKYO
from points.errors import Conflict, InsufficientPoints, InvalidInput, WalletClosed
from points.pointtypes import ExpiryRule, PointType
from points.spending import Spend
from points.wallet_views import LineState
from points.wallets import Bucket

MERCHANT_CODE = 400
#: Enough budget for every test here.
BUDGET = 1_000_000


def tokyo(
    year: int,
    month: int,
    day: int,
    hour: int = 12,
    minute: int = 0,
    second: int = 0,
    microsecond: int = 0,
) -> datetime:
    """A Tokyo wall-clock time as a UTC instant."""
    return datetime(year, month, day, hour, minute, second, microsecond, tzinfo=TOKYO).astimezone(
        UTC
    )


def last_instant_of(day: date) -> datetime:
    """The last microsecond of ``day`` in Tokyo (14:59:59.999999 UTC)."""
    return tokyo(day.year, day.month, day.day, 23, 59, 59, 999_999)


class World:
    """One point type, its programs, residents and a merchant account, with short verbs."""

    def __init__(self, engine: Engine, clock: FakeClock, **policy: Any) -> None:
        self.engine = engine
        self.clock = clock
        self.earning = Earning(engine, clock)
        policy.setdefault("expiry_rule", ExpiryRule.MONTHS)
        policy.setdefault("expiry_months", 2)
        self.pt = self.earning.point_type(**policy)
        self.merchant = self.new_merchant("mer_x")
        self.records = itertools.count(1)

    # Setting up ----------------------------------------------------------------------------

    def new_merchant(self, owner: str) -> int:
        return self.earning.write(
            lambda s: (
                LedgerTx(s.connection(), self.clock)
                .create_account(
                    ledger_id=self.pt.ledger_id,
                    code=MERCHANT_CODE,
                    normal_side=Side.CREDIT,
                    owner_ref=owner,
                )
                .id
            )
        )

    def program(self, amount: int, name_ja: str = "特定健診", name_en: str = "Checkup") -> Program:
        new = programs.NewProgram(
            department_id=self.earning.department().id,
            point_type_id=self.pt.id,
            module="fixed_award",
            name_ja=name_ja,
            name_en=name_en,
            amount=amount,
            valid_from=date(2026, 4, 1),
        )
        created = self.earning.write(lambda s: programs.create_program(s, ACTOR, self.clock(), new))
        active = self.earning.write(
            lambda s: programs.change_status(
                s, ACTOR, self.clock(), created.id, ProgramStatus.ACTIVE, reason="start"
            )
        )
        self.earning.allocate(active, 2026, BUDGET)
        return active

    def programs_by_id(self, *amounts: int) -> list[Program]:
        """Programs with these amounts, ordered by id (the spend order's tie-break)."""
        made = [self.program(amount) for amount in amounts]
        return sorted(made, key=lambda program: program.id)

    def resident(self) -> str:
        return self.earning.resident()

    # Acting --------------------------------------------------------------------------------

    def award(self, program: Program, resident_id: str) -> awards.Award:
        result = self.earning.award(program, resident_id, f"REC-{next(self.records)}")
        assert not result.replayed
        return result.award

    def spend(self, resident_id: str, amount: int, **options: Any) -> Entry:
        options.setdefault("to_account_id", self.merchant)
        return self.earning.spend(self.pt, Spend(resident_id, amount, **options))

    def hold(self, resident_id: str, amount: int, until: datetime, **options: Any) -> Entry:
        return self.spend(resident_id, amount, hold_until=until, **options)

    def post_hold(self, hold_id: int, amount: int | None = None) -> Entry:
        return self.earning.write(
            lambda s: spending.post_hold(s, hold_id, self.clock(), amount=amount)
        )

    def void(self, hold_id: int) -> Entry:
        return self.earning.write(
            lambda s: LedgerTx(s.connection(), self.clock).void_pending(hold_id)
        )

    def refund(self, entry_id: int, amount: int, **options: Any) -> Entry:
        return self.earning.write(
            lambda s: spending.refund(s, self.fresh(s), entry_id, amount, self.clock(), **options)
        )

    def close(self, resident_id: str, reason: str = "moved out") -> tuple[Any, int, list[int]]:
        return self.earning.write(
            lambda s: wallets.close_wallet(
                s, ACTOR, self.clock(), self.fresh(s), resident_id, reason=reason
            )
        )

    def fresh(self, session: Session) -> PointType:
        found = session.get(PointType, self.pt.id)
        assert found is not None
        return found

    # Reading -------------------------------------------------------------------------------

    def buckets(self, resident_id: str) -> list[Bucket]:
        return self.earning.buckets(self.pt, resident_id)

    def bucket(self, resident_id: str, account_id: int) -> Bucket:
        return next(b for b in self.buckets(resident_id) if b.account_id == account_id)

    def balance(self, account_id: int) -> Balance:
        return self.earning.balance(account_id)

    def expired(self) -> int:
        return self.balance(self.pt.expired_account_id).posted

    def view(self, resident_id: str, notice_days: int = 30) -> wallet_views.WalletView:
        return self.earning.read(
            lambda s: wallet_views.wallet_view(
                s, self.fresh(s), resident_id, self.clock(), notice_days
            )
        )

    def history(
        self, resident_id: str, *, before: int | None = None, limit: int = 50
    ) -> list[wallet_views.HistoryItem]:
        return self.earning.read(
            lambda s: wallet_views.wallet_history(
                s, self.fresh(s), resident_id, before=before, limit=limit
            )
        )

    def get_entry(self, entry_id: int) -> Entry:
        return self.earning.read(lambda s: LedgerTx(s.connection(), self.clock).get_entry(entry_id))

    def count(self, table: str) -> int:
        return self.earning.read(
            lambda s: int(s.connection().exec_driver_sql(f"SELECT count(*) FROM {table}").scalar())
        )

    def verify(self) -> None:
        report = ledger.Ledger(self.engine, clock=self.clock).verify(unsealed_grace_seconds=10**9)
        assert report.ok, report.problems


def debits(entry: Entry) -> list[tuple[int, int]]:
    return [(p.account_id, p.amount) for p in entry.postings if p.side is Side.DEBIT]


def credits(entry: Entry) -> list[tuple[int, int]]:
    return [(p.account_id, p.amount) for p in entry.postings if p.side is Side.CREDIT]


def posted(world: World, resident_id: str) -> dict[int, int]:
    return {b.account_id: b.posted for b in world.buckets(resident_id)}


def available(world: World, resident_id: str) -> dict[int, int]:
    return {b.account_id: b.available for b in world.buckets(resident_id)}


# A wallet of four buckets --------------------------------------------------------------------


class Ladder:
    """A resident's wallet (two-month expiry) of five buckets, built by awards in four months:

    ======  ============  ======  ================================================
    name    valid until   amount  how
    ======  ============  ======  ================================================
    old     2026-06-30    20      program ``lo`` on April 1 (expired on July 1)
    tie_hi  2026-07-31    10      ``hi`` on May 1 (created first: smaller account id)
    tie_lo  2026-07-31    20      ``lo`` on May 1
    mid     2026-08-31    10      ``hi`` on June 1
    new     2026-09-30    20      ``lo`` on July 1
    ======  ============  ======  ================================================

    ``lo`` has the smaller program id, so at equal expiry its bucket is drawn first even though
    ``hi``'s bucket has the smaller account id. The clock ends on July 1, 09:00 in Tokyo, with
    60 points spendable (and 20 expired).
    """

    def __init__(self, world: World) -> None:
        self.world = world
        clock = world.clock
        self.hi = world.program(10)
        self.lo = world.program(20)
        while self.lo.id > self.hi.id:  # ids are random: half the time at once
            self.lo = world.program(20)
        self.resident = world.resident()
        clock.now = tokyo(2026, 4, 1, 9)
        self.old = world.award(self.lo, self.resident).bucket_account_id
        clock.now = tokyo(2026, 5, 1, 9)
        self.tie_hi = world.award(self.hi, self.resident).bucket_account_id
        self.tie_lo = world.award(self.lo, self.resident).bucket_account_id
        clock.now = tokyo(2026, 6, 1, 9)
        self.mid = world.award(self.hi, self.resident).bucket_account_id
        clock.now = tokyo(2026, 7, 1, 9)
        self.new = world.award(self.lo, self.resident).bucket_account_id
        assert self.tie_hi < self.tie_lo


@pytest.fixture
def world(engine: Engine, clock: FakeClock) -> World:
    return World(engine, clock)


# Spending order ---------------------------------------------------------------------------------


def test_buckets_are_one_per_program_and_expiry_date(world: World) -> None:
    ladder = Ladder(world)
    found = world.buckets(ladder.resident)
    assert [(b.account_id, b.program_id, b.valid_until, b.posted) for b in found] == [
        (ladder.old, ladder.lo.id, date(2026, 6, 30), 20),
        (ladder.tie_lo, ladder.lo.id, date(2026, 7, 31), 20),
        (ladder.tie_hi, ladder.hi.id, date(2026, 7, 31), 10),
        (ladder.mid, ladder.hi.id, date(2026, 8, 31), 10),
        (ladder.new, ladder.lo.id, date(2026, 9, 30), 20),
    ]
    # A second award on the same day and program lands in the same bucket.
    again = world.award(ladder.lo, ladder.resident)
    assert again.bucket_account_id == ladder.new
    assert world.bucket(ladder.resident, ladder.new).posted == 40


def test_spend_draws_earliest_expiry_first_ties_by_program_id(world: World) -> None:
    ladder = Ladder(world)
    entry = world.spend(ladder.resident, 45)
    # ``old`` expired on June 30 and is skipped; at equal expiry ``lo`` before ``hi``.
    assert debits(entry) == [
        (ladder.tie_lo, 20),
        (ladder.tie_hi, 10),
        (ladder.mid, 10),
        (ladder.new, 5),
    ]
    assert credits(entry) == [(world.merchant, 45)]
    assert entry.phase is Phase.POSTED and entry.kind == "payment"
    assert posted(world, ladder.resident) == {
        ladder.old: 20,
        ladder.tie_lo: 0,
        ladder.tie_hi: 0,
        ladder.mid: 0,
        ladder.new: 15,
    }
    assert world.balance(world.merchant).posted == 45
    world.verify()


def test_spend_takes_one_bucket_when_it_is_enough(world: World) -> None:
    ladder = Ladder(world)
    entry = world.spend(ladder.resident, 7)
    assert debits(entry) == [(ladder.tie_lo, 7)]
    second = world.spend(ladder.resident, 14)
    assert debits(second) == [(ladder.tie_lo, 13), (ladder.tie_hi, 1)]


def test_a_bucket_is_spendable_until_the_end_of_its_day_in_tokyo(world: World) -> None:
    program = world.program(30)
    resident = world.resident()
    world.clock.now = tokyo(2026, 4, 15)
    early = world.award(program, resident).bucket_account_id  # valid until June 30
    world.clock.now = tokyo(2026, 5, 2)
    late = world.award(program, resident).bucket_account_id  # valid until July 31

    world.clock.now = datetime(2026, 6, 30, 14, 59, 59, 999_999, tzinfo=UTC)  # 23:59:59 Tokyo
    assert debits(world.spend(resident, 5)) == [(early, 5)]

    world.clock.now = datetime(2026, 6, 30, 15, 0, tzinfo=UTC)  # July 1, 00:00 in Tokyo
    entry = world.spend(resident, 5)
    assert debits(entry) == [(late, 5)]
    with pytest.raises(InsufficientPoints) as refused:
        world.spend(resident, 26)
    assert refused.value.context == {"available": 25, "requested": 26}
    # The expired bucket keeps its points (the expiry job moves them, not a spend).
    assert posted(world, resident) == {early: 25, late: 25}


def test_insufficient_points_writes_nothing(world: World) -> None:
    ladder = Ladder(world)
    before = (world.count("ledger_entry"), world.count("ledger_posting"))
    balances = posted(world, ladder.resident)
    with pytest.raises(InsufficientPoints) as refused:
        world.spend(ladder.resident, 61)  # 60 unexpired, 20 more expired
    assert refused.value.code == "insufficient_balance"
    assert refused.value.context == {"available": 60, "requested": 61}
    assert "60" in refused.value.message
    assert (world.count("ledger_entry"), world.count("ledger_posting")) == before
    assert posted(world, ladder.resident) == balances
    # Exactly what is available still goes through.
    assert sum(amount for _, amount in debits(world.spend(ladder.resident, 60))) == 60
    with pytest.raises(InsufficientPoints) as empty:
        world.spend(ladder.resident, 1)
    assert empty.value.context == {"available": 0, "requested": 1}


def test_a_resident_without_a_wallet_has_nothing_to_spend(world: World) -> None:
    resident = world.resident()
    with pytest.raises(InsufficientPoints) as refused:
        world.spend(resident, 1)
    assert refused.value.context["available"] == 0
    assert world.count("wallet") == 0


@pytest.mark.parametrize("amount", [0, -5, True, 2.5, "10"])
def test_spend_amount_is_a_positive_integer(world: World, amount: Any) -> None:
    program = world.program(10)
    resident = world.resident()
    world.award(program, resident)
    with pytest.raises(InvalidInput) as refused:
        world.spend(resident, amount)
    assert refused.value.context.get("field") == "amount"


# Holds ----------------------------------------------------------------------------------------


def test_a_hold_draws_only_from_buckets_valid_at_its_timeout(world: World) -> None:
    program = world.program(20)
    resident = world.resident()
    world.clock.now = tokyo(2026, 4, 15)
    early = world.award(program, resident).bucket_account_id  # valid until June 30
    world.clock.now = tokyo(2026, 5, 20)
    late = world.award(program, resident).bucket_account_id  # valid until July 31

    # Timing out at the last instant of June 30 in Tokyo: the early bucket is still good.
    hold = world.hold(resident, 25, last_instant_of(date(2026, 6, 30)))
    assert hold.phase is Phase.PENDING
    assert debits(hold) == [(early, 20), (late, 5)]
    assert hold.timeout_at == last_instant_of(date(2026, 6, 30))
    world.void(hold.id)

    # Timing out at July 1, 00:00 in Tokyo: only the late bucket may be held.
    july = tokyo(2026, 7, 1, 0)
    second = world.hold(resident, 15, july)
    assert debits(second) == [(late, 15)]
    with pytest.raises(InsufficientPoints) as refused:
        world.hold(resident, 6, july)
    assert refused.value.context == {"available": 5, "requested": 6}
    assert "timeout" in refused.value.message
    # A payment at once may still use the early bucket.
    assert debits(world.spend(resident, 6)) == [(early, 6)]
    world.verify()


def test_a_hold_timeout_is_in_the_future(world: World) -> None:
    program = world.program(20)
    resident = world.resident()
    world.award(program, resident)
    with pytest.raises(InvalidInput) as refused:
        world.hold(resident, 5, world.clock())
    assert refused.value.context.get("field") == "hold_until"


def test_a_hold_keeps_points_and_a_void_gives_them_back(world: World) -> None:
    ladder = Ladder(world)
    hold = world.hold(ladder.resident, 25, world.clock() + timedelta(hours=2))
    assert debits(hold) == [(ladder.tie_lo, 20), (ladder.tie_hi, 5)]
    assert available(world, ladder.resident)[ladder.tie_lo] == 0
    assert world.bucket(ladder.resident, ladder.tie_hi).held == 5
    assert world.bucket(ladder.resident, ladder.tie_hi).posted == 10
    assert world.view(ladder.resident).balance == 35
    assert world.view(ladder.resident).held == 25
    # A payment meanwhile goes around what is held.
    assert debits(world.spend(ladder.resident, 6)) == [(ladder.tie_hi, 5), (ladder.mid, 1)]

    world.void(hold.id)
    assert available(world, ladder.resident)[ladder.tie_lo] == 20
    assert world.bucket(ladder.resident, ladder.tie_hi).held == 0
    assert world.view(ladder.resident).balance == 54
    assert world.balance(world.merchant).posted == 6
    with pytest.raises(HoldAlreadyResolved):
        world.post_hold(hold.id)
    world.verify()


def test_a_partial_post_takes_the_earliest_buckets_and_releases_the_rest(
    world: World,
) -> None:
    ladder = Ladder(world)
    hold = world.hold(ladder.resident, 45, world.clock() + timedelta(days=2))
    assert debits(hold) == [
        (ladder.tie_lo, 20),
        (ladder.tie_hi, 10),
        (ladder.mid, 10),
        (ladder.new, 5),
    ]
    post_entry = world.post_hold(hold.id, amount=25)
    assert post_entry.phase is Phase.POST_PENDING and post_entry.pending_id == hold.id
    assert post_entry.kind == "payment_post"
    assert debits(post_entry) == [(ladder.tie_lo, 20), (ladder.tie_hi, 5)]
    assert credits(post_entry) == [(world.merchant, 25)]
    assert posted(world, ladder.resident) == {
        ladder.old: 20,
        ladder.tie_lo: 0,
        ladder.tie_hi: 5,
        ladder.mid: 10,
        ladder.new: 20,
    }
    assert all(b.held == 0 for b in world.buckets(ladder.resident))
    merchant = world.balance(world.merchant)
    assert (merchant.posted, merchant.credits_pending) == (25, 0)
    world.verify()


def test_a_partial_post_across_three_buckets(world: World) -> None:
    ladder = Ladder(world)
    hold = world.hold(ladder.resident, 35, world.clock() + timedelta(days=1))
    post_entry = world.post_hold(hold.id, amount=31)
    assert debits(post_entry) == [(ladder.tie_lo, 20), (ladder.tie_hi, 10), (ladder.mid, 1)]
    assert world.bucket(ladder.resident, ladder.mid).available == 9
    assert world.bucket(ladder.resident, ladder.new).available == 20


def test_a_post_in_full_posts_everything_held(world: World) -> None:
    ladder = Ladder(world)
    hold = world.hold(ladder.resident, 35, world.clock() + timedelta(hours=1))
    post_entry = world.post_hold(hold.id)
    assert post_entry.phase is Phase.POST_PENDING
    assert sorted(post_entry.postings, key=lambda p: (p.side, p.account_id)) == sorted(
        hold.postings, key=lambda p: (p.side, p.account_id)
    )
    assert world.balance(world.merchant).posted == 35
    assert sum(b.posted for b in world.buckets(ladder.resident)) == 20 + 25  # old + the rest
    with pytest.raises(HoldAlreadyResolved):
        world.post_hold(hold.id, amount=1)
    with pytest.raises(HoldNotPending):
        world.post_hold(post_entry.id)
    world.verify()


def test_a_post_refuses_more_than_held_and_a_timed_out_hold(world: World) -> None:
    ladder = Ladder(world)
    hold = world.hold(ladder.resident, 30, world.clock() + timedelta(hours=1))
    for amount in (0, 31, -1):
        with pytest.raises(InvalidInput):
            world.post_hold(hold.id, amount=amount)
    payment = world.spend(ladder.resident, 1)
    with pytest.raises(HoldNotPending):
        world.post_hold(payment.id, amount=1)
    world.clock.advance(hours=1)
    with pytest.raises(HoldExpired):
        world.post_hold(hold.id, amount=10)
    with pytest.raises(HoldExpired):
        world.post_hold(hold.id)
    # Still voidable after its timeout.
    world.void(hold.id)
    assert world.view(ladder.resident).balance == 59


# Refunds --------------------------------------------------------------------------------------


def test_partial_refunds_go_latest_expiry_first_and_never_exceed_the_spend(world: World) -> None:
    ladder = Ladder(world)
    spend = world.spend(ladder.resident, 45)  # tie_lo 20, tie_hi 10, mid 10, new 5
    before = posted(world, ladder.resident)

    first = world.refund(spend.id, 8)
    assert first.kind == "refund"
    assert debits(first) == [(world.merchant, 8)]
    assert sorted(credits(first)) == sorted([(ladder.new, 5), (ladder.mid, 3)])
    assert first.metadata == {"refund_of": spend.id, "buckets": [[ladder.new, 5], [ladder.mid, 3]]}

    second = world.refund(spend.id, 10)  # mid 7, then the June bucket(s)
    second_credits = dict(credits(second))
    assert second_credits.pop(ladder.mid) == 7
    assert sum(second_credits.values()) == 3
    assert set(second_credits) <= {ladder.tie_lo, ladder.tie_hi}

    with pytest.raises(InvalidInput) as too_much:
        world.refund(spend.id, 28)
    assert too_much.value.context["returnable"] == 27

    last = world.refund(spend.id, 27)
    assert sum(amount for _, amount in credits(last)) == 27
    after = posted(world, ladder.resident)
    # Every bucket got back exactly what the spend took from it.
    assert after == {**before, ladder.tie_lo: 20, ladder.tie_hi: 10, ladder.mid: 10, ladder.new: 20}
    assert world.balance(world.merchant).posted == 0
    with pytest.raises(InvalidInput) as nothing_left:
        world.refund(spend.id, 1)
    assert nothing_left.value.context["returnable"] == 0
    assert world.expired() == 0
    world.verify()


def test_a_refund_to_a_bucket_expired_since_goes_to_expired_points(world: World) -> None:
    program = world.program(20)
    resident = world.resident()
    world.clock.now = tokyo(2026, 4, 15)
    early = world.award(program, resident).bucket_account_id  # valid until June 30
    world.clock.now = tokyo(2026, 5, 20)
    late = world.award(program, resident).bucket_account_id  # valid until July 31
    spend = world.spend(resident, 30)
    assert debits(spend) == [(early, 20), (late, 10)]

    world.clock.now = last_instant_of(date(2026, 6, 30))
    first = world.refund(spend.id, 12)  # latest first: late 10, early 2 (still valid)
    assert sorted(credits(first)) == sorted([(late, 10), (early, 2)])

    world.clock.now = tokyo(2026, 7, 1, 0)  # the early bucket has expired
    second = world.refund(spend.id, 15)
    assert credits(second) == [(world.pt.expired_account_id, 15)]
    assert second.metadata["buckets"] == [[early, 15]]
    assert world.expired() == 15
    assert posted(world, resident) == {early: 2, late: 20}
    # The view counts only the late bucket.
    assert world.view(resident).balance == 20
    world.verify()


def test_a_refund_after_the_wallet_was_closed_goes_to_expired_points(world: World) -> None:
    ladder = Ladder(world)
    spend = world.spend(ladder.resident, 40)
    _, moved, _ = world.close(ladder.resident)
    assert moved == 20 + 20  # the expired bucket and what is left of ``new``
    refund = world.refund(spend.id, 25)
    assert debits(refund) == [(world.merchant, 25)]
    assert credits(refund) == [(world.pt.expired_account_id, 25)]
    assert sum(share for _, share in refund.metadata["buckets"]) == 25
    assert world.expired() == 40 + 25
    assert all(b.posted == 0 and b.closed for b in world.buckets(ladder.resident))
    world.verify()


def test_a_refund_of_a_posted_hold_returns_to_the_buckets_it_was_posted_from(world: World) -> None:
    ladder = Ladder(world)
    hold = world.hold(ladder.resident, 45, world.clock() + timedelta(days=1))
    post_entry = world.post_hold(hold.id, amount=25)  # tie_lo 20, tie_hi 5
    with pytest.raises(InvalidInput):
        world.refund(hold.id, 5)  # a hold is not a posted spend
    with pytest.raises(InvalidInput):
        world.refund(post_entry.id, 26)
    refund = world.refund(post_entry.id, 25)
    assert sorted(credits(refund)) == sorted([(ladder.tie_lo, 20), (ladder.tie_hi, 5)])
    assert world.view(ladder.resident).balance == 60
    world.verify()


def test_only_a_spend_from_a_wallet_can_be_refunded(world: World) -> None:
    ladder = Ladder(world)
    award_entry = world.earning.award(ladder.lo, ladder.resident, "REC-X").award.entry_id
    with pytest.raises(InvalidInput):
        world.refund(award_entry, 1)
    spend = world.spend(ladder.resident, 10)
    refund = world.refund(spend.id, 5)
    with pytest.raises(InvalidInput):
        world.refund(refund.id, 1)
    for amount in (0, -1, True):
        with pytest.raises(InvalidInput):
            world.refund(spend.id, amount)


def test_a_refund_replayed_with_its_key_returns_the_first_entry(world: World) -> None:
    ladder = Ladder(world)
    spend = world.spend(ladder.resident, 30)
    first = world.refund(spend.id, 10, namespace="returns", idempotency_key="R1")
    again = world.refund(spend.id, 10, namespace="returns", idempotency_key="R1")
    assert again.id == first.id
    assert world.balance(world.merchant).posted == 20
    assert world.count("spend_return") == 1


def test_a_refund_key_reused_for_another_amount_is_a_conflict(world: World) -> None:
    ladder = Ladder(world)
    spend = world.spend(ladder.resident, 30)
    world.refund(spend.id, 10, namespace="returns", idempotency_key="R1")
    with pytest.raises(IdempotencyConflict):
        world.refund(spend.id, 15, namespace="returns", idempotency_key="R1")


def test_a_spend_from_more_buckets_than_an_entry_holds_is_refused_and_a_closure_chunks(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With at most 2 buckets per entry (the ledger's 64 postings, made small): a payment that
    would draw on 3 is refused (nothing written); closing moves 5 buckets in 3 entries."""
    ladder = Ladder(world)
    # Spending and closing each read the limit from their own module.
    monkeypatch.setattr(spending, "BUCKETS_PER_SPEND_MAX", 2)
    monkeypatch.setattr(wallets, "BUCKETS_PER_SPEND_MAX", 2)
    entries = world.count("ledger_entry")
    with pytest.raises(InvalidInput) as refused:
        world.spend(ladder.resident, 31)  # tie_lo 20, tie_hi 10, mid 1
    assert "split" in refused.value.message
    assert world.count("ledger_entry") == entries
    assert debits(world.spend(ladder.resident, 30)) == [(ladder.tie_lo, 20), (ladder.tie_hi, 10)]
    world.refund(world.spend(ladder.resident, 10).id, 4)  # mid drained, then 4 back
    _, moved, entry_ids = world.close(ladder.resident)
    assert moved == 20 + 4 + 20  # old, mid, new (the drained July buckets move nothing)
    assert len(entry_ids) == 2
    closing = [world.get_entry(entry_id) for entry_id in entry_ids]
    assert [len(debits(entry)) for entry in closing] == [2, 1]
    assert world.expired() == 44
    assert all(b.closed and b.posted == 0 for b in world.buckets(ladder.resident))
    world.verify()


# Closing ----------------------------------------------------------------------------------------


def test_close_wallet_moves_everything_to_expired_points(world: World) -> None:
    ladder = Ladder(world)
    world.spend(ladder.resident, 5)
    wallet, moved, entry_ids = world.close(ladder.resident, reason="moved out of the city")
    assert wallet.status == "closed"
    assert wallet.closed_reason == "moved out of the city"
    assert wallet.closed_by == ACTOR.principal_id
    assert wallet.closed_at == world.clock()
    assert moved == 80 - 5  # the expired bucket too
    assert len(entry_ids) == 1
    entry = world.get_entry(entry_ids[0])
    assert entry.kind == "wallet_closed" and entry.description == "moved out of the city"
    assert credits(entry) == [(world.pt.expired_account_id, 75)]
    assert sum(amount for _, amount in debits(entry)) == 75
    assert world.expired() == 75
    found = world.buckets(ladder.resident)
    assert all(b.closed and b.posted == 0 and b.held == 0 for b in found)
    assert all(
        world.earning.read(
            lambda s, b=b: LedgerTx(s.connection(), world.clock).get_account(b.account_id).closed
        )
        for b in found
    )

    view = world.view(ladder.resident)
    assert (view.status, view.balance, view.by_expiry) == ("closed", 0, [])
    with pytest.raises(WalletClosed) as award_refused:
        world.earning.award(ladder.lo, ladder.resident, "REC-after")
    assert award_refused.value.code == "wallet_closed"
    with pytest.raises(WalletClosed) as spend_refused:
        world.spend(ladder.resident, 1)
    assert spend_refused.value.code == "wallet_closed"
    with pytest.raises(WalletClosed):
        world.close(ladder.resident)

    events = world.earning.read(
        lambda s: list(s.exec(select(AuditEvent).where(AuditEvent.action == "wallet.close")))
    )
    assert [(e.object_id, e.reason) for e in events] == [(ladder.resident, "moved out of the city")]
    world.verify()


def test_close_wallet_refuses_while_a_hold_is_pending(world: World) -> None:
    ladder = Ladder(world)
    hold = world.hold(ladder.resident, 10, world.clock() + timedelta(hours=3))
    before = world.count("ledger_entry")
    with pytest.raises(Conflict) as refused:
        world.close(ladder.resident)
    assert refused.value.code == "wallet_has_pending"
    assert world.count("ledger_entry") == before
    assert world.view(ladder.resident).status == "open"
    assert not any(b.closed for b in world.buckets(ladder.resident))
    world.void(hold.id)
    _, moved, _ = world.close(ladder.resident)
    assert moved == 80


def test_close_wallet_needs_a_reason(world: World) -> None:
    ladder = Ladder(world)
    with pytest.raises(InvalidInput):
        world.close(ladder.resident, reason="  ")
    assert world.view(ladder.resident).status == "open"


def test_a_never_used_wallet_can_be_closed_and_then_takes_no_award(world: World) -> None:
    program = world.program(10)
    resident = world.resident()
    wallet, moved, entry_ids = world.close(resident, reason="deceased")
    assert (wallet.status, moved, entry_ids) == ("closed", 0, [])
    with pytest.raises(WalletClosed):
        world.earning.award(program, resident, "REC-1")
    assert world.buckets(resident) == []


# Reading: the wallet view -----------------------------------------------------------------------


def test_wallet_view_counts_unexpired_points_by_expiry_date(world: World) -> None:
    ladder = Ladder(world)  # July 1: ``old`` (June 30) has expired
    view = world.view(ladder.resident, notice_days=30)
    assert view.status == "open"
    assert (view.balance, view.held) == (60, 0)
    # The two buckets of July 31 (two programs) make one line.
    assert [(line.valid_until, line.amount) for line in view.by_expiry] == [
        (date(2026, 7, 31), 30),
        (date(2026, 8, 31), 10),
        (date(2026, 9, 30), 20),
    ]
    assert view.expiring_soon == wallet_views.ExpiryLine(date(2026, 7, 31), 30)
    # July 1 + 29 days is July 30: the nearest expiry is outside the window.
    assert world.view(ladder.resident, notice_days=29).expiring_soon is None
    assert world.view(ladder.resident, notice_days=0).expiring_soon is None
    # On the last day, in Tokyo, a window of 0 days shows it.
    world.clock.now = last_instant_of(date(2026, 7, 31))
    assert world.view(ladder.resident, notice_days=0).expiring_soon == wallet_views.ExpiryLine(
        date(2026, 7, 31), 30
    )
    world.clock.now += timedelta(microseconds=1)
    view = world.view(ladder.resident, notice_days=0)
    assert view.balance == 30
    assert view.expiring_soon is None
    assert world.view(ladder.resident, notice_days=30).expiring_soon == wallet_views.ExpiryLine(
        date(2026, 8, 31), 10
    )


def test_wallet_view_leaves_out_what_is_held_and_empty_dates(world: World) -> None:
    ladder = Ladder(world)
    world.hold(ladder.resident, 35, world.clock() + timedelta(hours=1))  # the July 31 ones, mid 5
    view = world.view(ladder.resident, notice_days=61)  # July 1 + 61 days: August 31
    assert (view.balance, view.held) == (25, 35)
    assert [(line.valid_until, line.amount) for line in view.by_expiry] == [
        (date(2026, 8, 31), 5),
        (date(2026, 9, 30), 20),
    ]
    assert view.expiring_soon == wallet_views.ExpiryLine(date(2026, 8, 31), 5)
    assert world.view(ladder.resident, notice_days=60).expiring_soon is None
    world.spend(ladder.resident, 25)
    view = world.view(ladder.resident, notice_days=61)
    assert (view.balance, view.held, view.by_expiry, view.expiring_soon) == (0, 35, [], None)


def test_wallet_view_of_points_that_never_expire(engine: Engine, clock: FakeClock) -> None:
    world = World(engine, clock, expiry_rule=ExpiryRule.NONE, expiry_months=None)
    program = world.program(15)
    resident = world.resident()
    bucket = world.award(program, resident).bucket_account_id
    assert world.bucket(resident, bucket).valid_until == NEVER
    clock.now = datetime(2040, 1, 1, tzinfo=UTC)
    view = world.view(resident, notice_days=10_000)
    assert view.balance == 15
    assert view.by_expiry == [wallet_views.ExpiryLine(NEVER, 15)]
    assert view.expiring_soon is None
    assert debits(world.spend(resident, 15)) == [(bucket, 15)]


def test_wallet_view_of_a_resident_without_a_wallet(world: World) -> None:
    view = world.view(world.resident())
    assert (view.status, view.balance, view.held, view.by_expiry, view.expiring_soon) == (
        "open",
        0,
        0,
        [],
        None,
    )


# Reading: the history ---------------------------------------------------------------------------


def test_wallet_history_newest_first_with_signed_amounts_and_states(world: World) -> None:
    checkup = world.program(30, name_ja="特定健診", name_en="Health checkup")
    cleanup = world.program(20, name_ja="清掃活動", name_en="Park cleanup")
    resident = world.resident()
    other = world.resident()
    world.award(cleanup, other)  # another wallet: never in this history
    a1 = world.award(checkup, resident).entry_id
    world.clock.advance(minutes=1)
    a2 = world.award(cleanup, resident).entry_id
    world.clock.advance(minutes=1)
    payment = world.spend(resident, 12)
    hold = world.hold(resident, 10, world.clock() + timedelta(hours=1))

    items = world.history(resident)
    assert [(i.entry_id, i.kind, i.amount, i.state) for i in items] == [
        (hold.id, "payment", -10, LineState.PENDING),
        (payment.id, "payment", -12, LineState.POSTED),
        (a2, "award", 20, LineState.POSTED),
        (a1, "award", 30, LineState.POSTED),
    ]
    assert (items[2].text_ja, items[2].text_en) == ("清掃活動 付与", "Park cleanup: awarded")
    assert (items[3].text_ja, items[3].text_en) == ("特定健診 付与", "Health checkup: awarded")
    assert (items[1].text_ja, items[1].text_en) == ("支払い", "payment")
    assert (items[0].text_ja, items[0].text_en) == ("支払い", "payment")
    assert items[3].at == tokyo(2026, 4, 1, 9)
    assert items[0].at == world.clock()

    world.void(hold.id)  # the void has no postings: the hold's own line shows it
    refund = world.refund(payment.id, 5)
    second_hold = world.hold(resident, 7, world.clock() + timedelta(hours=1))
    post_entry = world.post_hold(second_hold.id, amount=4)
    items = world.history(resident)
    # The posted hold is not listed: its posting is the payment, with the amount posted.
    assert [(i.entry_id, i.kind, i.amount, i.state) for i in items] == [
        (post_entry.id, "payment_post", -4, LineState.POSTED),
        (refund.id, "refund", 5, LineState.POSTED),
        (hold.id, "payment", -10, LineState.VOIDED),
        (payment.id, "payment", -12, LineState.POSTED),
        (a2, "award", 20, LineState.POSTED),
        (a1, "award", 30, LineState.POSTED),
    ]
    assert [(i.text_ja, i.text_en) for i in items[:3]] == [
        ("支払い", "payment"),
        ("返還", "refund"),
        ("支払い取消", "payment voided"),
    ]

    _, _, closing = world.close(resident)
    newest = world.history(resident, limit=1)
    assert [(i.entry_id, i.kind, i.amount) for i in newest] == [
        (closing[0], "wallet_closed", -(50 - 12 + 5 - 4))
    ]
    assert newest[0].text_en == "wallet closed"


def test_history_shows_a_hold_pending_then_voided_by_the_merchant_or_the_timeout(
    world: World,
) -> None:
    program = world.program(50)
    resident = world.resident()
    world.award(program, resident)
    declined = world.hold(resident, 10, world.clock() + timedelta(hours=1))
    timed_out = world.hold(resident, 15, world.clock() + timedelta(minutes=30))

    def lines() -> list[tuple[int, int, LineState, str, str]]:
        return [
            (i.entry_id, i.amount, i.state, i.text_ja, i.text_en)
            for i in world.history(resident)
            if i.kind == "payment"
        ]

    assert lines() == [
        (timed_out.id, -15, LineState.PENDING, "支払い", "payment"),
        (declined.id, -10, LineState.PENDING, "支払い", "payment"),
    ]
    assert world.view(resident).held == 25

    world.void(declined.id)
    world.clock.advance(minutes=30)
    # Past its timeout but not yet voided by the job, a hold is still pending.
    assert lines()[0][2] is LineState.PENDING
    assert ledger.Ledger(world.engine, clock=world.clock).void_expired_holds(world.clock()) == 1
    timed_out_words = ("支払い取消（時間切れ）", "payment voided (timed out)")
    assert lines() == [
        (timed_out.id, -15, LineState.VOIDED, *timed_out_words),
        (declined.id, -10, LineState.VOIDED, "支払い取消", "payment voided"),
    ]
    view = world.view(resident)
    assert (view.balance, view.held) == (50, 0)


def test_history_shows_a_posted_hold_once_as_its_payment(world: World) -> None:
    program = world.program(50)
    resident = world.resident()
    award = world.award(program, resident).entry_id
    until = world.clock() + timedelta(hours=1)
    in_full = world.hold(resident, 10, until)
    in_part = world.hold(resident, 20, until)
    full_post = world.post_hold(in_full.id)
    part_post = world.post_hold(in_part.id, amount=12)

    items = world.history(resident)
    assert [(i.entry_id, i.kind, i.amount, i.state, i.text_en) for i in items] == [
        (part_post.id, "payment_post", -12, LineState.POSTED, "payment"),
        (full_post.id, "payment_post", -10, LineState.POSTED, "payment"),
        (award, "award", 50, LineState.POSTED, "Checkup: awarded"),
    ]
    assert items[0].text_ja == "支払い"
    # The lines add up to the balance: no payment counted twice.
    assert sum(i.amount for i in items) == world.view(resident).balance == 28


def test_an_entry_stored_with_a_former_kind_reads_with_todays_words(world: World) -> None:
    """Holds posted before the glossary settled were stored as ``payment_capture``; the entry
    stays as sealed, and the history reads it as a ``payment_post``."""
    program = world.program(50)
    resident = world.resident()
    world.award(program, resident)
    hold = world.hold(resident, 20, world.clock() + timedelta(hours=1))
    stored = world.earning.write(
        lambda s: spending.post_hold(s, hold.id, world.clock(), amount=8, kind="payment_capture")
    )
    assert world.get_entry(stored.id).kind == "payment_capture"
    newest = world.history(resident)[0]
    assert (newest.entry_id, newest.kind, newest.amount, newest.state) == (
        stored.id,
        "payment_post",
        -8,
        LineState.POSTED,
    )
    assert (newest.text_ja, newest.text_en) == ("支払い", "payment")
    assert hold.id not in {i.entry_id for i in world.history(resident)}


@pytest.mark.parametrize("limit", [1, 2, 3, 5])
def test_history_pages_over_posted_and_voided_holds_list_every_line_once(
    world: World, limit: int
) -> None:
    program = world.program(100)
    resident = world.resident()
    world.award(program, resident)
    until = world.clock() + timedelta(hours=1)
    posted_holds = []
    for number in range(4):
        hold = world.hold(resident, 5 + number, until)
        if number % 2 == 0:
            world.post_hold(hold.id, amount=2 if number == 0 else None)
            posted_holds.append(hold.id)
        else:
            world.void(hold.id)
        world.spend(resident, 1)
    world.hold(resident, 3, until)  # still pending

    every = world.history(resident)
    # The award, two posts, two voided holds, four payments and the pending hold.
    assert len(every) == 1 + 2 + 2 + 4 + 1
    assert not {i.entry_id for i in every} & set(posted_holds)
    seen: list[wallet_views.HistoryItem] = []
    before = None
    while True:
        page = world.history(resident, before=before, limit=limit)
        assert len(page) <= limit
        seen += page
        if len(page) < limit:
            break
        before = page[-1].entry_id
    assert seen == every
    assert len({i.entry_id for i in seen}) == len(seen)


def test_wallet_history_pages_with_before(world: World) -> None:
    program = world.program(5)
    resident = world.resident()
    ids = [world.award(program, resident).entry_id for _ in range(7)]
    ids.reverse()
    first = world.history(resident, limit=3)
    assert [i.entry_id for i in first] == ids[:3]
    second = world.history(resident, before=first[-1].entry_id, limit=3)
    assert [i.entry_id for i in second] == ids[3:6]
    third = world.history(resident, before=second[-1].entry_id, limit=3)
    assert [i.entry_id for i in third] == ids[6:]
    assert world.history(resident, before=third[-1].entry_id, limit=3) == []
    assert world.history(world.resident()) == []


# Idempotency ----------------------------------------------------------------------------------


def test_an_idempotent_spend_returns_the_same_entry(world: World) -> None:
    ladder = Ladder(world)
    first = world.spend(ladder.resident, 25, namespace="mer_x", idempotency_key="pay-1")
    entries = world.count("ledger_entry")
    again = world.spend(ladder.resident, 25, namespace="mer_x", idempotency_key="pay-1")
    assert again == first
    assert world.count("ledger_entry") == entries
    assert world.view(ladder.resident).balance == 35
    # The same key in another namespace is another payment.
    other = world.spend(ladder.resident, 25, namespace="mer_y", idempotency_key="pay-1")
    assert other.id != first.id
    assert world.view(ladder.resident).balance == 10


def test_an_idempotency_key_reused_for_another_spend_is_a_conflict(world: World) -> None:
    ladder = Ladder(world)
    first = world.spend(ladder.resident, 25, namespace="mer_x", idempotency_key="pay-1")
    entries = world.count("ledger_entry")
    with pytest.raises(IdempotencyConflict) as conflict:
        world.spend(ladder.resident, 26, namespace="mer_x", idempotency_key="pay-1")
    assert conflict.value.context["entry_id"] == first.id
    other_merchant = world.new_merchant("mer_y")
    with pytest.raises(IdempotencyConflict):
        world.spend(
            ladder.resident,
            25,
            to_account_id=other_merchant,
            namespace="mer_x",
            idempotency_key="pay-1",
        )
    assert world.count("ledger_entry") == entries
    assert world.view(ladder.resident).balance == 35


def test_an_idempotent_hold_replays_after_it_is_posted(world: World) -> None:
    ladder = Ladder(world)
    until = world.clock() + timedelta(hours=1)
    hold = world.hold(ladder.resident, 10, until, namespace="mer_x", idempotency_key="h-1")
    world.post_hold(hold.id)
    assert world.hold(ladder.resident, 10, until, namespace="mer_x", idempotency_key="h-1") == hold
    assert world.view(ladder.resident).balance == 50


# Concurrency ----------------------------------------------------------------------------------


def test_concurrent_spends_never_overdraw_a_wallet(engine: Engine, clock: FakeClock) -> None:
    world = World(engine, clock, expiry_months=3)
    thirty, forty = world.program(30), world.program(40)
    resident = world.resident()
    clock.now = tokyo(2026, 4, 10)
    world.award(thirty, resident)
    clock.now = tokyo(2026, 5, 10)
    world.award(thirty, resident)
    clock.now = tokyo(2026, 6, 10)
    world.award(forty, resident)
    assert [b.posted for b in world.buckets(resident)] == [30, 30, 40]

    outcomes = run_together([lambda: world.spend(resident, 10) for _ in range(20)])

    entries = [value for status, value in outcomes if status == "ok"]
    failures = [value for status, value in outcomes if status == "error"]
    assert len(entries) == 10, failures
    assert len(failures) == 10
    assert all(type(error) is InsufficientPoints for error in failures), failures
    assert len({entry.id for entry in entries}) == 10
    assert all(sum(amount for _, amount in debits(entry)) == 10 for entry in entries)
    found = world.buckets(resident)
    assert [(b.posted, b.held, b.available) for b in found] == [(0, 0, 0)] * 3
    assert world.balance(world.merchant).posted == 100
    world.verify()


def test_concurrent_refunds_never_return_more_than_was_spent(
    engine: Engine, clock: FakeClock
) -> None:
    world = World(engine, clock)
    ladder = Ladder(world)
    spend = world.spend(ladder.resident, 35)  # tie_lo 20, tie_hi 10, mid 5
    outcomes = run_together([lambda: world.refund(spend.id, 10) for _ in range(6)])

    refunds = [value for status, value in outcomes if status == "ok"]
    failures = [value for status, value in outcomes if status == "error"]
    assert len(refunds) == 3, failures
    assert all(type(error) is InvalidInput for error in failures), failures
    assert world.count("spend_return") == 3
    after = posted(world, ladder.resident)
    # Latest expiry first: mid gets its 5 back, the July 31 pair 25 of their 30.
    assert (after[ladder.old], after[ladder.mid], after[ladder.new]) == (20, 10, 20)
    assert after[ladder.tie_lo] + after[ladder.tie_hi] == 25
    assert after[ladder.tie_lo] <= 20 and after[ladder.tie_hi] <= 10
    assert world.balance(world.merchant).posted == 5
    assert world.refund(spend.id, 5).id not in {entry.id for entry in refunds}
    with pytest.raises(InvalidInput):
        world.refund(spend.id, 1)
    world.verify()


class OpenTransaction:
    """A unit of work left open (for a race): a session on a connection in a transaction."""

    def __init__(self, engine: Engine) -> None:
        self.connection = engine.connect()
        self.transaction = self.connection.begin()
        self.session = Session(bind=self.connection, expire_on_commit=False)

    def commit(self) -> None:
        self.session.flush()
        self.transaction.commit()
        self.session.close()
        self.connection.close()


def start(work: Callable[[], Any]) -> tuple[threading.Thread, list[tuple[str, Any]]]:
    outcome: list[tuple[str, Any]] = []

    def run() -> None:
        try:
            outcome.append(("ok", work()))
        except BaseException as error:
            outcome.append(("error", error))

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def wait_until_blocked(engine: Engine, backend: str) -> None:
    """Until another session of this database waits on a lock (PostgreSQL); SQLite: a pause."""
    if backend == "sqlite":
        time.sleep(0.5)
        return
    deadline = time.monotonic() + 10
    with engine.connect() as connection:
        while time.monotonic() < deadline:
            waiting = connection.exec_driver_sql(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND datname = current_database()"
            ).scalar()
            connection.rollback()
            if waiting:
                return
            time.sleep(0.02)
    raise AssertionError("the second writer never waited for the first")


def test_an_idempotent_spend_retried_while_the_first_is_in_flight_replays(
    engine: Engine, clock: FakeClock, backend: str, request: pytest.FixtureRequest
) -> None:
    world = World(engine, clock)
    program = world.program(10)
    resident = world.resident()
    world.award(program, resident)
    request_ = Spend(resident, 10, world.merchant, namespace="mer_x", idempotency_key="pay-1")

    first = OpenTransaction(engine)
    try:
        entry = spending.spend(first.session, world.pt, request_, clock())
        retry, outcome = start(lambda: world.earning.spend(world.pt, request_))
        wait_until_blocked(engine, backend)
        first.commit()
    finally:
        if first.connection.in_transaction():
            first.transaction.rollback()
    retry.join(timeout=60)
    assert outcome and outcome[0][0] == "ok", outcome
    assert outcome[0][1].id == entry.id
    assert world.balance(world.merchant).posted == 10


@pytest.mark.parametrize("bucket", ["existing", "new"])
def test_an_award_racing_a_wallet_closure_does_not_land_in_the_closed_wallet(
    engine: Engine, clock: FakeClock, backend: str, request: pytest.FixtureRequest, bucket: str
) -> None:
    world = World(engine, clock)
    program = world.program(10)
    resident = world.resident()
    clock.now = tokyo(2026, 4, 10)
    world.award(program, resident)  # a bucket valid until June 30
    # Later in April the award meets that bucket; in May it needs a new one (July 31).
    clock.now = tokyo(2026, 4, 20) if bucket == "existing" else tokyo(2026, 5, 10)
    entries = world.count("ledger_entry")

    closing = OpenTransaction(engine)
    try:
        wallets.close_wallet(
            closing.session, ACTOR, clock(), world.pt, resident, reason="moved out"
        )
        award, outcome = start(lambda: world.earning.award(program, resident, "REC-race"))
        wait_until_blocked(engine, backend)
        closing.commit()
    finally:
        if closing.connection.in_transaction():
            closing.transaction.rollback()
    award.join(timeout=60)
    assert outcome, "the award never finished"
    found = world.buckets(resident)
    assert all(b.closed and b.posted == 0 for b in found), found
    assert outcome[0][0] == "error" and isinstance(outcome[0][1], WalletClosed), outcome
    assert world.count("ledger_entry") == entries + 1  # the closure only
    assert world.count("award") == 1
    world.verify()


@pytest.mark.parametrize("amount", [4, 10])
def test_a_refund_retried_while_the_first_is_in_flight_replays(
    engine: Engine, clock: FakeClock, backend: str, request: pytest.FixtureRequest, amount: int
) -> None:
    world = World(engine, clock)
    program = world.program(10)
    resident = world.resident()
    world.award(program, resident)
    spend = world.spend(resident, 10)

    def refund(session: Session) -> Entry:
        return spending.refund(
            session, world.pt, spend.id, amount, clock(), namespace="ret", idempotency_key="r-1"
        )

    first = OpenTransaction(engine)
    try:
        entry = refund(first.session)
        retry, outcome = start(lambda: world.earning.write(refund))
        wait_until_blocked(engine, backend)
        first.commit()
    finally:
        if first.connection.in_transaction():
            first.transaction.rollback()
    retry.join(timeout=60)
    assert outcome and outcome[0][0] == "ok", outcome
    assert outcome[0][1].id == entry.id
    assert world.balance(world.merchant).posted == 10 - amount
