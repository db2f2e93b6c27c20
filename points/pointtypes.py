"""Point types: a ledger plus its policy (DESIGN §4).

A point type is what a resident holds: "Komae points" (``pt``). Each has its own ledger (an entry
never crosses ledgers, so two types can never be mixed up), and on it the accounts there is one
of per ledger: city funding, expired points, settled. Its policy:

* **Expiry rule**: ``months`` (valid until the end of the month N months after the month earned:
  earned on 2026-05-15 with N = 12 → valid until 2027-05-31), ``fixed_date`` (valid until that
  date), or ``none``. A rule that makes no sense (0 months, a fixed date not in the future) is
  refused.
* **Transferable**: whether residents may give points to each other (a later issue's flow).
* **Issuer** (``city`` or ``operator``) and **funding** (``free`` or ``bought`` with yen). The city
  issuing its own points is outside Japan's Payment Services Act; an *operator* selling points
  (prepaid means of payment) that stay valid for more than 6 months falls under it, so such a
  type is refused unless an ``psa_override_reason`` is recorded (the operator has registered).
  "Valid for more than 6 months" is judged on the worst case: a ``months`` rule of N keeps points
  earned on the first of a month valid for N months and up to a month more, so N ≥ 6 is refused;
  a fixed date more than 6 months ahead, or no expiry, too.

A type in use (a program refers to it, or its ledger holds an entry) cannot be deleted; an
unused one is deleted with its ledger and accounts.

Each type has a **yen rate**: the whole yen the city pays a shop per point at settlement (1 by
default, at most ``YEN_RATE_MAX``). An admin may change it (audited) until the type has a
payment, that is until its ledger holds an entry posting to a shop's payable account; then it is
frozen (``rate_frozen``): a new rate means a new point type.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from datetime import date, datetime

import sqlalchemy as sa
from sqlmodel import Field, Session, SQLModel, col, select

from ledger import LedgerTx
from ledger import schema as ledger_schema
from ledger.errors import DuplicateLedger
from points import audit
from points.accounts import ACCOUNT_RULES, AccountCode
from points.auth import Principal
from points.calendar import NEVER, add_months, end_of_month, tokyo_date
from points.errors import (
    Conflict,
    ExpiryRuleInvalid,
    InvalidInput,
    NotFound,
    PaymentServicesActRefused,
    PointTypeInUse,
    RateFrozen,
)
from points.registry import new_id
from points.sqlbase import UTCDateTime

CODE_PATTERN = r"^[a-z][a-z0-9_-]{0,31}$"
EXPIRY_MONTHS_MAX = 120
#: The Payment Services Act's line: bought points valid for longer than this need registration.
PSA_MONTHS = 6
#: The largest yen rate of a point (yen per point).
YEN_RATE_MAX = 100_000

#: Owner references of the accounts there is one of per point ledger.
CITY_OWNER, EXPIRED_OWNER, SETTLED_OWNER = "city", "expired", "settled"


class ExpiryRule(enum.StrEnum):
    MONTHS = "months"
    FIXED_DATE = "fixed_date"
    NONE = "none"


class IssuerKind(enum.StrEnum):
    CITY = "city"
    OPERATOR = "operator"


class Funding(enum.StrEnum):
    FREE = "free"
    BOUGHT = "bought"


def _account_column() -> sa.Column[int]:
    return sa.Column(ledger_schema.Id, sa.ForeignKey(ledger_schema.account.c.id), nullable=False)


class PointType(SQLModel, table=True):
    __tablename__ = "point_type"
    __table_args__ = (
        sa.CheckConstraint(
            "(expiry_rule = 'months' AND expiry_months BETWEEN 1 AND 120 "
            "AND expiry_date IS NULL) OR (expiry_rule = 'fixed_date' AND expiry_months IS NULL "
            "AND expiry_date IS NOT NULL) OR (expiry_rule = 'none' AND expiry_months IS NULL "
            "AND expiry_date IS NULL)",
            name="expiry_rule",
        ),
        sa.CheckConstraint("issuer IN ('city', 'operator')", name="issuer"),
        sa.CheckConstraint("funding IN ('free', 'bought')", name="funding"),
        sa.CheckConstraint(f"yen_rate BETWEEN 1 AND {YEN_RATE_MAX}", name="yen_rate"),
    )

    id: str = Field(primary_key=True, max_length=32)
    code: str = Field(max_length=32, unique=True)
    ledger_id: int = Field(
        sa_column=sa.Column(
            sa.Integer, sa.ForeignKey(ledger_schema.ledger.c.id), nullable=False, unique=True
        )
    )
    name_ja: str = Field(max_length=200)
    name_en: str = Field(max_length=200)
    unit: str = Field(max_length=16)
    expiry_rule: str = Field(max_length=16)
    expiry_months: int | None = None
    expiry_date: date | None = None
    transferable: bool
    issuer: str = Field(max_length=16)
    funding: str = Field(max_length=16)
    psa_override_reason: str | None = Field(default=None, max_length=500)
    #: Yen the city pays a merchant per point (settlement); frozen once the type has a payment.
    yen_rate: int = Field(default=1, sa_column_kwargs={"server_default": "1"})
    city_account_id: int = Field(sa_column=_account_column())
    expired_account_id: int = Field(sa_column=_account_column())
    settled_account_id: int = Field(sa_column=_account_column())
    created_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))

    def valid_until(self, earned_on: date) -> date:
        """The last day on which points earned on ``earned_on`` can be spent (``NEVER``)."""
        if self.expiry_rule == ExpiryRule.MONTHS:
            assert self.expiry_months is not None
            return end_of_month(earned_on.year, earned_on.month + self.expiry_months)
        if self.expiry_rule == ExpiryRule.FIXED_DATE:
            assert self.expiry_date is not None
            return self.expiry_date
        return NEVER


@dataclass(frozen=True, slots=True)
class NewPointType:
    code: str
    name_ja: str
    name_en: str
    unit: str = "pt"
    expiry_rule: ExpiryRule = ExpiryRule.MONTHS
    expiry_months: int | None = 12
    expiry_date: date | None = None
    transferable: bool = False
    issuer: IssuerKind = IssuerKind.CITY
    funding: Funding = Funding.FREE
    psa_override_reason: str | None = None
    yen_rate: int = 1


def check_yen_rate(yen_rate: object) -> int:
    """A yen rate is an integer (not a bool) from 1 to ``YEN_RATE_MAX``."""
    if (
        not isinstance(yen_rate, int)
        or isinstance(yen_rate, bool)
        or not 1 <= yen_rate <= YEN_RATE_MAX
    ):
        raise InvalidInput(
            f"the yen rate is a whole number of yen per point, 1 to {YEN_RATE_MAX}",
            field="yen_rate",
        )
    return yen_rate


def check_policy(new: NewPointType, today: date) -> None:
    """Refuse a policy that makes no sense or that the Payment Services Act forbids."""
    if not re.fullmatch(CODE_PATTERN, new.code):
        raise InvalidInput(
            "a point type code is 1 to 32 lower-case letters, digits, '-' or '_', "
            "starting with a letter",
            field="code",
        )
    check_yen_rate(new.yen_rate)
    rule = ExpiryRule(new.expiry_rule)
    if rule is ExpiryRule.MONTHS:
        if new.expiry_months is None or not 1 <= new.expiry_months <= EXPIRY_MONTHS_MAX:
            raise ExpiryRuleInvalid(
                f"expiry_months is 1 to {EXPIRY_MONTHS_MAX} for the 'months' rule",
                field="expiry_months",
            )
        if new.expiry_date is not None:
            raise ExpiryRuleInvalid("the 'months' rule takes no expiry_date", field="expiry_date")
    elif rule is ExpiryRule.FIXED_DATE:
        if new.expiry_date is None or new.expiry_date <= today:
            raise ExpiryRuleInvalid(
                f"a fixed expiry date must be after today ({today.isoformat()})",
                field="expiry_date",
            )
        if new.expiry_months is not None:
            raise ExpiryRuleInvalid("the 'fixed_date' rule takes no expiry_months")
    elif new.expiry_months is not None or new.expiry_date is not None:
        raise ExpiryRuleInvalid("the 'none' rule takes no expiry_months or expiry_date")
    if new.issuer == IssuerKind.OPERATOR and new.funding == Funding.BOUGHT:
        longest_ok = add_months(today, PSA_MONTHS)
        too_long = (
            (rule is ExpiryRule.MONTHS and (new.expiry_months or 0) >= PSA_MONTHS)
            or (rule is ExpiryRule.FIXED_DATE and (new.expiry_date or today) > longest_ok)
            or rule is ExpiryRule.NONE
        )
        if too_long and not (new.psa_override_reason or "").strip():
            raise PaymentServicesActRefused(
                "points an operator sells that stay valid for more than 6 months fall under the "
                "Payment Services Act; shorten the expiry or record psa_override_reason "
                "(for example the operator's registration number)",
                field="psa_override_reason",
            )


def create_point_type(
    session: Session, actor: Principal, now: datetime, new: NewPointType
) -> PointType:
    """Create the type, its ledger and its per-ledger accounts, audited, in one transaction."""
    check_policy(new, tokyo_date(now))
    if session.exec(select(PointType).where(PointType.code == new.code)).first() is not None:
        raise Conflict(f"a point type with code {new.code!r} exists already", field="code")
    tx = LedgerTx(session.connection(), lambda: now)
    try:
        point_ledger = tx.create_ledger(new.code, new.name_en)
    except DuplicateLedger as exists:
        raise Conflict(f"a ledger with code {new.code!r} exists already", field="code") from exists

    def account(code: AccountCode, owner: str) -> int:
        side, flags = ACCOUNT_RULES[code]
        return tx.create_account(
            ledger_id=point_ledger.id,
            code=int(code),
            normal_side=side,
            owner_ref=owner,
            flags=flags,
        ).id

    point_type = PointType(
        id=new_id("pty"),
        code=new.code,
        ledger_id=point_ledger.id,
        name_ja=new.name_ja,
        name_en=new.name_en,
        unit=new.unit,
        expiry_rule=ExpiryRule(new.expiry_rule),
        expiry_months=new.expiry_months,
        expiry_date=new.expiry_date,
        transferable=new.transferable,
        issuer=IssuerKind(new.issuer),
        funding=Funding(new.funding),
        psa_override_reason=(new.psa_override_reason or "").strip() or None,
        yen_rate=new.yen_rate,
        city_account_id=account(AccountCode.CITY_FUNDING, CITY_OWNER),
        expired_account_id=account(AccountCode.EXPIRED_POINTS, EXPIRED_OWNER),
        settled_account_id=account(AccountCode.SETTLED, SETTLED_OWNER),
        created_at=now,
    )
    session.add(point_type)
    audit.record(
        session,
        actor=actor,
        action="point_type.create",
        object_type="point_type",
        object_id=point_type.id,
        at=now,
        reason=point_type.psa_override_reason or "",
        details={
            "code": new.code,
            "expiry_rule": str(new.expiry_rule),
            "issuer": str(new.issuer),
            "funding": str(new.funding),
            "yen_rate": new.yen_rate,
        },
    )
    session.flush()
    return point_type


def get_point_type(session: Session, point_type_id: str) -> PointType:
    found = session.get(PointType, point_type_id)
    if found is None:
        raise NotFound(f"no point type {point_type_id}", object_id=point_type_id)
    return found


def find_point_type(session: Session, code: str) -> PointType:
    """The point type with this code (``pt``)."""
    found = session.exec(select(PointType).where(PointType.code == code)).first()
    if found is None:
        raise NotFound(f"no point type with code {code!r}", code=code)
    return found


def list_point_types(session: Session) -> list[PointType]:
    return list(session.exec(select(PointType).order_by(col(PointType.code))))


def has_payment(session: Session, point_type: PointType) -> bool:
    """Whether the type's ledger holds an entry posting to a shop's payable account (a payment,
    pending or posted; its refunds post there too)."""
    account, posting = ledger_schema.account, ledger_schema.posting
    query = sa.select(
        sa.exists()
        .where(account.c.ledger_id == point_type.ledger_id)
        .where(account.c.code == int(AccountCode.MERCHANT_PAYABLE))
        .where(posting.c.account_id == account.c.id)
    )
    return bool(session.connection().execute(query).scalar_one())


def set_yen_rate(
    session: Session,
    actor: Principal,
    now: datetime,
    point_type_id: str,
    yen_rate: int,
    *,
    reason: str,
) -> PointType:
    """Change the type's yen rate, audited; refused once the type has a payment
    (``rate_frozen``). The same rate again changes nothing and records nothing."""
    check_yen_rate(yen_rate)
    if not reason.strip():
        raise InvalidInput("say why the yen rate changes", field="reason")
    point_type = session.exec(
        select(PointType).where(PointType.id == point_type_id).with_for_update()
    ).first()
    if point_type is None:
        raise NotFound(f"no point type {point_type_id}", object_id=point_type_id)
    if point_type.yen_rate == yen_rate:
        return point_type
    if has_payment(session, point_type):
        raise RateFrozen(
            f"point type {point_type.code!r} has payments: its yen rate "
            f"({point_type.yen_rate}) is frozen; a new rate needs a new point type",
            yen_rate=point_type.yen_rate,
        )
    before = point_type.yen_rate
    point_type.yen_rate = yen_rate
    session.add(point_type)
    audit.record(
        session,
        actor=actor,
        action="point_type.yen_rate",
        object_type="point_type",
        object_id=point_type.id,
        at=now,
        reason=reason.strip(),
        details={"before": before, "after": yen_rate},
    )
    session.flush()
    return point_type


def delete_point_type(
    session: Session, actor: Principal, now: datetime, point_type_id: str, *, reason: str
) -> None:
    """Delete an unused type with its ledger; refuse one in use (``point_type_in_use``)."""
    point_type = get_point_type(session, point_type_id)
    # Programs refer to the type by foreign key; the table is the issuers' (imported lazily).
    program = SQLModel.metadata.tables["program"]
    connection = session.connection()
    in_use = connection.execute(
        sa.select(sa.func.count()).where(program.c.point_type_id == point_type_id)
    ).scalar_one()
    entries = connection.execute(
        sa.select(sa.func.count()).where(ledger_schema.entry.c.ledger_id == point_type.ledger_id)
    ).scalar_one()
    if in_use or entries:
        raise PointTypeInUse(
            f"point type {point_type.code!r} is in use ({in_use} programs, {entries} entries); "
            "it cannot be deleted",
            programs=in_use,
            entries=entries,
        )
    ledger_id = point_type.ledger_id
    session.delete(point_type)
    session.flush()
    connection.execute(
        sa.delete(ledger_schema.account).where(ledger_schema.account.c.ledger_id == ledger_id)
    )
    connection.execute(
        sa.delete(ledger_schema.ledger).where(ledger_schema.ledger.c.id == ledger_id)
    )
    audit.record(
        session,
        actor=actor,
        action="point_type.delete",
        object_type="point_type",
        object_id=point_type_id,
        at=now,
        reason=reason,
        details={"code": point_type.code},
    )
