"""What the application's tables share: constraint names, and ``UTCDateTime``.

``SQLModel.metadata`` gets the same naming convention as the ledger's tables, so constraints have
stable names that migrations, error mapping and ``verify`` can refer to.

``UTCDateTime``: an aware instant in and out of both databases.

PostgreSQL stores ``timestamptz``; SQLite keeps no time zone, so values are written as UTC and
read back as UTC. A naive datetime is refused on the way in, so local time never sneaks in.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Dialect
from sqlmodel import SQLModel

from ledger.schema import NAMING_CONVENTION

SQLModel.metadata.naming_convention = NAMING_CONVENTION


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("instants must carry a time zone")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def insert_many(
    connection: sa.Connection,
    table: sa.Table,
    columns: Mapping[str, Sequence[Any]],
    same: Mapping[str, Any] | None = None,
) -> None:
    """Insert many rows of one table, given by column, the fastest way each database offers.

    ``columns`` maps column names to one value per row (all of one length); ``same`` maps
    column names to one value for every row. SQLite: one prepared statement run by the
    driver's ``executemany``. PostgreSQL: one statement over one array per column (``INSERT
    ... SELECT ... FROM unnest(...)``, sent in binary), the shared values as plain parameters,
    instead of a statement per row (psycopg's ``executemany``). A CSV upload inserts four rows
    per award, and SQLAlchemy's own ``executemany`` spent more time preparing each row's
    parameters than the database spent writing it; building a dict per row cost as much again.
    Values go through each column type's bind processing as in an ordinary insert
    (``UTCDateTime`` included), once per distinct value."""
    same = same or {}
    count = len(next(iter(columns.values()))) if columns else 0
    if not count:
        return
    dialect = connection.dialect
    arrays = [_processed(table.c[name], values, dialect) for name, values in columns.items()]
    if any(len(values) != count for values in arrays):
        raise ValueError("insert_many: every column needs one value per row")
    shared = [_processed(table.c[name], [value], dialect)[0] for name, value in same.items()]
    names = [*columns, *same]
    quoted = ", ".join(dialect.identifier_preparer.quote(name) for name in names)
    target = dialect.identifier_preparer.format_table(table)
    if dialect.name == "sqlite":
        # Through SQLAlchemy's driver-level call, so that errors arrive wrapped as everywhere
        # else (sa.exc.IntegrityError), without its per-row parameter processing.
        connection.exec_driver_sql(
            f"INSERT INTO {target} ({quoted}) VALUES ({', '.join('?' for _ in names)})",
            list(zip(*arrays, *(itertools.repeat(value, count) for value in shared), strict=True)),
        )
        return
    types = [table.c[name].type.compile(dialect=dialect) for name in names]
    listed = [f"%(c{n})b::{types[n]}[]" for n in range(len(arrays))]
    constants = [f"%(s{n})s::{types[len(arrays) + n]}" for n in range(len(shared))]
    statement = (
        f"INSERT INTO {target} ({quoted}) SELECT u.*"
        + "".join(f", {constant}" for constant in constants)
        + f" FROM unnest({', '.join(listed)}) AS u"
    )
    parameters = {f"c{n}": array for n, array in enumerate(arrays)}
    parameters.update({f"s{n}": value for n, value in enumerate(shared)})
    connection.exec_driver_sql(statement, parameters)


def _processed(column: sa.Column[Any], values: Sequence[Any], dialect: Dialect) -> list[Any]:
    """The values as the column's bind processing sends them (each distinct value once), with
    the dialect's own type (SQLite's DATE and DATETIME write text in SQLAlchemy's format; the
    generic types have no processing, and sqlite3's default adapters write another)."""
    process = column.type.dialect_impl(dialect).bind_processor(dialect)
    if process is None:
        return list(values)
    done: dict[Any, Any] = {}
    processed: list[Any] = []
    try:
        for value in values:
            try:
                processed.append(done[value])
            except KeyError:
                processed.append(done.setdefault(value, process(value)))
    except TypeError:  # an unhashable value (a dict for a JSON column): each processed alone
        return [process(value) for value in values]
    return processed


def insert_missing(
    connection: sa.Connection, model: type[SQLModel], row: dict[str, object]
) -> None:
    """Insert ``row`` unless its key is taken (``ON CONFLICT DO NOTHING`` on both databases):
    how a counter row is opened before a conditional update raises it, so two first uses at once
    neither fail nor make two rows."""
    table = model.__table__  # type: ignore[attr-defined]
    insert = pg_insert if connection.dialect.name == "postgresql" else sqlite_insert
    connection.execute(insert(table).values(row).on_conflict_do_nothing())
