"""Dependencies shared by the routers: the services, the caller, and role checks.

``CallerDep`` authenticates the bearer token; ``require(Role.X, ...)`` also checks the role. A
route then checks that the object belongs to the caller (``owns_*`` helpers), because a role
alone never grants access to another principal's data.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.engine import Engine
from sqlmodel import Session

from api import sessions
from ledger import Ledger
from points import access
from points.auth import Principal, Role
from points.errors import Forbidden, Unauthenticated
from points.keys import KeyRing
from points.settings import Settings
from points.uow import unit_of_work
from redemption.cards import CardSigning
from redemption.flows import Signing

T = TypeVar("T")


@dataclass
class Services:
    """What a request needs, built once by the app factory."""

    settings: Settings
    engine: Engine
    ledger: Ledger
    clock: Callable[[], datetime]
    #: The QR signing keys (``POINTS_KEY_DIR``), read lazily and cached.
    keys: KeyRing

    @property
    def signing(self) -> Signing:
        """What signing and verifying QR tokens needs: the keys and the public origin."""
        return Signing(self.keys, self.settings.public_origin)

    @property
    def card_signing(self) -> CardSigning:
        """Cards: the keys, the public origin and the PIN pepper (all in ``POINTS_KEY_DIR``)."""
        return CardSigning(self.keys, self.settings.public_origin, self.keys)

    @property
    def pseudonym_key(self) -> bytes:
        """Keys the shops' pseudonyms of residents (``redemption.payments.customer_ref``)."""
        return self.settings.secret_key_bytes

    def write(self, work: Callable[[Session], T]) -> T:
        """One unit of work that commits (retried when transient)."""
        return unit_of_work(self.engine, work)

    def read(self, work: Callable[[Session], T]) -> T:
        return unit_of_work(self.engine, work, read_only=True)


def get_services(request: Request) -> Services:
    services = request.app.state.services
    assert isinstance(services, Services)
    return services


ServicesDep = Annotated[Services, Depends(get_services)]

_bearer = HTTPBearer(
    auto_error=False,
    description="A token from `points admin create-token`, the admin API, or wallet enrolment.",
)


def get_caller(
    request: Request,
    services: ServicesDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The bearer token's principal; without an ``Authorization`` header, the wallet app's
    session cookie's principal (``api.sessions``: its CSRF checks and its renewal)."""
    now = services.clock()
    if credentials is None and "authorization" not in request.headers:
        cookie = request.cookies.get(sessions.SESSION_COOKIE)
        if cookie is not None:
            return _session_caller(request, services, cookie, now)
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthenticated("send a bearer token in the Authorization header")
    secret = credentials.credentials
    return services.read(lambda session: access.authenticate(session, secret, now))


def _session_caller(request: Request, services: Services, secret: str, now: datetime) -> Principal:
    if request.method not in sessions.SAFE_METHODS:
        sessions.check_from_the_app(request, services.settings)
    principal, lapses = services.read(
        lambda session: access.authenticate_session(session, secret, now)
    )
    lifetime = sessions.session_lifetime(services.settings, principal.role)
    if lapses < now + lifetime - access.SESSION_RENEW_AFTER:
        until = services.write(
            lambda session: access.renew_session(session, principal.token_id, now, lifetime)
        )
        if until is not None:
            sessions.mark_renewed(request, secret, until)
    return principal


CallerDep = Annotated[Principal, Depends(get_caller)]


def require(*roles: Role) -> Any:
    """A dependency that lets only these roles through (403 for the others)."""
    allowed = frozenset(roles)

    def check(caller: CallerDep) -> Principal:
        if caller.role not in allowed:
            raise Forbidden(f"this needs the role {' or '.join(sorted(allowed))}")
        return caller

    return Depends(check)


AdminDep = Annotated[Principal, require(Role.ADMIN)]
CounterDep = Annotated[Principal, require(Role.COUNTER)]
ResidentDep = Annotated[Principal, require(Role.RESIDENT)]
MerchantDep = Annotated[Principal, require(Role.MERCHANT)]
IssuerDep = Annotated[Principal, require(Role.ISSUER)]
AuditorDep = Annotated[Principal, require(Role.FINANCE, Role.ADMIN)]
FinanceDep = Annotated[Principal, require(Role.FINANCE)]
