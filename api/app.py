"""The app factory: ``create_app(settings)`` wires services, errors, logging and routers.

Nothing here holds state between requests except the ``Services`` built once per app (engine,
ledger, clock, the cache of the public signing keys), so the API scales out behind a load balancer.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi
from sqlalchemy.engine import Engine
from starlette.responses import Response
from starlette.staticfiles import StaticFiles

from api import errors
from api.deps import Services
from api.logs import configure_logging, request_context
from api.routers import (
    admin,
    budgets,
    catalog,
    counter,
    counter_assist,
    counter_cards,
    devices,
    exports,
    finance,
    issuer,
    merchant,
    payments_admin,
    payouts,
    programs_admin,
    public,
    reports,
    sessions,
    settlement,
    wallet,
    wallet_payments,
)
from api.safety import API_CSP, APP_CACHE_CONTROL, SECURITY_HEADERS, WEB_CSP, BodyGuard
from api.sessions import send_renewed
from ledger import Ledger
from ledger.service import system_clock
from mobile_web.static import APP_DIR, STAFF_DIR
from points import db
from points.keys import KeyRing
from points.settings import Settings

log = logging.getLogger("api")
DOCS_PATH = "/api/v1/docs"
#: Where the wallet app (``mobile_web``) is served: the API's own origin, so CORS stays closed.
APP_PATH = "/app"
#: Where the staff devices' app (a shop's till, later the counters') is served, likewise.
STAFF_PATH = "/staff"

DESCRIPTION = """
The API of a city's local digital points: departments award points to residents, residents
spend them at local merchants, finance audits the double-entry ledger.

Authenticate with `Authorization: Bearer <token>`. Every error is `application/problem+json`
with a stable `code`.
"""


def create_app(
    settings: Settings | None = None,
    *,
    engine: Engine | None = None,
    clock: Callable[[], datetime] = system_clock,
    keys: KeyRing | None = None,
) -> FastAPI:
    settings = settings or Settings()
    engine = engine or db.make_engine(settings)
    services = Services(
        settings=settings,
        engine=engine,
        ledger=Ledger(engine, clock=clock),
        clock=clock,
        keys=keys or KeyRing(settings.key_dir),
    )
    app = FastAPI(
        title="Komae points API",
        version="1.0.0",
        description=DESCRIPTION,
        openapi_url="/api/v1/openapi.json",
        docs_url=DOCS_PATH,
        redoc_url=None,
    )
    app.state.services = services
    errors.install(app)

    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PATCH"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "X-Request-ID"],
        )
    # Inside the request context (so refusals carry the request id and headers), outside
    # everything else: a hostile body is refused before anything parses it.
    app.add_middleware(
        BodyGuard,
        max_body_bytes=settings.max_body_bytes,
        max_upload_bytes=settings.max_upload_bytes,
    )

    @app.middleware("http")
    async def context(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        async def guarded(inner: Request) -> Response:
            try:
                return await call_next(inner)
            except Exception:
                # Logged here, inside the request's context, so the line carries its id.
                log.exception("unexpected error")
                return errors.problem(
                    500,
                    "internal_error",
                    "something went wrong on our side; the request id identifies it in our logs",
                )

        response = await request_context(request, guarded)
        if response.status_code >= 400 and not response.headers.get("content-type", "").startswith(
            errors.PROBLEM_JSON
        ):
            response = _as_problem(response)
        send_renewed(request, response, settings)
        if request.url.path.startswith((APP_PATH + "/", STAFF_PATH + "/")):
            # The web apps' static files: their own policy; revalidated, so an update shows
            # (the wallet's service worker keeps the copy that works offline).
            response.headers.setdefault("Content-Security-Policy", WEB_CSP)
            response.headers.setdefault("Cache-Control", APP_CACHE_CONTROL)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if not request.url.path.startswith(DOCS_PATH):
            # The interactive docs load their script from a CDN; everything else loads nothing.
            response.headers.setdefault("Content-Security-Policy", API_CSP)
        return response

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = errors.openapi_problem_content(
                get_openapi(
                    title=app.title,
                    version=app.version,
                    description=app.description,
                    routes=app.routes,
                )
            )
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    for router in (
        public.router,
        sessions.router,
        wallet.router,
        wallet_payments.router,
        merchant.router,
        issuer.router,
        counter.router,
        counter_cards.router,
        counter_assist.router,
        finance.router,
        admin.router,
        programs_admin.router,
        budgets.router,
        payments_admin.finance_router,
        payments_admin.admin_router,
        catalog.admin_router,
        catalog.resident_router,
        catalog.merchant_router,
        catalog.counter_router,
        catalog.public_router,
        payouts.admin_router,
        payouts.finance_router,
        payouts.merchant_router,
        settlement.finance_router,
        settlement.merchant_router,
        reports.router,
        exports.router,
        devices.router,
    ):
        app.include_router(router)
    if APP_DIR.is_dir():
        app.mount(APP_PATH, StaticFiles(directory=APP_DIR, html=True), name="wallet-app")
    if STAFF_DIR.is_dir():
        app.mount(STAFF_PATH, StaticFiles(directory=STAFF_DIR, html=True), name="staff-app")
    return app


def _as_problem(response: Response) -> Response:
    """A refusal written by a middleware (CORS answers a foreign origin's preflight with a plain
    "Disallowed CORS origin" 400): every error a client sees is problem+json."""
    request_id = {"X-Request-ID": response.headers.get("X-Request-ID", "")}
    if response.status_code == 400:
        return errors.problem(
            403, "forbidden", "this origin may not call the API", headers=request_id
        )
    return errors.problem(
        response.status_code, "http_error", "the request was refused", headers=request_id
    )


def app_from_environment() -> FastAPI:
    """The factory ``points serve`` gives uvicorn (``--factory``), one per worker. A worker is
    a process of its own (spawned, not forked): it sets up the JSON log lines itself, at
    ``POINTS_LOG_LEVEL``, or its requests would be logged nowhere."""
    settings = Settings()
    configure_logging(settings.log_level)
    return create_app(settings)
