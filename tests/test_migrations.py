"""The Alembic migrations: an empty database to head, no drift from the models, the guards that
autogenerate cannot see, and a round trip down to base and up again."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from ledger_helpers import empty_database, make_chart, seal_and_verify, transfer
from sqlalchemy.engine import Engine

import ledger
from ledger import Ledger
from ledger.schema import EXPECTED_ACCOUNT_CHECKS, EXPECTED_SQLITE_TYPE_CHECKS, EXPECTED_TRIGGERS
from points import db
from points.shell import schema

LEDGER_TABLES = {
    "ledger",
    "ledger_account",
    "ledger_entry",
    "ledger_posting",
    "ledger_unsealed",
    "ledger_seal",
    "ledger_seal_head",
}


@pytest.fixture
def empty_engine(backend: str, tmp_path: Path) -> Iterator[Engine]:
    """An engine on a database with no tables at all (not a copy of the migrated template)."""
    for url in empty_database(backend, tmp_path):
        engine = ledger.create_engine(url)
        try:
            yield engine
        finally:
            engine.dispose()


def table_names(engine: Engine) -> set[str]:
    return set(sa.inspect(engine).get_table_names())


def trigger_names(engine: Engine) -> set[str]:
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            sql = "SELECT name FROM sqlite_master WHERE type = 'trigger'"
        else:
            sql = "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal AND tgenabled <> 'D'"
        return {row[0] for row in connection.exec_driver_sql(sql)}


def check_names(engine: Engine, table: str) -> set[str]:
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            sql = connection.exec_driver_sql(
                f"SELECT sql FROM sqlite_master WHERE type = 'table' AND name = '{table}'"
            ).scalar_one()
            return set(re.findall(r"CONSTRAINT\s+\"?(\w+)\"?\s+CHECK", sql))
        return {
            row[0]
            for row in connection.exec_driver_sql(
                "SELECT conname FROM pg_constraint WHERE contype = 'c' "
                f"AND conrelid = '{table}'::regclass"
            )
        }


def downgrade(engine: Engine, revision: str) -> None:
    with engine.connect() as connection:
        command.downgrade(schema.alembic_config(connection), revision)
        connection.commit()


def test_upgrade_takes_an_empty_database_to_head_with_its_guards(
    backend: str, empty_engine: Engine
) -> None:
    assert table_names(empty_engine) == set()
    assert db.current_revision(empty_engine) is None
    assert not db.is_at_head(empty_engine)

    schema.upgrade(empty_engine)

    assert db.current_revision(empty_engine) == db.head_revision()
    assert db.is_at_head(empty_engine)
    assert table_names(empty_engine) >= LEDGER_TABLES | {"alembic_version"}
    # Upgrading again is a no-op.
    schema.upgrade(empty_engine)
    assert db.is_at_head(empty_engine)

    # The triggers and CHECK constraints that autogenerate cannot see are in place.
    assert EXPECTED_TRIGGERS[backend] <= trigger_names(empty_engine)
    account_checks = check_names(empty_engine, "ledger_account")
    assert account_checks >= EXPECTED_ACCOUNT_CHECKS
    if backend == "sqlite":
        posting_checks = check_names(empty_engine, "ledger_posting")
        assert account_checks | posting_checks >= EXPECTED_SQLITE_TYPE_CHECKS
        assert "ck_ledger_account_totals_are_integers" in account_checks
        assert "ck_ledger_posting_amount_is_integer" in posting_checks
    else:
        with empty_engine.connect() as connection:
            deferred = {
                row[0]
                for row in connection.exec_driver_sql(
                    "SELECT tgname FROM pg_trigger WHERE tgdeferrable AND tginitdeferred"
                )
            }
        assert deferred >= {"ledger_entry_balanced"}

    # The migrated database works and verifies.
    with Ledger(empty_engine) as instance:
        chart = make_chart(instance)
        instance.post(transfer(chart.source.id, chart.wallet.id, 10))
        seal_and_verify(instance)


def test_models_and_migrations_do_not_drift(empty_engine: Engine) -> None:
    schema.upgrade(empty_engine)
    with empty_engine.connect() as connection:
        context = MigrationContext.configure(
            connection,
            opts={
                "compare_type": True,
                "include_object": schema.include_in_comparison(connection.dialect.name),
            },
        )
        diff = compare_metadata(context, schema.target_metadata())
    assert diff == []


def test_downgrade_to_base_and_upgrade_again(empty_engine: Engine) -> None:
    schema.upgrade(empty_engine)
    with Ledger(empty_engine) as instance:
        chart = make_chart(instance)
        instance.post(transfer(chart.source.id, chart.wallet.id, 10))

    downgrade(empty_engine, "base")

    assert db.current_revision(empty_engine) is None
    assert table_names(empty_engine) <= {"alembic_version"}
    assert trigger_names(empty_engine) == set()
    if empty_engine.dialect.name == "postgresql":
        with empty_engine.connect() as connection:
            functions = connection.exec_driver_sql(
                "SELECT count(*) FROM pg_proc WHERE left(proname, 7) = 'ledger_'"
            ).scalar_one()
        assert functions == 0

    schema.upgrade(empty_engine)

    assert db.is_at_head(empty_engine)
    assert table_names(empty_engine) >= LEDGER_TABLES | {"alembic_version"}
    with Ledger(empty_engine) as instance:
        chart = make_chart(instance)
        instance.post(transfer(chart.source.id, chart.wallet.id, 10))
        seal_and_verify(instance)
        assert instance.balance(chart.wallet.id).posted == 10


def test_instants_bulk_uploads_wrote_short_are_given_their_fraction(
    backend: str, empty_engine: Engine
) -> None:
    """Revision 0008 (SQLite): ``created_at`` stored without its zero fraction by earlier bulk
    uploads is rewritten in the form every other write uses; other values are left alone."""
    if backend != "sqlite":
        pytest.skip("PostgreSQL stores timestamptz values")
    schema.upgrade(empty_engine, "0007_posting_checks")
    raw = empty_engine.raw_connection()
    try:
        cursor = raw.driver_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=OFF")  # the wallets' residents are not the point
        cursor.execute("BEGIN")
        cursor.executemany(
            "INSERT INTO wallet (resident_id, point_type_id, status, created_at) "
            "VALUES (?, 'pt_1', 'open', ?)",
            [
                ("res_short", "2026-05-10 03:00:00"),
                ("res_full", "2026-05-10 03:00:00.000000"),
                ("res_fraction", "2026-05-10 03:00:00.250000"),
            ],
        )
        cursor.execute("COMMIT")
    finally:
        raw.close()

    schema.upgrade(empty_engine)

    with empty_engine.connect() as connection:
        stored = dict(
            connection.exec_driver_sql("SELECT resident_id, created_at FROM wallet").all()
        )
    assert stored == {
        "res_short": "2026-05-10 03:00:00.000000",
        "res_full": "2026-05-10 03:00:00.000000",
        "res_fraction": "2026-05-10 03:00:00.250000",
    }
