"""The schema as Alembic manages it: every table (``points.shell.wiring``), and ``upgrade``.

Migrations live in ``points/shell/migrations`` and ship inside the wheel; ``points db upgrade``
(or ``upgrade(engine)``) takes an empty SQLite file or PostgreSQL database to head. Reading the
revision a database is at is domain-level (``points.db``), so that the API's readiness check
needs nothing of the shell.
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel

from ledger import schema as ledger_schema
from points import db
from points.shell.wiring import TRIGGER_CHECKED_FOREIGN_KEYS


def include_in_comparison(dialect_name: str) -> Callable[..., bool]:
    """The Alembic ``include_object`` hook for the whole schema (see ``ledger.schema``)."""
    return ledger_schema.include_in_comparison(dialect_name, TRIGGER_CHECKED_FOREIGN_KEYS)


def target_metadata() -> list[sa.MetaData]:
    """Every table the migrations manage (autogenerate compares against these)."""
    return [ledger_schema.metadata, SQLModel.metadata]


def alembic_config(connection: sa.Connection | None = None) -> Config:
    config = db.alembic_config()
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    with engine.connect() as connection:
        # Alembic manages its own transaction; on SQLite our BEGIN IMMEDIATE hook applies.
        command.upgrade(alembic_config(connection), revision)
        connection.commit()
