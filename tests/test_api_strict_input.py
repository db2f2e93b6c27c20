"""Strict input through the HTTP API (issue 15), on SQLite and, when
``POINTS_TEST_POSTGRES_URL`` is set, PostgreSQL.

A tester found ``{"amount": true}`` allocating 1 pt, and ``"100"``, ``100.0`` and ``1e2``
accepted as amounts. Every request body is now taken as it is (``api.bodies``,
``api.schemas.Input``): integers are JSON integers, ids are strings, a key given twice is
refused, and a body of the wrong media type is 415. Each refusal is checked on several money
routes (a budget allocation, a single award, a wallet closure, admin's programs and tokens, the
counter) and changes nothing: the world's row counts, stored idempotency answers and rate-limit
windows are the same before and after. Each route's valid body is accepted too, so that a
refusal is the value's doing, not the route's.

The routes of paying at shops (issue 17) join the same tests: a till's payment QR and pay-code
payment, a resident's payment, a refund, the resident's pay-code limit and a shop's settings
(integers), a scanned token and a till's name (strings), and each refuses unknown fields; so
does a till's card payment (issue 19: its amount, and its PIN, a string of digits), and so do
the counter's assisted payment and resident lookup and an organizer's check-in by card.
Settlement's terms (issue 20) too: a point type's yen rate and a shop's fee (integers) and a
program's budget code (a string).
"""

from __future__ import annotations

import enum
import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from typing import Annotated, Any

import pytest
from api_world import (
    FISCAL_YEAR,
    POINT_TYPE_CODE,
    Actor,
    World,
    assert_problem,
    unique,
    unique_address_number,
)
from fastapi.routing import APIRoute, iter_route_contexts
from payment_helpers import Shop, funded_resident, once_per_world, open_shop, pay, payment_qr
from pydantic import ConfigDict, TypeAdapter, ValidationError

from api.bodies import StrictRoute
from api.schemas import Input

A = "/api/v1/admin"
B = "/api/v1/budgets"
C = "/api/v1/counter"
F = "/api/v1/finance"
ISS = "/api/v1/issuer"
M = "/api/v1/merchant"
ME = "/api/v1/me"
#: A placeholder replaced by raw JSON text in a serialised body.
HOLE = "__value__"


@pytest.fixture(scope="module")
def world(shared_world: World) -> World:
    # The payment routes' shop, payer and payment, made before any test takes a snapshot.
    posted_payment(shared_world)
    strict_event(shared_world)
    return shared_world


def written(world: World) -> dict[str, int]:
    """The world's row counts, with the stored idempotency answers and rate-limit windows."""
    counts = world.snapshot()
    with world.engine.connect() as connection:
        for table in ("idempotency_record", "rate_limit_window", "award_upload"):
            counts[table] = int(
                connection.exec_driver_sql(f"SELECT COUNT(*) FROM {table}").scalar_one()
            )
    return counts


@dataclass(frozen=True)
class Route:
    """A route that takes a JSON body: who calls it, and a body it accepts."""

    name: str
    #: The caller: a principal of the world by name, or one made for the route (a till).
    actor: str | Callable[[World], Actor]
    path: Callable[[World], str]
    body: Callable[[World], dict[str, Any]]
    #: A field the tests fill with wrong shapes: an integer or a string (an id, a reason).
    field: str
    value_moving: bool = False
    #: The status of the valid body (None: sent by a test of its own).
    accepted: int | None = 201
    method: str = "POST"

    def caller(self, world: World) -> Actor:
        return world.actors[self.actor] if isinstance(self.actor, str) else self.actor(world)

    def headers(self, world: World, media_type: str | None = "application/json") -> dict[str, str]:
        headers = dict(self.caller(world).headers)
        if self.value_moving:
            headers["Idempotency-Key"] = str(uuid.uuid4())
        if media_type is not None:
            headers["Content-Type"] = media_type
        return headers

    def send(
        self, world: World, content: bytes, media_type: str | None = "application/json"
    ) -> Any:
        return world.client.request(
            self.method, self.path(world), headers=self.headers(world, media_type), content=content
        )

    def with_raw(self, world: World, raw: str) -> bytes:
        """The route's valid body with ``field`` set to the raw JSON text ``raw``."""
        body = {**self.body(world), self.field: HOLE}
        return json.dumps(body).replace(json.dumps(HOLE), raw).encode()


def allocation(world: World) -> dict[str, Any]:
    return {"amount": 1_000, "reason": "strict input test"}


def award(world: World) -> dict[str, Any]:
    return {"resident_id": world.fresh_resident().id, "record_id": unique("strict")}


def program(world: World) -> dict[str, Any]:
    return {
        "department_id": world.departments["a"],
        "point_type_id": world.point_type_id,
        "module": "fixed_award",
        "name_ja": "厳格",
        "name_en": "Strict",
        "amount": 100,
        "valid_from": "2026-04-01",
    }


def token(world: World) -> dict[str, Any]:
    return {"role": "finance", "principal_id": world.finance.id, "lifetime_days": 30}


def counter_resident(world: World) -> dict[str, Any]:
    return {"name": "厳格 太郎", "address_number": unique_address_number(), "birth_year": 1950}


def staff(world: World) -> dict[str, Any]:
    return {"role": "issuer", "display_name": "厳格 花子", "department_id": world.departments["b"]}


ALLOCATION = Route(
    "budget allocation",
    "finance",
    lambda world: f"{B}/{world.programs['a']}/{FISCAL_YEAR}/allocations",
    allocation,
    "amount",
    value_moving=True,
)
AWARD = Route(
    "single award",
    "issuer_a",
    lambda world: f"{ISS}/programs/{world.programs['a']}/awards",
    award,
    "resident_id",
    value_moving=True,
)
CLOSE_WALLET = Route(
    "wallet closure",
    "counter",
    lambda world: f"{C}/residents/{world.resident.id}/wallets/pt/close",
    lambda world: {"reason": "moved out"},
    "reason",
    value_moving=True,
    accepted=None,
)
PROGRAM = Route("admin: program", "admin", lambda world: f"{A}/programs", program, "amount")
TOKEN = Route("admin: token", "admin", lambda world: f"{A}/tokens", token, "lifetime_days")
COUNTER_RESIDENT = Route(
    "counter: resident", "counter", lambda world: f"{C}/residents", counter_resident, "birth_year"
)
STAFF = Route("admin: staff", "admin", lambda world: f"{A}/staff", staff, "department_id")


# Paying at shops: a shop with a till, and a resident with points, once per world.


def shop(world: World) -> Shop:
    return once_per_world(world, "strict input shop", lambda: open_shop(world))


def payer(world: World) -> Actor:
    return once_per_world(world, "strict input payer", lambda: funded_resident(world, 10_000))


def till(world: World) -> Actor:
    return shop(world).till


def posted_payment(world: World) -> str:
    """A payment of 1,000 pt at the shop, to refund a point of at a time."""

    def make() -> str:
        paid = pay(world, payer(world), payment_qr(world, shop(world), 1_000)["token"])
        assert paid.status_code == 201, paid.text
        return str(paid.json()["id"])

    return once_per_world(world, "strict input payment", make)


def pay_code(world: World) -> dict[str, Any]:
    """A new pay code of the payer (made before the test's snapshot), for 1 pt."""
    made = world.client.post(f"{ME}/pay-codes", json={}, headers=payer(world).headers)
    assert made.status_code == 201, made.text
    return {"token": made.json()["token"], "amount": 1, "reference": "R-1"}


def card_payment(world: World) -> dict[str, Any]:
    """The payer's card (issued once per world), its number and PIN typed for 1 pt."""

    def make() -> str:
        shop(world)  # the signing key and the PIN pepper
        made = world.client.post(
            f"{C}/residents/{payer(world).id}/cards",
            json={"pin": "4826"},
            headers=world.counter.headers,
        )
        assert made.status_code == 201, made.text
        return str(made.json()["number"])

    number = once_per_world(world, "strict input card", make)
    return {"card_number": number, "pin": "4826", "amount": 1}


PAYMENT_REQUEST = Route(
    "till: payment QR",
    till,
    lambda world: f"{M}/payment-requests",
    lambda world: {"amount": 100, "point_type": POINT_TYPE_CODE, "expires_in_seconds": 60},
    "amount",
)
PAY_CODE_PAYMENT = Route(
    "till: pay-code payment",
    till,
    lambda world: f"{M}/pay-code-payments",
    pay_code,
    "amount",
    value_moving=True,
)
CARD_PAYMENT = Route(
    "till: card payment",
    till,
    lambda world: f"{M}/card-payments",
    card_payment,
    "amount",
    value_moving=True,
)
CARD_PIN = Route(
    "till: card payment's PIN",
    till,
    lambda world: f"{M}/card-payments",
    card_payment,
    "pin",
    value_moving=True,
)


def assisted_payment(world: World) -> dict[str, Any]:
    """The payer's card, its PIN typed at the counter, to pay the shop 1 pt."""
    return {
        **card_payment(world),
        "merchant_id": shop(world).merchant_id,
        "reason": "strict input: the resident has no phone",
    }


def card_check_in(world: World) -> dict[str, Any]:
    return {"card_number": card_payment(world)["card_number"]}


def strict_event(world: World) -> str:
    return once_per_world(world, "strict input event", lambda: world.fresh_event().id)


ASSISTED_PAYMENT = Route(
    "counter: assisted payment",
    "counter",
    lambda world: f"{C}/assisted-payments",
    assisted_payment,
    "amount",
    value_moving=True,
)
ASSISTED_PIN = Route(
    "counter: assisted payment's PIN",
    "counter",
    lambda world: f"{C}/assisted-payments",
    assisted_payment,
    "pin",
    value_moving=True,
)
RESIDENT_FIND = Route(
    "counter: find a resident",
    "counter",
    lambda world: f"{C}/residents/find",
    lambda world: {"resident_id": world.resident.id},
    "resident_id",
    accepted=200,
)
CARD_CHECK_IN = Route(
    "issuer: check-in by card",
    "issuer_a",
    lambda world: f"{ISS}/events/{strict_event(world)}/card-check-ins",
    card_check_in,
    "card_number",
    value_moving=True,
)
#: Issue 19 part 5 and 8: the counter acting for a resident, an organizer scanning a card.
ASSIST_ROUTES = [ASSISTED_PAYMENT, RESIDENT_FIND, CARD_CHECK_IN]
PAYMENT = Route(
    "resident: store-QR payment",
    payer,
    lambda world: f"{ME}/payments",
    lambda world: {"token": shop(world).store_qr, "amount": 1, "point_type": POINT_TYPE_CODE},
    "amount",
    value_moving=True,
)
REFUND = Route(
    "shop: refund",
    till,
    lambda world: f"{M}/payments/{posted_payment(world)}/refunds",
    lambda world: {"amount": 1, "reason": "strict input"},
    "amount",
    value_moving=True,
)
PAY_CODE_LIMIT = Route(
    "resident: pay-code limit",
    payer,
    lambda world: f"{ME}/payment-settings",
    lambda world: {"pay_code_limit": 5_000},
    "pay_code_limit",
    accepted=200,
    method="PUT",
)
SHOP_SETTINGS = Route(
    "admin: shop settings",
    "admin",
    lambda world: f"{A}/merchants/{shop(world).merchant_id}/settings",
    lambda world: {"auto_confirm_max": 0, "refund_window_days": 90, "reason": "strict input"},
    "auto_confirm_max",
    accepted=200,
    method="PATCH",
)
YEN_RATE = Route(
    "admin: point type's yen rate",
    "admin",
    # The world's type keeps its rate of 1: the same rate again is accepted even once frozen.
    lambda world: f"{A}/point-types/{world.point_type_id}/yen-rate",
    lambda world: {"yen_rate": 1, "reason": "strict input"},
    "yen_rate",
    accepted=200,
    method="PUT",
)
SHOP_FEE = Route(
    "finance: shop's fee",
    "finance",
    lambda world: f"{F}/merchants/{shop(world).merchant_id}/fee",
    lambda world: {"fee_bps": 0, "reason": "strict input"},
    "fee_bps",
    accepted=200,
    method="PUT",
)
BUDGET_CODE = Route(
    "admin: program's budget code",
    "admin",
    lambda world: f"{A}/programs/{world.programs['b']}/budget-code",
    lambda world: {"budget_code": "03-01-02-19", "reason": "strict input"},
    "budget_code",
    accepted=200,
    method="PUT",
)
PREVIEW = Route(
    "resident: payment preview",
    payer,
    lambda world: f"{ME}/payment-previews",
    lambda world: {"token": shop(world).store_qr},
    "token",
    accepted=200,
)
NEW_TILL = Route(
    "admin: till",
    "admin",
    lambda world: f"{A}/merchants/{shop(world).merchant_id}/tills",
    lambda world: {"name": "レジ2"},
    "name",
)


def counter_item(world: World) -> dict[str, str]:
    """A city counter and an item of 1 pt with a large stock (made once per world)."""

    def make() -> dict[str, str]:
        made = world.client.post(
            f"{A}/merchants",
            json={"name_ja": "窓口", "name_en": "Counter", "category": "city", "kind": "counter"},
            headers=world.admin.headers,
        )
        assert made.status_code == 201, made.text
        counter = open_shop(world, made.json()["id"])
        item = world.client.post(
            f"{A}/catalog-items",
            json={
                "merchant_id": counter.merchant_id,
                "point_type": POINT_TYPE_CODE,
                "name_ja": "エコバッグ",
                "name_en": "Eco bag",
                "points": 1,
                "stock": 100_000,
            },
            headers=world.admin.headers,
        )
        assert item.status_code == 201, item.text
        return {"merchant_id": counter.merchant_id, "item_id": item.json()["id"]}

    return once_per_world(world, "strict input counter", make)


EXCHANGE = Route(
    "resident: exchange",
    payer,
    lambda world: f"{ME}/exchanges",
    lambda world: {"item_id": counter_item(world)["item_id"], "quantity": 1},
    "quantity",
    value_moving=True,
)
STOCK_CHANGE = Route(
    "admin: stock change",
    "admin",
    lambda world: f"{A}/catalog-items/{counter_item(world)['item_id']}/stock-changes",
    lambda world: {"delta": 1, "reason": "strict input"},
    "delta",
)
CATALOG_ITEM = Route(
    "admin: catalog item",
    "admin",
    lambda world: f"{A}/catalog-items",
    lambda world: {
        "merchant_id": counter_item(world)["merchant_id"],
        "point_type": POINT_TYPE_CODE,
        "name_ja": "布巾",
        "name_en": "Cloth",
        "points": 2,
        "stock": 5,
    },
    "points",
)
FINANCE_REFUND = Route(
    "finance: refund on the shop's behalf",
    "finance",
    lambda world: f"{F}/payments/{posted_payment(world)}/refunds",
    lambda world: {"amount": 1, "reason": "strict input"},
    "amount",
    value_moving=True,
)
SETTLEMENT_RUN = Route(
    "finance: settlement run",
    "finance",
    lambda world: f"{F}/settlement-runs",
    lambda world: {"period": "2026-03"},
    "period",
    value_moving=True,
    accepted=None,  # tests/test_settlement_api.py runs months
)
RECOVERY = Route(
    "finance: recovery of a final statement",
    "finance",
    lambda world: f"{F}/statements/stm_strictinput/recovery",
    lambda world: {"method": "repaid", "note": "strict input"},
    "note",
    value_moving=True,
    accepted=None,  # tests/test_settlement_api.py records one
)
PAYMENT_ROUTES = [
    PAYMENT_REQUEST,
    PAY_CODE_PAYMENT,
    CARD_PAYMENT,
    PAYMENT,
    REFUND,
    PAY_CODE_LIMIT,
    SHOP_SETTINGS,
    PREVIEW,
    NEW_TILL,
    EXCHANGE,
    STOCK_CHANGE,
    FINANCE_REFUND,
]

INTEGER_ROUTES = [
    ALLOCATION,
    PROGRAM,
    TOKEN,
    COUNTER_RESIDENT,
    PAYMENT_REQUEST,
    PAY_CODE_PAYMENT,
    CARD_PAYMENT,
    ASSISTED_PAYMENT,
    PAYMENT,
    REFUND,
    PAY_CODE_LIMIT,
    SHOP_SETTINGS,
    EXCHANGE,
    STOCK_CHANGE,
    CATALOG_ITEM,
    FINANCE_REFUND,
    YEN_RATE,
    SHOP_FEE,
]
STRING_ROUTES = [
    AWARD,
    CLOSE_WALLET,
    STAFF,
    PREVIEW,
    NEW_TILL,
    CARD_PIN,
    ASSISTED_PIN,
    RESIDENT_FIND,
    CARD_CHECK_IN,
    BUDGET_CODE,
    SETTLEMENT_RUN,
    RECOVERY,
]
MONEY_ROUTES = [
    ALLOCATION,
    AWARD,
    CLOSE_WALLET,
    PROGRAM,
    TOKEN,
    PAYMENT_REQUEST,
    PAY_CODE_PAYMENT,
    CARD_PAYMENT,
    ASSISTED_PAYMENT,
    PAYMENT,
    REFUND,
    PAY_CODE_LIMIT,
    SHOP_SETTINGS,
    EXCHANGE,
    STOCK_CHANGE,
    CATALOG_ITEM,
    FINANCE_REFUND,
    SETTLEMENT_RUN,
    RECOVERY,
]
ACCEPTING = [
    route
    for route in [
        *MONEY_ROUTES,
        COUNTER_RESIDENT,
        STAFF,
        PREVIEW,
        NEW_TILL,
        *ASSIST_ROUTES[1:],
        YEN_RATE,
        SHOP_FEE,
        BUDGET_CODE,
    ]
    if route.accepted
]


def ids(routes: list[Route]) -> list[str]:
    return [route.name for route in routes]


def assert_refused_field(response: Any, field: str) -> None:
    body = assert_problem(response, 422, "validation_error")
    assert ["body", field] in [error["location"] for error in body["errors"]], body


# 1. Integers are JSON integers, ids and text are strings ----------------------------------


@pytest.mark.parametrize("route", INTEGER_ROUTES, ids=ids(INTEGER_ROUTES))
@pytest.mark.parametrize("raw", ["true", "false", '"100"', "100.0", "1e2", "1E2", "100.5"])
def test_an_integer_given_as_anything_but_a_json_integer_is_refused(
    world: World, route: Route, raw: str
) -> None:
    content = route.with_raw(world, raw)
    before = written(world)

    response = route.send(world, content)

    assert_refused_field(response, route.field)
    assert written(world) == before


@pytest.mark.parametrize("route", STRING_ROUTES, ids=ids(STRING_ROUTES))
@pytest.mark.parametrize("raw", ["100", "true", "1e2", '["a"]', "{}"])
def test_an_id_or_a_text_given_as_anything_but_a_string_is_refused(
    world: World, route: Route, raw: str
) -> None:
    content = route.with_raw(world, raw)
    before = written(world)

    response = route.send(world, content)

    assert_refused_field(response, route.field)
    assert written(world) == before


@pytest.mark.parametrize("route", ACCEPTING, ids=ids(ACCEPTING))
def test_each_route_accepts_its_valid_body(world: World, route: Route) -> None:
    response = route.send(world, json.dumps(route.body(world)).encode())

    assert response.status_code == route.accepted, response.text


@pytest.mark.parametrize("route", PAYMENT_ROUTES, ids=ids(PAYMENT_ROUTES))
def test_an_unknown_field_is_refused_by_the_payment_routes(world: World, route: Route) -> None:
    content = json.dumps({**route.body(world), "merchant_id": "mer_x"}).encode()
    before = written(world)

    response = route.send(world, content)

    body = assert_problem(response, 422, "validation_error")
    assert {
        "location": ["body", "merchant_id"],
        "message": "Extra inputs are not permitted",
        "type": "extra_forbidden",
    } in body["errors"]
    assert written(world) == before


@pytest.mark.parametrize("route", ASSIST_ROUTES, ids=ids(ASSIST_ROUTES))
def test_an_unknown_field_is_refused_by_the_counters_and_organizers_card_routes(
    world: World, route: Route
) -> None:
    content = json.dumps({**route.body(world), "till_id": "til_x"}).encode()
    before = written(world)

    response = route.send(world, content)

    body = assert_problem(response, 422, "validation_error")
    assert {
        "location": ["body", "till_id"],
        "message": "Extra inputs are not permitted",
        "type": "extra_forbidden",
    } in body["errors"]
    assert written(world) == before


def card_print_sheet(world: World) -> dict[str, Any]:
    """The payer's card (issued once per world) on a sheet of one."""

    def make() -> str:
        card_payment(world)  # issues the payer's card
        found = world.client.get(
            f"{C}/residents/{payer(world).id}/cards", headers=world.counter.headers
        )
        assert found.status_code == 200, found.text
        return str(found.json()[0]["id"])

    return {"card_ids": [once_per_world(world, "strict input card id", make)]}


CARD_PRINT_SHEET = Route(
    "counter: card print sheet",
    "counter",
    lambda world: f"{C}/cards/print-sheet",
    card_print_sheet,
    "card_ids",
    accepted=200,
)


@pytest.mark.parametrize("raw", ['"crd_x"', "1", "true", "{}", "null"])
def test_the_card_print_sheet_takes_a_list_of_card_ids_and_nothing_else(
    world: World, raw: str
) -> None:
    route = CARD_PRINT_SHEET
    accepted = route.send(world, json.dumps(route.body(world)).encode())
    assert accepted.status_code == 200, accepted.text
    assert accepted.headers["content-type"] == "image/svg+xml"
    before = written(world)

    assert_refused_field(route.send(world, route.with_raw(world, raw)), "card_ids")
    unknown = json.dumps({**route.body(world), "resident_id": world.resident.id}).encode()
    body = assert_problem(route.send(world, unknown), 422, "validation_error")
    assert ["body", "resident_id"] in [error["location"] for error in body["errors"]]
    assert written(world) == before


def pending_payment(world: World) -> str:
    held = pay(world, payer(world), shop(world).store_qr, amount=1)
    assert held.status_code == 201 and held.json()["state"] == "pending", held.text
    return str(held.json()["id"])


@pytest.mark.parametrize("act", ["confirm", "decline"])
@pytest.mark.parametrize(
    "content",
    [b'{"amount": 1}', b"[]", b"0", b'{"a": 1, "a": 1}'],
    ids=["field", "array", "0", "dup"],
)
def test_confirm_and_decline_take_no_body(world: World, act: str, content: bytes) -> None:
    """A store-QR payment is confirmed or declined as it is: no amount can be sent along."""
    payment_id = pending_payment(world)
    path = f"{M}/payments/{payment_id}/{act}"
    headers = {**till(world).headers, "Content-Type": "application/json"}
    before = written(world)

    response = world.client.post(
        path, headers={**headers, "Idempotency-Key": str(uuid.uuid4())}, content=content
    )

    body = assert_problem(response, 422, "validation_error")
    assert body["errors"][0]["type"] in ("body_not_allowed", "json_duplicate_key")
    assert written(world) == before
    # Without a body (or with {}) it is taken.
    done = world.client.post(
        path, headers={**headers, "Idempotency-Key": str(uuid.uuid4())}, content=b"{}"
    )
    assert done.status_code == 200, done.text
    assert done.json()["state"] == ("posted" if act == "confirm" else "voided")


def test_the_wallet_closure_accepts_its_valid_body(world: World) -> None:
    resident = world.fresh_resident().id

    response = world.client.post(
        f"{C}/residents/{resident}/wallets/pt/close",
        headers=CLOSE_WALLET.headers(world),
        content=json.dumps(CLOSE_WALLET.body(world)).encode(),
    )

    assert (response.status_code, response.json()["status"]) == (200, "closed"), response.text


def test_an_allocation_of_true_allocates_nothing(world: World) -> None:
    """The tester's case: ``{"amount": true}`` allocated 1 pt."""
    budget = f"{B}/{world.programs['b']}/{FISCAL_YEAR}"
    allocated = world.client.get(budget, headers=world.finance.headers).json()["allocated"]
    before = written(world)

    response = world.client.post(
        f"{budget}/allocations",
        headers=ALLOCATION.headers(world),
        content=b'{"amount": true, "reason": "true is not 1"}',
    )

    body = assert_problem(response, 422, "validation_error")
    assert body["errors"][0]["location"] == ["body", "amount"]
    assert body["errors"][0]["type"] == "int_type"
    assert written(world) == before
    assert world.client.get(budget, headers=world.finance.headers).json()["allocated"] == allocated


# 2. A key given twice is refused, at any depth --------------------------------------------


@pytest.mark.parametrize("route", MONEY_ROUTES, ids=ids(MONEY_ROUTES))
def test_a_key_given_twice_is_refused_naming_the_key(world: World, route: Route) -> None:
    valid = route.body(world)
    text = json.dumps(valid)
    before = written(world)
    # The same value twice is refused too: the client sent something it did not mean.
    for second in ("5", json.dumps(valid[route.field])):
        duplicated = f'{{"{route.field}": {second}, {text[1:]}'.encode()

        response = route.send(world, duplicated)

        body = assert_problem(response, 422, "validation_error")
        assert body["errors"] == [
            {
                "location": ["body", route.field],
                "message": f"duplicate key {route.field!r} in a JSON object",
                "type": "json_duplicate_key",
            }
        ]
    assert written(world) == before


@pytest.mark.parametrize(
    ("route", "field", "nested"),
    [
        (AWARD, "details", '{"checkup_type": "a", "note": "x", "checkup_type": "b"}'),
        (PROGRAM, "config", '{"checkup_types": ["x"], "checkup_types": ["y"]}'),
        (ALLOCATION, "reason", '{"deep": [1, {"amount": 5, "amount": 6}]}'),
    ],
    ids=["award details", "program config", "inside a list"],
)
def test_a_key_given_twice_in_a_nested_object_is_refused(
    world: World, route: Route, field: str, nested: str
) -> None:
    body = {**route.body(world), field: HOLE}
    content = json.dumps(body).replace(json.dumps(HOLE), nested).encode()
    before = written(world)

    response = route.send(world, content)

    problem = assert_problem(response, 422, "validation_error")
    duplicates = [e for e in problem["errors"] if e["type"] == "json_duplicate_key"]
    assert len(duplicates) == 1, problem
    key = duplicates[0]["location"][-1]
    assert duplicates[0]["location"][:2] == ["body", field]
    assert repr(key) in duplicates[0]["message"] and "duplicate key" in duplicates[0]["message"]
    assert written(world) == before


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_numbers_that_are_not_json_are_refused(world: World, constant: str) -> None:
    before = written(world)

    response = ALLOCATION.send(world, ALLOCATION.with_raw(world, constant))

    body = assert_problem(response, 422, "validation_error")
    assert body["errors"][0]["type"] == "json_invalid"
    assert written(world) == before


# 3. The media type is the one the route takes ---------------------------------------------


@pytest.mark.parametrize("route", MONEY_ROUTES, ids=ids(MONEY_ROUTES))
@pytest.mark.parametrize("media_type", ["text/plain", None, "application/x-www-form-urlencoded"])
def test_a_json_body_of_another_media_type_is_415(
    world: World, route: Route, media_type: str | None
) -> None:
    content = json.dumps(route.body(world)).encode()
    before = written(world)

    response = route.send(world, content, media_type)

    body = assert_problem(response, 415, "unsupported_media_type")
    assert "application/json" in body["detail"]
    assert written(world) == before


def test_json_with_a_charset_or_a_json_suffix_is_json(world: World) -> None:
    for media_type in ("application/json; charset=utf-8", "application/merge-patch+json"):
        response = TOKEN.send(world, json.dumps(token(world)).encode(), media_type)

        assert response.status_code == 201, (media_type, response.text)


def csv_upload(world: World, *, check: bool) -> tuple[str, dict[str, str]]:
    path = f"{ISS}/programs/{world.programs['a']}/award-uploads" + ("/check" if check else "")
    headers = dict(world.actors["issuer_a"].headers)
    if not check:
        headers["Idempotency-Key"] = str(uuid.uuid4())
    return path, headers


def awards_file(world: World) -> bytes:
    return f"resident_id,record_id\r\n{world.fresh_resident().id},{unique('csv')}\r\n".encode()


@pytest.mark.parametrize("check", [False, True], ids=["upload", "check"])
@pytest.mark.parametrize(
    "media_type", ["application/json", "text/plain", None, "multipart/form-data"]
)
def test_the_csv_routes_refuse_other_media_types(
    world: World, check: bool, media_type: str | None
) -> None:
    path, headers = csv_upload(world, check=check)
    if media_type is not None:
        headers["Content-Type"] = media_type
    content = (
        json.dumps({"resident_id": world.resident.id, "record_id": "R-1"}).encode()
        if media_type == "application/json"
        else awards_file(world)
    )
    before = written(world)

    response = world.client.post(path, headers=headers, content=content)

    body = assert_problem(response, 415, "unsupported_media_type")
    assert "text/csv" in body["detail"]
    assert written(world) == before


@pytest.mark.parametrize(
    "media_type", ["text/csv", "text/csv; charset=shift_jis", "application/vnd.ms-excel"]
)
def test_the_csv_check_takes_csv_by_the_names_clients_give_it(
    world: World, media_type: str
) -> None:
    path, headers = csv_upload(world, check=True)

    response = world.client.post(
        path, headers={**headers, "Content-Type": media_type}, content=awards_file(world)
    )

    assert response.status_code == 200, response.text
    assert (response.json()["ok"], response.json()["to_award"]) == (True, 1)


@pytest.mark.parametrize(
    "content",
    [b'{"x": ', b"{", b"not json", b"\xff\xfe{}", b'{"a": 1, "a": 2}', b"[]", b'{"x": 1}'],
    ids=["cut short", "brace", "text", "not utf-8", "duplicate key", "array", "a field"],
)
def test_self_enrolment_refuses_any_body_but_none_or_an_empty_object(
    world: World, content: bytes
) -> None:
    before = written(world)

    response = world.client.post(
        "/api/v1/enrolments/self",
        headers={"Content-Type": "application/json"},
        content=content,
    )

    body = assert_problem(response, 422, "validation_error")
    assert body["errors"][0]["type"] in ("json_invalid", "json_duplicate_key", "body_not_allowed")
    assert written(world) == before


def test_self_enrolment_refuses_a_body_of_another_media_type(world: World) -> None:
    before = written(world)

    response = world.client.post(
        "/api/v1/enrolments/self", headers={"Content-Type": "text/plain"}, content=b"hello"
    )

    assert_problem(response, 415, "unsupported_media_type")
    assert written(world) == before


def test_self_enrolment_takes_no_body_or_an_empty_object(world: World) -> None:
    residents = world.snapshot()["resident"]

    without = world.client.post("/api/v1/enrolments/self")
    empty = world.client.post("/api/v1/enrolments/self", json={})

    assert (without.status_code, empty.status_code) == (201, 201), (without.text, empty.text)
    assert world.snapshot()["resident"] == residents + 2


# Days and enumerations: what JSON sends for them ------------------------------------------


@pytest.mark.parametrize(
    "raw", ['"2026/04/02"', '"20260402"', "20260402", '"2026-04-02T00:00:00"', '"2026-02-30"']
)
def test_a_day_is_exactly_an_iso_date_string(world: World, raw: str) -> None:
    body = {**award(world), "occurred_on": HOLE}
    before = written(world)

    response = AWARD.send(world, json.dumps(body).replace(json.dumps(HOLE), raw).encode())

    assert_refused_field(response, "occurred_on")
    assert written(world) == before


def test_a_day_and_an_enumeration_given_as_documented_are_accepted(world: World) -> None:
    body = {**award(world), "occurred_on": "2026-04-01"}

    awarded = AWARD.send(world, json.dumps(body).encode())
    created = world.client.post(
        f"{A}/programs",
        headers=world.admin.headers,
        json={**program(world), "valid_until": "2027-03-31"},
    )
    paused = world.client.post(
        f"{A}/programs/{created.json()['id']}/status",
        headers=world.admin.headers,
        json={"status": "active", "reason": "strict input"},
    )

    assert awarded.status_code == 201, awarded.text
    assert awarded.json()["occurred_on"] == "2026-04-01"
    assert created.status_code == 201, created.text
    assert (paused.status_code, paused.json()["status"]) == (200, "active")


@pytest.mark.parametrize("raw", ["1", "true", '"ACTIVE"', '"nope"'])
def test_an_enumeration_takes_its_string_values_only(world: World, raw: str) -> None:
    path = f"{A}/programs/{world.programs['b']}/status"
    before = written(world)

    response = world.client.post(
        path,
        headers={**world.admin.headers, "Content-Type": "application/json"},
        content=f'{{"status": {raw}, "reason": "strict input"}}'.encode(),
    )

    assert_refused_field(response, "status")
    assert written(world) == before


# Once for every route ---------------------------------------------------------------------


def test_every_route_is_a_strict_route(world: World) -> None:
    routes = [
        context
        for context in iter_route_contexts(world.app.routes)
        if isinstance(context.original_route, APIRoute)
    ]

    assert len(routes) > 60
    loose = [c.path for c in routes if not isinstance(c.original_route, StrictRoute)]
    assert loose == []
    bodies = [c for c in routes if c.original_route.body_field is not None]
    assert bodies
    for context in bodies:
        model = context.original_route.body_field.field_info.annotation
        assert issubclass(model, Input), (context.path, model)


def input_models() -> Iterator[type[Input]]:
    pending = list(Input.__subclasses__())
    while pending:
        model = pending.pop()
        pending.extend(model.__subclasses__())
        yield model


def leaves(annotation: Any) -> Iterator[Any]:
    yield annotation
    for argument in getattr(annotation, "__args__", ()):
        yield from leaves(argument)


def test_every_input_takes_days_and_enumerations_as_json_sends_them() -> None:
    """A new Input field of an enumeration or a date type must say how JSON gives it
    (``ByValue``, ``Day``), or strict mode would refuse every client."""
    checked = 0
    for model in input_models():
        for name, field in model.model_fields.items():
            kinds = list(leaves(field.annotation))
            annotated = (
                Annotated[field.annotation, *field.metadata] if field.metadata else field.annotation
            )
            adapter: TypeAdapter[Any] = TypeAdapter(annotated, config=ConfigDict(strict=True))
            for kind in kinds:
                if isinstance(kind, type) and issubclass(kind, enum.Enum):
                    for member in kind:
                        assert adapter.validate_python(member.value) == member, (model, name)
                    checked += 1
                if kind is date:
                    assert adapter.validate_python("2026-05-12") == date(2026, 5, 12)
                    with pytest.raises(ValidationError):
                        adapter.validate_python("2026/5/12")
                    checked += 1
    assert checked >= 14


# A 404 names only what the caller gave ----------------------------------------------------


def test_another_departments_upload_is_not_found_without_naming_its_program(
    world: World,
) -> None:
    path, headers = csv_upload(world, check=False)
    created = world.client.post(
        path, headers={**headers, "Content-Type": "text/csv"}, content=awards_file(world)
    )
    assert created.status_code == 201, created.text
    upload_id = created.json()["id"]

    theirs = world.client.get(
        f"{ISS}/award-uploads/{upload_id}", headers=world.actors["issuer_b"].headers
    )
    unknown = world.client.get(
        f"{ISS}/award-uploads/upl_nosuchupload", headers=world.actors["issuer_b"].headers
    )
    own = world.client.get(
        f"{ISS}/award-uploads/{upload_id}", headers=world.actors["issuer_a"].headers
    )

    body = assert_problem(theirs, 404, "not_found")
    assert body["detail"] == f"no upload {upload_id}"
    assert world.programs["a"] not in theirs.text
    assert assert_problem(unknown, 404, "not_found")["detail"] == "no upload upl_nosuchupload"
    # The same refusal, word for word, whether the upload exists or not.
    assert {k: v for k, v in body.items() if k not in ("detail", "request_id", "object_id")} == {
        k: v for k, v in unknown.json().items() if k not in ("detail", "request_id", "object_id")
    }
    assert own.status_code == 200 and own.json()["program_id"] == world.programs["a"]


# The OpenAPI document describes every operation -------------------------------------------


def test_every_operation_has_a_description(world: World) -> None:
    document = world.app.openapi()
    operations = [
        (f"{method.upper()} {path}", operation)
        for path, methods in document["paths"].items()
        for method, operation in methods.items()
    ]

    assert len(operations) > 60
    missing = [name for name, operation in operations if not operation.get("description")]
    assert missing == []
    # A description says more than the summary does.
    same = [name for name, op in operations if op["description"].strip() == op.get("summary")]
    assert same == []
    # Every operation that takes a body documents what a wrong body gets.
    for name, operation in operations:
        if "requestBody" in operation:
            assert {"415", "422"} <= set(operation["responses"]), name


@pytest.mark.parametrize("suffix", ["", "/check"], ids=["upload", "check"])
def test_the_csv_operations_document_the_files_columns(world: World, suffix: str) -> None:
    path = "/api/v1/issuer/programs/{program_id}/award-uploads" + suffix
    operation = world.app.openapi()["paths"][path]["post"]
    text = operation["description"] + operation["requestBody"]["description"]

    for column in ("resident_id", "record_id", "occurred_on", "amount", "checkup_type", "event_id"):
        assert f"`{column}`" in text, column
    for words in ("UTF-8", "BOM", "CP932", "header row", "text/csv"):
        assert words in text, words
    assert list(operation["requestBody"]["content"]) == ["text/csv"]
