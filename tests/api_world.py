"""A populated "world" for the HTTP API tests: one principal of every kind, each with a token.

``open_world(engine, clock, database_url)`` builds, with the services directly (the way the CLI
bootstraps the first admin), on a freshly migrated database:

* staff: an admin, a finance auditor, a counter clerk;
* two departments (``a``, ``b``), each with an issuer;
* two merchants (``a``, ``b``), each with a member of merchant staff;
* two residents with a wallet token: one verified at the counter (with personal data), one
  self-enrolled (no personal data);
* a small ledger (two accounts, one entry) so that the finance reads have something to show,
  and (optionally) one recorded verify run;

and yields a ``World`` holding the app, a ``TestClient``, and an ``Actor`` (ids and token) per
principal. Test modules wrap it in their own fixture::

    @pytest.fixture
    def world(engine, clock, database_url):
        with open_world(engine, clock, database_url) as built:
            yield built

For a world shared by a whole module (one per backend), a module-scoped fixture uses
``world_on_new_database(backend, request, tmp_path)``, which takes a database from conftest's
migrated templates.

The ``fresh_*`` helpers create throwaway objects for tests that change state, so that a test
never spoils the shared principals for the next one.
"""

from __future__ import annotations

import itertools
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session

import ledger
from api.app import create_app
from issuers import awards, events, programs
from ledger import AccountFlags, Ledger, NewEntry, Posting, Side
from points import access, keys, people, pointtypes
from points.auth import Role
from points.pointtypes import NewPointType
from points.registry import StaffRole
from points.settings import Settings
from points.uow import unit_of_work
from points.verification import verify_and_record

T = TypeVar("T")

PROBLEM_JSON = "application/problem+json"
PROBLEM_FIELDS = ("type", "title", "status", "detail", "code", "request_id")

#: The verified resident's personal data: distinctive values to look for where they must not be.
RESIDENT_NAME = "狛江 花子テスト"
RESIDENT_ADDRESS_NUMBER = "8642097531"
RESIDENT_BIRTH_YEAR = 1948

#: Tables an API call may write to; ``World.snapshot`` counts their rows.
WRITABLE_TABLES = (
    "audit_event",
    "department",
    "merchant",
    "resident",
    "staff",
    "api_token",
    "enrolment_code",
    "device_code",
    "verify_run",
    "point_type",
    "program",
    "program_budget",
    "award",
    "award_once",
    "award_counter",
    "wallet",
    "wallet_bucket",
    "spend_return",
    "ledger_entry",
    "volunteer_event",
    "event_attendance",
    "used_token",
    "merchant_settings",
    "merchant_point_type",
    "merchant_payable",
    "till",
    "payment_request",
    "pay_code",
    "resident_pay_settings",
    "payment",
    "payment_refund",
    "payment_event",
    "card",
    "pin_attempt",
    "card_policy",
    "card_day",
    "card_shop_day",
    "catalog_item",
    "catalog_image",
    "catalog_stock_change",
    "exchange",
    "exchange_allowance",
)

#: The world's point type, and the fiscal year its programs are funded for.
POINT_TYPE_CODE = "pt"
FISCAL_YEAR = 2026
WORLD_BUDGET = 1_000_000
WORLD_AWARD = 100

_serial = itertools.count(1)


def unique(prefix: str) -> str:
    """A short unique lowercase code (department codes, categories, names)."""
    return f"{prefix}-{next(_serial)}-{uuid.uuid4().hex[:6]}"


def unique_address_number() -> str:
    return str(1_000_000_000 + uuid.uuid4().int % 8_999_999_999)


@dataclass(frozen=True)
class Actor:
    """One principal of the world and a bearer token for it."""

    name: str
    role: Role
    id: str
    token: str
    token_id: str
    merchant_id: str | None = None
    department_id: str | None = None

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class World:
    engine: Engine
    clock: Callable[[], datetime]
    app: FastAPI
    client: TestClient
    actors: dict[str, Actor]
    departments: dict[str, str]
    merchants: dict[str, str]
    ledger_id: int
    account_ids: list[int]
    entry_id: int
    point_type_id: str
    #: An active fixed-award program per department (``a``, ``b``), funded for FISCAL_YEAR.
    programs: dict[str, str]

    # The principals by name --------------------------------------------------------------

    @property
    def admin(self) -> Actor:
        return self.actors["admin"]

    @property
    def finance(self) -> Actor:
        return self.actors["finance"]

    @property
    def counter(self) -> Actor:
        return self.actors["counter"]

    @property
    def resident(self) -> Actor:
        """The verified resident (with personal data)."""
        return self.actors["resident"]

    @property
    def resident_self(self) -> Actor:
        """The self-enrolled resident (no personal data)."""
        return self.actors["resident_self"]

    def of_role(self, role: Role) -> list[Actor]:
        return [actor for actor in self.actors.values() if actor.role is role]

    # Direct access to the services ------------------------------------------------------

    def write(self, work: Callable[[Session], T]) -> T:
        return unit_of_work(self.engine, work)

    def read(self, work: Callable[[Session], T]) -> T:
        return unit_of_work(self.engine, work, read_only=True)

    def now(self) -> datetime:
        return self.clock()

    def snapshot(self) -> dict[str, int]:
        """Row counts of every table an API call may write to."""
        with self.engine.connect() as connection:
            return {
                table: int(connection.exec_driver_sql(f"SELECT COUNT(*) FROM {table}").scalar_one())
                for table in WRITABLE_TABLES
            }

    def audit_count(self) -> int:
        with self.engine.connect() as connection:
            return int(connection.exec_driver_sql("SELECT COUNT(*) FROM audit_event").scalar_one())

    def last_audit(self) -> dict[str, Any]:
        with self.engine.connect() as connection:
            row = (
                connection.execute(
                    sa.text(
                        "SELECT sequence, actor_role, actor_id, action, object_type, object_id"
                        " FROM audit_event ORDER BY sequence DESC LIMIT 1"
                    )
                )
                .mappings()
                .one()
            )
            return dict(row)

    # Throwaway objects for tests that change state --------------------------------------

    def fresh_resident(self, *, verified: bool = True, with_token: bool = False) -> Actor:
        """A new resident (verified: with personal data); ``token`` is empty unless asked."""
        now = self.now()

        def work(session: Session) -> Actor:
            resident = people.create_resident(
                session,
                access.SYSTEM,
                now,
                name="仮 住民" if verified else None,
                address_number=unique_address_number() if verified else None,
                birth_year=1980 if verified else None,
                verified=verified,
            )
            session.flush()
            token, token_id = "", ""
            if with_token:
                new = access.issue_token(
                    session, access.SYSTEM, now, role=Role.RESIDENT, principal_id=resident.id
                )
                token, token_id = new.secret, new.token.id
            return Actor("fresh resident", Role.RESIDENT, resident.id, token, token_id)

        return self.write(work)

    def fresh_staff(
        self,
        role: StaffRole = StaffRole.COUNTER,
        *,
        merchant_id: str | None = None,
        department_id: str | None = None,
    ) -> Actor:
        """A new member of staff with a token (merchant staff of merchant ``a`` and issuers of
        department ``a`` unless told otherwise)."""
        now = self.now()
        if role is StaffRole.MERCHANT:
            merchant_id = merchant_id or self.merchants["a"]
        if role is StaffRole.ISSUER:
            department_id = department_id or self.departments["a"]

        def work(session: Session) -> Actor:
            staff = people.create_staff(
                session,
                access.SYSTEM,
                now,
                role=role,
                display_name=unique("staff"),
                merchant_id=merchant_id,
                department_id=department_id,
            )
            session.flush()
            new = access.issue_token(
                session, access.SYSTEM, now, role=Role(role.value), principal_id=staff.id
            )
            return Actor(
                "fresh staff",
                Role(role.value),
                staff.id,
                new.secret,
                new.token.id,
                merchant_id=merchant_id,
                department_id=department_id,
            )

        return self.write(work)

    def fresh_merchant(self) -> str:
        now = self.now()
        return self.write(
            lambda session: (
                people.create_merchant(
                    session, access.SYSTEM, now, name_ja="仮店", name_en="Spare", category="shop"
                ).id
            )
        )

    def fresh_token(self) -> str:
        """The id of a new token for the finance auditor (revocable without harm)."""
        now = self.now()
        finance_id = self.finance.id
        return self.write(
            lambda session: (
                access.issue_token(
                    session, access.SYSTEM, now, role=Role.FINANCE, principal_id=finance_id
                ).token.id
            )
        )

    def fresh_point_type(self) -> str:
        """The id of a new, unused point type."""
        now = self.now()
        code = unique("t").replace("-", "_")[:32]
        return self.write(
            lambda session: (
                pointtypes.create_point_type(
                    session,
                    access.SYSTEM,
                    now,
                    NewPointType(code=code, name_ja="予備ポイント", name_en="Spare points"),
                ).id
            )
        )

    def fresh_program(
        self,
        department: str = "a",
        *,
        activate: bool = True,
        budget: dict[int, int] | None = None,
        **options: Any,
    ) -> str:
        """The id of a new program of department ``department`` (fixed award of WORLD_AWARD
        unless told otherwise), active unless told otherwise, with ``budget`` {year: amount}."""
        return self.write(
            lambda session: _program(
                session,
                self.now(),
                self.departments[department],
                self.point_type_id,
                activate=activate,
                budget=budget or {},
                **options,
            )
        )

    def fresh_event(
        self, department: str = "a", *, capacity: int = 10, program_id: str | None = None
    ) -> events.VolunteerEvent:
        """A new open event (check-in open now, for an hour) of a new funded volunteering
        program of ``department`` (or of ``program_id``); the app's key directory gets its
        first signing key if it has none, so that the event's token can be signed."""
        ring = self.app.state.services.keys
        keys.ensure_key(ring.directory, self.now())
        ring.reload()
        program = program_id or self.fresh_program(
            department, module="volunteering", budget={FISCAL_YEAR: 10_000}
        )
        now = self.now()
        new = events.NewEvent(
            program_id=program,
            name="河川清掃",
            place="多摩川河川敷",
            starts_at=now,
            ends_at=now + timedelta(hours=2),
            opens_at=now - timedelta(minutes=5),
            closes_at=now + timedelta(hours=1),
            capacity=capacity,
        )
        return self.write(
            lambda session: events.create_event(
                session, access.SYSTEM, now, new, department_id=None
            )
        )

    def fresh_enrolment_code(self, resident_id: str | None = None) -> str:
        """A new enrolment code for a new (or the given) verified resident."""
        target = resident_id or self.fresh_resident().id
        now = self.now()
        return self.write(
            lambda session: access.create_enrolment_code(
                session, access.SYSTEM, now, target, secret_key=Settings().secret_key_bytes
            )[1]
        )


def _populate(session: Session, now: datetime) -> dict[str, Any]:
    system = access.SYSTEM
    built: dict[str, Any] = {"actors": {}, "departments": {}, "merchants": {}}

    def token_for(name: str, role: Role, principal_id: str, **belongs: str | None) -> None:
        new = access.issue_token(
            session, system, now, role=role, principal_id=principal_id, label=f"world {name}"
        )
        built["actors"][name] = Actor(name, role, principal_id, new.secret, new.token.id, **belongs)

    def staff(name: str, role: StaffRole, **belongs: str | None) -> None:
        member = people.create_staff(
            session, system, now, role=role, display_name=f"World {name}", **belongs
        )
        session.flush()
        token_for(name, Role(role.value), member.id, **belongs)

    staff("admin", StaffRole.ADMIN)
    staff("finance", StaffRole.FINANCE)
    staff("counter", StaffRole.COUNTER)
    for key in ("a", "b"):
        department = people.create_department(
            session,
            system,
            now,
            code=unique(f"dept-{key}"),
            name_ja=f"部署{key}",
            name_en=f"Department {key}",
        )
        merchant = people.create_merchant(
            session,
            system,
            now,
            name_ja=f"店{key}",
            name_en=f"Merchant {key}",
            category="cafe",
        )
        session.flush()
        built["departments"][key] = department.id
        built["merchants"][key] = merchant.id
        staff(f"issuer_{key}", StaffRole.ISSUER, department_id=department.id)
        staff(f"merchant_{key}", StaffRole.MERCHANT, merchant_id=merchant.id)

    verified = people.create_resident(
        session,
        system,
        now,
        name=RESIDENT_NAME,
        address_number=RESIDENT_ADDRESS_NUMBER,
        birth_year=RESIDENT_BIRTH_YEAR,
        verified=True,
    )
    session.flush()
    token_for("resident", Role.RESIDENT, verified.id)
    self_enrolled, new = access.self_enrol(session, now)
    built["actors"]["resident_self"] = Actor(
        "resident_self", Role.RESIDENT, self_enrolled.id, new.secret, new.token.id
    )
    return built


def world_settings(database_url: str) -> Settings:
    """The world's settings: rate limits out of the way (tests/test_api_safety.py tests them);
    one test client makes far more requests from one address than any person would."""
    return Settings(
        database_url=database_url,
        key_dir=Path(tempfile.mkdtemp(prefix="points-world-keys-")),
        rate_limit_self_enrolments_per_address=1_000_000,
        rate_limit_code_attempts_per_address=1_000_000,
        rate_limit_codes_per_counter=1_000_000,
    )


def _program(
    session: Session,
    now: datetime,
    department_id: str,
    point_type_id: str,
    *,
    activate: bool,
    budget: dict[int, int],
    **options: Any,
) -> str:
    fields: dict[str, Any] = {
        "module": "fixed_award",
        "name_ja": "ボランティア",
        "name_en": "Volunteering",
        "amount": WORLD_AWARD,
        # From FY2026, or from the first year it is funded for (a budget is allocated only for
        # the fiscal years of the program's dates).
        "valid_from": date(min([2026, *budget]), 4, 1),
    }
    fields.update(options)
    program = programs.create_program(
        session,
        access.SYSTEM,
        now,
        programs.NewProgram(department_id=department_id, point_type_id=point_type_id, **fields),
    )
    if activate:
        programs.change_status(
            session, access.SYSTEM, now, program.id, programs.ProgramStatus.ACTIVE, reason="world"
        )
    for year, amount in budget.items():
        programs.allocate(session, access.SYSTEM, now, program.id, year, amount, reason="world")
    return program.id


def _earning(session: Session, now: datetime, built: dict[str, Any]) -> None:
    """The world's point type, one funded program per department, and one award."""
    point_type = pointtypes.create_point_type(
        session,
        access.SYSTEM,
        now,
        NewPointType(code=POINT_TYPE_CODE, name_ja="狛江ポイント", name_en="Komae points"),
    )
    built["point_type_id"] = point_type.id
    built["programs"] = {
        key: _program(
            session,
            now,
            department_id,
            point_type.id,
            activate=True,
            budget={FISCAL_YEAR: WORLD_BUDGET},
        )
        for key, department_id in built["departments"].items()
    }
    awards.award(
        session,
        access.SYSTEM,
        now,
        awards.AwardRequest(built["programs"]["a"], built["actors"]["resident"].id, "world-1", {}),
        department_id=None,
    )


@contextmanager
def open_world(
    engine: Engine,
    clock: Callable[[], datetime],
    database_url: str,
    *,
    record_verify_run: bool = True,
) -> Iterator[World]:
    """Build the world on a migrated database and yield it with an open ``TestClient``."""
    now = clock()
    built = unit_of_work(engine, lambda session: _populate(session, now))
    unit_of_work(engine, lambda session: _earning(session, now, built))

    ledger = Ledger(engine, clock=clock)
    info = ledger.create_ledger(unique("pt")[:32], "world points")
    source = ledger.create_account(ledger_id=info.id, code=100, normal_side=Side.DEBIT)
    wallet = ledger.create_account(
        ledger_id=info.id,
        code=300,
        normal_side=Side.CREDIT,
        owner_ref=f"wallet:{built['actors']['resident'].id}",
        flags=AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS,
    )
    entry = ledger.post(
        NewEntry(
            [Posting(source.id, Side.DEBIT, 500), Posting(wallet.id, Side.CREDIT, 500)],
            kind="award",
            description="world award",
        )
    )
    if record_verify_run:
        ledger.seal()
        verify_and_record(ledger, unsealed_grace_seconds=10)

    app = create_app(world_settings(database_url), engine=engine, clock=clock)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield World(
            engine=engine,
            clock=clock,
            app=app,
            client=client,
            actors=built["actors"],
            departments=built["departments"],
            merchants=built["merchants"],
            ledger_id=info.id,
            account_ids=[source.id, wallet.id],
            entry_id=entry.id,
            point_type_id=built["point_type_id"],
            programs=built["programs"],
        )


@contextmanager
def world_on_new_database(
    backend: str, request: Any, tmp_path: Path, *, record_verify_run: bool = True
) -> Iterator[World]:
    """A world on a database of its own, for module-scoped fixtures (which cannot use the
    function-scoped ``engine``): the database comes from conftest's migrated templates."""
    from conftest import FakeClock, new_database_url

    urls = new_database_url(backend, request, tmp_path)
    database_url = next(urls)
    engine = ledger.create_engine(database_url)
    try:
        with open_world(
            engine, FakeClock(), database_url, record_verify_run=record_verify_run
        ) as world:
            yield world
    finally:
        engine.dispose()
        urls.close()


def assert_problem(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    """The response is problem+json with every required field; returns the body."""
    assert response.status_code == status, (response.status_code, response.text)
    media_type = response.headers.get("content-type", "").split(";")[0].strip()
    assert media_type == PROBLEM_JSON, response.headers.get("content-type")
    body: dict[str, Any] = response.json()
    missing = [name for name in PROBLEM_FIELDS if name not in body]
    assert not missing, f"problem+json lacks {missing}: {body}"
    assert body["status"] == status
    assert isinstance(body["detail"], str)
    assert isinstance(body["title"], str)
    assert body["type"].endswith(body["code"])
    assert body["request_id"] == response.headers.get("x-request-id")
    if code is not None:
        assert body["code"] == code, body
    return body
