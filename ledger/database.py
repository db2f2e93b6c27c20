"""Database wiring for the ledger: engines with the right transaction behaviour, and retries.

SQLite: the driver's own transaction handling is switched off (``isolation_level = None``) and
every transaction starts with ``BEGIN IMMEDIATE``, so a writer takes the write lock before it
reads; a deferred transaction that reads before it writes fails with "database is locked" under
contention instead. WAL, ``synchronous=FULL`` (configurable), a busy timeout and foreign keys are
set on every connection. A read-only unit of work may ask for ``BEGIN DEFERRED`` through the
execution option ``ledger_read_only``.

PostgreSQL: READ COMMITTED (the server default, set explicitly). Deadlocks, serialization
failures and a lost race on a unique idempotency key are *transient*: the whole unit of work is
run again, a bounded number of times (``run_with_retries``).

Two ways to run a unit of work, with the same transaction, retries and errors:
``run_with_retries`` on a SQLAlchemy ``Connection`` (services with a ``Session``, reads), and
``run_on_driver`` on the pool's DBAPI connection (``DriverConnection``: the ledger's own hot path,
``Ledger.transaction``), where ``BEGIN IMMEDIATE``, ``COMMIT`` and ``ROLLBACK`` go straight to the
driver and every driver error is wrapped as SQLAlchemy would wrap it.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.pool import PoolProxiedConnection

from ledger.errors import ConstraintViolation, StorageError

T = TypeVar("T")

#: How many times a unit of work is tried when the database reports a transient failure.
RETRY_ATTEMPTS_MAX = 12
RETRY_BACKOFF_SECONDS_MAX = 0.05
SQLITE_BUSY_TIMEOUT_MS = 30_000
SQLITE_SYNCHRONOUS_MODES = ("OFF", "NORMAL", "FULL", "EXTRA")

READ_ONLY = "ledger_read_only"


def normalize_url(url: str) -> str:
    """Accept ``postgresql://`` and ``postgres://`` and use psycopg 3 for them."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def create_engine(
    url: str,
    *,
    sqlite_synchronous: str = "FULL",
    pool_size: int = 10,
    max_overflow: int = 60,
    echo: bool = False,
) -> Engine:
    """An engine configured as the module docstring says."""
    url = normalize_url(url)
    if sqlite_synchronous.upper() not in SQLITE_SYNCHRONOUS_MODES:
        raise ValueError(f"sqlite_synchronous must be one of {SQLITE_SYNCHRONOUS_MODES}")
    if url.startswith("sqlite"):
        engine = sa.create_engine(
            url,
            echo=echo,
            connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
            poolclass=sa.pool.QueuePool,
            pool_size=pool_size,
            max_overflow=max_overflow,
        )
        _configure_sqlite(engine, sqlite_synchronous.upper())
        return engine
    return sa.create_engine(
        url,
        echo=echo,
        isolation_level="READ COMMITTED",
        pool_size=pool_size,
        max_overflow=max_overflow,
        # No pre-ping (a round trip per transaction); a connection found dead before commit is
        # retried instead (run_with_retries).
        pool_recycle=3600,
    )


def _configure_sqlite(engine: Engine, synchronous: str) -> None:
    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from the driver: we emit BEGIN ourselves.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        if engine.url.database not in (None, "", ":memory:"):
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(connection: sa.Connection) -> None:
        read_only = connection.get_execution_options().get(READ_ONLY, False)
        connection.exec_driver_sql("BEGIN DEFERRED" if read_only else "BEGIN IMMEDIATE")


def is_sqlite(connection_or_engine: sa.Connection | Engine) -> bool:
    return connection_or_engine.dialect.name == "sqlite"


#: Unique constraints whose violation means "another writer won a race": the retry finds the
#: winner's row. Callers add their own through ``run_with_retries(race_constraints=...)``.
RACE_CONSTRAINTS = frozenset({"uq_ledger_entry_namespace_idempotency_key"})


def is_transient(error: BaseException, race_constraints: frozenset[str] = RACE_CONSTRAINTS) -> bool:
    """Is this a failure that running the whole unit of work again can cure?"""
    original = getattr(error, "orig", None)
    if original is None:
        return False
    sqlstate = getattr(original, "sqlstate", None)
    if sqlstate in ("40001", "40P01"):
        return True
    if sqlstate == "23505":
        diag = getattr(original, "diag", None)
        name = getattr(diag, "constraint_name", None) or ""
        # Two writers raced on one idempotency key: the loser's retry finds the winner's entry.
        return name in race_constraints
    message = str(original).lower()
    return "database is locked" in message or "database is busy" in message


class DriverCursor:
    """The driver's own cursor, for hot paths (no result rows or parameter processing by
    SQLAlchemy), with its errors wrapped as SQLAlchemy wraps them: ``run_with_retries`` then
    retries a deadlock or a busy database met here, and names a refused constraint, exactly as
    for any other statement."""

    __slots__ = ("_cursor", "_driver", "_error")

    def __init__(self, connection: sa.Connection | DriverConnection) -> None:
        self._driver: DriverConnection | None
        if isinstance(connection, DriverConnection):
            self._driver = connection
            self._cursor = connection.dbapi_connection.cursor()
            self._error: type[Exception] = connection.error
        else:
            self._driver = None
            self._cursor = connection.connection.cursor()
            self._error = connection.dialect.loaded_dbapi.Error

    def execute(self, statement: str, parameters: Any = None) -> DriverCursor:
        try:
            if parameters is None:
                self._cursor.execute(statement)
            else:
                self._cursor.execute(statement, parameters)
        except self._error as error:
            raise self._wrap(statement, parameters, error) from error
        return self

    def executemany(self, statement: str, rows: Any) -> DriverCursor:
        try:
            self._cursor.executemany(statement, rows)
        except self._error as error:
            raise self._wrap(statement, None, error) from error
        return self

    def fetchone(self) -> Any:
        try:
            return self._cursor.fetchone()
        except self._error as error:
            raise self._wrap("(fetch)", None, error) from error

    def fetchall(self) -> list[Any]:
        try:
            return list(self._cursor.fetchall())
        except self._error as error:
            raise self._wrap("(fetch)", None, error) from error

    def close(self) -> None:
        self._cursor.close()

    def _wrap(self, statement: str, parameters: Any, error: Exception) -> sa.exc.StatementError:
        if self._driver is not None:
            return self._driver.wrap(statement, parameters, error)
        return sa.exc.DBAPIError.instance(
            statement, parameters, error, self._error, hide_parameters=True
        )


class DriverConnection:
    """One transaction on the pool's own DBAPI connection (sqlite3 or psycopg 3), without
    SQLAlchemy's ``Connection``: the hot path of ``Ledger.transaction`` (``run_on_driver``).

    The transaction is the same as on a ``Connection``: on SQLite ``BEGIN IMMEDIATE`` (the driver's
    own transaction handling is off, see ``create_engine``), on PostgreSQL the one psycopg opens
    with the first statement, at the engine's READ COMMITTED. Every driver error, from a statement
    or from ``BEGIN``, ``COMMIT`` or ``ROLLBACK``, is wrapped as SQLAlchemy wraps it (with
    ``connection_invalidated`` set when the connection died, which also drops it from the pool),
    so that ``is_transient`` and ``constraint_violation`` read it as they read any other."""

    __slots__ = ("_pooled", "dbapi_connection", "dialect", "error", "sqlite")

    def __init__(self, pooled: PoolProxiedConnection, dialect: Dialect) -> None:
        self._pooled = pooled
        self.dbapi_connection: Any = pooled.dbapi_connection
        self.dialect = dialect
        self.error: type[Exception] = dialect.loaded_dbapi.Error
        self.sqlite = dialect.name == "sqlite"

    def cursor(self) -> DriverCursor:
        return DriverCursor(self)

    def begin(self) -> None:
        if self.sqlite:
            self._call("BEGIN IMMEDIATE", lambda: self.dbapi_connection.execute("BEGIN IMMEDIATE"))

    def commit(self) -> None:
        self._call("COMMIT", self.dbapi_connection.commit)

    def rollback(self) -> None:
        self._call("ROLLBACK", self.dbapi_connection.rollback)

    def wrap(self, statement: str, parameters: Any, error: Exception) -> sa.exc.StatementError:
        died = bool(self.dialect.is_disconnect(error, self.dbapi_connection, None))  # type: ignore[arg-type]
        if died:
            self._pooled.invalidate(error)
        return sa.exc.DBAPIError.instance(
            statement,
            parameters,
            error,
            self.error,
            hide_parameters=True,
            connection_invalidated=died,
        )

    def _call(self, statement: str, call: Callable[[], object]) -> None:
        try:
            call()
        except self.error as error:
            raise self.wrap(statement, None, error) from error


def run_with_retries(
    engine: Engine,
    work: Callable[[sa.Connection], T],
    *,
    read_only: bool = False,
    attempts: int = RETRY_ATTEMPTS_MAX,
    race_constraints: frozenset[str] = RACE_CONSTRAINTS,
) -> T:
    """Run ``work`` in one transaction; run it again on a transient failure; commit at the end."""

    def attempt(progress: _Progress) -> T:
        with engine.connect() as plain_connection:
            connection = (
                plain_connection.execution_options(**{READ_ONLY: True})
                if read_only
                else plain_connection
            )
            transaction = connection.begin()
            try:
                result = work(connection)
            except BaseException:
                if transaction.is_active:
                    transaction.rollback()
                raise
            progress.committing = True
            transaction.commit()
            return result

    return _retrying(attempt, attempts, race_constraints)


def run_on_driver(
    engine: Engine,
    work: Callable[[DriverConnection], T],
    *,
    attempts: int = RETRY_ATTEMPTS_MAX,
    race_constraints: frozenset[str] = RACE_CONSTRAINTS,
) -> T:
    """``run_with_retries`` for a unit of work that needs no SQLAlchemy ``Connection``: it runs on
    the pool's DBAPI connection (``DriverConnection``), which saves SQLAlchemy's per-transaction
    work (its ``Connection`` and ``begin`` event, result and transaction objects) on the hot path.
    Same transaction, same retries, same errors."""

    def attempt(progress: _Progress) -> T:
        pooled = engine.raw_connection()
        try:
            connection = DriverConnection(pooled, engine.dialect)
            connection.begin()
            try:
                try:
                    result = work(connection)
                except connection.error as error:
                    # The work's own SQL on ``tx.driver``: retried and mapped like the ledger's.
                    raise connection.wrap("(unit of work)", None, error) from error
            except BaseException:
                with contextlib.suppress(sa.exc.DBAPIError):
                    # A failed rollback (a dead connection) has dropped the connection already.
                    connection.rollback()
                raise
            progress.committing = True
            connection.commit()
            return result
        finally:
            pooled.close()

    return _retrying(attempt, attempts, race_constraints)


class _Progress:
    """How far an attempt got: a connection that dies during COMMIT is not retried."""

    __slots__ = ("committing",)

    def __init__(self) -> None:
        self.committing = False


def _retrying(
    attempt: Callable[[_Progress], T], attempts: int, race_constraints: frozenset[str]
) -> T:
    assert attempts >= 1
    for number in range(1, attempts + 1):
        progress = _Progress()
        try:
            return attempt(progress)
        except sa.exc.IntegrityError as error:
            if is_transient(error, race_constraints) and number < attempts:
                time.sleep(random.uniform(0, RETRY_BACKOFF_SECONDS_MAX * number))
                continue
            raise constraint_violation(error) from error
        except sa.exc.DBAPIError as error:
            if _is_constraint_error(error):
                raise constraint_violation(error) from error
            if error.connection_invalidated and not progress.committing and number < attempts:
                # The connection died before COMMIT was sent: nothing was committed, so running
                # the work again is safe. A death during COMMIT is not retried (the outcome is
                # unknown; an idempotency key makes the caller's own retry safe).
                continue
            if not is_transient(error, race_constraints) or number == attempts:
                raise StorageError(
                    f"database error: {type(error.orig).__name__}: {_first_line(error.orig)}",
                    attempts=number,
                ) from error
            time.sleep(random.uniform(0, RETRY_BACKOFF_SECONDS_MAX * number))
    raise AssertionError("unreachable")


def _is_constraint_error(error: sa.exc.DBAPIError) -> bool:
    sqlstate = getattr(error.orig, "sqlstate", None) or ""
    return sqlstate.startswith("23") or "constraint failed" in str(error.orig).lower()


def constraint_violation(error: sa.exc.DBAPIError) -> ConstraintViolation:
    """Name the constraint or trigger that refused a write, from either driver's error."""
    original = error.orig
    diag = getattr(original, "diag", None)
    name = getattr(diag, "constraint_name", None)
    detail = _first_line(original)
    if not name:
        # SQLite: "CHECK constraint failed: ck_ledger_account_debits_within_credits"
        _, _, tail = detail.partition("constraint failed: ")
        name = tail.split()[0] if tail else "unknown"
    return ConstraintViolation(name, detail)


def _first_line(error: BaseException | None) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else ""
