"""Reading an uploaded CSV file of awards: pure (no database), so it is tested on its own.

The file, as Excel in Japan saves it: UTF-8 with or without a byte order mark, or Shift_JIS
(CP932); blank lines are skipped. A header row names the columns: the resident, by
``resident_id`` or by ``address_number`` (宛名番号; the header may have both columns, and each
row then fills exactly one), ``record_id`` (required), ``occurred_on`` (YYYY-MM-DD or
YYYY/MM/DD; today when blank) and ``amount`` (optional; when given it must be the program's
amount), and the program module's detail columns (``checkup_type`` for health checkups,
``event_id`` for volunteering). Address numbers are looked up by the check, all at once.

``parse`` reports every problem it can see without the database (line, column, reason), at
most ``ROWS_MAX`` data rows; ``issuers.bulk.check`` checks the rows it returns against the
database.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from datetime import date
from typing import Any, NamedTuple

from issuers.awards import check_record_id
from issuers.errors import CsvInvalid, RowError
from issuers.modules import ProgramModule, module_for, parse_details
from issuers.programs import Program
from points.errors import PointsError
from points.registry import ADDRESS_NUMBER_PATTERN
from points.spreadsheet import csv_text

UNKNOWN_ENCODING = "the file is neither UTF-8 nor Shift_JIS (CP932); save it as CSV UTF-8"
#: The columns that name the resident: at least one in the header, exactly one filled a row.
RESIDENT_COLUMNS = ("resident_id", "address_number")
REQUIRED = ("record_id",)
OPTIONAL = ("occurred_on", "amount")
RESIDENT_ID = re.compile(r"^res_[A-Za-z0-9_-]{1,28}$")
ADDRESS_NUMBER = re.compile(ADDRESS_NUMBER_PATTERN)
#: 2026-05-01, or 2026/5/1 as Excel in Japan shows dates.
DATE = re.compile(r"([0-9]{4})[-/]([0-9]{1,2})[-/]([0-9]{1,2})")
ROWS_MAX = 200_000


@dataclass
class Row:
    line: int
    #: Blank when the row names the resident by ``address_number``, until the check finds them.
    resident_id: str
    record_id: str
    occurred_on: date | None
    details: dict[str, Any]
    #: The resident's address number, when the row gives it instead of the resident id.
    address_number: str | None = None
    # Filled in by the check, for the batches (which award a row as it was checked):
    amount: int = 0
    fiscal_year: int = 0
    details_json: str = ""
    once_keys: tuple[str, ...] = ()


def errors_csv(errors: list[RowError]) -> bytes:
    """The validation report as CSV (UTF-8 with a BOM, for Excel; the file's own values in the
    reasons stay text: ``points.spreadsheet``)."""
    rows = ((error.line, error.column, error.reason) for error in errors)
    return b"\xef\xbb\xbf" + csv_text(("line", "column", "reason"), rows).encode("utf-8")


def decode(data: bytes) -> str:
    """UTF-8 (with or without a BOM) or CP932; anything else is refused."""
    if not data.strip():
        raise CsvInvalid([RowError(1, "", "the file is empty")])
    if b"\x00" in data:  # UTF-16 ("Unicode text" in Excel) or binary: neither is CSV here
        raise CsvInvalid([RowError(1, "", UNKNOWN_ENCODING)])
    for encoding in ("utf-8-sig", "cp932"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise CsvInvalid([RowError(1, "", UNKNOWN_ENCODING)])


class Parsed(NamedTuple):
    """What ``parse`` read: the good rows, every problem, and how many data rows the file has
    (good or bad, blank lines not counted; up to where the reading stopped)."""

    rows: list[Row]
    errors: list[RowError]
    data_rows: int


def parse(text: str, program: Program) -> Parsed:
    """Rows and the problems found without the database."""
    module = module_for(program.module)
    detail_columns = list(module.Details.model_fields)
    reader = csv.reader(io.StringIO(text, newline=""))
    header: list[str] | None = None
    errors: list[RowError] = []
    rows: list[Row] = []
    seen: dict[str, int] = {}
    details_checked: dict[tuple[tuple[str, str], ...], RowError | None] = {}
    last_line = data_rows = 0
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as broken:
            # Reported where the broken row starts (a stray quote runs on to the end).
            errors.append(
                RowError(last_line + 1, "", f"the CSV is broken here ({broken}); a stray quote?")
            )
            break
        # A row is reported at the line it starts on; a quoted cell may run over several.
        line, last_line = last_line + 1, reader.line_num
        if not any(cell.strip() for cell in cells):
            continue
        if header is None:
            header = [cell.strip().lower() for cell in cells]
            errors += _check_header(header, detail_columns, line)
            if errors:
                return Parsed([], errors, 0)
            continue
        data_rows += 1
        if data_rows > ROWS_MAX:
            # Counted whether the rows are good or not; the file must be split, so its other
            # problems are left for the parts (and cannot push this one out of the report).
            return Parsed([], [RowError(line, "", f"a file holds at most {ROWS_MAX} rows")], 0)
        if len(cells) != len(header):
            runs_on = f" (the row runs on to line {last_line}: a stray quote?)"
            errors.append(
                RowError(
                    line,
                    "",
                    f"{len(cells)} fields where the header has {len(header)}"
                    + (runs_on if last_line > line else ""),
                )
            )
            continue
        values = {name: cell.strip() for name, cell in zip(header, cells, strict=True)}
        row, row_errors = _parse_row(line, values, program, module, detail_columns, details_checked)
        if row is not None and row.record_id in seen:
            row_errors.append(
                RowError(line, "record_id", f"the same record_id is on line {seen[row.record_id]}")
            )
        if row is not None and not row_errors:
            seen[row.record_id] = line
            rows.append(row)
        errors += row_errors
    if header is None:
        errors.append(RowError(1, "", "the file has no header row"))
    return Parsed(rows, errors, data_rows)


def _check_header(header: list[str], detail_columns: list[str], line: int) -> list[RowError]:
    errors = []
    allowed = set(RESIDENT_COLUMNS) | set(REQUIRED) | set(OPTIONAL) | set(detail_columns)
    expected = ", ".join([*RESIDENT_COLUMNS, *REQUIRED, *OPTIONAL, *detail_columns])
    if not set(RESIDENT_COLUMNS) & set(header):
        errors.append(
            RowError(
                line,
                "resident_id",
                f"missing column 'resident_id' or 'address_number'; columns: {expected}",
            )
        )
    for name in REQUIRED:
        if name not in header:
            errors.append(RowError(line, name, f"missing column {name!r}; columns: {expected}"))
    for name in header:
        if name not in allowed:
            errors.append(RowError(line, name, f"unknown column {name!r}; columns: {expected}"))
    for name in {name for name in header if header.count(name) > 1}:
        errors.append(RowError(line, name, f"column {name!r} appears twice"))
    return errors


def _parse_row(
    line: int,
    values: dict[str, str],
    program: Program,
    module: ProgramModule,
    detail_columns: list[str],
    details_checked: dict[tuple[tuple[str, str], ...], RowError | None],
) -> tuple[Row | None, list[RowError]]:
    errors: list[RowError] = []
    record_id = values["record_id"]
    resident_id, address_number = _resident_of(line, values, errors)
    try:
        check_record_id(record_id)
    except PointsError as bad:
        errors.append(RowError(line, "record_id", bad.message))
    occurred_on: date | None = None
    raw_date = values.get("occurred_on", "")
    if raw_date:
        parts = DATE.fullmatch(raw_date)
        try:
            if parts is None:
                raise ValueError(raw_date)
            occurred_on = date(int(parts[1]), int(parts[2]), int(parts[3]))
        except ValueError:
            errors.append(RowError(line, "occurred_on", f"not a date (YYYY-MM-DD): {raw_date!r}"))
    raw_amount = values.get("amount", "")
    if raw_amount:
        if not raw_amount.isascii() or not raw_amount.isdigit() or int(raw_amount) <= 0:
            errors.append(RowError(line, "amount", f"not a positive integer: {raw_amount!r}"))
        elif int(raw_amount) != program.amount:
            errors.append(
                RowError(line, "amount", f"this program awards {program.amount} per event")
            )
    details = {name: values[name] for name in detail_columns if values.get(name)}
    # A file repeats a few detail values (checkup types): each is checked once.
    key = tuple(details.items())
    if key not in details_checked:
        try:
            parse_details(module, details)
            details_checked[key] = None
        except PointsError as bad:
            column = str(bad.context.get("field", "details")).removeprefix("details.")
            details_checked[key] = RowError(0, column, bad.message)
    refused = details_checked[key]
    if refused is not None:
        errors.append(RowError(line, refused.column, refused.reason))
    if errors:
        return None, errors
    return Row(line, resident_id, record_id, occurred_on, details, address_number), []


def _resident_of(
    line: int, values: dict[str, str], errors: list[RowError]
) -> tuple[str, str | None]:
    """The row's resident id (blank when named by number) and address number (``None`` when
    named by id); exactly one of the two columns is filled (both are checked as given)."""
    resident_id, address_number = values.get("resident_id", ""), values.get("address_number", "")
    if resident_id and address_number:
        errors.append(
            RowError(line, "address_number", "give resident_id or address_number, not both")
        )
    elif not resident_id and not address_number and len(set(RESIDENT_COLUMNS) & set(values)) > 1:
        errors.append(RowError(line, "resident_id", "give resident_id or address_number"))
    elif address_number or "resident_id" not in values:
        if not ADDRESS_NUMBER.fullmatch(address_number):
            errors.append(
                RowError(
                    line,
                    "address_number",
                    f"not an address number (1 to 20 digits): {address_number!r}",
                )
            )
        return "", address_number
    elif not RESIDENT_ID.match(resident_id):
        errors.append(RowError(line, "resident_id", f"not a resident id: {resident_id!r}"))
    return resident_id, None
