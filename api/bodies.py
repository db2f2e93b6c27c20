"""What a request body may be, decided once for every route (issue 15, "Strict input").

Every router is built with ``route_class=StrictRoute`` (a test walks the app and fails on a route
that is not one), so a new route gets these rules without thinking:

* **The media type is the one the route takes** (415 ``unsupported_media_type`` otherwise). A
  route with a body model takes ``application/json`` (or ``application/*+json``); a route that
  declares its raw body in ``openapi_extra["requestBody"]`` takes the media types it declares
  there (the award CSV: ``text/csv``, and the names browsers and Windows give a ``.csv`` file);
  a route without a body takes none: an empty body, or ``{}`` as many clients send. A request
  without a ``Content-Type`` but with a body is refused like a wrong one.
* **JSON is parsed strictly**: a key given twice in one object, at any depth, is a 422
  ``validation_error`` naming the key (not silently the last value), as are ``NaN`` and
  ``Infinity`` (not JSON) and bytes that are not JSON at all (``json_invalid``).
* **Values are not coerced**: ``api.schemas.Input`` validates in pydantic's strict mode, so an
  amount is a JSON integer (``true``, ``"100"``, ``100.0`` and ``1e2`` are refused) and an id a
  string; days are ``YYYY-MM-DD`` strings and enumerations their string values.

The checks run before the route's dependencies and its body validation, that is before anything
is read or written; GET, HEAD, OPTIONS and DELETE bodies are never read (``api.safety.BodyGuard``
does not bound them either).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException

from api.schemas import error_responses

#: Methods whose bodies are never read (nor bounded by ``BodyGuard``).
BODYLESS_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "DELETE"})
JSON_MEDIA_TYPE = "application/json"
#: Other names clients give a declared media type: a browser on Windows labels a ``.csv`` file
#: ``application/vnd.ms-excel`` when Excel is installed.
MEDIA_TYPE_ALIASES: dict[str, tuple[str, ...]] = {
    "text/csv": (
        "application/csv",
        "text/x-csv",
        "text/comma-separated-values",
        "application/vnd.ms-excel",
    ),
}

Handler = Callable[[Request], Coroutine[Any, Any, Response]]


class StrictRoute(APIRoute):
    """An ``APIRoute`` that refuses a body of the wrong media type, duplicate JSON keys and
    non-JSON numbers before the route runs; its operation documents 415 and 422."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **options: Any) -> None:
        methods = {method.upper() for method in options.get("methods") or ()}
        if methods - BODYLESS_METHODS:
            options["responses"] = {
                **error_responses(415, 422),
                **(options.get("responses") or {}),
            }
        super().__init__(path, endpoint, **options)

    def get_route_handler(self) -> Handler:
        handler = super().get_route_handler()
        declared = (self.openapi_extra or {}).get("requestBody", {}).get("content", {})
        if self.body_field is not None:
            check: Callable[[StrictRequest, bytes], None] = _json_body
        elif declared:
            check = _declared_body(tuple(declared))
        else:
            check = _no_body

        async def strict_handler(request: Request) -> Response:
            strict = StrictRequest(request.scope, request.receive)
            if request.method not in BODYLESS_METHODS:
                check(strict, await strict.body())
            return await handler(strict)

        return strict_handler


class StrictRequest(Request):
    """A request whose JSON is parsed once, strictly, by the route's check."""

    _strict_json: Any

    async def json(self) -> Any:
        if not hasattr(self, "_strict_json"):
            self._strict_json = parse_json(await self.body())
        return self._strict_json


def media_type_of(request: Request) -> str:
    """The request's media type without parameters (``charset``), lower case; "" if none."""
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def is_json(media_type: str) -> bool:
    return media_type == JSON_MEDIA_TYPE or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


def _json_body(request: StrictRequest, body: bytes) -> None:
    if not body:
        return  # the body model reports the missing body (422)
    if not is_json(media_type_of(request)):
        raise HTTPException(415, f"send the body as {JSON_MEDIA_TYPE}")
    request._strict_json = parse_json(body)


def _declared_body(media_types: tuple[str, ...]) -> Callable[[StrictRequest, bytes], None]:
    accepted = frozenset(
        name
        for media_type in media_types
        for name in (media_type, *MEDIA_TYPE_ALIASES.get(media_type, ()))
    )

    def check(request: StrictRequest, body: bytes) -> None:
        if body and media_type_of(request) not in accepted:
            raise HTTPException(415, f"send the body as {' or '.join(media_types)}")

    return check


def _no_body(request: StrictRequest, body: bytes) -> None:
    if not body:
        return
    if not is_json(media_type_of(request)):
        raise HTTPException(415, "this operation takes no body")
    if parse_json(body) != {}:
        raise RequestValidationError(
            [
                _error(
                    ("body",), "this operation takes no body: send none, or {}", "body_not_allowed"
                )
            ]
        )


def parse_json(body: bytes) -> Any:
    """The JSON document in ``body``, or ``RequestValidationError``: not JSON (``NaN`` and
    ``Infinity`` included), or an object with a key given twice (every such key is named)."""
    duplicated = False

    def build_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal duplicated
        found = dict(pairs)
        if len(found) == len(pairs):
            return found
        duplicated = True
        return _Duplicates(pairs)

    try:
        document = json.loads(body, object_pairs_hook=build_object, parse_constant=_not_json)
    except json.JSONDecodeError as error:
        raise RequestValidationError(
            [_error(("body", error.pos), f"JSON decode error: {error.msg}", "json_invalid")]
        ) from error
    except ValueError as error:  # not UTF-8, or NaN/Infinity
        raise RequestValidationError(
            [_error(("body",), f"JSON decode error: {error}", "json_invalid")]
        ) from error
    if duplicated:
        raise RequestValidationError(
            [
                _error(
                    ("body", *path),
                    f"duplicate key {path[-1]!r} in a JSON object",
                    "json_duplicate_key",
                )
                for path in _duplicate_paths(document, ())
            ]
        )
    return document


class _Duplicates(dict[str, Any]):
    """A JSON object in which some keys were given more than once (kept to name them)."""

    def __init__(self, pairs: list[tuple[str, Any]]) -> None:
        super().__init__(pairs)
        seen: set[str] = set()
        self.duplicates: list[str] = []
        for key, _value in pairs:
            if key in seen and key not in self.duplicates:
                self.duplicates.append(key)
            seen.add(key)


def _duplicate_paths(value: Any, path: tuple[str | int, ...]) -> Iterator[tuple[str | int, ...]]:
    # Recursion is bounded: BodyGuard refuses JSON nested deeper than JSON_DEPTH_MAX.
    if isinstance(value, dict):
        for key in getattr(value, "duplicates", ()):
            yield (*path, key)
        for key, item in value.items():
            yield from _duplicate_paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _duplicate_paths(item, (*path, index))


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not a JSON number")


def _error(location: tuple[str | int, ...], message: str, kind: str) -> dict[str, Any]:
    return {"type": kind, "loc": location, "msg": message, "input": None}
