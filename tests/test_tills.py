"""Tills and shops' settings through the admin API, on SQLite and PostgreSQL: a till's token and
printed store QR, reissue and revocation, the audit trail, the key retirement count, and the
payable account made once by concurrent first payments."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from api_world import World, assert_problem, open_world
from concurrency import run_together
from conftest import FakeClock
from payment_helpers import funded_resident, key, open_shop, pay
from sqlalchemy.engine import Engine
from sqlmodel import select

from points import keys
from points.uow import unit_of_work
from redemption.merchants import MerchantPayable


@pytest.fixture
def world(engine: Engine, clock: FakeClock, database_url: str) -> Iterator[World]:
    with open_world(engine, clock, database_url, record_verify_run=False) as built:
        yield built


def test_settings_are_audited_with_before_and_after(world: World) -> None:
    shop = open_shop(world)
    changed = world.client.patch(
        f"/api/v1/admin/merchants/{shop.merchant_id}/settings",
        json={"confirm_timeout_seconds": 300, "reason": "busy lunch hours"},
        headers=world.admin.headers,
    )
    assert changed.status_code == 200, changed.text
    body = changed.json()
    assert (body["confirm_timeout_seconds"], body["accepted_point_types"]) == (300, ["pt"])
    audit = world.last_audit()
    assert (audit["action"], audit["object_id"]) == ("merchant.settings", shop.merchant_id)
    seen = world.client.get("/api/v1/merchant/settings", headers=shop.headers).json()
    assert seen["confirm_timeout_seconds"] == 300 and seen["refund_window_days"] == 90
    too_long = world.client.patch(
        f"/api/v1/admin/merchants/{shop.merchant_id}/settings",
        json={"confirm_timeout_seconds": 86_401, "reason": "x"},
        headers=world.admin.headers,
    )
    assert_problem(too_long, 422, "validation_error")
    unknown_type = world.client.patch(
        f"/api/v1/admin/merchants/{shop.merchant_id}/settings",
        json={"accepted_point_types": ["nosuchtype"], "reason": "x"},
        headers=world.admin.headers,
    )
    assert_problem(unknown_type, 404)


def test_a_reissued_store_qr_refuses_the_old_sticker(world: World) -> None:
    shop = open_shop(world)
    resident = funded_resident(world, 1_000)
    me = world.client.get("/api/v1/merchant/till", headers=shop.headers).json()
    assert me["store_qr"] == shop.store_qr and me["id"] == shop.till_id
    reissued = world.client.post(
        f"/api/v1/admin/tills/{shop.till_id}/store-qr",
        json={"reason": "sticker damaged"},
        headers=world.admin.headers,
    )
    assert reissued.status_code == 200, reissued.text
    new_qr = reissued.json()["store_qr"]
    assert new_qr != shop.store_qr
    assert_problem(pay(world, resident, shop.store_qr, amount=10), 422, "token_revoked")
    assert pay(world, resident, new_qr, amount=10).status_code == 201


def test_a_revoked_till_can_neither_take_payments_nor_be_paid_by_its_store_qr(
    world: World,
) -> None:
    shop = open_shop(world)
    resident = funded_resident(world, 1_000)
    revoked = world.client.post(
        f"/api/v1/admin/tills/{shop.till_id}/revoke",
        json={"reason": "device lost"},
        headers=world.admin.headers,
    )
    assert revoked.json()["status"] == "revoked"
    refused = world.client.post(
        "/api/v1/merchant/payment-requests", json={"amount": 100}, headers=shop.headers
    )
    assert_problem(refused, 401, "unauthenticated")
    assert_problem(pay(world, resident, shop.store_qr, amount=10), 422, "token_revoked")
    listed = world.client.get(
        f"/api/v1/admin/merchants/{shop.merchant_id}/tills", headers=world.admin.headers
    ).json()
    assert [(t["id"], t["status"]) for t in listed] == [(shop.till_id, "revoked")]


def test_merchant_staff_who_are_not_a_till_take_no_payments(world: World) -> None:
    open_shop(world, world.merchants["a"])
    staff = world.actors["merchant_a"]
    refused = world.client.post(
        "/api/v1/merchant/payment-requests", json={"amount": 100}, headers=staff.headers
    )
    assert_problem(refused, 403, "till_required")


def test_live_store_qrs_hold_their_signing_key(world: World) -> None:
    shop = open_shop(world)
    ring = world.app.state.services.keys
    kid = ring.signing_key()[0]
    assert keys.printed_tokens(world.engine, kid) >= 1
    before = keys.printed_tokens(world.engine, kid)
    world.client.post(
        f"/api/v1/admin/tills/{shop.till_id}/revoke",
        json={"reason": "closed the till"},
        headers=world.admin.headers,
    )
    assert keys.printed_tokens(world.engine, kid) == before - 1


def test_first_payments_at_once_make_one_payable_account(world: World) -> None:
    shop = open_shop(world)
    residents = [funded_resident(world, 100) for _ in range(6)]
    codes = [
        world.client.post("/api/v1/me/pay-codes", json={}, headers=r.headers).json()["token"]
        for r in residents
    ]

    def scan(code: str) -> int:
        response = world.client.post(
            "/api/v1/merchant/pay-code-payments",
            json={"token": code, "amount": 50},
            headers={**shop.headers, **key()},
        )
        return response.status_code

    outcomes = run_together([lambda code=code: scan(code) for code in codes])
    assert outcomes == [("ok", 201)] * len(codes)
    rows = unit_of_work(
        world.engine,
        lambda session: session.exec(
            select(MerchantPayable).where(MerchantPayable.merchant_id == shop.merchant_id)
        ).all(),
        read_only=True,
    )
    assert len(rows) == 1
