"""``Ledger.transaction`` on the pool's DBAPI connection (``ledger.database.run_on_driver``).

The ledger's own unit of work runs on the driver's connection rather than a SQLAlchemy
``Connection``; these tests hold it to the same transaction as before, on both databases:
commit on success, nothing left after an error, a real lock or serialization error retried until
the work completes once, driver errors mapped, and idempotent replays.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import sqlalchemy as sa
from ledger_helpers import (
    Chart,
    count,
    make_chart,
    seal_and_verify,
    snapshot,
    totals,
    transfer,
)
from sqlalchemy import event
from sqlalchemy.engine import Engine

import ledger
from ledger import BatchMode, Ledger, LedgerTx, Side, errors


def assert_nothing_written(engine: Engine, before: Any) -> None:
    assert snapshot(engine) == before


@pytest.fixture
def chart(ledger_: Ledger) -> Chart:
    return make_chart(ledger_)


def test_a_unit_of_work_commits_everything_on_success(
    ledger_: Ledger, engine: Engine, chart: Chart
) -> None:
    def work(tx: LedgerTx) -> tuple[int, int]:
        account = tx.create_account(ledger_id=chart.ledger_id, code=300, normal_side=Side.CREDIT)
        funding = tx.post(transfer(chart.source.id, account.id, 7))
        tx.post(transfer(account.id, chart.merchant.id, 3))
        return account.id, funding.id

    account_id, funding_id = ledger_.transaction(work)
    # Seen by another connection: committed.
    with engine.connect() as other:
        row = other.execute(
            sa.text("SELECT credits_posted, debits_posted FROM ledger_account WHERE id = :id"),
            {"id": account_id},
        ).one()
    assert tuple(row) == (7, 3)
    assert ledger_.get_entry(funding_id).postings[1].account_id == account_id
    seal_and_verify(ledger_)


def test_an_error_in_the_work_rolls_everything_back(
    ledger_: Ledger, engine: Engine, chart: Chart
) -> None:
    before = snapshot(engine)

    def work(tx: LedgerTx) -> None:
        account = tx.create_account(ledger_id=chart.ledger_id, code=300, normal_side=Side.CREDIT)
        tx.post(transfer(chart.source.id, account.id, 7))
        tx.create_ledger("second", "second ledger")
        raise RuntimeError("the caller changed its mind")

    with pytest.raises(RuntimeError, match="changed its mind"):
        ledger_.transaction(work)
    assert_nothing_written(engine, before)
    # A refused entry after a good one: the good one is not kept either.
    with pytest.raises(errors.InsufficientFunds):
        ledger_.transaction(
            lambda tx: (
                tx.post(transfer(chart.source.id, chart.merchant.id, 5)),
                tx.post(transfer(chart.wallet.id, chart.merchant.id, 1)),
            )
        )
    assert_nothing_written(engine, before)
    # The pool's connection is clean for the next unit of work.
    ledger_.post(transfer(chart.source.id, chart.wallet.id, 2))
    assert totals(ledger_, chart.wallet.id) == (0, 2, 0, 0)


def test_the_work_runs_on_the_driver_connection_in_one_transaction(
    ledger_: Ledger, engine: Engine, chart: Chart
) -> None:
    def work(tx: LedgerTx) -> Any:
        if ledger_.is_sqlite:
            # BEGIN IMMEDIATE: the write lock is held before the first read.
            assert tx.driver.in_transaction
        with pytest.raises(TypeError, match="driver's connection"):
            _ = tx.connection
        cursor = tx.driver.cursor()
        cursor.execute("SELECT count(*) FROM ledger_account")
        return cursor.fetchone()[0]

    assert ledger_.transaction(work) == count(engine, "ledger_account")


def test_a_driver_error_in_the_work_is_a_constraint_violation(
    ledger_: Ledger, engine: Engine, chart: Chart
) -> None:
    before = snapshot(engine)

    def work(tx: LedgerTx) -> None:
        tx.post(transfer(chart.source.id, chart.wallet.id, 4))
        tx.driver.cursor().execute(
            "INSERT INTO ledger (id, code, name, created_at_us) "
            f"VALUES ({chart.ledger_id}, 'again', 'again', 0)"
        )

    with pytest.raises(errors.ConstraintViolation) as raised:
        ledger_.transaction(work)
    assert raised.value.constraint in {"pk_ledger", "ledger.id"}  # PostgreSQL, SQLite
    assert_nothing_written(engine, before)


def test_a_replay_through_the_transaction_returns_the_original(
    ledger_: Ledger, engine: Engine, chart: Chart
) -> None:
    entry = transfer(chart.source.id, chart.wallet.id, 9, namespace="shop", idempotency_key="r-1")
    first = ledger_.post(entry)
    again = ledger_.transaction(lambda tx: tx.post_batch([entry, entry], BatchMode.INDEPENDENT))
    assert [(result.entry, result.replayed) for result in again] == [(first, True), (first, True)]
    assert count(engine, "ledger_entry", "idempotency_key = 'r-1'") == 1
    assert totals(ledger_, chart.wallet.id) == (0, 9, 0, 0)
    changed = transfer(chart.source.id, chart.wallet.id, 8, namespace="shop", idempotency_key="r-1")
    with pytest.raises(errors.IdempotencyConflict):
        ledger_.transaction(lambda tx: tx.post(changed))


def test_a_lock_held_by_another_connection_is_waited_out_and_the_work_completes_once(
    engine: Engine, database_url: str, chart: Chart, ledger_: Ledger
) -> None:
    if ledger_.is_sqlite:
        _sqlite_write_lock_retried(database_url, chart)
    else:
        _postgresql_serialization_failure_retried(engine, chart, ledger_)


def _sqlite_write_lock_retried(database_url: str, chart: Chart) -> None:
    """Another connection holds SQLite's write lock; ``BEGIN IMMEDIATE`` fails with "database is
    locked" (after a short busy timeout) and the unit of work is tried again until it gets it."""
    busy = ledger.create_engine(database_url)
    attempts: list[int] = []

    @event.listens_for(busy, "connect")
    def short_busy_timeout(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute("PRAGMA busy_timeout = 20")

    @event.listens_for(busy, "checkout")
    def checked_out(*_args: Any) -> None:
        attempts.append(1)

    holder = ledger.create_engine(database_url)
    runs: list[int] = []

    def work(tx: LedgerTx) -> int:
        runs.append(1)
        return tx.post(transfer(chart.source.id, chart.wallet.id, 6)).id

    try:
        with holder.connect() as holding:
            holding.begin()  # BEGIN IMMEDIATE: the write lock, until released below
            release = threading.Timer(0.3, holding.rollback)
            release.start()
            started = time.perf_counter()
            entry_id = Ledger(busy).transaction(work)
            waited = time.perf_counter() - started
            release.join()
    finally:
        busy.dispose()
        holder.dispose()
    assert waited >= 0.25
    assert len(attempts) >= 2, "BEGIN IMMEDIATE was refused and tried again"
    assert runs == [1], "the work itself ran once, to completion"
    check = Ledger(ledger.create_engine(database_url))
    try:
        assert check.get_entry(entry_id).postings[1].amount == 6
        assert totals(check, chart.wallet.id) == (0, 6, 0, 0)
    finally:
        check.engine.dispose()


def _postgresql_serialization_failure_retried(
    engine: Engine, chart: Chart, ledger_: Ledger
) -> None:
    """The first attempt reads at REPEATABLE READ, another connection commits a transfer to the
    same wallet, and the attempt's own transfer then fails with a serialization failure (40001):
    its writes are rolled back and the work runs again, to completion."""
    runs: list[int] = []

    def work(tx: LedgerTx) -> int:
        runs.append(1)
        if len(runs) == 1:
            tx.driver.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            tx.post(transfer(chart.source.id, chart.merchant.id, 1))  # rolled back below
            tx.get_account(chart.wallet.id)  # the snapshot is taken
            with engine.begin() as other:
                other.execute(
                    sa.text(
                        "UPDATE ledger_account SET credits_posted = credits_posted + 0 "
                        "WHERE id = :id"
                    ),
                    {"id": chart.wallet.id},
                )
        return tx.post(transfer(chart.source.id, chart.wallet.id, 6)).id

    entry_id = ledger_.transaction(work)
    assert runs == [1, 1]
    assert ledger_.get_entry(entry_id).postings[1].amount == 6
    assert totals(ledger_, chart.wallet.id) == (0, 6, 0, 0)
    assert totals(ledger_, chart.merchant.id) == (0, 0, 0, 0), "the first attempt left nothing"
    seal_and_verify(ledger_)
