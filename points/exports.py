"""Ledger exports for finance and auditors: CSV (UTF-8 or CP932), JSON Lines, hledger journal.

The entries, their order and the hashed bytes come from ``ledger.export`` (a range of seal
sequences, streamed in batches); this module names the accounts by the chart of accounts
(``points.accounts``) and writes the formats. ``docs/exports.md`` describes every format.

Account names (hledger and the CSV's ``account`` column) are built from the account's code and
its opaque owner reference, never from personal data::

    100 city funding     assets:city-funding:<owner>
    200 program budget   expenses:program:<program id>:FY<year>
    300 resident bucket  liabilities:points:residents            (all residents, one account)
    400 merchant payable liabilities:merchant-payable:<merchant id>
    500 expired points   income:expired-points:<owner>
    600 settled          equity:settled:<owner>
    700 bulk clearing    liabilities:bulk-clearing:<upload id>:FY<year>

Resident buckets are aggregated: a per-resident account in a file handed to auditors would
make every resident's history traceable by its id, and finance needs only the city's total
liability to residents. The CSV keeps each posting's ``account_id``, so the chain stays checkable.
"""

from __future__ import annotations

import csv
import enum
import io
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ledger.export import (
    EXPORT_FORMAT,
    ExportError,
    SealedEntry,
    Totals,
    VerifyResult,
    check_range,
    jsonl_lines,
    range_for_entries,
    range_for_times,
    reading,
    sealed_entries,
    verify_lines,
    walk,
)
from ledger.model import from_us, to_us
from points import audit
from points.accounts import AccountCode
from points.auth import Principal
from points.calendar import TOKYO, start_of_day
from points.uow import unit_of_work

CSV_FORMAT = "ledger-export-csv/1"


class ExportFormat(enum.StrEnum):
    CSV = "csv"
    CSV_CP932 = "csv-cp932"
    JSONL = "jsonl"
    HLEDGER = "hledger"


MEDIA_TYPES = {
    ExportFormat.CSV: "text/csv; charset=utf-8",
    ExportFormat.CSV_CP932: "text/csv; charset=cp932",
    ExportFormat.JSONL: "application/jsonl; charset=utf-8",
    ExportFormat.HLEDGER: "text/plain; charset=utf-8",
}
SUFFIXES = {
    ExportFormat.CSV: "csv",
    ExportFormat.CSV_CP932: "csv",
    ExportFormat.JSONL: "jsonl",
    ExportFormat.HLEDGER: "journal",
}

CSV_COLUMNS = (
    "record",
    "sequence",
    "entry_id",
    "ledger_id",
    "ledger_code",
    "phase",
    "kind",
    "description",
    "metadata",
    "effective_at_us",
    "recorded_at_us",
    "effective_at",
    "namespace",
    "idempotency_key",
    "timeout_at_us",
    "pending_id",
    "reverses_id",
    "posting_id",
    "account_id",
    "account",
    "side",
    "amount",
    "previous_hash",
    "hash",
)

_BASE_NAMES = {
    AccountCode.CITY_FUNDING: "assets:city-funding",
    AccountCode.PROGRAM_BUDGET: "expenses:program",
    AccountCode.RESIDENT_BUCKET: "liabilities:points:residents",
    AccountCode.MERCHANT_PAYABLE: "liabilities:merchant-payable",
    AccountCode.EXPIRED_POINTS: "income:expired-points",
    AccountCode.SETTLED: "equity:settled",
    AccountCode.BULK_CLEARING: "liabilities:bulk-clearing",
}
_UNSAFE = re.compile(r"[^A-Za-z0-9._:\-]")


def account_name(code: int, owner_ref: str | None) -> str:
    """The hledger name of an account (see the module docstring)."""
    try:
        base = _BASE_NAMES[AccountCode(code)]
    except ValueError:
        base = f"other:code-{int(code)}"
    if code == AccountCode.RESIDENT_BUCKET or not owner_ref:
        return base
    return f"{base}:{_UNSAFE.sub('_', owner_ref)}"


def commodity(ledger_code: str) -> str:
    """The hledger commodity symbol of a ledger: its code in upper case, quoted unless letters."""
    symbol = ledger_code.upper()
    return symbol if symbol.isascii() and symbol.isalpha() else f'"{symbol}"'


@dataclass
class Names:
    """Account names and ledger codes of the accounts an export uses."""

    accounts: dict[int, str] = field(default_factory=dict)
    account_ledger: dict[int, int] = field(default_factory=dict)
    ledgers: dict[int, str] = field(default_factory=dict)


def load_names(connection: sa.Connection, from_seq: int, to_seq: int) -> Names:
    """Names of the ledgers and of the accounts posted to in ``from_seq .. to_seq``."""
    names = Names()
    for ledger_id, code in connection.exec_driver_sql("SELECT id, code FROM ledger"):
        names.ledgers[int(ledger_id)] = str(code)
    rows = connection.execute(
        sa.text(
            "SELECT a.id, a.ledger_id, a.code, a.owner_ref FROM ledger_account a WHERE a.id IN "
            "(SELECT p.account_id FROM ledger_posting p JOIN ledger_seal s "
            "ON s.entry_id = p.entry_id WHERE s.sequence BETWEEN :a AND :b)"
        ),
        {"a": from_seq, "b": to_seq},
    )
    for account_id, ledger_id, code, owner_ref in rows:
        names.accounts[int(account_id)] = account_name(int(code), owner_ref)
        names.account_ledger[int(account_id)] = int(ledger_id)
    return names


# CSV ----------------------------------------------------------------------------------------


def _cell(value: Any) -> str:
    return "" if value is None else str(value)


def csv_rows(
    entries: Iterable[SealedEntry], names: Names, from_seq: int, to_seq: int
) -> Iterator[list[str]]:
    """The CSV export's rows: the column names, a ``range`` row, one row per posting (an entry
    without postings, a voided hold, has one ``entry`` row), and an ``end`` row."""
    yield list(CSV_COLUMNS)
    blank = [""] * (len(CSV_COLUMNS) - 3)
    yield ["range", str(from_seq), str(to_seq), *blank]
    totals = Totals()
    for item in entries:
        totals.add(item)
        fields = item.document[1:14]
        effective = from_us(int(fields[6])).astimezone(TOKYO).isoformat()
        head = [
            str(item.sequence),
            str(fields[0]),
            str(fields[1]),
            names.ledgers.get(int(fields[1]), ""),
            str(fields[2]),
            fields[3],
            fields[4],
            fields[5],
            str(fields[6]),
            str(fields[7]),
            effective,
            _cell(fields[8]),
            _cell(fields[9]),
            _cell(fields[10]),
            _cell(fields[11]),
            _cell(fields[12]),
        ]
        head = [str(value) for value in head]
        tail = [item.previous_hash.hex(), item.hash.hex()]
        if not item.postings:
            yield ["entry", *head, "", "", "", "", "", *tail]
        for posting_id, account_id, side, amount in item.postings:
            yield [
                "posting",
                *head,
                str(posting_id),
                str(account_id),
                names.accounts.get(int(account_id), ""),
                "debit" if side == 1 else "credit",
                str(amount),
                *tail,
            ]
    end = totals.as_json()
    row = ["end", str(to_seq), str(end["entries"]), *blank]
    row[CSV_COLUMNS.index("metadata")] = json.dumps(end["totals"], separators=(",", ":"))
    row[CSV_COLUMNS.index("hash")] = end["last_hash"]
    yield row


def _csv_line(row: list[str]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow(row)
    return buffer.getvalue()


@dataclass
class Unencodable:
    """Characters CP932 cannot hold, replaced by ``?``: (CSV line, character) pairs."""

    found: list[tuple[int, str]] = field(default_factory=list)

    def summary(self) -> str:
        return ", ".join(f"line {line}: U+{ord(char):04X} {char}" for line, char in self.found)


def encode_csv(
    rows: Iterable[list[str]], *, cp932: bool, unencodable: Unencodable | None = None
) -> Iterator[bytes]:
    """The rows as CSV bytes: UTF-8 with a BOM, or CP932 with ``?`` for what it cannot hold
    (each such character is recorded in ``unencodable`` with its line)."""
    if not cp932:
        yield b"\xef\xbb\xbf"
    line_number = 1
    for row in rows:
        text = _csv_line(row)
        if cp932:
            try:
                data = text.encode("cp932")
            except UnicodeEncodeError:
                parts = []
                offset = 0
                for char in text:
                    try:
                        parts.append(char.encode("cp932"))
                    except UnicodeEncodeError:
                        parts.append(b"?")
                        if unencodable is not None:
                            unencodable.found.append((line_number + offset, char))
                    offset += char == "\n"
                data = b"".join(parts)
        else:
            data = text.encode("utf-8")
        line_number += text.count("\n")
        yield data


_NULLABLE = {"namespace", "idempotency_key", "timeout_at_us", "pending_id", "reverses_id"}
_INTS = {"ledger_id", "phase", "effective_at_us", "recorded_at_us"}
_NULLABLE_INTS = {"timeout_at_us", "pending_id", "reverses_id"}


def _document_from_rows(rows: list[dict[str, str]]) -> SealedEntry:
    first = rows[0]
    fields: list[Any] = [int(first["entry_id"])]
    for name in CSV_COLUMNS[5:17]:
        if name in {"effective_at", "ledger_code"}:
            continue
        value: Any = first[name]
        if name in _NULLABLE and value == "":
            value = None
        elif name in _INTS or (name in _NULLABLE_INTS and value is not None):
            value = int(value)
        fields.append(value)
    fields.insert(1, int(first["ledger_id"]))
    postings = [
        [
            int(row["posting_id"]),
            int(row["account_id"]),
            {"debit": 1, "credit": 2}[row["side"]],
            int(row["amount"]),
        ]
        for row in rows
        if row["record"] == "posting"
    ]
    return SealedEntry(
        sequence=int(first["sequence"]),
        previous_hash=bytes.fromhex(first["previous_hash"]),
        hash=bytes.fromhex(first["hash"]),
        document=["ledger-entry/1", *fields, postings],
    )


def verify_csv(text_lines: Iterable[str]) -> VerifyResult:
    """Check a UTF-8 CSV export (its text, BOM removed) the way ``verify_lines`` checks JSON
    Lines: the chain, each entry's balance, and the end row's count and totals."""
    reader = csv.reader(text_lines)
    try:
        columns = next(reader)
        if tuple(columns) != CSV_COLUMNS:
            return VerifyResult(False, 0, 1, "line 1 is not the export's column names")
        range_row = dict(zip(CSV_COLUMNS, next(reader), strict=True))
        if range_row["record"] != "range":
            return VerifyResult(False, 0, 2, "line 2 is not the range row")
        header = {"from_seq": int(range_row["sequence"]), "to_seq": int(range_row["entry_id"])}
    except (StopIteration, ValueError):
        return VerifyResult(False, 0, 1, "not a ledger export CSV")

    def items() -> Iterator[tuple[int, SealedEntry | dict[str, Any]]]:
        group: list[dict[str, str]] = []
        group_line = 0
        for row in reader:
            line = reader.line_num
            values = dict(zip(CSV_COLUMNS, row, strict=True))
            if group and (values["record"] == "end" or values["sequence"] != group[0]["sequence"]):
                yield group_line, _document_from_rows(group)
                group = []
            if values["record"] == "end":
                yield (
                    line,
                    {
                        "end": True,
                        "entries": int(values["entry_id"]),
                        "last_hash": values["hash"],
                        "totals": json.loads(values["metadata"]),
                    },
                )
                return
            if not group:
                group_line = line
            group.append(values)
        if group:
            yield group_line, _document_from_rows(group)

    return walk(items(), header)


def verify_file(path: str) -> VerifyResult:
    """Check an exported file: JSON Lines or UTF-8 CSV, told apart by their first bytes."""
    with open(path, "rb") as handle:
        start = handle.read(3)
    if start == b"\xef\xbb\xbf":
        with open(path, encoding="utf-8-sig", newline="") as text:
            return verify_csv(text)
    if not start.startswith(b"{"):
        return VerifyResult(
            False, 0, 1, "neither JSON Lines nor a UTF-8 CSV export (check the JSONL twin)"
        )
    try:
        with open(path, encoding="utf-8", newline="") as text:
            return verify_lines(line.rstrip("\n") for line in text)
    except UnicodeDecodeError as error:
        return VerifyResult(False, 0, None, f"not UTF-8: {error}")


# hledger ------------------------------------------------------------------------------------


def _hledger_text(value: str) -> str:
    return re.sub(r"[\r\n\t;]+", " ", value).strip()


def hledger_lines(
    entries: Iterable[SealedEntry], names: Names, from_seq: int, to_seq: int
) -> Iterator[str]:
    """An hledger journal: commodities and accounts declared, one transaction per posted entry
    (holds and voids as comments: they move no posted balance), balance assertions at the end."""
    yield f"; {EXPORT_FORMAT} sequences {from_seq}..{to_seq}, exported as an hledger journal\n"
    yield "; holds (phase 1) and voided holds (phase 3) are comments: no posted balance moves\n\n"
    used_ledgers = sorted(set(names.account_ledger.values()))
    for ledger_id in used_ledgers:
        yield f"commodity 1000. {commodity(names.ledgers[ledger_id])}\n"
    for name in sorted(set(names.accounts.values())):
        yield f"account {name}\n"
    yield "\n"
    balances: dict[tuple[str, str], int] = {}
    last_date = None
    for item in entries:
        fields = item.document
        date = from_us(int(fields[7])).astimezone(TOKYO).date()
        last_date = date if last_date is None or date > last_date else last_date
        symbol = commodity(names.ledgers[item.ledger_id])
        title = _hledger_text(f"{fields[4]} | {fields[5]}")
        note = f"  ; sequence:{item.sequence}, entry:{fields[1]}, hash:{item.hash.hex()}"
        posted = item.phase in (0, 2)
        prefix = "" if posted else "; "
        yield f"{prefix}{date.isoformat()} * {title}{note}\n"
        if not posted:
            yield f";     (phase {item.phase}, not posted)\n"
        for _, account_id, side, amount in item.postings:
            name = names.accounts[int(account_id)]
            signed = int(amount) if side == 1 else -int(amount)
            if posted:
                key = (name, symbol)
                balances[key] = balances.get(key, 0) + signed
            yield f"{prefix}    {name}  {signed} {symbol}\n"
        yield "\n"
    if last_date is not None and balances:
        yield f"{last_date.isoformat()} * balance assertions at sequence {to_seq}\n"
        for (name, symbol), balance in sorted(balances.items()):
            yield f"    {name}  0 {symbol} = {balance} {symbol}\n"


# Running an export -------------------------------------------------------------------------


@dataclass(frozen=True)
class ExportRequest:
    format: ExportFormat
    from_seq: int
    to_seq: int


def record_export(
    engine: Engine, request: ExportRequest, *, actor: Principal, at: datetime, via: str
) -> None:
    """Check the range, then write the audit record (who, what range, which format)."""

    def work(session: Any) -> None:
        check_range(session.connection(), request.from_seq, request.to_seq)
        audit.record(
            session,
            actor=actor,
            action="ledger.export",
            object_type="ledger",
            object_id=f"seq:{request.from_seq}-{request.to_seq}",
            at=at,
            details={
                "format": request.format.value,
                "from_seq": request.from_seq,
                "to_seq": request.to_seq,
                "via": via,
            },
        )

    unit_of_work(engine, work)


def stream_export(
    engine: Engine, request: ExportRequest, unencodable: Unencodable | None = None
) -> Iterator[bytes]:
    """The export's bytes, read in batches over one connection (``record_export`` first)."""
    with reading(engine) as connection:
        names = load_names(connection, request.from_seq, request.to_seq)
        entries = sealed_entries(connection, request.from_seq, request.to_seq)
        if request.format is ExportFormat.JSONL:
            for line in jsonl_lines(entries, request.from_seq, request.to_seq):
                yield line.encode("utf-8")
        elif request.format is ExportFormat.HLEDGER:
            for line in hledger_lines(entries, names, request.from_seq, request.to_seq):
                yield line.encode("utf-8")
        else:
            rows = csv_rows(entries, names, request.from_seq, request.to_seq)
            yield from encode_csv(
                rows, cp932=request.format is ExportFormat.CSV_CP932, unencodable=unencodable
            )


def parse_format(value: str) -> ExportFormat:
    try:
        return ExportFormat(value)
    except ValueError:
        offered = ", ".join(item.value for item in ExportFormat)
        raise ExportError(
            "export_format_unknown", f"the format {value!r} is not offered ({offered})"
        ) from None


def resolve_range(
    engine: Engine,
    *,
    seqs: tuple[int | None, int | None] = (None, None),
    days: tuple[date | None, date | None] = (None, None),
    ids: tuple[int | None, int | None] = (None, None),
) -> tuple[int, int]:
    """The seal range of exactly one given range: seal sequences as they are; days (Tokyo, both
    included) or entry ids widened to the seal range that covers their entries (refused when
    some of them are not sealed yet). The CLI and the API both ask here."""
    given = [pair for pair in (seqs, days, ids) if pair != (None, None)]
    if len(given) != 1 or None in given[0]:
        raise ExportError(
            "export_range_invalid",
            "give one range: from_seq and to_seq, from and to (days), or from_id and to_id",
        )
    if seqs[0] is not None and seqs[1] is not None:
        return seqs[0], seqs[1]
    with reading(engine) as connection:
        if days[0] is not None and days[1] is not None:
            start = to_us(start_of_day(days[0]))
            end = to_us(start_of_day(days[1] + timedelta(days=1)))
            return range_for_times(connection, start, end)
        assert ids[0] is not None and ids[1] is not None
        return range_for_entries(connection, ids[0], ids[1])
