"""Scheduled jobs (``points.jobs``, ``points.maintenance``, ``points.shell.scheduler``): claims on a
(job, period) row with a lease, the expiry of buckets, hold timeouts, sealing, purging, the
scheduler, the ``points jobs`` / ``points expire`` commands and the finance listing of runs, on
SQLite and (when configured) PostgreSQL.

Points get into wallets the real way (programs, budgets, awards). The FakeClock starts at
2026-04-01 00:00 UTC (09:00 in Tokyo); a point type with a ``months=1`` rule makes points earned
that day valid until 2026-05-31, so they expire at the start of 2026-06-01 in Tokyo, which is
2026-05-31 15:00 UTC (``EXPIRES``).
"""

from __future__ import annotations

import gc
import itertools
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from api_world import World
from concurrency import run_together
from conftest import FakeClock
from earning_helpers import ACTOR, Earning
from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from test_cli import invoke

import ledger
from issuers import awards
from issuers.programs import Program
from ledger import Entry, LedgerTx, Side
from ledger.database import READ_ONLY
from ledger.service import system_clock
from points import expiry, idempotency, maintenance, people, qrtokens, spending, wallet_views
from points.calendar import TOKYO, start_of_day
from points.errors import InvalidInput, LeaseLost
from points.idempotency import IdempotencyRecord
from points.jobs import (
    JOBS,
    LEASE,
    RENEW_EVERY,
    YOUNG_THRESHOLD,
    Job,
    JobContext,
    JobRun,
    RunState,
    _claim,
    _finish,
    frozen_heap,
    job_named,
    list_runs,
    purge_runs,
    register,
    run_job,
    seconds_slot,
    tokyo_day,
    tokyo_minute,
)
from points.pointtypes import ExpiryRule, PointType
from points.ratelimit import RateLimitWindow
from points.settings import Settings
from points.shell.scheduler import enabled_jobs, start_scheduler
from points.sqlbase import UTCDateTime, insert_many
from points.uow import unit_of_work

assert maintenance.EXPIRY is JOBS["expiry"]  # the shell registers them (conftest imports it)

#: Points earned on 2026-04-01 under a one-month rule are valid until this day (Tokyo) ...
VALID_UNTIL = date(2026, 5, 31)
#: ... and expire at the start of the next day in Tokyo: 2026-05-31 15:00 UTC.
EXPIRES = start_of_day(VALID_UNTIL + timedelta(days=1))
JUST_BEFORE = EXPIRES - timedelta(microseconds=1)
BUDGET = 10_000_000
MERCHANT_CODE = 400
PROBE = "probe"


def tokyo(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    """A Tokyo wall-clock time as a UTC instant."""
    return datetime(year, month, day, hour, minute, second, tzinfo=TOKYO).astimezone(UTC)


def test_expiry_instant_is_tokyo_midnight() -> None:
    assert datetime(2026, 5, 31, 15, 0, tzinfo=UTC) == EXPIRES


# A small city -------------------------------------------------------------------------------


class City:
    """One point type with a one-month expiry rule, programs, residents and a merchant."""

    def __init__(self, engine: Engine, clock: Callable[[], datetime], *, months: int = 1) -> None:
        self.engine = engine
        self.clock = clock
        self.earning = Earning(engine, clock)
        self.pt = self.earning.point_type(expiry_rule=ExpiryRule.MONTHS, expiry_months=months)
        self.records = itertools.count(1)
        self.merchant = self.earning.write(
            lambda s: (
                LedgerTx(s.connection(), clock)
                .create_account(
                    ledger_id=self.pt.ledger_id,
                    code=MERCHANT_CODE,
                    normal_side=Side.CREDIT,
                    owner_ref="merchant",
                )
                .id
            )
        )

    def program(self, amount: int) -> Program:
        program = self.earning.program(self.pt, amount=amount)
        self.earning.allocate(program, 2026, BUDGET)
        return program

    def residents(self, count: int) -> list[str]:
        now = self.clock()
        return self.earning.write(
            lambda s: [
                people.create_resident(
                    s, ACTOR, now, name=None, address_number=None, birth_year=None, verified=False
                ).id
                for _ in range(count)
            ]
        )

    def award_many(self, pairs: list[tuple[Program, str]]) -> list[int]:
        """Award each (program, resident) in one transaction; the bucket account ids."""
        now = self.clock()
        requests = [
            (program, awards.AwardRequest(program.id, resident, f"R-{next(self.records)}", {}))
            for program, resident in pairs
        ]

        def work(session: Session) -> list[int]:
            made = []
            for program, request in requests:
                result = awards.award(
                    session, ACTOR, now, request, department_id=program.department_id
                )
                assert not result.replayed
                made.append(result.award.bucket_account_id)
            return made

        return self.earning.write(work)

    def award(self, program: Program, resident: str) -> int:
        return self.award_many([(program, resident)])[0]

    def spend(self, resident: str, amount: int, **options: Any) -> Entry:
        return self.earning.spend(
            self.pt, spending.Spend(resident, amount, to_account_id=self.merchant, **options)
        )

    def posted(self, account_id: int) -> int:
        return self.earning.balance(account_id).posted

    def expired(self) -> int:
        return self.posted(self.pt.expired_account_id)

    def view(self, resident: str, now: datetime) -> wallet_views.WalletView:
        return self.earning.read(
            lambda s: wallet_views.wallet_view(s, _fresh(s, self.pt), resident, now, 30)
        )

    def history(self, resident: str) -> list[wallet_views.HistoryItem]:
        return self.earning.read(
            lambda s: wallet_views.wallet_history(
                s, _fresh(s, self.pt), resident, before=None, limit=50
            )
        )


def _fresh(session: Session, point_type: PointType) -> PointType:
    found = session.get(PointType, point_type.id)
    assert found is not None
    return found


def entries_of_kind(engine: Engine, kind: str) -> list[Entry]:
    def work(session: Session) -> list[Entry]:
        connection = session.connection()
        ids = connection.execute(
            sa.text("SELECT id FROM ledger_entry WHERE kind = :kind ORDER BY id"), {"kind": kind}
        ).scalars()
        return LedgerTx(connection, system_clock).get_entries(list(ids))

    return unit_of_work(engine, work, read_only=True)


def count_rows(engine: Engine, table: str) -> int:
    """Read only (on SQLite a deferred transaction: no write lock, so another process may be
    writing meanwhile)."""
    with engine.connect() as connection:
        reading = connection.execution_options(**{READ_ONLY: True})
        return int(reading.exec_driver_sql(f"SELECT COUNT(*) FROM {table}").scalar_one())


def ledger_rows(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """The ledger's entries, postings and account totals, to compare two states."""
    with engine.connect() as connection:
        return {
            "entries": [
                tuple(row)
                for row in connection.exec_driver_sql(
                    "SELECT id, kind, phase FROM ledger_entry ORDER BY id"
                )
            ],
            "postings": [
                tuple(row)
                for row in connection.exec_driver_sql(
                    "SELECT entry_id, account_id, side, amount FROM ledger_posting ORDER BY id"
                )
            ],
            "accounts": [
                tuple(row)
                for row in connection.exec_driver_sql(
                    "SELECT id, debits_posted, credits_posted, debits_pending, credits_pending "
                    "FROM ledger_account ORDER BY id"
                )
            ],
        }


def all_runs(engine: Engine, job: str | None = None) -> list[JobRun]:
    return unit_of_work(
        engine,
        lambda s: list_runs(s, job=job, before=None, limit=1000),
        read_only=True,
    )


def run_row(engine: Engine, run_id: int) -> JobRun:
    found = unit_of_work(engine, lambda s: s.get(JobRun, run_id), read_only=True)
    assert found is not None
    return found


def verify_ok(engine: Engine) -> None:
    report = ledger.Ledger(engine).verify(unsealed_grace_seconds=10**9)
    assert report.ok, report.problems


# The framework --------------------------------------------------------------------------------


class Probe:
    """A throwaway job, registered for one test: counts its runs, can fail or advance time."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.calls: list[JobContext] = []
        self.fail_with: BaseException | None = None
        self.during: Callable[[JobContext], None] | None = None
        self.lock = threading.Lock()

    def run(self, context: JobContext) -> dict[str, int]:
        with self.lock:
            self.calls.append(context)
        if self.during is not None:
            self.during(context)
        if self.fail_with is not None:
            raise self.fail_with
        self.clock.advance(seconds=3)
        return {"things": 7, "others": 0}


@pytest.fixture
def probe(monkeypatch: pytest.MonkeyPatch, clock: FakeClock) -> Probe:
    found = Probe(clock)
    monkeypatch.setitem(
        JOBS, PROBE, Job(PROBE, "a test job", tokyo_day, found.run, {"trigger": "interval"})
    )
    return found


def test_a_run_is_recorded_done_with_counts_and_times(
    engine: Engine, clock: FakeClock, probe: Probe
) -> None:
    started = clock()
    result = run_job(engine, PROBE, as_of=EXPIRES, clock=clock, trigger="cli", options={"a": 1})

    assert (result.job, result.period, result.status) == (PROBE, "2026-06-01", "done")
    assert result.counts == {"things": 7, "others": 0}
    assert result.run_id is not None
    assert len(probe.calls) == 1
    context = probe.calls[0]
    assert (context.as_of, context.period, context.options) == (EXPIRES, "2026-06-01", {"a": 1})
    row = run_row(engine, result.run_id)
    assert (row.job, row.period, row.state, row.trigger, row.outcome) == (
        PROBE,
        "2026-06-01",
        RunState.DONE,
        "cli",
        "ok",
    )
    assert json.loads(row.counts) == {"things": 7, "others": 0}
    assert row.started_at == started
    assert row.finished_at == started + timedelta(seconds=3)
    assert row.lease_expires_at == started + LEASE


def test_a_second_run_for_the_same_period_changes_nothing(
    engine: Engine, clock: FakeClock, probe: Probe
) -> None:
    first = run_job(engine, PROBE, as_of=EXPIRES, clock=clock)
    assert first.status == "done"
    before = all_runs(engine)
    clock.advance(hours=1)

    # Any instant of the same Tokyo day is the same period.
    again = run_job(engine, PROBE, as_of=tokyo(2026, 6, 1, 23, 59, 59), clock=clock)

    assert (again.status, again.period, again.counts, again.run_id) == (
        "already_done",
        "2026-06-01",
        {},
        None,
    )
    assert len(probe.calls) == 1
    assert [r.model_dump() for r in all_runs(engine)] == [r.model_dump() for r in before]
    # The next day is a new period.
    assert run_job(engine, PROBE, as_of=EXPIRES + timedelta(days=1), clock=clock).status == "done"
    assert len(probe.calls) == 2


def test_a_live_claim_of_a_dead_process_blocks_until_its_lease_lapses(
    engine: Engine, clock: FakeClock, probe: Probe
) -> None:
    claimed_at = clock()
    run_id = unit_of_work(
        engine, lambda s: _claim(s, PROBE, "2026-06-01", "dead-owner", claimed_at, "scheduler")
    )
    assert isinstance(run_id, int)
    dead = run_row(engine, run_id)
    assert (dead.state, dead.owner) == (RunState.RUNNING, "dead-owner")

    clock.advance(minutes=9, seconds=59)
    blocked = run_job(engine, PROBE, as_of=EXPIRES, clock=clock)
    assert (blocked.status, blocked.run_id, blocked.counts) == ("running_elsewhere", None, {})
    assert probe.calls == []
    assert run_row(engine, run_id).owner == "dead-owner"

    clock.advance(seconds=1)  # the lease (10 minutes) has lapsed: the run is taken over
    taken = run_job(engine, PROBE, as_of=EXPIRES, clock=clock, trigger="cli")
    assert (taken.status, taken.run_id) == ("done", run_id)
    assert len(probe.calls) == 1
    row = run_row(engine, run_id)
    assert row.owner != "dead-owner"
    assert (row.state, row.trigger, row.outcome) == (RunState.DONE, "cli", "ok")
    assert row.started_at == claimed_at + LEASE
    assert len(all_runs(engine)) == 1


def test_a_failed_run_is_recorded_raised_and_reclaimed_by_the_next_run(
    engine: Engine, clock: FakeClock, probe: Probe
) -> None:
    probe.fail_with = RuntimeError("boom " + "x" * 600)
    with pytest.raises(RuntimeError, match="boom"):
        run_job(engine, PROBE, as_of=EXPIRES, clock=clock)

    [failed] = all_runs(engine)
    assert failed.state == RunState.FAILED
    assert failed.outcome.startswith("RuntimeError: boom xxx")
    assert len(failed.outcome) == 500  # cut to the column's length
    assert failed.finished_at == clock()
    assert json.loads(failed.counts) == {}

    probe.fail_with = None
    clock.advance(seconds=1)  # no lease to wait for: a failed run is taken over at once
    again = run_job(engine, PROBE, as_of=EXPIRES, clock=clock)
    assert (again.status, again.run_id) == ("done", failed.id)
    row = run_row(engine, failed.id or 0)
    assert (row.state, row.outcome) == (RunState.DONE, "ok")
    assert json.loads(row.counts) == {"things": 7, "others": 0}
    assert len(probe.calls) == 2
    assert run_job(engine, PROBE, as_of=EXPIRES, clock=clock).status == "already_done"


def test_a_retried_run_is_not_shown_finished_while_it_runs(
    engine: Engine, clock: FakeClock, probe: Probe
) -> None:
    probe.fail_with = RuntimeError("boom")
    with pytest.raises(RuntimeError):
        run_job(engine, PROBE, as_of=EXPIRES, clock=clock)
    probe.fail_with = None
    seen: list[JobRun] = []
    probe.during = lambda context: seen.extend(all_runs(engine))
    clock.advance(minutes=1)

    assert run_job(engine, PROBE, as_of=EXPIRES, clock=clock).status == "done"

    [running] = seen
    assert running.state == RunState.RUNNING
    assert running.finished_at is None


def test_concurrent_runs_of_one_period_run_the_job_once(
    engine: Engine, clock: FakeClock, probe: Probe
) -> None:
    probe.during = lambda context: time.sleep(0.3)

    outcomes = run_together(
        [lambda: run_job(engine, PROBE, as_of=EXPIRES, clock=clock) for _ in range(4)]
    )

    assert [status for status, _ in outcomes] == ["ok"] * 4, outcomes
    statuses = Counter(result.status for _, result in outcomes)
    assert statuses["done"] == 1, statuses
    assert set(statuses) <= {"done", "running_elsewhere", "already_done"}
    assert len(probe.calls) == 1
    [row] = all_runs(engine)
    assert row.state == RunState.DONE


def test_unknown_and_duplicate_jobs_are_refused(engine: Engine, clock: FakeClock) -> None:
    with pytest.raises(InvalidInput, match="no job 'nosuch'"):
        run_job(engine, "nosuch", as_of=EXPIRES, clock=clock)
    with pytest.raises(InvalidInput):
        job_named("nosuch")
    with pytest.raises(ValueError, match="registered already"):
        register(JOBS["seal"])
    assert count_rows(engine, "job_run") == 0


def test_the_periods_and_schedules_of_the_registered_jobs() -> None:
    assert set(JOBS) >= {"expiry", "hold_timeouts", "seal", "purge"}
    at = tokyo(2026, 6, 1, 0, 10, 7)
    assert JOBS["expiry"].period(at) == "2026-06-01"
    assert JOBS["expiry"].period(at - timedelta(minutes=10, seconds=8)) == "2026-05-31"
    assert JOBS["hold_timeouts"].period(at) == "2026-06-01T00:10"
    assert JOBS["seal"].period(at) == "2026-06-01T00:10:05"
    assert JOBS["seal"].period(at + timedelta(seconds=3)) == "2026-06-01T00:10:10"
    assert JOBS["purge"].period(at) == "2026-06-01"
    assert tokyo_day(EXPIRES) == "2026-06-01"
    assert tokyo_day(JUST_BEFORE) == "2026-05-31"
    assert tokyo_minute(JUST_BEFORE) == "2026-05-31T23:59"
    assert seconds_slot(15)(tokyo(2026, 6, 1, 12, 0, 59)) == "2026-06-01T12:00:45"
    assert JOBS["expiry"].schedule == {"trigger": "cron", "hour": 0, "minute": 10}
    assert JOBS["purge"].schedule == {"trigger": "cron", "hour": 3, "minute": 0}
    assert JOBS["hold_timeouts"].schedule == {"trigger": "cron", "minute": "*"}
    assert JOBS["seal"].schedule == {"trigger": "interval", "seconds": 5}
    assert JOBS["verify"].period(at) == "2026-06-01"
    assert JOBS["verify"].schedule == {"trigger": "cron", "hour": 2, "minute": 30}


def _record_run(engine: Engine, job: str, period: str, started: datetime, state: RunState) -> int:
    def work(session: Session) -> int:
        run_id = _claim(session, job, period, "owner", started, "scheduler")
        assert isinstance(run_id, int)
        if state is not RunState.RUNNING:
            _finish(session, run_id, "owner", started, state, {}, "ok")
        return run_id

    return unit_of_work(engine, work)


def test_purge_runs_deletes_only_old_finished_runs_of_the_given_jobs(
    engine: Engine, clock: FakeClock
) -> None:
    cutoff = clock()
    old, new = cutoff - timedelta(seconds=1), cutoff
    kept = {
        "seal new": _record_run(engine, "seal", "s2", new, RunState.DONE),
        "seal old failed": _record_run(engine, "seal", "s3", old, RunState.FAILED),
        "seal old running": _record_run(engine, "seal", "s4", old, RunState.RUNNING),
        "expiry old": _record_run(engine, "expiry", "e1", old, RunState.DONE),
        "purge old": _record_run(engine, "purge", "p1", old, RunState.DONE),
    }
    gone = {
        _record_run(engine, "seal", "s1", old, RunState.DONE),
        _record_run(engine, "hold_timeouts", "h1", old, RunState.DONE),
    }

    deleted = unit_of_work(
        engine, lambda s: purge_runs(s, before=cutoff, jobs=["seal", "hold_timeouts"])
    )

    assert deleted == 2
    remaining = {run.id for run in all_runs(engine)}
    assert remaining == set(kept.values())
    assert not remaining & gone
    assert unit_of_work(engine, lambda s: purge_runs(s, before=cutoff, jobs=["seal"])) == 0


def test_list_runs_is_newest_first_with_a_cursor_and_a_job_filter(
    engine: Engine, clock: FakeClock
) -> None:
    ids = [
        _record_run(engine, job, f"p{index}", clock(), RunState.DONE)
        for index, job in enumerate(["seal", "expiry", "seal", "purge", "seal"])
    ]
    newest_first = sorted(ids, reverse=True)

    def listed(**options: Any) -> list[int]:
        found = unit_of_work(engine, lambda s: list_runs(s, **options), read_only=True)
        return [run.id or 0 for run in found]

    assert listed(job=None, before=None, limit=10) == newest_first
    assert listed(job=None, before=None, limit=2) == newest_first[:2]
    assert listed(job=None, before=newest_first[1], limit=2) == newest_first[2:4]
    assert listed(job="seal", before=None, limit=10) == [ids[4], ids[2], ids[0]]
    assert listed(job="seal", before=ids[4], limit=10) == [ids[2], ids[0]]
    assert listed(job="hold_timeouts", before=None, limit=10) == []


# Expiry ---------------------------------------------------------------------------------------


def test_expiry_moves_the_remainders_of_expired_buckets_in_chunks(
    engine: Engine, clock: FakeClock
) -> None:
    city = City(engine, clock)
    hundred, thirty = city.program(100), city.program(30)
    pairs = city.residents(64)
    partly, untouched, spent_out, later = city.residents(4)
    full = city.award_many([(p, r) for r in pairs for p in (hundred, thirty)])
    partly_bucket = city.award(hundred, partly)
    city.spend(partly, 30)
    untouched_bucket = city.award(thirty, untouched)
    spent_bucket = city.award(thirty, spent_out)
    city.spend(spent_out, 30)
    clock.advance(days=30)  # 2026-05-01: these are valid until 2026-06-30
    later_bucket = city.award(hundred, later)
    second_bucket = city.award(hundred, pairs[0])
    expiring = [*full, partly_bucket, untouched_bucket]
    assert len(expiring) == 130
    expected_points = 64 * 130 + 70 + 30
    assert city.expired() == 0

    # Before the start of 2026-06-01 in Tokyo nothing has expired.
    before = ledger_rows(engine)
    assert expiry.pending(engine, JUST_BEFORE).as_dict() == {
        "buckets": 0,
        "points": 0,
        "entries": 0,
    }
    assert expiry.expire(engine, JUST_BEFORE).as_dict() == {
        "buckets": 0,
        "points": 0,
        "entries": 0,
    }
    assert ledger_rows(engine) == before

    # The dry run counts and writes nothing.
    pending = expiry.pending(engine, EXPIRES)
    assert pending.as_dict() == {"buckets": 130, "points": expected_points, "entries": 3}
    assert ledger_rows(engine) == before

    calls: list[tuple[int, int | None]] = []
    moved = expiry.expire(
        engine, EXPIRES, progress=lambda done, total: calls.append((done, total)), chunk=80
    )

    # Two chunks: 80 buckets (entries of 63 and 17) and 50 buckets (one entry).
    assert moved.as_dict() == {"buckets": 130, "points": expected_points, "entries": 3}
    assert calls == [(0, 130), (80, 130), (130, 130)]
    assert city.expired() == expected_points
    assert all(city.posted(bucket) == 0 for bucket in expiring)
    assert city.posted(later_bucket) == 100
    assert city.posted(second_bucket) == 100
    assert city.posted(spent_bucket) == 0
    entries = entries_of_kind(engine, "expiry")
    assert sorted(len(entry.postings) - 1 for entry in entries) == [17, 50, 63]
    debited: dict[int, int] = {}
    for entry in entries:
        assert entry.description == "expired"
        assert entry.metadata == {"expired_before": "2026-06-01"}
        assert entry.effective_at == EXPIRES
        [credit] = [p for p in entry.postings if p.side is Side.CREDIT]
        assert credit.account_id == city.pt.expired_account_id
        debits = [p for p in entry.postings if p.side is Side.DEBIT]
        assert credit.amount == sum(p.amount for p in debits)
        for posting in debits:
            assert posting.account_id not in debited
            debited[posting.account_id] = posting.amount
    assert sorted(debited) == sorted(expiring)
    assert debited[partly_bucket] == 70
    assert debited[untouched_bucket] == 30
    assert debited[full[0]] == 100 and debited[full[1]] == 30

    # A rerun moves nothing.
    after = ledger_rows(engine)
    assert expiry.expire(engine, EXPIRES, chunk=80).as_dict() == {
        "buckets": 0,
        "points": 0,
        "entries": 0,
    }
    assert expiry.pending(engine, EXPIRES).buckets == 0
    assert ledger_rows(engine) == after

    # The wallet: nothing left of the expired points, and a line saying so.
    view = city.view(partly, EXPIRES)
    assert (view.balance, view.held, view.by_expiry) == (0, 0, [])
    latest = city.history(partly)[0]
    assert (latest.kind, latest.amount, latest.text_en, latest.text_ja) == (
        "expiry",
        -70,
        "expired",
        "失効",
    )
    view = city.view(pairs[0], EXPIRES)
    assert view.balance == 100
    assert [(line.valid_until, line.amount) for line in view.by_expiry] == [
        (date(2026, 6, 30), 100)
    ]
    verify_ok(engine)


def test_the_expiry_job_runs_once_per_tokyo_day(engine: Engine, clock: FakeClock) -> None:
    city = City(engine, clock)
    program = city.program(100)
    buckets = city.award_many([(program, r) for r in city.residents(3)])

    early = run_job(engine, "expiry", as_of=JUST_BEFORE, clock=clock)
    assert (early.period, early.status, early.counts) == (
        "2026-05-31",
        "done",
        {"buckets": 0, "points": 0, "entries": 0},
    )
    first = run_job(engine, "expiry", as_of=EXPIRES, clock=clock)
    assert (first.period, first.status, first.counts) == (
        "2026-06-01",
        "done",
        {"buckets": 3, "points": 300, "entries": 1},
    )
    snapshot = ledger_rows(engine)
    second = run_job(engine, "expiry", as_of=EXPIRES + timedelta(minutes=10), clock=clock)
    assert (second.status, second.counts) == ("already_done", {})
    assert ledger_rows(engine) == snapshot
    assert [city.posted(bucket) for bucket in buckets] == [0, 0, 0]
    assert city.expired() == 300
    [row, _] = all_runs(engine, "expiry")
    assert json.loads(row.counts) == {"buckets": 3, "points": 300, "entries": 1}
    verify_ok(engine)


def test_concurrent_expiry_runs_move_every_point_once(engine: Engine, clock: FakeClock) -> None:
    city = City(engine, clock)
    hundred, thirty = city.program(100), city.program(30)
    buckets = city.award_many([(p, r) for r in city.residents(20) for p in (hundred, thirty)])
    total = 20 * 130

    outcomes = run_together([lambda: expiry.expire(engine, EXPIRES, chunk=7) for _ in range(4)])

    assert [status for status, _ in outcomes] == ["ok"] * 4, outcomes
    counts = [result for _, result in outcomes]
    assert sum(c.buckets for c in counts) == 40
    assert sum(c.points for c in counts) == total
    assert city.expired() == total
    assert all(city.posted(bucket) == 0 for bucket in buckets)
    entries = entries_of_kind(engine, "expiry")
    assert sum(c.entries for c in counts) == len(entries)
    moved = Counter(
        posting.account_id
        for entry in entries
        for posting in entry.postings
        if posting.side is Side.DEBIT
    )
    assert sorted(moved) == sorted(buckets) and set(moved.values()) == {1}
    assert expiry.expire(engine, EXPIRES).buckets == 0
    verify_ok(engine)


def test_concurrent_expiry_jobs_claim_the_day_once(engine: Engine, clock: FakeClock) -> None:
    city = City(engine, clock)
    program = city.program(100)
    city.award_many([(program, r) for r in city.residents(10)])

    outcomes = run_together(
        [lambda: run_job(engine, "expiry", as_of=EXPIRES, clock=clock) for _ in range(3)]
    )

    assert [status for status, _ in outcomes] == ["ok"] * 3, outcomes
    done = [result for _, result in outcomes if result.status == "done"]
    assert len(done) == 1
    assert done[0].counts == {"buckets": 10, "points": 1000, "entries": 1}
    assert city.expired() == 1000
    assert len(entries_of_kind(engine, "expiry")) == 1


def test_a_bucket_with_points_on_hold_is_left_to_a_later_run(
    engine: Engine, clock: FakeClock
) -> None:
    city = City(engine, clock)
    program = city.program(100)
    resident = city.residents(1)[0]
    bucket = city.award(program, resident)
    hold = city.spend(resident, 40, hold_until=tokyo(2026, 5, 31, 23, 0))

    # The hold timed out but nobody voided it yet: expiry leaves the bucket alone ...
    assert expiry.expire(engine, EXPIRES).buckets == 0
    assert city.posted(bucket) == 100
    # ... the hold-timeout job voids it, and the next run moves the whole remainder.
    voided = run_job(engine, "hold_timeouts", as_of=EXPIRES, clock=clock)
    assert voided.counts == {"voided": 1, "announced": 0}
    assert expiry.expire(engine, EXPIRES).as_dict() == {
        "buckets": 1,
        "points": 100,
        "entries": 1,
    }
    assert city.expired() == 100
    [void] = entries_of_kind(engine, "hold_timeout")
    assert void.pending_id == hold.id
    verify_ok(engine)


def test_expiry_entries_are_recorded_when_they_are_written(
    engine: Engine, clock: FakeClock
) -> None:
    city = City(engine, clock)
    city.award(city.program(100), city.residents(1)[0])
    written_after = system_clock()

    assert expiry.expire(engine, EXPIRES).buckets == 1  # by hand, for a day long past

    [entry] = entries_of_kind(engine, "expiry")
    assert entry.effective_at == EXPIRES
    assert entry.recorded_at >= written_after


def test_the_dry_run_counts_the_entries_a_run_writes_for_several_point_types(
    engine: Engine, clock: FakeClock
) -> None:
    first, second = City(engine, clock), City(engine, clock)
    first.award(first.program(100), first.residents(1)[0])
    second.award(second.program(100), second.residents(1)[0])

    pending = expiry.pending(engine, EXPIRES)
    moved = expiry.expire(engine, EXPIRES)

    assert moved.as_dict() == {"buckets": 2, "points": 200, "entries": 2}
    assert pending == moved


# Hold timeouts, sealing, purging ---------------------------------------------------------------


def test_the_hold_timeout_job_voids_holds_past_their_timeout(
    engine: Engine, clock: FakeClock
) -> None:
    city = City(engine, clock, months=3)
    program = city.program(100)
    resident, other = city.residents(2)
    city.award(program, resident)
    city.award(program, other)
    timeout = clock() + timedelta(minutes=30)
    hold = city.spend(resident, 40, hold_until=timeout)
    later = city.spend(other, 10, hold_until=timeout + timedelta(minutes=5))
    assert (city.view(resident, clock()).balance, city.view(resident, clock()).held) == (60, 40)

    early = run_job(engine, "hold_timeouts", as_of=timeout - timedelta(minutes=1), clock=clock)
    assert (early.status, early.counts) == ("done", {"voided": 0, "announced": 0})

    result = run_job(engine, "hold_timeouts", as_of=timeout, clock=clock)
    assert (result.period, result.status, result.counts) == (
        tokyo_minute(timeout),
        "done",
        {"voided": 1, "announced": 0},
    )
    view = city.view(resident, clock())
    assert (view.balance, view.held) == (100, 0)
    [void] = entries_of_kind(engine, "hold_timeout")
    assert void.pending_id == hold.id
    assert city.view(other, clock()).held == 10  # its timeout has not come yet
    latest = city.history(resident)[0]
    assert (latest.entry_id, latest.state, latest.text_ja, latest.text_en) == (
        hold.id,
        wallet_views.LineState.VOIDED,
        "支払い取消（時間切れ）",
        "payment voided (timed out)",
    )
    assert run_job(engine, "hold_timeouts", as_of=timeout, clock=clock).status == "already_done"
    assert run_job(
        engine, "hold_timeouts", as_of=timeout + timedelta(minutes=5), clock=clock
    ).counts == {"voided": 1, "announced": 0}
    assert city.view(other, clock()).held == 0
    assert later.id != hold.id
    verify_ok(engine)


def test_the_seal_job_seals_what_is_queued(engine: Engine, clock: FakeClock) -> None:
    city = City(engine, clock)
    program = city.program(100)
    city.award_many([(program, r) for r in city.residents(3)])
    queued = count_rows(engine, "ledger_entry") - count_rows(engine, "ledger_seal")
    assert queued > 0

    first = run_job(engine, "seal", as_of=clock(), clock=clock)
    assert first.status == "done"
    assert first.counts == {"sealed": queued}
    assert run_job(engine, "seal", as_of=clock(), clock=clock).status == "already_done"
    second = run_job(engine, "seal", as_of=clock() + timedelta(seconds=5), clock=clock)
    assert (second.status, second.counts) == ("done", {"sealed": 0})
    report = ledger.Ledger(engine, clock=clock).verify(unsealed_grace_seconds=0)
    assert report.ok and report.unsealed == 0, report.problems


@pytest.mark.parametrize(
    ("job", "steps"),
    [
        ("hold_timeouts", [(0, 1), (1, 1)]),
        ("seal", [(0, 1), (1, 1)]),
        ("purge", [(0, 4), (1, 4), (2, 4), (3, 4), (4, 4)]),
    ],
)
def test_the_jobs_of_a_statement_or_three_report_their_steps(
    engine: Engine, clock: FakeClock, job: str, steps: list[tuple[int, int]]
) -> None:
    """What ``points jobs run`` draws its progress bar from (expiry reports buckets)."""
    reported: list[tuple[int, int | None]] = []
    result = run_job(
        engine, job, as_of=clock(), clock=clock, progress=lambda d, t: reported.append((d, t))
    )
    assert result.status == "done"
    assert reported == steps


def idempotency_record(key: str, created: datetime) -> IdempotencyRecord:
    """A completed request's record, created at ``created`` (for the purge job)."""
    return IdempotencyRecord(
        namespace="test",
        key=key,
        request_hash=b"\0" * 32,
        state="done",
        lease_owner="owner",
        lease_expires_at=created,
        response_status=200,
        response_body="{}",
        created_at=created,
        completed_at=created,
    )


def test_the_purge_job_deletes_what_is_past_retention(engine: Engine, clock: FakeClock) -> None:
    now = clock()
    record = idempotency_record

    def seed(session: Session) -> None:
        session.add(record("old", now - timedelta(hours=25)))
        session.add(record("edge", now - timedelta(hours=24)))
        session.add(record("new", now - timedelta(hours=23)))
        old_window = int((now - timedelta(days=2)).timestamp())
        new_window = int((now - timedelta(hours=1)).timestamp())
        session.add(RateLimitWindow(bucket="test:old", window_start=old_window, hits=1))
        session.add(RateLimitWindow(bucket="test:new", window_start=new_window, hits=1))
        for expired in (timedelta(days=1, seconds=1), timedelta(hours=23)):
            session.add(
                qrtokens.UsedToken(
                    kind=int(qrtokens.Kind.PAYMENT),
                    token_id=qrtokens.new_id(),
                    expires_at=now - expired,
                    used_at=now - expired - timedelta(minutes=1),
                )
            )

    unit_of_work(engine, seed)
    week_ago = now - timedelta(days=8)
    old_seal = _record_run(engine, "seal", "old", week_ago, RunState.DONE)
    old_expiry = _record_run(engine, "expiry", "old", week_ago, RunState.DONE)
    new_seal = _record_run(engine, "seal", "new", now - timedelta(days=6), RunState.DONE)

    result = run_job(
        engine, "purge", as_of=now, clock=clock, options={"idempotency_retention_hours": 24}
    )

    assert (result.period, result.status) == ("2026-04-01", "done")
    assert result.counts == {
        "idempotency_records": 1,
        "rate_limit_windows": 1,
        "job_runs": 1,
        "used_tokens": 1,
        "pin_attempts": 0,
    }
    left = unit_of_work(
        engine, lambda s: [t.expires_at for t in s.exec(select(qrtokens.UsedToken))]
    )
    assert left == [now - timedelta(hours=23)]  # a day's margin past the expiry
    keys = unit_of_work(
        engine,
        lambda s: sorted(r.key for r in s.exec(select(IdempotencyRecord))),
        read_only=True,
    )
    assert keys == ["edge", "new"]
    windows = unit_of_work(
        engine,
        lambda s: [w.bucket for w in s.exec(select(RateLimitWindow))],
        read_only=True,
    )
    assert windows == ["test:new"]
    runs = {run.id for run in all_runs(engine)}
    assert old_seal not in runs
    assert {old_expiry, new_seal, result.run_id} <= runs
    # What is left is only what the retention protects.
    assert idempotency.purge(engine, before=now) == 2


def test_the_purge_job_keeps_records_for_the_configured_retention(
    engine: Engine, clock: FakeClock
) -> None:
    now = clock()
    unit_of_work(
        engine,
        lambda s: s.add(
            IdempotencyRecord(
                namespace="test",
                key="k",
                request_hash=b"\0" * 32,
                state="done",
                lease_owner="o",
                lease_expires_at=now,
                response_status=200,
                response_body="{}",
                created_at=now - timedelta(hours=30),
            )
        ),
    )
    kept = run_job(
        engine, "purge", as_of=now, clock=clock, options={"idempotency_retention_hours": 48}
    )
    assert kept.counts["idempotency_records"] == 0
    purged = run_job(engine, "purge", as_of=now + timedelta(days=1), clock=clock)
    assert purged.counts["idempotency_records"] == 1  # default 24 hours


# The scheduler ------------------------------------------------------------------------------


def test_enabled_jobs_honours_the_settings(database_url: str) -> None:
    def settings(**fields: Any) -> Settings:
        return Settings(database_url=database_url, **fields)

    assert enabled_jobs(settings()) == list(JOBS)
    assert enabled_jobs(settings(jobs_enabled=False)) == []
    assert enabled_jobs(settings(jobs_enabled=False, jobs_disabled=["nosuch"])) == []
    assert enabled_jobs(settings(jobs_disabled=["expiry", "purge"])) == [
        name for name in JOBS if name not in ("expiry", "purge")
    ]
    with pytest.raises(ValueError, match="unknown jobs in the settings: nosuch"):
        enabled_jobs(settings(jobs_disabled=["nosuch"]))
    with pytest.raises(ValueError, match="other"):
        enabled_jobs(settings(job_schedules={"other": {"trigger": "interval", "seconds": 1}}))


@contextmanager
def scheduler_running(engine: Engine, settings: Settings) -> Iterator[Any]:
    scheduler = start_scheduler(engine, settings, system_clock)
    try:
        yield scheduler
    finally:
        if scheduler is not None:
            scheduler.shutdown(wait=True)


def test_start_scheduler_is_off_when_jobs_are_off(engine: Engine, database_url: str) -> None:
    with scheduler_running(engine, Settings(database_url=database_url, jobs_enabled=False)) as s:
        assert s is None
    disabled = Settings(database_url=database_url, jobs_disabled=list(JOBS))
    with scheduler_running(engine, disabled) as s:
        assert s is None


def _others(keep: str) -> list[str]:
    return [name for name in JOBS if name != keep]


def test_the_scheduler_runs_the_seal_job(
    engine: Engine, clock: FakeClock, database_url: str
) -> None:
    city = City(engine, clock)
    city.award(city.program(100), city.residents(1)[0])
    settings = Settings(
        database_url=database_url,
        jobs_disabled=_others("seal"),
        job_schedules={"seal": {"trigger": "interval", "seconds": 1}},
    )

    with scheduler_running(engine, settings) as scheduler:
        assert [job.id for job in scheduler.get_jobs()] == ["seal"]
        deadline = time.monotonic() + 6
        done: list[JobRun] = []
        while time.monotonic() < deadline and not done:
            time.sleep(0.1)
            done = [run for run in all_runs(engine, "seal") if run.state == RunState.DONE]
    assert done, "the seal job did not run within 6 seconds"
    assert done[0].trigger == "scheduler"
    sealed = sum(json.loads(run.counts)["sealed"] for run in all_runs(engine, "seal"))
    assert sealed == count_rows(engine, "ledger_entry")
    assert {run.job for run in all_runs(engine)} == {"seal"}


def test_a_schedule_override_may_change_the_trigger_kind(engine: Engine, database_url: str) -> None:
    settings = Settings(
        database_url=database_url,
        jobs_disabled=_others("seal"),
        job_schedules={"seal": {"trigger": "cron", "second": "*/2"}},
    )
    with scheduler_running(engine, settings) as scheduler:
        assert [job.id for job in scheduler.get_jobs()] == ["seal"]


# The command line -------------------------------------------------------------------------------


def written(engine: Engine) -> tuple[int, int]:
    return count_rows(engine, "ledger_entry"), count_rows(engine, "job_run")


def test_points_expire_by_hand(engine: Engine, clock: FakeClock, database_url: str) -> None:
    city = City(engine, clock)
    hundred, thirty = city.program(100), city.program(30)
    resident, other = city.residents(2)
    buckets = city.award_many([(hundred, resident), (thirty, resident), (hundred, other)])
    before = written(engine)

    future = invoke(database_url, "expire", "--as-of", "2999-01-01")
    assert future.exit_code != 0
    assert "--force" in future.output and "in the future" in future.output
    assert written(engine) == before
    future = invoke(database_url, "jobs", "run", "expiry", "--as-of", "2999-01-01")
    assert future.exit_code != 0 and "--force" in future.output
    assert written(engine) == before

    dry = invoke(database_url, "expire", "--as-of", "2026-06-01", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert dry.output.strip() == (
        "would expire 3 buckets holding 230 points in 1 entries (dry run: nothing written)"
    )
    assert written(engine) == before
    early = invoke(database_url, "expire", "--as-of", "2026-05-31", "--dry-run")
    assert "would expire 0 buckets holding 0 points in 0 entries" in early.output

    done = invoke(database_url, "expire", "--as-of", "2026-06-01", "--force")
    assert done.exit_code == 0, done.output
    assert "expiry for 2026-06-01: done (buckets 3, entries 1, points 230)" in done.output
    assert [city.posted(bucket) for bucket in buckets] == [0, 0, 0]
    assert city.expired() == 230

    runs = written(engine)
    again = invoke(database_url, "expire", "--as-of", "2026-06-01")
    assert again.exit_code == 1, again.output
    assert (
        "Error: expiry for 2026-06-01: already done; nothing changed (job_period_done)"
        in again.output
    )
    assert written(engine) == runs
    assert city.expired() == 230

    sealed = invoke(database_url, "jobs", "run", "seal")
    assert sealed.exit_code == 0, sealed.output
    assert ": done (sealed " in sealed.stdout
    # The progress bar goes to stderr (on a terminal it is redrawn; here its label is shown).
    assert sealed.stderr.startswith("seal")
    assert "nosuch" in invoke(database_url, "jobs", "run", "nosuch").output

    listed = invoke(database_url, "jobs", "list")
    assert listed.exit_code == 0, listed.output
    header, *lines = [line.split() for line in listed.output.strip().splitlines()]
    assert header == [
        "id",
        "job",
        "period",
        "state",
        "trigger",
        "started_at",
        "finished_at",
        "counts",
        "outcome",
    ]
    assert [line[1] for line in lines] == ["seal", "expiry"]
    expiry_line = listed.output.strip().splitlines()[2]
    assert expiry_line.split()[2:5] == ["2026-06-01", "done", "cli"]
    assert expiry_line.endswith("buckets 3, entries 1, points 230  ok")
    as_json = invoke(database_url, "jobs", "list", "--json")
    assert as_json.exit_code == 0, as_json.output
    seal_run, expiry_run = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert (seal_run["job"], seal_run["state"], seal_run["trigger"]) == ("seal", "done", "cli")
    assert expiry_run["period"] == "2026-06-01" and expiry_run["outcome"] == "ok"
    assert expiry_run["counts"] == {"buckets": 3, "entries": 1, "points": 230}
    assert set(expiry_run) == set(header)
    only = invoke(database_url, "jobs", "list", "--job", "expiry")
    assert [line.split()[1] for line in only.output.strip().splitlines()] == ["job", "expiry"]
    verify_ok(engine)


# The finance listing ----------------------------------------------------------------------------


def test_a_period_running_in_another_process_is_refused_by_hand(
    engine: Engine, database_url: str
) -> None:
    # Another process holds a live claim on the day (its lease runs from the real clock's now,
    # which is what the command uses).
    unit_of_work(
        engine,
        lambda s: _claim(s, "expiry", "2026-06-01", "other-process", system_clock(), "scheduler"),
    )
    before = written(engine)
    refused = invoke(database_url, "expire", "--as-of", "2026-06-01")
    assert refused.exit_code == 1, refused.output
    assert (
        "Error: expiry for 2026-06-01: running in another process; not run (job_running)"
        in refused.output
    )
    assert written(engine) == before


def test_finance_lists_job_runs_newest_first_with_a_cursor(world: World, clock: FakeClock) -> None:
    engine = world.engine
    results = [
        run_job(engine, "seal", as_of=clock() + timedelta(seconds=5 * i), clock=clock)
        for i in range(3)
    ]
    results.append(run_job(engine, "expiry", as_of=EXPIRES, clock=clock, trigger="cli"))
    results.append(run_job(engine, "hold_timeouts", as_of=clock(), clock=clock))
    ids = sorted((result.run_id or 0 for result in results), reverse=True)

    def get(**params: Any) -> Any:
        response = world.client.get(
            "/api/v1/finance/job-runs", params=params, headers=world.finance.headers
        )
        assert response.status_code == 200, response.text
        return response.json()

    body = get()
    assert [item["id"] for item in body["items"]] == ids
    assert body["next_cursor"] is None
    expiry = next(item for item in body["items"] if item["job"] == "expiry")
    assert expiry == {
        "id": results[3].run_id,
        "job": "expiry",
        "period": "2026-06-01",
        "state": "done",
        "trigger": "cli",
        "started_at": expiry["started_at"],
        "finished_at": expiry["finished_at"],
        "counts": {"buckets": 0, "points": 0, "entries": 0},
        "outcome": "ok",
    }
    assert datetime.fromisoformat(expiry["started_at"].replace("Z", "+00:00")) == clock()
    seal = next(item for item in body["items"] if item["job"] == "seal")
    assert isinstance(seal["counts"]["sealed"], int)

    pages, cursor = [], None
    while True:
        page = get(limit=2, **({"cursor": cursor} if cursor else {}))
        pages.append([item["id"] for item in page["items"]])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == [ids[0:2], ids[2:4], ids[4:]]

    seals = get(job="seal")["items"]
    assert [item["job"] for item in seals] == ["seal"] * 3
    assert [item["id"] for item in seals] == sorted(
        (r.run_id or 0 for r in results[:3]), reverse=True
    )
    assert get(job="purge")["items"] == []
    admin = world.client.get("/api/v1/finance/job-runs", headers=world.admin.headers)
    assert admin.status_code == 200
    bad = world.client.get(
        "/api/v1/finance/job-runs", params={"job": "Not-A-Job"}, headers=world.finance.headers
    )
    assert bad.status_code == 422
    for actor in (world.counter, world.resident):
        refused = world.client.get("/api/v1/finance/job-runs", headers=actor.headers)
        assert refused.status_code == 403


def test_bulk_work_freezes_the_heap_and_always_thaws_it() -> None:
    """The heap frozen and the young generation's threshold raised during the work; both put
    back after it, whether it ends or fails."""
    threshold = gc.get_threshold()
    assert gc.get_freeze_count() == 0
    with frozen_heap():
        assert gc.get_freeze_count() > 0
        assert gc.isenabled()
        assert gc.get_threshold() == (YOUNG_THRESHOLD, *threshold[1:])
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == threshold
    with pytest.raises(RuntimeError), frozen_heap():
        raise RuntimeError("the work failed")
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == threshold


def test_overlapping_bulk_runs_put_the_threshold_back_when_the_last_one_ends() -> None:
    """Two runs in one process (an expiry run and an upload in ``points serve``): whichever
    order they end in, the heap stays frozen and the threshold raised until both have ended,
    and then both are as before."""
    threshold = gc.get_threshold()
    for first_to_end in ("first", "second"):
        first_in, second_in, first_may_end, second_may_end = (threading.Event() for _ in range(4))
        seen: dict[str, tuple[int, int]] = {}

        def run(
            name: str,
            entered: threading.Event,
            may_end: threading.Event,
            seen: dict[str, tuple[int, int]] = seen,
        ) -> None:
            with frozen_heap():
                entered.set()
                assert may_end.wait(10)
                seen[name] = (gc.get_threshold()[0], gc.get_freeze_count())

        first = threading.Thread(target=run, args=("first", first_in, first_may_end))
        first.start()
        assert first_in.wait(10)
        second = threading.Thread(target=run, args=("second", second_in, second_may_end))
        second.start()
        assert second_in.wait(10)
        ends = [(first, first_may_end), (second, second_may_end)]
        if first_to_end == "second":
            ends.reverse()
        (early, early_may_end), (late, late_may_end) = ends
        early_may_end.set()
        early.join(10)
        # One run has ended: the other still runs with the raised threshold, frozen.
        assert gc.get_threshold()[0] == YOUNG_THRESHOLD
        assert gc.get_freeze_count() > 0
        late_may_end.set()
        late.join(10)
        assert seen["first"][0] == seen["second"][0] == YOUNG_THRESHOLD
        assert gc.get_threshold() == threshold
        assert gc.get_freeze_count() == 0


def test_insert_many_writes_what_an_ordinary_insert_writes(engine: Engine) -> None:
    """``points.sqlbase.insert_many`` (arrays on PostgreSQL): instants converted to UTC, None,
    text with quotes, commas and Japanese, values shared by every row, and a refused row
    refusing the whole statement."""
    tokyo_noon = datetime(2026, 11, 30, 12, 0, tzinfo=TOKYO)
    count = 5
    columns = {
        "job": [f'job "{n}", 期限切れ' for n in range(count)],
        "started_at": [tokyo_noon + timedelta(seconds=n) for n in range(count)],
        "finished_at": [None if n % 2 else tokyo_noon for n in range(count)],
    }
    same = {
        "period": "2026-11-30",
        "state": "done",
        "owner": "o" * 36,
        "lease_expires_at": tokyo_noon,
        "counts": "{}",
        "outcome": "ok",
        "trigger": "cli",
    }
    table = JobRun.__table__  # type: ignore[attr-defined]
    with engine.begin() as connection:
        insert_many(connection, table, columns, same)
    with engine.connect() as connection:
        found = connection.execute(sa.select(table).order_by(table.c.started_at)).all()
    assert [row.job for row in found] == columns["job"]
    assert [row.started_at for row in found] == columns["started_at"]
    assert all(row.started_at.utcoffset() == timedelta(0) for row in found)
    assert [row.finished_at for row in found] == columns["finished_at"]
    assert {(row.period, row.state, row.lease_expires_at, row.trigger) for row in found} == {
        ("2026-11-30", "done", tokyo_noon, "cli")
    }
    # The CHECK on state refuses one bad row: nothing of the statement is written.
    bad = {"job": ["another", "x"], "state": ["done", "?"], "started_at": [tokyo_noon] * 2}
    others = {key: value for key, value in same.items() if key not in ("state", "period")}
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as connection:
        insert_many(connection, table, bad, {**others, "period": "p"})
    with engine.connect() as connection:
        assert connection.execute(sa.select(sa.func.count()).select_from(table)).scalar() == 5
    # Columns of different lengths are a programming error, refused before the database.
    with pytest.raises(ValueError), engine.begin() as connection:
        insert_many(connection, table, {"job": ["a", "b"], "started_at": [tokyo_noon]}, same)


def test_insert_many_stores_dates_and_instants_as_an_ordinary_insert_does(engine: Engine) -> None:
    """The stored form, not only what reads back: SQLite keeps dates and instants as text, and
    text compares as text in SQL, so both paths must write the very same characters."""
    table = sa.Table(
        "insert_many_probe",
        sa.MetaData(),
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("day", sa.Date, nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
    )
    table.create(engine)
    try:
        day, at = date(2026, 11, 30), datetime(2026, 11, 30, 12, 0, tzinfo=TOKYO)
        with engine.begin() as connection:
            connection.execute(sa.insert(table), [{"id": 1, "day": day, "at": at}])
            insert_many(connection, table, {"id": [2]}, {"day": day, "at": at})
        with engine.connect() as connection:
            stored = connection.exec_driver_sql(
                "SELECT CAST(day AS TEXT), CAST(at AS TEXT) FROM insert_many_probe ORDER BY id"
            ).all()
        assert stored[0] == stored[1]
    finally:
        table.drop(engine)


def test_a_long_run_renews_its_lease_and_stops_when_taken_over(
    engine: Engine, clock: FakeClock, probe: Probe
) -> None:
    started = clock()
    seen: list[tuple[datetime, str]] = []

    def long_work(context: JobContext) -> None:
        # Thirty minutes of work, reporting progress each minute: three leases' worth.
        for minute in range(1, 31):
            clock.advance(seconds=60)
            context.progress(minute, 30)
            if minute == 15:
                # Meanwhile another process tries the same period: still running here.
                other = run_job(engine, PROBE, as_of=EXPIRES, clock=clock)
                seen.append((clock(), other.status))

    probe.during = long_work
    result = run_job(engine, PROBE, as_of=EXPIRES, clock=clock)
    assert result.status == "done"
    assert seen == [(started + timedelta(minutes=15), "running_elsewhere")]
    assert len(probe.calls) == 1
    row = run_row(engine, result.run_id or 0)
    # Renewed at minute 30 at the latest: the lease outlives the run's last report.
    assert row.lease_expires_at >= started + timedelta(minutes=30) + LEASE - RENEW_EVERY

    # A run whose lease was taken over (its process stalled past the lease) stops.
    def taken_over(context: JobContext) -> None:
        unit_of_work(
            engine,
            lambda session: session.execute(
                sa.update(JobRun.__table__).values(owner="someone-else")  # type: ignore[attr-defined]
            ),
        )
        clock.advance(seconds=int(RENEW_EVERY.total_seconds()))
        context.progress(1, 2)

    probe.during = taken_over
    with pytest.raises(LeaseLost):
        run_job(engine, PROBE, as_of=EXPIRES + timedelta(days=1), clock=clock)
    stolen = unit_of_work(
        engine,
        lambda s: s.exec(select(JobRun).where(JobRun.period == "2026-06-02")).one(),
        read_only=True,
    )
    # The run stopped without recording over the other owner's row.
    assert (stolen.owner, stolen.state) == ("someone-else", RunState.RUNNING)
