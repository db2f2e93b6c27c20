"""Registries of who takes part: departments, merchants, residents and staff.

Personal data lives only here, never in the ledger: a resident is known everywhere else by a
pseudonymous id (``res_...``). The personal fields (name, the city's resident address number
宛名番号 — never the My Number — and birth year) can be corrected, and erased: erasure blanks them
and records that it happened, while the pseudonymous id and the ledger's immutable rows stay.

Ids are random, prefixed strings (``dep_``, ``mer_``, ``res_``, ``stf_``): unguessable, so an id
in a URL tells nothing, and the prefix tells a reader what kind of thing it names.
"""

from __future__ import annotations

import enum
import secrets
from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from points.sqlbase import UTCDateTime

ID_RANDOM_BYTES = 12
#: A resident address number (宛名番号) as the city's systems write it: 1 to 20 ASCII digits.
ADDRESS_NUMBER_PATTERN = r"^[0-9]{1,20}$"


def new_id(prefix: str) -> str:
    """A random id: the prefix, an underscore, 16 URL-safe characters (96 bits)."""
    return f"{prefix}_{secrets.token_urlsafe(ID_RANDOM_BYTES)}"


class MerchantStatus(enum.StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"
    CLOSED = "closed"


class MerchantKind(enum.StrEnum):
    #: A local shop: paid back in yen.
    SHOP = "shop"
    #: The city's own counter: it exchanges points for local goods from its catalog.
    COUNTER = "counter"


class ResidentStatus(enum.StrEnum):
    ACTIVE = "active"
    MOVED_OUT = "moved_out"
    DECEASED = "deceased"
    BLOCKED = "blocked"


class Verification(enum.StrEnum):
    #: Counter staff checked the resident's identity.
    VERIFIED = "verified"
    #: The resident enrolled themself from the wallet.
    SELF_ENROLLED = "self_enrolled"


class StaffRole(enum.StrEnum):
    """What a member of staff does; each role's tokens carry it."""

    COUNTER = "counter"
    MERCHANT = "merchant"
    ISSUER = "issuer"
    FINANCE = "finance"
    ADMIN = "admin"


class StaffStatus(enum.StrEnum):
    ACTIVE = "active"
    DISABLED = "disabled"


def _instant(nullable: bool = False) -> sa.Column[datetime]:
    return sa.Column(UTCDateTime(), nullable=nullable)


class Department(SQLModel, table=True):
    __tablename__ = "department"

    id: str = Field(primary_key=True, max_length=32)
    code: str = Field(max_length=64, unique=True)
    name_ja: str = Field(max_length=200)
    name_en: str = Field(max_length=200)
    created_at: datetime = Field(sa_column=_instant())


class Merchant(SQLModel, table=True):
    __tablename__ = "merchant"
    __table_args__ = (sa.CheckConstraint("kind IN ('shop', 'counter')", name="kind"),)

    id: str = Field(primary_key=True, max_length=32)
    name_ja: str = Field(max_length=200)
    name_en: str = Field(max_length=200)
    category: str = Field(max_length=64)
    #: A shop, or the city's counter (which exchanges points for goods from its catalog).
    kind: str = Field(default=MerchantKind.SHOP, max_length=16)
    status: str = Field(default=MerchantStatus.ACTIVE, max_length=16)
    created_at: datetime = Field(sa_column=_instant())
    updated_at: datetime = Field(sa_column=_instant())


class Resident(SQLModel, table=True):
    __tablename__ = "resident"

    id: str = Field(primary_key=True, max_length=32)
    name: str | None = Field(default=None, max_length=200)
    #: The city's resident address number (宛名番号), never the My Number.
    address_number: str | None = Field(default=None, max_length=32, index=True)
    birth_year: int | None = Field(default=None)
    verification: str = Field(default=Verification.SELF_ENROLLED, max_length=16)
    status: str = Field(default=ResidentStatus.ACTIVE, max_length=16)
    #: When the personal fields were erased (they are blank from then on).
    erased_at: datetime | None = Field(default=None, sa_column=_instant(nullable=True))
    created_at: datetime = Field(sa_column=_instant())
    updated_at: datetime = Field(sa_column=_instant())


class Staff(SQLModel, table=True):
    __tablename__ = "staff"

    id: str = Field(primary_key=True, max_length=32)
    role: str = Field(max_length=16)
    display_name: str = Field(max_length=200)
    merchant_id: str | None = Field(default=None, foreign_key="merchant.id", max_length=32)
    department_id: str | None = Field(default=None, foreign_key="department.id", max_length=32)
    status: str = Field(default=StaffStatus.ACTIVE, max_length=16)
    created_at: datetime = Field(sa_column=_instant())
    updated_at: datetime = Field(sa_column=_instant())
