"""The budgets report: allocated, awarded and remaining per program budget (docs/reports.md).

A program's budget for a fiscal year is a PROGRAM_BUDGET account. ``allocated`` is what was
posted to its credit (from city funding), ``drawn`` what was posted to its debit (awards, bulk
set-asides, a year-end return), ``remaining`` the balance; all by the end of ``day`` when given,
else everything posted.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date

import sqlalchemy as sa
from sqlmodel import Session, select

from issuers.programs import Program, ProgramBudget
from ledger import schema as ledger_schema
from points.reports import POSTED_PHASES, Report, cutoff_us

_BUDGET = sa.table(
    "program_budget", sa.column("account_id", sa.BigInteger), sa.column("fiscal_year", sa.Integer)
)


def budgets(session: Session, fiscal_year: int | None = None, day: date | None = None) -> Report:
    posting, entry = ledger_schema.posting, ledger_schema.entry
    query = select(ProgramBudget, Program).join(Program, Program.id == ProgramBudget.program_id)  # type: ignore[arg-type]
    if fiscal_year is not None:
        query = query.where(ProgramBudget.fiscal_year == fiscal_year)
    found = session.exec(query).all()
    accounts = [b.account_id for b, _ in found]
    sums: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    if accounts:
        totals = (
            sa.select(posting.c.account_id, posting.c.side, sa.func.sum(posting.c.amount))
            .join(entry, entry.c.id == posting.c.entry_id)
            .join(_BUDGET, _BUDGET.c.account_id == posting.c.account_id)
            .where(entry.c.phase.in_(POSTED_PHASES))
            .group_by(posting.c.account_id, posting.c.side)
        )
        if fiscal_year is not None:
            totals = totals.where(_BUDGET.c.fiscal_year == fiscal_year)
        if day is not None:
            totals = totals.where(entry.c.recorded_at_us < cutoff_us(day))
        for account_id, side, amount in session.connection().execute(totals):
            sums[int(account_id)][0 if side == 2 else 1] += int(amount)
    rows = []
    for budget, program in sorted(
        found, key=lambda f: (f[0].fiscal_year, f[1].department_id, f[1].id)
    ):
        allocated, drawn = sums[budget.account_id]
        rows.append(
            (
                budget.fiscal_year,
                program.department_id,
                program.id,
                program.budget_code or "",
                allocated,
                drawn,
                allocated - drawn,
            )
        )
    parameters = {}
    if fiscal_year is not None:
        parameters["fiscal_year"] = str(fiscal_year)
    return Report(
        "budgets",
        (
            "fiscal_year",
            "department_id",
            "program_id",
            "budget_code",
            "allocated",
            "drawn",
            "remaining",
        ),
        rows,
        parameters,
    )
