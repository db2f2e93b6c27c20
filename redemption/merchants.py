"""Shops that can be paid: their settings, payable accounts and tills (issue 17 part 1).

**Settings** (``MerchantSettings``, one row per merchant, made with the defaults on first need;
an admin changes them, audited): the point types the shop accepts (``MerchantPointType``), how
store-QR payments are confirmed (``confirm_each``, or ``auto_confirm`` up to
``auto_confirm_max`` points, above which the shop confirms), how long a store-QR payment waits
for the shop (``confirm_timeout_seconds``, 10 minutes by default, at most 24 hours), and how long
after a payment the shop may refund it (``refund_window_days``, 90 by default), and the cash-out
fee deducted at settlement (``fee_bps``, basis points, 0 by default, at most ``FEE_BPS_MAX``:
fee = floor(yen × fee_bps / 10,000); admins or finance set it, the shop only sees it). The row also
orders the shop's payment events: every payment act raises ``event_count`` in its transaction
(``redemption.payments.record_event``), which takes the row's lock, so the shop's events get
their ids in the order they commit and a cursor over them never skips one.

**Payables**: one ledger account per (merchant, point type) (``MerchantPayable``), created on
the first payment in that type; two first payments at once race on the primary key and the
loser's unit of work runs again and finds the winner's account.

**Tills**: a till is one device of a shop. It is a member of the shop's staff in the merchant
role (so it has its own tokens) with a ``Till`` row: its name and its printed *store QR* (a store
token carrying the till's random ``store_code``, signed once and kept as text, so the printed
sticker and the server always agree). Reissuing the store QR gives a new code: the old sticker
then resolves to nothing and is refused as revoked; revoking the till disables its staff member
(its tokens stop working) and its store QR. Only a till takes payments (``till_required``); any
member of the shop's staff reads payments and refunds. A suspended shop's tills read and refund
but take no payments (``merchant_not_active``); a closed shop's tokens are refused at
authentication (``points.access.authenticate``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Field, Session, SQLModel, col, select

from ledger import LedgerTx
from points import access, audit, people, qrtokens
from points.accounts import ACCOUNT_RULES, AccountCode
from points.auth import NewToken, Principal, Role
from points.errors import InvalidInput, NotFound
from points.pointtypes import PointType, find_point_type, get_point_type
from points.registry import Merchant, MerchantStatus, Staff, StaffRole, StaffStatus, new_id
from points.sqlbase import UTCDateTime
from redemption.errors import MerchantNotActive, PointTypeNotAccepted, TillRequired, TillRevoked

CONFIRM_TIMEOUT_DEFAULT = 600
CONFIRM_TIMEOUT_MIN = 60
CONFIRM_TIMEOUT_MAX = 24 * 3600
REFUND_WINDOW_DEFAULT = 90
REFUND_WINDOW_MAX = 366
AUTO_CONFIRM_MAX = 1_000_000
#: The largest cash-out fee: 10 % (1,000 basis points).
FEE_BPS_MAX = 1_000


class ConfirmMode(enum.StrEnum):
    #: The shop's device confirms every store-QR payment.
    CONFIRM_EACH = "confirm_each"
    #: Store-QR payments up to ``auto_confirm_max`` are posted at once.
    AUTO_CONFIRM = "auto_confirm"


class TillStatus(enum.StrEnum):
    ACTIVE = "active"
    REVOKED = "revoked"


class MerchantSettings(SQLModel, table=True):
    __tablename__ = "merchant_settings"
    __table_args__ = (
        sa.CheckConstraint("confirm_mode IN ('confirm_each', 'auto_confirm')", name="confirm_mode"),
        sa.CheckConstraint(
            f"auto_confirm_max BETWEEN 0 AND {AUTO_CONFIRM_MAX}", name="auto_confirm_max"
        ),
        sa.CheckConstraint(
            f"confirm_timeout_seconds BETWEEN {CONFIRM_TIMEOUT_MIN} AND {CONFIRM_TIMEOUT_MAX}",
            name="confirm_timeout",
        ),
        sa.CheckConstraint(
            f"refund_window_days BETWEEN 0 AND {REFUND_WINDOW_MAX}", name="refund_window"
        ),
        sa.CheckConstraint("event_count >= 0", name="event_count"),
        sa.CheckConstraint(f"fee_bps BETWEEN 0 AND {FEE_BPS_MAX}", name="fee_bps"),
    )

    merchant_id: str = Field(primary_key=True, foreign_key="merchant.id", max_length=32)
    confirm_mode: str = Field(default=ConfirmMode.CONFIRM_EACH, max_length=16)
    auto_confirm_max: int = Field(default=0)
    confirm_timeout_seconds: int = Field(default=CONFIRM_TIMEOUT_DEFAULT)
    refund_window_days: int = Field(default=REFUND_WINDOW_DEFAULT)
    #: The cash-out fee in basis points, deducted at settlement: floor(yen × fee_bps / 10,000).
    fee_bps: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    #: Raised by every payment event of the shop (its lock orders the events).
    event_count: int = Field(default=0, sa_column=sa.Column(sa.BigInteger, nullable=False))
    updated_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))


class MerchantPointType(SQLModel, table=True):
    """A point type a shop accepts."""

    __tablename__ = "merchant_point_type"

    merchant_id: str = Field(primary_key=True, foreign_key="merchant.id", max_length=32)
    point_type_id: str = Field(primary_key=True, foreign_key="point_type.id", max_length=32)


class MerchantPayable(SQLModel, table=True):
    """The ledger account that owes a shop for the points it took in one type."""

    __tablename__ = "merchant_payable"

    merchant_id: str = Field(primary_key=True, foreign_key="merchant.id", max_length=32)
    point_type_id: str = Field(primary_key=True, foreign_key="point_type.id", max_length=32)
    account_id: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False, unique=True))


class Till(SQLModel, table=True):
    __tablename__ = "till"
    __table_args__ = (sa.CheckConstraint("status IN ('active', 'revoked')", name="status"),)

    id: str = Field(primary_key=True, max_length=32)
    merchant_id: str = Field(foreign_key="merchant.id", max_length=32, index=True)
    #: The till's member of staff (merchant role): its tokens are the till's.
    staff_id: str = Field(foreign_key="staff.id", max_length=32, unique=True)
    name: str = Field(max_length=100)
    status: str = Field(default=TillStatus.ACTIVE, max_length=16)
    #: The random id the printed store QR carries; a reissue replaces it.
    store_code: bytes = Field(
        sa_column=sa.Column(sa.LargeBinary(qrtokens.ID_SIZE), nullable=False, unique=True)
    )
    #: The store QR as printed (signed once) and the key id that signed it.
    store_text: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    store_kid: int = Field(sa_column=sa.Column(sa.Integer, nullable=False, index=True))
    created_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))
    updated_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))


@dataclass(frozen=True, slots=True)
class SettingsView:
    settings: MerchantSettings
    accepted: list[PointType]


@dataclass(frozen=True, slots=True)
class SettingsChange:
    """What an admin changes; ``None`` keeps a value."""

    accepted_point_types: list[str] | None = None
    confirm_mode: ConfirmMode | None = None
    auto_confirm_max: int | None = None
    confirm_timeout_seconds: int | None = None
    refund_window_days: int | None = None
    fee_bps: int | None = None


@dataclass(frozen=True, slots=True)
class NewTill:
    till: Till
    token: NewToken


# Shops ---------------------------------------------------------------------------------------


def get_merchant(session: Session, merchant_id: str) -> Merchant:
    return people.get(session, Merchant, merchant_id)


def active_merchant(session: Session, merchant_id: str) -> Merchant:
    """The shop, if it may take payments now (``merchant_not_active`` otherwise)."""
    merchant = get_merchant(session, merchant_id)
    if merchant.status != MerchantStatus.ACTIVE:
        raise MerchantNotActive(f"the shop is {merchant.status} and takes no payments")
    return merchant


def settings_of(session: Session, merchant_id: str, now: datetime) -> MerchantSettings:
    """The shop's settings, made with the defaults on first need (a write)."""
    found = session.get(MerchantSettings, merchant_id)
    if found is not None:
        return found
    get_merchant(session, merchant_id)
    created = MerchantSettings(merchant_id=merchant_id, updated_at=now)
    session.add(created)
    session.flush()
    return created


def current_settings(session: Session, merchant_id: str, now: datetime) -> MerchantSettings:
    """The shop's settings as they stand, the defaults if none were made yet (nothing written)."""
    found = session.get(MerchantSettings, merchant_id)
    if found is not None:
        return found
    get_merchant(session, merchant_id)
    return MerchantSettings(merchant_id=merchant_id, updated_at=now)


def accepted_point_types(session: Session, merchant_id: str) -> list[PointType]:
    ids = session.exec(
        select(MerchantPointType.point_type_id)
        .where(MerchantPointType.merchant_id == merchant_id)
        .order_by(col(MerchantPointType.point_type_id))
    ).all()
    return [get_point_type(session, point_type_id) for point_type_id in ids]


def settings_view(session: Session, merchant_id: str, now: datetime) -> SettingsView:
    return SettingsView(
        current_settings(session, merchant_id, now), accepted_point_types(session, merchant_id)
    )


def accepted_type(session: Session, merchant_id: str, code: str | None) -> PointType:
    """The point type a payment is in: the one named, which the shop must accept, or the shop's
    only one when none is named."""
    accepted = accepted_point_types(session, merchant_id)
    if code is None:
        if len(accepted) == 1:
            return accepted[0]
        raise PointTypeNotAccepted(
            "name the point type of the payment"
            if accepted
            else "the shop accepts no point type yet",
            field="point_type",
            accepted=[p.code for p in accepted],
        )
    for point_type in accepted:
        if point_type.code == code:
            return point_type
    raise PointTypeNotAccepted(
        f"the shop does not accept {code}",
        field="point_type",
        accepted=[p.code for p in accepted],
    )


def change_settings(
    session: Session,
    actor: Principal,
    now: datetime,
    merchant_id: str,
    change: SettingsChange,
    *,
    reason: str,
) -> SettingsView:
    """An admin's change of a shop's settings, audited with the values before and after."""
    settings = settings_of(session, merchant_id, now)
    before = _settings_dict(session, settings)
    if change.confirm_timeout_seconds is not None and not (
        CONFIRM_TIMEOUT_MIN <= change.confirm_timeout_seconds <= CONFIRM_TIMEOUT_MAX
    ):
        raise InvalidInput(
            f"the confirmation timeout is {CONFIRM_TIMEOUT_MIN} to {CONFIRM_TIMEOUT_MAX} seconds",
            field="confirm_timeout_seconds",
        )
    if change.refund_window_days is not None and not (
        0 <= change.refund_window_days <= REFUND_WINDOW_MAX
    ):
        raise InvalidInput(
            f"the refund window is 0 to {REFUND_WINDOW_MAX} days", field="refund_window_days"
        )
    if change.auto_confirm_max is not None and not 0 <= change.auto_confirm_max <= AUTO_CONFIRM_MAX:
        raise InvalidInput(
            f"the auto-confirm limit is 0 to {AUTO_CONFIRM_MAX}", field="auto_confirm_max"
        )
    if change.fee_bps is not None:
        check_fee_bps(change.fee_bps)
    if change.accepted_point_types is not None:
        wanted = {find_point_type(session, code).id for code in change.accepted_point_types}
        current = set(
            session.exec(
                select(MerchantPointType.point_type_id).where(
                    MerchantPointType.merchant_id == merchant_id
                )
            ).all()
        )
        for point_type_id in current - wanted:
            row = session.get(MerchantPointType, (merchant_id, point_type_id))
            session.delete(row)
        for point_type_id in sorted(wanted - current):
            session.add(MerchantPointType(merchant_id=merchant_id, point_type_id=point_type_id))
    for name in (
        "confirm_mode",
        "auto_confirm_max",
        "confirm_timeout_seconds",
        "refund_window_days",
        "fee_bps",
    ):
        value = getattr(change, name)
        if value is not None:
            setattr(settings, name, str(value) if name == "confirm_mode" else value)
    settings.updated_at = now
    session.add(settings)
    session.flush()
    after = _settings_dict(session, settings)
    audit.record(
        session,
        actor=actor,
        action="merchant.settings",
        object_type="merchant",
        object_id=merchant_id,
        at=now,
        reason=reason,
        details={"before": before, "after": after},
    )
    return settings_view(session, merchant_id, now)


def _settings_dict(session: Session, settings: MerchantSettings) -> dict[str, object]:
    return {
        "accepted_point_types": [
            p.code for p in accepted_point_types(session, settings.merchant_id)
        ],
        "confirm_mode": settings.confirm_mode,
        "auto_confirm_max": settings.auto_confirm_max,
        "confirm_timeout_seconds": settings.confirm_timeout_seconds,
        "refund_window_days": settings.refund_window_days,
        "fee_bps": settings.fee_bps,
    }


def check_fee_bps(fee_bps: object) -> int:
    """A cash-out fee is an integer (not a bool) of 0 to ``FEE_BPS_MAX`` basis points."""
    if not isinstance(fee_bps, int) or isinstance(fee_bps, bool) or not 0 <= fee_bps <= FEE_BPS_MAX:
        raise InvalidInput(f"the cash-out fee is 0 to {FEE_BPS_MAX} basis points", field="fee_bps")
    return fee_bps


def set_fee(
    session: Session,
    actor: Principal,
    now: datetime,
    merchant_id: str,
    fee_bps: int,
    *,
    reason: str,
) -> SettingsView:
    """Set the shop's cash-out fee (an admin's or finance's act, never the shop's): a settings
    change of that one value, audited as ``merchant.settings`` with the values before and after."""
    check_fee_bps(fee_bps)
    if not reason.strip():
        raise InvalidInput("say why the fee changes", field="reason")
    return change_settings(
        session, actor, now, merchant_id, SettingsChange(fee_bps=fee_bps), reason=reason.strip()
    )


# Payables ------------------------------------------------------------------------------------


def payable_account(
    session: Session, merchant_id: str, point_type: PointType, now: datetime
) -> int:
    """The shop's payable account in the point type, created on first need."""
    found = session.get(MerchantPayable, (merchant_id, point_type.id))
    if found is not None:
        return found.account_id
    side, flags = ACCOUNT_RULES[AccountCode.MERCHANT_PAYABLE]
    account = LedgerTx(session.connection(), lambda: now).create_account(
        ledger_id=point_type.ledger_id,
        code=int(AccountCode.MERCHANT_PAYABLE),
        normal_side=side,
        owner_ref=merchant_id,
        flags=flags,
    )
    # Two first payments at once: the loser fails on the primary key and is run again.
    session.add(
        MerchantPayable(merchant_id=merchant_id, point_type_id=point_type.id, account_id=account.id)
    )
    session.flush()
    return account.id


def payables_of(session: Session, merchant_id: str) -> dict[int, str]:
    """The shop's payable accounts: account id to point type id."""
    rows = session.exec(
        select(MerchantPayable).where(MerchantPayable.merchant_id == merchant_id)
    ).all()
    return {row.account_id: row.point_type_id for row in rows}


# Tills ---------------------------------------------------------------------------------------


def till_of(session: Session, caller: Principal) -> Till:
    """The till the calling member of a shop's staff is (``till_required`` otherwise)."""
    till = session.exec(select(Till).where(Till.staff_id == caller.principal_id)).first()
    if till is None or till.status != TillStatus.ACTIVE or till.merchant_id != caller.merchant_id:
        raise TillRequired("only a till of the shop takes payments")
    return till


def get_till(session: Session, till_id: str, *, merchant_id: str | None = None) -> Till:
    till = session.get(Till, till_id)
    if till is None or (merchant_id is not None and till.merchant_id != merchant_id):
        raise NotFound(f"no till {till_id}")
    return till


def list_tills(session: Session, merchant_id: str) -> list[Till]:
    return list(
        session.exec(
            select(Till)
            .where(Till.merchant_id == merchant_id)
            .order_by(col(Till.created_at), col(Till.id))
        ).all()
    )


def _sign_store(keys: qrtokens.KeySource, now: datetime, origin: str) -> tuple[bytes, str, int]:
    code = qrtokens.new_id()
    text = qrtokens.sign(qrtokens.StoreToken(code), keys, now, origin=origin)
    return code, text, keys.signing_key()[0]


def create_till(
    session: Session,
    actor: Principal,
    now: datetime,
    merchant_id: str,
    name: str,
    *,
    keys: qrtokens.KeySource,
    origin: str,
) -> NewTill:
    """A new till of the shop: its member of staff, its first token and its store QR."""
    merchant = get_merchant(session, merchant_id)
    if merchant.status == MerchantStatus.CLOSED:
        raise MerchantNotActive("the shop is closed")
    if not name.strip():
        raise InvalidInput("a till has a name", field="name")
    staff = people.create_staff(
        session, actor, now, role=StaffRole.MERCHANT, display_name=name, merchant_id=merchant_id
    )
    session.flush()
    code, text, kid = _sign_store(keys, now, origin)
    till = Till(
        id=new_id("til"),
        merchant_id=merchant_id,
        staff_id=staff.id,
        name=name,
        store_code=code,
        store_text=text,
        store_kid=kid,
        created_at=now,
        updated_at=now,
    )
    session.add(till)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="till.create",
        object_type="till",
        object_id=till.id,
        at=now,
        details={"merchant_id": merchant_id, "staff_id": staff.id, "name": name},
    )
    token = access.issue_token(
        session, actor, now, role=Role.MERCHANT, principal_id=staff.id, label=f"till {name}"
    )
    return NewTill(till, token)


def reissue_store_code(
    session: Session,
    actor: Principal,
    now: datetime,
    till_id: str,
    *,
    keys: qrtokens.KeySource,
    origin: str,
    reason: str,
) -> Till:
    """A new store QR for the till; the printed one is refused from now on."""
    till = get_till(session, till_id)
    if till.status != TillStatus.ACTIVE:
        raise TillRevoked("the till was revoked; add a new till instead")
    till.store_code, till.store_text, till.store_kid = _sign_store(keys, now, origin)
    till.updated_at = now
    session.add(till)
    audit.record(
        session,
        actor=actor,
        action="till.reissue_store_code",
        object_type="till",
        object_id=till.id,
        at=now,
        reason=reason,
    )
    session.flush()
    return till


def revoke_till(
    session: Session, actor: Principal, now: datetime, till_id: str, *, reason: str
) -> Till:
    """Revoke a till: its store QR is refused and its member of staff disabled (tokens too)."""
    till = get_till(session, till_id)
    if till.status == TillStatus.REVOKED:
        return till
    till.status = TillStatus.REVOKED
    till.updated_at = now
    session.add(till)
    staff = session.get(Staff, till.staff_id)
    if staff is not None and staff.status == StaffStatus.ACTIVE:
        staff.status = StaffStatus.DISABLED
        staff.updated_at = now
        session.add(staff)
    audit.record(
        session,
        actor=actor,
        action="till.revoke",
        object_type="till",
        object_id=till.id,
        at=now,
        reason=reason,
    )
    session.flush()
    return till


def till_by_store_code(session: Session, code: bytes) -> Till | None:
    """The active till whose printed store QR carries ``code`` (none: reissued or revoked)."""
    till = session.exec(select(Till).where(Till.store_code == code)).first()
    if till is None or till.status != TillStatus.ACTIVE:
        return None
    return till


def live_store_codes(source: Session | Engine, kid: int) -> int:
    """How many printed store QRs of active tills ``kid`` signed (``points keys retire``)."""
    statement = sa.select(sa.func.count()).where(
        col(Till.store_kid) == kid, col(Till.status) == TillStatus.ACTIVE
    )
    if isinstance(source, Session):
        return int(source.exec(statement).one()[0])  # type: ignore[call-overload]
    with source.connect() as connection:
        return int(connection.execute(statement).scalar_one())
