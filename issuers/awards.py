"""Awards: a department reports a qualifying event; points move from the program's budget to
the resident's wallet, in one transaction with everything that limits them.

One award, in order (all in the caller's unit of work, so all or nothing):

1. The program must be the department's (else not found) and active; the event's date
   (``occurred_on``, default today in Tokyo) must fall in the program's validity window and not
   in the future. Its fiscal year picks the budget.
2. The department's ``record_id`` names the award: the same record again returns the first award
   (``replayed``); the same record for another resident or other details is
   ``record_id_reused``. A unique (program, record) constraint holds that against races.
3. The module (``issuers.modules``) plans the amount and the *once-keys*; each once-key is a row
   under a unique constraint (a second health checkup of a type in a year: ``already_awarded``).
4. Caps per resident per day, month and fiscal year are **counter rows** updated conditionally
   (``amount + x <= cap``, and a CHECK holds ``amount <= cap``), so concurrent awards cannot
   beat them; the periods are those of the event's date in Asia/Tokyo.
5. The ledger entry debits the fiscal year's budget and credits the wallet's bucket for (program,
   valid-until date of points earned today). The budget's flag refuses an overspend
   (``budget_exhausted``, saying how much remains); the entry's idempotency key is the record id
   in the program's namespace.

Races between concurrent awards lose on a unique constraint; the unit of work is then run again
and meets the winner's rows, giving a clean answer (see ``points.uow.RACE_CONSTRAINTS``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, Session, SQLModel, col, func, select

from issuers.modules import AwardEvent, module_for, parse_config, parse_details
from issuers.programs import (
    BudgetClosed,
    BudgetStatus,
    Program,
    ProgramBudget,
    ProgramNotActive,
    check_fiscal_year,
    find_budget,
    get_program,
)
from ledger import LedgerTx, NewEntry, Posting, Side
from ledger import schema as ledger_schema
from ledger.errors import AccountClosed, InsufficientFunds
from points.auth import Principal
from points.calendar import fiscal_year, tokyo_date
from points.errors import Conflict, InvalidInput
from points.pointtypes import get_point_type
from points.sqlbase import UTCDateTime
from points.wallets import WalletClosed, bucket_for, open_wallet

RECORD_ID_MAX_LENGTH = 128


class Award(SQLModel, table=True):
    __tablename__ = "award"
    __table_args__ = (
        sa.UniqueConstraint("program_id", "record_id"),
        sa.Index("ix_award_program_fiscal_year", "program_id", "fiscal_year"),
        sa.CheckConstraint("amount > 0", name="amount_positive"),
    )

    id: int | None = Field(default=None, sa_column=sa.Column(ledger_schema.Id, primary_key=True))
    program_id: str = Field(foreign_key="program.id", max_length=32)
    record_id: str = Field(max_length=RECORD_ID_MAX_LENGTH)
    resident_id: str = Field(foreign_key="resident.id", max_length=32, index=True)
    amount: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    fiscal_year: int
    occurred_on: date
    valid_until: date
    entry_id: int = Field(
        sa_column=sa.Column(
            ledger_schema.Id, sa.ForeignKey(ledger_schema.entry.c.id), nullable=False, unique=True
        )
    )
    bucket_account_id: int = Field(sa_column=sa.Column(ledger_schema.Id, nullable=False))
    details: str = Field(default="{}", sa_column=sa.Column(sa.Text, nullable=False))
    awarded_by: str = Field(max_length=32)
    created_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))


class AwardOnce(SQLModel, table=True):
    """What a module allows only once per (program, resident): one row per once-key."""

    __tablename__ = "award_once"

    program_id: str = Field(foreign_key="program.id", primary_key=True, max_length=32)
    resident_id: str = Field(foreign_key="resident.id", primary_key=True, max_length=32)
    once_key: str = Field(primary_key=True, max_length=200)
    record_id: str = Field(max_length=RECORD_ID_MAX_LENGTH)


class AwardCounter(SQLModel, table=True):
    """Points awarded to a resident by a program in one period (``D2026-05-03``, ``M2026-05``,
    ``FY2026``), held at or under the cap by a conditional update and a CHECK."""

    __tablename__ = "award_counter"
    __table_args__ = (sa.CheckConstraint("amount >= 0 AND amount <= cap", name="within_cap"),)

    program_id: str = Field(foreign_key="program.id", primary_key=True, max_length=32)
    resident_id: str = Field(foreign_key="resident.id", primary_key=True, max_length=32)
    period: str = Field(primary_key=True, max_length=16)
    amount: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    cap: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))


class RecordIdReused(Conflict):
    code = "record_id_reused"


class AlreadyAwarded(Conflict):
    code = "already_awarded"


class CapExceeded(Conflict):
    code = "cap_exceeded"


class BudgetExhausted(Conflict):
    code = "budget_exhausted"


class OutsideProgramWindow(InvalidInput):
    code = "outside_program_window"


@dataclass(frozen=True, slots=True)
class AwardRequest:
    program_id: str
    resident_id: str
    record_id: str
    details: dict[str, Any]
    occurred_on: date | None = None


@dataclass(frozen=True, slots=True)
class AwardResult:
    award: Award
    #: True when the record was awarded before; nothing new was written.
    replayed: bool


def award(
    session: Session,
    actor: Principal,
    now: datetime,
    request: AwardRequest,
    *,
    department_id: str | None,
    held: dict[int, int] | None = None,
) -> AwardResult:
    """Award one qualifying event; see the module docstring for the order of the checks.

    ``held`` maps fiscal years to accounts holding points set aside from that year's budget
    (a bulk upload's clearing accounts, ``issuers.bulk``): the award is paid from there."""
    program = get_program(session, request.program_id, department_id=department_id)
    check_record_id(request.record_id)
    module = module_for(program.module)
    details = parse_details(module, request.details)
    details_json = json.dumps(details.model_dump(mode="json"), sort_keys=True)
    earlier = session.exec(
        select(Award).where(Award.program_id == program.id, Award.record_id == request.record_id)
    ).first()
    if earlier is not None:
        if not same_event(earlier, request.resident_id, details_json, request.occurred_on):
            raise RecordIdReused(
                f"record {request.record_id!r} was awarded for a different event; "
                "each qualifying event has its own record id",
                field="record_id",
            )
        return AwardResult(earlier, replayed=True)
    if program.status != "active":
        raise ProgramNotActive(
            f"program {program.id} is {program.status}; only an active program awards",
            status=program.status,
        )
    today = tokyo_date(now)
    occurred_on = request.occurred_on or today
    check_window(program, occurred_on, today)
    year = fiscal_year(occurred_on)
    plan = module.plan(
        program.terms(),
        parse_config(module, program.config),
        details,
        AwardEvent(request.resident_id, request.record_id, occurred_on, year),
    )
    point_type = get_point_type(session, program.point_type_id)
    open_wallet(session, point_type, request.resident_id, now)
    if held is not None:
        if year not in held:
            raise BudgetExhausted(f"nothing was set aside for FY{year}", remaining=0)
        source = held[year]
    else:
        budget = find_budget(session, program.id, year)
        if budget is None:
            raise BudgetExhausted(
                f"program {program.id} has no FY{year} budget: nothing remains", remaining=0
            )
        if budget.status != BudgetStatus.OPEN:
            raise BudgetClosed(f"the FY{year} budget of program {program.id} is closed")
        source = budget.account_id
    for once_key in plan.once:
        _claim_once(session, program.id, request.resident_id, once_key, request.record_id)
    _count_towards_caps(session, program, request.resident_id, occurred_on, year, plan.amount)
    valid_until = point_type.valid_until(today)
    if valid_until < today:
        raise Conflict(
            f"points of type {point_type.code!r} expired on {valid_until.isoformat()}; "
            "nothing can be awarded in them"
        )
    tx = LedgerTx(session.connection(), lambda: now)
    bucket = bucket_for(session, tx, point_type, request.resident_id, program.id, valid_until)
    try:
        entry = tx.post(
            NewEntry(
                [
                    Posting(source, Side.DEBIT, plan.amount),
                    Posting(bucket, Side.CREDIT, plan.amount),
                ],
                kind="award",
                description=program.name_en,
                metadata={
                    "program_id": program.id,
                    "program_ja": program.name_ja,
                    "program_en": program.name_en,
                    "record_id": request.record_id,
                    "fiscal_year": year,
                },
                namespace=f"award:{program.id}",
                idempotency_key=request.record_id,
            )
        )
    except InsufficientFunds as short:
        raise BudgetExhausted(
            f"the FY{year} budget of program {program.id} has {short.context['available']} "
            f"remaining; this award needs {plan.amount}",
            remaining=short.context["available"],
            requested=plan.amount,
        ) from None
    except AccountClosed as closed:
        if closed.account_id == source:
            raise BudgetClosed(f"the FY{year} budget of program {program.id} is closed") from None
        # The bucket: counter staff closed the wallet while this award was on its way.
        raise WalletClosed(f"the wallet of resident {request.resident_id} was closed") from None
    created = Award(
        program_id=program.id,
        record_id=request.record_id,
        resident_id=request.resident_id,
        amount=plan.amount,
        fiscal_year=year,
        occurred_on=occurred_on,
        valid_until=valid_until,
        entry_id=entry.id,
        bucket_account_id=bucket,
        details=details_json,
        awarded_by=actor.principal_id,
        created_at=now,
    )
    session.add(created)
    session.flush()
    return AwardResult(created, replayed=False)


def same_event(
    earlier: Award, resident_id: str, details_json: str, occurred_on: date | None
) -> bool:
    """Whether a report of an awarded record is the same event again (a replay) rather than
    another event under a reused record id. No date given means "the same day as before"."""
    return (
        earlier.resident_id == resident_id
        and earlier.details == details_json
        and (occurred_on is None or occurred_on == earlier.occurred_on)
    )


def check_record_id(record_id: str) -> None:
    if (
        not isinstance(record_id, str)
        or not 1 <= len(record_id) <= RECORD_ID_MAX_LENGTH
        or not record_id.isascii()
        or not record_id.isprintable()
        or " " in record_id
    ):
        raise InvalidInput(
            f"record_id is 1 to {RECORD_ID_MAX_LENGTH} printable ASCII characters, no spaces",
            field="record_id",
        )


def check_window(program: Program, occurred_on: date, today: date) -> None:
    if occurred_on > today:
        raise OutsideProgramWindow(
            f"occurred_on {occurred_on.isoformat()} is in the future", field="occurred_on"
        )
    if occurred_on < program.valid_from or (
        program.valid_until is not None and occurred_on > program.valid_until
    ):
        until = program.valid_until.isoformat() if program.valid_until else "open-ended"
        raise OutsideProgramWindow(
            f"the program runs {program.valid_from.isoformat()} to {until}; "
            f"the event was on {occurred_on.isoformat()}",
            field="occurred_on",
        )


def _claim_once(
    session: Session, program_id: str, resident_id: str, once_key: str, record_id: str
) -> None:
    taken = session.get(AwardOnce, (program_id, resident_id, once_key))
    if taken is not None:
        raise AlreadyAwarded(
            f"resident {resident_id} was awarded {once_key} by this program already "
            f"(record {taken.record_id})",
            once_key=once_key,
            record_id=taken.record_id,
        )
    session.add(
        AwardOnce(
            program_id=program_id, resident_id=resident_id, once_key=once_key, record_id=record_id
        )
    )
    session.flush()  # a concurrent award of the same key loses here and is retried


#: Creates a cap counter at 0 unless it exists (a concurrent creator's row is kept).
OPEN_COUNTER = sa.text(
    "INSERT INTO award_counter (program_id, resident_id, period, amount, cap) "
    "VALUES (:program_id, :resident_id, :period, 0, :cap) "
    "ON CONFLICT (program_id, resident_id, period) DO NOTHING"
)


def cap_periods(program: Program, occurred_on: date, year: int) -> list[tuple[str, int]]:
    """(period, cap) for each cap the program has."""
    periods = []
    if program.cap_per_day is not None:
        periods.append((f"D{occurred_on.isoformat()}", program.cap_per_day))
    if program.cap_per_month is not None:
        periods.append((f"M{occurred_on.isoformat()[:7]}", program.cap_per_month))
    if program.cap_per_fiscal_year is not None:
        periods.append((f"FY{year}", program.cap_per_fiscal_year))
    return periods


def _count_towards_caps(
    session: Session, program: Program, resident_id: str, occurred_on: date, year: int, amount: int
) -> None:
    connection = session.connection()
    for period, cap in cap_periods(program, occurred_on, year):
        key = {"program_id": program.id, "resident_id": resident_id, "period": period}
        connection.execute(OPEN_COUNTER, {**key, "cap": cap})
        counted = connection.execute(
            sa.text(
                "UPDATE award_counter SET amount = amount + :amount, cap = :cap "
                "WHERE program_id = :program_id AND resident_id = :resident_id "
                "AND period = :period AND amount + :amount <= :cap"
            ),
            {**key, "amount": amount, "cap": cap},
        )
        if counted.rowcount != 1:
            so_far = connection.execute(
                sa.text(
                    "SELECT amount FROM award_counter WHERE program_id = :program_id "
                    "AND resident_id = :resident_id AND period = :period"
                ),
                key,
            ).scalar_one()
            raise CapExceeded(
                f"the cap for {period} is {cap}; resident {resident_id} has {so_far} "
                f"from this program in it, and this award is {amount}",
                period=period,
                cap=cap,
                awarded=int(so_far),
            )


# Reading ----------------------------------------------------------------------------------


def list_awards(
    session: Session,
    program_id: str,
    *,
    fiscal_year: int | None,
    before: int | None,
    limit: int,
) -> list[Award]:
    """The program's awards, newest first, ``limit`` of them with ids below ``before``."""
    query = (
        select(Award)
        .where(Award.program_id == program_id)
        .order_by(col(Award.id).desc())
        .limit(limit)
    )
    if fiscal_year is not None:
        query = query.where(Award.fiscal_year == check_fiscal_year(fiscal_year))
    if before is not None:
        query = query.where(col(Award.id) < before)
    return list(session.exec(query))


@dataclass(frozen=True, slots=True)
class BudgetView:
    fiscal_year: int
    status: str
    #: Credited to the budget: allocations and carry-over from the year before.
    allocated: int
    awarded: int
    awards: int
    residents_awarded: int
    #: What can still be awarded.
    remaining: int


def budget_view(session: Session, program: Program, year: int, now: datetime) -> BudgetView:
    check_fiscal_year(year)
    budget: ProgramBudget | None = find_budget(session, program.id, year)
    totals = session.exec(
        select(
            func.coalesce(func.sum(Award.amount), 0),
            func.count(),
            func.count(sa.distinct(col(Award.resident_id))),
        ).where(Award.program_id == program.id, Award.fiscal_year == year)
    ).one()
    allocated = remaining = 0
    status = "none"
    if budget is not None:
        balance = LedgerTx(session.connection(), lambda: now).balance(budget.account_id)
        allocated, remaining, status = balance.credits_posted, balance.available, budget.status
    return BudgetView(
        fiscal_year=year,
        status=status,
        allocated=allocated,
        awarded=int(totals[0]),
        awards=int(totals[1]),
        residents_awarded=int(totals[2]),
        remaining=remaining,
    )
