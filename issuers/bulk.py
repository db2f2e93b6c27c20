"""Bulk awards from a CSV file: the health department's list of checkup attendees.

The file, as Excel in Japan saves it: UTF-8 with or without a byte order mark, or Shift_JIS
(CP932); blank lines are skipped. A header row names the columns: ``resident_id`` and
``record_id`` (required), ``occurred_on`` (YYYY-MM-DD or YYYY/MM/DD; today when blank) and
``amount`` (optional; when given it must be the program's amount), and the program module's
detail columns (``checkup_type`` for health checkups, ``event_id`` for volunteering).

1. **Validate the whole file first**, against the database as it is: every bad row is reported
   (line, column, reason) and nothing is written. Rows whose record was awarded before are
   *replays* (a re-uploaded file awards nothing twice); the same record id with another resident
   or other details is an error. Caps and once-keys are checked across the file and against
   what was awarded before.
2. **Set the file's total aside**: in one transaction, each fiscal year's total moves from the
   program's budget to a clearing account of the upload. A file that needs more than remains is
   refused here, before anything is awarded; and once it is set aside, a concurrent single
   award can no longer take the budget the file needs.
3. **Award in batches**, each row through the same ``issuers.awards.award`` as a single award
   (paid from the clearing account), each in a savepoint: a row that a concurrent award made
   invalid in the meantime (its once-key taken, say) is reported, never half-applied.
4. **Return what is left** in the clearing accounts to the budget (or, if the year was closed
   meanwhile, to the city's funding), and record the outcome on the upload.

An upload is known by the SHA-256 of the file: uploading the same file again returns the
first upload's outcome, or resumes it if it was interrupted (every row is protected by its
record id, so a resumed upload awards each row at most once).

One run at a time awards a file: the run holds the upload row (``owner``) under a lease of
``LEASE`` that every batch renews. Another upload of the same file meanwhile (a retry from an
impatient client, a second clerk) is refused with ``upload_in_progress`` and may look at the
upload's progress instead; it is not run alongside, where it would meet the first run's awards
as replays and count them twice. A run that fails lets go of the upload at once, so that the
file can be uploaded again to resume it; a run whose process died holds it until its lease
lapses. The resuming run takes the upload over *before* it checks the file again, so the check
sees every row the old run awarded, and the old run, should it wake, stops at its next batch.
"""

from __future__ import annotations

import csv
import enum
import gc
import hashlib
import io
import json
import logging
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Field, Session, SQLModel, col, select

from issuers.awards import (
    OPEN_COUNTER,
    Award,
    AwardCounter,
    AwardOnce,
    AwardRequest,
    BudgetExhausted,
    award,
    cap_periods,
    check_record_id,
    check_window,
    same_event,
)
from issuers.modules import AwardEvent, module_for, parse_config, parse_details
from issuers.programs import BudgetClosed, BudgetStatus, Program, ProgramNotActive, find_budget
from issuers.programs import get_program as load_program
from ledger import BatchMode, LedgerTx, NewEntry, Posting, Side
from ledger.errors import LedgerError
from points.accounts import ACCOUNT_RULES, AccountCode
from points.auth import Principal
from points.calendar import fiscal_year, tokyo_date
from points.errors import Conflict, InvalidInput, NotFound, PointsError
from points.jobs import frozen_heap
from points.pointtypes import get_point_type
from points.registry import Resident, ResidentStatus, new_id
from points.spreadsheet import csv_text
from points.sqlbase import UTCDateTime, insert_many
from points.uow import unit_of_work
from points.wallets import Wallet, WalletBucket, WalletStatus

UNKNOWN_ENCODING = "the file is neither UTF-8 nor Shift_JIS (CP932); save it as CSV UTF-8"
REQUIRED = ("resident_id", "record_id")
OPTIONAL = ("occurred_on", "amount")
RESIDENT_ID = re.compile(r"^res_[A-Za-z0-9_-]{1,28}$")
#: 2026-05-01, or 2026/5/1 as Excel in Japan shows dates.
DATE = re.compile(r"([0-9]{4})[-/]([0-9]{1,2})[-/]([0-9]{1,2})")
ROWS_MAX = 200_000
#: How long a run holds its upload after its last batch (or set-aside) before another upload
#: of the file may take it over: many times a batch's duration.
LEASE = timedelta(minutes=2)
BATCH = 2000
#: On PostgreSQL, refresh the planner's statistics every this many batches of an upload.
ANALYZE_EVERY = 5

log = logging.getLogger("issuers.bulk")


class UploadStatus(enum.StrEnum):
    ISSUING = "issuing"
    DONE = "done"


class AwardUpload(SQLModel, table=True):
    __tablename__ = "award_upload"
    __table_args__ = (
        sa.UniqueConstraint("program_id", "sha256"),
        sa.CheckConstraint("status IN ('issuing', 'done')", name="status"),
    )

    id: str = Field(primary_key=True, max_length=32)
    program_id: str = Field(foreign_key="program.id", max_length=32, index=True)
    sha256: str = Field(max_length=64)
    filename: str = Field(default="", max_length=200)
    status: str = Field(max_length=16)
    rows: int
    #: Rows to award when the upload started (the others were replays).
    to_award: int
    total: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    awarded: int = 0
    replayed: int = 0
    failed: int = 0
    #: Rows refused while awarding, as JSON [{"line": 12, "code": ..., "reason": ...}].
    failures: str = Field(default="[]", sa_column=sa.Column(sa.Text, nullable=False))
    #: {fiscal year: clearing account id}, as JSON.
    holds: str = Field(default="{}", sa_column=sa.Column(sa.Text, nullable=False))
    created_by: str = Field(max_length=32)
    created_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))
    finished_at: datetime | None = Field(default=None, sa_column=sa.Column(UTCDateTime()))
    #: The run awarding the file and until when it holds it (renewed by every batch); both
    #: None when no run holds it.
    owner: str | None = Field(default=None, max_length=32)
    lease_expires_at: datetime | None = Field(default=None, sa_column=sa.Column(UTCDateTime()))


@dataclass(frozen=True, slots=True)
class RowError:
    line: int
    column: str
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"line": self.line, "column": self.column, "reason": self.reason}


class CsvInvalid(InvalidInput):
    code = "csv_invalid"

    def __init__(self, errors: list[RowError]) -> None:
        shown = errors[:1000]
        super().__init__(
            f"the file has {len(errors)} problem(s); nothing was awarded. First: line "
            f"{errors[0].line}, {errors[0].column}: {errors[0].reason}",
            errors=[error.as_dict() for error in shown],
            error_count=len(errors),
        )
        self.errors = errors


class UploadInProgress(Conflict):
    """Another run is awarding this file: look at the upload (``upload_id``) for its progress,
    or upload the file again later. A refusal of the moment, not of the request: an idempotent
    request that met it may be retried with the same key."""

    code = "upload_in_progress"
    retry_later = True


@dataclass
class Row:
    line: int
    resident_id: str
    record_id: str
    occurred_on: date | None
    details: dict[str, Any]
    # Filled in by the check, for the batches (which award a row as it was checked):
    amount: int = 0
    fiscal_year: int = 0
    details_json: str = ""
    once_keys: tuple[str, ...] = ()


@dataclass
class Plan:
    rows: int
    to_award: list[Row]
    replays: int
    totals: dict[int, int] = field(default_factory=dict)


def errors_csv(errors: list[RowError]) -> bytes:
    """The validation report as CSV (UTF-8 with a BOM, for Excel; the file's own values in the
    reasons stay text: ``points.spreadsheet``)."""
    rows = ((error.line, error.column, error.reason) for error in errors)
    return b"\xef\xbb\xbf" + csv_text(("line", "column", "reason"), rows).encode("utf-8")


# Reading the file ---------------------------------------------------------------------------


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


def parse(text: str, program: Program) -> tuple[list[Row], list[RowError]]:
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
        line = last_line = reader.line_num
        if not any(cell.strip() for cell in cells):
            continue
        if header is None:
            header = [cell.strip().lower() for cell in cells]
            errors += _check_header(header, detail_columns, line)
            if errors:
                return [], errors
            continue
        data_rows += 1
        if data_rows > ROWS_MAX:
            # Counted whether the rows are good or not; the file must be split, so its other
            # problems are left for the parts (and cannot push this one out of the report).
            return [], [RowError(line, "", f"a file holds at most {ROWS_MAX} rows")]
        if len(cells) != len(header):
            errors.append(
                RowError(line, "", f"{len(cells)} fields where the header has {len(header)}")
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
    return rows, errors


def _check_header(header: list[str], detail_columns: list[str], line: int) -> list[RowError]:
    errors = []
    allowed = set(REQUIRED) | set(OPTIONAL) | set(detail_columns)
    expected = ", ".join([*REQUIRED, *OPTIONAL, *detail_columns])
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
    module: Any,
    detail_columns: list[str],
    details_checked: dict[tuple[tuple[str, str], ...], RowError | None],
) -> tuple[Row | None, list[RowError]]:
    errors: list[RowError] = []
    resident_id, record_id = values["resident_id"], values["record_id"]
    if not RESIDENT_ID.match(resident_id):
        errors.append(RowError(line, "resident_id", f"not a resident id: {resident_id!r}"))
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
    return Row(line, resident_id, record_id, occurred_on, details), []


# Checking it against the database -----------------------------------------------------------


def validate(
    session: Session, program: Program, rows: list[Row], now: datetime
) -> tuple[Plan, list[RowError]]:
    """The plan for the rows, and the problems the database shows (see the module docstring)."""
    module = module_for(program.module)
    config = parse_config(module, program.config)
    terms = program.terms()
    today = tokyo_date(now)
    errors: list[RowError] = []
    residents = _lookup(
        session,
        Resident,
        col(Resident.id),
        [r.resident_id for r in rows],
        columns=(col(Resident.id), col(Resident.status)),
    )
    closed = {
        wallet.resident_id
        for wallet in _lookup(
            session,
            Wallet,
            col(Wallet.resident_id),
            [r.resident_id for r in rows],
            Wallet.point_type_id == program.point_type_id,
            columns=(col(Wallet.resident_id), col(Wallet.status)),
        ).values()
        if wallet.status == WalletStatus.CLOSED
    }
    earlier = {
        award.record_id: award
        for award in _lookup(
            session,
            Award,
            col(Award.record_id),
            [r.record_id for r in rows],
            Award.program_id == program.id,
            columns=(
                col(Award.record_id),
                col(Award.resident_id),
                col(Award.details),
                col(Award.occurred_on),
            ),
        ).values()
    }
    resident_ids = list({r.resident_id for r in rows})
    taken_once = {
        (once.resident_id, once.once_key)
        for once in _chunked(
            session,
            AwardOnce,
            col(AwardOnce.resident_id),
            resident_ids,
            AwardOnce.program_id == program.id,
            columns=(col(AwardOnce.resident_id), col(AwardOnce.once_key)),
        )
    }
    has_caps = _has_caps(program)
    counted = {
        (counter.resident_id, counter.period): counter.amount
        for counter in _chunked(
            session,
            AwardCounter,
            col(AwardCounter.resident_id),
            resident_ids if has_caps else [],
            AwardCounter.program_id == program.id,
            columns=(
                col(AwardCounter.resident_id),
                col(AwardCounter.period),
                col(AwardCounter.amount),
            ),
        )
    }
    plan = Plan(rows=len(rows), to_award=[], replays=0)
    windows: dict[date, int | PointsError] = {}
    once_in_file: dict[tuple[str, str], int] = {}
    # A file repeats a few detail values (checkup types) on every row: parse each once.
    parsed: dict[tuple[tuple[str, Any], ...], tuple[Any, str]] = {}
    for row in rows:
        resident = residents.get(row.resident_id)
        if resident is None:
            errors.append(RowError(row.line, "resident_id", "no such resident"))
            continue
        details_key = tuple(row.details.items())  # in the module's field order
        known = parsed.get(details_key)
        if known is None:
            details = parse_details(module, row.details)
            known = parsed[details_key] = (
                details,
                json.dumps(details.model_dump(mode="json"), sort_keys=True),
            )
        details, details_json = known
        before = earlier.get(row.record_id)
        if before is not None:
            if not same_event(before, row.resident_id, details_json, row.occurred_on):
                errors.append(
                    RowError(
                        row.line,
                        "record_id",
                        "this record id was awarded for a different event (record_id_reused)",
                    )
                )
            else:
                plan.replays += 1
            continue
        if resident.status != ResidentStatus.ACTIVE:
            errors.append(RowError(row.line, "resident_id", f"the resident is {resident.status}"))
            continue
        if row.resident_id in closed:
            errors.append(RowError(row.line, "resident_id", "the resident's wallet is closed"))
            continue
        occurred_on = row.occurred_on or today
        # A file holds a few dates: each is checked against the program's window once.
        year = windows.get(occurred_on) or windows.setdefault(
            occurred_on, _in_window(program, occurred_on, today)
        )
        if isinstance(year, PointsError):
            errors.append(RowError(row.line, "occurred_on", year.message))
            continue
        try:
            award_plan = module.plan(
                terms,
                config,
                details,
                AwardEvent(row.resident_id, row.record_id, occurred_on, year),
            )
        except PointsError as bad:
            column = str(bad.context.get("field", "")).removeprefix("details.")
            errors.append(RowError(row.line, column, bad.message))
            continue
        periods = cap_periods(program, occurred_on, year) if has_caps else []
        bad_row = False
        for once_key in award_plan.once:
            key = (row.resident_id, once_key)
            if key in taken_once:
                errors.append(RowError(row.line, "record_id", f"{once_key} was awarded already"))
                bad_row = True
            elif key in once_in_file:
                errors.append(
                    RowError(
                        row.line, "record_id", f"{once_key} is also on line {once_in_file[key]}"
                    )
                )
                bad_row = True
        for period, cap in periods:
            so_far = counted.get((row.resident_id, period), 0)
            if so_far + award_plan.amount > cap:
                errors.append(
                    RowError(
                        row.line,
                        "resident_id",
                        f"the cap for {period} is {cap}; {so_far} is counted already",
                    )
                )
                bad_row = True
        if bad_row:
            continue
        for once_key in award_plan.once:
            once_in_file[(row.resident_id, once_key)] = row.line
        for period, _cap in periods:
            key = (row.resident_id, period)
            counted[key] = counted.get(key, 0) + award_plan.amount
        # Awarded as checked: a blank date is today's *now*, not the day the batch runs.
        row.occurred_on = occurred_on
        row.amount, row.fiscal_year = award_plan.amount, year
        row.details_json, row.once_keys = details_json, tuple(award_plan.once)
        plan.to_award.append(row)
        plan.totals[year] = plan.totals.get(year, 0) + award_plan.amount
    return plan, errors


def _in_window(program: Program, occurred_on: date, today: date) -> int | PointsError:
    """The fiscal year of an event on that day, or why the program cannot award it."""
    try:
        check_window(program, occurred_on, today)
    except PointsError as bad:
        return bad
    return fiscal_year(occurred_on)


def _has_caps(program: Program) -> bool:
    caps = (program.cap_per_day, program.cap_per_month, program.cap_per_fiscal_year)
    return any(cap is not None for cap in caps)


def _chunked(
    session: Session,
    model: Any,
    key: Any,
    values: list[str],
    *conditions: Any,
    columns: tuple[Any, ...] = (),
    share_lock: bool = False,
) -> list[Any]:
    """Rows of ``model``'s table (its ``columns``, or all) whose ``key`` is one of ``values``,
    as plain result rows (attribute access by column name; no ORM instances, no identity map:
    a file's lookups read tens of thousands of rows). One statement with one parameter however
    many the values: a JSON array, unpacked by the database (``json_each`` on SQLite,
    ``json_array_elements_text`` on PostgreSQL, looked up through the key's index as
    ``= ANY``). An ``IN`` list of bound values cost SQLAlchemy more to build per value than the
    database spent finding the row (and SQLite limits its length); a PostgreSQL array of text
    cost psycopg as much to quote, value by value, in Python."""
    if not values:
        return []
    connection = session.connection()
    listed: sa.BindParameter[str] = sa.bindparam("values", json.dumps(values))
    if connection.dialect.name == "postgresql":
        elements = sa.select(sa.func.json_array_elements_text(sa.cast(listed, sa.JSON)))
        match = key == sa.any_(sa.func.array(elements.scalar_subquery()))
    else:
        match = key.in_(sa.select(sa.column("value")).select_from(sa.func.json_each(listed)))
    query = sa.select(*columns or (model.__table__,)).where(match, *conditions)
    if share_lock:
        query = query.with_for_update(read=True)
    return list(connection.execute(query).all())


def _lookup(
    session: Session,
    model: Any,
    key: Any,
    values: list[str],
    *conditions: Any,
    columns: tuple[Any, ...] = (),
    share_lock: bool = False,
) -> dict[str, Any]:
    """Rows whose ``key`` is one of ``values``, by key (see ``_chunked``). Locks, when asked
    for, are taken in the order of the key's index whatever the order of the values."""
    rows = _chunked(
        session,
        model,
        key,
        list(set(values)),
        *conditions,
        columns=columns,
        share_lock=share_lock,
    )
    return {getattr(item, key.key): item for item in rows}


# Awarding -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UploadResult:
    upload: AwardUpload
    #: True when this file was uploaded before and is done: nothing was awarded now.
    replayed: bool


def check_file(
    engine: Engine, program_id: str, department_id: str | None, data: bytes, now: datetime
) -> tuple[Plan | None, list[RowError]]:
    """Validate only: the plan and every problem (nothing is written)."""

    def work(session: Session) -> tuple[Plan | None, list[RowError]]:
        program = load_program(session, program_id, department_id=department_id)
        try:
            text = decode(data)
        except CsvInvalid as invalid:
            return None, invalid.errors
        rows, errors = parse(text, program)
        plan, found = validate(session, program, rows, now)
        errors = sorted([*errors, *found], key=lambda error: (error.line, error.column))
        return (None if errors else plan), errors

    return unit_of_work(engine, work, read_only=True)


@frozen_heap()
def upload(
    engine: Engine,
    actor: Principal,
    clock: Callable[[], datetime],
    program_id: str,
    data: bytes,
    *,
    department_id: str | None,
    filename: str = "",
    progress: Callable[[int, int | None], None] | None = None,
    batch: int = BATCH,
) -> UploadResult:
    """Validate, set aside, award in batches, settle; see the module docstring. The heap is
    frozen out of the garbage collector while it runs (``points.jobs.frozen_heap``)."""
    sha256 = hashlib.sha256(data).hexdigest()
    now = clock()
    owner = uuid.uuid4().hex
    existing = unit_of_work(
        engine,
        lambda session: _find_upload(session, program_id, department_id, sha256),
        read_only=True,
    )
    if existing is not None and existing.status == UploadStatus.DONE:
        return UploadResult(existing, replayed=True)
    held: str | None = None
    try:
        if existing is not None:
            # Interrupted: take it over before checking, so that the check sees every row the
            # run that held it awarded (and that run stops at its next batch).
            taken = unit_of_work(engine, lambda session: _hold(session, existing.id, owner, now))
            if taken.status == UploadStatus.DONE:
                return UploadResult(taken, replayed=True)
            held = taken.id
        plan, errors = check_file(engine, program_id, department_id, data, now)
        if errors:
            raise CsvInvalid(errors)
        assert plan is not None
        # The plan (an object or more per row) lives until the upload ends: keep the collector
        # off it as well, or every full collection of the batches walks it again (frozen_heap
        # thaws).
        gc.freeze()
        aside = unit_of_work(
            engine,
            lambda session: _set_aside(
                session, actor, now, program_id, plan, sha256, filename, owner
            ),
        )
        if aside.status == UploadStatus.DONE:  # another run finished the file meanwhile
            return UploadResult(aside, replayed=True)
        upload_id = held = aside.id
        holds_json = unit_of_work(
            engine, lambda session: _get_upload(session, upload_id).holds, read_only=True
        )
        holds = {int(year): account for year, account in json.loads(holds_json).items()}
        done = 0
        if progress is not None:
            progress(0, len(plan.to_award))
        for start in range(0, len(plan.to_award), batch):
            part = plan.to_award[start : start + batch]
            unit_of_work(
                engine,
                lambda session, part=part: _award_batch(  # type: ignore[misc]
                    session, actor, clock(), program_id, upload_id, owner, part, holds
                ),
            )
            done += len(part)
            if progress is not None:
                progress(done, len(plan.to_award))
            if engine.dialect.name == "postgresql" and (start // batch) % ANALYZE_EVERY == 0:
                # The tables grow fast during a big upload; fresh statistics keep the lookups
                # on their unique indexes instead of scanning.
                with engine.connect() as connection:
                    connection.exec_driver_sql("ANALYZE award, wallet_bucket, award_once")
                    connection.commit()
        finished = unit_of_work(engine, lambda session: _settle(session, clock(), upload_id, owner))
    except BaseException:
        if held is not None:
            _let_go(engine, held, owner)
        raise
    return UploadResult(finished, replayed=False)


def _hold(session: Session, upload_id: str, owner: str, now: datetime) -> AwardUpload:
    """Hold the upload for the run ``owner`` until ``now + LEASE``; refused while another run
    holds it. A finished upload is returned as it is."""
    upload = session.exec(
        select(AwardUpload).where(AwardUpload.id == upload_id).with_for_update()
    ).one()
    if upload.status == UploadStatus.DONE:
        return upload
    if (
        upload.owner is not None
        and upload.owner != owner
        and upload.lease_expires_at is not None
        and upload.lease_expires_at > now
    ):
        raise UploadInProgress(
            f"upload {upload.id} of this file is being awarded by another request "
            f"({upload.awarded} of {upload.to_award} rows so far); look at the upload for its "
            "progress, or upload the file again later to resume it if that request has stopped",
            upload_id=upload.id,
            awarded=upload.awarded,
            to_award=upload.to_award,
        )
    upload.owner = owner
    upload.lease_expires_at = now + LEASE
    session.add(upload)
    session.flush()
    return upload


def _let_go(engine: Engine, upload_id: str, owner: str) -> None:
    """After a failed run: give the upload up at once (if this run still holds it), so that
    uploading the file again resumes it without waiting for the lease."""

    def work(session: Session) -> None:
        upload = session.get(AwardUpload, upload_id, with_for_update=True)
        if upload is not None and upload.owner == owner:
            upload.owner = None
            upload.lease_expires_at = None
            session.add(upload)

    try:
        unit_of_work(engine, work)
    except Exception:  # the run's own error is the one to report; the lease lapses anyway
        log.warning(
            "upload %s: could not let go of it; it is held until its lease lapses",
            upload_id,
            exc_info=True,
        )


def _find_upload(
    session: Session, program_id: str, department_id: str | None, sha256: str
) -> AwardUpload | None:
    load_program(session, program_id, department_id=department_id)
    return session.exec(
        select(AwardUpload).where(
            AwardUpload.program_id == program_id, AwardUpload.sha256 == sha256
        )
    ).first()


def _get_upload(session: Session, upload_id: str) -> AwardUpload:
    found = session.get(AwardUpload, upload_id)
    assert found is not None
    return found


def _set_aside(
    session: Session,
    actor: Principal,
    now: datetime,
    program_id: str,
    plan: Plan,
    sha256: str,
    filename: str,
    owner: str,
) -> AwardUpload:
    """Create the upload, held by ``owner`` (or hold the interrupted one), and move each year's
    total from the budget to a clearing account of the upload; refuse when a budget has too
    little."""
    program = load_program(session, program_id)
    existing = session.exec(
        select(AwardUpload).where(
            AwardUpload.program_id == program_id, AwardUpload.sha256 == sha256
        )
    ).first()
    if existing is not None:
        # An interrupted upload of this file (or one a concurrent upload of the same file has
        # just created): resume it, unless another run holds it; what it set aside is still
        # held.
        return _hold(session, existing.id, owner, now)
    if program.status != "active":
        raise ProgramNotActive(f"program {program.id} is {program.status}", status=program.status)
    point_type = get_point_type(session, program.point_type_id)
    tx = LedgerTx(session.connection(), lambda: now)
    upload = AwardUpload(
        id=new_id("upl"),
        program_id=program_id,
        sha256=sha256,
        filename=filename[:200],
        status=UploadStatus.ISSUING,
        rows=plan.rows,
        to_award=len(plan.to_award),
        total=sum(plan.totals.values()),
        replayed=plan.replays,
        created_by=actor.principal_id,
        created_at=now,
        owner=owner,
        lease_expires_at=now + LEASE,
    )
    holds: dict[str, int] = {}
    for year, total in sorted(plan.totals.items()):
        budget = find_budget(session, program.id, year)
        if budget is None:
            raise BudgetExhausted(
                f"program {program.id} has no FY{year} budget; the file needs {total}",
                remaining=0,
                requested=total,
            )
        if budget.status != BudgetStatus.OPEN:
            raise BudgetClosed(f"the FY{year} budget of program {program.id} is closed")
        remaining = tx.lock_account(budget.account_id).balance.available
        if remaining < total:
            raise BudgetExhausted(
                f"the FY{year} budget has {remaining} remaining; the file needs {total}",
                remaining=remaining,
                requested=total,
            )
        side, flags = ACCOUNT_RULES[AccountCode.BULK_CLEARING]
        clearing = tx.create_account(
            ledger_id=point_type.ledger_id,
            code=int(AccountCode.BULK_CLEARING),
            normal_side=side,
            owner_ref=f"{upload.id}:FY{year}",
            flags=flags,
        )
        tx.post(
            NewEntry(
                [
                    Posting(budget.account_id, Side.DEBIT, total),
                    Posting(clearing.id, Side.CREDIT, total),
                ],
                kind="bulk_set_aside",
                description=f"upload {upload.id}: {len(plan.to_award)} awards",
                metadata={"upload_id": upload.id, "fiscal_year": year},
            )
        )
        holds[str(year)] = clearing.id
    upload.holds = json.dumps(holds, sort_keys=True)
    session.add(upload)
    session.flush()
    return upload


def _award_batch(
    session: Session,
    actor: Principal,
    now: datetime,
    program_id: str,
    upload_id: str,
    owner: str,
    rows: list[Row],
    holds: dict[int, int],
) -> None:
    """Award a batch: set-based when nothing changed since the file was checked (the usual
    case), else row by row, each row in a savepoint, so that a row a concurrent award made
    invalid is reported and the others are awarded. Renews the run's hold on the upload; a
    run that lost it (its lease lapsed and another run took the upload over) stops here."""
    _still_held(session, upload_id, owner, now)
    try:
        with session.begin_nested():
            awarded, replayed = _award_set_based(session, actor, now, program_id, rows, holds)
        failures: list[dict[str, Any]] = []
    except (PointsError, LedgerError, sa.exc.IntegrityError):
        awarded, replayed, failures = _award_row_by_row(
            session, actor, now, program_id, rows, holds
        )
    upload = session.get(AwardUpload, upload_id, populate_existing=True)
    assert upload is not None
    upload.awarded += awarded
    upload.replayed += replayed
    upload.failed += len(failures)
    upload.failures = json.dumps([*json.loads(upload.failures), *failures], ensure_ascii=False)
    session.add(upload)
    session.flush()


def _award_row_by_row(
    session: Session,
    actor: Principal,
    now: datetime,
    program_id: str,
    rows: list[Row],
    holds: dict[int, int],
) -> tuple[int, int, list[dict[str, Any]]]:
    failures: list[dict[str, Any]] = []
    awarded = replayed = 0
    for row in rows:
        request = AwardRequest(
            program_id, row.resident_id, row.record_id, row.details, row.occurred_on
        )
        try:
            with session.begin_nested():
                result = award(session, actor, now, request, department_id=None, held=holds)
        except (PointsError, LedgerError) as refused:
            failures.append({"line": row.line, "code": refused.code, "reason": refused.message})
            continue
        if result.replayed:
            replayed += 1
        else:
            awarded += 1
    return awarded, replayed, failures


class _Changed(PointsError):
    """Something changed since the file was checked: award this batch row by row."""

    code = "changed"


def _award_set_based(
    session: Session,
    actor: Principal,
    now: datetime,
    program_id: str,
    rows: list[Row],
    holds: dict[int, int],
) -> tuple[int, int]:
    """The batch in a handful of multi-row statements; raises when anything is not as it was
    when the file was checked (the caller then goes row by row). Each row is awarded as the
    check planned it (amount, fiscal year, once-keys, details): the file's total was set aside
    on those amounts."""
    program = load_program(session, program_id)
    if program.status != "active":
        raise _Changed("the program is no longer active")
    point_type = get_point_type(session, program.point_type_id)
    today = tokyo_date(now)
    valid_until = point_type.valid_until(today)
    if valid_until < today:
        raise _Changed("the point type has expired")
    if any(row.fiscal_year not in holds for row in rows):
        raise _Changed("nothing was set aside for a fiscal year of this batch")
    connection = session.connection()
    # No lookup of earlier awards: an award of one of these records made since the check (or by
    # an interrupted run of this upload) shows as a replay of its ledger entry below, and the
    # batch goes row by row, where each such row is replayed or refused (record_id_reused).
    resident_ids = sorted({row.resident_id for row in rows})
    residents = _lookup(
        session,
        Resident,
        col(Resident.id),
        resident_ids,
        columns=(col(Resident.id), col(Resident.status)),
    )
    if len(residents) != len(resident_ids) or any(
        resident.status != ResidentStatus.ACTIVE for resident in residents.values()
    ):
        raise _Changed("a resident is no longer active")
    wallets = _lookup(
        session,
        Wallet,
        col(Wallet.resident_id),
        resident_ids,
        Wallet.point_type_id == point_type.id,
        columns=(col(Wallet.resident_id), col(Wallet.status)),
        share_lock=True,  # as single awards do: a closure waits for this batch
    )
    if any(wallet.status == WalletStatus.CLOSED for wallet in wallets.values()):
        raise _Changed("a wallet was closed")
    # Once-keys and cap counters: the database refuses a collision (unique key) or a cap
    # exceeded (CHECK amount <= cap), and the batch goes row by row.
    once = [(row.resident_id, key, row.record_id) for row in rows for key in row.once_keys]
    if once:
        once_residents, once_keys, once_records = zip(*once, strict=True)
        insert_many(
            connection,
            AwardOnce.__table__,  # type: ignore[attr-defined]
            {"resident_id": once_residents, "once_key": once_keys, "record_id": once_records},
            {"program_id": program_id},
        )
    if _has_caps(program):
        _count_batch_towards_caps(connection, program, rows)
    missing_wallets = [resident for resident in resident_ids if resident not in wallets]
    if missing_wallets:
        insert_many(
            connection,
            Wallet.__table__,  # type: ignore[attr-defined]
            {"resident_id": missing_wallets},
            {"point_type_id": point_type.id, "status": WalletStatus.OPEN, "created_at": now},
        )
    buckets: dict[str, int] = {
        bucket.resident_id: bucket.account_id
        for bucket in _chunked(
            session,
            WalletBucket,
            col(WalletBucket.resident_id),
            resident_ids,
            WalletBucket.point_type_id == point_type.id,
            WalletBucket.program_id == program_id,
            WalletBucket.valid_until == valid_until,
            columns=(col(WalletBucket.resident_id), col(WalletBucket.account_id)),
        )
    }
    tx = LedgerTx(connection, lambda: now)
    new_buckets = [resident for resident in resident_ids if resident not in buckets]
    if new_buckets:
        side, flags = ACCOUNT_RULES[AccountCode.RESIDENT_BUCKET]
        ids = tx.create_accounts(
            ledger_id=point_type.ledger_id,
            code=int(AccountCode.RESIDENT_BUCKET),
            normal_side=side,
            owner_refs=new_buckets,
            flags=flags,
        )
        insert_many(
            connection,
            WalletBucket.__table__,  # type: ignore[attr-defined]
            {"account_id": ids, "resident_id": new_buckets},
            {"point_type_id": point_type.id, "program_id": program_id, "valid_until": valid_until},
        )
        buckets.update(zip(new_buckets, ids, strict=True))
    program_ja, program_en = program.name_ja, program.name_en
    namespace = f"award:{program_id}"
    debit, credit = Side.DEBIT, Side.CREDIT
    results = tx.post_batch(
        [
            NewEntry(
                [
                    Posting(holds[row.fiscal_year], debit, row.amount),
                    Posting(buckets[row.resident_id], credit, row.amount),
                ],
                kind="award",
                description=program_en,
                metadata={
                    "program_id": program_id,
                    "program_ja": program_ja,
                    "program_en": program_en,
                    "record_id": row.record_id,
                    "fiscal_year": row.fiscal_year,
                },
                namespace=namespace,
                idempotency_key=row.record_id,
            )
            for row in rows
        ],
        BatchMode.ATOMIC,
    )
    entry_ids: list[int] = []
    for result in results:
        if result.replayed or result.entry is None:
            raise _Changed("an award of this file was recorded meanwhile")
        entry_ids.append(result.entry.id)
    insert_many(
        connection,
        Award.__table__,  # type: ignore[attr-defined]
        {
            "record_id": [row.record_id for row in rows],
            "resident_id": [row.resident_id for row in rows],
            "amount": [row.amount for row in rows],
            "fiscal_year": [row.fiscal_year for row in rows],
            "occurred_on": [row.occurred_on or today for row in rows],
            "entry_id": entry_ids,
            "bucket_account_id": [buckets[row.resident_id] for row in rows],
            "details": [row.details_json for row in rows],
        },
        {
            "program_id": program_id,
            "valid_until": valid_until,
            "awarded_by": actor.principal_id,
            "created_at": now,
        },
    )
    return len(rows), 0


def _count_batch_towards_caps(connection: sa.Connection, program: Program, rows: list[Row]) -> None:
    """Add the batch's amounts to the cap counters, one statement for all."""
    caps: dict[tuple[str, str], tuple[int, int]] = {}
    for row in rows:
        assert row.occurred_on is not None  # set by the check
        for period, cap in cap_periods(program, row.occurred_on, row.fiscal_year):
            so_far, _ = caps.get((row.resident_id, period), (0, cap))
            caps[(row.resident_id, period)] = (so_far + row.amount, cap)
    counters = [
        {
            "program_id": program.id,
            "resident_id": resident,
            "period": period,
            "amount": amount,
            "cap": cap,
        }
        for (resident, period), (amount, cap) in caps.items()
    ]
    connection.execute(OPEN_COUNTER, counters)
    # Unconditional, unlike a single award's: the CHECK amount <= cap refuses a counter pushed
    # past its cap, and the batch then goes row by row.
    connection.execute(
        sa.text(
            "UPDATE award_counter SET amount = amount + :amount, cap = :cap "
            "WHERE program_id = :program_id AND resident_id = :resident_id AND period = :period"
        ),
        counters,
    )


def _still_held(session: Session, upload_id: str, owner: str, now: datetime) -> AwardUpload:
    """Lock the upload and renew the run's hold on it; refused if another run took it over."""
    upload = session.exec(
        select(AwardUpload).where(AwardUpload.id == upload_id).with_for_update()
    ).one()
    if upload.owner != owner or upload.status == UploadStatus.DONE:
        raise UploadInProgress(
            f"upload {upload.id}: another request took it over while this one was stalled; "
            "it goes on there",
            upload_id=upload.id,
            awarded=upload.awarded,
            to_award=upload.to_award,
        )
    upload.lease_expires_at = now + LEASE
    session.add(upload)
    return upload


def _settle(session: Session, now: datetime, upload_id: str, owner: str) -> AwardUpload:
    """Return what the clearing accounts still hold, close them, and finish the upload."""
    upload = _still_held(session, upload_id, owner, now)
    program = load_program(session, upload.program_id)
    point_type = get_point_type(session, program.point_type_id)
    tx = LedgerTx(session.connection(), lambda: now)
    for year, clearing_id in json.loads(upload.holds).items():
        left = tx.lock_account(clearing_id).balance.available
        if left > 0:
            budget = find_budget(session, program.id, int(year))
            open_budget = budget is not None and budget.status == BudgetStatus.OPEN
            target = budget.account_id if budget is not None and open_budget else None
            tx.post(
                NewEntry(
                    [
                        Posting(clearing_id, Side.DEBIT, left),
                        Posting(target or point_type.city_account_id, Side.CREDIT, left),
                    ],
                    kind="bulk_return",
                    description=f"upload {upload.id}: not awarded",
                    metadata={"upload_id": upload.id, "fiscal_year": int(year)},
                )
            )
        tx.close_account(clearing_id)
    upload.status = UploadStatus.DONE
    upload.finished_at = now
    upload.owner = upload.lease_expires_at = None
    session.add(upload)
    session.flush()
    return upload


def get_upload(session: Session, upload_id: str, *, department_id: str | None) -> AwardUpload:
    found = session.get(AwardUpload, upload_id)
    if found is not None:
        load_program(session, found.program_id, department_id=department_id)
        return found
    raise NotFound(f"no upload {upload_id}", object_id=upload_id)
