"""``points demo``: the system seeded with a small city, through the same services the API uses.

Seeds, on the configured database (SQLite by default), what a city's first week looks like:
the point type ``pt`` (valid until the end of the month 12 months after the month earned), the
health department's checkup program and the environment department's volunteering program,
each funded for the current fiscal year, a shop accepting ``pt`` with one till, three residents,
a few awards, and one payment at the shop by payment QR (``redemption.flows``). Then it prints
each resident's wallet, tokens to try the API with, and the wallet app's address with a counter
code (an enrolment code, valid 15 minutes) that signs the app in as the first resident.

Safe to run again: everything is found by its code, name or record id, so a second run awards
and pays nothing twice. It prints new tokens and revokes the ones an earlier run printed.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from typing import Any, TypeVar

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from issuers import awards, programs
from issuers.programs import Program, ProgramStatus
from ledger import Ledger
from points import access, people, pointtypes, wallet_views
from points.auth import Principal, Role, Token
from points.calendar import fiscal_year, tokyo_date
from points.errors import NotFound
from points.registry import Department, Merchant, MerchantKind, Resident, Staff, StaffRole
from points.uow import unit_of_work
from redemption import catalog, flows, merchants, payouts
from redemption.payments import Payment

T = TypeVar("T")
#: The demo's payment: the first resident pays this at the merchant.
PAYMENT_AMOUNT = 600
PAYMENT_AT = "狛江珈琲店 / Komae Coffee"
SYSTEM = access.SYSTEM

RESIDENTS = {
    # address number: (name, birth year)
    "1000000001": ("狛江 花子", 1948),
    "1000000002": ("和泉 太郎", 1975),
    "1000000003": ("岩戸 さくら", 2001),
}


def run_seed(
    engine: Engine,
    clock: Callable[[], datetime],
    signing: flows.Signing,
    *,
    secret_key: bytes,
    echo: Callable[[str], None] = print,
) -> None:
    def write(work: Callable[[Session], T]) -> T:
        return unit_of_work(engine, work)

    now = clock()
    year = fiscal_year(tokyo_date(now))
    point_type = write(lambda s: _point_type(s, now))
    health = write(lambda s: _department(s, now, "health", "健康推進課", "Health Promotion"))
    environment = write(
        lambda s: _department(s, now, "environment", "環境政策課", "Environment Policy")
    )
    checkup = write(
        lambda s: _program(
            s,
            now,
            health,
            point_type,
            module="health_checkup",
            name_ja="特定健診受診ポイント",
            name_en="Specific health checkup",
            amount=500,
            cap_per_fiscal_year=1_000,
            config={"checkup_types": ["specific_health_checkup", "cancer_screening"]},
            budget=(year, 1_000_000),
        )
    )
    volunteering = write(
        lambda s: _program(
            s,
            now,
            environment,
            point_type,
            module="volunteering",
            name_ja="多摩川清掃ボランティア",
            name_en="Tama River clean-up",
            amount=300,
            cap_per_month=900,
            config={},
            budget=(year, 300_000),
        )
    )
    residents = write(lambda s: [_resident(s, now, number) for number in RESIDENTS])
    till = write(lambda s: _shop(s, now, point_type, signing))
    events: list[tuple[Program, str, str, dict[str, Any]]] = [
        (checkup, residents[0], "HC-0001", {"checkup_type": "specific_health_checkup"}),
        (checkup, residents[0], "HC-0002", {"checkup_type": "cancer_screening"}),
        (checkup, residents[1], "HC-0003", {"checkup_type": "specific_health_checkup"}),
        (volunteering, residents[0], "VOL-0001", {"event_id": "river-clean-up-1"}),
        (volunteering, residents[2], "VOL-0002", {"event_id": "river-clean-up-1"}),
    ]
    for program, resident_id, record_id, details in events:
        request = awards.AwardRequest(program.id, resident_id, record_id, details)
        write(
            lambda s, request=request, program=program: awards.award(  # type: ignore[misc]
                s, SYSTEM, now, request, department_id=program.department_id
            )
        )
    write(lambda s: _demo_payment(s, now, till, residents[0], signing))
    write(lambda s: _counter_catalog(s, now, point_type))
    sealed = Ledger(engine, clock=clock).seal()
    report = Ledger(engine, clock=clock).verify()

    echo(f"Point type {point_type.code}: {point_type.name_ja} ({point_type.name_en})")
    for program in (checkup, volunteering):
        view = unit_of_work(
            engine,
            lambda s, program=program: awards.budget_view(s, program, year, now),  # type: ignore[misc]
            read_only=True,
        )
        echo(
            f"  {program.name_en} FY{year}: allocated {view.allocated:,}, awarded "
            f"{view.awarded:,} to {view.residents_awarded} residents, remaining {view.remaining:,}"
        )
    payer = RESIDENTS[next(iter(RESIDENTS))][0]
    echo(f"  Paid at a shop: {payer} paid {PAYMENT_AMOUNT:,} pt at {PAYMENT_AT}")
    offered = ", ".join(f"{name_en} {points:,} pt" for _ja, name_en, points, *_ in CATALOG)
    echo(f"  The city counter's catalog: {offered}")
    echo("")
    for resident_id, number in zip(residents, RESIDENTS, strict=True):
        view_ = unit_of_work(
            engine,
            lambda s, resident_id=resident_id: wallet_views.wallet_view(  # type: ignore[misc]
                s, _get_point_type(s, point_type), resident_id, now, 60
            ),
            read_only=True,
        )
        lines = ", ".join(f"{line.amount} until {line.valid_until}" for line in view_.by_expiry)
        echo(f"{RESIDENTS[number][0]} ({resident_id}): {view_.balance} pt  [{lines or 'empty'}]")
    echo("")
    echo(
        f"sealed {sealed} entries; verify: "
        f"{'no problems' if report.ok else report.problems[0].message}"
    )
    tokens = write(lambda s: _tokens(s, now, health, residents[0], till.staff_id))
    echo("")
    echo(
        "Tokens to try the API with (`.venv/bin/points serve`, then http://127.0.0.1:8000/api/v1/docs):"
    )
    for role, secret in tokens:
        echo(f"  {role:9} {secret}")
    _enrolment, code = write(
        lambda s: access.create_enrolment_code(s, SYSTEM, now, residents[0], secret_key=secret_key)
    )
    echo("")
    echo(f"The wallet app: {signing.origin.rstrip('/')}/app/  (a phone-sized window shows it best)")
    echo(f"  Counter code for {payer} (valid 15 minutes, once): {code}")
    _device, till_code = write(
        lambda s: access.create_device_code(
            s, SYSTEM, now, till.staff_id, secret_key=secret_key, label=till.name
        )
    )
    echo(f"The shop's till: {signing.origin.rstrip('/')}/staff/#/enrol/{till_code}")
    echo(f"  Till code for {till.name} (valid 15 minutes, once): {till_code}")


def _get_point_type(session: Session, point_type: pointtypes.PointType) -> pointtypes.PointType:
    return pointtypes.get_point_type(session, point_type.id)


def _point_type(session: Session, now: datetime) -> pointtypes.PointType:
    try:
        return pointtypes.find_point_type(session, "pt")
    except NotFound:
        return pointtypes.create_point_type(
            session,
            SYSTEM,
            now,
            pointtypes.NewPointType(code="pt", name_ja="狛江ポイント", name_en="Komae points"),
        )


def _department(session: Session, now: datetime, code: str, name_ja: str, name_en: str) -> str:
    found = session.exec(select(Department).where(Department.code == code)).first()
    if found is not None:
        return found.id
    return people.create_department(
        session, SYSTEM, now, code=code, name_ja=name_ja, name_en=name_en
    ).id


def _program(
    session: Session,
    now: datetime,
    department_id: str,
    point_type: pointtypes.PointType,
    *,
    budget: tuple[int, int],
    **fields: Any,
) -> Program:
    found = session.exec(
        select(Program).where(
            Program.department_id == department_id, Program.name_en == fields["name_en"]
        )
    ).first()
    if found is not None:
        return found
    program = programs.create_program(
        session,
        SYSTEM,
        now,
        programs.NewProgram(
            department_id=department_id,
            point_type_id=point_type.id,
            valid_from=date(budget[0], 4, 1),
            **fields,
        ),
    )
    programs.change_status(session, SYSTEM, now, program.id, ProgramStatus.ACTIVE, reason="demo")
    programs.allocate(session, SYSTEM, now, program.id, budget[0], budget[1], reason="demo")
    return program


def _resident(session: Session, now: datetime, address_number: str) -> str:
    found = session.exec(select(Resident).where(Resident.address_number == address_number)).first()
    if found is not None:
        return found.id
    name, birth_year = RESIDENTS[address_number]
    return people.create_resident(
        session,
        SYSTEM,
        now,
        name=name,
        address_number=address_number,
        birth_year=birth_year,
        verified=True,
    ).id


def _shop(
    session: Session, now: datetime, point_type: pointtypes.PointType, signing: flows.Signing
) -> merchants.Till:
    """The demo shop, accepting ``pt``, with one till (its token is printed below)."""
    merchant = session.exec(select(Merchant).where(Merchant.name_en == "Komae Coffee")).first()
    if merchant is None:
        merchant = people.create_merchant(
            session, SYSTEM, now, name_ja="狛江珈琲店", name_en="Komae Coffee", category="cafe"
        )
        session.flush()
    tills = merchants.list_tills(session, merchant.id)
    if tills:
        return tills[0]
    merchants.change_settings(
        session,
        SYSTEM,
        now,
        merchant.id,
        merchants.SettingsChange(accepted_point_types=[point_type.code]),
        reason="demo",
    )
    # Where the city pays the shop (a demo account: the settlement's transfer file needs one).
    payouts.set_bank_account(
        session,
        SYSTEM,
        now,
        merchant.id,
        payouts.BankDetails("0001", "001", "1", "7654321", "コマエコーヒー"),
        reason="demo",
    )
    made = merchants.create_till(
        session, SYSTEM, now, merchant.id, "レジ1", keys=signing.keys, origin=signing.origin
    )
    # The demo prints a till token of its own (``_tokens``), revoked by the next run.
    access.revoke_token(session, SYSTEM, now, made.token.token.id, "points demo prints its own")
    return made.till


#: The city counter's catalog in the demo: (Japanese name, English name, points, stock, limit).
CATALOG = (
    ("コーヒー麻袋のエコバッグ", "Eco bag sewn from a coffee sack", 500, 40, 2),
    ("狛江産はちみつ (小瓶)", "Komae honey (small jar)", 800, 15, 1),
    ("多摩川の間伐材コースター", "Coaster of Tama river thinned wood", 200, 0, None),
)


def _counter_catalog(session: Session, now: datetime, point_type: pointtypes.PointType) -> None:
    """The city counter (a merchant of kind counter) and its catalog, once."""
    counter = session.exec(select(Merchant).where(Merchant.name_en == "City hall counter")).first()
    if counter is not None:
        return
    counter = people.create_merchant(
        session,
        SYSTEM,
        now,
        name_ja="狛江市役所 交換窓口",
        name_en="City hall counter",
        category="city",
        kind=MerchantKind.COUNTER,
    )
    session.flush()
    merchants.change_settings(
        session,
        SYSTEM,
        now,
        counter.id,
        merchants.SettingsChange(accepted_point_types=[point_type.code]),
        reason="demo",
    )
    for name_ja, name_en, points, stock, limit in CATALOG:
        catalog.create_item(
            session,
            SYSTEM,
            now,
            catalog.NewItem(
                merchant_id=counter.id,
                point_type=point_type.code,
                name_ja=name_ja,
                name_en=name_en,
                points=points,
                stock=stock,
                per_resident_limit=limit,
            ),
        )


def _demo_payment(
    session: Session, now: datetime, till: merchants.Till, resident_id: str, signing: flows.Signing
) -> None:
    """The first resident pays the demo shop once, by payment QR, through the API's services."""
    paid = session.exec(
        select(Payment).where(
            Payment.merchant_id == till.merchant_id, Payment.reference == "demo-1"
        )
    ).first()
    if paid is not None:
        return
    staff = session.get(Staff, till.staff_id)
    assert staff is not None
    caller = Principal(Role.MERCHANT, staff.id, "demo", merchant_id=till.merchant_id)
    request = flows.create_request(
        session,
        caller,
        now,
        amount=PAYMENT_AMOUNT,
        point_type="pt",
        reference="demo-1",
        signing=signing,
    )
    flows.pay(
        session,
        resident_id,
        now,
        request.request.token,
        amount=None,
        point_type=None,
        signing=signing,
    )


#: The label of the tokens ``points demo`` mints; a later run revokes them.
DEMO_LABEL = "points demo"


def _tokens(
    session: Session, now: datetime, department_id: str, resident_id: str, till_staff_id: str
) -> list[tuple[str, str]]:
    """A token for a demo admin, finance auditor and issuer (staff found again by name, made
    once), for ``resident_id`` and for the shop's till. The demo tokens of an earlier run are
    revoked first, so that however often the demo runs, five demo tokens are live."""
    principals = [
        (Role(staff_role.value), _demo_staff(session, now, staff_role, department_id))
        for staff_role in (StaffRole.ADMIN, StaffRole.FINANCE, StaffRole.ISSUER)
    ]
    principals.append((Role.RESIDENT, resident_id))
    principals.append((Role.MERCHANT, till_staff_id))
    earlier = session.exec(
        select(Token).where(
            col(Token.principal_id).in_([principal_id for _role, principal_id in principals]),
            Token.label == DEMO_LABEL,
            col(Token.revoked_at).is_(None),
        )
    ).all()
    for token in earlier:
        access.revoke_token(session, SYSTEM, now, token.id, "a later run of points demo")
    return [
        (
            str(role),
            access.issue_token(
                session, SYSTEM, now, role=role, principal_id=principal_id, label=DEMO_LABEL
            ).secret,
        )
        for role, principal_id in principals
    ]


def _demo_staff(session: Session, now: datetime, staff_role: StaffRole, department_id: str) -> str:
    display_name = f"demo {staff_role.value}"
    existing = session.exec(
        select(Staff).where(Staff.role == staff_role, Staff.display_name == display_name)
    ).first()
    if existing is not None:
        return existing.id
    member = people.create_staff(
        session,
        SYSTEM,
        now,
        role=staff_role,
        display_name=display_name,
        department_id=department_id if staff_role is StaffRole.ISSUER else None,
    )
    session.flush()
    return member.id
