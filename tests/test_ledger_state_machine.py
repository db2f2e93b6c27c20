"""A stateful property test of the ledger: random operations checked against a Python model.

A Hypothesis ``RuleBasedStateMachine`` drives the public API (``Ledger``, ``NewEntry``,
``Posting``, ``Side``, ``AccountFlags``, ``BatchMode``) on a real, migrated database: SQLite
always, PostgreSQL when ``POINTS_TEST_POSTGRES_URL`` is set. The machine keeps a model of every
account's four totals (posted and pending, debits and credits), of every entry it made, of holds
and their resolutions, of reversals and of idempotency keys. For each operation the model decides
beforehand whether the ledger must accept it (and what it must write) or refuse it (and with which
error); a refusal must write nothing. After every step the database is compared with the model.

Examples share a database (a fresh migrated one, from conftest's ``new_database_url``, for every
50 examples on SQLite and every 100 on PostgreSQL: ``verify`` reads the whole database, so it
would grow slower with every example). Each example works in two ledgers of its own
(``sm-<n>-main`` and ``sm-<n>-other``), and the invariants read only what the example created:
its accounts, and entries with ids above the highest id when it started (examples run one after
another, so ids only grow). ``verify`` runs after a seal in every example's teardown and must
report no problem that earlier examples did not report already (a problem fails the example that
causes it, once).

Budgets: ``POINTS_HYPOTHESIS_PROFILE=deep`` selects a deeper run for manual use (2000 examples of
up to 100 steps), ``quick`` a short one for editing this file (20 x 20); anything else, or
nothing, the default: SQLite 200 examples x 50 steps, PostgreSQL 100 x 30, sized to stay under
90 seconds per backend on two cores.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import itertools
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import pytest
import sqlalchemy as sa
from conftest import FakeClock
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)
from sqlalchemy.engine import Engine
from state_machines import StateMachineBudgets, run_machine

from ledger import (
    AccountFlags,
    BatchMode,
    Entry,
    Ledger,
    LedgerTx,
    NewEntry,
    Phase,
    Posting,
    Side,
    errors,
)
from ledger.model import to_us

T = TypeVar("T")

DEBITS_FLAG = AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS
CREDITS_FLAG = AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS
FLAG_CHOICES = (
    AccountFlags.NONE,
    DEBITS_FLAG,
    DEBITS_FLAG,
    CREDITS_FLAG,
    CREDITS_FLAG,
    DEBITS_FLAG | CREDITS_FLAG,
)
#: Beyond every hold timeout a run can reach; the teardown voids timed holds as of this instant.
FAR_FUTURE = datetime(3000, 1, 1, tzinfo=UTC)
MAX_ACCOUNTS = 12
#: Closed accounts refuse everything; a few per example are enough.
MAX_CLOSED_ACCOUNTS = 2
HOLD_TIMEOUT_SECONDS_MAX = 600
AMOUNTS = st.integers(1, 40)
#: Examples that share one database before the next example starts a fresh one.
EXAMPLES_PER_DATABASE = {"sqlite": 50, "postgresql": 100}

# Budgets --------------------------------------------------------------------------------------

#: (max_examples, steps per example) per profile and backend; Hypothesis counts the set-up as a
#: step too, so ``stateful_step_count`` is one more.
BUDGETS = StateMachineBudgets(
    "ledger-state-machine",
    {
        "default": {"sqlite": (200, 50), "postgresql": (100, 30)},
        "deep": {"sqlite": (2000, 100), "postgresql": (2000, 100)},
        "quick": {"sqlite": (20, 20), "postgresql": (10, 20)},
    },
)


# The model ------------------------------------------------------------------------------------

#: Changes to (debits_posted, credits_posted, debits_pending, credits_pending), per account.
Deltas = dict[int, list[int]]


@dataclass
class ModelAccount:
    id: int
    ledger_id: int
    normal_side: Side
    flags: AccountFlags
    #: The unflagged account each ledger starts with; never closed, so funding stays possible.
    issuer: bool = False
    closed: bool = False
    #: debits_posted, credits_posted, debits_pending, credits_pending
    totals: list[int] = field(default_factory=lambda: [0, 0, 0, 0])


@dataclass
class ModelEntry:
    id: int
    ledger_id: int
    phase: Phase
    postings: tuple[Posting, ...]
    pending_id: int | None = None
    reverses_id: int | None = None
    timeout_at: datetime | None = None
    key: tuple[str, str] | None = None
    resolved_by: int | None = None
    reversed_by: int | None = None


@dataclass(frozen=True)
class Resolution:
    """A ``post_pending``, ``void_pending`` or ``reverse`` request, kept to repeat its key."""

    operation: str
    target: int
    amounts: tuple[int, ...] | None = None


#: What an idempotency key was recorded with.
Request = NewEntry | Resolution


@dataclass(frozen=True)
class Expect:
    """An error the ledger may raise: its class and context values it must carry."""

    error: type[errors.LedgerError]
    context: tuple[tuple[str, Any], ...] = ()

    def matches(self, error: BaseException) -> bool:
        if not isinstance(error, self.error):
            return False
        return all(error.context.get(name) == value for name, value in self.context)

    def __repr__(self) -> str:
        details = ", ".join(f"{name}={value!r}" for name, value in self.context)
        return f"{self.error.__name__}({details})"


def expect(error: type[errors.LedgerError], **context: Any) -> Expect:
    return Expect(error, tuple(sorted(context.items())))


def describe(error: BaseException) -> str:
    if isinstance(error, errors.LedgerError):
        return f"{type(error).__name__}({error.message!r}, context={error.context})"
    return repr(error)


def deltas_of(postings: Sequence[Posting], *, pending: bool, sign: int = 1) -> Deltas:
    deltas: Deltas = {}
    for posting in postings:
        index = (0 if posting.side is Side.DEBIT else 1) + (2 if pending else 0)
        deltas.setdefault(posting.account_id, [0, 0, 0, 0])[index] += sign * posting.amount
    return deltas


def merge(*parts: Mapping[int, Sequence[int]]) -> Deltas:
    merged: Deltas = {}
    for part in parts:
        for account_id, delta in part.items():
            total = merged.setdefault(account_id, [0, 0, 0, 0])
            for index in range(4):
                total[index] += delta[index]
    return merged


def validation_errors(postings: Sequence[Posting]) -> list[Expect]:
    """What ``validate_entry`` refuses in the entries this machine builds."""
    if len(postings) < 2:
        return [expect(errors.InvalidField)]
    debits = sum(p.amount for p in postings if p.side is Side.DEBIT)
    credits = sum(p.amount for p in postings if p.side is Side.CREDIT)
    if debits != credits:
        return [expect(errors.UnbalancedEntry, debits=debits, credits=credits)]
    return []


def key_of(entry: NewEntry) -> tuple[str, str] | None:
    if entry.namespace is None or entry.idempotency_key is None:
        return None
    return (entry.namespace, entry.idempotency_key)


@dataclass
class Context:
    """What the examples of one test share: a database, the clock, running counters.

    Examples share a database, ``EXAMPLES_PER_DATABASE`` at a time; then the next example starts
    a fresh one, so that ``verify`` (which reads the whole database) stays cheap in long runs.
    """

    new_engine: Callable[[], Engine]
    clock: FakeClock
    backend: str
    engine: Engine | None = None
    examples_in_database: int = 0
    numbers: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    #: (kind, message) of every problem ``verify`` reported so far in this database.
    known_problems: set[tuple[str, str]] = field(default_factory=set)
    databases: int = 0
    examples: int = 0
    steps: int = 0
    entries: int = 0

    def engine_for_example(self) -> Engine:
        if self.engine is None or self.examples_in_database >= EXAMPLES_PER_DATABASE[self.backend]:
            if self.engine is not None:
                self.engine.dispose()
            self.engine = self.new_engine()
            self.examples_in_database = 0
            self.known_problems = set()
            self.databases += 1
        self.examples_in_database += 1
        return self.engine


def step(method: Callable[..., None]) -> Callable[..., None]:
    """Mark the machine dirty while a rule runs, so that a failed step is known; count steps.

    The teardown runs after a failure too; it then only cleans up, so that it does not bury the
    step's own error under a second one.
    """

    @functools.wraps(method)
    def wrapper(self: LedgerStateMachine, *args: Any, **kwargs: Any) -> None:
        is_rule = self.ready  # not the set-up, which makes the machine ready
        self.dirty = True
        method(self, *args, **kwargs)
        self.dirty = False
        if is_rule:
            self.ctx.steps += 1

    return wrapper


# SQL the invariants use; only integers from the model are formatted in.

ACCOUNTS_SQL = """
SELECT a.id, a.ledger_id, a.flags, a.closed,
       a.debits_posted, a.credits_posted, a.debits_pending, a.credits_pending,
       coalesce(s.dp, 0), coalesce(s.cp, 0), coalesce(s.dq, 0), coalesce(s.cq, 0)
FROM ledger_account a
LEFT JOIN (
    SELECT p.account_id,
           sum(CASE WHEN e.phase IN (0, 2) AND p.side = 1 THEN p.amount ELSE 0 END) AS dp,
           sum(CASE WHEN e.phase IN (0, 2) AND p.side = 2 THEN p.amount ELSE 0 END) AS cp,
           sum(CASE WHEN e.phase = 1 AND r.id IS NULL AND p.side = 1 THEN p.amount ELSE 0 END)
               AS dq,
           sum(CASE WHEN e.phase = 1 AND r.id IS NULL AND p.side = 2 THEN p.amount ELSE 0 END)
               AS cq
    FROM ledger_posting p
    JOIN ledger_entry e ON e.id = p.entry_id
    LEFT JOIN ledger_entry r ON r.pending_id = e.id
    WHERE p.account_id IN ({accounts})
    GROUP BY p.account_id
) s ON s.account_id = a.id
WHERE a.ledger_id IN ({ledgers})
ORDER BY a.id
"""

ENTRIES_SQL = """
SELECT id, ledger_id, phase, pending_id, reverses_id, timeout_at_us, namespace, idempotency_key
FROM ledger_entry WHERE id > {floor} ORDER BY id
"""

POSTINGS_SQL = """
SELECT entry_id, account_id, side, amount FROM ledger_posting
WHERE entry_id > {floor} ORDER BY id
"""


class LedgerStateMachine(RuleBasedStateMachine):
    """Random ledger operations against a model; run it with ``state_machines.run_machine``."""

    context: ClassVar[Context]

    def __init__(self) -> None:
        super().__init__()
        self.ctx = type(self).context
        self.clock = self.ctx.clock
        self.engine = self.ctx.engine_for_example()
        self.ledger = Ledger(self.engine, clock=self.clock)
        self.ready = False
        self.dirty = False
        self.main = 0
        self.other = 0
        self.namespace = ""
        #: Entries of this example have ids above this one.
        self.floor = 0
        self.accounts: dict[int, ModelAccount] = {}
        self.entries: dict[int, ModelEntry] = {}
        #: Idempotency key -> (entry id, the request that recorded it).
        self.keys: dict[tuple[str, str], tuple[int, Request]] = {}
        self.key_numbers = itertools.count(1)
        #: Entries recorded and not sealed yet (every example starts with an empty queue).
        self.unsealed = 0
        self.sealed: set[int] = set()

    # Setting up ------------------------------------------------------------------------------

    @initialize()
    @step
    def set_up(self) -> None:
        number = next(self.ctx.numbers)
        self.namespace = f"sm-{number}"
        self.main = self.ledger.create_ledger(f"sm-{number}-main", "state machine").id
        self.other = self.ledger.create_ledger(f"sm-{number}-other", "state machine, other").id
        self.floor = self._read(
            lambda tx: int(
                tx.connection.exec_driver_sql(
                    "SELECT coalesce(max(id), 0) FROM ledger_entry"
                ).scalar_one()
            )
        )
        for ledger_id in (self.main, self.other):
            self._create_account(ledger_id, Side.DEBIT, AccountFlags.NONE, issuer=True)
        self.ready = True
        self.ctx.examples += 1

    # Accounts --------------------------------------------------------------------------------

    @precondition(lambda self: len(self.accounts) < MAX_ACCOUNTS)
    @rule(
        in_other_ledger=st.sampled_from([False, False, False, True]),
        normal_side=st.sampled_from(Side),
        flags=st.sampled_from(FLAG_CHOICES),
    )
    @step
    def create_account(self, in_other_ledger: bool, normal_side: Side, flags: AccountFlags) -> None:
        self._create_account(self.other if in_other_ledger else self.main, normal_side, flags)

    @precondition(
        lambda self: (
            any(not a.issuer for a in self.accounts.values())
            and sum(a.closed for a in self.accounts.values()) < MAX_CLOSED_ACCOUNTS
        )
    )
    @rule(data=st.data())
    @step
    def close_account(self, data: st.DataObject) -> None:
        """Close an account (any but the issuers): refused while it has pending totals."""
        account = self._draw_account(data, lambda a: not a.issuer)
        if account.totals[2] or account.totals[3]:
            self._refuse(
                lambda: self.ledger.close_account(account.id),
                [expect(errors.AccountHasPending, account_id=account.id)],
                f"close account {account.id} with pending totals {account.totals[2:]}",
            )
            return
        closed = self.ledger.close_account(account.id)
        assert closed.id == account.id
        assert closed.closed
        assert [
            closed.debits_posted,
            closed.credits_posted,
            closed.debits_pending,
            closed.credits_pending,
        ] == account.totals
        account.closed = True

    @rule(data=st.data())
    @step
    def read_balance(self, data: st.DataObject) -> None:
        account = self._draw_account(data, lambda a: True)
        balance = self.ledger.balance(account.id)
        dp, cp, dq, cq = account.totals
        assert [
            balance.debits_posted,
            balance.credits_posted,
            balance.debits_pending,
            balance.credits_pending,
        ] == account.totals
        assert balance.normal_side is account.normal_side
        if account.normal_side is Side.CREDIT:
            assert (balance.posted, balance.pending, balance.available) == (
                cp - dp,
                cq - dq,
                cp - dp - dq,
            )
        else:
            assert (balance.posted, balance.pending, balance.available) == (
                dp - cp,
                dq - cq,
                dp - cp - cq,
            )
        read = self.ledger.get_account(account.id)
        assert (read.ledger_id, read.flags, read.closed) == (
            account.ledger_id,
            account.flags,
            account.closed,
        )

    # Entries ---------------------------------------------------------------------------------

    @rule(data=st.data(), in_other_ledger=st.sampled_from([False, False, False, True]))
    @step
    def post_entry(self, data: st.DataObject, in_other_ledger: bool) -> None:
        """2..5 balanced postings in one ledger, posted or held, with or without a key."""
        self._post(self._draw_random_entry(data, self.other if in_other_ledger else self.main))

    @rule(data=st.data())
    @step
    def add_funds(self, data: st.DataObject) -> None:
        """Credit a wallet (or debit a debit-capped account) from its ledger's issuer."""
        self._post(self._draw_fund_entry(data))

    @precondition(lambda self: any(a.flags for a in self.accounts.values()))
    @rule(data=st.data())
    @step
    def spend_near_the_limit(self, data: st.DataObject) -> None:
        """Take a flagged account's available amount, a little less or a little more."""
        self._post(self._draw_spend_entry(data))

    @rule(data=st.data())
    @step
    def post_across_ledgers(self, data: st.DataObject) -> None:
        self._post(self._draw_mixed_entry(data))

    @precondition(lambda self: bool(self.keys))
    @rule(data=st.data(), same_content=st.booleans())
    @step
    def repeat_key(self, data: st.DataObject, same_content: bool) -> None:
        """A key again (a retry): the same content returns the entry recorded the first time and
        writes nothing, whatever happened since (a hold resolved, an entry reversed, an account
        closed); other content is a conflict."""
        key = data.draw(st.sampled_from(sorted(self.keys)), label="key")
        request = self.keys[key][1]
        if isinstance(request, NewEntry):
            self._post(request if same_content else self._draw_altered(data, request))
        elif not same_content:
            other = self._draw_fund_entry(data)
            self._post(dataclasses.replace(other, namespace=key[0], idempotency_key=key[1]))
        elif request.operation == "post_pending":
            amounts = None if request.amounts is None else list(request.amounts)
            self._post_pending(self.entries[request.target], amounts, key)
        elif request.operation == "void_pending":
            self._void(self.entries[request.target], key)
        else:
            self._reverse(self.entries[request.target], key)

    @rule(data=st.data())
    @step
    def post_batch_atomic(self, data: st.DataObject) -> None:
        batch = self._draw_batch(data)
        self._post_atomic(batch)

    @rule(data=st.data())
    @step
    def post_batch_independent(self, data: st.DataObject) -> None:
        batch = self._draw_batch(data)
        self._post_independent(batch)

    # Holds -----------------------------------------------------------------------------------

    @precondition(lambda self: bool(self.entries))
    @rule(
        data=st.data(),
        how=st.sampled_from(
            ["full", "all amounts", "balanced part", "random", "too much", "zero", "void"]
        ),
        keyed=st.booleans(),
    )
    @step
    def resolve_hold(self, data: st.DataObject, how: str, keyed: bool) -> None:
        """Post a hold in full or in part, or void it; mostly open holds (timed out or not),
        sometimes resolved ones, sometimes entries that are not holds."""
        hold = self._draw_hold(data)
        key = self._fresh_key() if keyed else None
        if how == "void":
            self._void(hold, key)
            return
        held = [posting.amount for posting in hold.postings]
        amounts: list[int] | None
        if how == "full" or hold.phase is not Phase.PENDING:
            amounts = None
        elif how == "all amounts":
            amounts = held
        elif how == "random":
            drawn = data.draw(st.tuples(*(st.integers(0, a) for a in held)), label="amounts")
            amounts = list(drawn)
        elif how == "zero":
            amounts = [0] * len(held)
        else:
            total = sum(p.amount for p in hold.postings if p.side is Side.DEBIT)
            amounts = balanced_part(hold.postings, data.draw(st.integers(1, total), label="part"))
            if how == "too much":
                index = data.draw(st.integers(0, len(held) - 1), label="index")
                amounts[index] = held[index] + 1
        self._post_pending(hold, amounts, key)

    @precondition(
        lambda self: self._has_entries(lambda e: is_open_hold(e) and e.timeout_at is not None)
    )
    @rule(limit=st.sampled_from([1, 2, 1000]))
    @step
    def void_expired_holds(self, limit: int) -> None:
        """The timeout job, at the clock's time; ``limit`` per transaction."""
        now = self.clock()
        due = self._open_timed_holds(now)
        voided = self.ledger.void_expired_holds(now, limit=limit)
        assert voided == len(due), f"voided {voided} holds at {now}, expected {due}"
        self._record_job_voids(due)

    @rule(data=st.data(), post_a_timed_out_hold=st.booleans())
    @step
    def advance_clock(self, data: st.DataObject, post_a_timed_out_hold: bool) -> None:
        """Move the clock: some seconds, exactly to a hold's timeout, or just before it.

        Then maybe post a hold whose timeout just passed: it must fail (HoldExpired) though the
        job has not voided it yet.
        """
        before = self.clock()
        upcoming = sorted(
            {
                hold.timeout_at
                for hold in self.entries.values()
                if is_open_hold(hold) and hold.timeout_at is not None and hold.timeout_at > before
            }
        )
        choices = ["seconds", "to a timeout", "just before a timeout"] if upcoming else ["seconds"]
        how = data.draw(st.sampled_from(choices), label="how")
        if how == "seconds":
            self.clock.advance(seconds=data.draw(st.integers(1, 900), label="seconds"))
        else:
            target = data.draw(st.sampled_from(upcoming), label="timeout")
            if how == "just before a timeout":
                target -= timedelta(microseconds=1)
            if target > before:
                self.clock.advance(microseconds=(target - before) // timedelta(microseconds=1))
        crossed = sorted(
            hold.id
            for hold in self.entries.values()
            if self._is_timed_out(hold) and hold.timeout_at is not None and hold.timeout_at > before
        )
        if post_a_timed_out_hold and crossed:
            hold = self.entries[data.draw(st.sampled_from(crossed), label="timed-out hold")]
            self._post_pending(hold, None)

    # Reversals -------------------------------------------------------------------------------

    @precondition(lambda self: bool(self.entries))
    @rule(data=st.data(), keyed=st.booleans())
    @step
    def reverse(self, data: st.DataObject, keyed: bool) -> None:
        """Reverse an entry: posted ones succeed once, unless a flag forbids it (the money moved
        on); holds, voids and reversals are not reversible. Any entry, or one that touches a
        flagged account, or one whose reversal a flag forbids (the model says which)."""

        def touches_a_flag(entry: ModelEntry) -> bool:
            return (
                entry.phase in (Phase.POSTED, Phase.POST_PENDING)
                and entry.reverses_id is None
                and entry.reversed_by is None
                and any(self.accounts[p.account_id].flags for p in entry.postings)
            )

        def flag_forbids(entry: ModelEntry) -> bool:
            swapped = [Posting(p.account_id, p.side.opposite, p.amount) for p in entry.postings]
            return touches_a_flag(entry) and bool(
                self._flag_violations(deltas_of(swapped, pending=False))
            )

        predicates: dict[str, Callable[[ModelEntry], bool] | None] = {
            "any entry": None,
            "touches a flag": touches_a_flag,
            "a flag forbids reversing it": flag_forbids,
        }
        pools = [
            name
            for name, predicate in predicates.items()
            if predicate is None or self._has_entries(predicate)
        ]
        pool = data.draw(st.sampled_from(pools), label="pool")
        original = self._draw_entry(data, predicates[pool])
        self._reverse(original, self._fresh_key() if keyed else None)

    # Sealing ---------------------------------------------------------------------------------

    @rule(skip_if_busy=st.booleans())
    @step
    def seal(self, skip_if_busy: bool) -> None:
        sealed = self.ledger.seal(skip_if_busy=skip_if_busy)
        assert sealed == self.unsealed, f"sealed {sealed} entries, {self.unsealed} were queued"
        self.unsealed = 0
        self.sealed = set(self.entries)

    # Raw SQL: the database's own guards ------------------------------------------------------

    @rule(data=st.data(), break_a_flag=st.sampled_from([True, True, False]))
    @step
    def raw_sql_cannot_break_account_rules(self, data: st.DataObject, break_a_flag: bool) -> None:
        """A flag (CHECK constraints), non-negative totals, no pending on a closed account."""
        flagged = any(a.flags for a in self.accounts.values())
        if break_a_flag and flagged:
            account = self._draw_account(data, lambda a: bool(a.flags))
            statements = []
            if DEBITS_FLAG in account.flags:
                statements += [
                    "UPDATE ledger_account SET debits_posted = credits_posted + 1 WHERE id = {id}",
                    "UPDATE ledger_account "
                    "SET debits_pending = credits_posted - debits_posted + 1 WHERE id = {id}",
                ]
            if CREDITS_FLAG in account.flags:
                statements += [
                    "UPDATE ledger_account SET credits_posted = debits_posted + 1 WHERE id = {id}",
                    "UPDATE ledger_account "
                    "SET credits_pending = debits_posted - credits_posted + 1 WHERE id = {id}",
                ]
        else:
            account = self._draw_account(data, lambda a: True)
            statements = [
                "UPDATE ledger_account SET credits_posted = -1 WHERE id = {id}",
                "UPDATE ledger_account SET debits_pending = -1 WHERE id = {id}",
                "UPDATE ledger_account SET flags = 4 WHERE id = {id}",
            ]
            if account.totals[2] or account.totals[3]:
                statements.append("UPDATE ledger_account SET closed = TRUE WHERE id = {id}")
        statement = data.draw(st.sampled_from(statements), label="statement")
        self._raw_refused(statement.format(id=account.id), sa.exc.IntegrityError)

    @precondition(lambda self: bool(self.entries))
    @rule(data=st.data())
    @step
    def raw_sql_cannot_change_history(self, data: st.DataObject) -> None:
        entry = self._draw_entry(data)
        statements = [
            "UPDATE ledger_entry SET description = 'tampered' WHERE id = {id}",
            "UPDATE ledger_entry SET phase = 0, pending_id = NULL WHERE id = {id}",
            "DELETE FROM ledger_entry WHERE id = {id}",
        ]
        if entry.postings:
            statements += [
                "UPDATE ledger_posting SET amount = amount + 1 WHERE entry_id = {id}",
                "UPDATE ledger_posting SET side = 3 - side WHERE entry_id = {id}",
                "DELETE FROM ledger_posting WHERE entry_id = {id}",
            ]
        if entry.id in self.sealed:
            statements += [
                "UPDATE ledger_seal SET hash = previous_hash WHERE entry_id = {id}",
                "DELETE FROM ledger_seal WHERE entry_id = {id}",
            ]
        if self.ctx.backend == "postgresql":
            # PostgreSQL also refuses TRUNCATE, and checks at commit that a posting slipped
            # into an old entry leaves it balanced (SQLite has no such trigger).
            issuer = self._issuer(entry.ledger_id)
            statements += [
                "TRUNCATE ledger_posting",
                "INSERT INTO ledger_posting (entry_id, ledger_id, account_id, side, amount) "
                f"VALUES ({{id}}, {entry.ledger_id}, {issuer.id}, 1, 1)",
            ]
        statement = data.draw(st.sampled_from(statements), label="statement")
        self._raw_refused(statement.format(id=entry.id), sa.exc.DBAPIError)

    # Invariants ------------------------------------------------------------------------------

    @invariant()
    def database_matches_model(self) -> None:
        if self.ready:
            self.dirty = True
            self._check_database()
            self.dirty = False

    def teardown(self) -> None:
        """Void the timed holds, check, seal, verify; after a failure only clean up."""
        checked = False
        try:
            if self.ready and not self.dirty:
                self._final_checks()
                checked = True
        finally:
            if self.ready and not checked:
                # Something failed: leave nothing that would disturb later examples (timed
                # holds that their job would void, unsealed entries that their seal would count).
                with contextlib.suppress(Exception):
                    self.ledger.void_expired_holds(FAR_FUTURE)
                with contextlib.suppress(Exception):
                    self.ledger.seal()
            self.ledger.close()

    def _final_checks(self) -> None:
        due = self._open_timed_holds(FAR_FUTURE)
        voided = self.ledger.void_expired_holds(FAR_FUTURE)
        assert voided == len(due), f"the job voided {voided} holds, expected {due}"
        self._record_job_voids(due)
        self._check_database()
        sealed = self.ledger.seal()
        assert sealed == self.unsealed, f"sealed {sealed} entries, {self.unsealed} were queued"
        report = self.ledger.verify()
        problems = [(problem.kind, problem.message) for problem in report.problems]
        new = [problem for problem in problems if problem not in self.ctx.known_problems]
        self.ctx.known_problems.update(problems)
        assert not new, "verify reports problems:\n" + "\n".join(
            f"  {kind}: {message}" for kind, message in new
        )
        assert report.unsealed == 0, f"{report.unsealed} entries are not sealed after seal()"
        self.ctx.entries += len(self.entries)

    def _check_database(self) -> None:
        accounts_sql = ACCOUNTS_SQL.format(
            accounts=", ".join(str(account_id) for account_id in sorted(self.accounts)),
            ledgers=f"{self.main}, {self.other}",
        )

        def read(tx: LedgerTx) -> tuple[list[Any], list[Any], list[Any]]:
            connection = tx.connection
            return (
                list(connection.exec_driver_sql(accounts_sql).fetchall()),
                list(connection.exec_driver_sql(ENTRIES_SQL.format(floor=self.floor))),
                list(connection.exec_driver_sql(POSTINGS_SQL.format(floor=self.floor))),
            )

        account_rows, entry_rows, posting_rows = self._read(read)

        # Entries: exactly the model's, each balanced, with the model's postings and links.
        assert [row[0] for row in entry_rows] == sorted(self.entries), (
            f"entries in the database {[row[0] for row in entry_rows]}, "
            f"in the model {sorted(self.entries)}"
        )
        lines: dict[int, list[Posting]] = defaultdict(list)
        for entry_id, account_id, side, amount in posting_rows:
            lines[entry_id].append(Posting(account_id, Side(side), amount))
        resolved = {row[3] for row in entry_rows if row[3] is not None}
        # [debits, credits] of posted entries and of open holds, per ledger
        posted: dict[int, list[int]] = defaultdict(lambda: [0, 0])
        pending: dict[int, list[int]] = defaultdict(lambda: [0, 0])
        for entry_id, ledger_id, phase, pending_id, reverses_id, timeout_us, ns, key in entry_rows:
            model = self.entries[entry_id]
            postings = tuple(lines.get(entry_id, ()))
            debits = sum(p.amount for p in postings if p.side is Side.DEBIT)
            credits = sum(p.amount for p in postings if p.side is Side.CREDIT)
            assert debits == credits, f"entry {entry_id} is unbalanced: {debits} != {credits}"
            if phase == Phase.VOID_PENDING:
                assert not postings, f"void entry {entry_id} has postings"
            else:
                assert len(postings) >= 2, f"entry {entry_id} has {len(postings)} postings"
            assert (ledger_id, Phase(phase), pending_id, reverses_id) == (
                model.ledger_id,
                model.phase,
                model.pending_id,
                model.reverses_id,
            ), f"entry {entry_id} differs from the model {model}"
            assert postings == model.postings, f"entry {entry_id}: {postings} != {model.postings}"
            timeout = None if model.timeout_at is None else to_us(model.timeout_at)
            assert timeout_us == timeout, f"entry {entry_id}: timeout {timeout_us} != {timeout}"
            assert (None if ns is None else (ns, key)) == model.key
            if phase in (Phase.POSTED, Phase.POST_PENDING):
                posted[ledger_id][0] += debits
                posted[ledger_id][1] += credits
            elif phase == Phase.PENDING and entry_id not in resolved:
                pending[ledger_id][0] += debits
                pending[ledger_id][1] += credits
        for ledger_id in (self.main, self.other):
            assert posted[ledger_id][0] == posted[ledger_id][1], (
                f"ledger {ledger_id}: posted debits {posted[ledger_id][0]} != "
                f"credits {posted[ledger_id][1]}"
            )
            assert pending[ledger_id][0] == pending[ledger_id][1], (
                f"ledger {ledger_id}: pending debits {pending[ledger_id][0]} != "
                f"credits {pending[ledger_id][1]}"
            )

        # Accounts: maintained totals = totals recomputed from postings = the model's; flags hold.
        assert [row[0] for row in account_rows] == sorted(self.accounts)
        sums = [0, 0, 0, 0]
        for row in account_rows:
            account_id, ledger_id, flags, closed = row[0], row[1], row[2], bool(row[3])
            stored = [int(value) for value in row[4:8]]
            recomputed = [int(value) for value in row[8:12]]
            account = self.accounts[account_id]
            assert stored == recomputed, (
                f"account {account_id}: maintained totals {stored}, postings say {recomputed}"
            )
            assert stored == account.totals, (
                f"account {account_id}: totals {stored}, the model expects {account.totals}"
            )
            assert (ledger_id, AccountFlags(flags), closed) == (
                account.ledger_id,
                account.flags,
                account.closed,
            ), f"account {account_id} differs from the model {account}"
            dp, cp, dq, cq = stored
            if DEBITS_FLAG in account.flags:
                assert dp + dq <= cp, f"account {account_id} breaks its flag: {stored}"
            if CREDITS_FLAG in account.flags:
                assert cp + cq <= dp, f"account {account_id} breaks its flag: {stored}"
            if closed:
                assert dq == cq == 0, f"closed account {account_id} has pending totals {stored}"
            for index in range(4):
                sums[index] += stored[index]
        assert sums == [
            sum(value[0] for value in posted.values()),
            sum(value[1] for value in posted.values()),
            sum(value[0] for value in pending.values()),
            sum(value[1] for value in pending.values()),
        ], "the accounts' totals do not add up to the entries' postings"

    # Operations with their expected outcomes ---------------------------------------------------

    def _post(self, entry: NewEntry) -> None:
        expected = validation_errors(entry.postings)
        key = key_of(entry)
        if not expected and key is not None and key in self.keys:
            entry_id, original = self.keys[key]
            if original == entry:
                replay = self.ledger.post(entry)
                self._check_replay(replay, entry_id)
                return
            expected = [expect(errors.IdempotencyConflict, entry_id=entry_id)]
        deltas: Deltas = {}
        if not expected:
            expected, deltas = self._plan(entry, None)
        if expected:
            self._refuse(lambda: self.ledger.post(entry), expected, f"post {entry}")
            return
        recorded = self.ledger.post(entry)
        phase = Phase.PENDING if entry.pending else Phase.POSTED
        self._record(
            recorded,
            phase,
            tuple(entry.postings),
            deltas,
            timeout_at=entry.timeout_at,
            key=key,
            request=entry,
        )

    def _post_pending(
        self, hold: ModelEntry, amounts: list[int] | None, key: tuple[str, str] | None = None
    ) -> None:
        request = Resolution("post_pending", hold.id, None if amounts is None else tuple(amounts))
        options: dict[str, Any] = {} if amounts is None else {"amounts": amounts}
        if key is not None:
            options.update(namespace=key[0], idempotency_key=key[1])
        what = f"post_pending({hold}, {options}) at {self.clock()}"

        def action() -> Entry:
            return self.ledger.post_pending(hold.id, **options)

        # Checked before the key is looked up: the hold is a hold, the amounts fit and balance.
        expected: list[Expect] = []
        postings: tuple[Posting, ...] = ()
        if hold.phase is not Phase.PENDING:
            expected.append(expect(errors.HoldNotPending, entry_id=hold.id))
        elif amounts is None:
            postings = hold.postings
        else:
            if any(a > p.amount for p, a in zip(hold.postings, amounts, strict=True)):
                expected.append(expect(errors.HoldAmountExceeded, entry_id=hold.id))
            postings = tuple(
                Posting(p.account_id, p.side, amount)
                for p, amount in zip(hold.postings, amounts, strict=True)
                if amount
            )
            expected += validation_errors(postings)
        if expected:
            self._refuse(action, expected, what)
            return
        if self._replay_or_conflict(key, request, action, what):
            return
        # Only a resolved hold can name a closed account (closing waits for open holds).
        expected += self._closed_errors(postings)
        if hold.resolved_by is not None:
            expected.append(expect(errors.HoldAlreadyResolved, entry_id=hold.id))
        if hold.timeout_at is not None and self.clock() >= hold.timeout_at:
            expected.append(expect(errors.HoldExpired, entry_id=hold.id))
        deltas = merge(
            deltas_of(postings, pending=False), deltas_of(hold.postings, pending=True, sign=-1)
        )
        if not expected:
            expected = self._flag_violations(deltas)
        if expected:
            self._refuse(action, expected, what)
            return
        self._record(
            action(),
            Phase.POST_PENDING,
            postings,
            deltas,
            pending_id=hold.id,
            key=key,
            request=request,
        )

    def _void(self, hold: ModelEntry, key: tuple[str, str] | None = None) -> None:
        request = Resolution("void_pending", hold.id)
        options: dict[str, Any] = {}
        if key is not None:
            options.update(namespace=key[0], idempotency_key=key[1])
        what = f"void_pending({hold}, {options})"

        def action() -> Entry:
            return self.ledger.void_pending(hold.id, **options)

        if self._replay_or_conflict(key, request, action, what):
            return
        expected: list[Expect] = []
        if hold.phase is not Phase.PENDING:
            expected.append(expect(errors.HoldNotPending, entry_id=hold.id))
        elif hold.resolved_by is not None:
            expected.append(expect(errors.HoldAlreadyResolved, entry_id=hold.id))
        deltas = deltas_of(hold.postings, pending=True, sign=-1)
        if not expected:
            expected = self._flag_violations(deltas)
        if expected:
            self._refuse(action, expected, what)
            return
        self._record(
            action(), Phase.VOID_PENDING, (), deltas, pending_id=hold.id, key=key, request=request
        )

    def _reverse(self, original: ModelEntry, key: tuple[str, str] | None = None) -> None:
        request = Resolution("reverse", original.id)
        options: dict[str, Any] = {}
        if key is not None:
            options.update(namespace=key[0], idempotency_key=key[1])
        what = f"reverse({original}, {options})"

        def action() -> Entry:
            return self.ledger.reverse(original.id, **options)

        postings = tuple(
            Posting(p.account_id, p.side.opposite, p.amount) for p in original.postings
        )
        deltas = deltas_of(postings, pending=False)
        if original.phase not in (Phase.POSTED, Phase.POST_PENDING) or original.reverses_id:
            self._refuse(action, [expect(errors.NotReversible, entry_id=original.id)], what)
            return
        if self._replay_or_conflict(key, request, action, what):
            return
        expected = self._closed_errors(postings)
        if original.reversed_by is not None:
            expected.append(expect(errors.AlreadyReversed, entry_id=original.id))
        if not expected:
            expected = self._flag_violations(deltas)
        if expected:
            self._refuse(action, expected, what)
            return
        self._record(
            action(),
            Phase.POSTED,
            postings,
            deltas,
            reverses_id=original.id,
            key=key,
            request=request,
        )

    def _replay_or_conflict(
        self,
        key: tuple[str, str] | None,
        request: Request,
        action: Callable[[], Entry],
        what: str,
    ) -> bool:
        """If ``key`` was used: a replay (same content) or a conflict; True when handled."""
        if key is None or key not in self.keys:
            return False
        entry_id, original = self.keys[key]
        if self._content(original) == self._content(request):
            self._check_replay(action(), entry_id)
        else:
            conflict = [expect(errors.IdempotencyConflict, entry_id=entry_id)]
            self._refuse(action, conflict, what)
        return True

    def _content(self, request: Request) -> object:
        """What the ledger's content digest covers, for the requests this machine makes."""
        if isinstance(request, NewEntry):
            return request
        if request.operation != "post_pending":
            return (request.operation, request.target)
        hold = self.entries[request.target]
        amounts = request.amounts or tuple(p.amount for p in hold.postings)
        postings = tuple(
            Posting(p.account_id, p.side, amount)
            for p, amount in zip(hold.postings, amounts, strict=True)
            if amount
        )
        return (request.operation, request.target, postings)

    def _post_atomic(self, batch: list[NewEntry]) -> None:
        """All or nothing; flags are checked on the state after the whole batch."""
        what = f"atomic batch {batch}"
        for index, entry in enumerate(batch):
            invalid = validation_errors(entry.postings)
            if invalid:
                self._refuse_batch(batch, index, invalid, what)
                return
        outcomes: list[tuple[str, Any]] = []
        seen: dict[tuple[str, str], tuple[int, NewEntry]] = {}
        for index, entry in enumerate(batch):
            key = key_of(entry)
            if key is not None:
                if key in seen:
                    if seen[key][1] != entry:
                        conflict = [expect(errors.IdempotencyConflict)]
                        self._refuse_batch(batch, index, conflict, what)
                        return
                    outcomes.append(("same", seen[key][0]))
                    continue
                seen[key] = (index, entry)
                if key in self.keys:
                    entry_id, original = self.keys[key]
                    if original != entry:
                        conflict = [expect(errors.IdempotencyConflict, entry_id=entry_id)]
                        self._refuse_batch(batch, index, conflict, what)
                        return
                    outcomes.append(("replay", entry_id))
                    continue
            refusals, deltas = self._plan(entry, None, flags=False)
            if refusals:
                self._refuse_batch(batch, index, refusals, what)
                return
            outcomes.append(("new", deltas))
        new = [(index, o[1]) for index, o in enumerate(outcomes) if o[0] == "new"]
        violations = self._flag_violations(merge(*(deltas for _, deltas in new)))
        if violations:
            with pytest.raises(errors.BatchRejected) as caught:
                self.ledger.post_batch(batch, BatchMode.ATOMIC)
            error = caught.value
            assert any(v.matches(error.cause) for v in violations), (
                f"{what}: refused with {describe(error.cause)}, expected one of {violations}"
            )
            debit_side = isinstance(error.cause, errors.InsufficientFunds)
            account_id = error.cause.context["account_id"]
            pushers = [
                index
                for index, deltas in new
                if account_id in deltas
                and (
                    (deltas[account_id][0] > 0 or deltas[account_id][2] > 0)
                    if debit_side
                    else (deltas[account_id][1] > 0 or deltas[account_id][3] > 0)
                )
            ]
            assert error.index in pushers, (
                f"{what}: blamed entry {error.index}; entries pushing account {account_id} "
                f"the way its flag forbids: {pushers}"
            )
            return
        results = self.ledger.post_batch(batch, BatchMode.ATOMIC)
        assert [result.index for result in results] == list(range(len(batch)))
        for index, (entry, result, (outcome, detail)) in enumerate(
            zip(batch, results, outcomes, strict=True)
        ):
            assert result.error is None, f"{what}: entry {index} failed: {result.error!r}"
            assert result.entry is not None
            if outcome == "new":
                assert not result.replayed
                self._record_new(result.entry, entry, detail)
            elif outcome == "replay":
                assert result.replayed
                self._check_replay(result.entry, detail)
            else:
                first = results[detail].entry
                assert first is not None
                assert result.replayed
                assert result.entry.id == first.id

    def _post_independent(self, batch: list[NewEntry]) -> None:
        """Each entry alone, in order, on the state the entries before it left."""
        what = f"independent batch {batch}"
        working = {account_id: list(a.totals) for account_id, a in self.accounts.items()}
        outcomes: list[tuple[str, Any]] = []
        seen: dict[tuple[str, str], tuple[int, NewEntry]] = {}
        for entry in batch:
            invalid = validation_errors(entry.postings)
            if invalid:
                outcomes.append(("error", invalid))
                continue
            key = key_of(entry)
            if key is not None:
                if key in seen:
                    if seen[key][1] != entry:
                        outcomes.append(("error", [expect(errors.IdempotencyConflict)]))
                    else:
                        outcomes.append(("same", seen[key][0]))
                    continue
                seen[key] = (len(outcomes), entry)
                if key in self.keys:
                    entry_id, original = self.keys[key]
                    if original != entry:
                        conflict = [expect(errors.IdempotencyConflict, entry_id=entry_id)]
                        outcomes.append(("error", conflict))
                    else:
                        outcomes.append(("replay", entry_id))
                    continue
            refusals, deltas = self._plan(entry, working)
            if refusals:
                outcomes.append(("error", refusals))
                continue
            for account_id, delta in deltas.items():
                for position in range(4):
                    working[account_id][position] += delta[position]
            outcomes.append(("new", deltas))
        results = self.ledger.post_batch(batch, BatchMode.INDEPENDENT)
        assert [result.index for result in results] == list(range(len(batch)))
        for index, (entry, result) in enumerate(zip(batch, results, strict=True)):
            outcome, detail = outcomes[index]
            if outcome == "same":
                # The same key and content as an earlier entry of the batch: its outcome.
                first_outcome = outcomes[detail][0]
                first = results[detail]
                if first_outcome == "error":
                    assert result.entry is None
                    assert result.error is first.error
                else:
                    assert result.error is None and result.entry is not None
                    assert first.entry is not None
                    assert result.entry.id == first.entry.id
                    assert result.replayed
                continue
            if outcome == "error":
                assert result.entry is None and result.error is not None, (
                    f"{what}: entry {index} should fail with one of {detail}, got {result.entry}"
                )
                assert any(e.matches(result.error) for e in detail), (
                    f"{what}: entry {index} failed with {describe(result.error)}, "
                    f"expected one of {detail}"
                )
                assert not result.replayed
                continue
            assert result.error is None, f"{what}: entry {index} failed: {describe(result.error)}"
            assert result.entry is not None
            if outcome == "replay":
                assert result.replayed
                self._check_replay(result.entry, detail)
            else:
                assert not result.replayed
                self._record_new(result.entry, entry, detail)

    # Model helpers ---------------------------------------------------------------------------

    def _plan(
        self, entry: NewEntry, base: Mapping[int, list[int]] | None, *, flags: bool = True
    ) -> tuple[list[Expect], Deltas]:
        """A valid new entry's refusals (closed accounts, two ledgers, flags) and its deltas."""
        deltas = deltas_of(entry.postings, pending=entry.pending)
        refusals = self._closed_errors(entry.postings)
        ledger_ids = sorted({self.accounts[p.account_id].ledger_id for p in entry.postings})
        if len(ledger_ids) > 1:
            refusals.append(expect(errors.MixedLedgers, ledger_ids=ledger_ids))
        if not refusals and flags:
            refusals = self._flag_violations(deltas, base)
        return refusals, deltas

    def _closed_errors(self, postings: Sequence[Posting]) -> list[Expect]:
        return [
            expect(errors.AccountClosed, account_id=p.account_id)
            for p in postings
            if self.accounts[p.account_id].closed
        ]

    def _flag_violations(
        self, deltas: Mapping[int, Sequence[int]], base: Mapping[int, list[int]] | None = None
    ) -> list[Expect]:
        found = []
        for account_id in sorted(deltas):
            account = self.accounts[account_id]
            totals = account.totals if base is None else base[account_id]
            dp, cp, dq, cq = (t + d for t, d in zip(totals, deltas[account_id], strict=True))
            if DEBITS_FLAG in account.flags and dp + dq > cp:
                found.append(expect(errors.InsufficientFunds, account_id=account_id))
            if CREDITS_FLAG in account.flags and cp + cq > dp:
                found.append(expect(errors.CreditsExceedDebits, account_id=account_id))
        return found

    def _record_new(self, recorded: Entry, request: NewEntry, deltas: Deltas) -> None:
        self._record(
            recorded,
            Phase.PENDING if request.pending else Phase.POSTED,
            tuple(request.postings),
            deltas,
            timeout_at=request.timeout_at,
            key=key_of(request),
            request=request,
        )

    def _record(
        self,
        recorded: Entry,
        phase: Phase,
        postings: tuple[Posting, ...],
        deltas: Mapping[int, Sequence[int]],
        *,
        pending_id: int | None = None,
        reverses_id: int | None = None,
        timeout_at: datetime | None = None,
        key: tuple[str, str] | None = None,
        request: Request | None = None,
    ) -> None:
        """Check an entry the ledger returned against what was asked, and add it to the model."""
        assert recorded.id > max(self.entries, default=self.floor), (
            f"entry id {recorded.id} is not above the ids before it"
        )
        if postings:
            ledger_id = self.accounts[postings[0].account_id].ledger_id
        else:
            assert pending_id is not None
            ledger_id = self.entries[pending_id].ledger_id
        assert recorded.phase is phase, f"{recorded} is not {phase!r}"
        assert tuple(recorded.postings) == postings, f"{recorded} should post {postings}"
        assert (recorded.ledger_id, recorded.pending_id, recorded.reverses_id) == (
            ledger_id,
            pending_id,
            reverses_id,
        ), f"{recorded}"
        assert recorded.timeout_at == timeout_at
        assert (
            None if recorded.namespace is None else (recorded.namespace, recorded.idempotency_key)
        ) == key
        assert recorded.recorded_at == self.clock()
        self.entries[recorded.id] = ModelEntry(
            id=recorded.id,
            ledger_id=ledger_id,
            phase=phase,
            postings=postings,
            pending_id=pending_id,
            reverses_id=reverses_id,
            timeout_at=timeout_at,
            key=key,
        )
        for account_id, delta in deltas.items():
            totals = self.accounts[account_id].totals
            for index in range(4):
                totals[index] += delta[index]
        if key is not None:
            assert request is not None
            self.keys[key] = (recorded.id, request)
        if pending_id is not None:
            self.entries[pending_id].resolved_by = recorded.id
        if reverses_id is not None:
            self.entries[reverses_id].reversed_by = recorded.id
        self.unsealed += 1

    def _check_replay(self, replay: Entry, entry_id: int) -> None:
        original = self.entries[entry_id]
        assert replay.id == entry_id, f"a replay returned entry {replay.id}, not {entry_id}"
        assert replay.phase is original.phase
        assert tuple(replay.postings) == original.postings

    def _record_job_voids(self, hold_ids: list[int]) -> None:
        """Add the voids ``void_expired_holds`` wrote (it returns only their number)."""
        if not hold_ids:
            return
        top = max(self.entries, default=self.floor)
        rows = self._read(
            lambda tx: list(
                tx.connection.exec_driver_sql(
                    f"SELECT id, pending_id FROM ledger_entry WHERE id > {top} ORDER BY id"
                )
            )
        )
        assert sorted(row[1] for row in rows) == hold_ids, (
            f"the job wrote entries {rows}, expected voids of {hold_ids}"
        )
        for entry_id, hold_id in rows:
            void = self.ledger.get_entry(entry_id)
            assert void.kind == "hold_timeout"
            hold = self.entries[hold_id]
            deltas = deltas_of(hold.postings, pending=True, sign=-1)
            self._record(void, Phase.VOID_PENDING, (), deltas, pending_id=hold_id)

    def _open_timed_holds(self, as_of: datetime) -> list[int]:
        return sorted(
            hold.id
            for hold in self.entries.values()
            if hold.phase is Phase.PENDING
            and hold.resolved_by is None
            and hold.timeout_at is not None
            and hold.timeout_at <= as_of
        )

    def _refuse(self, action: Callable[[], object], expected: list[Expect], what: str) -> None:
        """``action`` must raise one of ``expected``; the invariants then check nothing moved."""
        try:
            result = action()
        except errors.LedgerError as error:
            assert any(e.matches(error) for e in expected), (
                f"{what}: raised {describe(error)}, expected one of {expected}"
            )
            return
        raise AssertionError(f"{what}: expected one of {expected}, but it returned {result!r}")

    def _refuse_batch(
        self, batch: list[NewEntry], index: int, causes: list[Expect], what: str
    ) -> None:
        with pytest.raises(errors.BatchRejected) as caught:
            self.ledger.post_batch(batch, BatchMode.ATOMIC)
        error = caught.value
        assert error.index == index, (
            f"{what}: rejected at entry {error.index} ({describe(error.cause)}), "
            f"expected at entry {index} with one of {causes}"
        )
        assert any(cause.matches(error.cause) for cause in causes), (
            f"{what}: rejected with {describe(error.cause)}, expected one of {causes}"
        )

    def _raw_refused(self, statement: str, error_type: type[sa.exc.DBAPIError]) -> None:
        with pytest.raises(error_type), self.engine.begin() as connection:
            connection.exec_driver_sql(statement)

    def _read(self, work: Callable[[LedgerTx], T]) -> T:
        return self.ledger.read(work)

    def _create_account(
        self, ledger_id: int, normal_side: Side, flags: AccountFlags, *, issuer: bool = False
    ) -> None:
        account = self.ledger.create_account(
            ledger_id=ledger_id, code=len(self.accounts) + 1, normal_side=normal_side, flags=flags
        )
        assert (account.ledger_id, account.normal_side, account.flags, account.closed) == (
            ledger_id,
            normal_side,
            flags,
            False,
        )
        assert account.id not in self.accounts
        self.accounts[account.id] = ModelAccount(
            account.id, ledger_id, normal_side, flags, issuer=issuer
        )

    def _issuer(self, ledger_id: int) -> ModelAccount:
        return next(a for a in self.accounts.values() if a.issuer and a.ledger_id == ledger_id)

    def _is_timed_out(self, entry: ModelEntry) -> bool:
        """An open hold past its timeout that the job has not voided yet."""
        return (
            is_open_hold(entry)
            and entry.timeout_at is not None
            and entry.timeout_at <= self.clock()
        )

    def _has_entries(self, predicate: Callable[[ModelEntry], bool]) -> bool:
        return any(predicate(entry) for entry in self.entries.values())

    # Drawing ---------------------------------------------------------------------------------

    def _draw_account(
        self, data: st.DataObject, predicate: Callable[[ModelAccount], bool]
    ) -> ModelAccount:
        ids = sorted(a.id for a in self.accounts.values() if predicate(a))
        return self.accounts[data.draw(st.sampled_from(ids), label="account")]

    def _draw_entry(
        self, data: st.DataObject, predicate: Callable[[ModelEntry], bool] | None = None
    ) -> ModelEntry:
        ids = sorted(e.id for e in self.entries.values() if predicate is None or predicate(e))
        return self.entries[data.draw(st.sampled_from(ids), label="entry")]

    def _draw_hold(self, data: st.DataObject) -> ModelEntry:
        """Mostly an open hold (timed out ones too); sometimes any hold or any entry."""
        predicates: dict[str, Callable[[ModelEntry], bool]] = {
            "open hold": is_open_hold,
            "timed-out hold": self._is_timed_out,
            "any hold": lambda e: e.phase is Phase.PENDING,
            "any entry": lambda e: True,
        }
        weights = {"open hold": 3, "timed-out hold": 2, "any hold": 1, "any entry": 1}
        pools = [
            name
            for name, predicate in predicates.items()
            if self._has_entries(predicate)
            for _ in range(weights[name])
        ]
        pool = data.draw(st.sampled_from(pools), label="pool")
        return self._draw_entry(data, predicates[pool])

    def _draw_postings(self, data: st.DataObject, account_ids: list[int]) -> list[Posting]:
        return data.draw(balanced_postings(tuple(sorted(account_ids))), label="postings")

    def _make_entry(self, data: st.DataObject, postings: Sequence[Posting], kind: str) -> NewEntry:
        """An entry of ``postings``, maybe a hold (maybe with a timeout), maybe with a key."""
        pending, timeout_seconds, keyed = data.draw(ENTRY_OPTIONS, label="pending, timeout, keyed")
        timeout_at = None
        if pending and timeout_seconds is not None:
            timeout_at = self.clock() + timedelta(seconds=timeout_seconds)
        key = self._fresh_key() if keyed else None
        return NewEntry(
            tuple(postings),
            kind=kind,
            pending=pending,
            timeout_at=timeout_at,
            namespace=None if key is None else key[0],
            idempotency_key=None if key is None else key[1],
        )

    def _fresh_key(self) -> tuple[str, str]:
        return (self.namespace, f"k{next(self.key_numbers)}")

    def _draw_random_entry(self, data: st.DataObject, ledger_id: int) -> NewEntry:
        ids = [a.id for a in self.accounts.values() if a.ledger_id == ledger_id]
        return self._make_entry(data, self._draw_postings(data, ids), "transfer")

    def _draw_fund_entry(self, data: st.DataObject) -> NewEntry:
        target = self._draw_account(data, lambda a: not a.issuer or len(self.accounts) == 2)
        issuer = self._issuer(target.ledger_id)
        amount = data.draw(st.integers(1, 100), label="amount")
        if CREDITS_FLAG in target.flags and DEBITS_FLAG not in target.flags:
            postings = [
                Posting(target.id, Side.DEBIT, amount),
                Posting(issuer.id, Side.CREDIT, amount),
            ]
        else:
            postings = [
                Posting(issuer.id, Side.DEBIT, amount),
                Posting(target.id, Side.CREDIT, amount),
            ]
        return self._make_entry(data, postings, "fund")

    def _draw_spend_entry(self, data: st.DataObject) -> NewEntry:
        account = self._draw_account(data, lambda a: bool(a.flags))
        other = self._draw_account(
            data, lambda a: a.ledger_id == account.ledger_id and a.id != account.id
        )
        dp, cp, dq, cq = account.totals
        if DEBITS_FLAG in account.flags:
            available = cp - dp - dq
            spent_side = Side.DEBIT
        else:
            available = dp - cp - cq
            spent_side = Side.CREDIT
        amount = max(1, available + data.draw(st.integers(-3, 2), label="over"))
        postings = [
            Posting(account.id, spent_side, amount),
            Posting(other.id, spent_side.opposite, amount),
        ]
        return self._make_entry(data, postings, "spend")

    def _draw_mixed_entry(self, data: st.DataObject) -> NewEntry:
        """An entry of the main ledger with one posting moved to the other ledger."""
        main = [a.id for a in self.accounts.values() if a.ledger_id == self.main]
        postings = self._draw_postings(data, main)
        moved = data.draw(st.integers(0, len(postings) - 1), label="moved")
        stranger = self._draw_account(data, lambda a: a.ledger_id == self.other)
        postings[moved] = dataclasses.replace(postings[moved], account_id=stranger.id)
        return self._make_entry(data, postings, "mixed")

    def _draw_altered(self, data: st.DataObject, entry: NewEntry) -> NewEntry:
        """The same key with other content: a conflict."""
        how = data.draw(
            st.sampled_from(["description", "kind", "metadata", "amounts", "pending"]), label="how"
        )
        if how == "description":
            return dataclasses.replace(entry, description=entry.description + " (again)")
        if how == "kind":
            return dataclasses.replace(entry, kind=entry.kind + "-again")
        if how == "metadata":
            return dataclasses.replace(entry, metadata={"again": True})
        if how == "pending":
            return dataclasses.replace(entry, pending=not entry.pending, timeout_at=None)
        postings = list(entry.postings)
        for side in (Side.DEBIT, Side.CREDIT):
            index = next(i for i, p in enumerate(postings) if p.side is side)
            postings[index] = dataclasses.replace(
                postings[index], amount=postings[index].amount + 1
            )
        return dataclasses.replace(entry, postings=tuple(postings))

    def _draw_batch(self, data: st.DataObject) -> list[NewEntry]:
        """1..5 entries: mostly funding, some spending or random, and some trouble."""
        size = data.draw(st.integers(1, 5), label="batch size")
        batch: list[NewEntry] = []
        for _ in range(size):
            kinds = ["fund", "fund", "fund", "random", "unbalanced", "mixed"]
            if any(a.flags for a in self.accounts.values()):
                kinds += ["spend", "spend"]
            entry_keys = sorted(k for k, (_, r) in self.keys.items() if isinstance(r, NewEntry))
            if entry_keys:
                kinds.append("replay")
            if self.keys:
                kinds.append("conflict")
            keyed = [entry for entry in batch if key_of(entry) is not None]
            if keyed:
                kinds += ["repeat in batch", "conflict in batch"]
            kind = data.draw(st.sampled_from(kinds), label="entry kind")
            if kind == "fund":
                entry = self._draw_fund_entry(data)
            elif kind == "spend":
                entry = self._draw_spend_entry(data)
            elif kind == "random":
                entry = self._draw_random_entry(data, self.main)
            elif kind == "mixed":
                entry = self._draw_mixed_entry(data)
            elif kind == "unbalanced":
                entry = self._draw_random_entry(data, self.main)
                first = entry.postings[0]
                bumped = dataclasses.replace(first, amount=first.amount + 1)
                entry = dataclasses.replace(entry, postings=(bumped, *entry.postings[1:]))
            elif kind == "replay":
                key = data.draw(st.sampled_from(entry_keys), label="key")
                request = self.keys[key][1]
                assert isinstance(request, NewEntry)
                entry = request
            elif kind == "conflict":
                key = data.draw(st.sampled_from(sorted(self.keys)), label="key")
                request = self.keys[key][1]
                if isinstance(request, NewEntry):
                    entry = self._draw_altered(data, request)
                else:
                    entry = dataclasses.replace(
                        self._draw_fund_entry(data), namespace=key[0], idempotency_key=key[1]
                    )
            else:
                entry = data.draw(st.sampled_from(keyed), label="earlier entry")
                if kind == "conflict in batch":
                    entry = self._draw_altered(data, entry)
            batch.append(entry)
        return batch


@st.composite
def balanced_postings(draw: st.DrawFn, account_ids: Sequence[int]) -> list[Posting]:
    """2..5 balanced postings on accounts drawn from ``account_ids`` (repeats allowed).

    Each line draws an account, an amount and a side; then the last line of the lighter side
    grows by the difference, so that debits equal credits.
    """
    lines = draw(
        st.lists(
            st.tuples(st.sampled_from(account_ids), AMOUNTS, st.booleans()), min_size=2, max_size=5
        )
    )
    if all(is_debit == lines[0][2] for _, _, is_debit in lines):
        account_id, amount, is_debit = lines[-1]
        lines[-1] = (account_id, amount, not is_debit)
    postings = [
        Posting(account_id, Side.DEBIT if is_debit else Side.CREDIT, amount)
        for account_id, amount, is_debit in lines
    ]
    debits = sum(p.amount for p in postings if p.side is Side.DEBIT)
    credits = sum(p.amount for p in postings if p.side is Side.CREDIT)
    lighter = Side.CREDIT if debits > credits else Side.DEBIT
    index = max(i for i, p in enumerate(postings) if p.side is lighter)
    postings[index] = dataclasses.replace(
        postings[index], amount=postings[index].amount + abs(debits - credits)
    )
    return postings


#: (pending, timeout in seconds from now or None, keyed): a third are holds, half have keys.
ENTRY_OPTIONS = st.tuples(
    st.sampled_from([False, False, True]),
    st.none() | st.integers(0, HOLD_TIMEOUT_SECONDS_MAX),
    st.booleans(),
)


def is_open_hold(entry: ModelEntry) -> bool:
    return entry.phase is Phase.PENDING and entry.resolved_by is None


def balanced_part(postings: Sequence[Posting], total: int) -> list[int]:
    """Amounts no larger than held that post ``total`` on each side: a balanced partial post."""
    remaining = {Side.DEBIT: total, Side.CREDIT: total}
    amounts = []
    for posting in postings:
        amount = min(posting.amount, remaining[posting.side])
        remaining[posting.side] -= amount
        amounts.append(amount)
    return amounts


def test_ledger_state_machine(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> None:
    context = run_machine(
        LedgerStateMachine,
        lambda new_engine: Context(new_engine, clock, backend),
        BUDGETS,
        backend=backend,
        request=request,
        tmp_path=tmp_path,
    )
    print(
        f"{backend}: {context.examples} examples, {context.steps} steps, "
        f"{context.databases} databases, {context.entries} entries in examples without failures"
    )
