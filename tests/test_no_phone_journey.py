"""Issue 19's "done when", through the API alone, on SQLite and PostgreSQL: a resident without a
phone is registered at the counter, gets a card and a PIN, is awarded points by a department,
pays a shop with the card and PIN, exchanges an eco bag at the city counter, loses the card and
gets a new one with the balance intact. And the card's limits of the day hold when the payments
come at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from api_world import FISCAL_YEAR, POINT_TYPE_CODE, World, assert_problem, open_world, unique
from concurrency import run_together
from conftest import FakeClock
from fastapi.testclient import TestClient
from payment_helpers import ensure_signing_key, key, open_shop
from sqlalchemy.engine import Engine
from test_catalog import add_item, open_counter

import ledger
from ledger import Ledger

PIN = "4826"
NEW_PIN = "7391"


@pytest.fixture
def engine(database_url: str, backend: str) -> Iterator[Engine]:
    built = ledger.create_engine(database_url, pool_size=10, max_overflow=30)
    yield built
    built.dispose()


@pytest.fixture
def world(engine: Engine, clock: FakeClock, database_url: str) -> Iterator[World]:
    with open_world(engine, clock, database_url, record_verify_run=False) as built:
        yield built


def wallet_balance(world: World, resident_id: str) -> int:
    """The balance as counter staff see it (the resident has no phone, so no wallet token)."""
    seen = world.client.get(
        f"/api/v1/counter/residents/{resident_id}/wallets/{POINT_TYPE_CODE}",
        headers=world.counter.headers,
    )
    if seen.status_code == 200:
        return int(seen.json()["balance"])
    # Without a counter wallet route, the ledger's own figure.
    with world.engine.connect() as connection:
        from sqlalchemy import text

        return int(
            connection.execute(
                text(
                    "SELECT COALESCE(SUM(amount), 0) FROM wallet_bucket b JOIN wallet w "
                    "ON w.id = b.wallet_id WHERE w.resident_id = :id"
                ),
                {"id": resident_id},
            ).scalar_one()
        )


def card_pay(world: World, headers: dict[str, str], card: dict[str, Any], amount: int, **extra: Any) -> Any:
    return world.client.post(
        "/api/v1/merchant/card-payments",
        json={"card_number": card["number"], "pin": PIN, "amount": amount, **extra},
        headers={**headers, **key("card")},
    )


def test_a_resident_without_a_phone_from_registration_to_a_new_card(world: World) -> None:
    ensure_signing_key(world)
    counter_staff = world.counter.headers
    # Registered at the counter, identity checked.
    registered = world.client.post(
        "/api/v1/counter/residents",
        json={
            "name": "狛江 ハル",
            "address_number": "7012345678",
            "birth_year": 1941,
            "verified": True,
        },
        headers=counter_staff,
    )
    assert registered.status_code == 201, registered.text
    resident_id = registered.json()["id"]

    # A card and a PIN she chose (her birth year is refused as too easy).
    issue_url = f"/api/v1/counter/residents/{resident_id}/cards"
    assert_problem(
        world.client.post(issue_url, json={"pin": "1941"}, headers=counter_staff),
        422,
        "pin_invalid",
    )
    issued = world.client.post(issue_url, json={"pin": PIN}, headers=counter_staff)
    assert issued.status_code == 201, issued.text
    card = issued.json()

    # A department awards her points for a health checkup.
    program = world.fresh_program("a", amount=3_000, budget={FISCAL_YEAR: 100_000})
    issuer = world.actors["issuer_a"]
    awarded = world.client.post(
        f"/api/v1/issuer/programs/{program}/awards",
        json={"resident_id": resident_id, "record_id": unique("checkup")},
        headers={**issuer.headers, **key("award")},
    )
    assert awarded.status_code == 201, awarded.text
    assert wallet_balance(world, resident_id) == 3_000

    # She pays the bakery with the card and PIN (a wrong PIN first).
    bakery = open_shop(world, till_name="パン屋のレジ")
    wrong = world.client.post(
        "/api/v1/merchant/card-payments",
        json={"card_qr": card["qr"], "pin": "0852", "amount": 800},
        headers={**bakery.headers, **key("card")},
    )
    assert_problem(wrong, 422, "pin_incorrect")
    paid = card_pay(world, bakery.headers, card, 800)
    assert paid.status_code == 201, paid.text
    assert paid.json()["receipt"]["balance"] == 2_200

    # She exchanges an eco bag at the city counter, with the card and PIN.
    counter = open_counter(world)
    bag = add_item(world, counter, points=500, stock=10)
    exchanged = world.client.post(
        "/api/v1/merchant/card-exchanges",
        json={"card_number": card["number"], "pin": PIN, "item_id": bag["id"]},
        headers={**counter.headers, **key("exchange")},
    )
    assert exchanged.status_code == 201, exchanged.text
    assert exchanged.json()["receipt"]["balance"] == 1_700
    receipt = world.client.get(exchanged.json()["receipt_url"], headers=counter.headers)
    assert receipt.status_code == 200 and "エコバッグ" in receipt.text

    # She loses the card: blocked, then reissued with a new PIN; the balance is intact.
    blocked = world.client.post(
        f"/api/v1/counter/cards/{card['id']}/block",
        json={"reason": "紛失の届け出"},
        headers=counter_staff,
    )
    assert blocked.status_code == 200, blocked.text
    assert_problem(card_pay(world, bakery.headers, card, 100), 409, "card_blocked")
    reissued = world.client.post(
        f"/api/v1/counter/cards/{card['id']}/reissue",
        json={"reason": "紛失による再発行", "pin": NEW_PIN},
        headers=counter_staff,
    )
    assert reissued.status_code == 201, reissued.text
    new_card = reissued.json()
    assert new_card["number"] != card["number"] and new_card["replaces"] == card["id"]
    assert wallet_balance(world, resident_id) == 1_700
    again = world.client.post(
        "/api/v1/merchant/card-payments",
        json={"card_qr": new_card["qr"], "pin": NEW_PIN, "amount": 700},
        headers={**bakery.headers, **key("card")},
    )
    assert again.status_code == 201, again.text
    assert again.json()["receipt"]["balance"] == 1_000
    assert_problem(card_pay(world, bakery.headers, card, 100), 409, "card_blocked")

    report = Ledger(world.engine, clock=world.clock)
    report.seal()
    assert report.verify().ok


def test_a_cards_day_limits_hold_when_its_payments_come_at_once(world: World) -> None:
    """12 payments of 1,000 pt at once across 4 shops: the day's 10,000 pt and 3 a shop hold."""
    ensure_signing_key(world)
    resident = world.fresh_resident()
    program = world.fresh_program("a", amount=20_000, budget={FISCAL_YEAR: 100_000})
    issuer = world.actors["issuer_a"]
    awarded = world.client.post(
        f"/api/v1/issuer/programs/{program}/awards",
        json={"resident_id": resident.id, "record_id": unique("grant")},
        headers={**issuer.headers, **key("award")},
    )
    assert awarded.status_code == 201, awarded.text
    issued = world.client.post(
        f"/api/v1/counter/residents/{resident.id}/cards",
        json={"pin": PIN},
        headers=world.counter.headers,
    )
    card = issued.json()
    shops = [open_shop(world) for _ in range(4)]
    racers = [shops[n % 4] for n in range(16)]  # 4 tries per shop, 16 in all
    clients = [TestClient(world.app, raise_server_exceptions=False) for _ in racers]

    def attempt(client: TestClient, headers: dict[str, str]) -> Any:
        return client.post(
            "/api/v1/merchant/card-payments",
            json={"card_number": card["number"], "pin": PIN, "amount": 1_000},
            headers={**headers, **key("race")},
        )

    try:
        outcomes = run_together(
            [
                (lambda c=client, s=shop: attempt(c, s.headers))
                for client, shop in zip(clients, racers, strict=True)
            ]
        )
    finally:
        for client in clients:
            client.close()
    assert all(status == "ok" for status, _ in outcomes), outcomes[:3]
    replies = [reply for _, reply in outcomes]
    assert all(reply.status_code < 500 for reply in replies), [r.text for r in replies][:3]
    paid = [reply for reply in replies if reply.status_code == 201]
    refused = {reply.json()["code"] for reply in replies if reply.status_code != 201}
    # At most 3 a shop (12 of 16 can pass that rule), at most 10 of 1,000 pt in the day.
    assert len(paid) == 10, [reply.text for reply in replies if reply.status_code != 201][:3]
    assert refused <= {"card_daily_limit_exceeded", "card_shop_limit_exceeded"}
    per_shop: dict[str, int] = {}
    for reply in paid:
        per_shop[reply.json()["merchant_id"]] = per_shop.get(reply.json()["merchant_id"], 0) + 1
    assert max(per_shop.values()) <= 3
    assert wallet_balance(world, resident.id) == 10_000
