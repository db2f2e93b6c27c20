"""Sealed entries read out by seal sequence, and an export checked without the database.

The seal chain (``ledger.seal``) follows commit order across every ledger, so an export is a
range of seal *sequences* ``from_seq .. to_seq`` (both included); unsealed entries are never
exported. ``sealed_entries`` reads the range in bounded batches (``BATCH`` entries at a time), so
an export of any size is streamed and never held whole in memory.

The JSON Lines format (``ledger-export/1``), one JSON object per line, UTF-8, ``\\n`` endings::

    {"format":"ledger-export/1","from_seq":F,"to_seq":T}                       the header
    {"sequence":S,"previous_hash":"<hex>","hash":"<hex>","entry":[...]}       one per entry
    {"end":true,"entries":N,"last_hash":"<hex>","totals":{"<ledger_id>":[debits,credits]}}

``entry`` is exactly the JSON array whose UTF-8 bytes are hashed (``ledger.seal``'s
``canonical_bytes``)::

    ["ledger-entry/1", id, ledger_id, phase, kind, description, metadata, effective_at_us,
     recorded_at_us, namespace, idempotency_key, timeout_at_us, pending_id, reverses_id,
     [[posting_id, account_id, side, amount], ...]]

so a checker re-serialises it with no spaces (separators ``,`` and ``:``), non-ASCII characters
as themselves, and checks ``hash == SHA-256(previous_hash || those bytes)``, that each line's
``previous_hash`` is the line before's ``hash``, that sequences go up by one, that each entry's
debits equal its credits, and that the end line's count and per-ledger totals match.
``verify_lines`` does exactly that; it knows nothing of the database.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from ledger.database import READ_ONLY, DriverCursor, is_sqlite
from ledger.seal import _ENTRY_FIELDS, CANONICAL_TAG, GENESIS_HASH

EXPORT_FORMAT = "ledger-export/1"
#: Entries read per query while streaming.
BATCH = 500

DEBIT, CREDIT = 1, 2

#: ``_ENTRY_FIELDS`` of the entry ``e`` in a join.
_JOINED_ENTRY_FIELDS = ", ".join(f"e.{name.strip()}" for name in _ENTRY_FIELDS.split(","))


class ExportError(ValueError):
    """An export that cannot be made; ``code`` is stable (the API's problem code)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class SealedEntry:
    """One sealed entry: its place in the chain and the fields that are hashed."""

    sequence: int
    previous_hash: bytes
    hash: bytes
    #: The canonical array (``ledger-entry/1`` first, postings last).
    document: list[Any]

    @property
    def entry_id(self) -> int:
        return int(self.document[1])

    @property
    def ledger_id(self) -> int:
        return int(self.document[2])

    @property
    def phase(self) -> int:
        return int(self.document[3])

    @property
    def postings(self) -> list[list[Any]]:
        return list(self.document[14])


def reading(engine: sa.Engine) -> sa.Connection:
    """A read-only connection (SQLite: a deferred transaction, no write lock) for an export."""
    return engine.connect().execution_options(**{READ_ONLY: True})


def canonical_document_bytes(document: list[Any]) -> bytes:
    """The hashed bytes of a canonical array (the same rule as ``ledger.seal.canonical_bytes``)."""
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def sealed_head(connection: sa.Connection) -> int:
    """The last sealed sequence (0 when nothing is sealed)."""
    value = connection.exec_driver_sql(
        "SELECT sequence FROM ledger_seal_head WHERE id = 1"
    ).scalar()
    return int(value or 0)


def check_range(connection: sa.Connection, from_seq: int, to_seq: int) -> None:
    """Refuse an empty, reversed or not (yet) sealed range with an ``ExportError``."""
    if from_seq < 1:
        raise ExportError("export_range_invalid", f"from_seq must be 1 or more, not {from_seq}")
    if to_seq < from_seq:
        raise ExportError("export_range_reversed", f"the range {from_seq}..{to_seq} is reversed")
    head = sealed_head(connection)
    if to_seq > head:
        unsealed = int(
            connection.exec_driver_sql("SELECT count(*) FROM ledger_unsealed").scalar() or 0
        )
        raise ExportError(
            "export_range_unsealed",
            f"sequences {max(from_seq, head + 1)}..{to_seq} are not sealed (the last sealed "
            f"sequence is {head}; {unsealed} committed entries await the sealer)",
        )


def range_for_times(connection: sa.Connection, from_us: int, to_us: int) -> tuple[int, int]:
    """The seal range covering every entry recorded in ``from_us <= recorded_at_us < to_us``.

    The chain follows commit order, not time, so the range is widened to the smallest and the
    largest sequence of those entries (it may then hold entries recorded outside the times).
    Refused when no entry was recorded then, or when some of them are not sealed yet (named).
    """
    if to_us <= from_us:
        raise ExportError("export_range_reversed", "the time range is empty or reversed")
    row = connection.execute(
        sa.text(
            "SELECT min(s.sequence), max(s.sequence) FROM ledger_seal s "
            "JOIN ledger_entry e ON e.id = s.entry_id "
            "WHERE e.recorded_at_us >= :a AND e.recorded_at_us < :b"
        ),
        {"a": from_us, "b": to_us},
    ).first()
    waiting = [
        int(r[0])
        for r in connection.execute(
            sa.text(
                "SELECT u.entry_id FROM ledger_unsealed u JOIN ledger_entry e ON e.id = u.entry_id "
                "WHERE e.recorded_at_us >= :a AND e.recorded_at_us < :b ORDER BY u.entry_id "
                "LIMIT 10"
            ),
            {"a": from_us, "b": to_us},
        )
    ]
    if waiting:
        raise ExportError(
            "export_range_unsealed",
            "entries recorded in the range are not sealed yet: "
            + ", ".join(str(entry_id) for entry_id in waiting),
        )
    if row is None or row[0] is None:
        raise ExportError("export_range_empty", "no sealed entry was recorded in the time range")
    return int(row[0]), int(row[1])


def range_for_entries(connection: sa.Connection, from_id: int, to_id: int) -> tuple[int, int]:
    """The seal range covering the entries with ids ``from_id .. to_id`` (ids are given in
    write order, seals in commit order, so the range may hold a few other entries). Refused
    when none of them exists, or when some are not sealed yet (named)."""
    if from_id < 1 or to_id < from_id:
        raise ExportError("export_range_reversed", f"the id range {from_id}..{to_id} is empty")
    waiting = [
        int(r[0])
        for r in connection.execute(
            sa.text(
                "SELECT entry_id FROM ledger_unsealed WHERE entry_id BETWEEN :a AND :b "
                "ORDER BY entry_id LIMIT 10"
            ),
            {"a": from_id, "b": to_id},
        )
    ]
    if waiting:
        raise ExportError(
            "export_range_unsealed",
            "entries in the range are not sealed yet: " + ", ".join(map(str, waiting)),
        )
    row = connection.execute(
        sa.text(
            "SELECT min(sequence), max(sequence) FROM ledger_seal WHERE entry_id BETWEEN :a AND :b"
        ),
        {"a": from_id, "b": to_id},
    ).first()
    if row is None or row[0] is None:
        raise ExportError("export_range_empty", f"no sealed entry has an id in {from_id}..{to_id}")
    return int(row[0]), int(row[1])


def sealed_entries(
    connection: sa.Connection, from_seq: int, to_seq: int, *, batch: int = BATCH
) -> Iterator[SealedEntry]:
    """The sealed entries ``from_seq .. to_seq`` in sequence order, read ``batch`` at a time.

    Two reads a batch, each joined to the batch's range of seals (the same two statements each
    time, so PostgreSQL prepares them): the seals with their entries, and the entries'
    postings. They go through the driver's own cursor (``DriverCursor``: no result rows made by
    SQLAlchemy) inside the connection's transaction (begun by ``check_range``).
    """
    check_range(connection, from_seq, to_seq)
    mark = "?" if is_sqlite(connection) else "%s"
    seals = f"WHERE s.sequence BETWEEN {mark} AND {mark}"
    entries_sql = (
        f"SELECT s.sequence, s.previous_hash, s.hash, {_JOINED_ENTRY_FIELDS} "
        f"FROM ledger_seal s JOIN ledger_entry e ON e.id = s.entry_id {seals} ORDER BY s.sequence"
    )
    postings_sql = (
        "SELECT p.entry_id, p.id, p.account_id, p.side, p.amount FROM ledger_seal s "
        f"JOIN ledger_posting p ON p.entry_id = s.entry_id {seals} ORDER BY p.id"
    )
    cursor = DriverCursor(connection)
    try:
        start = from_seq
        while start <= to_seq:
            end = min(to_seq, start + batch - 1)
            rows = cursor.execute(entries_sql, (start, end)).fetchall()
            if len(rows) != end - start + 1:
                raise ExportError(
                    "export_chain_gap",
                    f"the seal chain lacks sequences between {start} and {end} (run points verify)",
                )
            postings: dict[int, list[list[int]]] = {row[3]: [] for row in rows}
            for entry_id, posting_id, account_id, side, amount in cursor.execute(
                postings_sql, (start, end)
            ).fetchall():
                postings[entry_id].append([posting_id, account_id, side, amount])
            for row in rows:
                # (sequence, previous_hash, hash, document), positionally: it is quicker.
                yield SealedEntry(
                    row[0],
                    bytes(row[1]),
                    bytes(row[2]),
                    [CANONICAL_TAG, *row[3:], postings[row[3]]],
                )
            start = end + 1
    finally:
        cursor.close()


@dataclass
class Totals:
    """Running totals of an export: entries, last hash, and debits/credits per ledger."""

    entries: int = 0
    last_hash: bytes = GENESIS_HASH
    by_ledger: dict[int, list[int]] = field(default_factory=dict)

    def add(self, item: SealedEntry) -> None:
        self.entries += 1
        self.last_hash = item.hash
        document = item.document
        sums = self.by_ledger.setdefault(int(document[2]), [0, 0])
        for _, _, side, amount in document[14]:
            sums[0 if side == DEBIT else 1] += int(amount)

    def as_json(self) -> dict[str, Any]:
        return {
            "end": True,
            "entries": self.entries,
            "last_hash": self.last_hash.hex(),
            "totals": {str(key): value for key, value in sorted(self.by_ledger.items())},
        }


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def jsonl_lines(entries: Iterable[SealedEntry], from_seq: int, to_seq: int) -> Iterator[str]:
    """The JSON Lines export of ``entries`` (each string is one line with its ``\\n``)."""
    yield _dumps({"format": EXPORT_FORMAT, "from_seq": from_seq, "to_seq": to_seq}) + "\n"
    totals = Totals()
    for item in entries:
        totals.add(item)
        line = {
            "sequence": item.sequence,
            "previous_hash": item.previous_hash.hex(),
            "hash": item.hash.hex(),
            "entry": item.document,
        }
        yield _dumps(line) + "\n"
    yield _dumps(totals.as_json()) + "\n"


# Verification without the database ---------------------------------------------------------


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    entries: int
    #: 1-based line number of the first bad line (None when ok).
    line: int | None = None
    message: str = ""


class _Bad(Exception):
    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


def check_entry(
    item: SealedEntry, expected_sequence: int | None, expected_previous: bytes | None
) -> None:
    """Check one entry against the chain so far; raise ``_Bad`` naming what is wrong."""
    if expected_sequence is not None and item.sequence != expected_sequence:
        raise _Bad(f"sequence {item.sequence} where {expected_sequence} was expected")
    if expected_previous is not None and item.previous_hash != expected_previous:
        raise _Bad(f"sequence {item.sequence}: previous_hash does not match the line before")
    if chain_digest(item.previous_hash, item.document) != item.hash:
        raise _Bad(f"sequence {item.sequence} (entry {item.document[1]}): hash does not match")
    debits = sum(int(p[3]) for p in item.postings if p[2] == DEBIT)
    credits = sum(int(p[3]) for p in item.postings if p[2] == CREDIT)
    if debits != credits:
        raise _Bad(f"sequence {item.sequence}: debits {debits} != credits {credits}")


def chain_digest(previous_hash: bytes, document: list[Any]) -> bytes:
    return hashlib.sha256(previous_hash + canonical_document_bytes(document)).digest()


def walk(
    items: Iterable[tuple[int, SealedEntry | dict[str, Any]]],
    header: dict[str, Any] | None,
) -> VerifyResult:
    """Re-walk the chain over ``(line number, entry or end record)`` pairs."""
    totals = Totals()
    expected_sequence: int | None = None if header is None else int(header["from_seq"])
    expected_previous: bytes | None = None
    last_line = 0
    try:
        for line_number, item in items:
            last_line = line_number
            if isinstance(item, dict):
                if totals.as_json() != {**item, "end": True}:
                    raise _Bad(
                        "the end line's count or totals do not match the entries "
                        f"({totals.entries} entries read)"
                    )
                if (
                    header is not None
                    and totals.entries
                    and (
                        expected_sequence is None or expected_sequence - 1 != int(header["to_seq"])
                    )
                ):
                    raise _Bad(f"the entries end before sequence {header['to_seq']}")
                return VerifyResult(ok=True, entries=totals.entries)
            check_entry(item, expected_sequence, expected_previous)
            totals.add(item)
            expected_sequence = item.sequence + 1
            expected_previous = item.hash
        raise _Bad("the export ends without its end line (truncated?)")
    except _Bad as bad:
        line = bad.line if bad.line is not None else last_line
        return VerifyResult(ok=False, entries=totals.entries, line=line, message=bad.message)
    except (KeyError, TypeError, ValueError, IndexError) as error:
        return VerifyResult(
            ok=False, entries=totals.entries, line=last_line, message=f"malformed line: {error}"
        )


def verify_lines(lines: Iterable[str]) -> VerifyResult:
    """Check a JSON Lines export (``ledger-export/1``) line by line, without the database."""
    iterator = iter(enumerate(lines, start=1))
    try:
        header = json.loads(next(iterator)[1])
        if not isinstance(header, dict) or header.get("format") != EXPORT_FORMAT:
            return VerifyResult(False, 0, 1, f"line 1 is not a {EXPORT_FORMAT} header")
    except (StopIteration, ValueError):
        return VerifyResult(False, 0, 1, "the file is empty or line 1 is not JSON")

    def parsed() -> Iterator[tuple[int, SealedEntry | dict[str, Any]]]:
        for number, text in iterator:
            try:
                value = json.loads(text)
            except ValueError as error:
                raise _Bad(f"not JSON: {error}", number) from error
            if not isinstance(value, dict):
                raise _Bad("not a JSON object", number)
            if value.get("end") is True:
                yield number, value
                return
            yield (
                number,
                SealedEntry(
                    sequence=int(value["sequence"]),
                    previous_hash=bytes.fromhex(value["previous_hash"]),
                    hash=bytes.fromhex(value["hash"]),
                    document=list(value["entry"]),
                ),
            )
        return

    result = walk(parsed(), header)
    if result.ok:
        trailing = next(iterator, None)
        if trailing is not None:
            return VerifyResult(False, result.entries, trailing[0], "a line after the end line")
    return result
