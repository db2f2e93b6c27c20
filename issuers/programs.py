"""Programs and their fiscal-year budgets (DESIGN §5).

A **program** belongs to a department and a point type; it has a module (what kind of program it
is: ``issuers.modules``), a fixed amount per qualifying event, caps per resident per day, month
and fiscal year, a validity window (dates in Asia/Tokyo) and a status::

    draft ──► active ◄──► paused
      │          │           │
      └──────────┴───────────┴──► closed      (final)

Only an active program awards. A **budget** is one ledger account per program per fiscal year
(April 1 to March 31), flagged *debits must not exceed credits*: the budget is a hard limit held
by the ledger (and its CHECK constraint), never by a Python ``if``. Money reaches it by an
*allocation* (an entry from the point type's city funding account). At year end the remainder
either **lapses** (back to city funding) or **carries over** into the next year's budget, by an
explicit decision recorded in the audit trail and as a ledger entry; the budget account is then
closed, so the ledger itself refuses any later award charged to that year.

A program may carry a **budget code** (款項目節, at most ``BUDGET_CODE_MAX`` characters): the
budget line its points are paid from at settlement. Admins set it at creation or later
(``set_budget_code``, audited as ``program.budget_code``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, Session, SQLModel, col, select

from issuers.errors import (
    BudgetClosed,
    FiscalYearNotEnded,
    FiscalYearOutsideProgram,
    ProgramNotActive,
    StatusChangeRefused,
)
from issuers.modules import ProgramTerms, canonical_config, module_for
from ledger import Entry, LedgerTx, NewEntry, Posting, Side
from ledger import schema as ledger_schema
from points import audit
from points.accounts import ACCOUNT_RULES, AccountCode
from points.auth import Principal
from points.calendar import fiscal_year, fiscal_year_end, tokyo_date
from points.errors import Conflict, InvalidInput, NotFound
from points.pointtypes import PointType, get_point_type
from points.registry import Department, new_id
from points.sqlbase import UTCDateTime

#: The longest budget code (款項目節, for example ``01-02-03-04`` or ``衛生費/保健衛生費/...``).
BUDGET_CODE_MAX = 64


class ProgramStatus(enum.StrEnum):
    DRAFT = "draft"
    ACTIVE = "active"
    PAUSED = "paused"
    CLOSED = "closed"


#: Status changes allowed: from -> the statuses it may become.
TRANSITIONS: dict[ProgramStatus, frozenset[ProgramStatus]] = {
    ProgramStatus.DRAFT: frozenset({ProgramStatus.ACTIVE, ProgramStatus.CLOSED}),
    ProgramStatus.ACTIVE: frozenset({ProgramStatus.PAUSED, ProgramStatus.CLOSED}),
    ProgramStatus.PAUSED: frozenset({ProgramStatus.ACTIVE, ProgramStatus.CLOSED}),
    ProgramStatus.CLOSED: frozenset(),
}


class BudgetStatus(enum.StrEnum):
    OPEN = "open"
    LAPSED = "lapsed"
    CARRIED_OVER = "carried_over"


class YearEndDecision(enum.StrEnum):
    LAPSE = "lapse"
    CARRY_OVER = "carry_over"


class Program(SQLModel, table=True):
    __tablename__ = "program"
    __table_args__ = (
        sa.CheckConstraint("status IN ('draft', 'active', 'paused', 'closed')", name="status"),
        sa.CheckConstraint("amount > 0", name="amount_positive"),
        sa.CheckConstraint(
            "(cap_per_day IS NULL OR cap_per_day > 0) AND "
            "(cap_per_month IS NULL OR cap_per_month > 0) AND "
            "(cap_per_fiscal_year IS NULL OR cap_per_fiscal_year > 0)",
            name="caps_positive",
        ),
        sa.CheckConstraint(
            "valid_until IS NULL OR valid_until >= valid_from", name="validity_window"
        ),
    )

    id: str = Field(primary_key=True, max_length=32)
    department_id: str = Field(foreign_key="department.id", max_length=32, index=True)
    point_type_id: str = Field(foreign_key="point_type.id", max_length=32, index=True)
    module: str = Field(max_length=32)
    name_ja: str = Field(max_length=200)
    name_en: str = Field(max_length=200)
    #: Points per qualifying event.
    amount: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    cap_per_day: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger))
    cap_per_month: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger))
    cap_per_fiscal_year: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger))
    valid_from: date
    valid_until: date | None = None
    status: str = Field(default=ProgramStatus.DRAFT, max_length=16)
    #: The module's settings, as canonical JSON (``issuers.modules`` validates them).
    config: str = Field(default="{}", sa_column=sa.Column(sa.Text, nullable=False))
    #: The budget line (款項目節) the program's points are paid from at settlement, if set.
    budget_code: str | None = Field(default=None, max_length=BUDGET_CODE_MAX)
    created_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))
    updated_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))

    def terms(self) -> ProgramTerms:
        """What the program's module may know of it (``issuers.modules``)."""
        return ProgramTerms(program_id=self.id, amount=self.amount)


class ProgramBudget(SQLModel, table=True):
    __tablename__ = "program_budget"
    __table_args__ = (
        sa.CheckConstraint("status IN ('open', 'lapsed', 'carried_over')", name="status"),
        sa.CheckConstraint("fiscal_year BETWEEN 2000 AND 2999", name="fiscal_year"),
    )

    program_id: str = Field(foreign_key="program.id", primary_key=True, max_length=32)
    fiscal_year: int = Field(primary_key=True)
    account_id: int = Field(
        sa_column=sa.Column(
            ledger_schema.Id,
            sa.ForeignKey(ledger_schema.account.c.id),
            nullable=False,
            unique=True,
        )
    )
    status: str = Field(default=BudgetStatus.OPEN, max_length=16)
    decided_at: datetime | None = Field(default=None, sa_column=sa.Column(UTCDateTime()))
    decided_by: str | None = Field(default=None, max_length=32)
    #: The ledger entry of the year-end decision (none when nothing remained).
    decision_entry_id: int | None = Field(default=None, sa_column=sa.Column(ledger_schema.Id))
    created_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))


@dataclass(frozen=True, slots=True)
class NewProgram:
    department_id: str
    point_type_id: str
    module: str
    name_ja: str
    name_en: str
    amount: int
    valid_from: date
    valid_until: date | None = None
    cap_per_day: int | None = None
    cap_per_month: int | None = None
    cap_per_fiscal_year: int | None = None
    config: dict[str, Any] | None = None
    budget_code: str | None = None


def check_budget_code(budget_code: str | None) -> str | None:
    """A budget code (款項目節) is 1 to ``BUDGET_CODE_MAX`` characters after stripping, with no
    control characters; ``None`` means none."""
    if budget_code is None:
        return None
    stripped = budget_code.strip() if isinstance(budget_code, str) else ""
    if not 1 <= len(stripped) <= BUDGET_CODE_MAX or any(
        ord(c) < 32 or 127 <= ord(c) < 160 for c in stripped
    ):
        raise InvalidInput(
            f"a budget code is 1 to {BUDGET_CODE_MAX} characters without control characters",
            field="budget_code",
        )
    return stripped


def create_program(session: Session, actor: Principal, now: datetime, new: NewProgram) -> Program:
    """A new program, in draft; its module checks ``config``."""
    if session.get(Department, new.department_id) is None:
        raise NotFound(f"no department {new.department_id}", field="department_id")
    get_point_type(session, new.point_type_id)
    module = module_for(new.module)
    budget_code = check_budget_code(new.budget_code)
    if new.valid_until is not None and new.valid_until < new.valid_from:
        raise InvalidInput("valid_until is before valid_from", field="valid_until")
    for name in ("cap_per_day", "cap_per_month", "cap_per_fiscal_year"):
        cap = getattr(new, name)
        if cap is not None and cap < new.amount:
            raise InvalidInput(
                f"{name} ({cap}) is less than one award ({new.amount}): nothing could be awarded",
                field=name,
            )
    program = Program(
        id=new_id("prg"),
        department_id=new.department_id,
        point_type_id=new.point_type_id,
        module=module.kind,
        name_ja=new.name_ja,
        name_en=new.name_en,
        amount=new.amount,
        cap_per_day=new.cap_per_day,
        cap_per_month=new.cap_per_month,
        cap_per_fiscal_year=new.cap_per_fiscal_year,
        valid_from=new.valid_from,
        valid_until=new.valid_until,
        status=ProgramStatus.DRAFT,
        config=canonical_config(module, new.config or {}),
        budget_code=budget_code,
        created_at=now,
        updated_at=now,
    )
    session.add(program)
    audit.record(
        session,
        actor=actor,
        action="program.create",
        object_type="program",
        object_id=program.id,
        at=now,
        details={
            "department_id": new.department_id,
            "module": module.kind,
            "amount": new.amount,
            "budget_code": budget_code,
        },
    )
    session.flush()
    return program


def get_program(session: Session, program_id: str, *, department_id: str | None = None) -> Program:
    """The program; with ``department_id``, only if it is that department's (else not found:
    a department does not learn that another's program exists)."""
    program = session.get(Program, program_id)
    if program is None or (department_id is not None and program.department_id != department_id):
        raise NotFound(f"no program {program_id}", object_id=program_id)
    return program


def list_programs(
    session: Session, *, department_id: str | None, after: str | None, limit: int
) -> list[Program]:
    query = select(Program).order_by(col(Program.id)).limit(limit)
    if department_id is not None:
        query = query.where(Program.department_id == department_id)
    if after is not None:
        query = query.where(col(Program.id) > after)
    return list(session.exec(query))


def change_status(
    session: Session,
    actor: Principal,
    now: datetime,
    program_id: str,
    status: ProgramStatus,
    *,
    reason: str,
) -> Program:
    program = session.exec(
        select(Program).where(Program.id == program_id).with_for_update()
    ).first()
    if program is None:
        raise NotFound(f"no program {program_id}", object_id=program_id)
    before = ProgramStatus(program.status)
    if status not in TRANSITIONS[before]:
        raise StatusChangeRefused(f"a {before} program cannot become {status}", status=str(before))
    program.status = status
    program.updated_at = now
    session.add(program)
    audit.record(
        session,
        actor=actor,
        action="program.status",
        object_type="program",
        object_id=program_id,
        at=now,
        reason=reason,
        details={"from": str(before), "to": str(status)},
    )
    session.flush()
    return program


def set_budget_code(
    session: Session,
    actor: Principal,
    now: datetime,
    program_id: str,
    budget_code: str | None,
    *,
    reason: str,
) -> Program:
    """Set or clear (``None``) the program's budget code (款項目節), audited with the values
    before and after; the same code again changes nothing and records nothing."""
    code = check_budget_code(budget_code)
    if not reason.strip():
        raise InvalidInput("say why the budget code changes", field="reason")
    program = session.exec(
        select(Program).where(Program.id == program_id).with_for_update()
    ).first()
    if program is None:
        raise NotFound(f"no program {program_id}", object_id=program_id)
    if program.budget_code == code:
        return program
    before = program.budget_code
    program.budget_code = code
    program.updated_at = now
    session.add(program)
    audit.record(
        session,
        actor=actor,
        action="program.budget_code",
        object_type="program",
        object_id=program_id,
        at=now,
        reason=reason.strip(),
        details={"before": before, "after": code},
    )
    session.flush()
    return program


# Budgets ---------------------------------------------------------------------------------


def budget_account(
    session: Session, tx: LedgerTx, program: Program, fiscal_year: int, now: datetime
) -> ProgramBudget:
    """The program's budget for ``fiscal_year``, created (empty) when it does not exist yet."""
    budget = session.get(ProgramBudget, (program.id, fiscal_year))
    if budget is not None:
        return budget
    point_type = session.get(PointType, program.point_type_id)
    assert point_type is not None
    side, flags = ACCOUNT_RULES[AccountCode.PROGRAM_BUDGET]
    account = tx.create_account(
        ledger_id=point_type.ledger_id,
        code=int(AccountCode.PROGRAM_BUDGET),
        normal_side=side,
        owner_ref=f"{program.id}:FY{fiscal_year}",
        flags=flags,
    )
    budget = ProgramBudget(
        program_id=program.id, fiscal_year=fiscal_year, account_id=account.id, created_at=now
    )
    session.add(budget)
    # A concurrent creator loses on the primary key; the unit of work is retried and finds it.
    session.flush()
    return budget


def find_budget(session: Session, program_id: str, fiscal_year: int) -> ProgramBudget | None:
    return session.get(ProgramBudget, (program_id, fiscal_year))


def check_fiscal_year(fiscal_year: int) -> int:
    if type(fiscal_year) is not int or not 2000 <= fiscal_year <= 2999:
        raise InvalidInput("fiscal_year is a year such as 2026 (April 2026 to March 2027)")
    return fiscal_year


def years_of_program(program: Program, now: datetime) -> range:
    """The fiscal years a budget may be allocated for: from the year the program starts to the
    year it ends, and no later than next year (a budget is planned a year ahead at most)."""
    first = fiscal_year(program.valid_from)
    last = fiscal_year(tokyo_date(now)) + 1
    if program.valid_until is not None:
        last = min(last, fiscal_year(program.valid_until))
    return range(first, last + 1)


def check_year_of_program(program: Program, year: int, now: datetime) -> None:
    years = years_of_program(program, now)
    if year not in years:
        span = (
            "none yet"
            if not years
            else f"FY{years.start}"
            if len(years) == 1
            else f"FY{years.start} to FY{years[-1]}"
        )
        raise FiscalYearOutsideProgram(
            f"FY{year} is outside the program's years ({span})",
            field="fiscal_year",
            first_year=years.start if years else None,
            last_year=years[-1] if years else None,
        )


#: The kinds of ledger entry that credit a budget with an allocation: finance's allocations and
#: the carry-over of the year before. A budget is credited otherwise too (a bulk upload returns
#: what its clearing account did not award: ``bulk_return``), but that is the budget's own
#: points coming back, not an allocation (``issuers.awards.budget_view``).
ALLOCATING_KINDS = ("allocation", "budget_carry_over")


def allocate(
    session: Session,
    actor: Principal,
    now: datetime,
    program_id: str,
    fiscal_year: int,
    amount: int,
    *,
    reason: str,
) -> Entry:
    """Move ``amount`` from the city's funding to the program's budget for the year."""
    check_fiscal_year(fiscal_year)
    if type(amount) is not int or amount <= 0:
        raise InvalidInput("amount is a positive integer", field="amount")
    program = get_program(session, program_id)
    if program.status == ProgramStatus.CLOSED:
        raise ProgramNotActive(f"program {program_id} is closed", status=program.status)
    check_year_of_program(program, fiscal_year, now)
    point_type = get_point_type(session, program.point_type_id)
    tx = LedgerTx(session.connection(), lambda: now)
    budget = budget_account(session, tx, program, fiscal_year, now)
    if budget.status != BudgetStatus.OPEN:
        raise BudgetClosed(
            f"the FY{fiscal_year} budget of program {program_id} was closed ({budget.status})"
        )
    entry = tx.post(
        NewEntry(
            [
                Posting(point_type.city_account_id, Side.DEBIT, amount),
                Posting(budget.account_id, Side.CREDIT, amount),
            ],
            kind="allocation",
            description=f"FY{fiscal_year} {program.name_en}",
            metadata={"program_id": program.id, "fiscal_year": fiscal_year},
        )
    )
    audit.record(
        session,
        actor=actor,
        action="budget.allocate",
        object_type="program",
        object_id=program.id,
        at=now,
        reason=reason,
        details={"fiscal_year": fiscal_year, "amount": amount, "entry_id": entry.id},
    )
    return entry


def close_budget(
    session: Session,
    actor: Principal,
    now: datetime,
    program_id: str,
    fiscal_year: int,
    decision: YearEndDecision,
    *,
    reason: str,
) -> ProgramBudget:
    """The year-end decision: the remainder lapses to city funding or carries over into the
    next year's budget. Only once the fiscal year has ended (in Tokyo), and only once."""
    check_fiscal_year(fiscal_year)
    decision = YearEndDecision(decision)
    program = get_program(session, program_id)
    if tokyo_date(now) <= fiscal_year_end(fiscal_year):
        raise FiscalYearNotEnded(
            f"FY{fiscal_year} runs until {fiscal_year_end(fiscal_year).isoformat()}; its budget "
            "is decided after that"
        )
    budget = session.exec(
        select(ProgramBudget)
        .where(ProgramBudget.program_id == program_id, ProgramBudget.fiscal_year == fiscal_year)
        .with_for_update()
    ).first()
    if budget is None:
        raise NotFound(f"program {program_id} has no FY{fiscal_year} budget")
    if budget.status != BudgetStatus.OPEN:
        raise BudgetClosed(f"the FY{fiscal_year} budget was decided already ({budget.status})")
    point_type = get_point_type(session, program.point_type_id)
    tx = LedgerTx(session.connection(), lambda: now)
    # Locked: an award committing meanwhile cannot change what remains under our decision.
    balance = tx.lock_account(budget.account_id).balance
    if balance.debits_pending:
        raise Conflict(
            f"the FY{fiscal_year} budget has {balance.debits_pending} held for awards in "
            "progress; decide after they finish"
        )
    remaining = balance.available
    entry_id: int | None = None
    if remaining > 0:
        if decision is YearEndDecision.LAPSE:
            target, kind = point_type.city_account_id, "budget_lapse"
        else:
            following = budget_account(session, tx, program, fiscal_year + 1, now)
            if following.status != BudgetStatus.OPEN:
                raise BudgetClosed(
                    f"the FY{fiscal_year + 1} budget was decided already ({following.status}); "
                    "nothing can be carried into it"
                )
            target, kind = following.account_id, "budget_carry_over"
        entry_id = tx.post(
            NewEntry(
                [
                    Posting(budget.account_id, Side.DEBIT, remaining),
                    Posting(target, Side.CREDIT, remaining),
                ],
                kind=kind,
                description=f"FY{fiscal_year} {program.name_en}: {decision}",
                metadata={"program_id": program.id, "fiscal_year": fiscal_year},
            )
        ).id
    tx.close_account(budget.account_id)
    budget.status = (
        BudgetStatus.LAPSED if decision is YearEndDecision.LAPSE else BudgetStatus.CARRIED_OVER
    )
    budget.decided_at = now
    budget.decided_by = actor.principal_id
    budget.decision_entry_id = entry_id
    session.add(budget)
    audit.record(
        session,
        actor=actor,
        action=f"budget.{decision}",
        object_type="program",
        object_id=program.id,
        at=now,
        reason=reason,
        details={"fiscal_year": fiscal_year, "remaining": remaining, "entry_id": entry_id},
    )
    session.flush()
    return budget
