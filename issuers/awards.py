"""Awards: a department reports a qualifying event; points move from the program's budget to
the resident's wallet, in one transaction with everything that limits them.

One award, in order (all in the caller's unit of work, so all or nothing):

1. The program must be the department's (else not found); the resident is named by their
   pseudonymous id or by their address number (宛名番号, looked up: ``points.people``), and
   only the id is stored; the record id is printable ASCII; the module checks the details the
   department sent.
2. The department's ``record_id`` names the award: the same record again returns the first award
   (``replayed``); the same record for another resident or other details is
   ``record_id_reused``. A unique (program, record) constraint holds that against races.
3. The award rules (``issuers.eligibility.decide``, shared with bulk uploads): the program is
   active, the event's date (``occurred_on``, default today in Tokyo) is in its window, the
   module plans the amount and the *once-keys*, the resident may receive points, and neither a
   once-key nor a cap stands in the way. Its fiscal year picks the budget.
4. Each once-key becomes a row under a unique constraint, and the caps per resident per day,
   month and fiscal year are **counter rows** raised conditionally (``amount + x <= cap``, and
   a CHECK holds ``amount <= cap``), so concurrent awards cannot beat either.
5. The ledger entry (``award_entry``, shared with bulk batches) debits the fiscal year's budget
   and credits the wallet's bucket for (program, valid-until date of points earned today). The
   budget's flag refuses an overspend (``budget_exhausted``, saying how much remains); the
   entry's idempotency key is the record id in the program's namespace.

Races between concurrent awards lose on a unique constraint; the unit of work is then run again
and meets the winner's rows, giving a clean answer (see ``points.uow.RACE_CONSTRAINTS``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, Session, SQLModel, col, func, select

from issuers.eligibility import (
    CapPeriod,
    Claimed,
    Decision,
    OnceClaim,
    Parties,
    check_caps,
    decide,
)
from issuers.errors import BudgetClosed, BudgetExhausted, RecordIdReused
from issuers.modules import ModuleInput, module_for, parse_config, parse_details
from issuers.programs import (
    ALLOCATING_KINDS,
    BudgetStatus,
    Program,
    ProgramBudget,
    check_fiscal_year,
    find_budget,
    get_program,
)
from ledger import LedgerTx, NewEntry, Posting, Side
from ledger import schema as ledger_schema
from ledger.errors import AccountClosed, InsufficientFunds
from points.auth import Principal
from points.calendar import tokyo_date
from points.errors import InvalidInput, WalletClosed
from points.people import resident_id_of
from points.pointtypes import get_point_type
from points.sqlbase import UTCDateTime
from points.wallets import bucket_for, create_wallet, receiving_wallet

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


@dataclass(frozen=True, slots=True)
class AwardRequest:
    program_id: str
    #: The resident, by pseudonymous id or (instead) by ``address_number``: exactly one.
    resident_id: str | None
    record_id: str
    details: dict[str, Any]
    occurred_on: date | None = None
    #: The resident's address number (宛名番号), when the department names them by it.
    address_number: str | None = None


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
    paid_from: Mapping[int, int] | None = None,
) -> AwardResult:
    """Award one qualifying event; see the module docstring for the order of the checks.

    ``paid_from`` maps fiscal years to the accounts that pay the award instead of that year's
    budget: the clearing accounts a bulk upload set its file's total aside in (``issuers.bulk``).
    """
    program = get_program(session, request.program_id, department_id=department_id)
    resident_id = resident_id_of(
        session, resident_id=request.resident_id, address_number=request.address_number
    )
    check_record_id(request.record_id)
    module = module_for(program.module)
    details = parse_details(module, request.details)
    details_json = canonical_details(details)
    earlier = session.exec(
        select(Award).where(Award.program_id == program.id, Award.record_id == request.record_id)
    ).first()
    if earlier is not None:
        if not same_event(earlier, resident_id, details_json, request.occurred_on):
            raise RecordIdReused(
                f"record {request.record_id!r} was awarded for a different event; "
                "each qualifying event has its own record id",
                field="record_id",
            )
        return AwardResult(earlier, replayed=True)
    today = tokyo_date(now)
    point_type = get_point_type(session, program.point_type_id)
    resident_status, wallet = receiving_wallet(session, point_type, resident_id)
    decision = decide(
        program,
        module,
        parse_config(module, program.config),
        details,
        resident_id=resident_id,
        record_id=request.record_id,
        occurred_on=request.occurred_on,
        today=today,
        valid_until=point_type.valid_until(today),
        parties=Parties(resident_status, wallet.status if wallet is not None else None),
        claimed=lambda once, periods: _claimed(session, program.id, resident_id, once, periods),
    )
    if wallet is None:
        create_wallet(session, point_type, resident_id, now)
    year = decision.fiscal_year
    if paid_from is not None:
        if year not in paid_from:
            raise BudgetExhausted(f"nothing was set aside for FY{year}", remaining=0)
        source = paid_from[year]
    else:
        budget = find_budget(session, program.id, year)
        if budget is None:
            raise BudgetExhausted(
                f"program {program.id} has no FY{year} budget: nothing remains", remaining=0
            )
        if budget.status != BudgetStatus.OPEN:
            raise BudgetClosed(f"the FY{year} budget of program {program.id} is closed")
        source = budget.account_id
    for once_key in decision.once_keys:
        _claim_once(session, program.id, resident_id, once_key, request.record_id)
    _count_towards_caps(session, program.id, resident_id, decision)
    valid_until = point_type.valid_until(today)
    tx = LedgerTx(session.connection(), lambda: now)
    bucket = bucket_for(session, tx, point_type, resident_id, program.id, valid_until)
    try:
        entry = tx.post(
            award_entry(program, request.record_id, year, decision.amount, source, bucket)
        )
    except InsufficientFunds as short:
        raise BudgetExhausted(
            f"the FY{year} budget of program {program.id} has {short.context['available']} "
            f"remaining; this award needs {decision.amount}",
            remaining=short.context["available"],
            requested=decision.amount,
        ) from None
    except AccountClosed as closed:
        if closed.account_id == source:
            raise BudgetClosed(f"the FY{year} budget of program {program.id} is closed") from None
        # The bucket: counter staff closed the wallet while this award was on its way.
        raise WalletClosed(f"the wallet of resident {resident_id} was closed") from None
    created = Award(
        program_id=program.id,
        record_id=request.record_id,
        resident_id=resident_id,
        amount=decision.amount,
        fiscal_year=year,
        occurred_on=decision.occurred_on,
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


def award_entry(
    program: Program, record_id: str, fiscal_year: int, amount: int, source: int, bucket: int
) -> NewEntry:
    """The ledger entry of an award, for single awards and bulk batches alike: ``amount`` from
    ``source`` (the fiscal year's budget, or an upload's clearing account) to the resident's
    ``bucket``, idempotent on the record id in the program's namespace."""
    return NewEntry(
        [Posting(source, Side.DEBIT, amount), Posting(bucket, Side.CREDIT, amount)],
        kind="award",
        description=program.name_en,
        metadata={
            "program_id": program.id,
            "program_ja": program.name_ja,
            "program_en": program.name_en,
            "record_id": record_id,
            "fiscal_year": fiscal_year,
        },
        namespace=f"award:{program.id}",
        idempotency_key=record_id,
    )


def canonical_details(details: ModuleInput) -> str:
    """An award's details as stored (and compared, to tell a replay from a reused record id)."""
    return json.dumps(details.model_dump(mode="json"), sort_keys=True)


def same_event(earlier: Any, resident_id: str, details_json: str, occurred_on: date | None) -> bool:
    """Whether a report of an awarded record (an ``Award``, or a row with its resident, details
    and date) is the same event again (a replay) rather than another event under a reused
    record id. No date given means "the same day as before"."""
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


def _claimed(
    session: Session,
    program_id: str,
    resident_id: str,
    once_keys: Sequence[str],
    periods: Sequence[CapPeriod],
) -> Claimed:
    """What is claimed already of these once-keys and cap periods (for ``decide``)."""
    once = {}
    for once_key in once_keys:
        taken = session.get(AwardOnce, (program_id, resident_id, once_key))
        if taken is not None:
            once[once_key] = OnceClaim(taken.record_id)
    counted = {}
    if periods:
        rows = session.exec(
            select(col(AwardCounter.period), col(AwardCounter.amount)).where(
                AwardCounter.program_id == program_id,
                AwardCounter.resident_id == resident_id,
                col(AwardCounter.period).in_([period for period, _cap in periods]),
            )
        )
        counted = {period: int(amount) for period, amount in rows}
    return Claimed(once=once, counted=counted)


def _claim_once(
    session: Session, program_id: str, resident_id: str, once_key: str, record_id: str
) -> None:
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
#: Counts an award towards a cap: only while it stays within the cap (a bulk batch omits the
#: condition and lets the CHECK ``amount <= cap`` refuse the whole batch instead).
RAISE_COUNTER = (
    "UPDATE award_counter SET amount = amount + :amount, cap = :cap "
    "WHERE program_id = :program_id AND resident_id = :resident_id AND period = :period"
)


def _count_towards_caps(
    session: Session, program_id: str, resident_id: str, decision: Decision
) -> None:
    """Raise the cap counters, each only if it stays within its cap: an award that committed
    since ``decide`` read them is counted here, and the cap rule is applied to what it left."""
    connection = session.connection()
    for period, cap in decision.cap_periods:
        key = {"program_id": program_id, "resident_id": resident_id, "period": period}
        connection.execute(OPEN_COUNTER, {**key, "cap": cap})
        counted = connection.execute(
            sa.text(RAISE_COUNTER + " AND amount + :amount <= :cap"),
            {**key, "amount": decision.amount, "cap": cap},
        )
        if counted.rowcount != 1:
            so_far = connection.execute(
                sa.text(
                    "SELECT amount FROM award_counter WHERE program_id = :program_id "
                    "AND resident_id = :resident_id AND period = :period"
                ),
                key,
            ).scalar_one()
            check_caps([(period, cap)], {period: int(so_far)}, decision.amount)
            raise AssertionError("a counter refused an award within its cap")


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
    #: Credited to the budget by allocations and carry-over from the year before; not what bulk
    #: uploads set aside and returned (so allocated - awarded == remaining once no upload is
    #: in progress: what an upload has set aside and not yet awarded is in neither).
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
        remaining, status = balance.available, budget.status
        allocated = allocated_to(session, budget.account_id)
    return BudgetView(
        fiscal_year=year,
        status=status,
        allocated=allocated,
        awarded=int(totals[0]),
        awards=int(totals[1]),
        residents_awarded=int(totals[2]),
        remaining=remaining,
    )


def allocated_to(session: Session, budget_account_id: int) -> int:
    """What allocations credited the budget (``issuers.programs.ALLOCATING_KINDS``). Its
    ``credits_posted`` counts more: the points a bulk upload set aside and handed back."""
    posting, entry = ledger_schema.posting, ledger_schema.entry
    total = session.execute(
        sa.select(sa.func.coalesce(sa.func.sum(posting.c.amount), 0))
        .select_from(posting)
        .join(entry, entry.c.id == posting.c.entry_id)
        .where(
            posting.c.account_id == budget_account_id,
            posting.c.side == int(Side.CREDIT),
            entry.c.kind.in_(ALLOCATING_KINDS),
        )
    ).scalar_one()
    return int(total)
