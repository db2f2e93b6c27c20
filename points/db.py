"""Database wiring for the application: engines, and Alembic migrations to head.

Migrations live in ``points/migrations`` and ship inside the wheel; ``points db upgrade`` (or
``upgrade(engine)``) takes an empty SQLite file or PostgreSQL database to head.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel

import ledger
from issuers import awards, bulk, programs
from ledger import schema as ledger_schema
from points import (
    audit,
    auth,
    idempotency,
    jobs,
    pointtypes,
    ratelimit,
    registry,
    verification,
    wallets,
)
from points.settings import Settings

# The model modules register their tables on SQLModel.metadata when imported.
_MODEL_MODULES = (
    audit,
    auth,
    idempotency,
    ratelimit,
    registry,
    verification,
    pointtypes,
    wallets,
    programs,
    awards,
    bulk,
    jobs,
)

MIGRATIONS_DIRECTORY = Path(__file__).resolve().parent / "migrations"


#: References PostgreSQL checks once per statement by trigger instead of by foreign key
#: (migrations 0007 and 0009 say why); the models declare them, and SQLite keeps them as keys.
TRIGGER_CHECKED_FOREIGN_KEYS = ledger_schema.TRIGGER_CHECKED_FOREIGN_KEYS | frozenset(
    {
        "fk_award_program_id",
        "fk_award_resident_id",
        "fk_award_entry_id",
        "fk_award_once_program_id",
        "fk_award_once_resident_id",
        "fk_wallet_point_type_id",
        "fk_wallet_resident_id",
        "fk_wallet_bucket_account_id",
        "fk_wallet_bucket_program_id",
        "fk_wallet_bucket_resident_id_point_type_id",
    }
)


def include_in_comparison(dialect_name: str) -> Callable[..., bool]:
    """The Alembic ``include_object`` hook for the whole schema (see ``ledger.schema``)."""
    return ledger_schema.include_in_comparison(dialect_name, TRIGGER_CHECKED_FOREIGN_KEYS)


def target_metadata() -> list[sa.MetaData]:
    """Every table the migrations manage (autogenerate compares against these)."""
    return [ledger_schema.metadata, SQLModel.metadata]


def make_engine(settings: Settings) -> Engine:
    return ledger.create_engine(
        settings.database_url, sqlite_synchronous=settings.sqlite_synchronous
    )


def alembic_config(connection: sa.Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIRECTORY))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    with engine.connect() as connection:
        # Alembic manages its own transaction; on SQLite our BEGIN IMMEDIATE hook applies.
        command.upgrade(alembic_config(connection), revision)
        connection.commit()


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def is_at_head(engine: Engine) -> bool:
    return current_revision(engine) == head_revision()
