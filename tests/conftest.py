"""Fixtures: a migrated database on SQLite always, and on PostgreSQL when
``POINTS_TEST_POSTGRES_URL`` is set (for example
``postgresql+psycopg://postgres@127.0.0.1:5432/test``).

Every test that takes ``engine`` (or ``ledger``) gets a database of its own, migrated with the
real Alembic migrations (never ``create_all``): on SQLite a copy of a migrated template file, on
PostgreSQL ``CREATE DATABASE ... TEMPLATE`` of a migrated template database. Both are dropped
afterwards.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url

import ledger
from ledger import Ledger
from points.shell import schema

if TYPE_CHECKING:
    from api_world import World

POSTGRES_URL = os.environ.get("POINTS_TEST_POSTGRES_URL")
BACKENDS = ["sqlite"] + (["postgresql"] if POSTGRES_URL else [])


class FakeClock:
    """A clock the test moves by hand; the ledger takes its time from here."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 4, 1, 0, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


def _admin_engine() -> Engine:
    assert POSTGRES_URL is not None
    return sa.create_engine(
        ledger.database.normalize_url(POSTGRES_URL),
        isolation_level="AUTOCOMMIT",
        poolclass=sa.pool.NullPool,
    )


def _postgres_url(database: str) -> str:
    assert POSTGRES_URL is not None
    url = make_url(ledger.database.normalize_url(POSTGRES_URL)).set(database=database)
    return url.render_as_string(hide_password=False)


def _drop_database(admin: Engine, name: str) -> None:
    with admin.connect() as connection:
        connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    engine = ledger.create_engine(f"sqlite:///{path}")
    schema.upgrade(engine)
    engine.dispose()
    return path


@pytest.fixture(scope="session")
def postgres_template() -> Iterator[str]:
    if not POSTGRES_URL:
        pytest.skip("POINTS_TEST_POSTGRES_URL is not set")
    admin = _admin_engine()
    name = f"points_template_{uuid.uuid4().hex[:10]}"
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    engine = ledger.create_engine(_postgres_url(name))
    schema.upgrade(engine)
    engine.dispose()
    yield name
    _drop_database(admin, name)
    admin.dispose()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def new_database_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh migrated database for one test; yields its URL and drops it afterwards."""
    if backend == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        path = tmp_path / "points.db"
        shutil.copyfile(template, path)
        yield f"sqlite:///{path}"
        return
    template_name: str = request.getfixturevalue("postgres_template")
    name = f"points_test_{uuid.uuid4().hex[:12]}"
    admin = _admin_engine()
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}" TEMPLATE "{template_name}"')
    try:
        yield _postgres_url(name)
    finally:
        _drop_database(admin, name)
        admin.dispose()


@pytest.fixture
def database_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    yield from new_database_url(backend, request, tmp_path)


@pytest.fixture(autouse=True)
def key_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test's signing keys (``POINTS_KEY_DIR``) in its own temporary directory, so that a
    command creating the development key (``points demo``, ``points serve``) never writes one
    into the working directory."""
    directory = tmp_path / "keys"
    monkeypatch.setenv("POINTS_KEY_DIR", str(directory))
    return directory


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = ledger.create_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def ledger_(engine: Engine, clock: FakeClock) -> Iterator[Ledger]:
    """A ``Ledger`` on a fresh migrated database with a fake clock."""
    with Ledger(engine, clock=clock) as instance:
        yield instance


# The HTTP API's world (tests/api_world.py) --------------------------------------------------


@pytest.fixture
def world_clock(clock: FakeClock) -> FakeClock:
    """The clock the world opens at; a module overrides it to open elsewhen."""
    return clock


@pytest.fixture
def world(engine: Engine, world_clock: FakeClock, database_url: str) -> Iterator[World]:
    """A populated world on a fresh database (``api_world.open_world``)."""
    from api_world import open_world

    with open_world(engine, world_clock, database_url) as built:
        yield built


@pytest.fixture(scope="module", params=BACKENDS)
def shared_world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    """One world per backend for a whole module: tests that change state use fresh objects
    (``World.fresh_*``), so that none spoils the shared principals for the next."""
    from api_world import world_on_new_database

    tmp_path = tmp_path_factory.mktemp("world")
    with world_on_new_database(str(request.param), request, tmp_path) as built:
        yield built
