"""The wallet app's sessions (``api.sessions``): start one with a counter code or by
self-enrolment, end one, and what the app needs to know of the city's choices."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from sqlmodel import Session

from api import sessions
from api.bodies import StrictRoute
from api.deps import ServicesDep
from api.safety import rate_limited
from api.schemas import EnrolmentRedeem, SessionStarted, WalletAppConfig, error_responses
from points import access, qrtokens
from points.errors import SelfEnrolmentClosed

router = APIRouter(tags=["wallet app"], route_class=StrictRoute)


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
    sessions.check_from_the_app(request, services.settings)
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
    sessions.check_from_the_app(request, services.settings)
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
    """Revokes this browser's session, if it has a live one, and clears the cookie; answers 204
    either way (a lapsed session signs out too)."""
    sessions.check_from_the_app(request, services.settings)
    secret = request.cookies.get(sessions.SESSION_COOKIE)
    if secret is not None:
        now = services.clock()
        services.write(lambda session: access.end_session(session, secret, now))
    response = Response(status_code=204)
    sessions.clear_session_cookie(response, services.settings)
    return response
