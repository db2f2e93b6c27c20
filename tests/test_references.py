"""The references of the tables bulk awards write (``award``, ``award_once``, ``wallet``,
``wallet_bucket``), held by the database on both backends: SQLite by foreign keys, PostgreSQL by
statement triggers (migration 0009) that keep the foreign keys' names, their lock and their
other half (a referenced row cannot be deleted, re-keyed or truncated away).

Every statement here is raw SQL, past the application's own checks: what is refused is refused
by the database, and changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from concurrency import Waiting
from conftest import FakeClock
from earning_helpers import Earning
from sqlalchemy.engine import Engine

from ledger.database import constraint_violation

NOON = datetime(2026, 5, 10, 3, 0, tzinfo=UTC)
TABLES = ("award", "award_once", "wallet", "wallet_bucket", "resident", "program", "point_type")


@dataclass(frozen=True)
class World:
    """One award written by the application: a row in each of the four tables."""

    resident: str
    other_resident: str
    program: str
    point_type: str
    award_id: int
    bucket: int
    #: A ledger entry and an account no award or bucket names yet.
    spare_entry: int
    spare_account: int


@pytest.fixture
def world(engine: Engine) -> World:
    clock = FakeClock(NOON)
    earning = Earning(engine, clock)
    point_type = earning.point_type()
    program = earning.program(
        point_type, module="health_checkup", config={"checkup_types": ["specific_health_checkup"]}
    )
    allocation = earning.allocate(program, 2026, 10_000)
    resident, other = earning.resident(), earning.resident()
    earning.award(program, resident, "REC-1", {"checkup_type": "specific_health_checkup"})
    with engine.connect() as connection:
        award_id, bucket = connection.exec_driver_sql(
            "SELECT id, bucket_account_id FROM award"
        ).one()
    return World(
        resident=resident,
        other_resident=other,
        program=program.id,
        point_type=point_type.id,
        award_id=award_id,
        bucket=bucket,
        spare_entry=allocation.id,
        spare_account=point_type.expired_account_id,
    )


def counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as connection:
        return {
            table: connection.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar_one()
            for table in TABLES
        }


def refused(engine: Engine, backend: str, sql: str, constraint: str) -> None:
    """``sql`` is refused by the database, changing nothing; on PostgreSQL the error names
    ``constraint`` (SQLite's foreign-key errors name none)."""
    before = counts(engine)
    with pytest.raises(sa.exc.IntegrityError) as raised, engine.connect() as connection:
        connection.exec_driver_sql(sql)
        connection.commit()
    if backend == "postgresql":
        assert constraint_violation(raised.value).constraint == constraint, raised.value
    else:
        assert "FOREIGN KEY constraint failed" in str(raised.value)
    assert counts(engine) == before


def copy_row(table: str, where: str, changes: dict[str, str], columns: list[str]) -> str:
    """An INSERT copying one row of ``table`` with some columns changed (SQL expressions)."""
    listed = ", ".join(columns)
    chosen = ", ".join(changes.get(column, column) for column in columns)
    return f"INSERT INTO {table} ({listed}) SELECT {chosen} FROM {table} WHERE {where}"


AWARD_COLUMNS = [
    "program_id",
    "record_id",
    "resident_id",
    "amount",
    "fiscal_year",
    "occurred_on",
    "valid_until",
    "entry_id",
    "bucket_account_id",
    "details",
    "awarded_by",
    "created_at",
]
ONCE_COLUMNS = ["program_id", "resident_id", "once_key", "record_id"]
WALLET_COLUMNS = ["resident_id", "point_type_id", "status", "created_at"]
BUCKET_COLUMNS = ["account_id", "resident_id", "point_type_id", "program_id", "valid_until"]


def new_wallet(resident: str) -> str:
    """An INSERT of a wallet of the world's point type for ``resident``."""
    return copy_row("wallet", "true", {"resident_id": f"'{resident}'"}, WALLET_COLUMNS)


def test_rows_naming_what_does_not_exist_are_refused(
    backend: str, engine: Engine, world: World
) -> None:
    # Each copy gets fresh unique keys, so that only the reference can refuse it.
    award = f"id = {world.award_id}"
    fresh_award = {"record_id": "'REC-NEW'", "entry_id": str(world.spare_entry)}
    cases = [
        ("award", award, {**fresh_award, "program_id": "'prg_nope'"}, AWARD_COLUMNS,
         "fk_award_program_id"),
        ("award", award, {**fresh_award, "resident_id": "'res_nobody'"}, AWARD_COLUMNS,
         "fk_award_resident_id"),
        ("award", award, {**fresh_award, "entry_id": "987654321"}, AWARD_COLUMNS,
         "fk_award_entry_id"),
        ("award_once", "true", {"once_key": "'k2'", "program_id": "'prg_nope'"}, ONCE_COLUMNS,
         "fk_award_once_program_id"),
        ("award_once", "true", {"once_key": "'k2'", "resident_id": "'res_nobody'"},
         ONCE_COLUMNS, "fk_award_once_resident_id"),
        ("wallet", "true", {"resident_id": "'res_nobody'"}, WALLET_COLUMNS,
         "fk_wallet_resident_id"),
        ("wallet", "true", {"point_type_id": "'pt_nope'"}, WALLET_COLUMNS,
         "fk_wallet_point_type_id"),
        ("wallet_bucket", "true", {"account_id": "987654321", "valid_until": "'2030-01-01'"},
         BUCKET_COLUMNS, "fk_wallet_bucket_account_id"),
        ("wallet_bucket", "true",
         {"account_id": str(world.spare_account), "program_id": "'prg_nope'"},
         BUCKET_COLUMNS, "fk_wallet_bucket_program_id"),
        # The other resident is real but has no wallet of this point type.
        ("wallet_bucket", "true",
         {"account_id": str(world.spare_account), "resident_id": f"'{world.other_resident}'"},
         BUCKET_COLUMNS, "fk_wallet_bucket_resident_id_point_type_id"),
    ]  # fmt: skip
    for table, where, changes, columns, constraint in cases:
        refused(engine, backend, copy_row(table, where, changes, columns), constraint)
    # Control: the same copies with every reference real are written.
    with engine.begin() as connection:
        connection.exec_driver_sql(
            copy_row("award", award, {**fresh_award, "program_id": "program_id"}, AWARD_COLUMNS)
        )
        connection.exec_driver_sql(new_wallet(world.other_resident))
        connection.exec_driver_sql(
            copy_row(
                "wallet_bucket",
                "true",
                {
                    "account_id": str(world.spare_account),
                    "resident_id": f"'{world.other_resident}'",
                },
                BUCKET_COLUMNS,
            )
        )
        connection.rollback()


def test_updating_a_reference_to_nothing_is_refused_and_to_a_real_row_is_not(
    backend: str, engine: Engine, world: World
) -> None:
    refused(
        engine,
        backend,
        f"UPDATE award SET resident_id = 'res_nobody' WHERE id = {world.award_id}",
        "fk_award_resident_id",
    )
    refused(
        engine,
        backend,
        f"UPDATE wallet_bucket SET program_id = 'prg_nope' WHERE account_id = {world.bucket}",
        "fk_wallet_bucket_program_id",
    )
    with engine.connect() as connection:
        connection.exec_driver_sql(
            f"UPDATE award SET resident_id = '{world.other_resident}' WHERE id = {world.award_id}"
        )
        connection.rollback()


def test_a_named_row_cannot_be_deleted_or_rekeyed(
    backend: str, engine: Engine, world: World
) -> None:
    cases = [
        (f"DELETE FROM resident WHERE id = '{world.resident}'", "fk_award_resident_id"),
        (f"UPDATE resident SET id = 'res_renamed' WHERE id = '{world.resident}'",
         "fk_award_resident_id"),
        (f"DELETE FROM program WHERE id = '{world.program}'", "fk_award_program_id"),
        (f"UPDATE program SET id = 'prg_renamed' WHERE id = '{world.program}'",
         "fk_award_program_id"),
        (f"DELETE FROM point_type WHERE id = '{world.point_type}'", "fk_wallet_point_type_id"),
        (f"DELETE FROM wallet WHERE resident_id = '{world.resident}'",
         "fk_wallet_bucket_resident_id_point_type_id"),
        (f"UPDATE wallet SET resident_id = '{world.other_resident}' "
         f"WHERE resident_id = '{world.resident}'", "fk_wallet_bucket_resident_id_point_type_id"),
        (f"DELETE FROM ledger_account WHERE id = {world.bucket}", None),
    ]  # fmt: skip
    for sql, constraint in cases:
        if constraint is None:
            # The bucket account has postings too: the ledger's own guard may answer first.
            with pytest.raises(sa.exc.IntegrityError), engine.connect() as connection:
                connection.exec_driver_sql(sql)
            continue
        refused(engine, backend, sql, constraint)


def test_postgresql_a_bucket_account_without_postings_is_still_held_by_its_bucket(
    backend: str, engine: Engine, world: World
) -> None:
    """The bucket reference alone refuses deleting the account (no posting names it)."""
    if backend != "postgresql":
        pytest.skip("SQLite holds it by foreign key")
    with engine.begin() as connection:
        connection.exec_driver_sql(
            copy_row(
                "wallet_bucket",
                "true",
                {"account_id": str(world.spare_account), "valid_until": "'2030-01-01'"},
                BUCKET_COLUMNS,
            )
        )
        spare_postings = connection.exec_driver_sql(
            f"SELECT count(*) FROM ledger_posting WHERE account_id = {world.spare_account}"
        ).scalar_one()
    if spare_postings:
        pytest.fail("the spare account was meant to have no postings")
    refused(
        engine,
        backend,
        f"DELETE FROM ledger_account WHERE id = {world.spare_account}",
        "fk_wallet_bucket_account_id",
    )


def test_postgresql_named_tables_cannot_be_truncated(
    backend: str, engine: Engine, world: World
) -> None:
    if backend != "postgresql":
        pytest.skip("SQLite has no TRUNCATE")
    for table in ("resident", "program", "point_type", "wallet"):
        before = counts(engine)
        with pytest.raises(sa.exc.DBAPIError) as raised, engine.connect() as connection:
            connection.exec_driver_sql(f"TRUNCATE {table} CASCADE")
        assert f"{table} is referenced by" in str(raised.value)
        assert counts(engine) == before


@pytest.fixture
def postgresql(backend: str) -> Iterator[None]:
    if backend != "postgresql":
        pytest.skip("SQLite has one writer at a time")
    yield


def wallets_of(engine: Engine, resident: str) -> int:
    with engine.connect() as connection:
        return int(
            connection.exec_driver_sql(
                f"SELECT count(*) FROM wallet WHERE resident_id = '{resident}'"
            ).scalar_one()
        )


def test_postgresql_a_delete_waits_for_a_row_naming_it_and_is_refused(
    postgresql: None, engine: Engine, world: World
) -> None:
    """The trigger takes the foreign key's lock (FOR KEY SHARE on the named rows): deleting a
    resident that an uncommitted wallet names waits for it, then sees it."""
    with engine.connect() as writer:
        writer.exec_driver_sql(new_wallet(world.other_resident))
        delete = Waiting(
            engine, f"DELETE FROM resident WHERE id = '{world.other_resident}'", what="the delete"
        )
        writer.commit()
    error = delete.error()
    assert isinstance(error, sa.exc.IntegrityError)
    assert constraint_violation(error).constraint == "fk_wallet_resident_id"
    assert wallets_of(engine, world.other_resident) == 1


def test_postgresql_a_row_naming_what_is_being_deleted_waits_and_is_refused(
    postgresql: None, engine: Engine, world: World
) -> None:
    """The other way round: a wallet written for a resident whose delete is not committed yet
    waits for the delete, then finds no resident."""
    with engine.connect() as deleter:
        deleter.exec_driver_sql(f"DELETE FROM resident WHERE id = '{world.other_resident}'")
        insert = Waiting(engine, new_wallet(world.other_resident), what="the wallet")
        deleter.commit()
    error = insert.error()
    assert isinstance(error, sa.exc.IntegrityError)
    assert constraint_violation(error).constraint == "fk_wallet_resident_id"
    assert wallets_of(engine, world.other_resident) == 0
