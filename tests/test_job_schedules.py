"""The scheduled jobs as they are wired and run: the triggers ``points.shell.scheduler`` gives each
job (and the overrides from the settings), ``points serve`` running them end to end, the maintenance
jobs (``points.maintenance``) run twice at once and run again, and ``points expire --as-of`` a
future date as a dry run (no --force needed: it writes nothing).

The FakeClock starts at 2026-04-01 00:00 UTC (09:00 in Tokyo); the CLI test of expiry sets up
its points at today's real date instead, since the command takes its time from the system.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from concurrency import run_together
from conftest import FakeClock, new_database_url
from sqlalchemy.engine import Engine
from sqlmodel import Session
from test_cli import invoke
from test_jobs import (
    BUDGET,
    City,
    all_runs,
    count_rows,
    entries_of_kind,
    idempotency_record,
    scheduler_running,
    tokyo,
    verify_ok,
)

import ledger
from issuers.programs import Program
from ledger import Entry, Ledger
from ledger.database import READ_ONLY
from ledger.service import system_clock
from points import expiry, maintenance
from points.calendar import TOKYO, fiscal_year, start_of_day, tokyo_date
from points.jobs import JOBS, JobRun, RunResult, RunState, run_job
from points.ratelimit import RateLimitWindow
from points.settings import Settings
from points.uow import unit_of_work

assert maintenance.SEAL is JOBS["seal"]  # the shell registers them (conftest imports it)

POINTS_COMMAND = Path(sys.executable).with_name("points")


@contextmanager
def reading(engine: Engine) -> Iterator[sa.Connection]:
    """A connection for reads only (on SQLite a deferred transaction, no write lock)."""
    with engine.connect() as connection:
        yield connection.execution_options(**{READ_ONLY: True})


def table_rows(engine: Engine, table: str, order_by: str) -> list[tuple[Any, ...]]:
    with reading(engine) as connection:
        return [
            tuple(row)
            for row in connection.exec_driver_sql(f"SELECT * FROM {table} ORDER BY {order_by}")
        ]


def account_totals(engine: Engine) -> list[tuple[Any, ...]]:
    with reading(engine) as connection:
        return [
            tuple(row)
            for row in connection.exec_driver_sql(
                "SELECT id, debits_posted, credits_posted, debits_pending, credits_pending "
                "FROM ledger_account ORDER BY id"
            )
        ]


def ledger_rows(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Everything the ledger holds, to show that something wrote nothing."""
    return {
        "entries": table_rows(engine, "ledger_entry", "id"),
        "postings": table_rows(engine, "ledger_posting", "id"),
        "accounts": table_rows(engine, "ledger_account", "id"),
        "buckets": table_rows(engine, "wallet_bucket", "account_id"),
    }


class Town(City):
    """``test_jobs.City`` on any clock (the end-to-end tests run on the real one): three-month
    points by default, programs valid from today and funded for this fiscal year, and holds."""

    def __init__(self, engine: Engine, clock: Callable[[], datetime], *, months: int = 3) -> None:
        super().__init__(engine, clock, months=months)
        self.today = tokyo_date(clock())

    def program(self, amount: int) -> Program:
        program = self.earning.program(self.pt, amount=amount, valid_from=self.today)
        self.earning.allocate(program, fiscal_year(self.today), BUDGET)
        return program

    def residents_with_points(self, program: Program, count: int) -> list[str]:
        """``count`` new residents, each awarded ``program`` once."""
        residents = self.residents(count)
        self.award_many([(program, resident) for resident in residents])
        return residents

    def hold(self, resident: str, amount: int, until: datetime) -> Entry:
        return self.spend(resident, amount, hold_until=until)


# The scheduler's wiring ---------------------------------------------------------------------


@pytest.fixture
def sqlite_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """The scheduler's wiring does not depend on the database: SQLite only."""
    for url in new_database_url("sqlite", request, tmp_path):
        engine = ledger.create_engine(url)
        try:
            yield engine
        finally:
            engine.dispose()


def job_settings(**fields: Any) -> Settings:
    """Settings with the job settings given here and no others (whatever the environment)."""
    chosen: dict[str, Any] = {"jobs_enabled": True, "jobs_disabled": [], "job_schedules": {}}
    chosen.update(fields)
    return Settings(database_url="sqlite://", **chosen)


def next_tokyo(after: datetime, hour: int, minute: int) -> datetime:
    """The first instant strictly after ``after`` that reads ``hour:minute:00`` in Tokyo."""
    local = after.astimezone(TOKYO)
    candidate = local.replace(hour=hour, minute=minute, second=0, microsecond=0)
    return candidate if candidate > local else candidate + timedelta(days=1)


def cron_fields(trigger: Any) -> dict[str, str]:
    """A cron trigger's fields other than ``*``."""
    assert isinstance(trigger, CronTrigger), trigger
    return {field.name: str(field) for field in trigger.fields if str(field) != "*"}


def fires_daily_at(job: Any, hour: int, minute: int, before: datetime, after: datetime) -> None:
    """``job`` is on a cron trigger firing every day at ``hour:minute`` Tokyo time, and its next
    run is the first such instant after it was scheduled (between ``before`` and ``after``)."""
    trigger = job.trigger
    assert isinstance(trigger, CronTrigger)
    assert str(trigger.timezone) == "Asia/Tokyo"
    assert cron_fields(trigger) == {"hour": str(hour), "minute": str(minute), "second": "0"}
    assert job.next_run_time in {next_tokyo(before, hour, minute), next_tokyo(after, hour, minute)}
    local = job.next_run_time.astimezone(TOKYO)
    assert (local.hour, local.minute, local.second) == (hour, minute, 0)


def test_each_job_is_scheduled_on_its_trigger_in_tokyo_time(sqlite_engine: Engine) -> None:
    before = datetime.now(UTC)
    with scheduler_running(sqlite_engine, job_settings()) as scheduler:
        after = datetime.now(UTC)
        assert scheduler is not None
        assert str(scheduler.timezone) == "Asia/Tokyo"
        assert sorted(job.id for job in scheduler.get_jobs()) == sorted(JOBS)
        for job in scheduler.get_jobs():
            assert (job.max_instances, job.coalesce, job.misfire_grace_time) == (1, True, 60)

        # expiry: every day at 00:10 in Tokyo (15:10 UTC the day before).
        fires_daily_at(scheduler.get_job("expiry"), 0, 10, before, after)
        assert scheduler.get_job("expiry").next_run_time.astimezone(UTC).time().isoformat() == (
            "15:10:00"
        )
        # purge: every day at 03:00 in Tokyo.
        fires_daily_at(scheduler.get_job("purge"), 3, 0, before, after)
        # verify: every day at 02:30 in Tokyo.
        fires_daily_at(scheduler.get_job("verify"), 2, 30, before, after)
        # settlement: the 1st of each month at 01:00 in Tokyo, for the month that ended.
        settling = scheduler.get_job("settlement")
        assert str(settling.trigger.timezone) == "Asia/Tokyo"
        assert cron_fields(settling.trigger) == {
            "day": "1",
            "hour": "1",
            "minute": "0",
            "second": "0",
        }
        local = settling.next_run_time.astimezone(TOKYO)
        assert (local.day, local.hour, local.minute) == (1, 1, 0)

        # hold timeouts: every minute, at second 0.
        holds = scheduler.get_job("hold_timeouts")
        assert str(holds.trigger.timezone) == "Asia/Tokyo"
        assert cron_fields(holds.trigger) == {"second": "0"}
        assert {str(f) for f in holds.trigger.fields if f.name in ("hour", "minute")} == {"*"}
        assert before < holds.next_run_time <= after + timedelta(minutes=1)
        assert (holds.next_run_time.second, holds.next_run_time.microsecond) == (0, 0)

        # seal: every few seconds (the default in JOBS), from now.
        seal = scheduler.get_job("seal")
        assert isinstance(seal.trigger, IntervalTrigger)
        assert str(seal.trigger.timezone) == "Asia/Tokyo"
        assert seal.trigger.interval == timedelta(seconds=JOBS["seal"].schedule["seconds"])
        assert seal.trigger.interval == timedelta(seconds=maintenance.SEAL_SECONDS)
        assert before < seal.next_run_time <= after + seal.trigger.interval

        # upload handback: every five minutes, at second 0.
        handback = scheduler.get_job("upload_handback")
        assert str(handback.trigger.timezone) == "Asia/Tokyo"
        assert cron_fields(handback.trigger) == {"minute": "*/5", "second": "0"}
        assert before < handback.next_run_time <= after + timedelta(minutes=5)
        assert handback.next_run_time.minute % 5 == 0


def test_schedule_overrides_change_the_triggers(sqlite_engine: Engine) -> None:
    settings = job_settings(
        job_schedules={
            # The same kind of trigger: the override's fields replace the default's ...
            "expiry": {"trigger": "cron", "hour": 1, "minute": 0},
            # ... and a partial override keeps the default's other fields (03:30, not every
            # hour at :30).
            "purge": {"minute": 30},
            # Another interval.
            "seal": {"trigger": "interval", "seconds": 1},
            # Another kind of trigger: only the override's own arguments (no hour or minute
            # of the default's cron trigger given to the interval trigger).
            "hold_timeouts": {"trigger": "interval", "minutes": 2},
        }
    )
    before = datetime.now(UTC)
    with scheduler_running(sqlite_engine, settings) as scheduler:
        after = datetime.now(UTC)
        fires_daily_at(scheduler.get_job("expiry"), 1, 0, before, after)
        fires_daily_at(scheduler.get_job("purge"), 3, 30, before, after)

        seal = scheduler.get_job("seal")
        assert isinstance(seal.trigger, IntervalTrigger)
        assert seal.trigger.interval == timedelta(seconds=1)
        assert before < seal.next_run_time <= after + timedelta(seconds=1)

        holds = scheduler.get_job("hold_timeouts")
        assert isinstance(holds.trigger, IntervalTrigger)
        assert holds.trigger.interval == timedelta(minutes=2)
        assert str(holds.trigger.timezone) == "Asia/Tokyo"

    # The other way round: an interval job on a cron trigger, with only the cron's arguments.
    flipped = job_settings(
        jobs_disabled=[
            "expiry",
            "purge",
            "hold_timeouts",
            "upload_handback",
            "settlement",
            "verify",
        ],
        job_schedules={"seal": {"trigger": "cron", "second": "*/2"}},
    )
    with scheduler_running(sqlite_engine, flipped) as scheduler:
        [seal] = scheduler.get_jobs()
        assert seal.id == "seal"
        assert cron_fields(seal.trigger) == {"second": "*/2"}
        assert str(seal.trigger.timezone) == "Asia/Tokyo"
        assert seal.next_run_time.second % 2 == 0


def test_disabled_jobs_are_not_scheduled(sqlite_engine: Engine) -> None:
    some = job_settings(jobs_disabled=["expiry", "purge"])
    with scheduler_running(sqlite_engine, some) as scheduler:
        assert scheduler.get_job("expiry") is None
        assert scheduler.get_job("purge") is None
        assert sorted(job.id for job in scheduler.get_jobs()) == [
            "hold_timeouts",
            "seal",
            "settlement",
            "upload_handback",
            "verify",
        ]

    # Jobs off: no scheduler at all, whatever else the settings say.
    off = job_settings(
        jobs_enabled=False, job_schedules={"seal": {"trigger": "interval", "seconds": 1}}
    )
    with scheduler_running(sqlite_engine, off) as scheduler:
        assert scheduler is None


# points serve, end to end (SQLite only: the server is a subprocess on a database file) ----------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def points_env(url: str, **settings: str) -> dict[str, str]:
    """The environment for a ``points`` subprocess: no POINTS_ settings but these."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("POINTS_")}
    env["POINTS_DATABASE_URL"] = url
    env.update({f"POINTS_{key.upper()}": value for key, value in settings.items()})
    return env


SEAL_EVERY_SECOND = json.dumps({"seal": {"trigger": "interval", "seconds": 1}})


@contextmanager
def serving(
    tmp_path: Path, *arguments: str, **settings: str
) -> Iterator[tuple[Engine, subprocess.Popen[bytes]]]:
    """A fresh SQLite file migrated with ``points db upgrade``, a few ledger entries on it (not
    sealed yet), and ``points serve`` on it until its health endpoint answers. Yields an engine
    on the file and the server process; the server is stopped (killed if need be) afterwards."""
    url = f"sqlite:///{tmp_path / 'served.db'}"
    env = points_env(url, **settings)
    upgraded = subprocess.run(
        [str(POINTS_COMMAND), "db", "upgrade"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert upgraded.returncode == 0, upgraded.stderr.decode()
    engine = ledger.create_engine(url)
    try:
        town = Town(engine, system_clock)
        town.residents_with_points(town.program(100), 3)
        assert count_rows(engine, "ledger_unsealed") == count_rows(engine, "ledger_entry") > 0
        with launched(env, tmp_path, *arguments) as process:
            yield engine, process
    finally:
        engine.dispose()


@contextmanager
def launched(
    env: dict[str, str], tmp_path: Path, *arguments: str, ready: str = "/healthz"
) -> Iterator[subprocess.Popen[bytes]]:
    """``points serve`` with ``env`` in ``tmp_path`` (output to ``serve.out`` and ``serve.err``,
    where ``stop`` reads it) until ``ready`` answers 200; its ``port`` attribute is where it
    listens. Killed afterwards if still running."""
    port = free_port()
    process: subprocess.Popen[bytes] | None = None
    try:
        with (tmp_path / "serve.out").open("wb") as out, (tmp_path / "serve.err").open("wb") as e:
            process = subprocess.Popen(
                [str(POINTS_COMMAND), "serve", "--port", str(port), *arguments],
                env=env,
                cwd=tmp_path,
                stdout=out,
                stderr=e,
            )
        deadline = time.monotonic() + 15
        while True:
            assert process.poll() is None, (tmp_path / "serve.err").read_text()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{ready}", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "points serve did not come up in 15 seconds"
            time.sleep(0.1)
        process.port = port  # type: ignore[attr-defined]
        yield process
    finally:
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(10)


def stop(process: subprocess.Popen[bytes], tmp_path: Path) -> tuple[int, list[dict[str, Any]]]:
    """SIGTERM the server: uvicorn shuts down gracefully within 25 seconds, nothing logged as an
    error. The exit status and the log lines."""
    process.send_signal(signal.SIGTERM)
    status = process.wait(timeout=25)
    text = (tmp_path / "serve.err").read_text()
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    assert lines[-1]["message"].startswith("Finished server process"), text
    assert not [line for line in lines if line["level"] in ("error", "critical")], text
    assert "Traceback" not in text
    return status, lines


def wait_for_seal_runs(engine: Engine, count: int) -> list[JobRun]:
    """The seal job's finished runs once there are ``count`` of them (at most 20 seconds)."""
    deadline = time.monotonic() + 20
    while True:
        done = [run for run in all_runs(engine, "seal") if run.state == RunState.DONE]
        if len(done) >= count:
            return done
        assert time.monotonic() < deadline, f"seal runs after 20 s: {all_runs(engine)}"
        time.sleep(0.2)


def test_points_serve_runs_the_scheduled_jobs(tmp_path: Path) -> None:
    with serving(tmp_path, job_schedules=SEAL_EVERY_SECOND) as (engine, process):
        entries = count_rows(engine, "ledger_entry")
        wait_for_seal_runs(engine, 2)
        status, lines = stop(process, tmp_path)
        runs = all_runs(engine)
        unsealed = count_rows(engine, "ledger_unsealed")

    assert status == 0
    seals = [run for run in runs if run.job == "seal" and run.state == RunState.DONE]
    assert {run.trigger for run in runs} == {"scheduler"}
    assert RunState.FAILED not in {run.state for run in runs}
    assert len({run.period for run in seals}) == len(seals) >= 2
    assert sum(json.loads(run.counts)["sealed"] for run in seals) == entries
    assert unsealed == 0
    # Every second, not every five (the default): the first run came about a second after
    # the scheduler started.
    [started] = [line for line in lines if line["message"].startswith("scheduled jobs:")]
    scheduled_at = datetime.fromisoformat(started["at"])
    first = min(run.started_at for run in seals)
    assert timedelta(0) < first - scheduled_at < timedelta(seconds=3), (scheduled_at, first)


def test_points_serve_exits_cleanly_on_sigterm(tmp_path: Path) -> None:
    with serving(tmp_path, job_schedules=SEAL_EVERY_SECOND) as (engine, process):
        wait_for_seal_runs(engine, 1)
        status, _lines = stop(process, tmp_path)
        runs = all_runs(engine)
    assert status == 0
    assert RunState.RUNNING not in {run.state for run in runs}


def test_points_serve_runs_no_jobs_when_they_are_off(tmp_path: Path) -> None:
    with serving(tmp_path, jobs_enabled="false", job_schedules=SEAL_EVERY_SECOND) as (
        engine,
        process,
    ):
        time.sleep(3)  # the seal job, were it on, would have run by now
        assert count_rows(engine, "job_run") == 0
        assert count_rows(engine, "ledger_unsealed") == count_rows(engine, "ledger_entry") > 0
        _status, lines = stop(process, tmp_path)
        assert count_rows(engine, "job_run") == 0
    assert "scheduled jobs are off" in [line["message"] for line in lines]


# The maintenance jobs run twice at once, and run again ----------------------------------------


@dataclass
class Holds:
    """Twelve residents with a hold each that times out at ``timeout`` (30 minutes on), and one
    more hold that times out two hours on (``later``). ``before``: the account totals before
    the twelve holds were placed, which voiding them must give back exactly."""

    holds: list[Entry]
    later: Entry
    timeout: datetime
    before: list[tuple[Any, ...]]


def place_holds(engine: Engine, clock: FakeClock) -> Holds:
    town = Town(engine, clock)
    residents = town.residents_with_points(town.program(100), 12)
    timeout = clock() + timedelta(minutes=30)
    later = town.hold(residents[0], 10, clock() + timedelta(hours=2))
    before = account_totals(engine)
    holds = [town.hold(resident, 40, timeout) for resident in residents]
    assert account_totals(engine) != before
    return Holds(holds, later, timeout, before)


def assert_voided_once(engine: Engine, world: Holds) -> None:
    voids = entries_of_kind(engine, "hold_timeout")
    assert Counter(void.pending_id for void in voids) == Counter(hold.id for hold in world.holds)
    # The balances are as after one run: every timed-out hold released, the later one kept.
    assert account_totals(engine) == world.before
    verify_ok(engine)


def test_two_hold_timeout_jobs_at_once_void_each_hold_once(
    engine: Engine, clock: FakeClock
) -> None:
    world = place_holds(engine, clock)
    first, second = world.timeout + timedelta(minutes=1), world.timeout + timedelta(minutes=2)

    # Two runs for two different minutes (so both claim their period and do the work), at once.
    outcomes = run_together(
        [
            lambda: run_job(engine, "hold_timeouts", as_of=first, clock=clock),
            lambda: run_job(engine, "hold_timeouts", as_of=second, clock=clock),
        ]
    )

    assert [status for status, _ in outcomes] == ["ok", "ok"], outcomes
    results = [result for _, result in outcomes]
    assert [result.status for result in results] == ["done", "done"]
    assert sum(result.counts["voided"] for result in results) == len(world.holds)
    assert_voided_once(engine, world)
    recorded = {run.period: json.loads(run.counts) for run in all_runs(engine, "hold_timeouts")}
    assert sum(counts["voided"] for counts in recorded.values()) == len(world.holds)

    # A rerun voids nothing: the same minute is done already, the next minute finds no hold.
    snapshot = ledger_rows(engine)
    again = run_job(engine, "hold_timeouts", as_of=first, clock=clock)
    assert (again.status, again.counts, again.run_id) == ("already_done", {}, None)
    rerun = run_job(engine, "hold_timeouts", as_of=second + timedelta(minutes=1), clock=clock)
    assert (rerun.status, rerun.counts) == ("done", {"voided": 0, "announced": 0})
    assert ledger_rows(engine) == snapshot
    assert len(all_runs(engine, "hold_timeouts")) == 3


def test_concurrent_voids_in_small_batches_void_each_hold_once(
    engine: Engine, clock: FakeClock
) -> None:
    """The ledger's function the job calls, three at once, two holds per transaction: a batch
    that lost its holds to another thread must not leave holds behind or void one twice."""
    world = place_holds(engine, clock)
    voiding = Ledger(engine)

    outcomes = run_together(
        [lambda: voiding.void_expired_holds(world.timeout, limit=2) for _ in range(3)]
    )

    assert [status for status, _ in outcomes] == ["ok"] * 3, outcomes
    assert sum(voided for _, voided in outcomes) == len(world.holds)
    assert_voided_once(engine, world)
    assert voiding.void_expired_holds(world.timeout, limit=2) == 0
    assert account_totals(engine) == world.before


def _finished_run(job: str, period: str, started: datetime, state: RunState) -> JobRun:
    return JobRun(
        job=job,
        period=period,
        state=state,
        owner="owner",
        lease_expires_at=started,
        started_at=started,
        finished_at=started,
        counts="{}",
        outcome="ok",
        trigger="scheduler",
    )


def purge_leftovers(engine: Engine) -> dict[str, list[Any]]:
    """What the purge job may delete, and the runs (its own records among them)."""
    with reading(engine) as connection:
        records = connection.exec_driver_sql("SELECT key FROM idempotency_record ORDER BY key")
        windows = connection.exec_driver_sql("SELECT bucket FROM rate_limit_window ORDER BY 1")
        found: dict[str, list[Any]] = {
            "records": list(records.scalars()),
            "windows": list(windows.scalars()),
        }
    found["runs"] = table_rows(engine, "job_run", "id")
    return found


def test_purge_runs_at_once_and_again_delete_each_row_once(
    engine: Engine, clock: FakeClock
) -> None:
    """Two by-hand purges for two days at once (retention 24 hours; rate-limit windows a day;
    runs of the frequent jobs a week), then again."""
    first, second = tokyo(2026, 6, 10), tokyo(2026, 6, 11)
    options = {"idempotency_retention_hours": 24}
    old, middle, new = first - timedelta(days=1, hours=12), first - timedelta(hours=12), second

    def seed(session: Session) -> None:
        # Past both days' cut-offs, past only the second day's, past neither.
        for name, created, count in (("old", old, 8), ("middle", middle, 6), ("new", new, 4)):
            for number in range(count):
                key = f"{name}-{number}"
                session.add(idempotency_record(key, created + timedelta(hours=1)))
                if number < 2:
                    window = int((created + timedelta(hours=1)).timestamp())
                    session.add(RateLimitWindow(bucket=key, window_start=window, hits=1))
        # Runs of the frequent jobs are kept a week: past both days' cut-offs, past only the
        # second day's, past neither.
        for job, period, started in (
            ("seal", "old-1", first - timedelta(days=8)),
            ("upload_handback", "old-2", first - timedelta(days=8)),
            ("hold_timeouts", "old-3", first - timedelta(days=8)),
            ("seal", "middle-1", first - timedelta(days=6, hours=12)),
            ("hold_timeouts", "middle-2", first - timedelta(days=6, hours=12)),
            ("seal", "new-1", first - timedelta(days=4)),
        ):
            session.add(_finished_run(job, period, started, RunState.DONE))
        # Kept whatever their age: the daily jobs' runs, and failed runs.
        session.add(_finished_run("expiry", "kept-1", first - timedelta(days=8), RunState.DONE))
        session.add(_finished_run("seal", "kept-2", first - timedelta(days=8), RunState.FAILED))

    unit_of_work(engine, seed)
    kept_runs = {"new-1", "kept-1", "kept-2"}

    def purge_for(day: datetime) -> Callable[[], RunResult]:
        return lambda: run_job(
            engine, "purge", as_of=day, clock=clock, trigger="cli", options=options
        )

    outcomes = run_together([purge_for(first), purge_for(second)])

    assert [status for status, _ in outcomes] == ["ok", "ok"], outcomes
    results = [result for _, result in outcomes]
    assert [(r.period, r.status) for r in results] == [
        ("2026-06-10", "done"),
        ("2026-06-11", "done"),
    ]
    totals = Counter[str]()
    for result in results:
        totals.update(result.counts)
    # Each row past a cut-off deleted once, by one run or the other.
    assert dict(totals) == {
        "idempotency_records": 14,
        "rate_limit_windows": 4,
        "job_runs": 5,
        "used_tokens": 0,
        "pin_attempts": 0,
    }
    left = purge_leftovers(engine)
    assert left["records"] == [f"new-{n}" for n in range(4)]
    assert left["windows"] == ["new-0", "new-1"]
    runs = {run.period: run for run in all_runs(engine)}
    assert set(runs) == kept_runs | {"2026-06-10", "2026-06-11"}
    for result in results:
        recorded = runs[result.period]
        assert (recorded.state, recorded.trigger, recorded.id) == (
            RunState.DONE,
            "cli",
            result.run_id,
        )
        assert json.loads(recorded.counts) == result.counts

    # Again for the same days: already done, nothing deleted, nothing recorded.
    for again_at in (first + timedelta(hours=5), second + timedelta(hours=23, minutes=59)):
        again = run_job(engine, "purge", as_of=again_at, clock=clock, options=options)
        assert (again.status, again.counts, again.run_id) == ("already_done", {}, None)
    assert purge_leftovers(engine) == left
    # The next day finds nothing past its cut-offs, and records that it deleted nothing.
    third = run_job(engine, "purge", as_of=second + timedelta(days=1), clock=clock, options=options)
    assert (third.period, third.status) == ("2026-06-12", "done")
    assert third.counts == {
        "idempotency_records": 0,
        "rate_limit_windows": 0,
        "job_runs": 0,
        "used_tokens": 0,
        "pin_attempts": 0,
    }
    [recorded] = [run for run in all_runs(engine, "purge") if run.id == third.run_id]
    assert json.loads(recorded.counts) == third.counts
    after = purge_leftovers(engine)
    assert (after["records"], after["windows"]) == (left["records"], left["windows"])
    assert after["runs"][: len(left["runs"])] == left["runs"]


def test_concurrent_seal_runs_seal_each_entry_once(engine: Engine, clock: FakeClock) -> None:
    town = Town(engine, clock)
    town.residents_with_points(town.program(100), 30)
    entries = count_rows(engine, "ledger_entry")
    assert entries > 30
    assert count_rows(engine, "ledger_unsealed") == entries

    def seal_for(at: datetime) -> Callable[[], int]:
        return lambda: run_job(engine, "seal", as_of=at, clock=clock).counts["sealed"]

    # Three seal jobs for three 5-second periods, and a sealer that does not step aside.
    now = clock()
    outcomes = run_together(
        [*(seal_for(now + timedelta(seconds=5 * n)) for n in range(3)), Ledger(engine).seal]
    )

    assert [status for status, _ in outcomes] == ["ok"] * 4, outcomes
    assert sum(sealed for _, sealed in outcomes) == entries
    assert [run.state for run in all_runs(engine, "seal")] == [RunState.DONE] * 3
    with reading(engine) as connection:
        seals = connection.exec_driver_sql(
            "SELECT sequence, entry_id FROM ledger_seal ORDER BY sequence"
        ).all()
        ids = connection.exec_driver_sql("SELECT id FROM ledger_entry ORDER BY id").scalars()
        assert [sequence for sequence, _ in seals] == list(range(1, entries + 1))
        assert sorted(entry_id for _, entry_id in seals) == list(ids)
    assert count_rows(engine, "ledger_unsealed") == 0
    report = Ledger(engine, clock=clock).verify(unsealed_grace_seconds=0)
    assert report.ok, report.problems
    assert (report.sealed, report.unsealed) == (entries, 0)
    # Nothing left for another run.
    later = run_job(engine, "seal", as_of=clock() + timedelta(seconds=15), clock=clock)
    assert later.counts == {"sealed": 0}


# points expire --as-of a future date --dry-run -------------------------------------------------


def test_points_expire_a_future_date_as_a_dry_run(engine: Engine, database_url: str) -> None:
    # Points earned now (the command takes its time from the system clock): valid for a month
    # after this one, so they expire within about two months; and points valid for a year.
    clock = FakeClock(system_clock())
    soon, later = Town(engine, clock, months=1), Town(engine, clock, months=12)
    soon.residents_with_points(soon.program(100), 2)
    soon.residents_with_points(soon.program(30), 1)
    later.residents_with_points(later.program(100), 1)
    future = date.today() + timedelta(days=100)
    assert start_of_day(future) > system_clock()
    assert soon.pt.valid_until(soon.today) < future <= later.pt.valid_until(later.today)
    before = ledger_rows(engine), table_rows(engine, "job_run", "id")

    # A dry run writes nothing, so it needs no --force; with --force it says the same.
    for forced in ((), ("--force",)):
        dry = invoke(database_url, "expire", "--as-of", future.isoformat(), *forced, "--dry-run")
        assert dry.exit_code == 0, dry.output
        assert dry.output.strip() == (
            "would expire 3 buckets holding 230 points in 1 entries (dry run: nothing written)"
        )
    # Today nothing has expired yet: the date given is what counts.
    today = invoke(database_url, "expire", "--dry-run")
    assert today.exit_code == 0, today.output
    assert "would expire 0 buckets holding 0 points in 0 entries" in today.output

    assert (ledger_rows(engine), table_rows(engine, "job_run", "id")) == before
    assert before[1] == []
    assert expiry.pending(engine, start_of_day(future)).as_dict() == {
        "buckets": 3,
        "points": 230,
        "entries": 1,
    }


def test_every_worker_of_points_serve_logs_its_requests(tmp_path: Path) -> None:
    request_ids = [f"trace-{number:04d}" for number in range(24)]
    with serving(tmp_path, "--workers", "2", jobs_enabled="false") as (_engine, process):
        port = process.port  # type: ignore[attr-defined]
        for request_id in request_ids:
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/healthz", headers={"X-Request-ID": request_id}
            )
            with urllib.request.urlopen(request, timeout=5) as response:
                assert response.headers["X-Request-ID"] == request_id
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    text = (tmp_path / "serve.err").read_text()
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    logged = {
        line["request_id"]: line
        for line in lines
        if (line.get("request_id") or "").startswith("trace-")
    }
    # Each request's access line, written by the worker that served it (not the parent).
    assert sorted(logged) == request_ids, text
    assert {(line["route"], line["status"]) for line in logged.values()} == {("/healthz", 200)}
    assert process.pid not in {line["pid"] for line in logged.values()}
    assert "Traceback" not in text
