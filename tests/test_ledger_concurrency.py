"""Concurrent writers on one ledger: no overspend, no deadlock, no double entry, one resolution.

Every thread uses the same ``Ledger``; its engine's pool gives each thread a connection of its
own. A ``threading.Barrier`` makes the threads start their writes together.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from concurrency import run_together
from ledger_helpers import (
    DEBITS_FLAG,
    Chart,
    count,
    fund,
    make_chart,
    seal_and_verify,
    totals,
    transfer,
)
from sqlalchemy import event
from sqlalchemy.engine import Engine

from ledger import Ledger, NewEntry, Posting, Side, errors


def errors_of(outcomes: list[tuple[str, Any]]) -> list[BaseException]:
    return [value for status, value in outcomes if status == "error"]


def test_concurrent_spends_never_overdraw_a_flagged_wallet(ledger_: Ledger) -> None:
    chart = make_chart(ledger_)
    fund(ledger_, chart, 100)

    outcomes = run_together(
        [lambda: ledger_.post(transfer(chart.wallet.id, chart.merchant.id, 10)) for _ in range(32)]
    )

    successes = [value for status, value in outcomes if status == "ok"]
    failures = errors_of(outcomes)
    assert len(successes) == 10, failures
    assert len(failures) == 22
    assert all(type(error) is errors.InsufficientFunds for error in failures), failures
    assert len({entry.id for entry in successes}) == 10
    wallet = ledger_.balance(chart.wallet.id)
    assert (wallet.posted, wallet.available, wallet.pending) == (0, 0, 0)
    assert totals(ledger_, chart.wallet.id) == (100, 100, 0, 0)
    assert totals(ledger_, chart.merchant.id) == (0, 100, 0, 0)
    assert totals(ledger_, chart.source.id) == (100, 0, 0, 0)
    seal_and_verify(ledger_)


def test_opposite_lock_orders_do_not_deadlock(ledger_: Ledger, engine: Engine) -> None:
    chart = make_chart(ledger_)
    first = chart.wallet
    second = ledger_.create_account(
        ledger_id=chart.ledger_id, code=300, normal_side=Side.CREDIT, flags=DEBITS_FLAG
    )
    fund(ledger_, chart, 1_000, first.id)
    fund(ledger_, chart, 1_000, second.id)
    rounds = 15

    def forward() -> None:
        # Names the accounts in ascending order, and touches a third account too.
        for _ in range(rounds):
            ledger_.post(
                NewEntry(
                    [
                        Posting(first.id, Side.DEBIT, 3),
                        Posting(second.id, Side.CREDIT, 2),
                        Posting(chart.merchant.id, Side.CREDIT, 1),
                    ]
                )
            )

    def backward() -> None:
        # The same accounts named in the opposite order.
        for _ in range(rounds):
            ledger_.post(
                NewEntry(
                    [
                        Posting(chart.merchant.id, Side.CREDIT, 1),
                        Posting(second.id, Side.DEBIT, 3),
                        Posting(first.id, Side.CREDIT, 2),
                    ]
                )
            )

    threads = 4
    outcomes = run_together([forward, backward] * threads)

    assert errors_of(outcomes) == []
    moves = rounds * threads
    assert count(engine, "ledger_entry") == 2 + 2 * moves
    assert totals(ledger_, first.id) == (3 * moves, 1_000 + 2 * moves, 0, 0)
    assert totals(ledger_, second.id) == (3 * moves, 1_000 + 2 * moves, 0, 0)
    assert totals(ledger_, chart.merchant.id) == (0, 2 * moves, 0, 0)
    assert ledger_.balance(first.id).available == 1_000 - moves
    seal_and_verify(ledger_)


def test_concurrent_repeats_of_one_idempotency_key_record_one_entry(
    ledger_: Ledger, engine: Engine
) -> None:
    chart = make_chart(ledger_)

    def award() -> int:
        entry = ledger_.post(
            transfer(
                chart.source.id,
                chart.wallet.id,
                25,
                kind="award",
                metadata={"program": "health-checkup"},
                namespace="awards",
                idempotency_key="award-R-0001-2026-04",
            )
        )
        return entry.id

    outcomes = run_together([award] * 24)

    assert errors_of(outcomes) == []
    ids = {value for _, value in outcomes}
    assert len(ids) == 1
    assert count(engine, "ledger_entry") == 1
    assert count(engine, "ledger_posting") == 2
    assert totals(ledger_, chart.wallet.id) == (0, 25, 0, 0)
    found = ledger_.find_entry("awards", "award-R-0001-2026-04")
    assert found is not None
    assert found.id == ids.pop()
    seal_and_verify(ledger_)


def test_concurrent_post_and_void_of_one_hold_resolve_it_once(ledger_: Ledger) -> None:
    chart = make_chart(ledger_)
    fund(ledger_, chart, 100)
    hold = ledger_.post(transfer(chart.wallet.id, chart.merchant.id, 40, pending=True))
    assert totals(ledger_, chart.wallet.id) == (0, 100, 40, 0)

    workers: list[Callable[[], Any]] = []
    for index in range(50):
        if index % 2:
            workers.append(lambda: ledger_.post_pending(hold.id))
        else:
            workers.append(lambda: ledger_.void_pending(hold.id))
    outcomes = run_together(workers)

    successes = [value for status, value in outcomes if status == "ok"]
    failures = errors_of(outcomes)
    assert len(successes) == 1, failures
    assert Counter(type(error) for error in failures) == {errors.HoldAlreadyResolved: 49}
    resolution = successes[0]
    assert resolution.pending_id == hold.id
    if resolution.postings:  # the post won
        assert totals(ledger_, chart.wallet.id) == (40, 100, 0, 0)
        assert totals(ledger_, chart.merchant.id) == (0, 40, 0, 0)
        assert ledger_.balance(chart.wallet.id).available == 60
    else:  # the void won
        assert totals(ledger_, chart.wallet.id) == (0, 100, 0, 0)
        assert totals(ledger_, chart.merchant.id) == (0, 0, 0, 0)
        assert ledger_.balance(chart.wallet.id).available == 100
    seal_and_verify(ledger_)


def wait_until(condition: Callable[[], bool], seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def test_background_sealer_seals_while_writers_run(engine: Engine, clock: Any) -> None:
    instance = Ledger(engine, clock=clock, auto_seal=True, seal_interval_seconds=0.2)
    try:
        chart: Chart = make_chart(instance)
        fund(instance, chart, 1_000)

        def spend() -> None:
            for _ in range(15):
                instance.post(transfer(chart.wallet.id, chart.merchant.id, 1))

        outcomes = run_together([spend] * 4)
        assert errors_of(outcomes) == []
        # Writers never wait for the sealer; it catches up by itself, without a manual seal().
        assert wait_until(lambda: count(engine, "ledger_unsealed") == 0)
    finally:
        instance.close()

    entries = count(engine, "ledger_entry")
    assert entries == 1 + 60
    assert count(engine, "ledger_seal") == entries
    with Ledger(engine, clock=clock) as checker:
        report = checker.verify(unsealed_grace_seconds=0)
        assert report.ok, report.problems
        assert (report.sealed, report.unsealed) == (entries, 0)
        assert totals(checker, chart.wallet.id) == (60, 1_000, 0, 0)


def test_close_seals_an_entry_committed_during_the_last_sealer_pass(
    engine: Engine, clock: Any
) -> None:
    instance = Ledger(engine, clock=clock, auto_seal=True, seal_interval_seconds=60)
    chart = make_chart(instance)
    fund(instance, chart, 100)
    assert wait_until(lambda: count(engine, "ledger_unsealed") == 0)

    # Hold the sealer right after one of its passes has committed (its connection goes back to
    # the pool), so that the next entry certainly commits after that pass read the queue.
    armed = threading.Event()
    paused = threading.Event()
    release = threading.Event()

    def hold_sealer(*_args: Any) -> None:
        if armed.is_set() and threading.current_thread().name == "ledger-sealer":
            armed.clear()
            paused.set()
            release.wait(10)

    event.listen(engine, "checkin", hold_sealer)
    try:
        armed.set()
        instance.post(transfer(chart.wallet.id, chart.merchant.id, 1))  # wakes the sealer
        assert paused.wait(10)
        late = instance.post(transfer(chart.wallet.id, chart.merchant.id, 2))
        sealer = instance._sealer
        assert sealer is not None
        closer = threading.Thread(target=instance.close)
        closer.start()
        assert wait_until(sealer._stopping.is_set)  # close() has asked the sealer to stop
        release.set()
        closer.join(30)
        assert not closer.is_alive()
    finally:
        release.set()
        event.remove(engine, "checkin", hold_sealer)
        instance.close()

    assert count(engine, "ledger_seal", f"entry_id = {late.id}") == 1
    assert count(engine, "ledger_unsealed") == 0
