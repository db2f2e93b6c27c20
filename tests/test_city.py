"""The pilot city of ``points demo`` (``points.shell.city``), small (40 residents), on SQLite and
PostgreSQL: the same seed and anchor day give the same ledger and counts; seeding again on a
later day adds nothing; ``points verify`` passes; every flow is in the history; the campaign
points expired; each finished month was settled with statements, transferred and paid.

The full city's seeding time is measured by hand (README), never by a timed test."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from conftest import BACKENDS, new_database_url
from sqlalchemy.engine import Engine
from sqlmodel import Session
from test_cli import invoke, table_counts

import ledger
from ledger import Ledger
from ledger.model import from_us
from points import keys
from points.calendar import TOKYO, tokyo_date
from points.errors import Conflict
from points.shell import city_report
from points.shell.city import City, seed_city
from points.shell.city_record import DemoCity
from points.uow import unit_of_work
from redemption import cards

SIZE = 40
SEED = 11
ORIGIN = "http://127.0.0.1:8000"
#: The first seeding: 2026-12-05 12:00 in Tokyo (a Saturday).
FIRST = datetime(2026, 12, 5, 3, 0, tzinfo=UTC)


#: Tables whose row counts hang on the order of random ids: a payment draws a resident's
#: buckets of one expiry date in program-id order (``points.spending``), so whether it takes
#: one bucket or two (its postings, a refund's returns, a statement's lines by program) may
#: differ between two seedings of one city. Everything else, and every total, is the same.
BY_PROGRAM_ID = {"ledger_posting", "spend_return", "statement_line"}


@dataclass(frozen=True)
class Seeded:
    url: str
    engine: Engine
    ring: keys.KeyRing
    #: Every table's row count right after seeding (tests may add a verify run).
    counts: dict[str, int]


def key_ring(directory: Path) -> keys.KeyRing:
    keys.ensure_key(directory, FIRST)
    return keys.KeyRing(directory)


def seed(engine: Engine, ring: keys.KeyRing, when: datetime, **options: int) -> DemoCity:
    options = {"seed": SEED, "residents": SIZE, **options}
    return seed_city(engine, ring, ORIGIN, clock=lambda: when, **options).record


@pytest.fixture(scope="module", params=BACKENDS)
def city(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Seeded]:
    """One small city per backend, seeded on ``FIRST``, for the whole module."""
    directory = tmp_path_factory.mktemp("city")
    urls = new_database_url(str(request.param), request, directory)
    url = next(urls)
    engine = ledger.create_engine(url)
    ring = key_ring(directory / "keys")
    try:
        seed(engine, ring, FIRST)
        yield Seeded(url, engine, ring, table_counts(engine))
    finally:
        engine.dispose()
        urls.close()


def scalar(engine: Engine, sql: str) -> int:
    with engine.connect() as connection:
        return int(connection.exec_driver_sql(sql).scalar_one() or 0)


def test_the_record_keeps_the_anchor_day_and_the_history_is_the_year_before(
    city: Seeded,
) -> None:
    found = unit_of_work(city.engine, lambda s: s.get(DemoCity, 1), read_only=True)
    assert found is not None and found.finished_at is not None
    assert (found.seed, found.residents, found.anchor_day) == (SEED, SIZE, date(2026, 12, 5))
    assert found.duration_ms is not None and found.duration_ms > 0
    with city.engine.connect() as connection:
        first, last = connection.exec_driver_sql(
            "SELECT min(recorded_at_us), max(recorded_at_us) FROM ledger_entry"
        ).one()
    assert tokyo_date(from_us(int(first))) == City.history_start(found.anchor_day)
    assert City.history_start(found.anchor_day) == date(2025, 12, 5)
    # Nothing after the first seeding, and something in its last days.
    assert from_us(int(last)) <= FIRST
    assert tokyo_date(from_us(int(last))) >= found.anchor_day - timedelta(days=7)


def test_the_pins_are_made_again_from_the_record(city: Seeded) -> None:
    """``points demo`` prints a card holder's PIN on every run: the script's first draws, made
    again from the record, give the PINs the cards were issued with."""
    found = unit_of_work(city.engine, lambda s: s.get(DemoCity, 1), read_only=True)
    assert found is not None
    holders = [person for person in City.people_of(found) if person.pin is not None]
    assert holders and holders[0].name == "和泉 太郎"

    def cards_of(session: Session) -> dict[str, bytes]:
        rows = session.connection().exec_driver_sql(
            "SELECT r.address_number, c.pin_hash FROM card AS c "
            "JOIN resident AS r ON r.id = c.resident_id WHERE c.status = 'active'"
        )
        return {str(number): bytes(pin_hash) for number, pin_hash in rows}

    issued = unit_of_work(city.engine, cards_of, read_only=True)
    assert len(issued) == len(holders)
    pepper = city.ring.pin_pepper()
    for person in holders:
        assert person.pin is not None
        assert cards.pin_matches(person.pin, issued[person.address_number], pepper)


def test_verify_passes(city: Seeded) -> None:
    report = Ledger(city.engine).verify(unsealed_grace_seconds=0)
    assert report.ok, report.problems[:3]
    assert report.unsealed == 0 and report.sealed == report.entries > 250
    result = invoke(city.url, "verify")
    assert result.exit_code == 0, result.output
    assert "ledger verified: no problems" in result.output


def test_every_flow_is_in_the_history(city: Seeded) -> None:
    f = city_report.figures(city.engine)
    assert f["residents"] == SIZE and f["shops"] == 30 and f["tills"] == 35
    assert f["cards"] >= 1
    # Awards: by CSV files (three programs), one by one, and by checking in at clean-ups.
    assert f["uploads"] >= 20 and f["uploaded"] > 0
    assert f["check_ins"] > 0 and f["events"] >= 11
    assert f["awards"] - f["uploaded"] - f["check_ins"] > 0
    uploads = scalar(city.engine, "SELECT count(DISTINCT program_id) FROM award_upload")
    assert uploads == 3
    # Paying: each flow, store QR confirmed and declined, refunds full and partial, exchanges.
    for name in ("payment_qr", "pay_code", "store_qr", "card", "exchanges", "declined"):
        assert f[name] > 0, name
    assert f["store_qr_confirmed"] > 0
    assert f["refunds_full"] > 0 and f["refunds_partial"] > 0
    assert scalar(city.engine, "SELECT count(*) FROM exchange WHERE channel = 'wallet'") > 0
    # Card payments checked the PIN first, at a till.
    attempts = scalar(city.engine, "SELECT count(*) FROM pin_attempt WHERE outcome = 'correct'")
    assert attempts >= f["card"]
    # Both point types were paid with, at shops.
    paid_in = scalar(city.engine, "SELECT count(DISTINCT point_type_id) FROM payment")
    assert paid_in == 2


def test_the_campaign_points_expired_and_only_they(city: Seeded) -> None:
    f = city_report.figures(city.engine)
    assert f["expired"] > 0
    with city.engine.connect() as connection:
        # Every expiry moved campaign points (the city's points last a year and more).
        expired_types = connection.exec_driver_sql(
            "SELECT DISTINCT t.code FROM ledger_entry AS e "
            "JOIN ledger_posting AS p ON p.entry_id = e.id "
            "JOIN ledger_account AS a ON a.id = p.account_id "
            "JOIN point_type AS t ON t.ledger_id = a.ledger_id "
            "WHERE e.kind = 'expiry'"
        ).all()
        runs = connection.exec_driver_sql(
            "SELECT counts FROM job_run WHERE job = 'expiry' AND state = 'done'"
        ).all()
        # No campaign bucket past its date still holds points.
        left = connection.exec_driver_sql(
            "SELECT count(*) FROM wallet_bucket AS b "
            "JOIN ledger_account AS a ON a.id = b.account_id "
            "WHERE b.valid_until < '2026-12-01' AND a.credits_posted > a.debits_posted"
        ).scalar_one()
    assert [row[0] for row in expired_types] == ["eco"]
    assert len(runs) == 12 and any('"buckets": 0' not in row[0] for row in runs)
    assert left == 0


def test_each_finished_month_was_settled_with_statements(city: Seeded) -> None:
    with city.engine.connect() as connection:
        runs = connection.exec_driver_sql(
            "SELECT r.period, r.transfer_on, r.paid_on, count(s.id), sum(s.yen_to_pay) "
            "FROM settlement_run AS r LEFT JOIN statement AS s ON s.run_id = r.id "
            "GROUP BY r.period, r.transfer_on, r.paid_on ORDER BY r.period"
        ).all()
        jobs = connection.exec_driver_sql(
            "SELECT count(*) FROM job_run WHERE job = 'settlement' AND state = 'done'"
        ).scalar_one()
        transfers = connection.exec_driver_sql(
            "SELECT count(*) FROM payout_transfer WHERE status = 'paid'"
        ).scalar_one()
    periods = [row[0] for row in runs]
    assert periods == ["2025-12"] + [f"2026-{month:02d}" for month in range(1, 12)]
    assert jobs == 12
    assert all(row[3] > 0 and row[4] > 0 for row in runs), runs
    # Transferred on the 10th (or the weekday after) and paid, but the last month: its file is
    # made on the 5th of the anchor's month, after the history.
    assert all(row[1] is not None and row[2] is not None for row in runs[:-1])
    assert runs[-1][1] is None and runs[-1][2] is None
    assert transfers > 0


def test_seeding_again_on_a_later_day_adds_nothing(city: Seeded) -> None:
    before = table_counts(city.engine), city_report.ledger_totals(city.engine)
    later = FIRST + timedelta(days=40)
    seeded = seed_city(
        city.engine, city.ring, ORIGIN, clock=lambda: later, seed=SEED + 1, residents=SIZE * 2
    )
    assert not seeded.added
    assert (seeded.record.seed, seeded.record.anchor_day) == (SEED, date(2026, 12, 5))
    assert (table_counts(city.engine), city_report.ledger_totals(city.engine)) == before


@contextmanager
def another_database(
    city: Seeded, request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Engine]:
    """A fresh migrated database on the city's backend."""
    urls = new_database_url(city.engine.dialect.name, request, tmp_path)
    engine = ledger.create_engine(next(urls))
    try:
        yield engine
    finally:
        engine.dispose()
        urls.close()


def test_the_same_seed_and_day_give_the_same_city(
    city: Seeded, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    with another_database(city, request, tmp_path) as engine:
        # Seeded at another hour of the same Tokyo day.
        seed(engine, city.ring, FIRST + timedelta(hours=5))
        assert city_report.ledger_totals(engine) == city_report.ledger_totals(city.engine)
        assert city_report.figures(engine) == city_report.figures(city.engine)

        def counts(found: dict[str, int]) -> dict[str, int]:
            return {name: n for name, n in found.items() if name not in BY_PROGRAM_ID}

        assert counts(table_counts(engine)) == counts(city.counts)


def test_another_seed_gives_another_city(
    city: Seeded, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    with another_database(city, request, tmp_path) as engine:
        seed(engine, city.ring, FIRST, seed=SEED + 1)
        assert city_report.ledger_totals(engine) != city_report.ledger_totals(city.engine)


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    "first",
    [
        datetime(2026, 4, 1, 9, tzinfo=TOKYO),  # the history is one fiscal year exactly
        datetime(2027, 3, 1, 0, 5, tzinfo=TOKYO),  # starts on the 1st, seeded just past midnight
        datetime(2028, 2, 29, 23, 50, tzinfo=TOKYO),  # a leap day, late at night
    ],
)
def test_any_anchor_day_seeds_a_city_that_verifies(
    engine: Engine, tmp_path: Path, first: datetime, backend: str
) -> None:
    ring = key_ring(tmp_path / "city-keys")
    record = seed(engine, ring, first.astimezone(UTC), residents=30)
    assert record.anchor_day == first.date()
    report = Ledger(engine).verify(unsealed_grace_seconds=0)
    assert report.ok, report.problems[:3]
    assert scalar(engine, "SELECT count(*) FROM settlement_run") == 12


def test_a_database_with_other_data_is_refused(engine: Engine, tmp_path: Path) -> None:
    unit_of_work(
        engine,
        lambda session: session.connection().exec_driver_sql(
            "INSERT INTO department (id, code, name_ja, name_en, created_at) "
            "VALUES ('dep_x', 'x', 'x', 'x', CURRENT_TIMESTAMP)"
        ),
    )
    ring = key_ring(tmp_path / "k")
    with pytest.raises(Conflict, match="needs an empty database"):
        seed(engine, ring, FIRST)


def test_a_seeding_that_did_not_finish_is_refused(engine: Engine, tmp_path: Path) -> None:
    """An interrupted seeding (Ctrl-C, a crash) leaves its record without ``finished_at``: the
    next run says so and adds nothing, rather than build a second history on half of one."""

    def interrupted(session: Session) -> None:
        session.add(
            DemoCity(seed=1, residents=SIZE, generator=1, anchor_day=FIRST.date(), started_at=FIRST)
        )

    unit_of_work(engine, interrupted)
    ring = key_ring(tmp_path / "k")
    with pytest.raises(Conflict, match="did not finish"):
        seed(engine, ring, FIRST + timedelta(days=1))
    assert scalar(engine, "SELECT count(*) FROM resident") == 0
