"""The seal chain: a tamper-evident hash chain over committed entries, built after commit.

Writers do not touch a chain head (a single head updated in every transaction would serialise
all writers). Each write adds its entry ids to ``ledger_unsealed``; a *sealer* later takes them in
id order and appends one row per entry to ``ledger_seal``::

    sequence       1, 2, 3, ... with no gaps, in the order the sealer sealed them
    entry_id       unique: an entry is sealed once
    previous_hash  the hash of the row before (32 zero bytes for sequence 1)
    hash           SHA-256(previous_hash || canonical_bytes(entry))

``canonical_bytes(entry)`` is the UTF-8 encoding of this JSON array, written with no spaces
(separators ``,`` and ``:``), non-ASCII characters as themselves, integers in decimal, ``null``
for an absent value::

    ["ledger-entry/1", id, ledger_id, phase, kind, description, metadata, effective_at_us,
     recorded_at_us, namespace, idempotency_key, timeout_at_us, pending_id, reverses_id,
     [[posting_id, account_id, side, amount], ...]]

where ``metadata`` is the stored canonical-JSON *string* (sorted keys, no spaces), ``phase`` and
``side`` are the stored integers (phase: 0 posted, 1 pending, 2 post_pending, 3 void_pending;
side: 1 debit, 2 credit), instants are microseconds since the epoch, UTC, and postings are in
posting-id order. Anyone can re-walk the chain from an export with nothing but SHA-256 and JSON.

One sealer at a time: the sealer locks the single ``ledger_seal_head`` row (PostgreSQL:
``FOR UPDATE``, or ``FOR UPDATE SKIP LOCKED`` for a sealer that should step aside; SQLite: the
write lock of ``BEGIN IMMEDIATE``) and holds it while it appends.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from ledger.database import is_sqlite

GENESIS_HASH = bytes(32)
CANONICAL_TAG = "ledger-entry/1"
#: The sealer takes at most this many entries per transaction.
SEAL_BATCH_MAX = 5000

_ENTRY_FIELDS = (
    "id, ledger_id, phase, kind, description, metadata, effective_at_us, recorded_at_us, "
    "namespace, idempotency_key, timeout_at_us, pending_id, reverses_id"
)


def canonical_bytes(entry_row: Sequence[Any], postings: Sequence[Sequence[Any]]) -> bytes:
    """The bytes hashed for one entry, as the module docstring specifies.

    ``entry_row`` holds the fields in ``_ENTRY_FIELDS`` order; ``postings`` holds
    ``(posting_id, account_id, side, amount)`` in posting-id order.
    """
    document = [CANONICAL_TAG, *entry_row, [list(posting) for posting in postings]]
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def chain_hash(previous_hash: bytes, entry_bytes: bytes) -> bytes:
    return hashlib.sha256(previous_hash + entry_bytes).digest()


def load_canonical(connection: sa.Connection, entry_ids: Sequence[int]) -> dict[int, bytes]:
    """Canonical bytes of the given entries, read from the database."""
    if not entry_ids:
        return {}
    id_list = ", ".join(str(int(entry_id)) for entry_id in entry_ids)
    rows = connection.exec_driver_sql(
        f"SELECT {_ENTRY_FIELDS} FROM ledger_entry WHERE id IN ({id_list})"
    ).fetchall()
    postings: dict[int, list[tuple[int, int, int, int]]] = {row[0]: [] for row in rows}
    for posting in connection.exec_driver_sql(
        "SELECT entry_id, id, account_id, side, amount FROM ledger_posting "
        f"WHERE entry_id IN ({id_list}) ORDER BY id"
    ):
        postings[posting[0]].append((posting[1], posting[2], posting[3], posting[4]))
    return {row[0]: canonical_bytes(tuple(row), postings[row[0]]) for row in rows}


def seal_pending(
    connection: sa.Connection, *, limit: int = SEAL_BATCH_MAX, skip_if_busy: bool = False
) -> int:
    """Seal up to ``limit`` unsealed entries inside the caller's transaction; return how many.

    With ``skip_if_busy`` on PostgreSQL, return 0 at once when another sealer holds the head.
    """
    assert 1 <= limit <= SEAL_BATCH_MAX
    lock = ""
    if not is_sqlite(connection):
        lock = " FOR UPDATE SKIP LOCKED" if skip_if_busy else " FOR UPDATE"
    head = connection.exec_driver_sql(
        f"SELECT sequence, hash FROM ledger_seal_head WHERE id = 1{lock}"
    ).first()
    if head is None:
        return 0
    sequence, previous = int(head[0]), bytes(head[1])
    entry_ids = [
        row[0]
        for row in connection.exec_driver_sql(
            f"SELECT entry_id FROM ledger_unsealed ORDER BY entry_id LIMIT {int(limit)}"
        )
    ]
    if not entry_ids:
        return 0
    canonical = load_canonical(connection, entry_ids)
    seal_rows = []
    for entry_id in entry_ids:
        sequence += 1
        digest = chain_hash(previous, canonical[entry_id])
        seal_rows.append((sequence, entry_id, previous, digest))
        previous = digest
    id_list = ", ".join(str(entry_id) for entry_id in entry_ids)
    if is_sqlite(connection):
        cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.executemany(
                "INSERT INTO ledger_seal (sequence, entry_id, previous_hash, hash) "
                "VALUES (?, ?, ?, ?)",
                seal_rows,
            )
        finally:
            cursor.close()
        connection.exec_driver_sql(
            "UPDATE ledger_seal_head SET sequence = ?, hash = ? WHERE id = 1",
            (sequence, previous),
        )
    else:
        columns = list(zip(*seal_rows, strict=True))
        connection.exec_driver_sql(
            "INSERT INTO ledger_seal (sequence, entry_id, previous_hash, hash) "
            "SELECT * FROM unnest(%(s)s::bigint[], %(e)s::bigint[], %(p)s::bytea[], "
            "%(h)s::bytea[])",
            {
                "s": list(columns[0]),
                "e": list(columns[1]),
                "p": list(columns[2]),
                "h": list(columns[3]),
            },
        )
        connection.exec_driver_sql(
            "UPDATE ledger_seal_head SET sequence = %(s)s, hash = %(h)s WHERE id = 1",
            {"s": sequence, "h": previous},
        )
    connection.exec_driver_sql(f"DELETE FROM ledger_unsealed WHERE entry_id IN ({id_list})")
    return len(entry_ids)
