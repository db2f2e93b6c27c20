"""Helpers for the earning tests: a department, residents, a point type and programs, built with
the services directly on a migrated database (``engine`` fixture from conftest).

``Earning(engine, clock)`` wraps the units of work so a test reads like the story it tells::

    earning = Earning(engine, clock)
    pt = earning.point_type()
    program = earning.program(
        pt, module="health_checkup", config={"checkup_types": ["specific_health_checkup"]}
    )
    earning.allocate(program, 2026, 10_000)
    resident = earning.resident()
    result = earning.award(program, resident, "REC-1", {"checkup_type": "specific_health_checkup"})
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import date, datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, SQLModel, col, select

from issuers import awards, programs
from issuers.programs import Program, ProgramStatus
from ledger import Balance, Entry, Ledger, LedgerTx, Report
from ledger import schema as ledger_schema
from points import access, people, pointtypes, spending, wallets
from points.pointtypes import NewPointType, PointType
from points.registry import Department, ResidentStatus
from points.uow import unit_of_work

T = TypeVar("T")
ACTOR = access.SYSTEM
_numbers = itertools.count(1)


class Earning:
    def __init__(self, engine: Engine, clock: Callable[[], datetime]) -> None:
        self.engine = engine
        self.clock = clock
        self._department: Department | None = None

    def write(self, work: Callable[[Session], T]) -> T:
        return unit_of_work(self.engine, work)

    def read(self, work: Callable[[Session], T]) -> T:
        return unit_of_work(self.engine, work, read_only=True)

    # Setting up ------------------------------------------------------------------------------

    def department(self) -> Department:
        if self._department is None:
            number = next(_numbers)
            self._department = self.write(
                lambda s: people.create_department(
                    s,
                    ACTOR,
                    self.clock(),
                    code=f"dep{number}",
                    name_ja="健康推進課",
                    name_en="Health",
                )
            )
        return self._department

    def other_department(self) -> Department:
        number = next(_numbers)
        return self.write(
            lambda s: people.create_department(
                s, ACTOR, self.clock(), code=f"other{number}", name_ja="環境政策課", name_en="Env"
            )
        )

    def resident(self) -> str:
        return self.write(
            lambda s: people.create_resident(
                s,
                ACTOR,
                self.clock(),
                name=None,
                address_number=None,
                birth_year=None,
                verified=False,
            )
        ).id

    def point_type(self, **policy: Any) -> PointType:
        fields: dict[str, Any] = {
            "code": f"pt{next(_numbers)}",
            "name_ja": "狛江ポイント",
            "name_en": "Komae points",
        }
        fields.update(policy)
        return self.write(
            lambda s: pointtypes.create_point_type(s, ACTOR, self.clock(), NewPointType(**fields))
        )

    def program(
        self,
        point_type: PointType,
        *,
        module: str = "fixed_award",
        amount: int = 100,
        activate: bool = True,
        department_id: str | None = None,
        valid_from: date = date(2026, 4, 1),
        **options: Any,
    ) -> Program:
        new = programs.NewProgram(
            department_id=department_id or self.department().id,
            point_type_id=point_type.id,
            module=module,
            name_ja="特定健診",
            name_en="Health checkup",
            amount=amount,
            valid_from=valid_from,
            **options,
        )
        created = self.write(lambda s: programs.create_program(s, ACTOR, self.clock(), new))
        if activate:
            created = self.write(
                lambda s: programs.change_status(
                    s, ACTOR, self.clock(), created.id, ProgramStatus.ACTIVE, reason="start"
                )
            )
        return created

    def allocate(self, program: Program, fiscal_year: int, amount: int) -> Entry:
        return self.write(
            lambda s: programs.allocate(
                s, ACTOR, self.clock(), program.id, fiscal_year, amount, reason="budget"
            )
        )

    # Acting ----------------------------------------------------------------------------------

    def award(
        self,
        program: Program,
        resident_id: str,
        record_id: str,
        details: dict[str, Any] | None = None,
        *,
        occurred_on: date | None = None,
    ) -> awards.AwardResult:
        request = awards.AwardRequest(
            program.id, resident_id, record_id, details or {}, occurred_on=occurred_on
        )
        return self.write(
            lambda s: awards.award(
                s, ACTOR, self.clock(), request, department_id=program.department_id
            )
        )

    def spend(self, point_type: PointType, request: spending.Spend) -> Entry:
        return self.write(lambda s: spending.spend(s, _fresh(s, point_type), request, self.clock()))

    # Reading ---------------------------------------------------------------------------------

    def buckets(self, point_type: PointType, resident_id: str) -> list[wallets.Bucket]:
        return self.read(lambda s: wallets.buckets(s, resident_id, point_type.id))

    def balance(self, account_id: int) -> Balance:
        return self.read(lambda s: LedgerTx(s.connection(), self.clock).balance(account_id))

    def budget(self, program: Program, fiscal_year: int) -> awards.BudgetView:
        return self.read(
            lambda s: awards.budget_view(
                s, programs.get_program(s, program.id), fiscal_year, self.clock()
            )
        )

    # Added for tests/test_earning.py: more acts, and what the database holds ----------------

    def set_program_status(self, program: Program, status: ProgramStatus) -> Program:
        return self.write(
            lambda s: programs.change_status(
                s, ACTOR, self.clock(), program.id, status, reason="test"
            )
        )

    def set_resident_status(self, resident_id: str, status: ResidentStatus) -> None:
        self.write(
            lambda s: people.set_resident_status(
                s, ACTOR, self.clock(), resident_id, status=status, reason="test"
            )
        )

    def close_budget(
        self, program: Program, fiscal_year: int, decision: programs.YearEndDecision
    ) -> programs.ProgramBudget:
        return self.write(
            lambda s: programs.close_budget(
                s, ACTOR, self.clock(), program.id, fiscal_year, decision, reason="year end"
            )
        )

    def budget_row(self, program: Program, fiscal_year: int) -> programs.ProgramBudget | None:
        return self.read(lambda s: programs.find_budget(s, program.id, fiscal_year))

    def account_row(self, account_id: int) -> sa.Row[Any]:
        """The ledger account's row (totals, ``closed``)."""
        table = ledger_schema.account
        return self.read(
            lambda s: s.connection().execute(sa.select(table).where(table.c.id == account_id)).one()
        )

    def awards_of(self, program: Program) -> list[awards.Award]:
        return self.read(
            lambda s: list(
                s.exec(
                    select(awards.Award)
                    .where(awards.Award.program_id == program.id)
                    .order_by(col(awards.Award.id))
                )
            )
        )

    def counter(self, program: Program, resident_id: str, period: str) -> int | None:
        """The resident's cap counter for ``period`` (``D2026-05-10``, ``M2026-05``,
        ``FY2026``), or None when there is no row."""
        found = self.read(lambda s: s.get(awards.AwardCounter, (program.id, resident_id, period)))
        return None if found is None else found.amount

    def count(self, table: str, **where: Any) -> int:
        """Rows of ``table`` (an application or ledger table) matching ``where``."""
        found = SQLModel.metadata.tables.get(table)
        chosen = found if found is not None else ledger_schema.metadata.tables[table]
        query = sa.select(sa.func.count()).select_from(chosen)
        for column, value in where.items():
            query = query.where(chosen.c[column] == value)
        return int(self.read(lambda s: s.connection().execute(query).scalar_one()))

    def written(self) -> dict[str, list[tuple[Any, ...]]]:
        """Everything an award, an allocation or a year-end decision can write, as sorted rows:
        compare two of these to show that a refused act wrote nothing."""
        tables = {
            "ledger": ledger_schema.ledger,
            "ledger_account": ledger_schema.account,
            "ledger_entry": ledger_schema.entry,
            **{
                name: SQLModel.metadata.tables[name]
                for name in (
                    "award",
                    "award_once",
                    "award_counter",
                    "wallet",
                    "wallet_bucket",
                    "program_budget",
                    "program",
                    "point_type",
                    "audit_event",
                    "volunteer_event",
                    "event_attendance",
                )
            },
        }

        def work(session: Session) -> dict[str, list[tuple[Any, ...]]]:
            connection = session.connection()
            return {
                name: sorted((tuple(row) for row in connection.execute(sa.select(table))), key=repr)
                for name, table in tables.items()
            }

        return self.read(work)

    def verify(self) -> Report:
        """The ledger's own check of every total and the entries' balance."""
        with Ledger(self.engine, clock=self.clock) as checker:
            return checker.verify(unsealed_grace_seconds=10**9)


def _fresh(session: Session, point_type: PointType) -> PointType:
    found = session.get(PointType, point_type.id)
    assert found is not None
    return found
