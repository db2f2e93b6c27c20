"""Engines, and the schema revision a database is at (domain-level: the API may import it).

Sessions and transactions are ``points.uow.unit_of_work``. Taking a database to the latest
schema is the application shell's (``points.shell.schema.upgrade``): it needs every package's
tables. The migrations' directory is read here only to learn the latest revision's name.
"""

from __future__ import annotations

from pathlib import Path

from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

import ledger
from points.settings import Settings

MIGRATIONS_DIRECTORY = Path(__file__).resolve().parent / "shell" / "migrations"


def make_engine(settings: Settings) -> Engine:
    return ledger.create_engine(
        settings.database_url, sqlite_synchronous=settings.sqlite_synchronous
    )


def alembic_config() -> Config:
    """Alembic's configuration: where the migrations are, nothing else."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIRECTORY))
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def is_at_head(engine: Engine) -> bool:
    return current_revision(engine) == head_revision()
