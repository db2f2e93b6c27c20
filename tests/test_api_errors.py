"""Every error is ``application/problem+json`` with a stable ``code``, and the OpenAPI document.

A 4xx or 5xx body has ``type``, ``title``, ``status``, ``detail``, ``code`` and ``request_id``
(the same id as the ``X-Request-ID`` response header); a bad request writes nothing; an
unexpected exception is a bare ``internal_error`` whose text and stack trace reach the log only.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from api_world import (
    PROBLEM_JSON,
    RESIDENT_ADDRESS_NUMBER,
    RESIDENT_NAME,
    World,
    assert_problem,
    unique,
)
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.app import create_app
from api.logs import JsonFormatter
from points.settings import Settings

A = "/api/v1/admin"
GENERATED_REQUEST_ID = re.compile(r"^[0-9a-f]{32}$")


@pytest.fixture(scope="module")
def world(shared_world: World) -> World:
    return shared_world


def backend_of(world: World) -> str:
    return world.engine.dialect.name


# Bodies that are not what the route takes ------------------------------------------------


def test_malformed_json_is_a_validation_error(world: World) -> None:
    before = world.snapshot()
    for path in (f"{A}/departments", f"{A}/residents"):
        response = world.client.post(
            path,
            headers={**world.admin.headers, "Content-Type": "application/json"},
            content=b'{"code": "x", "name_ja": ',
        )
        body = assert_problem(response, 422, "validation_error")
        assert body["errors"][0]["type"] == "json_invalid"
    assert world.snapshot() == before


def test_wrong_types_name_each_failing_field(world: World) -> None:
    before = world.snapshot()
    response = world.client.post(
        f"{A}/departments",
        headers=world.admin.headers,
        json={"code": 123, "name_ja": ["a"], "name_en": {"x": 1}},
    )
    body = assert_problem(response, 422, "validation_error")
    locations = {tuple(error["location"]) for error in body["errors"]}
    assert locations == {("body", "code"), ("body", "name_ja"), ("body", "name_en")}
    for error in body["errors"]:
        assert set(error) == {"location", "message", "type"}
    response = world.client.post(
        f"{A}/residents", headers=world.admin.headers, json={"birth_year": "nineteen"}
    )
    body = assert_problem(response, 422, "validation_error")
    assert body["errors"][0]["location"] == ["body", "birth_year"]
    response = world.client.post(f"{A}/departments", headers=world.admin.headers, json=[1, 2])
    assert_problem(response, 422, "validation_error")
    assert world.snapshot() == before


def test_unknown_fields_are_refused_by_every_input_model(world: World) -> None:
    """Input models forbid extras: a typo in a field name is an error, not silently ignored."""
    resident = world.resident.id
    valid: list[tuple[str, str, dict[str, Any], Any]] = [
        (
            "POST",
            f"{A}/departments",
            world.admin.headers,
            {"code": unique("d"), "name_ja": "課", "name_en": "Division"},
        ),
        (
            "POST",
            f"{A}/merchants",
            world.admin.headers,
            {"name_ja": "店", "name_en": "Shop", "category": "cafe"},
        ),
        (
            "POST",
            f"{A}/merchants/{world.merchants['a']}/status",
            world.admin.headers,
            {"status": "suspended", "reason": "r"},
        ),
        ("POST", f"{A}/residents", world.admin.headers, {"name": "名前"}),
        ("PATCH", f"{A}/residents/{resident}", world.admin.headers, {"reason": "r"}),
        (
            "POST",
            f"{A}/residents/{resident}/status",
            world.admin.headers,
            {"status": "blocked", "reason": "r"},
        ),
        ("POST", f"{A}/residents/{resident}/erase", world.admin.headers, {"reason": "r"}),
        ("POST", f"{A}/staff", world.admin.headers, {"role": "finance", "display_name": "x"}),
        (
            "POST",
            f"{A}/staff/{world.counter.id}/status",
            world.admin.headers,
            {"status": "disabled", "reason": "r"},
        ),
        (
            "POST",
            f"{A}/tokens",
            world.admin.headers,
            {"role": "finance", "principal_id": world.finance.id},
        ),
        (
            "POST",
            f"{A}/tokens/{world.finance.token_id}/revoke",
            world.admin.headers,
            {"reason": "r"},
        ),
        ("POST", "/api/v1/counter/residents", world.counter.headers, {"name": "名前"}),
        ("PATCH", f"/api/v1/counter/residents/{resident}", world.counter.headers, {"reason": "r"}),
        (
            "POST",
            f"/api/v1/counter/residents/{resident}/verify",
            world.counter.headers,
            {"reason": "r"},
        ),
        (
            "POST",
            f"/api/v1/counter/residents/{resident}/revoke-tokens",
            world.counter.headers,
            {"reason": "r"},
        ),
        ("POST", "/api/v1/enrolments/code", {}, {"code": "ABCD-EFGH-JK"}),
    ]
    before = world.snapshot()
    for method, path, headers, body in valid:
        response = world.client.request(
            method, path, headers=headers, json={**body, "is_admin": True}
        )
        problem = assert_problem(response, 422, "validation_error")
        assert {
            "location": ["body", "is_admin"],
            "message": "Extra inputs are not permitted",
            "type": "extra_forbidden",
        } in problem["errors"], (path, problem)
    assert world.snapshot() == before
    # Nothing above reached the service: the world's principals still work.
    assert world.client.get("/api/v1/me", headers=world.resident.headers).status_code == 200


def test_a_body_that_is_not_json_is_refused(world: World) -> None:
    before = world.snapshot()
    response = world.client.post(
        f"{A}/departments",
        headers={**world.admin.headers, "Content-Type": "text/plain"},
        content=b'{"code": "plain", "name_ja": "a", "name_en": "b"}',
    )
    assert 400 <= response.status_code < 500
    assert_problem(response, response.status_code)
    response = world.client.post(f"{A}/departments", headers=world.admin.headers)
    body = assert_problem(response, 422, "validation_error")
    assert body["errors"][0]["location"] == ["body"]
    assert world.snapshot() == before


def test_query_and_path_parameters_are_validated(world: World) -> None:
    headers = world.admin.headers
    cases = [
        (f"{A}/residents?limit=0", ["query", "limit"]),
        (f"{A}/residents?limit=201", ["query", "limit"]),
        (f"{A}/residents?limit=ten", ["query", "limit"]),
        (f"{A}/residents?cursor={'x' * 65}", ["query", "cursor"]),
        ("/api/v1/finance/accounts/abc", ["path", "account_id"]),
        ("/api/v1/finance/audit?cursor=-1", ["query", "cursor"]),
        (f"{A}/tokens?principal_id=not-an-id", ["query", "principal_id"]),
    ]
    for path, location in cases:
        body = assert_problem(world.client.get(path, headers=headers), 422, "validation_error")
        assert body["errors"][0]["location"] == location, path
    for path, location in (
        ("/api/v1/counter/residents", ["query", "address_number"]),
        ("/api/v1/counter/residents?address_number=12-34", ["query", "address_number"]),
    ):
        response = world.client.get(path, headers=world.counter.headers)
        body = assert_problem(response, 422, "validation_error")
        assert body["errors"][0]["location"] == location, path


def test_domain_validation_names_the_field(world: World) -> None:
    before = world.snapshot()
    response = world.client.post(
        f"{A}/residents", headers=world.admin.headers, json={"birth_year": 2100}
    )
    body = assert_problem(response, 422, "validation_error")
    assert body["field"] == "birth_year"
    assert world.snapshot() == before


# Who is calling, and what they ask for ------------------------------------------------


def test_a_missing_token_is_401_with_a_bearer_challenge(world: World) -> None:
    response = world.client.get(f"{A}/staff")
    body = assert_problem(response, 401, "unauthenticated")
    assert response.headers["www-authenticate"] == "Bearer"
    assert body["title"] == "Not authenticated"


def test_an_unknown_route_is_404_not_found(world: World) -> None:
    for path in ("/nowhere", "/api/v1/admin/nothing-here", "/api/v2/me"):
        assert_problem(world.client.get(path, headers=world.admin.headers), 404, "not_found")


def test_an_unknown_object_is_404(world: World) -> None:
    cases = [
        (f"{A}/residents/res_doesnotexist", world.admin, "not_found"),
        (f"{A}/merchants/mer_doesnotexist", world.admin, "not_found"),
        (f"{A}/departments/dep_doesnotexist", world.admin, "not_found"),
        (f"{A}/staff/stf_doesnotexist", world.admin, "not_found"),
        ("/api/v1/counter/residents/res_doesnotexist", world.counter, "not_found"),
        ("/api/v1/counter/residents?address_number=1", world.counter, "not_found"),
        ("/api/v1/finance/accounts/987654", world.finance, "account_not_found"),
        ("/api/v1/finance/accounts/987654/history", world.finance, "account_not_found"),
        ("/api/v1/finance/entries/987654", world.finance, "entry_not_found"),
        # Paying at shops.
        ("/api/v1/finance/payments/pay_doesnotexist", world.finance, "not_found"),
        (f"{A}/merchants/mer_doesnotexist/settings", world.admin, "not_found"),
        (f"{A}/merchants/mer_doesnotexist/tills", world.admin, "not_found"),
        ("/api/v1/me/payments/pay_doesnotexist", world.resident, "not_found"),
        ("/api/v1/me/pay-codes/" + "0" * 32, world.resident, "not_found"),
        ("/api/v1/merchant/payments/pay_doesnotexist", world.actors["merchant_a"], "not_found"),
        ("/api/v1/merchant/payment-requests/" + "0" * 32, world.actors["merchant_a"], "not_found"),
    ]
    for path, actor, code in cases:
        assert_problem(world.client.get(path, headers=actor.headers), 404, code)
    before = world.snapshot()
    for path, body in (
        (f"{A}/tokens/tok_doesnotexist/revoke", {"reason": "x"}),
        (f"{A}/tills/til_doesnotexist/revoke", {"reason": "x"}),
        (f"{A}/tills/til_doesnotexist/store-qr", {"reason": "x"}),
        (f"{A}/merchants/mer_doesnotexist/tills", {"name": "x"}),
    ):
        response = world.client.post(path, headers=world.admin.headers, json=body)
        assert_problem(response, 404, "not_found")
    response = world.client.patch(
        f"{A}/merchants/mer_doesnotexist/settings",
        headers=world.admin.headers,
        json={"refund_window_days": 30, "reason": "x"},
    )
    assert_problem(response, 404, "not_found")
    assert world.snapshot() == before


def test_a_wrong_method_is_405(world: World) -> None:
    for method, path in (
        ("DELETE", "/api/v1/me"),
        ("PUT", f"{A}/departments"),
        ("GET", "/api/v1/enrolments/self"),
        ("POST", "/healthz"),
    ):
        response = world.client.request(method, path, headers=world.admin.headers)
        assert_problem(response, 405, "method_not_allowed")
        assert response.headers.get("allow"), (method, path)


def test_nothing_is_written_by_bad_requests(world: World) -> None:
    before = world.snapshot()
    admin = world.admin.headers
    bad = [
        ("POST", f"{A}/staff", {}, {"role": "admin", "display_name": "x"}),
        ("POST", f"{A}/staff", world.counter.headers, {"role": "admin", "display_name": "x"}),
        ("POST", f"{A}/staff", admin, {"role": "merchant", "display_name": "x"}),
        ("POST", f"{A}/staff", admin, {"role": "owner", "display_name": "x"}),
        ("POST", f"{A}/staff", admin, {"role": "admin", "display_name": ""}),
        ("POST", f"{A}/tokens", admin, {"role": "admin", "principal_id": world.finance.id}),
        (
            "POST",
            f"{A}/tokens",
            admin,
            {"role": "finance", "principal_id": world.finance.id, "lifetime_days": 401},
        ),
        ("POST", f"{A}/residents", admin, {"address_number": "12ab"}),
        ("POST", f"{A}/departments", admin, {"code": "Has Spaces", "name_ja": "a", "name_en": "b"}),
        (
            "POST",
            f"{A}/merchants/mer_doesnotexist/status",
            admin,
            {"status": "closed", "reason": "r"},
        ),
        (
            "POST",
            f"{A}/merchants/{world.merchants['a']}/status",
            admin,
            {"status": "bankrupt", "reason": "r"},
        ),
        ("POST", f"{A}/residents/{world.resident.id}/erase", admin, {"reason": ""}),
        ("PATCH", f"{A}/residents/{world.resident.id}", admin, {"name": "no reason"}),
        (
            "POST",
            "/api/v1/counter/residents/res_doesnotexist/enrolment-codes",
            world.counter.headers,
            None,
        ),
        (
            "POST",
            f"/api/v1/counter/residents/{world.resident_self.id}/enrolment-codes",
            world.counter.headers,
            None,
        ),
        ("POST", "/api/v1/enrolments/code", {}, {"code": "ZZZZ-ZZZZ-ZZ"}),
        ("POST", "/api/v1/enrolments/code", {}, {"code": "abc"}),
    ]
    for method, path, headers, body in bad:
        response = world.client.request(method, path, headers=headers, json=body)
        assert 400 <= response.status_code < 500, (path, response.status_code)
        assert_problem(response, response.status_code)
        assert world.snapshot() == before, (method, path, body)


# Unexpected failures --------------------------------------------------------------------


class LineCollector(logging.Handler):
    """Formats each record when it is emitted (inside the request, so it carries the id)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(JsonFormatter())
        self.lines: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))


@pytest.fixture
def api_log() -> Iterator[LineCollector]:
    collector = LineCollector()
    logger = logging.getLogger("api")
    previous = logger.level
    logger.addHandler(collector)
    logger.setLevel(logging.DEBUG)
    try:
        yield collector
    finally:
        logger.removeHandler(collector)
        logger.setLevel(previous)


def test_an_unexpected_exception_is_a_bare_internal_error(
    world: World, api_log: LineCollector
) -> None:
    app = create_app(
        Settings(database_url=str(world.engine.url)), engine=world.engine, clock=world.clock
    )

    async def broken_async() -> None:
        raise RuntimeError("secret SQL detail: SELECT * FROM resident")

    def broken_sync() -> None:
        raise RuntimeError("secret SQL detail: SELECT * FROM resident")

    app.add_api_route("/broken-async", broken_async)
    app.add_api_route("/broken-sync", broken_sync)
    # raise_server_exceptions=True: an exception escaping the app would fail the test here.
    with TestClient(app) as client:
        for path in ("/broken-async", "/broken-sync"):
            response = client.get(path, headers={"X-Request-ID": "trace-me-0001"})
            body = assert_problem(response, 500, "internal_error")
            assert body["request_id"] == "trace-me-0001"
            for leak in ("secret", "SELECT", "RuntimeError", "Traceback", "resident", ".py"):
                assert leak not in response.text, leak
            assert set(body) == {"type", "title", "status", "detail", "code", "request_id"}
    errors = [line for line in api_log.lines if line["level"] == "error"]
    assert len(errors) == 2
    for line in errors:
        assert line["request_id"] == "trace-me-0001"
        assert "secret SQL detail" in line["exception"]
    # The other routes of a fresh app are unaffected.
    with TestClient(app) as client:
        assert client.get("/healthz").status_code == 200


# Request ids and headers ----------------------------------------------------------------


def test_a_valid_request_id_is_kept_and_an_invalid_one_replaced(world: World) -> None:
    client = world.client
    for offered in ("abcdefgh", "req-2026.04.01_0001", "A" * 64):
        response = client.get(
            "/api/v1/me", headers={**world.resident.headers, "X-Request-ID": offered}
        )
        assert response.headers["x-request-id"] == offered
        response = client.get("/api/v1/me", headers={"X-Request-ID": offered})
        assert assert_problem(response, 401)["request_id"] == offered
    for offered in (
        "short",
        "A" * 65,
        "has spaces in it",
        "<script>alert(1)</script>",
        "a/b/c/d/e/f",
    ):
        response = client.get("/api/v1/me", headers={"X-Request-ID": offered})
        replaced = response.headers["x-request-id"]
        assert replaced != offered
        assert GENERATED_REQUEST_ID.match(replaced)
        assert response.json()["request_id"] == replaced
    first = client.get("/healthz").headers["x-request-id"]
    second = client.get("/healthz").headers["x-request-id"]
    assert GENERATED_REQUEST_ID.match(first)
    assert first != second


def test_every_response_carries_the_safety_headers(world: World) -> None:
    for response in (
        world.client.get("/healthz"),
        world.client.get("/api/v1/me", headers=world.resident.headers),
        world.client.get("/api/v1/me"),
        world.client.get("/nowhere"),
    ):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["x-request-id"]


def test_logs_carry_the_route_template_and_never_secrets(
    world: World, api_log: LineCollector
) -> None:
    client = world.client
    client.get(f"{A}/residents/{world.resident.id}", headers=world.admin.headers)
    client.get(
        f"/api/v1/counter/residents?address_number={RESIDENT_ADDRESS_NUMBER}",
        headers=world.counter.headers,
    )
    client.get("/api/v1/me", headers={**world.resident.headers, "X-Request-ID": "log-check-01"})
    client.post(
        f"{A}/tokens",
        headers=world.admin.headers,
        json={"role": "finance", "principal_id": world.finance.id},
    )
    client.get("/api/v1/me", headers={"Authorization": "Bearer kp_LEAKED-tok_nottherealone"})
    access = [line for line in api_log.lines if line["logger"] == "api.access"]
    assert [line["route"] for line in access] == [
        f"{A}/residents/{{resident_id}}",
        "/api/v1/counter/residents",
        "/api/v1/me",
        f"{A}/tokens",
        "/api/v1/me",
    ]
    assert [line["status"] for line in access] == [200, 200, 200, 201, 401]
    assert access[2]["request_id"] == "log-check-01"
    for line in access:
        assert set(line) >= {"at", "level", "method", "route", "status", "duration_ms"}
    text = json.dumps(api_log.lines, ensure_ascii=False)
    secrets = [actor.token for actor in world.actors.values()]
    for secret in [
        *secrets,
        "kp_LEAKED",
        RESIDENT_NAME,
        RESIDENT_ADDRESS_NUMBER,
        world.resident.id,
    ]:
        assert secret not in text, secret


# Out-of-range numbers -------------------------------------------------------------------


def test_an_out_of_range_audit_cursor_is_a_validation_error(world: World) -> None:
    response = world.client.get(
        "/api/v1/finance/audit?cursor=9999999999999999999", headers=world.finance.headers
    )
    assert_problem(response, 422, "validation_error")


def test_out_of_range_ledger_numbers_are_client_errors(
    world: World, request: pytest.FixtureRequest
) -> None:
    huge = "9999999999999999999"
    for path in (
        f"/api/v1/finance/ledgers/{huge}/accounts",
        f"/api/v1/finance/ledgers/{world.ledger_id}/accounts?cursor={huge}",
        f"/api/v1/finance/accounts/{world.account_ids[1]}/history?cursor={huge}",
    ):
        response = world.client.get(path, headers=world.finance.headers)
        assert response.status_code < 500, (path, response.status_code)


# The OpenAPI document -------------------------------------------------------------------


@pytest.fixture(scope="module")
def openapi(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    path: Path = tmp_path_factory.mktemp("openapi") / "unused.db"
    engine = sa.create_engine(f"sqlite:///{path}")
    app: FastAPI = create_app(Settings(database_url=str(engine.url)), engine=engine)
    with TestClient(app) as client:
        response = client.get("/api/v1/openapi.json")
        assert response.status_code == 200
        yield response.json()
    engine.dispose()


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in {"get", "post", "put", "patch", "delete"}:
                yield method.upper(), path, operation


def resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = document["components"]["schemas"][name]
    return schema


def success_status(operation: dict[str, Any]) -> str:
    return min(status for status in operation["responses"] if status.startswith("2"))


def test_openapi_every_operation_is_summarized_and_has_a_success_model(
    openapi: dict[str, Any],
) -> None:
    found = list(operations(openapi))
    assert len(found) >= 40
    streams = 0
    ids = [operation["operationId"] for _method, _path, operation in found]
    assert len(ids) == len(set(ids))
    for method, path, operation in found:
        assert operation.get("summary", "").strip(), (method, path)
        status = success_status(operation)
        if status == "204":  # a deletion, or signing out, answers with no body
            assert (method, path) in (("DELETE", path), ("POST", "/api/v1/sessions/end"))
            assert not operation["responses"]["204"].get("content"), (method, path)
            continue
        # A queued run answers 202 Accepted, with the run's id (the verify job, issue 21).
        accepted = {("POST", "/api/v1/finance/verify-runs")}
        if (method, path) in accepted:
            assert status == "202", (method, path, status)
        else:
            assert status in ("200", "201"), (method, path, status)
        content = operation["responses"][status]["content"]
        if {"text/csv", "text/html", "text/plain", "image/png", "image/svg+xml"} & set(content):
            continue  # a download (a transfer file is text/plain), a page, a picture
        if "text/event-stream" in content:  # server-sent events: the stream is the answer
            assert list(content) == ["text/event-stream"], (method, path)
            streams += 1
            continue
        schema = operation["responses"][status]["content"]["application/json"]["schema"]
        assert resolve(openapi, schema), (method, path)
    # The shop's payment events are the only stream (its polling twin answers JSON).
    assert streams == 1


def test_openapi_request_bodies_forbid_unknown_fields(openapi: dict[str, Any]) -> None:
    bodies = 0
    for method, path, operation in operations(openapi):
        if "requestBody" not in operation:
            continue
        if {"text/csv", "image/png"} & set(operation["requestBody"]["content"]):  # a file
            assert operation["requestBody"].get("required") is True, (method, path)
            continue
        bodies += 1
        schema = resolve(openapi, operation["requestBody"]["content"]["application/json"]["schema"])
        assert schema.get("additionalProperties") is False, (method, path, schema.get("title"))
        assert operation["requestBody"].get("required") is True, (method, path)
    assert bodies >= 15


def test_openapi_documents_errors_and_the_bearer_scheme(openapi: dict[str, Any]) -> None:
    schemes = openapi["components"]["securitySchemes"]
    assert schemes["HTTPBearer"] == {**schemes["HTTPBearer"], "type": "http", "scheme": "bearer"}
    public = {
        "/healthz",
        "/readyz",
        "/api/v1/enrolments/self",
        "/api/v1/enrolments/code",
        "/api/v1/keys",
        "/Q/{text}",
        "/api/v1/catalog/items/{item_id}/image",
        # The wallet app's sessions: the cookie, not a bearer token (api.sessions).
        "/api/v1/wallet-app",
        "/api/v1/sessions/code",
        "/api/v1/sessions/self",
        "/api/v1/sessions/end",
        "/api/v1/sessions/device",
    }
    for method, path, operation in operations(openapi):
        responses = operation["responses"]
        if operation.get("parameters") or operation.get("requestBody"):
            # Whatever takes input can refuse it.
            assert "422" in responses, (method, path)
        if path in public:
            assert "security" not in operation, (method, path)
            continue
        assert operation["security"] == [{"HTTPBearer": []}], (method, path)
        for status in ("401", "403", "404"):
            assert status in responses, (method, path, status)
            assert responses[status]["description"], (method, path, status)


def test_openapi_error_responses_are_problem_json_with_a_schema(openapi: dict[str, Any]) -> None:
    for method, path, operation in operations(openapi):
        for status, response in operation["responses"].items():
            if status.startswith(("4", "5")):
                content = response.get("content", {})
                assert PROBLEM_JSON in content, (method, path, status)
                schema = resolve(openapi, content[PROBLEM_JSON].get("schema", {}))
                assert "code" in schema.get("properties", {}), (method, path, status)


def test_personal_data_never_reaches_an_error_body(world: World) -> None:
    """Errors about a resident name the id at most, never the personal values."""
    response = world.client.post(
        f"/api/v1/counter/residents/{world.resident_self.id}/enrolment-codes",
        headers=world.counter.headers,
    )
    assert_problem(response, 422, "validation_error")
    response = world.client.get(
        f"/api/v1/counter/residents?address_number={RESIDENT_ADDRESS_NUMBER}0",
        headers=world.counter.headers,
    )
    body = assert_problem(response, 404, "not_found")
    assert RESIDENT_ADDRESS_NUMBER not in json.dumps(body)
