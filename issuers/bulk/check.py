"""The whole-file check of a bulk upload, against the database as it is: nothing is written.

Every row is decided by the same rules as a single award (``issuers.eligibility.decide``); the
facts they need are read set-based for the whole file (a handful of statements however many the
rows: ``lookup``), and what earlier lines of the file claim counts like what earlier awards
claimed: a once-key on two lines, or two lines that together pass a cap, are reported.

Rows whose record was awarded before are *replays* (a re-uploaded file awards nothing twice);
the same record id with another resident or other details is an error. The plan that comes out
is what the upload sets aside and awards: each row as it was checked (amount, fiscal year,
once-keys, details), so that the file's total, set aside on those amounts, pays for it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from issuers.awards import Award, AwardCounter, AwardOnce, canonical_details, same_event
from issuers.bulk.reading import Row, decode, parse
from issuers.eligibility import (
    CapPeriod,
    Claimed,
    OnceClaim,
    Parties,
    check_program_active,
    decide,
    has_caps,
)
from issuers.errors import AlreadyAwarded, CapExceeded, CsvInvalid, RowError
from issuers.modules import module_for, parse_config, parse_details
from issuers.programs import Program, get_program
from points.calendar import tokyo_date
from points.errors import PointsError, ResidentNotActive, WalletClosed
from points.people import one_resident
from points.pointtypes import get_point_type
from points.registry import Resident
from points.uow import unit_of_work
from points.wallets import Wallet


@dataclass
class Plan:
    #: The file's data rows, good or bad.
    rows: int
    #: The good rows not awarded before, in the file's order.
    to_award: list[Row]
    #: Good rows awarded before (by an earlier upload of the file, or one by one).
    replays: int
    #: Points ``to_award`` needs, per fiscal year.
    totals: dict[int, int] = field(default_factory=dict)


def validate(
    session: Session, program: Program, rows: list[Row], now: datetime
) -> tuple[Plan, list[RowError]]:
    """The plan for the rows, and every problem the database shows (see the module docstring).
    An inactive program refuses the whole file (``program_not_active``), not row by row."""
    check_program_active(program)
    module = module_for(program.module)
    config = parse_config(module, program.config)
    today = tokyo_date(now)
    valid_until = get_point_type(session, program.point_type_id).valid_until(today)
    data_rows = len(rows)
    rows, errors = find_residents(session, rows)
    resident_ids = [row.resident_id for row in rows]
    parties = parties_of(session, resident_ids, program.point_type_id)
    earlier = lookup(
        session,
        Award,
        col(Award.record_id),
        [row.record_id for row in rows],
        Award.program_id == program.id,
        columns=(col(Award.resident_id), col(Award.details), col(Award.occurred_on)),
    )
    distinct_residents = list(set(resident_ids))
    #: Once-keys claimed by earlier awards, and then by earlier lines of this file.
    once: dict[tuple[str, str], OnceClaim] = {
        (taken.resident_id, taken.once_key): OnceClaim(taken.record_id)
        for taken in select_in(
            session,
            AwardOnce,
            col(AwardOnce.resident_id),
            distinct_residents,
            AwardOnce.program_id == program.id,
            columns=(col(AwardOnce.resident_id), col(AwardOnce.once_key), col(AwardOnce.record_id)),
        )
    }
    #: Points counted per (resident, cap period), by earlier awards and earlier lines.
    counted: dict[tuple[str, str], int] = {
        (counter.resident_id, counter.period): counter.amount
        for counter in select_in(
            session,
            AwardCounter,
            col(AwardCounter.resident_id),
            distinct_residents if has_caps(program) else [],
            AwardCounter.program_id == program.id,
            columns=(
                col(AwardCounter.resident_id),
                col(AwardCounter.period),
                col(AwardCounter.amount),
            ),
        )
    }
    plan = Plan(rows=data_rows, to_award=[], replays=0)
    # A file repeats a few detail values (checkup types) on every row: parse each once.
    parsed: dict[tuple[tuple[str, Any], ...], tuple[Any, str]] = {}
    for row in rows:
        details_key = tuple(row.details.items())  # in the module's field order
        known = parsed.get(details_key)
        if known is None:
            details = parse_details(module, row.details)
            known = parsed[details_key] = (details, canonical_details(details))
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
        resident_id = row.resident_id

        def claimed(once_keys: Any, periods: Any, resident_id: str = resident_id) -> Claimed:
            return _claimed_so_far(once, counted, resident_id, once_keys, periods)

        try:
            decision = decide(
                program,
                module,
                config,
                details,
                resident_id=resident_id,
                record_id=row.record_id,
                occurred_on=row.occurred_on,
                today=today,
                valid_until=valid_until,
                parties=parties.get(resident_id, NO_PARTIES),
                claimed=claimed,
            )
        except PointsError as refused:
            errors.append(RowError(row.line, _column(refused), refused.message))
            continue
        for once_key in decision.once_keys:
            once[(resident_id, once_key)] = OnceClaim(row.record_id, row.line)
        for period, _cap in decision.cap_periods:
            key = (resident_id, period)
            counted[key] = counted.get(key, 0) + decision.amount
        # Awarded as checked: a blank date is today's *now*, not the day the batch runs.
        row.occurred_on = decision.occurred_on
        row.amount, row.fiscal_year = decision.amount, decision.fiscal_year
        row.details_json, row.once_keys = details_json, decision.once_keys
        plan.to_award.append(row)
        plan.totals[decision.fiscal_year] = (
            plan.totals.get(decision.fiscal_year, 0) + decision.amount
        )
    return plan, errors


def find_residents(session: Session, rows: list[Row]) -> tuple[list[Row], list[RowError]]:
    """Fill in the resident id of the rows that give an address number instead, all numbers
    looked up in one statement (``select_in``), each by the rule of single awards
    (``people.one_resident``). The rows whose number names no resident, or more than one, are
    left out and reported."""
    numbers = list({row.address_number for row in rows if row.address_number is not None})
    if not numbers:
        return rows, []
    found: dict[str, list[str]] = {}
    for resident in select_in(
        session,
        Resident,
        col(Resident.address_number),
        numbers,
        columns=(col(Resident.address_number), col(Resident.id)),
    ):
        found.setdefault(resident.address_number, []).append(resident.id)
    kept: list[Row] = []
    errors: list[RowError] = []
    for row in rows:
        if row.address_number is not None:
            try:
                row.resident_id = one_resident(
                    row.address_number, found.get(row.address_number, [])
                )
            except PointsError as refused:
                errors.append(RowError(row.line, "address_number", refused.message))
                continue
        kept.append(row)
    return kept, errors


#: The column a refusal points at when the error does not name a field itself.
_COLUMNS: dict[type[PointsError], str] = {
    AlreadyAwarded: "record_id",
    CapExceeded: "resident_id",
    WalletClosed: "resident_id",
    ResidentNotActive: "resident_id",
}


def _column(refused: PointsError) -> str:
    field_name = refused.context.get("field")
    if field_name is not None:
        return str(field_name).removeprefix("details.")
    return _COLUMNS.get(type(refused), "")


def _claimed_so_far(
    once: dict[tuple[str, str], OnceClaim],
    counted: dict[tuple[str, str], int],
    resident_id: str,
    once_keys: Any,
    periods: list[CapPeriod] | tuple[CapPeriod, ...],
) -> Claimed:
    return Claimed(
        once={
            once_key: claim
            for once_key in once_keys
            if (claim := once.get((resident_id, once_key))) is not None
        },
        counted={period: counted.get((resident_id, period), 0) for period, _cap in periods},
    )


def parties_of(
    session: Session, resident_ids: list[str], point_type_id: str, *, share_lock: bool = False
) -> dict[str, Parties]:
    """The residents among ``resident_ids`` and their wallets of ``point_type_id``, as
    ``eligibility.Parties`` by resident (a resident the database does not know is missing:
    ``NO_PARTIES``). ``share_lock`` locks the wallets, as a single award does, so that a
    wallet's closure waits for the batch."""
    residents = lookup(
        session, Resident, col(Resident.id), resident_ids, columns=(col(Resident.status),)
    )
    wallets = lookup(
        session,
        Wallet,
        col(Wallet.resident_id),
        resident_ids,
        Wallet.point_type_id == point_type_id,
        columns=(col(Wallet.status),),
        share_lock=share_lock,
    )
    return {
        resident_id: Parties(
            resident.status,
            wallet.status if (wallet := wallets.get(resident_id)) is not None else None,
        )
        for resident_id, resident in residents.items()
    }


#: What ``parties_of`` says of a resident the database does not know.
NO_PARTIES = Parties(None, None)


def select_in(
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


def lookup(
    session: Session,
    model: Any,
    key: Any,
    values: list[str],
    *conditions: Any,
    columns: tuple[Any, ...] = (),
    share_lock: bool = False,
) -> dict[str, Any]:
    """Rows whose ``key`` is one of ``values``, by key, with the key and ``columns`` (or the
    whole row; see ``select_in``). Locks, when asked for, are taken in the order of the key's
    index whatever the order of the values."""
    rows = select_in(
        session,
        model,
        key,
        list(set(values)),
        *conditions,
        columns=(key, *columns) if columns else (),
        share_lock=share_lock,
    )
    return {getattr(item, key.key): item for item in rows}


def check_file(
    engine: Engine, program_id: str, department_id: str | None, data: bytes, now: datetime
) -> tuple[Plan | None, list[RowError]]:
    """Validate only: the plan and every problem (nothing is written). The plan counts every
    data row of the file in ``rows`` and plans the good ones, also when others are bad (a report
    says what the file would award once they are mended); there is none for a file that could
    not be read at all (its encoding, its header, its size)."""

    def work(session: Session) -> tuple[Plan | None, list[RowError]]:
        program = get_program(session, program_id, department_id=department_id)
        try:
            text = decode(data)
        except CsvInvalid as invalid:
            return None, invalid.errors
        parsed = parse(text, program)
        if parsed.errors and not parsed.data_rows:
            return None, sorted(parsed.errors, key=_place)
        plan, found = validate(session, program, parsed.rows, now)
        plan.rows = parsed.data_rows
        return plan, sorted([*parsed.errors, *found], key=_place)

    return unit_of_work(engine, work, read_only=True)


def _place(error: RowError) -> tuple[int, str]:
    return error.line, error.column
