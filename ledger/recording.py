"""The ledger's SQL for writes, in each database's dialect, through the driver's own cursor.

``Recorder`` carries out what ``ledger.planning`` decided and reads what it needs to decide:

- the reads of the write path: the accounts (locked in id order with ``FOR UPDATE`` on
  PostgreSQL; on SQLite ``BEGIN IMMEDIATE`` holds the write lock already), the entries recorded
  under a batch's idempotency keys, the holds a batch resolves and their resolutions, the entries
  it reverses;
- the write: entries, postings, the seal queue and the totals, set-based. On PostgreSQL one
  statement (data-modifying CTEs over ``unnest`` arrays, parameters in binary); on SQLite a few
  ``executemany`` calls with ids chosen under the write lock. Totals change by increments
  (``SET x = x + :delta``), and the database's CHECK constraints hold the flags once more;
- id allocation, and entries read back from their rows.

Statements go through ``ledger.database.DriverCursor``: no SQLAlchemy result or parameter
processing on the hot path, and errors wrapped as SQLAlchemy wraps them so the retry loop treats
them alike. On PostgreSQL, statement texts that do not depend on the number of ids are prepared by
psycopg after a few uses.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Sequence
from typing import Any

from ledger.database import DriverCursor
from ledger.errors import InvalidField
from ledger.model import Account, AccountFlags, Entry, Phase, Posting, Side, from_us
from ledger.planning import AccountRow, Hold, IdempotencyKey, PlannedEntry, WritePlan

ACCOUNT_COLUMNS = (
    "id, ledger_id, code, normal_side, owner_ref, flags, closed, debits_posted, credits_posted, "
    "debits_pending, credits_pending, created_at_us"
)
ENTRY_COLUMNS = (
    "id, ledger_id, phase, kind, description, metadata, effective_at_us, recorded_at_us, "
    "namespace, idempotency_key, timeout_at_us, pending_id, reverses_id, content_digest"
)

# Parameters are sent in binary (%(name)b): encoding a thousand-element array as text costs
# more than the statement itself.
_PG_WRITE = """
WITH ids AS MATERIALIZED (
    SELECT nextval('ledger_entry_id_seq') AS id, n FROM generate_series(1, %(count)s) AS n
), new_entry AS (
    INSERT INTO ledger_entry (id, ledger_id, phase, kind, description, metadata, effective_at_us,
        recorded_at_us, namespace, idempotency_key, content_digest, timeout_at_us, pending_id,
        reverses_id)
    SELECT ids.id, v.ledger_id, v.phase, v.kind, v.description, v.metadata, v.effective_at_us,
        v.recorded_at_us, v.namespace, v.idempotency_key, v.content_digest, v.timeout_at_us,
        v.pending_id, v.reverses_id
    FROM unnest(%(e_ledger)b::int[], %(e_phase)b::smallint[], %(e_kind)b::text[],
        %(e_description)b::text[], %(e_metadata)b::text[], %(e_effective)b::bigint[],
        %(e_recorded)b::bigint[], %(e_namespace)b::text[], %(e_key)b::text[],
        %(e_digest)b::bytea[], %(e_timeout)b::bigint[], %(e_pending)b::bigint[],
        %(e_reverses)b::bigint[])
        WITH ORDINALITY AS v(ledger_id, phase, kind, description, metadata, effective_at_us,
            recorded_at_us, namespace, idempotency_key, content_digest, timeout_at_us,
            pending_id, reverses_id, n)
    JOIN ids ON ids.n = v.n
), new_posting AS (
    INSERT INTO ledger_posting (entry_id, ledger_id, account_id, side, amount)
    SELECT ids.id, p.ledger_id, p.account_id, p.side, p.amount
    FROM unnest(%(p_entry)b::bigint[], %(p_ledger)b::int[], %(p_account)b::bigint[],
        %(p_side)b::smallint[], %(p_amount)b::bigint[])
        WITH ORDINALITY AS p(entry_n, ledger_id, account_id, side, amount, position)
    JOIN ids ON ids.n = p.entry_n
    ORDER BY p.position
), queued AS (
    INSERT INTO ledger_unsealed (entry_id) SELECT id FROM ids
), totals AS (
    UPDATE ledger_account AS a SET
        debits_posted = a.debits_posted + d.debits_posted,
        credits_posted = a.credits_posted + d.credits_posted,
        debits_pending = a.debits_pending + d.debits_pending,
        credits_pending = a.credits_pending + d.credits_pending
    FROM unnest(%(a_id)b::bigint[], %(a_dp)b::bigint[], %(a_cp)b::bigint[],
        %(a_dq)b::bigint[], %(a_cq)b::bigint[])
        AS d(id, debits_posted, credits_posted, debits_pending, credits_pending)
    WHERE a.id = d.id
)
SELECT n, id FROM ids
"""

_SQLITE_INSERT_ENTRY = (
    "INSERT INTO ledger_entry (id, ledger_id, phase, kind, description, metadata, "
    "effective_at_us, recorded_at_us, namespace, idempotency_key, content_digest, timeout_at_us, "
    "pending_id, reverses_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_SQLITE_INSERT_POSTING = (
    "INSERT INTO ledger_posting (entry_id, ledger_id, account_id, side, amount) "
    "VALUES (?, ?, ?, ?, ?)"
)
_SQLITE_UPDATE_ACCOUNT = (
    "UPDATE ledger_account SET debits_posted = debits_posted + ?, "
    "credits_posted = credits_posted + ?, debits_pending = debits_pending + ?, "
    "credits_pending = credits_pending + ? WHERE id = ?"
)


class Recorder:
    """The write path's statements on one transaction's driver cursor; see the module docstring."""

    __slots__ = ("cursor", "sqlite")

    def __init__(self, cursor: DriverCursor, *, sqlite: bool) -> None:
        self.cursor = cursor
        self.sqlite = sqlite

    def rows(self, statement: str, parameters: Any = None) -> list[Any]:
        """Run ``statement`` (named parameters ``:name``) and return every row."""
        self.cursor.execute(self.sql(statement), parameters or {})
        return self.cursor.fetchall()

    def execute(self, statement: str, parameters: Any = None) -> None:
        """Run ``statement`` (named parameters ``:name``), which returns no rows."""
        self.cursor.execute(self.sql(statement), parameters or {})

    def sql(self, statement: str) -> str:
        """Named parameters ``:name`` as each driver wants them."""
        if self.sqlite:
            return statement
        return _to_pyformat(statement)

    # Reads used by the write path ----------------------------------------------------------

    def fetch_accounts(self, account_ids: Iterable[int], *, lock: bool) -> dict[int, AccountRow]:
        ids = sorted(set(account_ids))
        if not ids:
            return {}
        for account_id in ids:
            if type(account_id) is not int:
                raise InvalidField("account ids are integers", account_id=repr(account_id))
        if self.sqlite:
            rows = self.rows(
                f"SELECT {ACCOUNT_COLUMNS} FROM ledger_account WHERE id IN ({int_list(ids)}) "
                "ORDER BY id"
            )
        else:
            # One statement text whatever the ids, so psycopg prepares it.
            rows = self.rows(
                f"SELECT {ACCOUNT_COLUMNS} FROM ledger_account WHERE id = ANY(:ids) "
                "ORDER BY id" + (" FOR UPDATE" if lock else ""),
                {"ids": ids},
            )
        return {row[0]: AccountRow(*row) for row in rows}

    def existing_keys(
        self, keys: Iterable[IdempotencyKey]
    ) -> dict[IdempotencyKey, tuple[int, bytes]]:
        """(namespace, key) -> (entry id, content digest) of the entries recorded under ``keys``."""
        key_list = sorted(keys)
        found: dict[IdempotencyKey, tuple[int, bytes]] = {}
        for start in range(0, len(key_list), 500):
            chunk = key_list[start : start + 500]
            if self.sqlite:
                values = ", ".join("(?, ?)" for _ in chunk)
                rows = self.rows(
                    f"WITH wanted(namespace, idempotency_key) AS (VALUES {values}) "
                    "SELECT e.namespace, e.idempotency_key, e.id, e.content_digest "
                    "FROM wanted w JOIN ledger_entry e ON e.namespace = w.namespace "
                    "AND e.idempotency_key = w.idempotency_key",
                    tuple(part for pair in chunk for part in pair),
                )
            else:
                rows = self.rows(
                    "SELECT e.namespace, e.idempotency_key, e.id, e.content_digest "
                    "FROM unnest(%(namespaces)s::text[], %(keys)s::text[]) AS w(namespace, key) "
                    "JOIN ledger_entry e ON e.namespace = w.namespace "
                    "AND e.idempotency_key = w.key",
                    {
                        "namespaces": [pair[0] for pair in chunk],
                        "keys": [pair[1] for pair in chunk],
                    },
                )
            for row in rows:
                found[(row[0], row[1])] = (row[2], bytes(row[3]) if row[3] is not None else b"")
        return found

    def load_holds(self, hold_ids: Iterable[int]) -> dict[int, Hold]:
        """The holds among ``hold_ids`` with their postings (not yet their resolutions)."""
        wanted = sorted(set(hold_ids))
        if not wanted:
            return {}
        ids = int_list(wanted)
        holds = {
            row[0]: Hold(row[0], row[1], Phase(row[2]), row[3], [])
            for row in self.rows(
                f"SELECT id, ledger_id, phase, timeout_at_us FROM ledger_entry WHERE id IN ({ids})"
            )
        }
        for row in self.rows(
            f"SELECT entry_id, account_id, side, amount FROM ledger_posting "
            f"WHERE entry_id IN ({ids}) ORDER BY id"
        ):
            holds[row[0]].postings.append(Posting(row[1], Side(row[2]), row[3]))
        return holds

    def load_resolutions(self, holds: dict[int, Hold]) -> None:
        """Set each hold's ``resolved_by``: read after the account locks, so that a concurrent
        resolution has committed by then."""
        if not holds:
            return
        for row in self.rows(
            f"SELECT pending_id, id FROM ledger_entry WHERE pending_id IN ({int_list(holds)})"
        ):
            holds[row[0]].resolved_by = row[1]

    def reversed_by(self, entry_ids: Iterable[int]) -> dict[int, int | None]:
        """For each of ``entry_ids`` that exists, the id of its reversal or ``None``."""
        wanted = sorted(set(entry_ids))
        if not wanted:
            return {}
        ids = int_list(wanted)
        found: dict[int, int | None] = {
            row[0]: None for row in self.rows(f"SELECT id FROM ledger_entry WHERE id IN ({ids})")
        }
        for row in self.rows(
            f"SELECT reverses_id, id FROM ledger_entry WHERE reverses_id IN ({ids})"
        ):
            found[row[0]] = row[1]
        return found

    # The write -------------------------------------------------------------------------------

    def insert(self, plan: WritePlan, now_us: int) -> dict[int, Entry]:
        """Write the plan's accepted entries and change the totals; the entries written, by
        their index in the batch."""
        accepted = plan.accepted
        if not accepted:
            return {}
        account_rows = [
            (d.debits_posted, d.credits_posted, d.debits_pending, d.credits_pending, account_id)
            for account_id, d in plan.account_deltas()
        ]
        entry_rows = [_entry_row(planned, now_us) for planned in accepted]
        if self.sqlite:
            ids = self.new_ids("ledger_entry", len(accepted))
            self.cursor.executemany(
                _SQLITE_INSERT_ENTRY,
                [(entry_id, *row) for entry_id, row in zip(ids, entry_rows, strict=True)],
            )
            self.cursor.executemany(
                _SQLITE_INSERT_POSTING,
                [
                    (
                        entry_id,
                        planned.ledger_id,
                        posting.account_id,
                        int(posting.side),
                        posting.amount,
                    )
                    for planned, entry_id in zip(accepted, ids, strict=True)
                    for posting in planned.valid.postings
                ],
            )
            self.cursor.executemany(
                "INSERT INTO ledger_unsealed (entry_id) VALUES (?)", [(i,) for i in ids]
            )
            self.cursor.executemany(_SQLITE_UPDATE_ACCOUNT, account_rows)
        else:
            ids = self._pg_write(accepted, entry_rows, account_rows)
        return {
            planned.index: planned.recorded(entry_id, now_us)
            for planned, entry_id in zip(accepted, ids, strict=True)
        }

    def _pg_write(
        self,
        accepted: list[PlannedEntry],
        entry_rows: list[tuple[Any, ...]],
        account_rows: Sequence[tuple[int, ...]],
    ) -> list[int]:
        columns: list[Sequence[Any]] = list(zip(*entry_rows, strict=True))
        posting_rows = [
            (number, planned.ledger_id, posting.account_id, int(posting.side), posting.amount)
            for number, planned in enumerate(accepted, start=1)
            for posting in planned.valid.postings
        ]
        posting_columns: list[Sequence[Any]] = list(zip(*posting_rows, strict=True)) or [[]] * 5
        account_columns: list[Sequence[Any]] = list(zip(*account_rows, strict=True)) or [[]] * 5
        parameters: dict[str, Any] = {
            name: list(column) for name, column in zip(_PG_ENTRY_NAMES, columns, strict=True)
        }
        for name, column in zip(
            ("p_entry", "p_ledger", "p_account", "p_side", "p_amount"),
            posting_columns,
            strict=True,
        ):
            parameters[name] = list(column)
        for name, column in zip(
            ("a_dp", "a_cp", "a_dq", "a_cq", "a_id"), account_columns, strict=True
        ):
            parameters[name] = list(column)
        parameters["count"] = len(accepted)
        self.cursor.execute(_PG_WRITE, parameters)
        by_number = dict(self.cursor.fetchall())
        return [by_number[number] for number in range(1, len(accepted) + 1)]

    def new_ids(self, table: str, count: int) -> list[int]:
        """``count`` ids for new rows of ``table`` (``ledger_entry`` or ``ledger_account``).

        SQLite: the write lock is held (BEGIN IMMEDIATE), so the ids after the largest are the
        ones SQLite itself would give. PostgreSQL: from the table's sequence."""
        if self.sqlite:
            top = self.cursor.execute(f"SELECT coalesce(max(id), 0) FROM {table}").fetchone()[0]
            return list(range(top + 1, top + 1 + count))
        self.cursor.execute(
            f"SELECT nextval('{table}_id_seq') FROM generate_series(1, %(count)s)",
            {"count": count},
        )
        return [int(row[0]) for row in self.cursor.fetchall()]

    # Entries read back -----------------------------------------------------------------------

    def entries_from_rows(self, rows: Sequence[Any]) -> list[Entry]:
        """Entries from rows of ``ENTRY_COLUMNS``, with their postings."""
        if not rows:
            return []
        postings: dict[int, list[Posting]] = {row[0]: [] for row in rows}
        for row in self.rows(
            "SELECT entry_id, account_id, side, amount FROM ledger_posting "
            f"WHERE entry_id IN ({int_list(sorted(postings))}) ORDER BY id"
        ):
            postings[row[0]].append(Posting(row[1], Side(row[2]), row[3]))
        return [
            Entry(
                id=row[0],
                ledger_id=row[1],
                phase=Phase(row[2]),
                kind=row[3],
                description=row[4],
                metadata=json.loads(row[5]),
                effective_at=from_us(row[6]),
                recorded_at=from_us(row[7]),
                namespace=row[8],
                idempotency_key=row[9],
                timeout_at=from_us(row[10]) if row[10] is not None else None,
                pending_id=row[11],
                reverses_id=row[12],
                postings=tuple(postings[row[0]]),
            )
            for row in rows
        ]


_PG_ENTRY_NAMES = (
    "e_ledger",
    "e_phase",
    "e_kind",
    "e_description",
    "e_metadata",
    "e_effective",
    "e_recorded",
    "e_namespace",
    "e_key",
    "e_digest",
    "e_timeout",
    "e_pending",
    "e_reverses",
)


def _entry_row(planned: PlannedEntry, now_us: int) -> tuple[Any, ...]:
    item = planned.valid
    return (
        planned.ledger_id,
        int(item.phase),
        item.kind,
        item.description,
        item.metadata_json,
        item.effective_at_us if item.effective_at_us is not None else now_us,
        now_us,
        item.namespace,
        item.idempotency_key,
        item.content_digest,
        item.timeout_at_us,
        item.pending_id,
        item.reverses_id,
    )


_NAMED_PARAMETER = re.compile(r"(?<![:\w]):([a-zA-Z_]\w*)")


@functools.lru_cache(maxsize=256)
def _to_pyformat(statement: str) -> str:
    return _NAMED_PARAMETER.sub(r"%(\1)s", statement)


def int_list(ids: Iterable[int]) -> str:
    """Integers inlined into SQL: safe because each is checked to be an ``int``."""
    parts = []
    for value in ids:
        if type(value) is not int:
            raise InvalidField("ids are integers", id=repr(value))
        parts.append(str(value))
    return ", ".join(parts)


def account_from_row(row: AccountRow) -> Account:
    """The ``Account`` a row of ``ledger_account`` (read as ``AccountRow``) stands for."""
    return Account(
        id=row.id,
        ledger_id=row.ledger_id,
        code=row.code,
        normal_side=Side(row.normal_side),
        owner_ref=row.owner_ref,
        flags=AccountFlags(row.flags),
        closed=bool(row.closed),
        debits_posted=row.debits_posted,
        credits_posted=row.credits_posted,
        debits_pending=row.debits_pending,
        credits_pending=row.credits_pending,
        created_at=from_us(row.created_at_us),
    )
