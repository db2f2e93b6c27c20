"""Object-level authorization of every route, driven by one table.

``TABLE`` has one row per route of the app: the method, the path template exactly as the app
declares it, and the status each kind of caller must get, in the columns of ``COLUMNS``
(anonymous, resident, merchant, issuer, counter, finance, admin). Each row is run once per
principal of the world (two residents, two merchants, two issuers), so an "owned" row (``/me``,
``/merchant``, ``/issuer/department``) also checks that each principal gets its own object and
never another's. A refused call must be problem+json (``unauthenticated`` / ``forbidden``) and
must write nothing; an allowed state-changing call must leave an audit event naming the caller.

``test_every_route_is_in_the_table`` walks the app's routes: a new endpoint fails it until it
joins the table.

The merchant column is tried with the world's two members of merchant staff and with a till of
each of those two shops (``till_a``, ``till_b``: ``tests/payment_helpers.open_shop``). A till is
merchant staff with a device of its own: the routes that take payments (``till_only`` rows)
answer other staff 403 ``till_required``; reads, confirmations and refunds take any staff of the
shop. The payment rows work on the shops' own objects (``Payments``): a payment at shop a by the
verified resident and one at shop b by the self-enrolled resident; their "owned" checks also ask
for the other shop's (or the other resident's) object and expect a 404 that names nothing of it.

The table's rows share one world per backend (built once per module); a row that changes state
works on throwaway objects (``World.fresh_*``) so that the order of rows does not matter.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from api_world import (
    FISCAL_YEAR,
    POINT_TYPE_CODE,
    RESIDENT_ADDRESS_NUMBER,
    RESIDENT_BIRTH_YEAR,
    RESIDENT_NAME,
    Actor,
    World,
    assert_problem,
    unique,
    unique_address_number,
)
from conftest import FakeClock
from export_helpers import sealed_world
from fastapi import FastAPI
from fastapi.routing import APIRoute
from payment_helpers import (
    Shop,
    balance,
    ensure_signing_key,
    funded_resident,
    give,
    once_per_world,
    open_shop,
    pay,
    payment_qr,
)
from payment_helpers import key as idempotency_key

from api.app import create_app
from issuers import events
from points import access
from points.auth import Role
from points.registry import StaffRole
from points.settings import Settings

ANONYMOUS = "anonymous"
#: The columns of ``Row.expect``, in order.
COLUMNS = (
    ANONYMOUS,
    Role.RESIDENT,
    Role.MERCHANT,
    Role.ISSUER,
    Role.COUNTER,
    Role.FINANCE,
    Role.ADMIN,
)

Params = Callable[[World], dict[str, Any]]
Body = Callable[[World, dict[str, Any]], Any]
Owned = Callable[[World, Actor, Any], None]


def stock(world: World) -> dict[str, Any]:
    """Path parameters naming the world's own objects (for reads)."""
    return {
        "resident_id": world.resident.id,
        "merchant_id": world.merchants["a"],
        "department_id": world.departments["a"],
        "staff_id": world.counter.id,
        "ledger_id": world.ledger_id,
        "account_id": world.account_ids[1],
        "entry_id": world.entry_id,
        "address_number": RESIDENT_ADDRESS_NUMBER,
        "point_type": POINT_TYPE_CODE,
        "point_type_id": world.point_type_id,
        "program_id": world.programs["a"],
        "fiscal_year": FISCAL_YEAR,
    }


def own_program(world: World, actor: Actor | None) -> dict[str, Any]:
    """An issuer's own department's program; department a's for everyone else."""
    key = "b" if actor is not None and actor.department_id == world.departments["b"] else "a"
    return {**stock(world), "program_id": world.programs[key]}


def fresh_point_type(world: World) -> dict[str, Any]:
    return {"point_type_id": world.fresh_point_type()}


def fresh_draft_program(world: World) -> dict[str, Any]:
    return {"program_id": world.fresh_program(activate=False)}


def fresh_program_of_last_year(world: World) -> dict[str, Any]:
    """A program with a FY2025 budget: the world's clock (April 2026) is past that year's end."""
    return {"program_id": world.fresh_program(budget={2025: 500}), "fiscal_year": 2025}


def award_body(world: World, _params: dict[str, Any]) -> Any:
    return {"resident_id": world.fresh_resident().id, "record_id": unique("rec")}


def new_point_type_body(_world: World, _params: dict[str, Any]) -> Any:
    return {"code": unique("t").replace("-", "_")[:32], "name_ja": "新", "name_en": "New"}


def new_program_body(world: World, _params: dict[str, Any]) -> Any:
    return {
        "department_id": world.departments["b"],
        "point_type_id": world.point_type_id,
        "module": "volunteering",
        "name_ja": "清掃",
        "name_en": "Clean-up",
        "amount": 50,
        "valid_from": "2026-04-01",
    }


def awards_file(world: World, _params: dict[str, Any]) -> bytes:
    """A one-row CSV of awards for a fresh resident (a new file each time)."""
    resident = world.fresh_resident().id
    return f"resident_id,record_id\r\n{resident},{unique('up')}\r\n".encode()


def own_upload(world: World, actor: Actor | None) -> dict[str, Any]:
    """An upload of the caller's own department (department a's for everyone else)."""
    params = own_program(world, actor)
    issuer = world.actors["issuer_b" if params["program_id"] == world.programs["b"] else "issuer_a"]
    response = world.client.post(
        f"{ISS}/programs/{params['program_id']}/award-uploads",
        headers={**issuer.headers, "Idempotency-Key": unique("key"), "Content-Type": "text/csv"},
        content=awards_file(world, params),
    )
    assert response.status_code == 201, response.text
    return {**params, "upload_id": response.json()["id"]}


def own_programs(world: World, actor: Actor, body: Any) -> None:
    assert body["items"]
    assert {item["department_id"] for item in body["items"]} == {actor.department_id}


def own_program_only(world: World, actor: Actor, body: Any) -> None:
    assert body.get("department_id", actor.department_id) == actor.department_id, body


def own_volunteering_program(world: World, actor: Actor | None) -> dict[str, Any]:
    key = "b" if actor is not None and actor.department_id == world.departments["b"] else "a"
    program = world.fresh_program(key, module="volunteering", budget={FISCAL_YEAR: 1_000})
    return {**stock(world), "program_id": program}


def own_event(world: World, actor: Actor | None) -> dict[str, Any]:
    """A fresh event of the caller's own department (department a's for everyone else)."""
    key = "b" if actor is not None and actor.department_id == world.departments["b"] else "a"
    return {**stock(world), "event_id": world.fresh_event(key).id}


def event_body(world: World, _params: dict[str, Any]) -> Any:
    now = world.now()
    return {
        "name": "清掃",
        "place": "河川敷",
        "starts_at": now.isoformat(),
        "ends_at": (now + timedelta(hours=2)).isoformat(),
        "opens_at": now.isoformat(),
        "closes_at": (now + timedelta(hours=1)).isoformat(),
        "capacity": 30,
    }


def check_in_body(world: World, _params: dict[str, Any]) -> Any:
    """The current token of a fresh event."""
    event = world.fresh_event()
    services = world.app.state.services
    text, _ = events.current_token(
        event, services.keys, world.now(), origin=services.settings.public_origin
    )
    return {"token": text}


def fresh_resident(world: World) -> dict[str, Any]:
    return {"resident_id": world.fresh_resident().id}


def fresh_self_enrolled(world: World) -> dict[str, Any]:
    return {"resident_id": world.fresh_resident(verified=False).id}


def fresh_resident_with_token(world: World) -> dict[str, Any]:
    return {"resident_id": world.fresh_resident(with_token=True).id}


def fresh_closed_wallet(world: World) -> dict[str, Any]:
    resident_id = world.fresh_resident().id
    closed = world.client.post(
        f"{C}/residents/{resident_id}/wallets/{POINT_TYPE_CODE}/close",
        headers={**world.counter.headers, "Idempotency-Key": str(uuid.uuid4())},
        json={"reason": "moved out"},
    )
    assert closed.status_code == 200, closed.text
    return {"resident_id": resident_id, "point_type": POINT_TYPE_CODE}


def fresh_merchant(world: World) -> dict[str, Any]:
    return {"merchant_id": world.fresh_merchant()}


def fresh_staff(world: World) -> dict[str, Any]:
    return {"staff_id": world.fresh_staff(StaffRole.COUNTER).id}


def fresh_token(world: World) -> dict[str, Any]:
    return {"token_id": world.fresh_token()}


CARD_PIN = "4826"


def fresh_card(world: World) -> dict[str, Any]:
    """A new card (of a new resident with 1 pt), issued at the counter."""
    ensure_signing_key(world)
    resident = funded_resident(world, 1)
    made = world.client.post(
        f"{C}/residents/{resident.id}/cards", json={"pin": CARD_PIN}, headers=world.counter.headers
    )
    assert made.status_code == 201, made.text
    return {**stock(world), "card_id": made.json()["id"], "card_number": made.json()["number"]}


def card_issue_params(world: World) -> dict[str, Any]:
    ensure_signing_key(world)
    return fresh_resident(world)


def card_payment_body(world: World, _params: dict[str, Any]) -> Any:
    """A new card with 1 pt, its number and PIN typed at the till."""
    return {"card_number": fresh_card(world)["card_number"], "pin": CARD_PIN, "amount": 1}


def card_lookup_body(_world: World, params: dict[str, Any]) -> Any:
    return {"card_number": params["card_number"]}


def assisted_payment_body(world: World, _params: dict[str, Any]) -> Any:
    """A new card with 1 pt, its number and PIN typed at the counter, to pay shop a."""
    return {
        "card_number": fresh_card(world)["card_number"],
        "pin": CARD_PIN,
        "amount": 1,
        "merchant_id": payments_of(world).shops["a"].merchant_id,
        "reason": "authorization table",
    }


def paid_on_behalf(world: World, actor: Actor, body: Any) -> None:
    assert (body["flow"], body["state"], body["amount"]) == ("card", "posted", 1)
    assert body["merchant_id"] == world.merchants["a"] and "pin" not in body


def finds_at_the_counter(world: World, _actor: Actor, body: Any) -> None:
    assert body["resident"]["id"] == world.resident.id
    assert {wallet["point_type"] for wallet in body["wallets"]} <= {POINT_TYPE_CODE}


def card_check_in_body(world: World, _params: dict[str, Any]) -> Any:
    """A new card, scanned by number at the organizer's device."""
    return {"card_number": fresh_card(world)["card_number"]}


def card_sheet_body(_world: World, params: dict[str, Any]) -> Any:
    return {"card_ids": [params["card_id"]]}


def card_issued(world: World, actor: Actor, body: Any) -> None:
    assert body["status"] == "active" and "pin" not in body


def reason(_world: World, _params: dict[str, Any]) -> Any:
    return {"reason": "authorization table"}


def new_resident_body(_world: World, _params: dict[str, Any]) -> Any:
    return {"name": "表 太郎", "address_number": unique_address_number(), "birth_year": 1970}


def new_department_body(_world: World, _params: dict[str, Any]) -> Any:
    return {"code": unique("dept"), "name_ja": "新しい課", "name_en": "New division"}


def new_merchant_body(_world: World, _params: dict[str, Any]) -> Any:
    return {"name_ja": "新店", "name_en": "New shop", "category": "bakery"}


def new_staff_body(_world: World, _params: dict[str, Any]) -> Any:
    return {"role": "finance", "display_name": unique("auditor")}


def new_token_body(world: World, _params: dict[str, Any]) -> Any:
    return {"role": "finance", "principal_id": world.finance.id, "label": "table"}


def enrolment_code_body(world: World, _params: dict[str, Any]) -> Any:
    return {"code": world.fresh_enrolment_code()}


def a_job_run(world: World) -> dict[str, Any]:
    """A run of the seal job (made once per world)."""

    def make() -> int:
        from points.jobs import run_job

        result = run_job(world.engine, "seal", as_of=world.now(), clock=world.clock)
        assert result.run_id is not None, result
        return result.run_id

    return {"run_id": once_per_world(world, "a job run", make)}


def device_code_body(world: World, _params: dict[str, Any]) -> Any:
    """A fresh device code for the world's counter staff's PC."""
    secret_key = world.app.state.services.settings.secret_key_bytes
    _device, code = world.write(
        lambda session: access.create_device_code(
            session, access.SYSTEM, world.now(), world.counter.id, secret_key=secret_key
        )
    )
    return {"code": code}


def owns_profile(_world: World, actor: Actor, body: Any) -> None:
    assert body["id"] == actor.id
    if actor.name == "resident":
        assert (body["name"], body["address_number"], body["birth_year"]) == (
            RESIDENT_NAME,
            RESIDENT_ADDRESS_NUMBER,
            RESIDENT_BIRTH_YEAR,
        )
    else:
        assert (body["name"], body["address_number"], body["birth_year"]) == (None, None, None)


def owns_merchant(world: World, actor: Actor, body: Any) -> None:
    assert actor.merchant_id is not None
    assert body["id"] == actor.merchant_id
    other = next(value for value in world.merchants.values() if value != actor.merchant_id)
    assert other not in json.dumps(body)


def owns_department(world: World, actor: Actor, body: Any) -> None:
    assert actor.department_id is not None
    assert body["id"] == actor.department_id
    other = next(value for value in world.departments.values() if value != actor.department_id)
    assert other not in json.dumps(body)


def finds_the_resident(world: World, _actor: Actor, body: Any) -> None:
    assert body["id"] == world.resident.id


def learns_only_the_id(world: World, _actor: Actor, body: Any) -> None:
    """A department looking a resident up by number learns nothing personal."""
    assert body == {"resident_id": world.resident.id, "wallet_open": True}


def pseudonymous(_world: World, _actor: Actor, body: Any) -> None:
    assert body["items"]
    for item in body["items"]:
        assert not {"name", "address_number", "birth_year"} & set(item), item


# Paying at shops -----------------------------------------------------------------------------

M = "/api/v1/merchant"
ME = "/api/v1/me"
#: What the world's stock payments are for (given to the resident just before).
STOCK_PAYMENT = 7


@dataclass
class Payments:
    """The world's merchants ``a`` and ``b`` made shops (accepting the world's point type, with
    a till each) and one stock payment at each: at shop a by the verified resident, at shop b
    by the self-enrolled one."""

    shops: dict[str, Shop]
    #: Shop key (``a``, ``b``) -> the id of its stock payment.
    payments: dict[str, str]
    #: Resident name (``resident``, ``resident_self``) -> the id of their stock payment.
    by_resident: dict[str, str] = field(default_factory=dict)


def payments_of(world: World) -> Payments:
    """The world's ``Payments``, made on first need."""
    return once_per_world(world, "authorization payments", lambda: _payments(world))


def _payments(world: World) -> Payments:
    shops = {
        key: open_shop(world, world.merchants[key], till_name=f"till {key}") for key in ("a", "b")
    }
    built = Payments(shops, {})
    for shop_key, name in (("a", "resident"), ("b", "resident_self")):
        resident = world.actors[name]
        give(world, resident.id, STOCK_PAYMENT)
        paid = pay(world, resident, payment_qr(world, shops[shop_key], STOCK_PAYMENT)["token"])
        assert paid.status_code == 201, paid.text
        built.payments[shop_key] = built.by_resident[name] = paid.json()["id"]
    return built


def actor_named(world: World, principal: str) -> Actor:
    """A principal of the world, or a till of shop a or b (``till_a``, ``till_b``)."""
    if principal.startswith("till_"):
        return payments_of(world).shops[principal.removeprefix("till_")].till
    return world.actors[principal]


def shop_key(world: World, actor: Actor | None) -> str:
    """The caller's shop (``a`` or ``b``); shop a for callers who are not merchant staff."""
    return "b" if actor is not None and actor.merchant_id == world.merchants["b"] else "a"


def other_key(key: str) -> str:
    return "b" if key == "a" else "a"


def resident_name(world: World, actor: Actor | None) -> str:
    """The calling resident (``resident`` or ``resident_self``); the verified one for others."""
    if actor is not None and actor.id == world.resident_self.id:
        return "resident_self"
    return "resident"


def other_resident(world: World, actor: Actor) -> Actor:
    name = resident_name(world, actor)
    return world.actors["resident" if name == "resident_self" else "resident_self"]


def assert_hidden(response: Any, *hidden: str) -> None:
    """A 404 ``not_found`` that names none of ``hidden`` (the owner, its names)."""
    assert_problem(response, 404, "not_found")
    for value in hidden:
        assert value not in response.text, value


def merchant_names(world: World, key: str) -> tuple[str, ...]:
    """What would give away merchant ``key``: its id and its names."""
    return (world.merchants[key], f"店{key}", f"Merchant {key}")


def own_shop(world: World, actor: Actor | None) -> dict[str, Any]:
    """The world's objects, with the shops and their stock payments made."""
    payments = payments_of(world)
    return {**stock(world), "payment_id": payments.payments[shop_key(world, actor)]}


def fresh_request(world: World, actor: Actor | None) -> dict[str, Any]:
    """A new payment QR (1 pt) of the caller's shop (shop a for the others)."""
    shop = payments_of(world).shops[shop_key(world, actor)]
    made = payment_qr(world, shop, 1)
    return {**stock(world), "request_id": made["id"], "token": made["token"]}


def fresh_posted_payment(world: World, actor: Actor | None) -> dict[str, Any]:
    """A new posted payment (2 pt, by payment QR) at the caller's shop."""
    shop = payments_of(world).shops[shop_key(world, actor)]
    paid = pay(world, funded_resident(world, 2), payment_qr(world, shop, 2)["token"])
    assert paid.status_code == 201, paid.text
    return {**stock(world), "payment_id": paid.json()["id"]}


def fresh_pending_payment(world: World, actor: Actor | None) -> dict[str, Any]:
    """A new store-QR payment (2 pt) at the caller's shop, awaiting the shop."""
    shop = payments_of(world).shops[shop_key(world, actor)]
    held = pay(world, funded_resident(world, 2), shop.store_qr, amount=2)
    assert held.status_code == 201 and held.json()["state"] == "pending", held.text
    return {**stock(world), "payment_id": held.json()["id"]}


def pay_code_body(world: World, _params: dict[str, Any]) -> Any:
    """A fresh resident's new pay code (1 pt to pay)."""
    resident = funded_resident(world, 1)
    made = world.client.post(f"{ME}/pay-codes", json={}, headers=resident.headers)
    assert made.status_code == 201, made.text
    return {"token": made.json()["token"], "amount": 1}


def funded_request(world: World, actor: Actor | None) -> dict[str, Any]:
    """A payment QR of 1 pt at shop a, the calling resident given the point first."""
    payments_of(world)
    if actor is not None and actor.role is Role.RESIDENT:
        give(world, actor.id, 1)
    return fresh_request(world, None)


def own_resident_payment(world: World, actor: Actor | None) -> dict[str, Any]:
    payments = payments_of(world)
    return {**stock(world), "payment_id": payments.by_resident[resident_name(world, actor)]}


def own_pay_code(world: World, actor: Actor | None) -> dict[str, Any]:
    """A new pay code of the calling resident (the verified resident's for the others)."""
    resident = world.actors[resident_name(world, actor)]
    made = world.client.post(f"{ME}/pay-codes", json={}, headers=resident.headers)
    assert made.status_code == 201, made.text
    return {**stock(world), "code_id": made.json()["id"]}


def fresh_till(world: World) -> dict[str, Any]:
    return {"till_id": open_shop(world).till_id}


def token_of(_world: World, params: dict[str, Any]) -> Any:
    return {"token": params["token"]}


def owns_settings(world: World, actor: Actor, body: Any) -> None:
    key = shop_key(world, actor)
    assert body["merchant_id"] == actor.merchant_id == world.merchants[key]
    assert body["accepted_point_types"] == [POINT_TYPE_CODE]
    assert world.merchants[other_key(key)] not in json.dumps(body)


def owns_tills(world: World, actor: Actor, body: Any) -> None:
    key = shop_key(world, actor)
    assert body, "the shop has a till"
    assert {till["merchant_id"] for till in body} == {actor.merchant_id}
    assert payments_of(world).shops[key].till_id in {till["id"] for till in body}
    assert payments_of(world).shops[other_key(key)].till_id not in json.dumps(body)


def is_the_calling_till(world: World, actor: Actor, body: Any) -> None:
    shop = payments_of(world).shops[shop_key(world, actor)]
    assert (body["id"], body["staff_id"], body["merchant_id"]) == (
        shop.till_id,
        actor.id,
        actor.merchant_id,
    )
    assert body["store_qr"] == shop.store_qr


def owns_request(world: World, actor: Actor, body: Any) -> None:
    """The caller's shop's payment QR; the other shop's till does not find it."""
    assert body["state"] in ("open", "cancelled")
    other = payments_of(world).shops[other_key(shop_key(world, actor))]
    for path in (f"{M}/payment-requests/{body['id']}", f"{M}/payment-requests/{body['id']}/cancel"):
        method = "POST" if path.endswith("/cancel") else "GET"
        response = world.client.request(method, path, headers=other.headers)
        assert_hidden(response, actor.merchant_id or "", body["token"])
    mine = world.client.get(f"{M}/payment-requests/{body['id']}", headers=actor.headers)
    assert mine.status_code == 200 and mine.json()["state"] == body["state"], mine.text


def cancelled_request(world: World, actor: Actor, body: Any) -> None:
    assert body["state"] == "cancelled"
    owns_request(world, actor, body)


def owns_payment(world: World, actor: Actor, body: Any) -> None:
    """A payment of the caller's shop (taken by its till for the ones a till takes); the other
    shop's staff do not find it, nor can they confirm, decline or refund it."""
    key = shop_key(world, actor)
    assert body["merchant_id"] == actor.merchant_id == world.merchants[key]
    assert body["customer"].startswith("cus_") and "resident_id" not in body
    other = payments_of(world).shops[other_key(key)]
    hidden = (*merchant_names(world, key), body["customer"], body["till_id"])
    for staff in (other.till, world.actors[f"merchant_{other_key(key)}"]):
        assert_hidden(
            world.client.get(f"{M}/payments/{body['id']}", headers=staff.headers), *hidden
        )
        for act in ("confirm", "decline"):
            response = world.client.post(
                f"{M}/payments/{body['id']}/{act}", headers={**staff.headers, **key_header()}
            )
            assert_hidden(response, *hidden)
        response = world.client.post(
            f"{M}/payments/{body['id']}/refunds",
            json={"amount": 1},
            headers={**staff.headers, **key_header()},
        )
        assert_hidden(response, *hidden)


def key_header() -> dict[str, str]:
    return idempotency_key("authz")


# Paying merchants (redemption.payouts) ------------------------------------------------------

BANK_BODY = {
    "bank_code": "0005",
    "branch_code": "123",
    "account_type": "1",
    "account_number": "1234567",
    "holder_name": "コマエショウテン",
    "reason": "口座届出書",
}


def _set_bank(world: World, merchant_id: str) -> None:
    from points import access
    from redemption import payouts

    details = payouts.BankDetails("0005", "123", "1", "1234567", "ｺﾏｴｼﾖｳﾃﾝ")
    now = world.now()
    world.write(
        lambda session: payouts.set_bank_account(
            session, access.SYSTEM, now, merchant_id, details, reason="table"
        )
    )


def banked_merchant(world: World) -> dict[str, Any]:
    merchant_id = world.fresh_merchant()
    _set_bank(world, merchant_id)
    return {"merchant_id": merchant_id}


def banked_shops(world: World, actor: Actor | None) -> dict[str, Any]:
    """The world's two shops, with bank details."""

    def build() -> bool:
        for merchant_id in world.merchants.values():
            _set_bank(world, merchant_id)
        return True

    once_per_world(world, "banked shops", build)
    return stock(world)


def owns_bank_account(world: World, actor: Actor, body: Any) -> None:
    assert body["merchant_id"] == actor.merchant_id, body
    assert body["account_number"] == "****567", body


def settled_run(world: World) -> dict[str, Any]:
    """April settled (as on May 1) with a shop owed yen that has bank details: the run, its
    file made, one transfer."""

    def build() -> dict[str, Any]:
        from datetime import date

        from points import access
        from points.settings import DEMO_REMITTER
        from redemption import payouts, settlement, zengin
        from redemption.settlement_models import RunTrigger

        shop = open_shop(world)
        payer = funded_resident(world, 10)
        paid = pay(world, payer, payment_qr(world, shop, 10)["token"])
        assert paid.status_code == 201, paid.text
        _set_bank(world, shop.merchant_id)
        may = world.now().replace(month=5, day=2)

        def work(session: Any) -> dict[str, Any]:
            run = settlement.settle(
                session, access.SYSTEM, may, "2026-04", trigger=RunTrigger.API
            ).run
            made = payouts.transfer_file(
                session,
                access.SYSTEM,
                may,
                run.id,
                remitter=zengin.Remitter(**DEMO_REMITTER),
                transfer_date=date(2026, 5, 25),
            )
            return {"run_id": run.id, "transfer_id": made.transfers[0].id}

        return world.write(work)

    return dict(once_per_world(world, "settled run", build))


def rejected_transfer(world: World) -> dict[str, Any]:
    return {"transfer_id": settled_run(world)["transfer_id"]}


def disputed_payment(world: World, actor: Actor | None) -> dict[str, Any]:
    """A new posted payment (2 pt) at shop a, for finance to refund."""
    return fresh_posted_payment(world, None)


def refunded_on_behalf(world: World, actor: Actor, body: Any) -> None:
    assert (body["refunded"], body["merchant_id"]) == (1, world.merchants["a"])


def taken_by_the_till(world: World, actor: Actor, body: Any) -> None:
    assert (
        body["state"] == "posted"
        and body["till_id"] == payments_of(world).shops[shop_key(world, actor)].till_id
    )
    owns_payment(world, actor, body)


def confirmed(world: World, actor: Actor, body: Any) -> None:
    assert body["state"] == "posted"
    owns_payment(world, actor, body)


def declined(world: World, actor: Actor, body: Any) -> None:
    assert body["state"] == "voided"
    owns_payment(world, actor, body)


def refunded_one(world: World, actor: Actor, body: Any) -> None:
    assert (body["state"], body["refunded"]) == ("partly_refunded", 1)
    owns_payment(world, actor, body)


def owns_payment_list(world: World, actor: Actor, body: Any) -> None:
    key = shop_key(world, actor)
    payments = payments_of(world)
    assert payments.payments[key] in {item["id"] for item in body["items"]}
    assert {item["merchant_id"] for item in body["items"]} == {actor.merchant_id}
    assert payments.payments[other_key(key)] not in json.dumps(body)
    assert body["totals"]["count"] >= 1


def owns_events(world: World, actor: Actor, body: Any) -> None:
    items = body["items"]
    assert items, "the shop's stock payment made an event"
    assert {item["payment"]["merchant_id"] for item in items} == {actor.merchant_id}
    assert payments_of(world).payments[other_key(shop_key(world, actor))] not in json.dumps(body)


def owns_event_stream(world: World, actor: Actor, text: Any) -> None:
    """The stream's events (``data:`` lines) are the shop's own, like its polling twin's."""
    data = [
        json.loads(line[len("data: ") :]) for line in text.splitlines() if line.startswith("data: ")
    ]
    assert "event: payment" in text
    owns_events(world, actor, {"items": data})


def previews_own_balance(world: World, actor: Actor, body: Any) -> None:
    assert body["flow"] == "payment_qr" and body["merchant_id"] == world.merchants["a"]
    assert body["balances"] == {POINT_TYPE_CODE: balance(world, actor)}


def owns_resident_payment(world: World, actor: Actor, body: Any) -> None:
    """The caller's payment; the other resident does not find it."""
    other = other_resident(world, actor)
    response = world.client.get(f"{ME}/payments/{body['id']}", headers=other.headers)
    assert_hidden(response, actor.id, body["merchant_id"], body["till_id"])
    assert payment_owner(world, body["id"]) == actor.id


def paid_own(world: World, actor: Actor, body: Any) -> None:
    assert (body["state"], body["amount"]) == ("posted", 1)
    owns_resident_payment(world, actor, body)


def payment_owner(world: World, payment_id: str) -> str:
    with world.engine.connect() as connection:
        return str(
            connection.execute(
                sa.text("SELECT resident_id FROM payment WHERE id = :id"), {"id": payment_id}
            ).scalar_one()
        )


def owns_resident_payments(world: World, actor: Actor, body: Any) -> None:
    with world.engine.connect() as connection:
        theirs = set(
            connection.execute(
                sa.text("SELECT id FROM payment WHERE resident_id = :id"), {"id": actor.id}
            ).scalars()
        )
    listed = {item["id"] for item in body["items"]}
    assert payments_of(world).by_resident[resident_name(world, actor)] in listed
    assert listed == theirs


def owns_pay_code(world: World, actor: Actor, body: Any) -> None:
    other = other_resident(world, actor)
    response = world.client.get(f"{ME}/pay-codes/{body['id']}", headers=other.headers)
    assert_hidden(response, actor.id)
    mine = world.client.get(f"{ME}/pay-codes/{body['id']}", headers=actor.headers)
    assert mine.status_code == 200 and mine.json()["state"] == "open", mine.text


def default_pay_code_limit(_world: World, _actor: Actor, body: Any) -> None:
    assert body == {"pay_code_limit": 5_000, "pay_code_limit_max": 5_000}


def finance_sees_pseudonymous_payments(world: World, actor: Actor, body: Any) -> None:
    pseudonymous(world, actor, body)
    ids = {item["id"] for item in body["items"]}
    assert set(payments_of(world).payments.values()) <= ids


def finance_sees_the_payer(world: World, _actor: Actor, body: Any) -> None:
    assert (body["resident_id"], body["merchant_id"]) == (world.resident.id, world.merchants["a"])
    assert RESIDENT_NAME not in json.dumps(body)


# The catalog of a city counter ---------------------------------------------------------------

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 32


def _catalog(world: World) -> dict[str, Any]:
    made = world.client.post(
        "/api/v1/admin/merchants",
        json={"name_ja": "交換窓口", "name_en": "Counter", "category": "city", "kind": "counter"},
        headers=world.admin.headers,
    )
    assert made.status_code == 201, made.text
    counter = open_shop(world, made.json()["id"], till_name="窓口")
    item = world.client.post(
        "/api/v1/admin/catalog-items",
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
    pictured = world.client.put(
        f"/api/v1/admin/catalog-items/{item.json()['id']}/image",
        content=PNG,
        headers={**world.admin.headers, "Content-Type": "image/png"},
    )
    assert pictured.status_code == 200, pictured.text
    return {"merchant_id": counter.merchant_id, "item_id": item.json()["id"]}


def catalog_of(world: World) -> dict[str, Any]:
    """A city counter with a till and an item of 1 pt (with a picture), made on first need."""
    return {
        **stock(world),
        **once_per_world(world, "authorization catalog", lambda: _catalog(world)),
    }


def new_item_body(world: World, params: dict[str, Any]) -> Any:
    return {
        "merchant_id": params["merchant_id"],
        "point_type": POINT_TYPE_CODE,
        "name_ja": "布巾",
        "name_en": "Cloth",
        "points": 2,
        "stock": 5,
    }


def funded_exchange(world: World, actor: Actor | None) -> dict[str, Any]:
    """The catalog's item, the calling resident given its point first."""
    params = catalog_of(world)
    if actor is not None and actor.role is Role.RESIDENT:
        give(world, actor.id, 1)
    return params


def item_body(_world: World, params: dict[str, Any]) -> Any:
    return {"item_id": params["item_id"]}


def own_exchange(world: World, actor: Actor | None) -> dict[str, Any]:
    """An exchange by the calling resident (the verified resident's for the others)."""
    params = catalog_of(world)
    resident = world.actors[resident_name(world, actor)]
    give(world, resident.id, 1)
    done = world.client.post(
        f"{ME}/exchanges",
        json={"item_id": params["item_id"]},
        headers={**resident.headers, **idempotency_key("exchange")},
    )
    assert done.status_code == 201, done.text
    return {**params, "exchange_id": done.json()["id"]}


def own_exchanges(world: World, actor: Actor, body: Any) -> None:
    """The caller's exchanges only: each one's receipt opens for the caller."""
    assert body, "the caller exchanged (own_exchange)"
    for done in body:
        mine = world.client.get(done["receipt_url"], headers=actor.headers)
        assert mine.status_code == 200, done


def exchanged_own(world: World, actor: Actor, body: Any) -> None:
    assert body["payment"]["resident_id"] == actor.id if "resident_id" in body["payment"] else True
    assert body["channel"] == "wallet" and body["payment"]["flow"] == "exchange"


def assisted_exchange_body(world: World, params: dict[str, Any]) -> Any:
    return {**card_exchange_body(world, params), "reason": "no phone"}


def assisted_exchange(world: World, actor: Actor, body: Any) -> None:
    assert (body["channel"], body["payment"]["till_id"]) == ("assisted", None)


def card_exchange_body(world: World, params: dict[str, Any]) -> Any:
    """A new card with 1 pt, its number and PIN typed, the counter's item."""
    return {
        "card_number": fresh_card(world)["card_number"],
        "pin": CARD_PIN,
        **item_body(world, params),
    }


# Settlement (api.routers.settlement) -----------------------------------------------------------


def settlement_params(world: World, actor: Actor | None) -> dict[str, Any]:
    """A settlement run (of 2026-01, written directly: the world's clock never leaves April)
    with a statement of each of the world's shops; the caller's shop's (shop a's for others)."""
    made = once_per_world(world, "settlement statements", lambda: _settlement(world))
    key = shop_key(world, actor)
    return {**stock(world), "run_id": made["run_id"], "statement_id": made[key]}


def _settlement(world: World) -> dict[str, str]:
    from redemption.settlement import period_cut
    from redemption.settlement_models import SettlementRun, Statement

    now = world.now()
    made = {"run_id": f"stl_authz{uuid.uuid4().hex[:12]}"}

    def work(session: Any) -> None:
        session.add(
            SettlementRun(
                id=made["run_id"],
                period="2026-01",
                cut_at=period_cut("2026-01"),
                trigger="cli",
                created_by="system",
                created_at=now,
            )
        )
        session.flush()
        for key in ("a", "b"):
            made[key] = f"stm_authz{key}{uuid.uuid4().hex[:12]}"
            session.add(
                Statement(
                    id=made[key],
                    run_id=made["run_id"],
                    period="2026-01",
                    merchant_id=world.merchants[key],
                    point_type_id=world.point_type_id,
                    **dict.fromkeys(
                        (
                            "payment_count",
                            "refund_count",
                            "payment_points",
                            "refund_points",
                            "net_points",
                            "carried_in",
                            "settle_points",
                            "carried_out",
                            "yen",
                            "fee",
                            "yen_to_pay",
                            "fee_bps",
                        ),
                        0,
                    ),
                    yen_rate=1,
                    transfer="bank",
                    created_at=now,
                )
            )

    world.write(work)
    return made


def owns_statement(world: World, actor: Actor, body: Any) -> None:
    """The caller's shop's statement, without ledger ids; the other shop's staff do not find
    it, nor its file or page."""
    key = shop_key(world, actor)
    assert body["merchant_id"] == actor.merchant_id == world.merchants[key]
    assert body["entry_id"] is None
    other = other_key(key)
    for staff in (world.actors[f"merchant_{other}"],):
        for suffix in ("", ".csv", "/print"):
            response = world.client.get(
                f"{M}/statements/{body['id']}{suffix}", headers=staff.headers
            )
            assert_hidden(response, *merchant_names(world, key))


def owns_statements(world: World, actor: Actor, body: Any) -> None:
    assert body["items"], "the shop's statement is listed"
    assert {item["merchant_id"] for item in body["items"]} == {actor.merchant_id}


@dataclass(frozen=True)
class Row:
    method: str
    #: The route's path template, exactly as the app declares it.
    path: str
    #: The status for each column of ``COLUMNS``, separated by spaces.
    expect: str
    params: Params = stock
    body: Body | None = None
    query: str = ""
    #: Checks, for an allowed caller, that the data returned is the caller's own.
    owned: Owned | None = None
    #: An allowed call must add an audit event naming the caller.
    audited: bool = False
    #: Path parameters chosen per caller (an issuer's own program); overrides ``params``.
    per_caller: Callable[[World, Actor | None], dict[str, Any]] | None = None
    #: A value-moving route: the call sends a fresh Idempotency-Key.
    value_moving: bool = False
    #: A file body (a CSV upload, a picture) instead of JSON, of ``upload_type``.
    csv: Callable[[World, dict[str, Any]], bytes] | None = None
    upload_type: str = "text/csv"
    #: The media type of a success (JSON unless told).
    media_type: str = "application/json"
    #: Only a till takes it: the shop's other staff get 403 ``till_required``.
    till_only: bool = False
    #: A server-sent event stream: called with the stream cut short (it runs for 55 s).
    stream: bool = False
    #: The wallet app's own request (``api.sessions``): its header and origin are sent, and the
    #: session cookie it may set is dropped afterwards (the shared client holds no session).
    from_the_app: bool = False
    #: The app's ``X-Points-Client`` when ``from_the_app``: the wallet's, or the staff app's.
    app_client: str = "wallet"

    def status_for(self, column: str) -> int:
        statuses = self.expect.split()
        assert len(statuses) == len(COLUMNS), self
        return int(statuses[COLUMNS.index(column)])


EVERYONE_200 = "200 200 200 200 200 200 200"
EVERYONE_201 = "201 201 201 201 201 201 201"
RESIDENT = "401 200 403 403 403 403 403"
MERCHANT = "401 403 200 403 403 403 403"
ISSUER = "401 403 403 200 403 403 403"
COUNTER = "401 403 403 403 200 403 403"
COUNTER_201 = "401 403 403 403 201 403 403"
AUDITORS = "401 403 403 403 403 200 200"
ADMIN = "401 403 403 403 403 403 200"
ADMIN_201 = "401 403 403 403 403 403 201"
ADMIN_204 = "401 403 403 403 403 403 204"
ISSUER_201 = "401 403 403 201 403 403 403"
MERCHANT_201 = "401 403 201 403 403 403 403"
RESIDENT_201 = "401 201 403 403 403 403 403"
AUDITORS_201 = "401 403 403 403 403 201 201"

A = "/api/v1/admin"
C = "/api/v1/counter"
F = "/api/v1/finance"
ISS = "/api/v1/issuer"
B = "/api/v1/budgets"

# fmt: off
TABLE: list[Row] = [
    # Public: no token needed; a token changes nothing.
    Row("GET", "/healthz", EVERYONE_200),
    Row("GET", "/readyz", EVERYONE_200),
    Row("GET", "/api/v1/catalog/items/{item_id}/image", EVERYONE_200, params=catalog_of,
        media_type="image/png"),
    Row("POST", "/api/v1/enrolments/self", EVERYONE_201),
    Row("POST", "/api/v1/enrolments/code", EVERYONE_201, body=enrolment_code_body),
    Row("GET", "/api/v1/keys", EVERYONE_200),
    Row("GET", "/api/v1/wallet-app", EVERYONE_200),
    Row("POST", "/api/v1/sessions/code", EVERYONE_201, body=enrolment_code_body,
        from_the_app=True),
    Row("POST", "/api/v1/sessions/self", EVERYONE_201, from_the_app=True),
    Row("POST", "/api/v1/sessions/end", "204 204 204 204 204 204 204", from_the_app=True),
    Row("POST", "/api/v1/sessions/device", EVERYONE_201, body=device_code_body,
        from_the_app=True, app_client="staff"),
    Row("GET", "/api/v1/sessions/current", "401 200 200 200 200 200 200"),
    Row("POST", f"{A}/device-codes", ADMIN_201, body=lambda w, _p: {"staff_id": w.counter.id},
        audited=True),
    Row("GET", f"{A}/device-sessions", ADMIN),
    Row("GET", "/Q/{text}", EVERYONE_200, params=lambda world: {"text": "A" * 135},
        media_type="text/html"),
    Row("GET", "/q/{text}", EVERYONE_200, params=lambda world: {"text": "a" * 154},
        media_type="text/html"),
    # Owned: each principal gets its own object, never another's.
    Row("GET", "/api/v1/me", RESIDENT, owned=owns_profile),
    Row("GET", "/api/v1/merchant", MERCHANT, owned=owns_merchant),
    Row("GET", "/api/v1/issuer/department", ISSUER, owned=owns_department),
    Row("GET", "/api/v1/me/wallets", RESIDENT),
    Row("POST", "/api/v1/me/check-ins", "401 201 403 403 403 403 403", body=check_in_body,
        value_moving=True),
    Row("GET", "/api/v1/me/wallets/{point_type}", RESIDENT),
    Row("GET", "/api/v1/me/wallets/{point_type}/history", RESIDENT),
    # Shops (merchant staff and tills): only their own shop's objects. Taking a payment needs
    # a till (other staff: 403 till_required); reading, confirming and refunding any staff.
    Row("GET", f"{M}/settings", MERCHANT, per_caller=own_shop, owned=owns_settings),
    Row("GET", f"{M}/tills", MERCHANT, per_caller=own_shop, owned=owns_tills),
    Row("GET", f"{M}/till", MERCHANT, per_caller=own_shop, owned=is_the_calling_till,
        till_only=True),
    Row("POST", f"{M}/payment-requests", MERCHANT_201, per_caller=own_shop,
        body=lambda _w, _p: {"amount": 1, "reference": "R-authz"}, owned=owns_request,
        till_only=True),
    Row("GET", f"{M}/payment-requests/{{request_id}}", MERCHANT, per_caller=fresh_request,
        owned=owns_request),
    Row("POST", f"{M}/payment-requests/{{request_id}}/cancel", MERCHANT,
        per_caller=fresh_request, owned=cancelled_request),
    Row("POST", f"{M}/pay-code-payments", MERCHANT_201, per_caller=own_shop, body=pay_code_body,
        owned=taken_by_the_till, value_moving=True, till_only=True),
    Row("POST", f"{M}/card-payments", MERCHANT_201, per_caller=own_shop, body=card_payment_body,
        owned=taken_by_the_till, value_moving=True, till_only=True),
    # The world's shops are not counters: their tills find no such item, their staff no receipt
    # (tests/test_catalog.py exchanges at a counter's till).
    Row("POST", f"{M}/card-exchanges", "401 403 404 403 403 403 403", params=catalog_of,
        body=card_exchange_body, value_moving=True, till_only=True),
    Row("GET", f"{M}/exchanges/{{exchange_id}}/receipt", "401 403 404 403 403 403 403",
        per_caller=own_exchange),
    Row("GET", f"{M}/payments", MERCHANT, per_caller=own_shop, query="?limit=200",
        owned=owns_payment_list),
    Row("GET", f"{M}/payments/{{payment_id}}", MERCHANT, per_caller=own_shop,
        owned=owns_payment),
    Row("POST", f"{M}/payments/{{payment_id}}/confirm", MERCHANT,
        per_caller=fresh_pending_payment, owned=confirmed, value_moving=True),
    Row("POST", f"{M}/payments/{{payment_id}}/decline", MERCHANT,
        per_caller=fresh_pending_payment, owned=declined, value_moving=True),
    Row("POST", f"{M}/payments/{{payment_id}}/refunds", MERCHANT_201,
        per_caller=fresh_posted_payment, body=lambda _w, _p: {"amount": 1, "reason": "authz"},
        owned=refunded_one, value_moving=True),
    Row("GET", f"{M}/payment-events", MERCHANT, per_caller=own_shop, query="?after=0",
        owned=owns_events),
    Row("GET", f"{M}/payment-events/stream", MERCHANT, per_caller=own_shop, query="?after=0",
        owned=owns_event_stream, media_type="text/event-stream", stream=True),
    # Residents paying: their own payments and pay codes only.
    Row("POST", f"{ME}/payment-previews", RESIDENT, per_caller=fresh_request, body=token_of,
        owned=previews_own_balance),
    Row("POST", f"{ME}/payments", RESIDENT_201, per_caller=funded_request, body=token_of,
        owned=paid_own, value_moving=True),
    Row("GET", f"{ME}/payments", RESIDENT, per_caller=own_resident_payment, query="?limit=200",
        owned=owns_resident_payments),
    Row("GET", f"{ME}/payments/{{payment_id}}", RESIDENT, per_caller=own_resident_payment,
        owned=owns_resident_payment),
    Row("POST", f"{ME}/pay-codes", RESIDENT_201, body=lambda _w, _p: {}, owned=owns_pay_code),
    Row("GET", f"{ME}/catalog", RESIDENT, params=catalog_of),
    Row("POST", f"{ME}/exchanges", RESIDENT_201, per_caller=funded_exchange, body=item_body,
        owned=exchanged_own, value_moving=True),
    Row("GET", f"{ME}/exchanges", RESIDENT, per_caller=own_exchange, owned=own_exchanges),
    Row("GET", f"{ME}/exchanges/{{exchange_id}}/receipt", RESIDENT, per_caller=own_exchange,
        media_type="text/html"),
    Row("GET", f"{ME}/pay-codes/{{code_id}}", RESIDENT, per_caller=own_pay_code,
        owned=owns_pay_code),
    Row("GET", f"{ME}/payment-settings", RESIDENT, owned=default_pay_code_limit),
    Row("PUT", f"{ME}/payment-settings", RESIDENT, body=lambda _w, _p: {"pay_code_limit": 5_000},
        owned=default_pay_code_limit),
    # Issuers: their own department's programs (another's is not found: test_api_earning).
    Row("GET", f"{ISS}/programs", ISSUER, owned=own_programs),
    Row("GET", f"{ISS}/programs/{{program_id}}", ISSUER, per_caller=own_program,
        owned=own_program_only),
    Row("GET", f"{ISS}/programs/{{program_id}}/budgets/{{fiscal_year}}", ISSUER,
        per_caller=own_program),
    Row("POST", f"{ISS}/programs/{{program_id}}/awards", ISSUER_201, per_caller=own_program,
        body=award_body, value_moving=True),
    Row("GET", f"{ISS}/programs/{{program_id}}/awards", ISSUER, per_caller=own_program),
    Row("POST", f"{ISS}/programs/{{program_id}}/award-uploads", ISSUER_201,
        per_caller=own_program, csv=awards_file, value_moving=True),
    Row("POST", f"{ISS}/programs/{{program_id}}/award-uploads/check", ISSUER,
        per_caller=own_program, csv=awards_file),
    Row("GET", f"{ISS}/award-uploads/{{upload_id}}", ISSUER, per_caller=own_upload),
    # The issuer reaches the rule (a finished upload is not cancelled: 409); the cancelling of
    # an unfinished one is tested in test_bulk_recovery.py.
    Row("POST", f"{ISS}/award-uploads/{{upload_id}}/cancel", "401 403 403 409 403 403 403",
        per_caller=own_upload, body=reason, value_moving=True,
        media_type="application/problem+json"),
    Row("POST", f"{ISS}/programs/{{program_id}}/events", ISSUER_201,
        per_caller=own_volunteering_program, body=event_body, audited=True),
    Row("GET", f"{ISS}/programs/{{program_id}}/events", ISSUER, per_caller=own_program),
    Row("GET", f"{ISS}/events/{{event_id}}/attendance", ISSUER, per_caller=own_event),
    Row("POST", f"{ISS}/events/{{event_id}}/close", ISSUER, per_caller=own_event, body=reason,
        audited=True),
    Row("GET", f"{ISS}/events/{{event_id}}/check-in", ISSUER, per_caller=own_event),
    Row("POST", f"{ISS}/events/{{event_id}}/card-check-ins", ISSUER_201, per_caller=own_event,
        body=card_check_in_body, value_moving=True),
    Row("GET", f"{ISS}/residents", ISSUER, query="?address_number={address_number}",
        owned=learns_only_the_id),
    # Counter staff.
    Row("POST", f"{C}/residents", COUNTER_201, body=new_resident_body, audited=True),
    Row("GET", f"{C}/residents", COUNTER, query="?address_number={address_number}",
        owned=finds_the_resident),
    Row("GET", f"{C}/residents/{{resident_id}}", COUNTER),
    Row("PATCH", f"{C}/residents/{{resident_id}}", COUNTER, params=fresh_resident,
        body=lambda _w, _p: {"name": "訂正 済", "reason": "typo"}, audited=True),
    Row("POST", f"{C}/residents/{{resident_id}}/verify", COUNTER, params=fresh_self_enrolled,
        body=reason, audited=True),
    Row("POST", f"{C}/residents/{{resident_id}}/enrolment-codes", COUNTER_201,
        params=fresh_resident, audited=True),
    Row("POST", f"{C}/residents/{{resident_id}}/revoke-tokens", COUNTER,
        params=fresh_resident_with_token, body=reason, audited=True),
    Row("GET", f"{C}/residents/{{resident_id}}/wallets", COUNTER),
    Row("POST", f"{C}/residents/{{resident_id}}/wallets/{{point_type}}/close", COUNTER,
        params=lambda w: {**fresh_resident(w), "point_type": POINT_TYPE_CODE}, body=reason,
        audited=True, value_moving=True),
    Row("POST", f"{C}/residents/{{resident_id}}/wallets/{{point_type}}/reopen", COUNTER,
        params=fresh_closed_wallet, body=reason, audited=True, value_moving=True),
    Row("GET", f"{C}/expiry-notices", "401 403 403 403 200 403 200", media_type="text/csv"),
    Row("POST", f"{C}/residents/{{resident_id}}/cards", COUNTER_201, params=card_issue_params,
        body=lambda _w, _p: {"pin": CARD_PIN}, owned=card_issued, audited=True),
    Row("GET", f"{C}/residents/{{resident_id}}/cards", COUNTER),
    Row("GET", f"{C}/catalog", COUNTER, params=catalog_of),
    Row("POST", f"{C}/assisted-exchanges", COUNTER_201, params=catalog_of,
        body=assisted_exchange_body, owned=assisted_exchange, value_moving=True, audited=True),
    Row("GET", f"{C}/exchanges/{{exchange_id}}/receipt", COUNTER, per_caller=own_exchange,
        media_type="text/html"),
    Row("POST", f"{C}/cards/find", COUNTER, params=fresh_card, body=card_lookup_body),
    Row("POST", f"{C}/cards/{{card_id}}/block", COUNTER, params=fresh_card, body=reason,
        audited=True),
    Row("POST", f"{C}/cards/{{card_id}}/reissue", COUNTER_201, params=fresh_card, body=reason,
        owned=card_issued, audited=True),
    Row("POST", f"{C}/cards/{{card_id}}/unlock", COUNTER, params=fresh_card, body=reason,
        audited=True),
    Row("POST", f"{C}/cards/{{card_id}}/pin", COUNTER, params=fresh_card,
        body=lambda _w, _p: {"new_pin": "7392", "reason": "identity checked"}, audited=True),
    Row("POST", f"{C}/residents/find", COUNTER,
        body=lambda w, _p: {"resident_id": w.resident.id}, owned=finds_at_the_counter),
    Row("GET", f"{C}/residents/{{resident_id}}/expiry-notice", COUNTER, media_type="text/html"),
    Row("POST", f"{C}/assisted-payments", COUNTER_201, body=assisted_payment_body,
        owned=paid_on_behalf, audited=True, value_moving=True),
    Row("GET", f"{C}/cards/{{card_id}}/print", COUNTER, params=fresh_card,
        media_type="image/svg+xml", audited=True),
    Row("POST", f"{C}/cards/print-sheet", COUNTER, params=fresh_card, body=card_sheet_body,
        media_type="image/svg+xml", audited=True),
    # Budgets: finance and admins.
    Row("GET", f"{B}/{{program_id}}/{{fiscal_year}}", AUDITORS),
    Row("POST", f"{B}/{{program_id}}/{{fiscal_year}}/allocations", AUDITORS_201,
        params=lambda w: {"program_id": w.fresh_program(), "fiscal_year": FISCAL_YEAR},
        body=lambda _w, _p: {"amount": 1000, "reason": "table"}, audited=True,
        value_moving=True),
    Row("POST", f"{B}/{{program_id}}/{{fiscal_year}}/year-end", AUDITORS,
        params=fresh_program_of_last_year,
        body=lambda _w, _p: {"decision": "lapse", "reason": "table"}, audited=True,
        value_moving=True),
    # Finance and admins: read-only audit.
    Row("GET", f"{F}/ledgers", AUDITORS),
    Row("GET", f"{F}/ledgers/{{ledger_id}}/accounts", AUDITORS),
    Row("GET", f"{F}/accounts/{{account_id}}", AUDITORS),
    Row("GET", f"{F}/accounts/{{account_id}}/history", AUDITORS),
    Row("GET", f"{F}/entries/{{entry_id}}", AUDITORS),
    Row("GET", f"{F}/verify/last", AUDITORS),
    Row("GET", f"{F}/residents", AUDITORS, owned=pseudonymous),
    Row("GET", f"{F}/audit", AUDITORS),
    Row("GET", f"{F}/job-runs", AUDITORS),
    Row("GET", f"{F}/job-runs/{{run_id}}", AUDITORS, params=a_job_run),
    Row("GET", f"{F}/payments", AUDITORS, per_caller=own_shop, query="?limit=200",
        owned=finance_sees_pseudonymous_payments),
    Row("GET", f"{F}/payments/{{payment_id}}", AUDITORS, per_caller=own_shop,
        owned=finance_sees_the_payer),
    # Admins.
    Row("POST", f"{A}/departments", ADMIN_201, body=new_department_body, audited=True),
    Row("GET", f"{A}/departments", ADMIN),
    Row("GET", f"{A}/departments/{{department_id}}", ADMIN),
    Row("POST", f"{A}/merchants", ADMIN_201, body=new_merchant_body, audited=True),
    Row("GET", f"{A}/merchants", ADMIN),
    Row("GET", f"{A}/merchants/{{merchant_id}}", ADMIN),
    Row("POST", f"{A}/merchants/{{merchant_id}}/status", ADMIN, params=fresh_merchant,
        body=lambda _w, _p: {"status": "suspended", "reason": "table"}, audited=True),
    Row("GET", f"{A}/merchants/{{merchant_id}}/settings", ADMIN),
    Row("PUT", f"{F}/merchants/{{merchant_id}}/fee", AUDITORS, params=fresh_merchant,
        body=lambda _w, _p: {"fee_bps": 150, "reason": "table"}, audited=True),
    Row("PATCH", f"{A}/merchants/{{merchant_id}}/settings", ADMIN, params=fresh_merchant,
        body=lambda _w, _p: {"accepted_point_types": [POINT_TYPE_CODE],
                             "confirm_mode": "auto_confirm", "auto_confirm_max": 100,
                             "reason": "table"},
        audited=True),
    Row("POST", f"{A}/merchants/{{merchant_id}}/tills", ADMIN_201, params=fresh_merchant,
        body=lambda _w, _p: {"name": "レジ表"}, audited=True),
    Row("GET", f"{A}/merchants/{{merchant_id}}/tills", ADMIN, per_caller=own_shop),
    Row("POST", f"{A}/tills/{{till_id}}/store-qr", ADMIN, params=fresh_till, body=reason,
        audited=True),
    Row("POST", f"{A}/tills/{{till_id}}/revoke", ADMIN, params=fresh_till, body=reason,
        audited=True),
    Row("POST", f"{A}/residents", ADMIN_201, body=new_resident_body, audited=True),
    Row("GET", f"{A}/residents", ADMIN),
    Row("GET", f"{A}/residents/{{resident_id}}", ADMIN),
    Row("PATCH", f"{A}/residents/{{resident_id}}", ADMIN, params=fresh_resident,
        body=lambda _w, _p: {"birth_year": 1981, "reason": "typo"}, audited=True),
    Row("POST", f"{A}/residents/{{resident_id}}/status", ADMIN, params=fresh_resident,
        body=lambda _w, _p: {"status": "moved_out", "reason": "table"}, audited=True),
    Row("POST", f"{A}/residents/{{resident_id}}/erase", ADMIN, params=fresh_resident,
        body=reason, audited=True),
    Row("POST", f"{A}/staff", ADMIN_201, body=new_staff_body, audited=True),
    Row("GET", f"{A}/staff", ADMIN),
    Row("GET", f"{A}/staff/{{staff_id}}", ADMIN),
    Row("POST", f"{A}/staff/{{staff_id}}/status", ADMIN, params=fresh_staff,
        body=lambda _w, _p: {"status": "disabled", "reason": "table"}, audited=True),
    Row("POST", f"{A}/tokens", ADMIN_201, body=new_token_body, audited=True),
    Row("GET", f"{A}/tokens", ADMIN),
    Row("POST", f"{A}/tokens/{{token_id}}/revoke", ADMIN, params=fresh_token, body=reason,
        audited=True),
    Row("POST", f"{A}/point-types", ADMIN_201, body=new_point_type_body, audited=True),
    Row("POST", f"{A}/catalog-items", ADMIN_201, params=catalog_of, body=new_item_body,
        audited=True),
    Row("GET", f"{A}/catalog-items", ADMIN, params=catalog_of),
    Row("PATCH", f"{A}/catalog-items/{{item_id}}", ADMIN, params=catalog_of,
        body=lambda _w, _p: {"name_en": "Eco bag"}, audited=True),
    Row("POST", f"{A}/catalog-items/{{item_id}}/stock-changes", ADMIN_201, params=catalog_of,
        body=lambda _w, _p: {"delta": 1, "reason": "delivered"}, audited=True),
    Row("GET", f"{A}/catalog-items/{{item_id}}/stock-changes", ADMIN, params=catalog_of),
    Row("PUT", f"{A}/catalog-items/{{item_id}}/image", ADMIN, params=catalog_of,
        csv=lambda _w, _p: PNG, upload_type="image/png", audited=True),
    Row("POST", f"{F}/payments/{{payment_id}}/refunds", "401 403 403 403 403 201 403",
        per_caller=disputed_payment, body=lambda _w, _p: {"amount": 1, "reason": "dispute"},
        owned=refunded_on_behalf, value_moving=True, audited=True),
    Row("GET", f"{A}/point-types/{{point_type}}/card-policy", ADMIN),
    Row("PUT", f"{A}/point-types/{{point_type}}/card-policy", ADMIN,
        body=lambda _w, _p: {"daily_limit": 10_000, "payments_per_shop": 3}, audited=True),
    Row("GET", f"{A}/point-types", ADMIN),
    Row("GET", f"{A}/point-types/{{point_type_id}}", ADMIN),
    Row("DELETE", f"{A}/point-types/{{point_type_id}}", ADMIN_204, params=fresh_point_type,
        audited=True),
    Row("PUT", f"{A}/point-types/{{point_type_id}}/yen-rate", ADMIN, params=fresh_point_type,
        body=lambda _w, _p: {"yen_rate": 2, "reason": "table"}, audited=True),
    Row("POST", f"{A}/programs", ADMIN_201, body=new_program_body, audited=True),
    Row("GET", f"{A}/programs", ADMIN),
    Row("GET", f"{A}/programs/{{program_id}}", ADMIN),
    Row("POST", f"{A}/programs/{{program_id}}/status", ADMIN, params=fresh_draft_program,
        body=lambda _w, _p: {"status": "active", "reason": "table"}, audited=True),
    Row("PUT", f"{A}/programs/{{program_id}}/budget-code", ADMIN, params=fresh_draft_program,
        body=lambda _w, _p: {"budget_code": "03-01-02-19", "reason": "table"}, audited=True),
    # A verify run is recorded in verify_run (not the audit trail: see test_api_registries).
    Row("POST", f"{A}/verify", ADMIN_201),
    # Paying merchants: bank details (admins), the run's transfer file (finance).
    Row("PUT", f"{A}/merchants/{{merchant_id}}/bank-account", ADMIN, params=fresh_merchant,
        body=lambda _w, _p: BANK_BODY, audited=True),
    Row("GET", f"{A}/merchants/{{merchant_id}}/bank-account", AUDITORS, params=banked_merchant),
    Row("POST", f"{A}/merchants/{{merchant_id}}/bank-account/remove", ADMIN,
        params=banked_merchant, body=reason, audited=True),
    Row("GET", "/api/v1/merchant/bank-account", MERCHANT, per_caller=banked_shops,
        owned=owns_bank_account),
    Row("POST", f"{F}/settlement-runs/{{run_id}}/transfer-file", "401 403 403 403 403 201 403",
        params=settled_run, body=lambda _w, _p: {"transfer_date": "2026-05-25"},
        value_moving=True),
    Row("GET", f"{F}/settlement-runs/{{run_id}}/transfer-file", "401 403 403 403 403 200 403",
        params=settled_run, media_type="text/plain"),
    Row("GET", f"{F}/settlement-runs/{{run_id}}/transfers", AUDITORS, params=settled_run),
    Row("POST", f"{F}/settlement-runs/{{run_id}}/paid", "401 403 403 403 403 200 403",
        params=settled_run, body=lambda _w, _p: {"payout_date": "2026-05-25"}, audited=True),
    Row("POST", f"{F}/transfers/{{transfer_id}}/rejected", "401 403 403 403 403 200 403",
        params=rejected_transfer, body=reason, audited=True),
    # Settlement: finance runs and reads (admins read); a shop reads its own statements.
    # A run is made in test_settlement_api.py; here finance reaches the rule whatever runs the
    # shared world holds (the month of the world's clock has not ended: period_not_ended).
    Row("POST", f"{F}/settlement-runs", "401 403 403 403 403 409 403",
        body=lambda _w, _p: {"period": "2026-12"}, value_moving=True,
        media_type="application/problem+json"),
    Row("GET", f"{F}/settlement-runs", AUDITORS),
    Row("GET", f"{F}/settlement-runs/{{run_id}}", AUDITORS,
        params=lambda w: settlement_params(w, None)),
    Row("GET", f"{F}/settlement-runs/{{run_id}}/statements.csv", AUDITORS,
        params=lambda w: settlement_params(w, None), media_type="text/csv"),
    Row("GET", f"{F}/settlement-runs/{{run_id}}/budget-lines.csv", AUDITORS,
        params=lambda w: settlement_params(w, None), media_type="text/csv"),
    Row("GET", f"{F}/settlement-plan", "401 403 403 403 403 409 409", query="?period=2026-12",
        media_type="application/problem+json"),
    Row("GET", f"{F}/statements", AUDITORS),
    Row("GET", f"{F}/statements/{{statement_id}}", AUDITORS,
        params=lambda w: settlement_params(w, None)),
    Row("GET", f"{F}/statements/{{statement_id}}.csv", AUDITORS,
        params=lambda w: settlement_params(w, None), media_type="text/csv"),
    Row("GET", f"{F}/statements/{{statement_id}}/print", AUDITORS,
        params=lambda w: settlement_params(w, None), media_type="text/html"),
    # Finance reaches the rule (an open shop's statement has no balance to recover: 409); a
    # recovery itself is tested in test_settlement_api.py.
    Row("POST", f"{F}/statements/{{statement_id}}/recovery", "401 403 403 403 403 409 403",
        params=lambda w: settlement_params(w, None),
        body=lambda _w, _p: {"method": "repaid", "note": "table"}, value_moving=True,
        media_type="application/problem+json"),
    Row("GET", f"{M}/statements", MERCHANT, per_caller=settlement_params,
        owned=owns_statements),
    Row("GET", f"{M}/statements/{{statement_id}}", MERCHANT, per_caller=settlement_params,
        owned=owns_statement),
    Row("GET", f"{M}/statements/{{statement_id}}.csv", MERCHANT,
        per_caller=settlement_params, media_type="text/csv"),
    Row("GET", f"{M}/statements/{{statement_id}}/print", MERCHANT,
        per_caller=settlement_params, media_type="text/html"),
    # Reports (docs/reports.md): finance and admins read; each figure is checked against the
    # ledger in test_reports.py.
    Row("GET", f"{F}/reports/trial-balance", AUDITORS, query="?date=2026-11-30"),
    Row("GET", f"{F}/reports/outstanding", AUDITORS, query="?date=2026-11-30&format=csv",
        media_type="text/csv"),
    Row("GET", f"{F}/reports/breakage", AUDITORS, query="?from=2026-04-01&to=2026-11-30"),
    Row("GET", f"{F}/reports/payments-by-merchant", AUDITORS,
        query="?from=2026-04-01&to=2026-11-30"),
    Row("GET", f"{F}/reports/payments-by-month", AUDITORS,
        query="?from=2026-04-01&to=2026-11-30&format=csv", media_type="text/csv"),
    Row("GET", f"{F}/reports/budgets", AUDITORS, query="?fiscal_year=2026"),
    Row("GET", f"{F}/reports/psa-base-date", AUDITORS, query="?date=2026-09-30"),
    # The verify job queued by finance (or an admin): 202 and the run's id (test_verify_job.py).
    Row("POST", f"{F}/verify-runs", "401 403 403 403 403 202 202"),
    # Ledger exports (issue 21): finance and admins, audited.
    Row("GET", f"{F}/exports", AUDITORS, params=sealed_world,
        query="?format=jsonl&from_seq=1&to_seq=1", media_type="application/jsonl", audited=True),
]
# fmt: on

#: The principals of the world each column is tried with (every principal of that role).
PRINCIPALS: dict[str, tuple[str | None, ...]] = {
    ANONYMOUS: (None,),
    Role.RESIDENT: ("resident", "resident_self"),
    Role.MERCHANT: ("merchant_a", "merchant_b", "till_a", "till_b"),
    Role.ISSUER: ("issuer_a", "issuer_b"),
    Role.COUNTER: ("counter",),
    Role.FINANCE: ("finance",),
    Role.ADMIN: ("admin",),
}

CASES = [
    pytest.param(row, column, principal, id=f"{row.method} {row.path} as {principal or column}")
    for row in TABLE
    for column in COLUMNS
    for principal in PRINCIPALS[column]
]


def principal_is_till(principal: str | None) -> bool:
    return principal is not None and principal.startswith("till_")


def call(world: World, row: Row, actor: Actor | None) -> Any:
    params = row.per_caller(world, actor) if row.per_caller is not None else row.params(world)
    url = (row.path + row.query).format(**params)
    body = row.body(world, params) if row.body is not None else None
    headers = dict(actor.headers) if actor is not None else {}
    if row.value_moving:
        headers["Idempotency-Key"] = str(uuid.uuid4())
    if row.from_the_app:
        headers.update({"X-Points-Client": row.app_client, "Origin": "http://testserver"})
    content = row.csv(world, params) if row.csv is not None else None
    before = world.snapshot()
    if content is not None:
        headers["Content-Type"] = row.upload_type
        response = world.client.request(row.method, url, headers=headers, content=content)
    else:
        response = world.client.request(row.method, url, headers=headers, json=body)
    world.client.cookies.clear()
    return response, before


@pytest.mark.parametrize(("row", "column", "principal"), CASES)
def test_table(
    shared_world: World,
    row: Row,
    column: str,
    principal: str | None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    world = shared_world
    actor = actor_named(world, principal) if principal is not None else None
    expected = row.status_for(column)
    code = "unauthenticated" if expected == 401 else "forbidden"
    if row.till_only and column == Role.MERCHANT and not principal_is_till(principal):
        expected, code = 403, "till_required"
    if row.stream:
        # Cut short (the setting's least is a second; the world's settings object takes 0).
        monkeypatch.setattr(world.app.state.services.settings, "event_stream_seconds", 0)
    response, before = call(world, row, actor)

    if expected in (401, 403):
        body = assert_problem(response, expected)
        assert body["code"] == code
        if expected == 401:
            assert response.headers.get("www-authenticate") == "Bearer"
        assert world.snapshot() == before, "a refused call wrote something"
        return

    if expected == 404:
        # Allowed to ask, but the object is none of the caller's: a 404 naming nothing.
        assert_problem(response, 404, "not_found")
        assert world.snapshot() == before, "a call refused as not found wrote something"
        return
    assert response.status_code == expected, (response.status_code, response.text)
    payload = None
    if expected == 204:
        assert response.content == b""
    elif row.media_type != "application/json":
        assert response.headers["content-type"].startswith(row.media_type)
        payload = response.text
    else:
        assert response.headers["content-type"].startswith("application/json")
        payload = response.json()
    if row.owned is not None and actor is not None:
        row.owned(world, actor, payload)
    if row.audited:
        assert actor is not None
        assert world.audit_count() > before["audit_event"]
        event = world.last_audit()
        assert (event["actor_role"], event["actor_id"]) == (str(actor.role), actor.id)


# Every route joins the table ---------------------------------------------------------------


def api_routes(app: FastAPI) -> set[tuple[str, str]]:
    """(method, path) of every APIRoute the app serves, routers included."""
    try:  # FastAPI >= 0.16x keeps included routers as one route each; expand them.
        from fastapi.routing import iter_route_contexts

        contexts: list[Any] = list(iter_route_contexts(app.routes))
        routes = [(context.original_route, context.path) for context in contexts]
    except ImportError:  # pragma: no cover - older FastAPI lists every route flat
        routes = [(route, getattr(route, "path", None)) for route in app.routes]
    found = set()
    for route, path in routes:
        if isinstance(route, APIRoute):
            for method in route.methods:
                found.add((method, path))
    return found


def test_every_route_is_in_the_table(tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'unused.db'}")
    try:
        app = create_app(Settings(database_url=str(engine.url)), engine=engine)
        served = api_routes(app)
    finally:
        engine.dispose()
    tabled = {(row.method, row.path) for row in TABLE}
    assert len(tabled) == len(TABLE), "a route is in the table twice"
    # Guard against a walk that finds nothing (and so passes vacuously).
    assert ("GET", "/api/v1/me") in served
    assert len(served) >= 40
    missing = sorted(served - tabled)
    assert not missing, f"routes missing from the authorization TABLE: {missing}"
    stale = sorted(tabled - served)
    assert not stale, f"rows of the TABLE that name no route: {stale}"


# Credentials that must not work ---------------------------------------------------------


def test_a_revoked_token_is_refused(shared_world: World) -> None:
    world = shared_world
    auditor = world.fresh_staff(StaffRole.FINANCE)
    assert world.client.get("/api/v1/finance/ledgers", headers=auditor.headers).status_code == 200
    response = world.client.post(
        f"/api/v1/admin/tokens/{auditor.token_id}/revoke",
        headers=world.admin.headers,
        json={"reason": "leaked"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["revoked_at"] is not None
    response = world.client.get("/api/v1/finance/ledgers", headers=auditor.headers)
    assert_problem(response, 401, "unauthenticated")


def test_an_expired_token_is_refused(world: World, clock: FakeClock) -> None:
    response = world.client.post(
        "/api/v1/admin/tokens",
        headers=world.admin.headers,
        json={"role": "finance", "principal_id": world.finance.id, "lifetime_days": 1},
    )
    assert response.status_code == 201, response.text
    headers = {"Authorization": f"Bearer {response.json()['token']}"}
    clock.advance(days=1, microseconds=-1)
    assert world.client.get("/api/v1/finance/ledgers", headers=headers).status_code == 200
    clock.advance(microseconds=1)  # exactly at expires_at: no longer valid
    assert_problem(world.client.get("/api/v1/finance/ledgers", headers=headers), 401)
    # Staff tokens default to 90 days, resident tokens to 400.
    clock.advance(days=88, hours=23)
    assert world.client.get("/api/v1/me", headers=world.resident.headers).status_code == 200
    assert world.client.get("/api/v1/admin/staff", headers=world.admin.headers).status_code == 200
    clock.advance(hours=1)
    assert_problem(world.client.get("/api/v1/admin/staff", headers=world.admin.headers), 401)
    assert world.client.get("/api/v1/me", headers=world.resident.headers).status_code == 200
    clock.advance(days=310)
    body = assert_problem(world.client.get("/api/v1/me", headers=world.resident.headers), 401)
    assert body["code"] == "unauthenticated"


def test_a_disabled_staff_members_token_is_refused(shared_world: World) -> None:
    world = shared_world
    clerk = world.fresh_staff(StaffRole.COUNTER)
    path = f"/api/v1/counter/residents/{world.resident.id}"
    assert world.client.get(path, headers=clerk.headers).status_code == 200
    response = world.client.post(
        f"/api/v1/admin/staff/{clerk.id}/status",
        headers=world.admin.headers,
        json={"status": "disabled", "reason": "left the city office"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "disabled"
    assert_problem(world.client.get(path, headers=clerk.headers), 401, "unauthenticated")


def test_a_blocked_residents_token_is_refused(shared_world: World) -> None:
    world = shared_world
    resident = world.fresh_resident(with_token=True)
    assert world.client.get("/api/v1/me", headers=resident.headers).status_code == 200
    response = world.client.post(
        f"/api/v1/admin/residents/{resident.id}/status",
        headers=world.admin.headers,
        json={"status": "blocked", "reason": "fraud"},
    )
    assert response.status_code == 200, response.text
    assert_problem(world.client.get("/api/v1/me", headers=resident.headers), 401)


MALFORMED_AUTHORIZATION = [
    "",
    "Bearer",
    "Bearer ",
    "Basic YWRtaW46YWRtaW4=",
    "Token {token}",
    "{token}",
    "Bearer {token}x",
    "Bearer {token} extra",
    "Bearer kp_",
    "Bearer kp_short",
    "Bearer kp_AAAAAAAA_" + "A" * 27,
    "Bearer " + "x" * 5000,
]


def test_a_malformed_authorization_header_is_refused(shared_world: World) -> None:
    world = shared_world
    for authorization in MALFORMED_AUTHORIZATION:
        header = authorization.format(token=world.admin.token)
        response = world.client.get("/api/v1/admin/staff", headers={"Authorization": header})
        assert_problem(response, 401, "unauthenticated")
        assert world.admin.token not in response.text


def test_the_bearer_scheme_is_case_insensitive(shared_world: World) -> None:
    headers = {"Authorization": f"bearer {shared_world.admin.token}"}
    assert shared_world.client.get("/api/v1/admin/staff", headers=headers).status_code == 200


# Sensitive data and objects of other principals ----------------------------------------


def test_finance_never_sees_personal_data(shared_world: World) -> None:
    world = shared_world
    for auditor in (world.finance, world.admin):
        items = []
        cursor = ""
        while True:
            response = world.client.get(
                f"/api/v1/finance/residents?limit=200{cursor}", headers=auditor.headers
            )
            assert response.status_code == 200, response.text
            assert RESIDENT_NAME not in response.text
            assert RESIDENT_ADDRESS_NUMBER not in response.text
            page = response.json()
            items += page["items"]
            if page["next_cursor"] is None:
                break
            cursor = f"&cursor={page['next_cursor']}"
        assert {item["id"] for item in items} >= {world.resident.id, world.resident_self.id}
        for item in items:
            assert set(item) == {"id", "verification", "status", "created_at"}


def test_each_principal_sees_only_its_own_object(shared_world: World) -> None:
    world = shared_world
    client = world.client
    for name in ("merchant_a", "merchant_b"):
        actor = world.actors[name]
        # A query naming the other merchant changes nothing.
        other = world.merchants["b" if name == "merchant_a" else "a"]
        body = client.get(f"/api/v1/merchant?merchant_id={other}", headers=actor.headers).json()
        assert body["id"] == actor.merchant_id != other
    for name in ("issuer_a", "issuer_b"):
        actor = world.actors[name]
        other = world.departments["b" if name == "issuer_a" else "a"]
        body = client.get(
            f"/api/v1/issuer/department?department_id={other}", headers=actor.headers
        ).json()
        assert body["id"] == actor.department_id != other
    mine, theirs = world.resident, world.resident_self
    body = client.get(f"/api/v1/me?resident_id={theirs.id}", headers=mine.headers).json()
    assert body["id"] == mine.id
    body = client.get("/api/v1/me", headers=theirs.headers).json()
    assert body["id"] == theirs.id
    assert body["name"] is None
    # Another resident's record is behind the counter and admin roles only.
    for path in (
        f"/api/v1/counter/residents/{mine.id}",
        f"/api/v1/admin/residents/{mine.id}",
        f"/api/v1/me/{mine.id}",
    ):
        response = client.get(path, headers=theirs.headers)
        assert response.status_code in (403, 404), (path, response.status_code)
        assert RESIDENT_NAME not in response.text


def test_staff_of_a_suspended_merchant_still_see_only_their_merchant(shared_world: World) -> None:
    """A status change does not widen access: a suspended merchant's staff see that merchant
    only."""
    world = shared_world
    clerk = world.fresh_staff(StaffRole.MERCHANT, merchant_id=world.fresh_merchant())
    response = world.client.post(
        f"/api/v1/admin/merchants/{clerk.merchant_id}/status",
        headers=world.admin.headers,
        json={"status": "suspended", "reason": "inspection"},
    )
    assert response.status_code == 200, response.text
    body = world.client.get("/api/v1/merchant", headers=clerk.headers).json()
    assert (body["id"], body["status"]) == (clerk.merchant_id, "suspended")


def test_staff_and_tills_of_a_closed_merchant_are_shut_out(shared_world: World) -> None:
    """A closed shop's tokens (its staff's and its tills') are refused at authentication
    (issue 17: ``redemption.merchants``, ``points.access.authenticate``)."""
    world = shared_world
    shop = open_shop(world)
    clerk = world.fresh_staff(StaffRole.MERCHANT, merchant_id=shop.merchant_id)
    for actor in (clerk, shop.till):
        assert world.client.get("/api/v1/merchant", headers=actor.headers).status_code == 200
    response = world.client.post(
        f"/api/v1/admin/merchants/{shop.merchant_id}/status",
        headers=world.admin.headers,
        json={"status": "closed", "reason": "moved away"},
    )
    assert response.status_code == 200, response.text
    before = world.snapshot()
    for actor in (clerk, shop.till):
        for method, path in (("GET", "/api/v1/merchant"), ("GET", "/api/v1/merchant/payments")):
            response = world.client.request(method, path, headers=actor.headers)
            assert_problem(response, 401, "unauthenticated")
        made = world.client.post(
            "/api/v1/merchant/payment-requests", json={"amount": 1}, headers=actor.headers
        )
        assert_problem(made, 401, "unauthenticated")
    assert world.snapshot() == before
    # The other shops' staff are not affected.
    assert (
        world.client.get("/api/v1/merchant", headers=world.actors["merchant_a"].headers).json()[
            "id"
        ]
        == world.merchants["a"]
    )


def test_counter_cannot_revoke_staff_tokens(shared_world: World) -> None:
    """The counter's "lost phone" revocation is for residents only, not for other staff."""
    world = shared_world
    before = world.snapshot()
    response = world.client.post(
        f"/api/v1/counter/residents/{world.admin.id}/revoke-tokens",
        headers=world.counter.headers,
        json={"reason": "not mine to revoke"},
    )
    assert_problem(response, 404, "not_found")
    assert world.snapshot() == before
    assert world.client.get("/api/v1/admin/staff", headers=world.admin.headers).status_code == 200


def test_tokens_are_bound_to_the_principals_role(shared_world: World) -> None:
    """No token of one role can be had for a principal of another role."""
    world = shared_world
    before = world.snapshot()
    for role, status, code in (
        ("admin", 422, "validation_error"),
        ("finance", 422, "validation_error"),
        ("resident", 404, "not_found"),
    ):
        response = world.client.post(
            "/api/v1/admin/tokens",
            headers=world.admin.headers,
            json={"role": role, "principal_id": world.counter.id},
        )
        assert_problem(response, status, code)
    response = world.client.post(
        "/api/v1/admin/tokens",
        headers=world.admin.headers,
        json={"role": "counter", "principal_id": world.resident.id},
    )
    assert_problem(response, 404, "not_found")
    assert world.snapshot() == before
