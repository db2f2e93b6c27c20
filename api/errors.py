"""Every error a client sees is ``application/problem+json`` (RFC 9457) with a stable ``code``.

This module is the one place where domain errors become HTTP: ``points.errors`` (and
``issuers.errors``, which extend them) and ``ledger.errors`` map to a status by class below;
validation errors are ``validation_error`` with the failing locations; anything unexpected is a bare
``internal_error`` with the request id (the stack trace goes to the log, never to the client).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.logs import request_id_var
from ledger import errors as ledger_errors
from points import errors as points_errors

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "https://komae-points.example/problems/"
log = logging.getLogger("api")

#: The HTTP status of every domain error, by the kind of refusal (its base class); decided here
#: and nowhere else. The first match wins; any other ``PointsError`` is a 400.
_POINTS_STATUS: list[tuple[type[points_errors.PointsError], int]] = [
    (points_errors.InvalidInput, 422),
    (points_errors.TokenRefused, 422),
    (points_errors.Unauthenticated, 401),
    (points_errors.Forbidden, 403),
    (points_errors.NotFound, 404),
    (points_errors.Conflict, 409),
    (points_errors.RateLimited, 429),
    (points_errors.Unavailable, 503),
]

#: Ledger errors by class: (HTTP status, code shown to clients). The first match wins.
_LEDGER_STATUS: list[tuple[type[ledger_errors.LedgerError], int, str | None]] = [
    (ledger_errors.InsufficientFunds, 409, "insufficient_balance"),
    (ledger_errors.IdempotencyConflict, 422, None),
    (ledger_errors.ConstraintViolation, 409, "conflict"),
    (ledger_errors.NotFound, 404, None),
    (ledger_errors.InvalidRequest, 422, None),
    (ledger_errors.BatchRejected, 422, None),
    (ledger_errors.Refused, 409, None),
    (ledger_errors.StorageError, 503, "unavailable"),
]

_TITLES = {
    400: "Bad request",
    401: "Not authenticated",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Request too large",
    415: "Unsupported media type",
    422: "Invalid request",
    429: "Too many requests",
    500: "Internal error",
    503: "Service unavailable",
}
_HTTP_CODES = {
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "request_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}


def problem(
    status: int,
    code: str,
    detail: str,
    *,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": TYPE_BASE + code,
        "title": _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        "code": code,
        "request_id": request_id_var.get(),
    }
    body.update(extra)
    all_headers = dict(headers or {})
    if status == 401:
        all_headers.setdefault("WWW-Authenticate", "Bearer")
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=all_headers)


def _plain(value: Any) -> bool:
    return isinstance(value, str | int | bool | type(None))


def _safe_context(context: dict[str, Any]) -> dict[str, Any]:
    """Only plain values reach clients, and lists of plain values (the point types a shop
    accepts) or of objects of plain values (the problems found in an uploaded file)."""
    return {
        key: value
        for key, value in context.items()
        if (
            _plain(value)
            or (
                isinstance(value, list)
                and all(
                    _plain(item)
                    or (isinstance(item, dict) and all(_plain(v) for v in item.values()))
                    for item in value
                )
            )
        )
        and key not in ("detail", "code", "status", "type", "title", "request_id")
    }


def openapi_problem_content(schema: dict[str, Any]) -> dict[str, Any]:
    """Error responses in the OpenAPI document are served as application/problem+json."""
    for path in schema.get("paths", {}).values():
        for operation in path.values():
            for status, response in operation.get("responses", {}).items():
                content = response.get("content", {})
                if status[:1] in ("4", "5") and "application/json" in content:
                    content[PROBLEM_JSON] = content.pop("application/json")
    return schema


def status_of(error: points_errors.PointsError) -> int:
    for cls, status in _POINTS_STATUS:
        if isinstance(error, cls):
            return status
    return 400


def describe_refusal(
    error: points_errors.PointsError | ledger_errors.LedgerError,
) -> tuple[int, dict[str, Any]]:
    """A domain error as (status, problem fields without the request id): the one mapping."""
    if isinstance(error, points_errors.PointsError):
        return status_of(error), {
            "code": error.code,
            "detail": error.message,
            **_safe_context(error.context),
        }
    for cls, status, code in _LEDGER_STATUS:
        if isinstance(error, cls):
            if status == 503:
                log.error("storage failure: %s", error.message)
                return status, {
                    "code": "unavailable",
                    "detail": "the database is not available; try again shortly",
                }
            if isinstance(error, ledger_errors.ConstraintViolation):
                # The database's own message names tables and values: log it, don't send it.
                log.warning("write refused by the database: %s", error.message)
                return 409, {
                    "code": "conflict",
                    "detail": "the write conflicts with the current state; reload and try again",
                }
            return status, {
                "code": code or error.code,
                "detail": error.message,
                **_safe_context(error.context),
            }
    return 400, {"code": error.code, "detail": error.message}


def install(app: FastAPI) -> None:
    @app.exception_handler(points_errors.PointsError)
    async def points_error(_request: Request, error: points_errors.PointsError) -> JSONResponse:
        status, body = describe_refusal(error)
        headers = {}
        retry_after = error.context.get("retry_after_seconds")
        if isinstance(retry_after, int):
            # A refusal of the moment (a rate limit, a claim or lease another request holds)
            # says how long to wait, in the body and as the standard header.
            headers["Retry-After"] = str(max(1, retry_after))
        return problem(status, body.pop("code"), body.pop("detail"), headers=headers, **body)

    @app.exception_handler(ledger_errors.LedgerError)
    async def ledger_error(_request: Request, error: ledger_errors.LedgerError) -> JSONResponse:
        status, body = describe_refusal(error)
        return problem(status, body.pop("code"), body.pop("detail"), **body)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, error: RequestValidationError) -> JSONResponse:
        errors = [
            {
                "location": [str(part) for part in item.get("loc", ())],
                "message": str(item.get("msg", "")),
                "type": str(item.get("type", "")),
            }
            for item in error.errors()[:20]
        ]
        return problem(422, "validation_error", "the request is not valid", errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, error: StarletteHTTPException) -> JSONResponse:
        if error.status_code == 400:
            # FastAPI's "error parsing the body" (bytes that are not UTF-8 JSON): the request
            # is invalid like any other, and documented as such.
            return problem(
                422, "validation_error", "the body could not be parsed: send UTF-8 encoded JSON"
            )
        code = _HTTP_CODES.get(error.status_code, "http_error")
        detail = (
            error.detail
            if isinstance(error.detail, str)
            else _TITLES.get(error.status_code, "Error")
        )
        return problem(error.status_code, code, detail, headers=dict(error.headers or {}))

    @app.exception_handler(Exception)
    async def unexpected(_request: Request, error: Exception) -> JSONResponse:
        log.exception("unexpected error", exc_info=error)
        return problem(
            500,
            "internal_error",
            "something went wrong on our side; the request id identifies it in our logs",
        )
