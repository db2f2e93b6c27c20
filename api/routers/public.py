"""Public endpoints: health, readiness, and wallet enrolment (no token needed)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlmodel import Session

from api.bodies import StrictRoute
from api.deps import ServicesDep
from api.errors import problem
from api.safety import rate_limited
from api.schemas import EnrolmentRedeem, Health, WalletEnrolled, error_responses
from points import access, db

router = APIRouter(tags=["public"], route_class=StrictRoute)


@router.get("/healthz", response_model=Health, summary="The process is alive")
def healthz() -> Health:
    """Liveness: 200 as long as the process answers. It does not touch the database; use `/readyz`
    for that."""
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Health,
    summary="The database is reachable and migrated to the latest schema",
    responses=error_responses(503),
)
def readyz(services: ServicesDep) -> Health | JSONResponse:
    """Readiness: 200 when the database is reachable and migrated to the latest schema (a load
    balancer sends traffic only then), otherwise 503 `unavailable` saying why."""
    try:
        revision = db.current_revision(services.engine)
    except Exception:
        return problem(503, "unavailable", "the database is not reachable")
    head = db.head_revision()
    if revision != head:
        return problem(
            503,
            "unavailable",
            f"the database schema is at {revision}, not {head}; run `points db upgrade`",
        )
    return Health(status="ready", database=services.engine.dialect.name, schema_revision=revision)


@router.post(
    "/api/v1/enrolments/self",
    response_model=WalletEnrolled,
    status_code=201,
    summary="Start a wallet without visiting the counter (self-enrolled)",
    responses=error_responses(429, 503),
    dependencies=[rate_limited("self_enrolment")],
)
def self_enrol(services: ServicesDep) -> WalletEnrolled:
    """Creates a new self-enrolled resident (no personal data) and returns a wallet token for this
    phone, shown once. Takes no body (or `{}`). Rate-limited per client address (429 with
    Retry-After); counter staff can verify the resident later."""
    now = services.clock()

    def work(session: Session) -> WalletEnrolled:
        resident, new = access.self_enrol(session, now)
        return WalletEnrolled(
            resident_id=resident.id, token=new.secret, expires_at=new.token.expires_at
        )

    return services.write(work)


@router.post(
    "/api/v1/enrolments/code",
    response_model=WalletEnrolled,
    status_code=201,
    summary="Bind this phone to a verified resident's wallet with a code from the counter",
    responses=error_responses(409, 422, 429, 503),
    dependencies=[rate_limited("enrolment_code_attempt")],
)
def enrol_with_code(body: EnrolmentRedeem, services: ServicesDep) -> WalletEnrolled:
    """Redeems a single-use, 15-minute enrolment code that counter staff issued for a verified
    resident, and returns a wallet token for this phone, shown once. A code works once
    (`enrolment_code_used`), expires (`enrolment_code_expired`), and a wrong one is
    `enrolment_code_invalid`; attempts are rate-limited per client address."""
    now = services.clock()

    def work(session: Session) -> WalletEnrolled:
        new = access.redeem_enrolment_code(
            session, now, body.code, secret_key=services.settings.secret_key_bytes
        )
        return WalletEnrolled(
            resident_id=new.token.principal_id, token=new.secret, expires_at=new.token.expires_at
        )

    return services.write(work)
