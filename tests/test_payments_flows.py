"""Paying a shop end to end through the API, on SQLite and PostgreSQL: the three flows, the
shop's confirmation, refunds to the original buckets, the lists and the events."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from api_world import POINT_TYPE_CODE, World, assert_problem, open_world
from conftest import FakeClock
from payment_helpers import (
    balance,
    funded_resident,
    key,
    open_shop,
    pay,
    payment_qr,
)
from sqlalchemy.engine import Engine


@pytest.fixture
def world(engine: Engine, clock: FakeClock, database_url: str) -> Iterator[World]:
    with open_world(engine, clock, database_url, record_verify_run=False) as built:
        yield built


def test_payment_qr_is_paid_once_and_the_shop_sees_it(world: World) -> None:
    shop = open_shop(world)
    resident = funded_resident(world, 1_000)
    request = payment_qr(world, shop, 300, reference="R-0001")
    assert request["state"] == "open" and request["token"].startswith("HTTP")
    assert request["svg"].startswith("<svg")

    preview = world.client.post(
        "/api/v1/me/payment-previews", json={"token": request["token"]}, headers=resident.headers
    )
    assert preview.status_code == 200, preview.text
    shown = preview.json()
    assert shown["flow"] == "payment_qr"
    assert (shown["amount"], shown["balance_after"]) == (300, 700)
    assert shown["merchant_name_ja"] == "仮店" and shown["reference"] == "R-0001"

    paid = pay(world, resident, request["token"])
    assert paid.status_code == 201, paid.text
    payment = paid.json()
    assert (payment["state"], payment["flow"], payment["amount"]) == ("posted", "payment_qr", 300)
    assert payment["merchant_name_ja"] == "仮店"
    assert balance(world, resident) == 700

    seen = world.client.get(
        f"/api/v1/merchant/payment-requests/{request['id']}", headers=shop.headers
    ).json()
    assert seen["state"] == "paid" and seen["payment"]["id"] == payment["id"]
    assert seen["payment"]["customer"].startswith("cus_")
    assert "resident_id" not in seen["payment"]

    again = pay(world, funded_resident(world, 1_000), request["token"])
    assert_problem(again, 409, "payment_request_paid")
    assert balance(world, resident) == 700


def test_pay_code_is_scanned_once_within_the_limit(world: World) -> None:
    shop = open_shop(world)
    resident = funded_resident(world, 10_000)
    code = world.client.post("/api/v1/me/pay-codes", json={}, headers=resident.headers)
    assert code.status_code == 201, code.text
    made = code.json()
    assert made["limit"] == 5_000 and made["state"] == "open"

    too_much = world.client.post(
        "/api/v1/merchant/pay-code-payments",
        json={"token": made["token"], "amount": 5_001},
        headers={**shop.headers, **key()},
    )
    assert_problem(too_much, 422, "pay_code_limit_exceeded")

    scanned = world.client.post(
        "/api/v1/merchant/pay-code-payments",
        json={"token": made["token"], "amount": 1_200, "reference": "R-2"},
        headers={**shop.headers, **key()},
    )
    assert scanned.status_code == 201, scanned.text
    assert scanned.json()["state"] == "posted"
    assert balance(world, resident) == 8_800
    used = world.client.get(f"/api/v1/me/pay-codes/{made['id']}", headers=resident.headers).json()
    assert used["state"] == "used" and used["payment"]["amount"] == 1_200

    twice = world.client.post(
        "/api/v1/merchant/pay-code-payments",
        json={"token": made["token"], "amount": 100},
        headers={**shop.headers, **key()},
    )
    assert_problem(twice, 409, "pay_code_used")

    lowered = world.client.put(
        "/api/v1/me/payment-settings", json={"pay_code_limit": 500}, headers=resident.headers
    )
    assert lowered.json()["pay_code_limit"] == 500
    second = world.client.post("/api/v1/me/pay-codes", json={}, headers=resident.headers).json()
    refused = world.client.post(
        "/api/v1/merchant/pay-code-payments",
        json={"token": second["token"], "amount": 501},
        headers={**shop.headers, **key()},
    )
    assert_problem(refused, 422, "pay_code_limit_exceeded")


def test_store_qr_waits_for_the_shop(world: World) -> None:
    shop = open_shop(world)
    resident = funded_resident(world, 1_000)
    preview = world.client.post(
        "/api/v1/me/payment-previews", json={"token": shop.store_qr}, headers=resident.headers
    ).json()
    assert preview["flow"] == "store_qr" and preview["amount"] is None
    assert preview["balances"] == {POINT_TYPE_CODE: 1_000}

    held = pay(world, resident, shop.store_qr, amount=400)
    assert held.status_code == 201, held.text
    payment = held.json()
    assert payment["state"] == "pending" and payment["confirm_by"] is not None
    assert balance(world, resident) == 600

    events = world.client.get(
        "/api/v1/merchant/payment-events", params={"after": 0}, headers=shop.headers
    ).json()
    assert [(e["kind"], e["payment"]["id"]) for e in events["items"]] == [
        ("created", payment["id"])
    ]
    confirmed = world.client.post(
        f"/api/v1/merchant/payments/{payment['id']}/confirm", headers={**shop.headers, **key()}
    )
    assert confirmed.status_code == 200, confirmed.text
    assert confirmed.json()["state"] == "posted"
    mine = world.client.get(f"/api/v1/me/payments/{payment['id']}", headers=resident.headers).json()
    assert mine["state"] == "posted"
    again = world.client.post(
        f"/api/v1/merchant/payments/{payment['id']}/decline", headers={**shop.headers, **key()}
    )
    assert_problem(again, 409, "payment_not_pending")
    after = world.client.get(
        "/api/v1/merchant/payment-events",
        params={"after": events["cursor"]},
        headers=shop.headers,
    ).json()
    assert [e["kind"] for e in after["items"]] == ["posted"]


def test_store_qr_declined_and_timed_out(world: World, clock: FakeClock) -> None:
    shop = open_shop(world)
    resident = funded_resident(world, 1_000)
    declined = pay(world, resident, shop.store_qr, amount=100).json()
    response = world.client.post(
        f"/api/v1/merchant/payments/{declined['id']}/decline", headers={**shop.headers, **key()}
    )
    assert response.json()["state"] == "voided"
    assert balance(world, resident) == 1_000

    waiting = pay(world, resident, shop.store_qr, amount=200).json()
    clock.advance(minutes=11)
    late = world.client.post(
        f"/api/v1/merchant/payments/{waiting['id']}/confirm", headers={**shop.headers, **key()}
    )
    assert_problem(late, 409, "payment_timed_out")
    from points.jobs import run_job

    run = run_job(world.engine, "hold_timeouts", as_of=clock(), clock=clock)
    assert run.counts == {"voided": 1, "announced": 1}
    for headers, path in (
        (shop.headers, f"/api/v1/merchant/payments/{waiting['id']}"),
        (resident.headers, f"/api/v1/me/payments/{waiting['id']}"),
    ):
        assert world.client.get(path, headers=headers).json()["state"] == "voided"
    assert balance(world, resident) == 1_000
    kinds = [
        e["kind"]
        for e in world.client.get(
            "/api/v1/merchant/payment-events", params={"after": 0}, headers=shop.headers
        ).json()["items"]
    ]
    assert kinds == ["created", "voided", "created", "voided"]


def test_auto_confirm_posts_up_to_the_limit(world: World) -> None:
    shop = open_shop(world, confirm_mode="auto_confirm", auto_confirm_max=500)
    resident = funded_resident(world, 2_000)
    small = pay(world, resident, shop.store_qr, amount=500).json()
    large = pay(world, resident, shop.store_qr, amount=501).json()
    assert (small["state"], large["state"]) == ("posted", "pending")


def test_partial_then_full_refund(world: World, clock: FakeClock) -> None:
    shop = open_shop(world, refund_window_days=30)
    resident = funded_resident(world, 600)
    request = payment_qr(world, shop, 500)
    payment = pay(world, resident, request["token"]).json()
    path = f"/api/v1/merchant/payments/{payment['id']}/refunds"
    part = world.client.post(path, json={"amount": 200}, headers={**shop.headers, **key()})
    assert part.status_code == 201, part.text
    assert (part.json()["state"], part.json()["refunded"]) == ("partly_refunded", 200)
    assert balance(world, resident) == 300
    over = world.client.post(path, json={"amount": 301}, headers={**shop.headers, **key()})
    body = assert_problem(over, 409, "refund_exceeds_payment")
    assert body["refundable"] == 300
    rest = world.client.post(path, json={"amount": 300}, headers={**shop.headers, **key()})
    assert rest.json()["state"] == "refunded"
    assert balance(world, resident) == 600
    assert len(rest.json()["refund_entry_ids"]) == 2

    second = pay(world, resident, payment_qr(world, shop, 100)["token"]).json()
    clock.advance(days=30, seconds=1)
    late = world.client.post(
        f"/api/v1/merchant/payments/{second['id']}/refunds",
        json={"amount": 100},
        headers={**shop.headers, **key()},
    )
    assert_problem(late, 409, "refund_window_over")


def test_lists_and_totals(world: World) -> None:
    shop = open_shop(world)
    resident = funded_resident(world, 5_000)
    for amount in (100, 200, 300):
        pay(world, resident, payment_qr(world, shop, amount)["token"])
    pay(world, resident, shop.store_qr, amount=50)
    listed = world.client.get(
        "/api/v1/merchant/payments", params={"limit": 2}, headers=shop.headers
    ).json()
    assert [p["amount"] for p in listed["items"]] == [50, 300]
    assert listed["totals"]["count"] == 3 and listed["totals"]["amount"] == 600
    assert listed["totals"]["pending"] == 1
    rest = world.client.get(
        "/api/v1/merchant/payments",
        params={"limit": 2, "cursor": listed["next_cursor"]},
        headers=shop.headers,
    ).json()
    assert [p["amount"] for p in rest["items"]] == [200, 100]
    mine = world.client.get("/api/v1/me/payments", headers=resident.headers).json()
    assert [p["merchant_name_ja"] for p in mine["items"]] == ["仮店"] * 4
    audited = world.client.get(
        "/api/v1/finance/payments",
        params={"merchant_id": shop.merchant_id, "state": "pending"},
        headers=world.finance.headers,
    ).json()
    assert [p["amount"] for p in audited["items"]] == [50]
    assert audited["items"][0]["resident_id"] == resident.id


def test_insufficient_balance_names_what_is_available(world: World) -> None:
    shop = open_shop(world)
    resident = funded_resident(world, 100)
    before = world.snapshot()
    refused = pay(world, resident, payment_qr(world, shop, 101)["token"])
    body = assert_problem(refused, 409, "insufficient_balance")
    assert body["available"] == 100
    after = world.snapshot()
    changed = {t: (before[t], after[t]) for t in before if before[t] != after[t]}
    # Only the payment request (made by the till before) and the idempotency claim differ.
    assert set(changed) <= {"payment_request"}, changed


def test_the_residents_history_names_the_shop(world: World) -> None:
    shop = open_shop(world)
    resident = funded_resident(world, 1_000)
    paid = pay(world, resident, payment_qr(world, shop, 300)["token"]).json()
    held = pay(world, resident, shop.store_qr, amount=200).json()
    world.client.post(
        f"/api/v1/merchant/payments/{held['id']}/confirm", headers={**shop.headers, **key()}
    )
    world.client.post(
        f"/api/v1/merchant/payments/{paid['id']}/refunds",
        json={"amount": 100},
        headers={**shop.headers, **key()},
    )
    lines = world.client.get(
        f"/api/v1/me/wallets/{POINT_TYPE_CODE}/history", headers=resident.headers
    ).json()["items"]
    assert [(line["text_ja"], line["text_en"], line["amount"]) for line in lines[:3]] == [
        ("仮店 返還", "Spare: refund", 100),
        ("仮店 支払い", "Spare: payment", -200),
        ("仮店 支払い", "Spare: payment", -300),
    ]


def test_a_new_payment_answers_as_it_reads_back(world: World) -> None:
    """The payment a flow answers is built without reading it back: it must be what a read
    gives, field for field."""
    shop = open_shop(world)
    resident = funded_resident(world, 1_000)
    for response in (
        pay(world, resident, payment_qr(world, shop, 100, reference="R-9")["token"]),
        pay(world, resident, shop.store_qr, amount=50),
    ):
        assert response.status_code == 201, response.text
        answered = response.json()
        read = world.client.get(
            f"/api/v1/me/payments/{answered['id']}", headers=resident.headers
        ).json()
        assert answered == read
