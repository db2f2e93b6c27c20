"""The goods-exchange catalog through the API, on SQLite and PostgreSQL (issue 19 part 6): a
city counter's items and stock kept by admins, exchanges in the wallet app and with a card and
PIN at a counter till, each refusal (out of stock, outside the window, retired, beyond the
limit per resident and fiscal year, too few points) leaving the stock, the allowance and the
ledger as they were, the receipt, and 50 residents exchanging the last 10 bags at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from api_world import POINT_TYPE_CODE, Actor, World, assert_problem, open_world
from concurrency import run_together
from conftest import FakeClock
from fastapi.testclient import TestClient
from payment_helpers import (
    Shop,
    balance,
    funded_resident,
    funded_residents,
    key,
    open_shop,
)
from sqlalchemy.engine import Engine

import ledger
from points.calendar import tokyo_date

PIN = "4826"
ITEMS = "/api/v1/admin/catalog-items"
EXCHANGES = "/api/v1/me/exchanges"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


@pytest.fixture
def engine(database_url: str, backend: str) -> Iterator[Engine]:
    """A pool with room for the race's 50 residents."""
    built = ledger.create_engine(database_url, pool_size=10, max_overflow=60)
    yield built
    built.dispose()


@pytest.fixture
def world(engine: Engine, clock: FakeClock, database_url: str) -> Iterator[World]:
    with open_world(engine, clock, database_url, record_verify_run=False) as built:
        yield built


def open_counter(world: World) -> Shop:
    """A city counter (a merchant of kind ``counter``) with a till, taking the world's type."""
    made = world.client.post(
        "/api/v1/admin/merchants",
        json={
            "name_ja": "市役所 交換窓口",
            "name_en": "City hall exchange counter",
            "category": "city",
            "kind": "counter",
        },
        headers=world.admin.headers,
    )
    assert made.status_code == 201, made.text
    assert made.json()["kind"] == "counter"
    return open_shop(world, made.json()["id"], till_name="窓口1")


def add_item(world: World, counter: Shop, **fields: Any) -> dict[str, Any]:
    body = {
        "merchant_id": counter.merchant_id,
        "point_type": POINT_TYPE_CODE,
        "name_ja": "コーヒー麻袋のエコバッグ",
        "name_en": "Eco bag sewn from a coffee sack",
        "points": 500,
        "stock": 10,
        **fields,
    }
    made = world.client.post(ITEMS, json=body, headers=world.admin.headers)
    assert made.status_code == 201, made.text
    return dict(made.json())


def exchange(
    world: World,
    resident: Actor,
    item: dict[str, Any],
    quantity: int = 1,
    *,
    client: TestClient | None = None,
) -> Any:
    return (client or world.client).post(
        EXCHANGES,
        json={"item_id": item["id"], "quantity": quantity},
        headers={**resident.headers, **key("exchange")},
    )


def stock(world: World, item: dict[str, Any]) -> int:
    with world.engine.connect() as connection:
        return int(
            connection.execute(
                sa.text("SELECT stock FROM catalog_item WHERE id = :id"), {"id": item["id"]}
            ).scalar_one()
        )


def issue_card(world: World, resident_id: str) -> dict[str, Any]:
    made = world.client.post(
        f"/api/v1/counter/residents/{resident_id}/cards",
        json={"pin": PIN},
        headers=world.counter.headers,
    )
    assert made.status_code == 201, made.text
    return dict(made.json())


# Admins keep the catalog ----------------------------------------------------------------------


def test_an_admin_adds_an_item_to_a_counter_and_never_to_a_shop(world: World) -> None:
    counter = open_counter(world)
    item = add_item(world, counter, per_resident_limit=2)
    assert (item["points"], item["stock"], item["per_resident_limit"]) == (500, 10, 2)
    assert item["status"] == "active" and item["image_url"] is None
    audit = world.last_audit()
    assert (audit["action"], audit["object_id"]) == ("catalog.item.create", item["id"])

    shop = open_shop(world)
    before = world.snapshot()
    refused = world.client.post(
        ITEMS,
        json={
            "merchant_id": shop.merchant_id,
            "point_type": POINT_TYPE_CODE,
            "name_ja": "袋",
            "name_en": "Bag",
            "points": 100,
            "stock": 1,
        },
        headers=world.admin.headers,
    )
    assert_problem(refused, 422, "not_a_counter")
    assert world.snapshot() == before
    listed = world.client.get(ITEMS, headers=world.admin.headers)
    assert [row["id"] for row in listed.json()] == [item["id"]]
    for role in (world.counter, world.finance):
        assert_problem(world.client.get(ITEMS, headers=role.headers), 403)


def test_stock_changes_carry_their_reason_and_never_go_below_zero(world: World) -> None:
    counter = open_counter(world)
    item = add_item(world, counter, stock=3)
    url = f"{ITEMS}/{item['id']}/stock-changes"
    added = world.client.post(
        url, json={"delta": 20, "reason": "納品 20枚"}, headers=world.admin.headers
    )
    assert added.status_code == 201, added.text
    assert added.json()["stock"] == 23
    taken = world.client.post(
        url, json={"delta": -2, "reason": "汚れ 2枚"}, headers=world.admin.headers
    )
    assert taken.json()["stock"] == 21
    before = world.snapshot()
    assert_problem(
        world.client.post(url, json={"delta": -22, "reason": "棚卸"}, headers=world.admin.headers),
        422,
        "stock_below_zero",
    )
    for bad in ({"delta": 0, "reason": "x"}, {"delta": 1}, {"delta": "1", "reason": "x"}):
        assert_problem(world.client.post(url, json=bad, headers=world.admin.headers), 422)
    assert world.snapshot() == before
    history = world.client.get(url, headers=world.admin.headers).json()
    assert [(row["delta"], row["stock_after"], row["reason"]) for row in history] == [
        (20, 23, "納品 20枚"),
        (-2, 21, "汚れ 2枚"),
    ]
    audit = world.last_audit()
    assert (audit["action"], audit["object_id"]) == ("catalog.stock.adjust", item["id"])


def test_an_items_picture_is_checked_by_its_bytes(world: World) -> None:
    counter = open_counter(world)
    item = add_item(world, counter)
    url = f"{ITEMS}/{item['id']}/image"
    headers = {**world.admin.headers, "Content-Type": "image/png"}
    assert_problem(
        world.client.put(url, content=b"GIF89a....", headers=headers), 422, "image_invalid"
    )
    assert_problem(
        world.client.put(url, content=b"\x89PNG\r\n\x1a\n" + b"\0" * 300_000, headers=headers),
        422,
        "image_invalid",
    )
    put = world.client.put(url, content=PNG, headers=headers)
    assert put.status_code == 200, put.text
    shown = world.client.get(put.json()["image_url"])
    assert shown.status_code == 200
    assert (shown.headers["content-type"], shown.content) == ("image/png", PNG)
    assert_problem(world.client.get("/api/v1/catalog/items/itm_missing/image"), 404)


# Exchanging in the wallet ---------------------------------------------------------------------


def test_a_resident_exchanges_an_eco_bag_in_the_wallet(world: World) -> None:
    counter = open_counter(world)
    item = add_item(world, counter)
    resident = funded_resident(world, 1_200)
    offered = world.client.get("/api/v1/me/catalog", headers=resident.headers)
    assert [row["id"] for row in offered.json()] == [item["id"]]

    done = exchange(world, resident, item, 2)
    assert done.status_code == 201, done.text
    body = done.json()
    assert (body["quantity"], body["points"], body["channel"]) == (2, 1_000, "wallet")
    payment = body["payment"]
    assert (payment["flow"], payment["amount"], payment["state"]) == ("exchange", 1_000, "posted")
    assert payment["till_id"] is None and payment["merchant_id"] == counter.merchant_id
    assert balance(world, resident) == 200 and stock(world, item) == 8

    receipt = world.client.get(body["receipt_url"], headers=resident.headers)
    assert receipt.status_code == 200
    assert receipt.headers["content-type"].startswith("text/html")
    assert "コーヒー麻袋のエコバッグ" in receipt.text and "1,000" in receipt.text
    assert "<script" not in receipt.text
    other = funded_resident(world, 0)
    assert_problem(world.client.get(body["receipt_url"], headers=other.headers), 404)
    listed = world.client.get(EXCHANGES, headers=resident.headers).json()
    assert [(row["id"], row["quantity"], row["points"]) for row in listed] == [
        (body["id"], 2, 1_000)
    ]
    assert world.client.get(EXCHANGES, headers=other.headers).json() == []

    # The counter sees it among its payments; the resident among theirs.
    mine = world.client.get("/api/v1/me/payments", headers=resident.headers).json()["items"]
    assert mine[0]["id"] == payment["id"] and mine[0]["till_name"] is None
    shop_list = world.client.get(
        f"/api/v1/merchant/payments/{payment['id']}", headers=counter.headers
    )
    assert shop_list.status_code == 200, shop_list.text


def test_refusals_leave_the_stock_the_allowance_and_the_ledger_alone(world: World) -> None:
    counter = open_counter(world)
    now = world.now()
    limited = add_item(world, counter, per_resident_limit=1, stock=5)
    later = add_item(world, counter, available_from=(now + timedelta(days=3)).isoformat())
    over = add_item(
        world,
        counter,
        available_from=(now - timedelta(days=10)).isoformat(),
        available_until=(now - timedelta(days=1)).isoformat(),
    )
    empty = add_item(world, counter, stock=0)
    dear = add_item(world, counter, points=5_000)
    resident = funded_resident(world, 2_000)
    assert exchange(world, resident, limited).status_code == 201

    before = world.snapshot()
    refusals = [
        (exchange(world, resident, limited), 409, "exchange_limit_exceeded"),
        (exchange(world, resident, later), 409, "item_not_available"),
        (exchange(world, resident, over), 409, "item_not_available"),
        (exchange(world, resident, empty), 409, "out_of_stock"),
        (exchange(world, resident, dear), 409, "insufficient_balance"),
        (exchange(world, resident, limited, 11), 422, None),
    ]
    for response, status, code in refusals:
        assert_problem(response, status, code)
    assert refusals[0][0].json()["left"] == 0
    assert refusals[3][0].json()["in_stock"] == 0
    assert world.snapshot() == before
    assert stock(world, limited) == 4 and stock(world, dear) == 10
    assert balance(world, resident) == 1_500

    retired = world.client.patch(
        f"{ITEMS}/{dear['id']}", json={"status": "retired"}, headers=world.admin.headers
    )
    assert retired.status_code == 200, retired.text
    assert_problem(exchange(world, resident, dear), 409, "item_not_available")
    offered = world.client.get("/api/v1/me/catalog", headers=resident.headers).json()
    assert {row["id"] for row in offered} == {limited["id"], empty["id"]}

    # The limit is per fiscal year: a new year, a new allowance.
    today = tokyo_date(world.now())
    next_april = date(today.year + (today.month >= 4), 4, 1)
    world.clock.advance(days=(next_april - today).days)
    assert exchange(world, resident, limited).status_code == 201


def test_a_counter_till_exchanges_with_a_card_and_pin(world: World) -> None:
    counter = open_counter(world)
    item = add_item(world, counter, points=300)
    resident = funded_resident(world, 1_000)
    card = issue_card(world, resident.id)
    url = "/api/v1/merchant/card-exchanges"
    headers = {**counter.headers, **key("card-exchange")}
    body = {"card_qr": card["qr"], "item_id": item["id"]}
    wrong = world.client.post(url, json={**body, "pin": "9157"}, headers=headers)
    assert_problem(wrong, 422, "pin_incorrect")
    assert stock(world, item) == 10 and balance(world, resident) == 1_000
    done = world.client.post(url, json={**body, "pin": PIN}, headers=headers)
    assert done.status_code == 201, done.text
    answer = done.json()
    assert (answer["channel"], answer["payment"]["flow"]) == ("card", "card")
    assert answer["receipt"]["balance"] == 700 and answer["receipt"]["card_last4"] == card["last4"]
    assert PIN not in done.text
    assert stock(world, item) == 9
    printed = world.client.get(answer["receipt_url"], headers=counter.headers)
    assert printed.status_code == 200 and "エコバッグ" in printed.text

    # A shop's till cannot exchange the counter's goods.
    shop = open_shop(world)
    assert_problem(
        world.client.post(url, json={**body, "pin": PIN}, headers={**shop.headers, **key()}),
        404,
    )


# The race -------------------------------------------------------------------------------------


def test_fifty_residents_exchanging_the_last_ten_bags_get_exactly_ten(world: World) -> None:
    counter = open_counter(world)
    item = add_item(world, counter, stock=10)
    residents = funded_residents(world, 50, 1_000)
    clients = [TestClient(world.app, raise_server_exceptions=False) for _ in residents]
    try:
        outcomes = run_together(
            [
                (lambda c=client, r=resident: exchange(world, r, item, client=c))
                for client, resident in zip(clients, residents, strict=True)
            ]
        )
    finally:
        for client in clients:
            client.close()
    assert all(status == "ok" for status, _ in outcomes), outcomes[:3]
    replies = [reply for _, reply in outcomes]
    statuses = sorted(reply.status_code for reply in replies)
    assert statuses == [201] * 10 + [409] * 40, [r.text for r in replies if r.status_code >= 500]
    assert {reply.json()["code"] for reply in replies if reply.status_code == 409} == {
        "out_of_stock"
    }
    assert stock(world, item) == 0
    with world.engine.connect() as connection:
        exchanged = connection.execute(
            sa.text("SELECT COUNT(*), SUM(points) FROM exchange WHERE item_id = :id"),
            {"id": item["id"]},
        ).one()
    assert tuple(exchanged) == (10, 5_000)
    paid = sorted(balance(world, resident) for resident in residents)
    assert paid == [500] * 10 + [1_000] * 40


def test_counter_staff_exchange_for_a_resident_only_with_the_pin(world: World) -> None:
    counter = open_counter(world)
    item = add_item(world, counter, points=400, per_resident_limit=1)
    resident = funded_resident(world, 1_000)
    card = issue_card(world, resident.id)
    # Counter staff read what the resident may choose (the wallet's list).
    offered = world.client.get("/api/v1/counter/catalog", headers=world.counter.headers)
    assert offered.status_code == 200, offered.text
    assert [(row["id"], row["stock"]) for row in offered.json()] == [(item["id"], 10)]
    assert_problem(world.client.get("/api/v1/counter/catalog", headers=world.finance.headers), 403)
    url = "/api/v1/counter/assisted-exchanges"
    body = {
        "card_number": card["number"],
        "item_id": item["id"],
        "reason": "スマホなし・窓口で交換",
    }
    headers = {**world.counter.headers, **key("assisted")}

    before = world.snapshot()
    wrong = world.client.post(url, json={**body, "pin": "9157"}, headers=headers)
    assert_problem(wrong, 422, "pin_incorrect")
    after = world.snapshot()
    assert {t: n for t, n in after.items() if n != before[t]} == {
        "pin_attempt": before["pin_attempt"] + 1
    }
    assert_problem(
        world.client.post(url, json={**body, "pin": PIN, "reason": " "}, headers=headers), 422
    )

    done = world.client.post(url, json={**body, "pin": PIN}, headers=headers)
    assert done.status_code == 201, done.text
    answer = done.json()
    assert (answer["channel"], answer["payment"]["flow"]) == ("assisted", "card")
    assert answer["payment"]["till_id"] is None
    assert answer["receipt"]["balance"] == 600 and PIN not in done.text
    assert stock(world, item) == 9
    audit = world.last_audit()
    assert (audit["action"], audit["actor_id"]) == ("card.assisted_payment", world.counter.id)
    printed = world.client.get(answer["receipt_url"], headers=world.counter.headers)
    assert printed.status_code == 200 and "エコバッグ" in printed.text
    # The limit per resident holds here as in the wallet.
    again = world.client.post(url, json={**body, "pin": PIN}, headers={**headers, **key()})
    assert_problem(again, 409, "exchange_limit_exceeded")
    assert stock(world, item) == 9 and balance(world, resident) == 600
