"""The web apps' sessions: a token kept in an HttpOnly cookie, and their CSRF guard.

Two apps use them: the wallet app (a resident's session, ``X-Points-Client: wallet``) and the
staff app (a device session of a till or a staff PC, enrolled with a device code,
``X-Points-Client: staff``). What follows says "the wallet app"; a staff device's session works
the same way with its own lifetime (``device_session_days``, 30 by default).

The wallet app (``mobile_web``, served at ``/app/`` from the API's own origin) never holds a token
in script-readable storage: Safari deletes what a script wrote after seven days without a visit,
and a resident who pays once a month would lose the wallet. The token lives in the cookie
``points_session`` instead (HttpOnly, SameSite=Strict, Path=/, Secure outside development). Other
clients (shops' devices, departments' systems) keep bearer tokens; a request with an
``Authorization`` header is never read as a session.

**Lapse and renewal.** A session lapses ``wallet_session_days`` after it was last used; a request
with the cookie pushes the lapse forward (``points.access.renew_session``, at most one write an
hour) and sends the cookie again, so that the browser's own limit on a cookie's age (400 days in
Chromium) is pushed forward too. A lapsed session answers 401 ``session_expired`` (the app says:
get a new code at the city counter); a revoked one (a lost phone) 401 ``unauthenticated``.

**Cross-site forgery.** SameSite=Strict keeps the cookie off requests that other sites start, and
two checks do not rely on it: every request that changes anything with the cookie (and the
requests that start a session) must carry ``X-Points-Client: wallet`` (a header no form can send
and no foreign page's fetch can send without a CORS preflight, which the API refuses) and an
``Origin`` that is this service's own (``POINTS_PUBLIC_URL``, or the scheme and host the request
came to); a ``Sec-Fetch-Site: cross-site`` request is refused whatever it carries. Refusals are
403 ``csrf_refused``.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from fastapi import Request, Response

from points.auth import Role
from points.errors import CsrfRefused
from points.settings import Settings

SESSION_COOKIE = "points_session"
APP_HEADER = "X-Points-Client"
APP_HEADER_VALUE = "wallet"
STAFF_HEADER_VALUE = "staff"
APP_HEADER_VALUES = frozenset({APP_HEADER_VALUE, STAFF_HEADER_VALUE})
#: The cookie's own age: Chromium's cap. The session's lapse is the server's to decide.
COOKIE_MAX_AGE = int(timedelta(days=400).total_seconds())
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def session_lifetime(settings: Settings, role: Role = Role.RESIDENT) -> timedelta:
    """How long a session lasts unused: a resident's wallet, or a staff device."""
    if role is Role.RESIDENT:
        return timedelta(days=settings.wallet_session_days)
    return device_lifetime(settings)


def device_lifetime(settings: Settings) -> timedelta:
    """How long a staff device's session lasts unused (every staff role alike)."""
    return timedelta(days=settings.device_session_days)


def own_origins(request: Request, settings: Settings) -> set[str]:
    """The origins this service answers as: the public one, and the one the request came to."""
    origins = {settings.public_origin.lower()}
    host = request.headers.get("host")
    if host:
        origins.add(f"{request.url.scheme}://{host}".lower())
    return origins


def check_from_the_app(
    request: Request, settings: Settings, allowed: frozenset[str] = APP_HEADER_VALUES
) -> None:
    """Refuse (``csrf_refused``) a request that is not one of our apps' own: without the app's
    header (one of ``allowed``), from another origin, or one the browser marks cross-site."""
    if request.headers.get("sec-fetch-site", "").lower() == "cross-site":
        raise CsrfRefused("a request from another site is refused")
    if request.headers.get(APP_HEADER) not in allowed:
        expected = " or ".join(sorted(allowed))
        raise CsrfRefused(f"send the header {APP_HEADER}: {expected} from the app")
    origin = request.headers.get("origin")
    if origin is None or origin.lower() not in own_origins(request, settings):
        raise CsrfRefused("a request from another origin is refused")


def set_session_cookie(response: Response, secret: str, settings: Settings) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        secret,
        max_age=COOKIE_MAX_AGE,
        path="/",
        httponly=True,
        samesite="strict",
        secure=settings.environment == "production",
    )


def clear_session_cookie(response: Response, settings: Settings) -> None:
    response.delete_cookie(
        SESSION_COOKIE,
        path="/",
        httponly=True,
        samesite="strict",
        secure=settings.environment == "production",
    )


def mark_renewed(request: Request, secret: str, until: datetime) -> None:
    """The session was pushed forward: the response sends the cookie again (``send_renewed``)."""
    request.state.session_renewed = (secret, until)


def send_renewed(request: Request, response: Response, settings: Settings) -> None:
    renewed = getattr(request.state, "session_renewed", None)
    if renewed is not None:
        set_session_cookie(response, renewed[0], settings)
