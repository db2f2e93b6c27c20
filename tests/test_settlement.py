"""Monthly settlement (``redemption.settlement``), on both databases: two months and more of
payments and refunds at two shops, a refund after its month was settled, a late-committed entry,
a negative net carried forward, a closed merchant's final statement and its recovery.

After every run the invariants are checked against the ledger itself: the statements' points
equal what the settlement entries moved from the payables; every posted payable entry recorded
before the cut is in exactly one statement; each payable's balance is its uncovered entries plus
the negative balance carried; the budget lines sum to their statement, in points and in yen.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from api_world import FISCAL_YEAR, World
from concurrency import run_together, wait_for_lock_waiters
from conftest import FakeClock
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from payment_helpers import Shop, funded_resident, key, once_per_world, open_shop, pay, payment_qr
from sqlmodel import Session, select

from issuers.programs import Program
from ledger import LedgerTx, NewEntry, Posting, Side
from ledger import schema as ledger_schema
from points import access, people
from points.accounts import AccountCode
from points.auth import Principal, Role
from points.calendar import TOKYO
from points.errors import Conflict
from points.pointtypes import PointType
from points.registry import MerchantStatus
from redemption import flows, settlement
from redemption.errors import PeriodNotEnded, PeriodSuperseded
from redemption.merchants import MerchantSettings
from redemption.settlement_models import (
    LineKind,
    RecoveryMethod,
    RunTrigger,
    Statement,
    StatementEntry,
    StatementLine,
    Transfer,
)


def tokyo(year: int, month: int, day: int, hour: int = 12) -> datetime:
    return datetime(year, month, day, hour, tzinfo=TOKYO).astimezone(UTC)


def settle(world: World, period: str) -> settlement.RunResult:
    now = world.now()
    return world.write(
        lambda s: settlement.settle(s, access.SYSTEM, now, period, trigger=RunTrigger.CLI)
    )


def pay_shop(world: World, shop: Shop, resident: Any, amount: int) -> str:
    made = pay(world, resident, payment_qr(world, shop, amount)["token"])
    assert made.status_code == 201, made.text
    return str(made.json()["id"])


def refund(world: World, shop: Shop, payment_id: str, amount: int) -> None:
    made = world.client.post(
        f"/api/v1/merchant/payments/{payment_id}/refunds",
        json={"amount": amount},
        headers={**shop.headers, **key("refund")},
    )
    assert made.status_code == 201, made.text


def set_up(session: Session, **changes: Any) -> None:
    for model, ident, values in changes.values():
        row = session.get(model, ident)
        assert row is not None
        for name, value in values.items():
            setattr(row, name, value)
        session.add(row)


def check_invariants(world: World, cut: datetime) -> None:
    """What must hold after any run, read from the ledger and the statements."""

    def read(session: Session) -> None:
        connection = session.connection()
        posting, account, entry = (
            ledger_schema.posting,
            ledger_schema.account,
            ledger_schema.entry,
        )
        rows = connection.execute(
            sa.select(
                posting.c.account_id,
                posting.c.entry_id,
                posting.c.side,
                posting.c.amount,
                entry.c.kind,
                entry.c.phase,
                entry.c.recorded_at_us,
            )
            .join(account, account.c.id == posting.c.account_id)
            .join(entry, entry.c.id == posting.c.entry_id)
            .where(account.c.code == int(AccountCode.MERCHANT_PAYABLE))
        ).all()
        coverage = {row.entry_id: row for row in session.exec(select(StatementEntry)).all()}
        statements = {s.id: s for s in session.exec(select(Statement)).all()}
        moved = 0
        uncovered: dict[int, int] = defaultdict(int)
        balance: dict[int, int] = defaultdict(int)
        cut_us = int(cut.timestamp() * 1_000_000)
        for account_id, entry_id, side, amount, kind, phase, recorded_us in rows:
            if phase not in (0, 2):
                continue
            signed = amount if side == 2 else -amount
            balance[account_id] += signed
            if kind == settlement.SETTLEMENT_KIND:
                moved += amount
                continue
            if kind == settlement.RECOVERY_KIND:
                continue
            if entry_id in coverage:
                assert coverage[entry_id].points == signed
            else:
                # Every entry recorded before the last cut and committed before its run is
                # covered (a late one is covered by the next run, checked after it).
                uncovered[account_id] += signed
                assert recorded_us >= cut_us, entry_id
        assert moved == sum(s.settle_points for s in statements.values())
        for s in statements.values():
            lines = session.exec(
                select(StatementLine).where(StatementLine.statement_id == s.id)
            ).all()
            assert sum(line.points for line in lines) == s.settle_points
            assert sum(line.yen for line in lines) == s.yen
            covered = [c for c in coverage.values() if c.statement_id == s.id]
            assert sum(c.points for c in covered) == s.net_points
            assert s.yen == s.settle_points * s.yen_rate
            assert s.fee == s.yen * s.fee_bps // 10_000
        # A payable's balance: its uncovered entries plus its latest open carry.
        latest: dict[tuple[str, str], Statement] = {}
        for s in sorted(statements.values(), key=lambda s: s.period):
            latest[(s.merchant_id, s.point_type_id)] = s
        from redemption.merchants import MerchantPayable
        from redemption.settlement_models import StatementRecovery

        recovered = {r.statement_id for r in session.exec(select(StatementRecovery)).all()}
        for payable in session.exec(select(MerchantPayable)).all():
            last = latest.get((payable.merchant_id, payable.point_type_id))
            carry = last.carried_out if last is not None and last.id not in recovered else 0
            assert balance[payable.account_id] == uncovered[payable.account_id] + carry

    world.read(read)


def test_two_months_of_payments_refunds_a_late_entry_and_a_closed_merchant(
    world: World, clock: FakeClock
) -> None:
    clock.now = tokyo(2026, 4, 10)
    budgeted = world.fresh_program(amount=1000, budget={FISCAL_YEAR: 10**9})
    other = world.fresh_program("b", amount=1000, budget={FISCAL_YEAR: 10**9})
    a, b = open_shop(world), open_shop(world)
    world.write(
        lambda s: set_up(
            s,
            rate=(PointType, world.point_type_id, {"yen_rate": 2}),
            fee=(MerchantSettings, a.merchant_id, {"fee_bps": 150}),
            code=(Program, budgeted, {"budget_code": "01-02-03-04"}),
        )
    )
    r1, r2 = funded_resident(world, 0), funded_resident(world, 0)
    from payment_helpers import _award

    world.write(lambda s: _award(s, world.now(), budgeted, r1.id))
    world.write(lambda s: _award(s, world.now(), other, r2.id))

    # April: 300 + 200 at A (one of them refunded 50), 100 at B.
    p1 = pay_shop(world, a, r1, 300)
    pay_shop(world, a, r2, 200)
    refund(world, a, p1, 50)
    p3 = pay_shop(world, b, r1, 100)

    with pytest.raises(PeriodNotEnded):
        settle(world, "2026-04")
    clock.now = tokyo(2026, 5, 1, 1)
    april = settle(world, "2026-04")
    assert not april.replay
    by_shop = {s.merchant_id: s for s in april.statements}
    sa_, sb = by_shop[a.merchant_id], by_shop[b.merchant_id]
    assert (sa_.payment_points, sa_.refund_points, sa_.net_points) == (500, 50, 450)
    assert (sa_.payment_count, sa_.refund_count) == (2, 1)
    assert (sa_.yen, sa_.fee, sa_.yen_to_pay) == (900, 13, 887)  # floor(900 × 1.5 %) = 13
    assert (sb.yen, sb.fee, sb.yen_to_pay) == (200, 0, 200)
    assert sa_.transfer == Transfer.BANK
    lines = world.read(lambda s: settlement.lines_of(s, sa_.id))
    assert {(line.program_id, line.budget_code, line.points, line.yen) for line in lines} == {
        (budgeted, "01-02-03-04", 250, 500),
        (other, None, 200, 400),
    }
    check_invariants(world, april.run.cut_at)

    # A replay is the same run; nothing is posted twice.
    again = settle(world, "2026-04")
    assert again.replay and again.run.id == april.run.id
    assert {s.id for s in again.statements} == {s.id for s in april.statements}
    check_invariants(world, april.run.cut_at)

    # May: B's April payment refunded in full after April was settled; 120 at A.
    clock.now = tokyo(2026, 5, 12)
    refund(world, b, p3, 100)
    pay_shop(world, a, r1, 120)
    clock.now = tokyo(2026, 6, 1, 1)
    may = settle(world, "2026-05")
    by_shop = {s.merchant_id: s for s in may.statements}
    assert by_shop[a.merchant_id].net_points == 120
    sb = by_shop[b.merchant_id]
    assert (sb.net_points, sb.settle_points, sb.carried_out, sb.yen_to_pay) == (-100, 0, -100, 0)
    assert sb.entry_id is None
    check_invariants(world, may.run.cut_at)

    # A late-committed entry: recorded on May 31 (before May's cut), seen only after May's run.
    clock.now = tokyo(2026, 5, 31, 23)
    late = pay_shop(world, a, r2, 80)
    clock.now = tokyo(2026, 7, 1, 1)
    with pytest.raises(PeriodSuperseded):
        settle(world, "2026-03")
    june = settle(world, "2026-06")
    by_shop = {s.merchant_id: s for s in june.statements}
    assert by_shop[a.merchant_id].net_points == 80
    covered = world.read(lambda s: settlement.entries_of(s, by_shop[a.merchant_id].id))
    assert len(covered) == 1 and covered[0].recorded_at < may.run.cut_at
    assert late
    # B traded nothing in June: its carry is on a statement of its own.
    sb = by_shop[b.merchant_id]
    assert (sb.carried_in, sb.net_points, sb.carried_out) == (-100, 0, -100)
    check_invariants(world, june.run.cut_at)

    # July: B is paid 150, nets against the carry (50 to pay); then B closes owing nothing
    # more; in August A gets a refund larger than its payments and closes.
    clock.now = tokyo(2026, 7, 5)
    pay_shop(world, b, r1, 150)
    p_last = pay_shop(world, a, r1, 40)
    clock.now = tokyo(2026, 8, 1, 1)
    july = settle(world, "2026-07")
    by_shop = {s.merchant_id: s for s in july.statements}
    sb = by_shop[b.merchant_id]
    assert (sb.carried_in, sb.net_points, sb.settle_points, sb.carried_out) == (-100, 150, 50, 0)
    assert sb.yen == 100
    assert sum(line.yen for line in world.read(lambda s: settlement.lines_of(s, sb.id))) == 100
    check_invariants(world, july.run.cut_at)

    # (The world's staff tokens have lapsed by August: finance and admin act through the
    # domain, as their API routes do.)
    clock.now = tokyo(2026, 8, 3)
    finance = Principal(Role.FINANCE, world.finance.id, "test")
    world.write(
        lambda s: flows.refund(s, finance, world.now(), p_last, 40, reason="二重払いの申し出")
    )
    world.write(
        lambda s: people.set_merchant_status(
            s,
            access.SYSTEM,
            world.now(),
            a.merchant_id,
            status=MerchantStatus.CLOSED,
            reason="閉店",
        )
    )
    clock.now = tokyo(2026, 9, 1, 1)
    august = settle(world, "2026-08")
    final = {s.merchant_id: s for s in august.statements}[a.merchant_id]
    assert final.final and final.carried_out == -40 and final.settle_points == 0
    check_invariants(world, august.run.cut_at)
    # September: the closed merchant gets no statement of its carry again.
    clock.now = tokyo(2026, 10, 1, 1)
    september = settle(world, "2026-09")
    assert a.merchant_id not in {s.merchant_id for s in september.statements}

    # Finance records how the negative balance was recovered: the payable is zero again.
    now = world.now()
    with pytest.raises(Conflict):
        world.write(
            lambda s: settlement.record_recovery(
                s, access.SYSTEM, now, sb.id, method=RecoveryMethod.REPAID, note="x"
            )
        )
    recovery = world.write(
        lambda s: settlement.record_recovery(
            s, access.SYSTEM, now, final.id, method=RecoveryMethod.REPAID, note="店主が返金"
        )
    )
    assert (recovery.points, recovery.yen) == (40, 80)
    check_invariants(world, september.run.cut_at)
    with pytest.raises(Conflict):
        world.write(
            lambda s: settlement.record_recovery(
                s, access.SYSTEM, now, final.id, method=RecoveryMethod.OFFSET, note="again"
            )
        )


def test_a_line_of_each_carry_keeps_the_split_summing(world: World, clock: FakeClock) -> None:
    """Lines of kind carried_in and carried_out make the lines sum to what is settled."""
    clock.now = tokyo(2026, 4, 10)
    shop = open_shop(world)
    resident = funded_resident(world, 1000)
    paid = pay_shop(world, shop, resident, 300)
    clock.now = tokyo(2026, 5, 1, 1)
    settle(world, "2026-04")
    clock.now = tokyo(2026, 5, 2)
    refund(world, shop, paid, 300)
    pay_shop(world, shop, resident, 100)
    clock.now = tokyo(2026, 6, 1, 1)
    may = settle(world, "2026-05").statements[0]
    assert (may.net_points, may.carried_out) == (-200, -200)
    kinds = {
        line.kind: line.points for line in world.read(lambda s: settlement.lines_of(s, may.id))
    }
    assert kinds[LineKind.CARRIED_OUT] == 200
    clock.now = tokyo(2026, 6, 2)
    pay_shop(world, shop, resident, 250)
    clock.now = tokyo(2026, 7, 1, 1)
    june = settle(world, "2026-06").statements[0]
    assert (june.carried_in, june.settle_points) == (-200, 50)
    kinds = {
        line.kind: line.points for line in world.read(lambda s: settlement.lines_of(s, june.id))
    }
    assert kinds[LineKind.CARRIED_IN] == -200
    check_invariants(world, datetime(2026, 7, 1, tzinfo=TOKYO).astimezone(UTC))


@pytest.mark.parametrize(
    "period", ["2026-13", "2026-00", "26-11", "2026-1", "2026-11-01", "", "１９９９-01", "1999-12"]
)
def test_bad_periods_are_refused(world: World, period: str) -> None:
    from points.errors import InvalidInput

    with pytest.raises(InvalidInput):
        settle(world, period)


def test_concurrent_runs_of_one_period_make_one_run(world: World, clock: FakeClock) -> None:
    clock.now = tokyo(2026, 4, 10)
    shop = open_shop(world)
    resident = funded_resident(world, 1000)
    pay_shop(world, shop, resident, 300)
    clock.now = tokyo(2026, 5, 1, 1)
    outcomes = run_together([lambda: settle(world, "2026-04") for _ in range(4)])
    assert all(kind == "ok" for kind, _ in outcomes), outcomes
    results = [result for _, result in outcomes]
    assert len({r.run.id for r in results}) == 1
    assert sorted(r.replay for r in results) == [False, True, True, True]
    statements = world.read(lambda s: s.exec(select(Statement)).all())
    assert len(statements) == 1 and statements[0].settle_points == 300
    check_invariants(world, results[0].run.cut_at)


def test_an_entry_committed_after_the_run_read_goes_into_the_next_statement(
    world: World, clock: FakeClock, backend: str
) -> None:
    """PostgreSQL commits in its own order: a payment recorded before the cut, still open while
    the run reads, is in no statement of that run (the run waits for its lock on the payable,
    then moves only what it covered) and is covered by the next run. On SQLite writers take
    turns, so the open transaction is committed first (the other order is the clock test)."""
    clock.now = tokyo(2026, 4, 10)
    shop = open_shop(world)
    resident = funded_resident(world, 1000)
    pay_shop(world, shop, resident, 300)
    clock.now = tokyo(2026, 4, 30, 23)
    recorded_before_cut = world.now()

    def payable_and_bucket(session: Session) -> tuple[int, int]:
        from points.wallets import WalletBucket
        from redemption.merchants import MerchantPayable

        payable = session.exec(
            select(MerchantPayable).where(MerchantPayable.merchant_id == shop.merchant_id)
        ).one()
        bucket = session.exec(
            select(WalletBucket).where(WalletBucket.resident_id == resident.id)
        ).first()
        assert bucket is not None
        return payable.account_id, bucket.account_id

    payable_id, bucket_id = world.read(payable_and_bucket)
    late = world.engine.connect()
    late_session = Session(bind=late)
    LedgerTx(late_session.connection(), lambda: recorded_before_cut).post(
        NewEntry(
            [Posting(bucket_id, Side.DEBIT, 40), Posting(payable_id, Side.CREDIT, 40)],
            kind="payment",
        )
    )
    clock.now = tokyo(2026, 5, 1, 1)
    if backend == "sqlite":
        late_session.commit()
        late.close()
        april = settle(world, "2026-04")
        assert april.statements[0].net_points == 340
        return
    outcome: dict[str, Any] = {}
    runner = threading.Thread(target=lambda: outcome.update(result=settle(world, "2026-04")))
    runner.start()
    wait_for_lock_waiters(world.engine, 1)
    late_session.commit()
    late.close()
    runner.join(60)
    april = outcome["result"]
    assert april.statements[0].net_points == 300
    check_invariants(world, tokyo(2026, 4, 1, 0))  # the late entry is not covered yet
    clock.now = tokyo(2026, 6, 1, 1)
    may = settle(world, "2026-05")
    assert [s.net_points for s in may.statements] == [40]
    check_invariants(world, may.run.cut_at)


# Any history: hypothesis -------------------------------------------------------------------

#: (month 0..2, shop 0..2, points: positive a payment, negative a refund, late: committed
#: after its month's run although recorded before the cut)
Operation = tuple[int, int, int, bool]


@pytest.fixture(scope="module")
def history_world(shared_world: World) -> World:
    return shared_world


_years = iter(range(2100, 2999))


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    operations=st.lists(
        st.tuples(
            st.integers(0, 2),
            st.integers(0, 2),
            st.integers(-300, 500).filter(lambda n: n != 0),
            st.booleans(),
        ),
        max_size=25,
    )
)
def test_any_history_of_payments_refunds_and_late_entries_is_settled_exactly(
    history_world: World, operations: list[Operation]
) -> None:
    """Whatever the order of payments, refunds (also larger than what was paid: a refund of
    an earlier month) and entries committed after their month's run: every entry is in one
    statement, the statements move exactly the payable, carries never pay out negative."""
    world = history_world
    year = next(_years)
    shops, bucket = _history_accounts(world)

    def post(account_id: int, points: int, at: datetime) -> None:
        if points > 0:
            postings = [
                Posting(bucket, Side.DEBIT, points),
                Posting(account_id, Side.CREDIT, points),
            ]
            metadata: dict[str, Any] = {}
        else:
            postings = [
                Posting(account_id, Side.DEBIT, -points),
                Posting(bucket, Side.CREDIT, -points),
            ]
            metadata = {"refund_of": 0, "buckets": [[bucket, -points]]}
        world.write(
            lambda s: LedgerTx(s.connection(), lambda: at).post(
                NewEntry(postings, kind="payment" if points > 0 else "refund", metadata=metadata)
            )
        )

    for month in range(3):
        for _, shop, points, _late in (o for o in operations if o[0] == month and not o[3]):
            post(shops[shop], points, datetime(year, month + 1, 10, tzinfo=TOKYO))
        cut = datetime(year, month + 2, 1, 1, tzinfo=TOKYO)
        result = world.write(
            lambda s, m=month, c=cut: settlement.settle(
                s, access.SYSTEM, c, f"{year}-{m + 1:02d}", trigger=RunTrigger.CLI
            )
        )
        for statement in result.statements:
            assert statement.settle_points >= 0 and statement.carried_out <= 0
            assert statement.settle_points == 0 or statement.carried_out == 0
        for _, shop, points, _late in (o for o in operations if o[0] == month and o[3]):
            post(shops[shop], points, datetime(year, month + 1, 28, tzinfo=TOKYO))
    final_cut = datetime(year, 5, 1, 1, tzinfo=TOKYO)
    world.write(
        lambda s: settlement.settle(
            s, access.SYSTEM, final_cut, f"{year}-04", trigger=RunTrigger.CLI
        )
    )
    check_invariants(world, final_cut)


def _history_accounts(world: World) -> tuple[list[int], int]:
    """Three shops' payables and a resident's bucket with points enough (once per world)."""

    def build() -> tuple[list[int], int]:
        from points.wallets import WalletBucket
        from redemption.merchants import payable_account

        resident = funded_resident(world, 10**9)
        merchants = [world.fresh_merchant() for _ in range(3)]
        now = world.now()

        def work(session: Session) -> tuple[list[int], int]:
            point_type = session.get(PointType, world.point_type_id)
            assert point_type is not None
            payables = [payable_account(session, m, point_type, now) for m in merchants]
            bucket = session.exec(
                select(WalletBucket).where(WalletBucket.resident_id == resident.id)
            ).one()
            return payables, bucket.account_id

        return world.write(work)

    return once_per_world(world, "history accounts", build)
