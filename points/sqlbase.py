"""What the application's tables share: constraint names, and ``UTCDateTime``.

``SQLModel.metadata`` gets the same naming convention as the ledger's tables, so constraints have
stable names that migrations, error mapping and ``verify`` can refer to.

``UTCDateTime``: an aware instant in and out of both databases.

PostgreSQL stores ``timestamptz``; SQLite keeps no time zone, so values are written as UTC and
read back as UTC. A naive datetime is refused on the way in, so local time never sneaks in.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
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


_UNSET = object()


def insert_many(connection: sa.Connection, table: sa.Table, rows: list[dict[str, Any]]) -> None:
    """Insert many rows of one table, the fastest way each database offers.

    SQLite: one prepared statement run by the driver's ``executemany``. PostgreSQL: one statement
    over one array per column (``INSERT ... SELECT * FROM unnest(...)``), sent in binary,
    instead of a statement per row (psycopg's ``executemany``). A CSV upload inserts four rows
    per award, and SQLAlchemy's own ``executemany`` spent more time preparing each row's
    parameters than the database spent writing it. Every row names the same columns; values go
    through each column type's bind processing as they would in an ordinary insert
    (``UTCDateTime`` included)."""
    if not rows:
        return
    names = list(rows[0])
    columns = [table.c[name] for name in names]
    dialect = connection.dialect
    arrays: list[list[Any]] = []
    for column in columns:
        process = column.type.bind_processor(dialect)
        values = [row[column.name] for row in rows]
        if process is None:
            arrays.append(values)
            continue
        # Rows of one insert often share a value object (the batch's instant, its program):
        # processed once per run of the same object.
        processed: list[Any] = []
        last: Any = _UNSET
        done: Any = None
        for value in values:
            if value is not last:
                last, done = value, process(value)
            processed.append(done)
        arrays.append(processed)
    quoted = ", ".join(dialect.identifier_preparer.quote(name) for name in names)
    target = dialect.identifier_preparer.format_table(table)
    if dialect.name == "sqlite":
        # Through SQLAlchemy's driver-level call, so that errors arrive wrapped as everywhere
        # else (sa.exc.IntegrityError), without its per-row parameter processing.
        connection.exec_driver_sql(
            f"INSERT INTO {target} ({quoted}) VALUES ({', '.join('?' for _ in names)})",
            list(zip(*arrays, strict=True)),
        )
        return
    types = [column.type.compile(dialect=dialect) for column in columns]
    statement = (
        f"INSERT INTO {target} ({quoted}) SELECT * FROM unnest("
        + ", ".join(f"%(c{n})b::{type_}[]" for n, type_ in enumerate(types))
        + ")"
    )
    connection.exec_driver_sql(statement, {f"c{n}": array for n, array in enumerate(arrays)})
