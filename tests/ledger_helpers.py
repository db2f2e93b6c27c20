"""Shared helpers for the ledger tests: a small chart of accounts, entries, and raw SQL.

Raw SQL goes through ``sqlalchemy.text`` so that one statement (with ``:name`` parameters) runs
on both SQLite and PostgreSQL. ``tamper`` runs statements with the append-only triggers out of
the way, the way an attacker with database access would, so that ``verify`` has something to find.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url

import ledger
from ledger import Account, AccountFlags, Entry, Ledger, NewEntry, Posting, Side

DEBITS_FLAG = AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS
CREDITS_FLAG = AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS
MAX = 2**63 - 1


@dataclass(frozen=True)
class Chart:
    """One ledger with the kinds of account a point system uses."""

    ledger_id: int
    #: Debit-normal, no flag: the city's funding, may grow without bound.
    source: Account
    #: Credit-normal, DEBITS_MUST_NOT_EXCEED_CREDITS: a resident's wallet, never below zero.
    wallet: Account
    #: Credit-normal, no flag: a merchant's payable.
    merchant: Account
    #: Debit-normal, CREDITS_MUST_NOT_EXCEED_DEBITS: may never be credited past its debits.
    capped: Account


def make_chart(ledger_: Ledger, code: str = "pt") -> Chart:
    info = ledger_.create_ledger(code, f"ledger {code}")
    return Chart(
        ledger_id=info.id,
        source=ledger_.create_account(ledger_id=info.id, code=100, normal_side=Side.DEBIT),
        wallet=ledger_.create_account(
            ledger_id=info.id, code=300, normal_side=Side.CREDIT, flags=DEBITS_FLAG
        ),
        merchant=ledger_.create_account(ledger_id=info.id, code=400, normal_side=Side.CREDIT),
        capped=ledger_.create_account(
            ledger_id=info.id, code=500, normal_side=Side.DEBIT, flags=CREDITS_FLAG
        ),
    )


def transfer(debit: int, credit: int, amount: int, **options: Any) -> NewEntry:
    """An entry moving ``amount`` from ``debit`` (debited) to ``credit`` (credited)."""
    return NewEntry(
        [Posting(debit, Side.DEBIT, amount), Posting(credit, Side.CREDIT, amount)], **options
    )


def fund(ledger_: Ledger, chart: Chart, amount: int, account_id: int | None = None) -> Entry:
    """Credit ``account_id`` (the wallet by default) with ``amount`` from the source."""
    target = chart.wallet.id if account_id is None else account_id
    return ledger_.post(transfer(chart.source.id, target, amount))


def totals(ledger_: Ledger, account_id: int) -> tuple[int, int, int, int]:
    """(debits_posted, credits_posted, debits_pending, credits_pending) of an account."""
    account = ledger_.get_account(account_id)
    return (
        account.debits_posted,
        account.credits_posted,
        account.debits_pending,
        account.credits_pending,
    )


def scalar(engine: Engine, sql: str, params: Mapping[str, Any] | None = None) -> Any:
    with engine.connect() as connection:
        return connection.execute(sa.text(sql), dict(params or {})).scalar()


def count(engine: Engine, table: str, where: str = "") -> int:
    return int(
        scalar(engine, f"SELECT count(*) FROM {table}" + (f" WHERE {where}" if where else ""))
    )


def row_counts(engine: Engine) -> dict[str, int]:
    """Rows of every table a write touches: to prove that nothing was written."""
    return {
        table: count(engine, table)
        for table in ("ledger_entry", "ledger_posting", "ledger_unsealed", "ledger_seal")
    }


def all_totals(engine: Engine) -> list[tuple[int, ...]]:
    with engine.connect() as connection:
        return [
            tuple(row)
            for row in connection.exec_driver_sql(
                "SELECT id, debits_posted, credits_posted, debits_pending, credits_pending "
                "FROM ledger_account ORDER BY id"
            )
        ]


def snapshot(engine: Engine) -> tuple[dict[str, int], list[tuple[int, ...]]]:
    return row_counts(engine), all_totals(engine)


def run_sql(engine: Engine, sql: str, params: Mapping[str, Any] | None = None) -> None:
    """Run one statement and commit (the database's own guards stay on)."""
    with engine.connect() as connection:
        connection.execute(sa.text(sql), dict(params or {}))
        connection.commit()


def tamper(engine: Engine, *statements: str) -> None:
    """Run ``statements`` and commit with the append-only triggers out of the way.

    PostgreSQL: ``SET LOCAL session_replication_role = replica`` (this transaction only; no
    trigger fires). SQLite: drop every trigger, run the statements, and create them again, so
    that ``verify`` sees an intact schema and reports only the tampering.
    """
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            triggers = connection.exec_driver_sql(
                "SELECT name, sql FROM sqlite_master WHERE type = 'trigger'"
            ).fetchall()
            for name, _ in triggers:
                connection.exec_driver_sql(f"DROP TRIGGER {name}")
            for statement in statements:
                connection.exec_driver_sql(statement)
            for _, sql in triggers:
                connection.exec_driver_sql(sql)
        else:
            connection.exec_driver_sql("SET LOCAL session_replication_role = replica")
            for statement in statements:
                connection.exec_driver_sql(statement)
        connection.commit()


def seal_and_verify(ledger_: Ledger) -> None:
    """Seal everything, then verify; fail naming every problem."""
    ledger_.seal()
    report = ledger_.verify(unsealed_grace_seconds=0)
    assert report.ok, report.problems
    assert report.unsealed == 0


# Empty databases (for the migration and CLI tests) ------------------------------------------


def empty_database(backend: str, tmp_path: Path) -> Iterator[str]:
    """A fresh database with no tables at all (not from the migrated template); dropped after."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    base = os.environ["POINTS_TEST_POSTGRES_URL"]
    url = make_url(ledger.database.normalize_url(base))
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    name = f"points_empty_{uuid.uuid4().hex[:12]}"
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()
