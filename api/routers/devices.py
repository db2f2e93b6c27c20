"""Staff devices (admins): a single-use device code that enrols a till or a staff PC, and the
list of live device sessions (each revoked with `POST /api/v1/admin/tokens/{id}/revoke`).

A device code is read once: typed on the device, or its QR (``enrol_url``, the staff app's
enrolment address with the code after ``#``, which reaches no server log) scanned by the
device's camera. The device then holds a session in an HttpOnly cookie (``api.sessions``), so
no long-lived token is ever typed by hand.
"""

from __future__ import annotations

from fastapi import APIRouter
from sqlmodel import Session

from api.bodies import StrictRoute
from api.deps import AdminDep, ServicesDep
from api.schemas import (
    PROTECTED_ERRORS,
    DeviceCodeCreate,
    DeviceCodeCreated,
    DeviceSessionPublic,
    error_responses,
)
from points import access, qrrender
from points.auth import Role
from points.people import get
from points.registry import Merchant, Staff
from redemption import merchants
from redemption.errors import TillRevoked

#: Where the staff app is served (``mobile_web.static.STAFF_DIR``).
STAFF_APP_PATH = "/staff/"
#: The printed or shown QR of an enrolment address, in millimetres.
QR_SIZE_MM = 50

router = APIRouter(
    prefix="/api/v1/admin", tags=["admin"], responses=PROTECTED_ERRORS, route_class=StrictRoute
)


@router.post(
    "/device-codes",
    response_model=DeviceCodeCreated,
    status_code=201,
    summary="A one-time code that enrols a till or a staff device",
    responses=error_responses(404, 409, 422),
)
def create_device_code(
    body: DeviceCodeCreate, caller: AdminDep, services: ServicesDep
) -> DeviceCodeCreated:
    """A single-use code, valid 15 minutes, for one device: a shop's till (`till_id`: the
    session is the till's) or a member of staff (`staff_id`: a counter, department or finance
    PC). Shown this once, as text and as a QR of `enrol_url` for the device's camera. The
    device redeems it with `POST /api/v1/sessions/device`. Audited. A revoked till is
    `till_revoked` (409), disabled staff `validation_error`."""
    now = services.clock()
    settings = services.settings

    def work(session: Session) -> DeviceCodeCreated:
        if body.till_id is not None:
            till = merchants.get_till(session, body.till_id)
            if till.status != merchants.TillStatus.ACTIVE:
                raise TillRevoked("the till was revoked; add a new one")
            merchant = get(session, Merchant, till.merchant_id)
            staff_id = till.staff_id
            label = body.label or f"{till.name} ({merchant.name_ja})"
        else:
            assert body.staff_id is not None
            staff_id = body.staff_id
            label = body.label or ""
        device, code = access.create_device_code(
            session, caller, now, staff_id, secret_key=settings.secret_key_bytes, label=label
        )
        staff = get(session, Staff, staff_id)
        url = f"{settings.public_origin}{STAFF_APP_PATH}#/enrol/{code}"
        return DeviceCodeCreated(
            code=code,
            expires_at=device.expires_at,
            staff_id=staff_id,
            role=Role(staff.role),
            label=device.label,
            enrol_url=url,
            qr_svg=qrrender.svg(url, QR_SIZE_MM),
        )

    return services.write(work)


@router.get(
    "/device-sessions",
    response_model=list[DeviceSessionPublic],
    summary="Live device sessions (tills and staff PCs)",
)
def list_device_sessions(caller: AdminDep, services: ServicesDep) -> list[DeviceSessionPublic]:
    """Every device session that is neither revoked nor lapsed, newest first: "レジ1
    (狛江珈琲店)", its member of staff, when it was enrolled and when it lapses unless used.
    Revoke one with `POST /api/v1/admin/tokens/{token_id}/revoke`: the device is sent back to
    its enrolment screen."""
    now = services.clock()

    def work(session: Session) -> list[DeviceSessionPublic]:
        return [
            DeviceSessionPublic(
                token_id=token.id,
                token_prefix=token.prefix,
                label=device.label,
                staff_id=device.staff_id,
                role=Role(token.role),
                enrolled_at=token.created_at,
                expires_at=token.expires_at,
            )
            for device, token in access.device_sessions(session, now)
        ]

    return services.read(work)
