"""A stateful property test of wallets (``points.wallets``, ``points.spending``): random awards,
spends, holds posted or voided, refunds, closures and clock moves, checked against a small
model.

A Hypothesis ``RuleBasedStateMachine`` drives the real services (programs, budgets and awards
from ``issuers``; ``spending.spend``, ``post_hold``, ``refund``, ``close_wallet``; the
ledger's ``void_pending`` and hold-timeout job) on a migrated database: SQLite always,
PostgreSQL when ``POINTS_TEST_POSTGRES_URL`` is set. Each example has a point type of its own
with a one- or two-month expiry (with one, points earned in May are valid until June 30), two
programs with random amounts and two residents; the clock moves by hours, days, months, and to
just before or exactly at Tokyo midnights and month ends, so buckets expire during a run.

The model keeps every bucket's posted and held points, the open holds, the posted spends (and
what was refunded of each, bucket by bucket) and per wallet the totals awarded, spent, posted
from holds, refunded to buckets and moved out by a closure. After every step, from the database:

1. no bucket is negative (posted >= 0, available >= 0) and each equals the model's;
2. the buckets' sum equals the ledger's balance of the bucket accounts, the sum recomputed from
   the postings, and awards - spends - posted holds + refunds to buckets - closures of the model;
3. (in the spend, hold and post rules, on balances read just before) an entry never takes
   from a bucket while a bucket earlier in the order (expiry, program id, account id) usable
   at that instant, or at the hold's timeout, still had points available;
4. no bucket is spent from once expired (the debits' valid-until dates against the clock);
5. at teardown the whole ledger verifies.

Examples share a database (a fresh migrated one, from conftest's ``new_database_url``, for
every ``EXAMPLES_PER_DATABASE`` examples); each example's clock starts again in April 2026.

Budgets: ``POINTS_HYPOTHESIS_PROFILE=deep`` (1000 examples of up to 50 steps), ``quick``
(20 x 15 for editing this file), anything else the default: SQLite 100 x 30, PostgreSQL 60 x 25,
well under a minute per backend.
"""

from __future__ import annotations

import calendar
import contextlib
import dataclasses
import functools
import itertools
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any, ClassVar, TypeVar
from zoneinfo import ZoneInfo

import pytest
from conftest import FakeClock
from earning_helpers import ACTOR, Earning
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)
from sqlalchemy.engine import Engine
from sqlmodel import Session
from state_machines import StateMachineBudgets, run_machine

import ledger
from issuers import programs
from issuers.programs import Program, ProgramStatus
from ledger import Entry, LedgerTx, Phase, Side
from ledger.errors import HoldExpired, IdempotencyConflict
from points import spending, wallet_views, wallets
from points.errors import Conflict, InsufficientPoints, InvalidInput, WalletClosed
from points.pointtypes import ExpiryRule, PointType
from points.spending import Spend
from points.wallets import Bucket

T = TypeVar("T")

#: The model's own calendar (not ``points.calendar``, which is under test).
TOKYO = ZoneInfo("Asia/Tokyo")
START = datetime(2026, 4, 1, 0, 0, tzinfo=UTC)  # April 1, 09:00 in Tokyo
#: Months of validity after the month earned: short, so that points expire during a run.
EXPIRY_MONTHS = (1, 1, 2)
BUDGET = 10**9
#: Examples that share one database before the next example starts a fresh one.
EXAMPLES_PER_DATABASE = {"sqlite": 50, "postgresql": 50}
#: A wallet is closed only after this many steps, so most of a run has two open wallets.
CLOSE_AFTER_STEPS = 12

# Budgets --------------------------------------------------------------------------------------

#: (max_examples, steps per example) per profile and backend; the set-up is one step more.
BUDGETS = StateMachineBudgets(
    "wallet-state-machine",
    {
        "default": {"sqlite": (100, 30), "postgresql": (60, 25)},
        "deep": {"sqlite": (1000, 50), "postgresql": (1000, 50)},
        "quick": {"sqlite": (20, 15), "postgresql": (10, 15)},
    },
)


# The calendar, independently ------------------------------------------------------------------


def tokyo_day(instant: datetime) -> date:
    return instant.astimezone(TOKYO).date()


def tokyo_midnight(day: date) -> datetime:
    """00:00 of ``day`` in Tokyo as a UTC instant."""
    return datetime.combine(day, time(0), tzinfo=TOKYO).astimezone(UTC)


def spendable(valid_until: date, instant: datetime) -> bool:
    """Points valid until D are spendable while the Tokyo date is D or earlier."""
    return tokyo_day(instant) <= valid_until


def expires_at(valid_until: date) -> datetime:
    return tokyo_midnight(valid_until + timedelta(days=1))


def last_day_of_month_after(day: date, months: int) -> date:
    year, month = divmod(day.year * 12 + day.month - 1 + months, 12)
    return date(year, month + 1, calendar.monthrange(year, month + 1)[1])


def fiscal_year(day: date) -> int:
    return day.year if day.month >= 4 else day.year - 1


# The model ------------------------------------------------------------------------------------


@dataclass
class ModelBucket:
    account_id: int
    resident: str
    program_id: str
    valid_until: date
    posted: int = 0
    held: int = 0
    closed: bool = False

    @property
    def available(self) -> int:
        return self.posted - self.held

    @property
    def order(self) -> tuple[date, str, int]:
        return (self.valid_until, self.program_id, self.account_id)


@dataclass
class ModelHold:
    id: int
    resident: str
    #: (bucket, amount) in the entry's order.
    draws: list[tuple[int, int]]
    amount: int
    timeout: datetime


@dataclass
class ModelSpend:
    """A posted spend (a payment, or a posted hold) that can be refunded."""

    id: int
    resident: str
    drawn: dict[int, int]
    returned: dict[int, int] = field(default_factory=dict)

    @property
    def returnable(self) -> int:
        return sum(self.drawn.values()) - sum(self.returned.values())


@dataclass
class ModelWallet:
    awarded: int = 0
    spent: int = 0
    posted_holds: int = 0
    refunded: int = 0
    closed_out: int = 0
    closed: bool = False

    @property
    def expected_posted(self) -> int:
        return self.awarded - self.spent - self.posted_holds + self.refunded - self.closed_out


def debits_of(entry: Entry) -> list[tuple[int, int]]:
    return [(p.account_id, p.amount) for p in entry.postings if p.side is Side.DEBIT]


def credits_of(entry: Entry) -> list[tuple[int, int]]:
    return [(p.account_id, p.amount) for p in entry.postings if p.side is Side.CREDIT]


@dataclass
class Context:
    """What the examples of one test share: a database (``EXAMPLES_PER_DATABASE`` examples at a
    time), the clock and running counters."""

    new_engine: Callable[[], Engine]
    clock: FakeClock
    backend: str
    engine: Engine | None = None
    examples_in_database: int = 0
    databases: int = 0
    examples: int = 0
    steps: int = 0
    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def engine_for_example(self) -> Engine:
        if self.engine is None or self.examples_in_database >= EXAMPLES_PER_DATABASE[self.backend]:
            if self.engine is not None:
                self.engine.dispose()
            self.engine = self.new_engine()
            self.examples_in_database = 0
            self.databases += 1
        self.examples_in_database += 1
        return self.engine


def step(method: Callable[..., None]) -> Callable[..., None]:
    """Mark the machine dirty while a rule runs (the teardown then only cleans up); count."""

    @functools.wraps(method)
    def wrapper(self: WalletStateMachine, *args: Any, **kwargs: Any) -> None:
        is_rule = self.ready
        self.dirty = True
        method(self, *args, **kwargs)
        self.dirty = False
        if is_rule:
            self.ctx.steps += 1
            self.steps += 1

    return wrapper


POSTED_SQL = """
SELECT p.account_id,
       sum(CASE WHEN e.phase IN (0, 2) AND p.side = 2 THEN p.amount
                WHEN e.phase IN (0, 2) AND p.side = 1 THEN -p.amount ELSE 0 END),
       sum(CASE WHEN e.phase = 1 AND p.side = 1 AND NOT EXISTS (
                    SELECT 1 FROM ledger_entry r WHERE r.pending_id = e.id)
                THEN p.amount ELSE 0 END)
FROM ledger_posting p JOIN ledger_entry e ON e.id = p.entry_id
WHERE p.account_id IN ({accounts})
GROUP BY p.account_id
"""


@dataclass
class Snapshot:
    """What the invariants read, in one read-only transaction."""

    buckets: dict[str, list[Bucket]]
    ledger_posted: dict[int, int]
    recomputed: dict[int, tuple[int, int]]
    views: dict[str, wallet_views.WalletView]
    expired: int
    merchant: int


class WalletStateMachine(RuleBasedStateMachine):
    """Random wallet operations against a model; run it with ``state_machines.run_machine``."""

    context: ClassVar[Context]

    def __init__(self) -> None:
        super().__init__()
        self.ctx = type(self).context
        self.clock = self.ctx.clock
        self.engine = self.ctx.engine_for_example()
        self.earning = Earning(self.engine, self.clock)
        self.ready = False
        self.dirty = False
        self.steps = 0
        self.pt: PointType
        self.programs: list[Program] = []
        self.residents: list[str] = []
        self.merchant = 0
        self.expiry_months = 1
        self.buckets: dict[int, ModelBucket] = {}
        self.bucket_keys: dict[tuple[str, str, date], int] = {}
        self.holds: dict[int, ModelHold] = {}
        self.spends: dict[int, ModelSpend] = {}
        self.wallets: dict[str, ModelWallet] = {}
        #: idempotency key -> (entry id, the request)
        self.keyed: dict[str, tuple[int, Spend]] = {}
        self.allocated: set[tuple[str, int]] = set()
        self.numbers = itertools.count(1)
        self.expired = 0
        self.merchant_posted = 0

    # Setting up ------------------------------------------------------------------------------

    @initialize(
        start_hours=st.integers(0, 24 * 75),
        amounts=st.tuples(st.integers(1, 50), st.integers(1, 50)),
        expiry_months=st.sampled_from(EXPIRY_MONTHS),
    )
    @step
    def set_up(self, start_hours: int, amounts: tuple[int, int], expiry_months: int) -> None:
        self.clock.now = START + timedelta(hours=start_hours)
        self.expiry_months = expiry_months
        self.pt = self.earning.point_type(
            expiry_rule=ExpiryRule.MONTHS, expiry_months=expiry_months
        )
        self.programs = [self._program(amount) for amount in amounts]
        self.residents = [self.earning.resident() for _ in range(2)]
        self.wallets = {resident: ModelWallet() for resident in self.residents}
        self.merchant = self.earning.write(
            lambda s: (
                LedgerTx(s.connection(), self.clock)
                .create_account(
                    ledger_id=self.pt.ledger_id,
                    code=400,
                    normal_side=Side.CREDIT,
                    owner_ref="mer_x",
                )
                .id
            )
        )
        self._award(0, (0, 1), 1)  # something to spend from the start
        self.ready = True
        self.ctx.examples += 1

    def _program(self, amount: int) -> Program:
        number = next(self.numbers)
        new = programs.NewProgram(
            department_id=self.earning.department().id,
            point_type_id=self.pt.id,
            module="fixed_award",
            name_ja=f"プログラム{number}",
            name_en=f"Program {number}",
            amount=amount,
            valid_from=date(2026, 4, 1),
        )
        created = self.earning.write(lambda s: programs.create_program(s, ACTOR, self.clock(), new))
        return self.earning.write(
            lambda s: programs.change_status(
                s, ACTOR, self.clock(), created.id, ProgramStatus.ACTIVE, reason="start"
            )
        )

    # Awards ----------------------------------------------------------------------------------

    @rule(
        program=st.integers(0, 1),
        who=st.sampled_from([(0,), (1,), (0, 1), (0, 1)]),
        times=st.integers(1, 3),
    )
    @step
    def award(self, program: int, who: tuple[int, ...], times: int) -> None:
        self._award(program, who, times)

    def _award(self, program: int, who: tuple[int, ...], times: int) -> None:
        chosen = self.programs[program]
        today = tokyo_day(self.clock())
        year = fiscal_year(today)
        if (chosen.id, year) not in self.allocated:
            self.earning.allocate(chosen, year, BUDGET)
            self.allocated.add((chosen.id, year))
        valid_until = last_day_of_month_after(today, self.expiry_months)
        for index in who:
            resident = self.residents[index]
            wallet = self.wallets[resident]
            for _ in range(times):
                record = f"REC-{next(self.numbers)}"
                if wallet.closed:
                    self._refused(
                        lambda r=resident, rec=record: self.earning.award(chosen, r, rec),
                        WalletClosed,
                    )
                    continue
                result = self.earning.award(chosen, resident, record)
                award = result.award
                assert not result.replayed
                assert (award.amount, award.valid_until) == (chosen.amount, valid_until)
                key = (resident, chosen.id, valid_until)
                account_id = self.bucket_keys.setdefault(key, award.bucket_account_id)
                assert account_id == award.bucket_account_id, (
                    f"a second bucket {award.bucket_account_id} for {key} (first {account_id})"
                )
                bucket = self.buckets.setdefault(
                    account_id, ModelBucket(account_id, resident, chosen.id, valid_until)
                )
                bucket.posted += chosen.amount
                wallet.awarded += chosen.amount
                self.ctx.counts["awards"] += 1

    # Spends and holds ------------------------------------------------------------------------

    @rule(data=st.data(), index=st.integers(0, 1))
    @step
    def spend(self, data: st.DataObject, index: int) -> None:
        self._spend(data, self.residents[index], None)

    @rule(data=st.data(), index=st.integers(0, 1))
    @step
    def hold(self, data: st.DataObject, index: int) -> None:
        resident = self.residents[index]
        self._spend(data, resident, self._draw_timeout(data, resident))

    def _draw_timeout(self, data: st.DataObject, resident: str) -> datetime:
        """A few hours to days ahead, or just before / exactly at a bucket's expiry."""
        now = self.clock()
        boundaries = sorted(
            {
                expires_at(b.valid_until)
                for b in self.buckets.values()
                if b.resident == resident and expires_at(b.valid_until) > now
            }
        )
        how = data.draw(st.sampled_from(["ahead", "ahead", "boundary"]), label="timeout")
        if how == "boundary" and boundaries:
            boundary = data.draw(st.sampled_from(boundaries), label="expiry")
            before = data.draw(st.booleans(), label="just before")
            until = boundary - timedelta(microseconds=1) if before else boundary
            if until > now:
                return until
        minutes = data.draw(st.integers(60, 60 * 24 * 3), label="minutes ahead")
        return now + timedelta(minutes=minutes)

    def _usable(self, resident: str, horizon: datetime) -> list[ModelBucket]:
        """The wallet's buckets that may be drawn on at ``horizon``, in spending order."""
        return sorted(
            (
                b
                for b in self.buckets.values()
                if b.resident == resident and not b.closed and spendable(b.valid_until, horizon)
            ),
            key=lambda b: b.order,
        )

    def _spend(self, data: st.DataObject, resident: str, hold_until: datetime | None) -> None:
        now = self.clock()
        horizon = hold_until or now
        usable = self._usable(resident, horizon)
        total = sum(b.available for b in usable if b.available > 0)
        how = data.draw(st.sampled_from(["some", "part", "part", "all", "more"]), label="how")
        if how == "some" or total < 2:
            amount = data.draw(st.integers(1, 40), label="amount")
        elif how == "part":
            amount = data.draw(st.integers(1, total - 1), label="amount")
        elif how == "all":
            amount = max(total, 1)
        else:
            amount = total + data.draw(st.integers(1, 10), label="more by")
        key = f"k{next(self.numbers)}" if data.draw(st.booleans(), label="keyed") else None
        request = Spend(
            resident,
            amount,
            self.merchant,
            namespace=f"sm-{self.pt.code}" if key else None,  # examples share a database
            idempotency_key=key,
            hold_until=hold_until,
        )
        if self.wallets[resident].closed:
            self._refused(lambda: self._do_spend(request), WalletClosed)
            return
        if amount > total:
            error = self._refused(lambda: self._do_spend(request), InsufficientPoints)
            assert error.context == {"available": total, "requested": amount}, error.context
            self.ctx.counts["insufficient" if total else "insufficient (empty)"] += 1
            return
        before = self._read(lambda s: wallets.buckets(s, resident, self.pt.id))
        entry = self._do_spend(request)

        # Invariants 3 and 4, on the balances read just before.
        draws = debits_of(entry)
        self._check_draws(draws, before, now, horizon)
        assert credits_of(entry) == [(self.merchant, amount)]
        # The model's own plan: earliest expiry first, ties by program id, then account id.
        expected: list[tuple[int, int]] = []
        left = amount
        for bucket in usable:
            take = min(max(bucket.available, 0), left)
            if take:
                expected.append((bucket.account_id, take))
                left -= take
        assert draws == expected, f"drew {draws}, expected {expected}"

        if hold_until is None:
            assert (entry.phase, entry.timeout_at) == (Phase.POSTED, None)
            for account_id, taken in draws:
                self.buckets[account_id].posted -= taken
            self.wallets[resident].spent += amount
            self.merchant_posted += amount
            self.spends[entry.id] = ModelSpend(entry.id, resident, dict(draws))
            self.ctx.counts["spends"] += 1
        else:
            assert (entry.phase, entry.timeout_at) == (Phase.PENDING, hold_until)
            for account_id, taken in draws:
                self.buckets[account_id].held += taken
            self.holds[entry.id] = ModelHold(entry.id, resident, draws, amount, hold_until)
            self.ctx.counts["holds"] += 1
        if key is not None:
            self.keyed[key] = (entry.id, request)

    def _do_spend(self, request: Spend) -> Entry:
        return self.earning.spend(self.pt, request)

    def _check_draws(
        self,
        draws: list[tuple[int, int]],
        before: list[Bucket],
        now: datetime,
        horizon: datetime,
    ) -> None:
        """No bucket expired (at ``now`` and at ``horizon``) is drawn on, none beyond what it
        had available, and none while one earlier in the spending order still had points."""
        by_id = {b.account_id: b for b in before}
        drawn = dict(draws)
        assert len(drawn) == len(draws), f"a bucket drawn twice: {draws}"
        for account_id, taken in draws:
            bucket = by_id.get(account_id)
            assert bucket is not None, f"account {account_id} is not a bucket of the wallet"
            assert not bucket.closed, f"drew on closed bucket {bucket}"
            assert spendable(bucket.valid_until, now), f"drew on expired {bucket} at {now}"
            assert spendable(bucket.valid_until, horizon), (
                f"a hold to {horizon} drew on {bucket}, expired by then"
            )
            assert 0 < taken <= bucket.available, f"took {taken} of {bucket}"
            order = (bucket.valid_until, bucket.program_id, bucket.account_id)
            for earlier in before:
                if (earlier.valid_until, earlier.program_id, earlier.account_id) >= order:
                    continue
                if earlier.closed or not spendable(earlier.valid_until, horizon):
                    continue
                assert drawn.get(earlier.account_id, 0) == max(earlier.available, 0), (
                    f"drew {taken} on {bucket} while earlier {earlier} kept "
                    f"{earlier.available - drawn.get(earlier.account_id, 0)}"
                )

    @precondition(lambda self: self.keyed)
    @rule(data=st.data())
    @step
    def replay(self, data: st.DataObject) -> None:
        """A keyed spend or hold again: the same entry; with another amount: a conflict."""
        key = data.draw(st.sampled_from(sorted(self.keyed)), label="key")
        entry_id, request = self.keyed[key]
        if data.draw(st.booleans(), label="same"):
            entries = self._entry_count()
            assert self._do_spend(request).id == entry_id
            assert self._entry_count() == entries
        else:
            altered = dataclasses.replace(request, amount=request.amount + 1)
            self._refused(lambda: self._do_spend(altered), IdempotencyConflict)

    # Holds -----------------------------------------------------------------------------------

    def _release(self, hold: ModelHold) -> None:
        for account_id, amount in hold.draws:
            self.buckets[account_id].held -= amount
        del self.holds[hold.id]

    @precondition(lambda self: self.holds)
    @rule(data=st.data())
    @step
    def void(self, data: st.DataObject) -> None:
        hold = self.holds[data.draw(st.sampled_from(sorted(self.holds)), label="hold")]
        entry = self.earning.write(
            lambda s: LedgerTx(s.connection(), self.clock).void_pending(hold.id)
        )
        assert (entry.phase, entry.pending_id, entry.postings) == (
            Phase.VOID_PENDING,
            hold.id,
            (),
        )
        self._release(hold)
        self.ctx.counts["voids"] += 1

    @precondition(lambda self: self.holds)
    @rule(data=st.data())
    @step
    def post_hold(self, data: st.DataObject) -> None:
        hold = self.holds[data.draw(st.sampled_from(sorted(self.holds)), label="hold")]
        amount = None
        if data.draw(st.booleans(), label="partial"):
            amount = data.draw(st.integers(1, hold.amount), label="amount")
        now = self.clock()

        def post() -> Entry:
            return self.earning.write(
                lambda s: spending.post_hold(s, hold.id, self.clock(), amount=amount)
            )

        if now >= hold.timeout:
            self._refused(post, HoldExpired)
            return
        before = self._read(lambda s: wallets.buckets(s, hold.resident, self.pt.id))
        entry = post()
        assert (entry.phase, entry.pending_id) == (Phase.POST_PENDING, hold.id)
        posted = hold.amount if amount is None else amount
        # From the earliest-expiring of the hold's buckets (ties: the hold's own order).
        expected: dict[int, int] = {}
        left = posted
        for account_id, held in sorted(
            hold.draws, key=lambda d: (self.buckets[d[0]].valid_until, hold.draws.index(d))
        ):
            take = min(held, left)
            if take:
                expected[account_id] = take
                left -= take
        taken = dict(debits_of(entry))
        assert taken == expected, f"posted {taken}, expected {expected}"
        assert credits_of(entry) == [(self.merchant, posted)]
        by_id = {b.account_id: b for b in before}
        for account_id in taken:
            bucket = by_id[account_id]
            assert not bucket.closed and spendable(bucket.valid_until, now), (
                f"a post at {now} took from {bucket}"
            )
        self._release(hold)
        for account_id, amount_taken in taken.items():
            self.buckets[account_id].posted -= amount_taken
        self.wallets[hold.resident].posted_holds += posted
        self.merchant_posted += posted
        self.spends[entry.id] = ModelSpend(entry.id, hold.resident, taken)
        self.ctx.counts["posts" if amount is None else "partial posts"] += 1

    @rule()
    @step
    def hold_timeout_job(self) -> None:
        """The ledger's job voids every hold whose timeout has come."""
        now = self.clock()
        due = [hold for hold in self.holds.values() if hold.timeout <= now]
        voided = ledger.Ledger(self.engine, clock=self.clock).void_expired_holds(now)
        assert voided >= len(due)
        for hold in due:
            self._release(hold)
        self.ctx.counts["timed out"] += len(due)

    # Refunds ---------------------------------------------------------------------------------

    @precondition(lambda self: self.spends)
    @rule(data=st.data())
    @step
    def refund(self, data: st.DataObject) -> None:
        spend = self.spends[data.draw(st.sampled_from(sorted(self.spends)), label="spend")]
        returnable = spend.returnable
        amount = data.draw(st.integers(1, returnable + 3), label="amount")
        now = self.clock()
        wallet = self.wallets[spend.resident]

        def refund() -> Entry:
            return self.earning.write(
                lambda s: spending.refund(s, self._fresh(s), spend.id, amount, self.clock())
            )

        if amount > returnable:
            error = self._refused(refund, InvalidInput)
            assert error.context.get("returnable") == returnable, error.context
            return
        # Latest expiry first, per expiry date (the order among buckets of one date is not
        # specified); a date no longer spendable, or a closed wallet, sends its share to
        # expired points.
        rooms: dict[date, int] = defaultdict(int)
        for account_id, drawn in spend.drawn.items():
            rooms[self.buckets[account_id].valid_until] += drawn - spend.returned.get(account_id, 0)
        shares_by_date: dict[date, int] = {}
        left = amount
        for day in sorted(rooms, reverse=True):
            take = min(rooms[day], left)
            if take:
                shares_by_date[day] = take
                left -= take
        assert left == 0
        back_by_date = {
            day: share
            for day, share in shares_by_date.items()
            if not wallet.closed and spendable(day, now)
        }
        to_expired = amount - sum(back_by_date.values())

        entry = refund()
        assert entry.phase is Phase.POSTED
        assert debits_of(entry) == [(self.merchant, amount)]
        credited = credits_of(entry)
        expired_lines = [
            a for account_id, a in credited if account_id == self.pt.expired_account_id
        ]
        assert expired_lines == ([to_expired] if to_expired else []), (credited, to_expired)
        back = {a: x for a, x in credited if a != self.pt.expired_account_id}
        assert len(back) + len(expired_lines) == len(credited), f"repeated lines: {credited}"
        shares: dict[int, int] = defaultdict(int)
        for account_id, share in entry.metadata["buckets"]:
            shares[account_id] += share
        for account_id, share in shares.items():
            assert account_id in spend.drawn, f"a share for {account_id}, not drawn on"
            room = spend.drawn[account_id] - spend.returned.get(account_id, 0)
            assert 0 < share <= room, f"returns {share} to {account_id}; room {room}"
        for account_id, credit in back.items():
            assert credit == shares.get(account_id), (back, dict(shares))
            assert not self.buckets[account_id].closed
        grouped_shares: dict[date, int] = defaultdict(int)
        for account_id, share in shares.items():
            grouped_shares[self.buckets[account_id].valid_until] += share
        assert dict(grouped_shares) == shares_by_date, (dict(grouped_shares), shares_by_date)
        grouped_back: dict[date, int] = defaultdict(int)
        for account_id, credit in back.items():
            grouped_back[self.buckets[account_id].valid_until] += credit
        assert dict(grouped_back) == back_by_date, (dict(grouped_back), back_by_date)

        for account_id, share in shares.items():
            spend.returned[account_id] = spend.returned.get(account_id, 0) + share
        for account_id, credit in back.items():
            self.buckets[account_id].posted += credit
        wallet.refunded += sum(back.values())
        self.expired += to_expired
        self.merchant_posted -= amount
        self.ctx.counts["refunds"] += 1
        self.ctx.counts["refunded to expired"] += bool(to_expired)

    # Closing ---------------------------------------------------------------------------------

    @precondition(
        lambda self: (
            self.steps >= CLOSE_AFTER_STEPS and not any(w.closed for w in self.wallets.values())
        )
    )
    @rule(index=st.integers(0, 1))
    @step
    def close(self, index: int) -> None:
        resident = self.residents[index]
        mine = [b for b in self.buckets.values() if b.resident == resident]

        def close() -> tuple[Any, int, list[int]]:
            return self.earning.write(
                lambda s: wallets.close_wallet(
                    s, ACTOR, self.clock(), self._fresh(s), resident, reason="moved out"
                )
            )

        if any(b.held for b in mine):
            error = self._refused(close, Conflict)
            assert error.code == "wallet_has_pending"
            return
        wallet, moved, entry_ids = close()
        assert wallet.status == "closed"
        assert moved == sum(b.posted for b in mine)
        assert len(entry_ids) == (1 if moved else 0)
        for bucket in mine:
            bucket.posted = 0
            bucket.closed = True
        self.wallets[resident].closed = True
        self.wallets[resident].closed_out += moved
        self.expired += moved
        self.ctx.counts["closures"] += 1

    # The clock -------------------------------------------------------------------------------

    @rule(
        move=st.one_of(
            st.tuples(st.just("hours"), st.integers(1, 36)),
            st.tuples(st.just("days"), st.integers(1, 20)),
            st.tuples(st.just("months"), st.integers(1, 2)),
            st.tuples(st.just("tokyo midnight"), st.booleans()),
            st.tuples(st.just("month end"), st.booleans()),
        )
    )
    @step
    def move_clock(self, move: tuple[str, int | bool]) -> None:
        how, value = move
        now = self.clock()
        if how == "hours":
            self.clock.now = now + timedelta(hours=int(value))
        elif how == "days":
            self.clock.now = now + timedelta(days=int(value))
        elif how == "months":
            self.clock.now = now + timedelta(days=30 * int(value))
        else:
            today = tokyo_day(now)
            if how == "tokyo midnight":
                target = tokyo_midnight(today + timedelta(days=1))
            else:
                year, month = divmod(today.year * 12 + today.month, 12)
                target = tokyo_midnight(date(year, month + 1, 1))
            # Just before (the last microsecond of the day) or exactly at it.
            self.clock.now = target - timedelta(microseconds=1) if value else target
        assert self.clock.now >= now

    # Invariants ------------------------------------------------------------------------------

    @invariant()
    def database_matches_model(self) -> None:
        if not self.ready:
            return
        self.dirty = True
        self._check_database()
        self.dirty = False

    def _check_database(self) -> None:
        snapshot = self._read(self._snapshot)
        now = self.clock()
        seen: set[int] = set()
        for resident in self.residents:
            found = snapshot.buckets[resident]
            mine = sorted(
                (b for b in self.buckets.values() if b.resident == resident),
                key=lambda b: b.order,
            )
            assert [b.account_id for b in found] == [b.account_id for b in mine], (
                f"buckets {[b.account_id for b in found]}, model {[b.account_id for b in mine]}"
            )
            for bucket, model in zip(found, mine, strict=True):
                seen.add(bucket.account_id)
                # 1. never negative, and as the model says
                assert bucket.posted >= 0 and bucket.held >= 0 and bucket.available >= 0, bucket
                assert (
                    bucket.program_id,
                    bucket.valid_until,
                    bucket.posted,
                    bucket.held,
                    bucket.closed,
                ) == (
                    model.program_id,
                    model.valid_until,
                    model.posted,
                    model.held,
                    model.closed,
                ), f"{bucket} but the model has {model}"
                # 2. the ledger's balance, and the postings summed again, agree
                assert snapshot.ledger_posted[bucket.account_id] == bucket.posted
                recomputed = snapshot.recomputed.get(bucket.account_id, (0, 0))
                assert recomputed == (bucket.posted, bucket.held), (bucket, recomputed)
            wallet = self.wallets[resident]
            assert sum(b.posted for b in found) == wallet.expected_posted, (
                f"buckets hold {sum(b.posted for b in found)}; awards {wallet.awarded} - spends "
                f"{wallet.spent} - posted holds {wallet.posted_holds} + refunds "
                f"{wallet.refunded} - closed {wallet.closed_out} = {wallet.expected_posted}"
            )
            # The resident's view: unexpired points by date, less what holds keep.
            live = [b for b in mine if not b.closed and spendable(b.valid_until, now)]
            by_date: dict[date, int] = defaultdict(int)
            for b in live:
                if b.available > 0:
                    by_date[b.valid_until] += b.available
            view = snapshot.views[resident]
            assert view.status == ("closed" if wallet.closed else "open")
            assert (view.balance, view.held) == (
                sum(by_date.values()),
                sum(b.held for b in live),
            ), view
            assert [(line.valid_until, line.amount) for line in view.by_expiry] == sorted(
                by_date.items()
            )
        assert seen == set(self.buckets)
        assert snapshot.expired == self.expired
        assert snapshot.merchant == self.merchant_posted

    def _snapshot(self, session: Session) -> Snapshot:
        tx = LedgerTx(session.connection(), self.clock)
        found = {r: wallets.buckets(session, r, self.pt.id) for r in self.residents}
        account_ids = [b.account_id for bs in found.values() for b in bs]
        recomputed: dict[int, tuple[int, int]] = {}
        if account_ids:
            rows = session.connection().exec_driver_sql(
                POSTED_SQL.format(accounts=", ".join(str(int(a)) for a in account_ids))
            )
            recomputed = {int(row[0]): (int(row[1]), int(row[2])) for row in rows}
        point_type = self._fresh(session)
        return Snapshot(
            buckets=found,
            ledger_posted={a: tx.balance(a).posted for a in account_ids},
            recomputed=recomputed,
            views={
                r: wallet_views.wallet_view(session, point_type, r, self.clock(), 31)
                for r in self.residents
            },
            expired=tx.balance(self.pt.expired_account_id).posted,
            merchant=tx.balance(self.merchant).posted,
        )

    def teardown(self) -> None:
        """Verify the whole ledger; then void this example's open holds (so that no later
        example's hold-timeout job meets them)."""
        try:
            if self.ready and not self.dirty:
                report = ledger.Ledger(self.engine, clock=self.clock).verify(
                    unsealed_grace_seconds=10**9
                )
                assert report.ok, report.problems
        finally:
            for hold_id in list(self.holds):
                with contextlib.suppress(Exception):
                    self.earning.write(
                        lambda s, h=hold_id: LedgerTx(s.connection(), self.clock).void_pending(h)
                    )

    # Helpers ---------------------------------------------------------------------------------

    def _fresh(self, session: Session) -> PointType:
        found = session.get(PointType, self.pt.id)
        assert found is not None
        return found

    def _read(self, work: Callable[[Session], T]) -> T:
        return self.earning.read(work)

    def _entry_count(self) -> int:
        return self._read(
            lambda s: int(
                s.connection()
                .exec_driver_sql(
                    f"SELECT count(*) FROM ledger_entry WHERE ledger_id = {int(self.pt.ledger_id)}"
                )
                .scalar_one()
            )
        )

    def _refused(self, work: Callable[[], Any], error: type[Exception]) -> Any:
        """``work`` must raise ``error`` and write nothing to this example's ledger."""
        entries = self._entry_count()
        with pytest.raises(error) as raised:
            work()
        assert self._entry_count() == entries, f"{error.__name__} but something was written"
        return raised.value


def test_wallet_state_machine(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> None:
    context = run_machine(
        WalletStateMachine,
        lambda new_engine: Context(new_engine, clock, backend),
        BUDGETS,
        backend=backend,
        request=request,
        tmp_path=tmp_path,
    )
    counts = ", ".join(f"{count} {name}" for name, count in sorted(context.counts.items()))
    print(
        f"{backend}: {context.examples} examples, {context.steps} steps, "
        f"{context.databases} databases; {counts}"
    )
