"""Registry services: create, correct and change the status of departments, merchants,
residents and staff. Every act is written to the audit trail in the same transaction.

Each function takes the caller's ``Session`` (inside a unit of work, ``points.db.unit_of_work``),
the acting ``Principal`` and the time; it checks its inputs and raises ``points.errors``.
Authorization (which role may call what) is the API's job; these functions trust the actor they
are given, but record it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TypeVar

from sqlmodel import Session, col, select

from points import audit
from points.auth import Principal
from points.errors import Conflict, InvalidInput, NotFound
from points.registry import (
    Department,
    Merchant,
    MerchantKind,
    MerchantStatus,
    Resident,
    ResidentStatus,
    Staff,
    StaffRole,
    StaffStatus,
    Verification,
    new_id,
)

BIRTH_YEAR_MIN = 1880
#: Lists return at most this many rows a page.
PAGE_LIMIT_MAX = 200


def create_department(
    session: Session, actor: Principal, now: datetime, *, code: str, name_ja: str, name_en: str
) -> Department:
    if session.exec(select(Department).where(Department.code == code)).first() is not None:
        raise Conflict(f"a department with code {code!r} exists already", field="code")
    department = Department(
        id=new_id("dep"), code=code, name_ja=name_ja, name_en=name_en, created_at=now
    )
    session.add(department)
    audit.record(
        session,
        actor=actor,
        action="department.create",
        object_type="department",
        object_id=department.id,
        at=now,
        details={"code": code},
    )
    return department


def create_merchant(
    session: Session,
    actor: Principal,
    now: datetime,
    *,
    name_ja: str,
    name_en: str,
    category: str,
    kind: MerchantKind = MerchantKind.SHOP,
) -> Merchant:
    merchant = Merchant(
        id=new_id("mer"),
        name_ja=name_ja,
        name_en=name_en,
        category=category,
        kind=kind,
        status=MerchantStatus.ACTIVE,
        created_at=now,
        updated_at=now,
    )
    session.add(merchant)
    audit.record(
        session,
        actor=actor,
        action="merchant.create",
        object_type="merchant",
        object_id=merchant.id,
        at=now,
        details={"category": category, "kind": str(kind)},
    )
    return merchant


def set_merchant_status(
    session: Session,
    actor: Principal,
    now: datetime,
    merchant_id: str,
    *,
    status: MerchantStatus,
    reason: str,
) -> Merchant:
    return _change_status(session, actor, now, Merchant, merchant_id, str(status), reason)


def create_resident(
    session: Session,
    actor: Principal,
    now: datetime,
    *,
    name: str | None,
    address_number: str | None,
    birth_year: int | None,
    verified: bool,
) -> Resident:
    _check_birth_year(birth_year, now)
    resident = Resident(
        id=new_id("res"),
        name=name,
        address_number=address_number,
        birth_year=birth_year,
        verification=Verification.VERIFIED if verified else Verification.SELF_ENROLLED,
        status=ResidentStatus.ACTIVE,
        created_at=now,
        updated_at=now,
    )
    session.add(resident)
    # The audit trail never holds personal data: it names the fields, not their values.
    audit.record(
        session,
        actor=actor,
        action="resident.create",
        object_type="resident",
        object_id=resident.id,
        at=now,
        details={"verification": str(resident.verification)},
    )
    return resident


def correct_resident(
    session: Session,
    actor: Principal,
    now: datetime,
    resident_id: str,
    *,
    changes: dict[str, object],
    reason: str,
) -> Resident:
    """Correct personal fields (``name``, ``address_number``, ``birth_year``) or mark the
    resident verified."""
    resident = get(session, Resident, resident_id)
    if resident.erased_at is not None:
        raise InvalidInput("this resident's personal data was erased", resident_id=resident_id)
    allowed = {"name", "address_number", "birth_year", "verified"}
    unknown = set(changes) - allowed
    if unknown:
        raise InvalidInput(f"cannot change {sorted(unknown)}")
    if not changes:
        raise InvalidInput("nothing to correct: give at least one field besides the reason")
    if "birth_year" in changes:
        birth_year = changes["birth_year"]
        assert birth_year is None or isinstance(birth_year, int)
        _check_birth_year(birth_year, now)
    for name, value in changes.items():
        if name == "verified":
            if value:
                resident.verification = Verification.VERIFIED
        else:
            setattr(resident, name, value)
    resident.updated_at = now
    session.add(resident)
    audit.record(
        session,
        actor=actor,
        action="resident.correct",
        object_type="resident",
        object_id=resident_id,
        at=now,
        reason=reason,
        details={"fields": sorted(changes)},
    )
    return resident


def resident_id_of(session: Session, *, resident_id: str | None, address_number: str | None) -> str:
    """The pseudonymous id of the resident a department names, by ``resident_id`` or by
    ``address_number`` (宛名番号), exactly one of them. A resident id is returned as it is (the
    award rules refuse one that does not exist); an address number is looked up
    (``one_resident``). Departments know residents by their address number; nothing they
    are told or that is stored for them (awards, the ledger) carries it."""
    if (resident_id is None) == (address_number is None):
        raise InvalidInput(
            "give exactly one of resident_id and address_number", field="resident_id"
        )
    if resident_id is not None:
        return resident_id
    assert address_number is not None
    found = session.exec(
        select(Resident.id).where(Resident.address_number == address_number).limit(2)
    ).all()
    return one_resident(address_number, found)


def one_resident(address_number: str, resident_ids: Sequence[str]) -> str:
    """The one resident among ``resident_ids``, those found with ``address_number``: none is
    not found, several (a number registered twice) is a conflict to mend at the counter; the
    one rule of single awards, bulk uploads and the departments' lookup. The messages name
    only the number the caller gave."""
    if not resident_ids:
        raise NotFound(f"no resident has address number {address_number}", field="address_number")
    if len(resident_ids) > 1:
        raise Conflict(
            f"more than one resident has address number {address_number}; "
            "name the resident by resident_id, or have the counter correct the registry",
            field="address_number",
        )
    return resident_ids[0]


def erase_resident(
    session: Session, actor: Principal, now: datetime, resident_id: str, *, reason: str
) -> Resident:
    """Blank the personal fields (APPI erasure); the pseudonymous id and the ledger stay."""
    resident = get(session, Resident, resident_id)
    resident.name = None
    resident.address_number = None
    resident.birth_year = None
    resident.erased_at = now
    resident.updated_at = now
    session.add(resident)
    audit.record(
        session,
        actor=actor,
        action="resident.erase",
        object_type="resident",
        object_id=resident_id,
        at=now,
        reason=reason,
    )
    return resident


def set_resident_status(
    session: Session,
    actor: Principal,
    now: datetime,
    resident_id: str,
    *,
    status: ResidentStatus,
    reason: str,
) -> Resident:
    return _change_status(session, actor, now, Resident, resident_id, str(status), reason)


def create_staff(
    session: Session,
    actor: Principal,
    now: datetime,
    *,
    role: StaffRole,
    display_name: str,
    merchant_id: str | None = None,
    department_id: str | None = None,
) -> Staff:
    if role is StaffRole.MERCHANT:
        if merchant_id is None or department_id is not None:
            raise InvalidInput("merchant staff belong to a merchant (merchant_id) only")
        _must_exist(session, Merchant, merchant_id, "merchant_id")
    elif role is StaffRole.ISSUER:
        if department_id is None or merchant_id is not None:
            raise InvalidInput("issuers belong to a department (department_id) only")
        _must_exist(session, Department, department_id, "department_id")
    elif merchant_id is not None or department_id is not None:
        raise InvalidInput(f"{role} staff belong to no merchant or department")
    staff = Staff(
        id=new_id("stf"),
        role=role,
        display_name=display_name,
        merchant_id=merchant_id,
        department_id=department_id,
        status=StaffStatus.ACTIVE,
        created_at=now,
        updated_at=now,
    )
    session.add(staff)
    audit.record(
        session,
        actor=actor,
        action="staff.create",
        object_type="staff",
        object_id=staff.id,
        at=now,
        details={"role": str(role), "merchant_id": merchant_id, "department_id": department_id},
    )
    return staff


def set_staff_status(
    session: Session,
    actor: Principal,
    now: datetime,
    staff_id: str,
    *,
    status: StaffStatus,
    reason: str,
) -> Staff:
    return _change_status(session, actor, now, Staff, staff_id, str(status), reason)


Model = TypeVar("Model", Department, Merchant, Resident, Staff)


def get(session: Session, model: type[Model], object_id: str) -> Model:
    found = session.get(model, object_id)
    if found is None:
        raise NotFound(f"no {model.__tablename__} {object_id}", object_id=object_id)
    return found


def page(session: Session, model: type[Model], *, after: str | None, limit: int) -> list[Model]:
    """Rows ordered by id, after the cursor ``after`` (the last id of the previous page)."""
    if not 1 <= limit <= PAGE_LIMIT_MAX:
        raise InvalidInput(f"limit is 1 .. {PAGE_LIMIT_MAX}", field="limit")
    query = select(model).order_by(col(model.id)).limit(limit)
    if after is not None:
        query = query.where(col(model.id) > after)
    return list(session.exec(query))


StatusModel = TypeVar("StatusModel", Merchant, Resident, Staff)


def _change_status(
    session: Session,
    actor: Principal,
    now: datetime,
    model: type[StatusModel],
    object_id: str,
    status: str,
    reason: str,
) -> StatusModel:
    """One status change, audited with the status before and after."""
    found = get(session, model, object_id)
    previous = found.status
    found.status = status
    found.updated_at = now
    session.add(found)
    table = model.__tablename__
    audit.record(
        session,
        actor=actor,
        action=f"{table}.status",
        object_type=str(table),
        object_id=object_id,
        at=now,
        reason=reason,
        details={"from": previous, "to": status},
    )
    return found


def _must_exist(session: Session, model: type[Model], object_id: str, field: str) -> None:
    """A reference in a request body: a missing object is bad input (422), not a 404."""
    if session.get(model, object_id) is None:
        raise InvalidInput(f"no {model.__tablename__} {object_id}", field=field)


def _check_birth_year(birth_year: int | None, now: datetime) -> None:
    if birth_year is not None and not BIRTH_YEAR_MIN <= birth_year <= now.year:
        raise InvalidInput(f"birth year is {BIRTH_YEAR_MIN} .. {now.year}", field="birth_year")
