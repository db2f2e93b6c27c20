"""The limit: the rows a transfer writes, written by plain SQL with no ledger logic.

Into a separately migrated database of the same schema (the same tables, constraints and
triggers), through the same driver: raw DBAPI connections of a ``ledger.create_engine`` engine
(sqlite3 with the engine's pragmas: WAL, ``synchronous=FULL``; psycopg 3 at READ COMMITTED). Each
thread keeps its one connection. One transfer per transaction, the straightforward statements::

    BEGIN                    -- BEGIN IMMEDIATE on SQLite; psycopg sends BEGIN itself
    INSERT INTO ledger_entry (...) VALUES (...) RETURNING id
    INSERT INTO ledger_posting (...) VALUES (<debit row>), (<credit row>)
    UPDATE ledger_account SET debits_posted = debits_posted + x WHERE id = <payer>
    UPDATE ledger_account SET credits_posted = credits_posted + x WHERE id = <payee>
    INSERT INTO ledger_unsealed (entry_id) VALUES (<id>)
    COMMIT

(the two updates in account-id order). A batch of transfers in one transaction, set-based: on
PostgreSQL the ids from ``nextval`` over ``generate_series``, then ``INSERT ... SELECT FROM
unnest(...)`` for entries, postings and the queue, and one ``UPDATE ... FROM unnest(...)`` for the
totals (summed per account); on SQLite ``BEGIN IMMEDIATE``, ids after ``max(id)``, and
``executemany`` for each of the four. Rows hold what the ledger writes (kind ``transfer``, empty
description, metadata ``{}``, the time in microseconds, and no ``content_digest``: the ledger
stores one only for entries with an idempotency key, and the benchmark's have none). Per-account
sums of a batch are made before the clock starts.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Engine

from bench.timing import Operation, Worker
from bench.workload import Transfer

#: Transfers without an idempotency key carry no request digest.
DIGEST = None

_INSERT_ENTRY = (
    "INSERT INTO ledger_entry (ledger_id, phase, kind, description, metadata, effective_at_us, "
    "recorded_at_us, content_digest) VALUES (%s, 0, 'transfer', '', '{}', %s, %s, %s) RETURNING id"
)
_INSERT_POSTINGS = (
    "INSERT INTO ledger_posting (entry_id, ledger_id, account_id, side, amount) "
    "VALUES (%s, %s, %s, 1, %s), (%s, %s, %s, 2, %s)"
)
_UPDATE_DEBITS = "UPDATE ledger_account SET debits_posted = debits_posted + %s WHERE id = %s"
_UPDATE_CREDITS = "UPDATE ledger_account SET credits_posted = credits_posted + %s WHERE id = %s"
_INSERT_QUEUE = "INSERT INTO ledger_unsealed (entry_id) VALUES (%s)"

_PG_NEXT_IDS = (
    "SELECT nextval(pg_get_serial_sequence('ledger_entry', 'id')) FROM generate_series(1, %s)"
)
_PG_ENTRIES = (
    "INSERT INTO ledger_entry (id, ledger_id, phase, kind, description, metadata, "
    "effective_at_us, recorded_at_us, content_digest) "
    "SELECT id, %(ledger)s, 0, 'transfer', '', '{}', %(now)s, %(now)s, %(digest)s "
    "FROM unnest(%(ids)s::bigint[]) AS id"
)
_PG_POSTINGS = (
    "INSERT INTO ledger_posting (entry_id, ledger_id, account_id, side, amount) "
    "SELECT e, %(ledger)s, a, s, x FROM unnest(%(entry)s::bigint[], %(account)s::bigint[], "
    "%(side)s::smallint[], %(amount)s::bigint[]) AS p(e, a, s, x)"
)
_PG_QUEUE = "INSERT INTO ledger_unsealed (entry_id) SELECT unnest(%(ids)s::bigint[])"
_PG_TOTALS = (
    "UPDATE ledger_account AS a SET debits_posted = a.debits_posted + d.dp, "
    "credits_posted = a.credits_posted + d.cp "
    "FROM unnest(%(id)s::bigint[], %(dp)s::bigint[], %(cp)s::bigint[]) AS d(id, dp, cp) "
    "WHERE a.id = d.id"
)

_SQLITE_ENTRY = (
    "INSERT INTO ledger_entry (id, ledger_id, phase, kind, description, metadata, "
    "effective_at_us, recorded_at_us, content_digest) "
    "VALUES (?, ?, 0, 'transfer', '', '{}', ?, ?, ?)"
)
_SQLITE_POSTING = (
    "INSERT INTO ledger_posting (entry_id, ledger_id, account_id, side, amount) "
    "VALUES (?, ?, ?, ?, ?)"
)
_SQLITE_TOTALS = (
    "UPDATE ledger_account SET debits_posted = debits_posted + ?, "
    "credits_posted = credits_posted + ? WHERE id = ?"
)


def _now_us() -> int:
    return time.time_ns() // 1000


@contextmanager
def _driver_connection(engine: Engine) -> Iterator[Any]:
    raw = engine.raw_connection()
    try:
        yield raw.driver_connection
    finally:
        raw.close()


def single_worker(engine: Engine, ledger_id: int, workloads: Sequence[list[Transfer]]) -> Worker:
    """Thread ``i`` writes the transfers of ``workloads[i]``, one per transaction."""
    sqlite = engine.dialect.name == "sqlite"

    def sql(statement: str) -> str:
        return statement.replace("%s", "?") if sqlite else statement

    insert_entry, insert_postings, insert_queue = map(
        sql, (_INSERT_ENTRY, _INSERT_POSTINGS, _INSERT_QUEUE)
    )
    update_debits, update_credits = sql(_UPDATE_DEBITS), sql(_UPDATE_CREDITS)

    @contextmanager
    def worker(index: int) -> Iterator[Operation]:
        transfers = itertools.cycle(workloads[index])
        with _driver_connection(engine) as connection:
            cursor = connection.cursor()

            def write(payer: int, payee: int, amount: int) -> None:
                now = _now_us()
                cursor.execute(insert_entry, (ledger_id, now, now, DIGEST))
                entry_id = cursor.fetchone()[0]
                cursor.execute(
                    insert_postings,
                    (entry_id, ledger_id, payer, amount, entry_id, ledger_id, payee, amount),
                )
                updates = [(payer, update_debits), (payee, update_credits)]
                for account_id, statement in sorted(updates):
                    cursor.execute(statement, (amount, account_id))
                cursor.execute(insert_queue, (entry_id,))

            def operation() -> int:
                if sqlite:
                    cursor.execute("BEGIN IMMEDIATE")
                try:
                    write(*next(transfers))
                except BaseException:
                    connection.rollback()
                    raise
                connection.commit()
                return 1

            yield operation
            cursor.close()

    return worker


@dataclass(frozen=True)
class _Batch:
    """A batch's rows, less the entry ids (known only in the transaction)."""

    size: int
    accounts: list[int]  # payer, payee, payer, payee, ...
    sides: list[int]
    amounts: list[int]
    total_ids: list[int]
    total_debits: list[int]
    total_credits: list[int]


def _prepare(batch: list[Transfer]) -> _Batch:
    debits: dict[int, int] = {}
    credits: dict[int, int] = {}
    for payer, payee, amount in batch:
        debits[payer] = debits.get(payer, 0) + amount
        credits[payee] = credits.get(payee, 0) + amount
    ids = sorted(debits.keys() | credits.keys())
    return _Batch(
        size=len(batch),
        accounts=[account for payer, payee, _ in batch for account in (payer, payee)],
        sides=[1, 2] * len(batch),
        amounts=[amount for _, _, amount in batch for _ in (1, 2)],
        total_ids=ids,
        total_debits=[debits.get(i, 0) for i in ids],
        total_credits=[credits.get(i, 0) for i in ids],
    )


def batch_worker(engine: Engine, ledger_id: int, batches: Sequence[list[Transfer]]) -> Worker:
    """Write the batches set-based, one per transaction, round and round; a unit is an entry."""
    write = _write_batch_sqlite if engine.dialect.name == "sqlite" else _write_batch_postgres

    @contextmanager
    def worker(_index: int) -> Iterator[Operation]:
        prepared = itertools.cycle([_prepare(batch) for batch in batches])
        with _driver_connection(engine) as connection:

            def operation() -> int:
                batch = next(prepared)
                try:
                    write(connection, ledger_id, batch)
                except BaseException:
                    connection.rollback()
                    raise
                connection.commit()
                return batch.size

            yield operation

    return worker


def _write_batch_postgres(connection: Any, ledger_id: int, batch: _Batch) -> None:
    with connection.cursor() as cursor:
        cursor.execute(_PG_NEXT_IDS, (batch.size,))
        ids = [row[0] for row in cursor.fetchall()]
        now = _now_us()
        cursor.execute(_PG_ENTRIES, {"ids": ids, "ledger": ledger_id, "now": now, "digest": DIGEST})
        cursor.execute(
            _PG_POSTINGS,
            {
                "entry": [entry_id for entry_id in ids for _ in (1, 2)],
                "ledger": ledger_id,
                "account": batch.accounts,
                "side": batch.sides,
                "amount": batch.amounts,
            },
        )
        cursor.execute(_PG_QUEUE, {"ids": ids})
        cursor.execute(
            _PG_TOTALS,
            {"id": batch.total_ids, "dp": batch.total_debits, "cp": batch.total_credits},
        )


def _write_batch_sqlite(connection: Any, ledger_id: int, batch: _Batch) -> None:
    cursor = connection.cursor()
    try:
        cursor.execute("BEGIN IMMEDIATE")
        top = cursor.execute("SELECT coalesce(max(id), 0) FROM ledger_entry").fetchone()[0]
        ids = range(top + 1, top + 1 + batch.size)
        now = _now_us()
        cursor.executemany(_SQLITE_ENTRY, [(i, ledger_id, now, now, DIGEST) for i in ids])
        entry_ids = [entry_id for entry_id in ids for _ in (1, 2)]
        cursor.executemany(
            _SQLITE_POSTING,
            [
                (entry_id, ledger_id, account, side, amount)
                for entry_id, account, side, amount in zip(
                    entry_ids, batch.accounts, batch.sides, batch.amounts, strict=True
                )
            ],
        )
        cursor.executemany("INSERT INTO ledger_unsealed (entry_id) VALUES (?)", [(i,) for i in ids])
        cursor.executemany(
            _SQLITE_TOTALS,
            list(zip(batch.total_debits, batch.total_credits, batch.total_ids, strict=True)),
        )
    finally:
        cursor.close()
