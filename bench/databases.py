"""Fresh databases for one benchmark run, dropped afterwards, and what the servers are.

SQLite: files in a temporary directory, removed at the end. PostgreSQL: ``bench_<label>_<random>``
databases created on the server of the given URL (from a connection to the database it names) and
dropped with ``WITH (FORCE)`` at the end, whatever happened. Ledger databases are migrated with
``points.shell.schema.upgrade`` (the real Alembic migrations), and their engines come from
``ledger.create_engine`` (SQLite: WAL, ``synchronous=FULL``).
"""

from __future__ import annotations

import sqlite3
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url

import ledger
from points.shell import schema

SQLITE = "sqlite"
POSTGRESQL = "postgresql"


class Databases:
    """Makes fresh databases of one kind; ``cleanup`` removes every one it made."""

    def __init__(self, kind: str, postgres_url: str | None = None) -> None:
        self.kind = kind
        self._directory: tempfile.TemporaryDirectory[str] | None = None
        self._admin: Engine | None = None
        self._base_url = ledger.database.normalize_url(postgres_url) if postgres_url else None
        self._created: list[str] = []
        if kind == SQLITE:
            self._directory = tempfile.TemporaryDirectory(prefix="bench_ledger_")
        else:
            assert self._base_url is not None, "PostgreSQL needs a URL"
            self._admin = sa.create_engine(
                self._base_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool
            )

    def new_url(self, label: str) -> str:
        """The URL of a new, empty database."""
        if self._directory is not None:
            return f"sqlite:///{Path(self._directory.name) / label}.db"
        assert self._admin is not None and self._base_url is not None
        name = f"bench_{label}_{uuid.uuid4().hex[:10]}"
        with self._admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
        self._created.append(name)
        return make_url(self._base_url).set(database=name).render_as_string(hide_password=False)

    def new_ledger_engine(self, label: str) -> Engine:
        """A new database migrated to head, with an engine from ``ledger.create_engine``."""
        engine = ledger.create_engine(self.new_url(label))
        schema.upgrade(engine)
        return engine

    def version(self) -> str:
        if self._admin is None:
            return f"SQLite {sqlite3.sqlite_version}"
        with self._admin.connect() as connection:
            server = connection.exec_driver_sql("SHOW server_version").scalar_one()
        return f"PostgreSQL {server}"

    def settings(self) -> dict[str, str]:
        """The server settings that decide how fast a commit is."""
        if self._admin is None:
            return {"journal_mode": "wal", "synchronous": "FULL"}
        names = ("synchronous_commit", "fsync", "wal_sync_method", "shared_buffers")
        with self._admin.connect() as connection:
            return {
                name: str(connection.exec_driver_sql(f"SHOW {name}").scalar_one()) for name in names
            }

    def drop_all(self) -> None:
        """Drop every database made so far (their engines disposed first), to keep the disk
        free between rounds; ``new_url`` still makes new ones."""
        if self._admin is not None:
            with self._admin.connect() as connection:
                for name in self._created:
                    connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            self._created.clear()
        if self._directory is not None:
            for path in Path(self._directory.name).iterdir():
                path.unlink()

    def cleanup(self) -> None:
        self.drop_all()
        if self._admin is not None:
            self._admin.dispose()
        if self._directory is not None:
            self._directory.cleanup()


@contextmanager
def databases(kind: str, postgres_url: str | None = None) -> Iterator[Databases]:
    made = Databases(kind, postgres_url)
    try:
        yield made
    finally:
        made.cleanup()
