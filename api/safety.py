"""What keeps the API safe for every endpoint: idempotency, rate limits, body limits, headers.

**Value-moving endpoints** declare themselves with ``openapi_extra=VALUE_MOVING`` and take an
``IdempotencyDep``; they then require an ``Idempotency-Key`` header (1 to 255 printable ASCII
characters) and run their work through ``idempotency.run(...)`` (``points.idempotency`` says
what is guaranteed). A test walks the routes and fails if a value-moving route lacks either.
A body field that is a secret (a card's PIN: ``secret_fields``) enters the request fingerprint
only as an HMAC under the server's secret key: an unkeyed hash of a body with a 4-digit PIN
would give the PIN away in milliseconds to whoever reads the idempotency table.

**Rate limits** are declared per route with ``dependencies=[rate_limited("name")]``, from the
table ``RATE_LIMITS`` (per principal or per client address; the sizes are settings); counts
live in the database (``points.ratelimit``), so they hold across processes.

**BodyGuard** (pure ASGI) refuses bodies over ``max_body_bytes`` (413) and JSON nested deeper
than ``JSON_DEPTH_MAX`` (422) before any parsing, so a hostile body costs a bounded amount.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Header, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlmodel import Session

from api.bodies import BODYLESS_METHODS
from api.deps import CallerDep, Services, ServicesDep
from api.errors import describe_refusal, problem
from points import ratelimit
from points.auth import Principal
from points.idempotency import KEY_MAX_LENGTH, request_hash, run_idempotent, stored_result

VALUE_MOVING: dict[str, Any] = {"x-value-moving": True}
#: Paths that take a file (a bulk CSV, a catalog item's picture): their bodies may be up to
#: ``max_upload_bytes`` (the picture's own limit is ``redemption.catalog.IMAGE_MAX_BYTES``).
UPLOAD_SUFFIXES = ("/award-uploads", "/award-uploads/check", "/image")
JSON_DEPTH_MAX = 32

IdempotencyKey = Annotated[
    str,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=KEY_MAX_LENGTH,
        pattern=r"^[\x21-\x7e]+$",
        description="A unique key per intended operation (a UUID); a retry sends the same key.",
    ),
]


def request_fingerprint(
    method: str, path: str, query: list[tuple[str, str]], body: dict[str, Any] | None
) -> bytes:
    """What makes two requests "the same": method, path (with its parameters: one key sent to
    another program's URL is another request), query and body."""
    return request_hash(method, path, {"query": sorted(query), "body": body})


class Idempotency:
    """Runs a value-moving request's work at most once per (caller, key)."""

    def __init__(self, request: Request, services: ServicesDep, key: IdempotencyKey) -> None:
        self._request = request
        self._services = services
        self.key = key

    def _fingerprint(self, body: BaseModel | None, secret_fields: tuple[str, ...]) -> bytes:
        dumped = body.model_dump(mode="json") if body is not None else None
        if dumped is not None and secret_fields:
            key = self._services.settings.secret_key_bytes
            for name in secret_fields:
                value = dumped.get(name)
                if value is not None:
                    message = f"{name}\x00{value}".encode()
                    dumped[name] = hmac.new(key, message, hashlib.sha256).hexdigest()
        return request_fingerprint(
            self._request.method,
            self._request.url.path,
            self._request.query_params.multi_items(),
            dumped,
        )

    def replay(
        self,
        caller: Principal,
        body: BaseModel | None,
        *,
        secret_fields: tuple[str, ...] = (),
    ) -> JSONResponse | None:
        """The stored answer to this very request if it completed before (else ``None``)."""
        stored = stored_result(
            self._services.engine,
            caller.principal_id,
            self.key,
            self._fingerprint(body, secret_fields),
        )
        return _response(stored.status, stored.body, replayed=True) if stored else None

    def run(
        self,
        caller: Principal,
        body: BaseModel | None,
        work: Callable[[Session], tuple[int, Any]],
        *,
        namespace: str | None = None,
        own_transactions: bool = False,
        secret_fields: tuple[str, ...] = (),
    ) -> JSONResponse:
        """Run ``work`` once per key in the caller's namespace (by default the principal; a
        route may share one among a group, e.g. a department's officers)."""
        stored = run_idempotent(
            self._services.engine,
            self._services.clock,
            namespace=namespace or caller.principal_id,
            key=self.key,
            fingerprint=self._fingerprint(body, secret_fields),
            work=work,
            describe_refusal=describe_refusal,
            lease=self._services.settings.idempotency_lease,
            own_transactions=own_transactions,
        )
        return _response(stored.status, stored.body, replayed=stored.replayed)


def _response(status: int, body: Any, *, replayed: bool) -> JSONResponse:
    headers = {"Idempotent-Replayed": "true"} if replayed else {}
    if status >= 400:
        body_out = dict(body)
        return problem(
            status,
            body_out.pop("code"),
            body_out.pop("detail"),
            headers=headers,
            **body_out,
        )
    return JSONResponse(body, status_code=status, headers=headers)


IdempotencyDep = Annotated[Idempotency, Depends(Idempotency)]


@dataclass(frozen=True, slots=True)
class RateLimit:
    """A limit declared by a route: its name, window, whom it counts, and the setting that
    holds how many hits a window allows."""

    name: str
    window_seconds: int
    per: str
    hits_setting: str


#: Every rate limit the API applies (later issues add PIN entry, QR claims and payments).
RATE_LIMITS = {
    "self_enrolment": RateLimit(
        "self_enrolment", 3600, "address", "rate_limit_self_enrolments_per_address"
    ),
    "enrolment_code_attempt": RateLimit(
        "enrolment_code_attempt", 600, "address", "rate_limit_code_attempts_per_address"
    ),
    "enrolment_code_issue": RateLimit(
        "enrolment_code_issue", 3600, "principal", "rate_limit_codes_per_counter"
    ),
}


def rate_limited(name: str) -> Any:
    """A dependency that counts one hit of the named limit per request (429 when full)."""
    declared = RATE_LIMITS[name]

    def limit_of(services: Services) -> ratelimit.Limit:
        hits = getattr(services.settings, declared.hits_setting)
        return ratelimit.Limit(declared.name, int(hits), declared.window_seconds)

    if declared.per == "principal":

        def by_principal(caller: CallerDep, services: ServicesDep) -> None:
            ratelimit.hit(
                services.engine,
                limit_of(services),
                f"principal:{caller.principal_id}",
                services.clock(),
            )

        return Depends(by_principal)

    def by_address(request: Request, services: ServicesDep) -> None:
        address = request.client.host if request.client else "unknown"
        ratelimit.hit(services.engine, limit_of(services), f"address:{address}", services.clock())

    return Depends(by_address)


Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class BodyGuard:
    """Bounded request bodies: size first (413), then JSON nesting depth (422)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        max_upload_bytes: int | None = None,
        upload_suffixes: tuple[str, ...] = UPLOAD_SUFFIXES,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_upload_bytes = max_upload_bytes or max_body_bytes
        self.upload_suffixes = upload_suffixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in BODYLESS_METHODS:
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        path = str(scope.get("path", ""))
        limit = (
            self.max_upload_bytes if path.endswith(self.upload_suffixes) else self.max_body_bytes
        )
        declared = headers.get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await self._refuse(
                scope,
                receive,
                send,
                413,
                "request_too_large",
                f"the body is limited to {limit} bytes",
            )
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await self._refuse(
                    scope,
                    receive,
                    send,
                    413,
                    "request_too_large",
                    f"the body is limited to {limit} bytes",
                )
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        media_type = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        if media_type != b"text/csv" and json_depth(body) > JSON_DEPTH_MAX:
            await self._refuse(
                scope,
                receive,
                send,
                422,
                "validation_error",
                f"JSON nests deeper than {JSON_DEPTH_MAX} levels",
            )
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    @staticmethod
    async def _refuse(
        scope: Scope, receive: Receive, send: Send, status: int, code: str, detail: str
    ) -> None:
        response = problem(status, code, detail)
        await response(scope, receive, send)


def json_depth(body: bytes) -> int:
    """The deepest nesting of ``[`` and ``{`` outside strings (a cheap scan, no parsing)."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in body:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return deepest


SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cache-Control": "no-store",
}
#: For API responses: nothing may be loaded or framed.
API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'"
#: The wallet app's files are revalidated on every load (an update shows at once).
APP_CACHE_CONTROL = "no-cache"
#: For the web app's pages (DESIGN §8): only this origin; the camera is asked for by the page.
WEB_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; media-src 'self' blob:; manifest-src 'self'; worker-src 'self' blob:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'"
)
