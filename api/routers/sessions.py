"""The web apps' sessions (``api.sessions``): the wallet app's, started with a counter code or by
self-enrolment; a staff device's, started with a device code; who the session is; ending one;
and what the wallet app needs to know of the city's choices."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from sqlmodel import Session, select

from api import sessions
from api.bodies import StrictRoute
from api.deps import CallerDep, ServicesDep
from api.safety import rate_limited
from api.schemas import (
    DeviceCodeRedeem,
    EnrolmentRedeem,
    SessionPublic,
    SessionStarted,
    WalletAppConfig,
    error_responses,
)
from points import access, qrtokens
from points.auth import Role, Token
from points.errors import SelfEnrolmentClosed, Unauthenticated
from points.people import get
from points.registry import Department, Merchant, Staff
from redemption.merchants import Till

router = APIRouter(tags=["wallet app"], route_class=StrictRoute)
WALLET_ONLY = frozenset({sessions.APP_HEADER_VALUE})
STAFF_ONLY = frozenset({sessions.STAFF_HEADER_VALUE})


@router.get(
    "/api/v1/wallet-app",
    response_model=WalletAppConfig,
    summary="What the wallet app needs to know of the city's settings",
)
def wallet_app(services: ServicesDep) -> WalletAppConfig:
    """Whether residents may start a wallet without visiting the counter, how long a session
    lasts unused, how many days ahead expiring points are announced, and what every QR code of
    the city starts with. Public."""
    settings = services.settings
    return WalletAppConfig(
        self_enrolment=settings.self_enrolment,
        session_days=settings.wallet_session_days,
        expiry_notice_days=settings.expiry_notice_days,
        qr_prefix=qrtokens.text_prefix(settings.public_origin),
    )


@router.post(
    "/api/v1/sessions/code",
    response_model=SessionStarted,
    status_code=201,
    summary="Sign the wallet app in with a code from the city counter (sets the session cookie)",
    responses=error_responses(403, 409, 422, 429, 503),
    dependencies=[rate_limited("enrolment_code_attempt")],
)
def start_with_code(
    body: EnrolmentRedeem, request: Request, response: Response, services: ServicesDep
) -> SessionStarted:
    """Redeems a counter's single-use, 15-minute enrolment code (as `POST
    /api/v1/enrolments/code`) and starts a session of the wallet app: the token goes into the
    HttpOnly cookie `points_session`, never into the body. Only the app's own requests
    (`X-Points-Client: wallet`, this origin) may start one (`csrf_refused`)."""
    sessions.check_from_the_app(request, services.settings, WALLET_ONLY)
    now = services.clock()
    settings = services.settings

    def work(session: Session) -> SessionStarted:
        new = access.redeem_enrolment_code(
            session,
            now,
            body.code,
            secret_key=settings.secret_key_bytes,
            lifetime=sessions.session_lifetime(settings),
            label="wallet app session (enrolment code)",
        )
        sessions.set_session_cookie(response, new.secret, settings)
        return SessionStarted(resident_id=new.token.principal_id, expires_at=new.token.expires_at)

    return services.write(work)


@router.post(
    "/api/v1/sessions/self",
    response_model=SessionStarted,
    status_code=201,
    summary="Start a self-enrolled wallet in the wallet app (sets the session cookie)",
    responses=error_responses(403, 429, 503),
    dependencies=[rate_limited("self_enrolment")],
)
def start_self_enrolled(
    request: Request, response: Response, services: ServicesDep
) -> SessionStarted:
    """A new self-enrolled resident (as `POST /api/v1/enrolments/self`) with a session of the
    wallet app in the cookie. 403 `self_enrolment_closed` where the city does not allow it."""
    sessions.check_from_the_app(request, services.settings, WALLET_ONLY)
    settings = services.settings
    if not settings.self_enrolment:
        raise SelfEnrolmentClosed("start your wallet with a code from the city counter")
    now = services.clock()

    def work(session: Session) -> SessionStarted:
        resident, new = access.self_enrol(
            session,
            now,
            lifetime=sessions.session_lifetime(settings),
            label="wallet app session (self-enrolment)",
        )
        sessions.set_session_cookie(response, new.secret, settings)
        return SessionStarted(resident_id=resident.id, expires_at=new.token.expires_at)

    return services.write(work)


@router.post(
    "/api/v1/sessions/end",
    status_code=204,
    summary="Sign the wallet app out (the session is revoked, the cookie cleared)",
    responses=error_responses(403),
)
def end(request: Request, services: ServicesDep) -> Response:
    """Revokes this browser's session (the wallet app's or a staff device's), if it has a live
    one, and clears the cookie; answers 204 either way (a lapsed session signs out too)."""
    sessions.check_from_the_app(request, services.settings)
    secret = request.cookies.get(sessions.SESSION_COOKIE)
    if secret is not None:
        now = services.clock()
        services.write(lambda session: access.end_session(session, secret, now))
    response = Response(status_code=204)
    sessions.clear_session_cookie(response, services.settings)
    return response


@router.post(
    "/api/v1/sessions/device",
    response_model=SessionPublic,
    status_code=201,
    summary="Enrol a staff device (a till, a counter PC) with a device code (sets the cookie)",
    tags=["staff app"],
    responses=error_responses(403, 409, 422, 429, 503),
    dependencies=[rate_limited("enrolment_code_attempt")],
)
def start_device(
    body: DeviceCodeRedeem, request: Request, response: Response, services: ServicesDep
) -> SessionPublic:
    """Redeems a single-use, 15-minute device code (`POST /api/v1/admin/device-codes`) and
    starts the device's session: the staff token goes into the HttpOnly cookie
    `points_session`, never into the body; it lapses `POINTS_DEVICE_SESSION_DAYS` (30) days
    after it was last used, and is renewed while used. Only the staff app's own requests
    (`X-Points-Client: staff`, this origin) may start one (`csrf_refused`). Refusals:
    `enrolment_code_invalid` (422), `enrolment_code_used`, `enrolment_code_expired` (409)."""
    sessions.check_from_the_app(request, services.settings, STAFF_ONLY)
    now = services.clock()
    settings = services.settings

    def work(session: Session) -> SessionPublic:
        _device, new = access.redeem_device_code(
            session,
            now,
            body.code,
            secret_key=settings.secret_key_bytes,
            lifetime=sessions.device_lifetime(settings),
        )
        sessions.set_session_cookie(response, new.secret, settings)
        return describe(session, new.token)

    return services.write(work)


@router.get(
    "/api/v1/sessions/current",
    response_model=SessionPublic,
    summary="Who this session (or bearer token) is",
    tags=["staff app"],
    responses=error_responses(401, 403, 404),
)
def current(caller: CallerDep, services: ServicesDep) -> SessionPublic:
    """The caller: role and id, the session's label and lapse, and for staff their shop (and
    till, for a till) or department, so that an app can show "the till レジ1 at 狛江珈琲店".
    401 `unauthenticated` without a live session, `session_expired` for a lapsed one."""

    def work(session: Session) -> SessionPublic:
        token = session.get(Token, caller.token_id)
        if token is None:  # the principal was authenticated from it a moment ago
            raise Unauthenticated("the session is not valid")
        return describe(session, token)

    return services.read(work)


def describe(session: Session, token: Token) -> SessionPublic:
    """A token's principal as an app shows it (its shop and till, or its department)."""
    info = SessionPublic(
        role=Role(token.role),
        principal_id=token.principal_id,
        label=token.label,
        expires_at=token.expires_at,
    )
    if info.role is Role.RESIDENT:
        return info
    staff = get(session, Staff, token.principal_id)
    if staff.department_id is not None:
        department = get(session, Department, staff.department_id)
        info.department_id = department.id
        info.department_name_ja, info.department_name_en = department.name_ja, department.name_en
    if staff.merchant_id is not None:
        merchant = get(session, Merchant, staff.merchant_id)
        info.merchant_id = merchant.id
        info.merchant_name, info.merchant_name_en = merchant.name_ja, merchant.name_en
        till = session.exec(select(Till).where(Till.staff_id == staff.id)).first()
        if till is not None:
            info.till_id, info.till_name = till.id, till.name
    return info
