"""Residents' cards with a PIN through the API, on SQLite and PostgreSQL (issue 19 parts 1, 3
and 4): issuing, paying at a till by QR or number, the receipt, wrong PINs and the lock, the
till's hourly limit, blocking and reissuing with the balance intact, the day's limits, PIN
changes, and that no PIN is ever stored, answered or fingerprinted in the clear.

The races send their requests from threads released together (``concurrency.run_together``),
each with a ``TestClient`` of its own: 20 wrong PINs at once on one card compare exactly 5;
20 wrong PINs at once on one till across 20 cards compare exactly 10.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from api_world import POINT_TYPE_CODE, Actor, World, assert_problem, open_world
from concurrency import run_together
from conftest import FakeClock
from fastapi.testclient import TestClient
from payment_helpers import Shop, balance, ensure_signing_key, funded_resident, key, open_shop
from sqlalchemy.engine import Engine
from sqlmodel import select

import ledger
from points.idempotency import IdempotencyRecord, request_hash
from points.jobs import run_job
from points.registry import StaffRole
from redemption import cards
from redemption.cards import Card, PinAttempt

PIN = "4826"
CARD_PAYMENTS = "/api/v1/merchant/card-payments"


@pytest.fixture
def engine(database_url: str, backend: str) -> Iterator[Engine]:
    """A pool with room for the races' racers."""
    built = ledger.create_engine(database_url, pool_size=10, max_overflow=40)
    yield built
    built.dispose()


@pytest.fixture
def world(engine: Engine, clock: FakeClock, database_url: str) -> Iterator[World]:
    with open_world(engine, clock, database_url, record_verify_run=False) as built:
        yield built


def issue(world: World, resident_id: str, pin: str = PIN) -> dict[str, Any]:
    ensure_signing_key(world)  # and the PIN pepper beside the keys
    made = world.client.post(
        f"/api/v1/counter/residents/{resident_id}/cards",
        json={"pin": pin},
        headers=world.counter.headers,
    )
    assert made.status_code == 201, made.text
    return dict(made.json())


def card_pay(
    world: World,
    shop: Shop,
    card: dict[str, Any],
    amount: int,
    pin: str = PIN,
    *,
    by: str = "qr",
    client: TestClient | None = None,
    headers: dict[str, str] | None = None,
) -> Any:
    named = {"card_qr": card["qr"]} if by == "qr" else {"card_number": card["number"]}
    return (client or world.client).post(
        CARD_PAYMENTS,
        json={**named, "pin": pin, "amount": amount},
        headers=headers or {**shop.headers, **key("card")},
    )


def attempts(world: World, card_id: str) -> list[str]:
    return world.read(
        lambda session: [
            row.outcome
            for row in session.exec(select(PinAttempt).where(PinAttempt.card_id == card_id))
        ]
    )


def last_audit_reason(world: World) -> tuple[str, str]:
    with world.engine.connect() as connection:
        row = connection.execute(
            sa.text("SELECT action, reason FROM audit_event ORDER BY sequence DESC LIMIT 1")
        ).one()
    return str(row[0]), str(row[1])


def card_row(world: World, card_id: str) -> Card:
    return world.read(lambda session: cards.get_card(session, card_id))


# Issuing and paying ---------------------------------------------------------------------------


def test_a_resident_without_a_phone_gets_a_card_and_pays_a_shop(world: World) -> None:
    resident = funded_resident(world, 3_000)
    shop = open_shop(world)
    card = issue(world, resident.id)
    assert card["status"] == "active" and card["pin_attempts_left"] == 5
    digits = card["number"].replace(" ", "")
    assert len(digits) == 16 and digits == cards.normalize_card_number(card["number"])
    assert card["last4"] == digits[-4:]
    assert "/Q/" in card["qr"] and not {"pin", "pin_hash"} & set(card)
    audit = world.last_audit()
    assert (audit["action"], audit["object_id"]) == ("card.issue", card["id"])
    assert PIN not in json.dumps(audit)

    paid = card_pay(world, shop, card, 1_200)
    assert paid.status_code == 201, paid.text
    body = paid.json()
    assert (body["flow"], body["amount"], body["state"]) == ("card", 1_200, "posted")
    assert body["receipt"]["card_last4"] == card["last4"]
    assert body["receipt"]["balance"] == 1_800 == balance(world, resident)
    assert body["receipt"]["nearest_expiry"]["amount"] == 1_800
    assert PIN not in paid.text

    typed = card_pay(world, shop, card, 300, by="number")
    assert typed.status_code == 201, typed.text
    assert typed.json()["receipt"]["balance"] == 1_500
    assert attempts(world, card["id"]) == ["correct", "correct"]


def test_a_card_is_issued_only_to_a_verified_resident_once(world: World) -> None:
    unverified = world.fresh_resident(verified=False)
    refused = world.client.post(
        f"/api/v1/counter/residents/{unverified.id}/cards",
        json={"pin": PIN},
        headers=world.counter.headers,
    )
    assert_problem(refused, 422, "validation_error")
    resident = world.fresh_resident()
    issue(world, resident.id)
    again = world.client.post(
        f"/api/v1/counter/residents/{resident.id}/cards",
        json={"pin": PIN},
        headers=world.counter.headers,
    )
    assert_problem(again, 409, "card_exists")
    listed = world.client.get(
        f"/api/v1/counter/residents/{resident.id}/cards", headers=world.counter.headers
    )
    assert [c["status"] for c in listed.json()] == ["active"]


@pytest.mark.parametrize(
    "pin",
    [
        "0000",
        "1111",
        "1234",
        "4321",
        "123456",
        "987654",
        "1212",
        "121212",
        "123123",
        "1980",
        "8080",
        "2580",
        "123",
        "1234567",
        "12a4",
        "١٢٣٤",
        "",
    ],
)
def test_trivial_and_malformed_pins_are_refused(world: World, pin: str) -> None:
    resident = world.fresh_resident()  # born in 1980
    ensure_signing_key(world)
    before = world.audit_count()
    refused = world.client.post(
        f"/api/v1/counter/residents/{resident.id}/cards",
        json={"pin": pin},
        headers=world.counter.headers,
    )
    body = assert_problem(refused, 422, "pin_invalid")
    assert pin not in json.dumps({k: v for k, v in body.items() if k != "request_id"}) or not pin
    assert world.audit_count() == before


def test_card_numbers_are_checked_before_any_lookup(world: World) -> None:
    resident = funded_resident(world, 1_000)
    shop = open_shop(world)
    card = issue(world, resident.id)
    digits = card["number"].replace(" ", "")
    wrong_digit = digits[:-1] + str((int(digits[-1]) + 1) % 10)
    for number, status, code in (
        (wrong_digit, 422, "card_number_invalid"),
        (digits[:15], 422, "card_number_invalid"),
        ("abcd" * 4, 422, "card_number_invalid"),
        (cards.new_card_number(), 404, "not_found"),
    ):
        refused = world.client.post(
            CARD_PAYMENTS,
            json={"card_number": number, "pin": PIN, "amount": 100},
            headers={**shop.headers, **key()},
        )
        assert_problem(refused, status, code)
    both = world.client.post(
        CARD_PAYMENTS,
        json={"card_number": digits, "card_qr": card["qr"], "pin": PIN, "amount": 100},
        headers={**shop.headers, **key()},
    )
    assert_problem(both, 422, "validation_error")
    assert attempts(world, card["id"]) == [] and balance(world, resident) == 1_000
    found = world.client.post(
        "/api/v1/counter/cards/find",
        json={"card_number": "-".join(digits[i : i + 4] for i in range(0, 16, 4))},
        headers=world.counter.headers,
    )
    assert found.status_code == 200 and found.json()["id"] == card["id"]


# Wrong PINs -----------------------------------------------------------------------------------


def test_five_wrong_pins_lock_the_card_until_the_counter_unlocks_it(world: World) -> None:
    resident = funded_resident(world, 1_000)
    shop = open_shop(world)
    card = issue(world, resident.id)
    for left in (4, 3, 2, 1, 0):
        wrong = card_pay(world, shop, card, 100, pin="9157")
        body = assert_problem(wrong, 422, "pin_incorrect")
        assert body["attempts_left"] == left and "9157" not in wrong.text
    locked = card_pay(world, shop, card, 100)
    assert_problem(locked, 409, "card_locked")
    assert attempts(world, card["id"]) == ["wrong"] * 5
    assert balance(world, resident) == 1_000
    unlocked = world.client.post(
        f"/api/v1/counter/cards/{card['id']}/unlock",
        json={"reason": "identity checked: health insurance card"},
        headers=world.counter.headers,
    )
    assert unlocked.status_code == 200 and unlocked.json()["pin_attempts_left"] == 5
    assert world.last_audit()["action"] == "card.unlock"
    assert card_pay(world, shop, card, 100).status_code == 201


def test_a_correct_pin_starts_the_count_again(world: World) -> None:
    resident = funded_resident(world, 1_000)
    shop = open_shop(world)
    card = issue(world, resident.id)
    for _ in range(4):
        assert_problem(card_pay(world, shop, card, 100, pin="9157"), 422, "pin_incorrect")
    assert card_pay(world, shop, card, 100).status_code == 201
    assert card_row(world, card["id"]).pin_attempts == 0
    body = assert_problem(card_pay(world, shop, card, 100, pin="9157"), 422, "pin_incorrect")
    assert body["attempts_left"] == 4


def test_only_a_till_takes_a_card_payment_and_other_staff_spend_no_attempt(world: World) -> None:
    resident = funded_resident(world, 1_000)
    shop = open_shop(world)
    card = issue(world, resident.id)
    clerk = world.fresh_staff(StaffRole.MERCHANT, merchant_id=shop.merchant_id)
    refused = card_pay(world, shop, card, 100, pin="9157", headers={**clerk.headers, **key()})
    assert_problem(refused, 403, "till_required")
    assert attempts(world, card["id"]) == []


def test_a_till_with_ten_wrong_pins_in_an_hour_waits(world: World, clock: FakeClock) -> None:
    shop = open_shop(world)
    issued = [issue(world, funded_resident(world, 500).id) for _ in range(4)]
    for n in range(10):
        wrong = card_pay(world, shop, issued[n % 3], 100, pin="9157")
        assert_problem(wrong, 422, "pin_incorrect")
        clock.advance(minutes=1)
    throttled = card_pay(world, shop, issued[3], 100)
    body = assert_problem(throttled, 429, "pin_attempts_exceeded")
    retry = int(throttled.headers["Retry-After"])
    assert 0 < retry <= 3600 - 9 * 60 + 1 and body["retry_after_seconds"] == retry
    assert attempts(world, issued[3]["id"]) == []
    other_till = open_shop(world, shop.merchant_id, till_name="レジ2")
    assert card_pay(world, other_till, issued[3], 100).status_code == 201
    clock.advance(seconds=retry)
    assert card_pay(world, shop, issued[3], 100).status_code == 201


# Blocking, reissuing, PIN changes ------------------------------------------------------------


def test_a_lost_card_is_blocked_and_reissued_with_the_balance_intact(world: World) -> None:
    resident = funded_resident(world, 2_000)
    shop = open_shop(world)
    card = issue(world, resident.id)
    assert card_pay(world, shop, card, 500).status_code == 201
    blocked = world.client.post(
        f"/api/v1/counter/cards/{card['id']}/block",
        json={"reason": "lost on the bus"},
        headers=world.counter.headers,
    )
    assert blocked.status_code == 200 and blocked.json()["status"] == "blocked"
    assert last_audit_reason(world) == ("card.block", "lost on the bus")
    assert_problem(card_pay(world, shop, card, 100), 409, "card_blocked")
    assert_problem(card_pay(world, shop, card, 100, by="number"), 409, "card_blocked")
    new = world.client.post(
        f"/api/v1/counter/cards/{card['id']}/reissue",
        json={"reason": "lost on the bus"},
        headers=world.counter.headers,
    )
    assert new.status_code == 201, new.text
    replacement = new.json()
    assert replacement["replaces"] == card["id"]
    assert replacement["number"] != card["number"] and replacement["qr"] != card["qr"]
    assert balance(world, resident) == 1_500
    paid = card_pay(world, shop, replacement, 500)  # the same PIN
    assert paid.status_code == 201 and paid.json()["receipt"]["balance"] == 1_000
    assert_problem(card_pay(world, shop, card, 100), 409, "card_blocked")
    again = world.client.post(
        f"/api/v1/counter/cards/{card['id']}/reissue",
        json={"reason": "twice"},
        headers=world.counter.headers,
    )
    assert_problem(again, 409, "card_blocked")


def test_a_moved_out_residents_card_is_blocked(world: World) -> None:
    resident = funded_resident(world, 1_000)
    shop = open_shop(world)
    card = issue(world, resident.id)
    moved = world.client.post(
        f"/api/v1/admin/residents/{resident.id}/status",
        json={"status": "moved_out", "reason": "moved to Chofu"},
        headers=world.admin.headers,
    )
    assert moved.status_code == 200, moved.text
    assert_problem(card_pay(world, shop, card, 100), 409, "card_blocked")
    assert attempts(world, card["id"]) == []


def test_a_pin_changes_with_the_old_pin_or_an_identity_check(world: World) -> None:
    resident = funded_resident(world, 1_000)
    shop = open_shop(world)
    card = issue(world, resident.id)
    path = f"/api/v1/counter/cards/{card['id']}/pin"
    headers = world.counter.headers
    wrong_old = world.client.post(
        path, json={"new_pin": "7392", "old_pin": "9157"}, headers=headers
    )
    assert_problem(wrong_old, 422, "pin_incorrect")
    neither = world.client.post(path, json={"new_pin": "7392"}, headers=headers)
    assert_problem(neither, 422, "validation_error")
    trivial = world.client.post(path, json={"new_pin": "1111", "old_pin": PIN}, headers=headers)
    assert_problem(trivial, 422, "pin_invalid")
    changed = world.client.post(path, json={"new_pin": "7392", "old_pin": PIN}, headers=headers)
    assert changed.status_code == 200, changed.text
    assert world.last_audit()["action"] == "card.change_pin"
    assert_problem(card_pay(world, shop, card, 100), 422, "pin_incorrect")
    assert card_pay(world, shop, card, 100, pin="7392").status_code == 201
    forgotten = world.client.post(
        path,
        json={"new_pin": "5063", "reason": "forgot the PIN; identity checked with a passport"},
        headers=headers,
    )
    assert forgotten.status_code == 200
    assert card_pay(world, shop, card, 100, pin="5063").status_code == 201
    assert "7392" not in json.dumps(world.last_audit()) and "5063" not in json.dumps(
        world.last_audit()
    )


# Limits ---------------------------------------------------------------------------------------


def test_the_days_limits_hold_per_card(world: World, clock: FakeClock) -> None:
    resident = funded_resident(world, 20_000)
    shop = open_shop(world)
    card = issue(world, resident.id)
    policy = world.client.put(
        f"/api/v1/admin/point-types/{POINT_TYPE_CODE}/card-policy",
        json={"daily_limit": 1_000, "payments_per_shop": 3},
        headers=world.admin.headers,
    )
    assert policy.status_code == 200 and world.last_audit()["action"] == "card_policy.set"
    assert card_pay(world, shop, card, 600).status_code == 201
    over = card_pay(world, shop, card, 500)
    body = assert_problem(over, 422, "card_daily_limit_exceeded")
    assert body["left_today"] == 400
    assert card_pay(world, shop, card, 200).status_code == 201
    assert card_pay(world, shop, card, 100).status_code == 201
    fourth = card_pay(world, shop, card, 50)
    assert_problem(fourth, 409, "card_shop_limit_exceeded")
    assert card_pay(world, open_shop(world), card, 50).status_code == 201
    clock.advance(days=1)
    assert card_pay(world, shop, card, 1_000).status_code == 201
    assert balance(world, resident) == 20_000 - 600 - 200 - 100 - 50 - 1_000


# Idempotency and secrecy ----------------------------------------------------------------------


def test_a_retry_is_answered_from_the_record_and_no_record_holds_the_pin(world: World) -> None:
    resident = funded_resident(world, 1_000)
    shop = open_shop(world)
    card = issue(world, resident.id)
    headers = {**shop.headers, **key("retry")}
    first = card_pay(world, shop, card, 300, headers=headers)
    second = card_pay(world, shop, card, 300, headers=headers)
    assert first.status_code == second.status_code == 201
    assert second.headers.get("idempotent-replayed") == "true"
    assert first.json()["id"] == second.json()["id"] and balance(world, resident) == 700
    assert attempts(world, card["id"]) == ["correct"]
    other_pin = card_pay(world, shop, card, 300, pin="9157", headers=headers)
    assert_problem(other_pin, 422, "pin_incorrect")

    records = world.read(lambda session: list(session.exec(select(IdempotencyRecord))))
    plain_body = {
        "card_qr": card["qr"],
        "card_number": None,
        "pin": PIN,
        "amount": 300,
        "point_type": None,
        "reference": "",
    }
    unkeyed = request_hash("POST", CARD_PAYMENTS, {"query": [], "body": plain_body})
    for record in records:
        assert PIN not in (record.response_body or "")
        assert bytes(record.request_hash) != unkeyed
        assert bytes(record.request_hash) != hashlib.sha256(PIN.encode()).digest()
    hashes = world.read(lambda session: [bytes(row.pin_hash) for row in session.exec(select(Card))])
    assert all(PIN.encode() not in value for value in hashes)


# Races ----------------------------------------------------------------------------------------


def _racers(world: World, tries: list[tuple[Shop, dict[str, Any]]], pin: str) -> list[Any]:
    """Each (till, card) tried at once with ``pin``, from a client of its own."""
    clients = [TestClient(world.app, raise_server_exceptions=False) for _ in tries]

    def call(client: TestClient, shop: Shop, card: dict[str, Any]) -> Any:
        return lambda: card_pay(world, shop, card, 100, pin=pin, client=client)

    try:
        outcomes = run_together(
            [call(client, *tried) for client, tried in zip(clients, tries, strict=True)]
        )
    finally:
        for client in clients:
            client.close()
    assert all(status == "ok" for status, _ in outcomes), outcomes[:3]
    replies = [reply for _, reply in outcomes]
    assert all(reply.status_code < 500 for reply in replies), [r.text for r in replies][:3]
    return replies


def test_twenty_wrong_pins_at_once_on_one_card_compare_exactly_five(world: World) -> None:
    resident = funded_resident(world, 1_000)
    card = issue(world, resident.id)
    tills = [open_shop(world) for _ in range(2)]
    replies = _racers(world, [(tills[n % 2], card) for n in range(20)], "9157")
    codes = sorted(reply.json()["code"] for reply in replies)
    assert codes.count("pin_incorrect") == 5
    assert set(codes) <= {"pin_incorrect", "card_locked"}
    assert attempts(world, card["id"]) == ["wrong"] * 5
    assert card_row(world, card["id"]).locked
    assert_problem(card_pay(world, tills[0], card, 100), 409, "card_locked")
    assert balance(world, resident) == 1_000


def test_twenty_wrong_pins_at_once_on_one_till_compare_at_most_ten(world: World) -> None:
    shop = open_shop(world)
    residents: list[Actor] = [funded_resident(world, 200) for _ in range(20)]
    issued = [issue(world, resident.id) for resident in residents]
    replies = _racers(world, [(shop, card) for card in issued], "9157")
    codes = [reply.json()["code"] for reply in replies]
    assert codes.count("pin_incorrect") == 10
    assert codes.count("pin_attempts_exceeded") == 10
    compared = world.read(
        lambda session: session.exec(
            sa.select(sa.func.count())
            .select_from(PinAttempt)
            .where(PinAttempt.till_id == shop.till_id)
        ).one()[0]
    )
    assert compared == 10


def test_the_purge_job_deletes_pin_attempts_a_year_old(world: World, clock: FakeClock) -> None:
    resident = funded_resident(world, 1_000)
    shop = open_shop(world)
    card = issue(world, resident.id)
    assert card_pay(world, shop, card, 100).status_code == 201
    assert_problem(card_pay(world, shop, card, 100, pin="9157"), 422, "pin_incorrect")
    clock.advance(days=365)
    kept = run_job(world.engine, "purge", as_of=clock(), clock=clock)
    assert kept.counts["pin_attempts"] == 0  # not a year old yet
    clock.advance(days=2)
    done = run_job(world.engine, "purge", as_of=clock(), clock=clock)
    assert done.counts["pin_attempts"] == 2
    assert attempts(world, card["id"]) == []
