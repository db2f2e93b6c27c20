"""Access services: issue, revoke and check tokens; enrolment codes; self-enrolment.

See ``points.auth`` for what a token and an enrolment code are. Secrets are compared in constant
time (``hmac.compare_digest``) after a lookup by the token's visible prefix.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlmodel import Session, col, select

from points import audit
from points.auth import (
    DeviceCode,
    EnrolmentCode,
    NewToken,
    Principal,
    Role,
    Token,
    hash_enrolment_code,
    hash_secret,
    make_enrolment_code,
    make_token_secret,
    normalize_enrolment_code,
    secret_matches,
    token_prefix,
)
from points.errors import (
    EnrolmentCodeExpired,
    EnrolmentCodeInvalid,
    EnrolmentCodeUsed,
    InvalidInput,
    NotFound,
    SessionExpired,
    Unauthenticated,
)
from points.people import get
from points.registry import (
    Merchant,
    MerchantStatus,
    Resident,
    ResidentStatus,
    Staff,
    StaffRole,
    StaffStatus,
    Verification,
    new_id,
)

RESIDENT_TOKEN_LIFETIME = timedelta(days=400)
STAFF_TOKEN_LIFETIME_DEFAULT = timedelta(days=90)
TOKEN_LIFETIME_MAX = timedelta(days=400)
ENROLMENT_CODE_LIFETIME = timedelta(minutes=15)
DEVICE_CODE_LIFETIME = timedelta(minutes=15)
#: A wallet app session in use pushes its lapse forward at most this often (one write).
SESSION_RENEW_AFTER = timedelta(hours=1)

#: The acting principal of what the system does by itself (self-enrolment, a redeemed code).
SYSTEM = Principal(Role.ADMIN, "system", "system")


def issue_token(
    session: Session,
    actor: Principal,
    now: datetime,
    *,
    role: Role,
    principal_id: str,
    label: str = "",
    lifetime: timedelta | None = None,
) -> NewToken:
    """A new token for ``principal_id`` in ``role``; the principal must exist, be active, and
    (for staff) hold that role."""
    if role is Role.RESIDENT:
        resident = get(session, Resident, principal_id)
        if resident.status != ResidentStatus.ACTIVE:
            raise InvalidInput(f"resident {principal_id} is {resident.status}")
        lifetime = lifetime or RESIDENT_TOKEN_LIFETIME
    else:
        staff = get(session, Staff, principal_id)
        if staff.role != StaffRole(role.value):
            raise InvalidInput(f"staff {principal_id} is {staff.role}, not {role}")
        if staff.status != StaffStatus.ACTIVE:
            raise InvalidInput(f"staff {principal_id} is disabled")
        lifetime = lifetime or STAFF_TOKEN_LIFETIME_DEFAULT
    if not timedelta(minutes=1) <= lifetime <= TOKEN_LIFETIME_MAX:
        raise InvalidInput("token lifetime is 1 minute .. 400 days", field="lifetime")
    secret, prefix = make_token_secret()
    token = Token(
        id=new_id("tok"),
        prefix=prefix,
        secret_hash=hash_secret(secret),
        role=role,
        principal_id=principal_id,
        label=label,
        created_by=actor.principal_id,
        created_at=now,
        expires_at=now + lifetime,
    )
    session.add(token)
    audit.record(
        session,
        actor=actor,
        action="token.issue",
        object_type="token",
        object_id=token.id,
        at=now,
        details={"role": str(role), "principal_id": principal_id, "prefix": prefix},
    )
    return NewToken(token, secret)


def revoke_token(
    session: Session, actor: Principal, now: datetime, token_id: str, reason: str
) -> Token:
    token = session.get(Token, token_id)
    if token is None:
        raise NotFound(f"no token {token_id}")
    if token.revoked_at is None:
        token.revoked_at = now
        session.add(token)
        audit.record(
            session,
            actor=actor,
            action="token.revoke",
            object_type="token",
            object_id=token_id,
            at=now,
            reason=reason,
            details={"prefix": token.prefix},
        )
    return token


def revoke_principal_tokens(
    session: Session, actor: Principal, now: datetime, principal_id: str, reason: str
) -> int:
    """Revoke every live token of one principal (a lost phone); return how many."""
    tokens = session.exec(
        select(Token).where(Token.principal_id == principal_id, col(Token.revoked_at).is_(None))
    ).all()
    for token in tokens:
        token.revoked_at = now
        session.add(token)
    audit.record(
        session,
        actor=actor,
        action="token.revoke_all",
        object_type="principal",
        object_id=principal_id,
        at=now,
        reason=reason,
        details={"count": len(tokens)},
    )
    return len(tokens)


def authenticate(session: Session, secret: str, now: datetime) -> Principal:
    """The principal a bearer token stands for, or ``Unauthenticated``.

    The same error, whatever was wrong (unknown, expired, revoked, disabled principal), so that
    a caller learns nothing about other people's tokens.
    """
    row = _token_row(session, secret)
    if row is None:
        raise Unauthenticated("the token is not valid")
    return _principal(row, now)


def authenticate_session(
    session: Session, secret: str, now: datetime
) -> tuple[Principal, datetime]:
    """The principal a session cookie stands for (a wallet app's resident, or a staff device's
    member of staff), and when the session lapses.

    A session is a token kept in an HttpOnly cookie (``api.sessions``): any resident token, or
    a staff token that a device code gave (a staff member's bearer token is refused, so that a
    token made for a script does not become a browser session). One that lapsed unused
    (not revoked, its principal still in good standing) is ``SessionExpired``, so that the app
    can say "link this device again with a code"; only the holder of the secret learns it, and
    only of its own session. Anything else wrong is ``Unauthenticated``, as for a bearer token.
    """
    row = _token_row(session, secret)
    # A staff member's bearer token is not a session: only one a device code gave is.
    if row is None or (row.role != Role.RESIDENT and row.device_code_id is None):
        raise Unauthenticated("the session is not valid")
    if row.revoked_at is None and row.expires_at <= now and _in_good_standing(row):
        raise SessionExpired("the session has lapsed; link this device again with a new code")
    return _principal(row, now), row.expires_at


def renew_session(
    session: Session, token_id: str, now: datetime, lifetime: timedelta
) -> datetime | None:
    """Push a live session's lapse to ``now + lifetime`` when it was last pushed more than
    ``SESSION_RENEW_AFTER`` ago (so a session in use writes at most once an hour); the new lapse,
    or None when nothing was written."""
    until = now + lifetime
    renewed: sa.CursorResult[Any] = session.execute(  # type: ignore[assignment]
        sa.update(Token)
        .where(
            col(Token.id) == token_id,
            col(Token.revoked_at).is_(None),
            col(Token.expires_at) > now,
            col(Token.expires_at) < until - SESSION_RENEW_AFTER,
        )
        .values(expires_at=until)
    )
    return until if renewed.rowcount == 1 else None


def end_session(session: Session, secret: str, now: datetime) -> bool:
    """Sign a session out (a wallet app's or a staff device's): revoke its token if it is
    live; whether one was revoked."""
    row = _token_row(session, secret)
    if row is None or row.revoked_at is not None:
        return False
    actor = Principal(Role(row.role), row.principal_id, row.id)
    revoke_token(session, actor, now, row.id, "signed out")
    return True


def _token_row(session: Session, secret: str) -> sa.Row[Any] | None:
    """The token a secret stands for, with its principal's standing; None when no token has
    this secret."""
    prefix = token_prefix(secret)
    if prefix is None:
        return None
    # One query on the hot path of every request: the token, and its principal's standing.
    token_t, resident_t, staff_t, merchant_t, device_t = (
        Token.__table__,  # type: ignore[attr-defined]
        Resident.__table__,  # type: ignore[attr-defined]
        Staff.__table__,  # type: ignore[attr-defined]
        Merchant.__table__,  # type: ignore[attr-defined]
        DeviceCode.__table__,  # type: ignore[attr-defined]
    )
    row = session.execute(
        sa.select(
            token_t.c.id,
            token_t.c.secret_hash,
            token_t.c.role,
            token_t.c.principal_id,
            token_t.c.expires_at,
            token_t.c.revoked_at,
            resident_t.c.status.label("resident_status"),
            staff_t.c.status.label("staff_status"),
            staff_t.c.role.label("staff_role"),
            staff_t.c.merchant_id,
            staff_t.c.department_id,
            merchant_t.c.status.label("merchant_status"),
            # Set when a device code gave this token (a staff device's session).
            device_t.c.id.label("device_code_id"),
        )
        .select_from(token_t)
        .outerjoin(resident_t, resident_t.c.id == token_t.c.principal_id)
        .outerjoin(staff_t, staff_t.c.id == token_t.c.principal_id)
        .outerjoin(merchant_t, merchant_t.c.id == staff_t.c.merchant_id)
        .outerjoin(device_t, device_t.c.token_id == token_t.c.id)
        .where(token_t.c.prefix == prefix)
    ).first()
    if row is None or not secret_matches(secret, row.secret_hash):
        return None
    return row


def _in_good_standing(row: sa.Row[Any]) -> bool:
    """Whether the token's principal may act, whatever the time: an active resident, or active
    staff of the token's role whose shop (if any) is not closed (a suspended shop's staff and
    tills still read and refund)."""
    role = Role(row.role)
    if role is Role.RESIDENT:
        return bool(row.resident_status == ResidentStatus.ACTIVE)
    if row.staff_status != StaffStatus.ACTIVE or row.staff_role != role.value:
        return False
    return row.merchant_id is None or row.merchant_status not in (None, MerchantStatus.CLOSED)


def _principal(row: sa.Row[Any], now: datetime) -> Principal:
    if row.revoked_at is not None or row.expires_at <= now or not _in_good_standing(row):
        raise Unauthenticated("the token is not valid")
    return Principal(
        Role(row.role),
        row.principal_id,
        row.id,
        merchant_id=row.merchant_id,
        department_id=row.department_id,
    )


def create_enrolment_code(
    session: Session, actor: Principal, now: datetime, resident_id: str, *, secret_key: bytes
) -> tuple[EnrolmentCode, str]:
    """A single-use code (shown once) that binds a phone to a verified resident's wallet."""
    resident = get(session, Resident, resident_id)
    if resident.erased_at is not None:
        raise InvalidInput("this resident's personal data was erased; register them again")
    if resident.verification != Verification.VERIFIED:
        raise InvalidInput("verify the resident's identity before issuing an enrolment code")
    if resident.status != ResidentStatus.ACTIVE:
        raise InvalidInput(f"resident {resident_id} is {resident.status}")
    code = make_enrolment_code()
    enrolment = EnrolmentCode(
        id=new_id("enr"),
        code_hash=hash_enrolment_code(code, secret_key),
        resident_id=resident_id,
        created_by=actor.principal_id,
        created_at=now,
        expires_at=now + ENROLMENT_CODE_LIFETIME,
    )
    session.add(enrolment)
    audit.record(
        session,
        actor=actor,
        action="enrolment_code.create",
        object_type="resident",
        object_id=resident_id,
        at=now,
        details={"enrolment_code_id": enrolment.id},
    )
    return enrolment, code


def redeem_enrolment_code(
    session: Session,
    now: datetime,
    code: str,
    *,
    secret_key: bytes,
    lifetime: timedelta | None = None,
    label: str = "wallet (enrolment code)",
) -> NewToken:
    """Use a code once: mark it used and return a new resident token (a wallet app's session
    passes its own ``lifetime`` and ``label``)."""
    enrolment = _live_code(session, EnrolmentCode, code, now, secret_key, "ask the counter")
    # Claimed by a conditional update: two phones racing with one code cannot both win.
    _claim_code(session, EnrolmentCode, enrolment.id, now)
    actor = Principal(Role.RESIDENT, enrolment.resident_id, "enrolment")
    return issue_token(
        session,
        actor,
        now,
        role=Role.RESIDENT,
        principal_id=enrolment.resident_id,
        label=label,
        lifetime=lifetime,
    )


def self_enrol(
    session: Session,
    now: datetime,
    *,
    lifetime: timedelta | None = None,
    label: str = "wallet (self-enrolment)",
) -> tuple[Resident, NewToken]:
    """A new self-enrolled resident with no personal data, and a wallet token."""
    resident = Resident(
        id=new_id("res"),
        verification=Verification.SELF_ENROLLED,
        status=ResidentStatus.ACTIVE,
        created_at=now,
        updated_at=now,
    )
    session.add(resident)
    session.flush()
    actor = Principal(Role.RESIDENT, resident.id, "self-enrolment")
    audit.record(
        session,
        actor=actor,
        action="resident.self_enrol",
        object_type="resident",
        object_id=resident.id,
        at=now,
    )
    return resident, issue_token(
        session,
        actor,
        now,
        role=Role.RESIDENT,
        principal_id=resident.id,
        label=label,
        lifetime=lifetime,
    )


# Staff devices --------------------------------------------------------------------------------


def create_device_code(
    session: Session,
    actor: Principal,
    now: datetime,
    staff_id: str,
    *,
    secret_key: bytes,
    label: str = "",
) -> tuple[DeviceCode, str]:
    """A single-use, 15-minute code (shown once) that enrols one device as ``staff_id`` (a
    till is a member of staff); ``label`` names the device in the list of sessions."""
    staff = get(session, Staff, staff_id)
    if staff.status != StaffStatus.ACTIVE:
        raise InvalidInput(f"staff {staff_id} is disabled", field="staff_id")
    code = make_enrolment_code()
    device = DeviceCode(
        id=new_id("dvc"),
        code_hash=hash_enrolment_code(code, secret_key),
        staff_id=staff_id,
        label=label or staff.display_name,
        created_by=actor.principal_id,
        created_at=now,
        expires_at=now + DEVICE_CODE_LIFETIME,
    )
    session.add(device)
    audit.record(
        session,
        actor=actor,
        action="device_code.create",
        object_type="staff",
        object_id=staff_id,
        at=now,
        details={"device_code_id": device.id, "label": device.label},
    )
    return device, code


def redeem_device_code(
    session: Session, now: datetime, code: str, *, secret_key: bytes, lifetime: timedelta
) -> tuple[DeviceCode, NewToken]:
    """Use a device code once: a new token of its member of staff (the device's session,
    labelled with the code's label), the code marked used with that token's id."""
    device = _live_code(session, DeviceCode, code, now, secret_key, "ask for a new one")
    staff = get(session, Staff, device.staff_id)
    actor = Principal(Role(staff.role), staff.id, "device-code")
    new = issue_token(
        session,
        actor,
        now,
        role=Role(staff.role),
        principal_id=staff.id,
        label=f"device session: {device.label}"[:200],
        lifetime=lifetime,
    )
    session.flush()
    # Claimed with the new token's id (the loser of a race rolls its token back).
    _claim_code(session, DeviceCode, device.id, now, token_id=new.token.id)
    return device, new


CodeRow = TypeVar("CodeRow", EnrolmentCode, DeviceCode)


def _live_code(
    session: Session, table: type[CodeRow], code: str, now: datetime, secret_key: bytes, ask: str
) -> CodeRow:
    """The one-time code (a wallet's enrolment code or a device code) typed, if it can still be
    used; else ``EnrolmentCodeInvalid``, ``…Used`` or ``…Expired`` (``ask``: where a new one
    comes from)."""
    digest = hash_enrolment_code(normalize_enrolment_code(code), secret_key)
    found = session.exec(select(table).where(table.code_hash == digest)).first()
    if found is None:
        raise EnrolmentCodeInvalid(f"the code is not valid; check it or {ask}")
    if found.used_at is not None:
        raise EnrolmentCodeUsed("the code was used already")
    if found.expires_at <= now:
        raise EnrolmentCodeExpired(f"the code has expired; {ask}")
    return found


def _claim_code(
    session: Session,
    table: type[EnrolmentCode] | type[DeviceCode],
    code_id: str,
    now: datetime,
    **values: Any,
) -> None:
    """Mark a code used by a conditional update, not by the value read before: of two requests
    racing with one code, the second waits for the first's row lock, then finds it used."""
    claimed: sa.CursorResult[Any] = session.execute(  # type: ignore[assignment]
        sa.update(table)
        .where(col(table.id) == code_id, col(table.used_at).is_(None))
        .values(used_at=now, **values)
    )
    if claimed.rowcount != 1:
        raise EnrolmentCodeUsed("the code was used already")


def device_sessions(session: Session, now: datetime) -> list[tuple[DeviceCode, Token]]:
    """Every device session not revoked and not lapsed, newest first, with its code."""
    rows = session.exec(
        select(DeviceCode, Token)
        .join(Token, col(Token.id) == col(DeviceCode.token_id))
        .where(col(Token.revoked_at).is_(None), col(Token.expires_at) > now)
        .order_by(col(DeviceCode.used_at).desc(), col(DeviceCode.id))
    )
    return [(device, token) for device, token in rows]
