"""Refunds through the API give points back to the buckets they came from, with their original
expiry, latest expiry first; the share of a bucket expired since goes to expired points. On
SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from api_world import POINT_TYPE_CODE, Actor, World, assert_problem, open_world
from conftest import FakeClock
from payment_helpers import funded_resident, give, key, open_shop, pay, payment_qr
from sqlalchemy.engine import Engine

from ledger import Ledger
from points import access, pointtypes
from points.auth import Role


@pytest.fixture
def world(engine: Engine, clock: FakeClock, database_url: str) -> Iterator[World]:
    with open_world(engine, clock, database_url, record_verify_run=False) as built:
        yield built


def assert_ledger_sound(world: World) -> None:
    ledger = Ledger(world.engine, clock=world.clock)
    ledger.seal()
    report = ledger.verify()
    assert report.ok, report.problems


def by_expiry(world: World, resident: Actor) -> dict[str, int]:
    wallet = world.client.get(f"/api/v1/me/wallets/{POINT_TYPE_CODE}", headers=resident.headers)
    return {line["valid_until"]: line["amount"] for line in wallet.json()["by_expiry"]}


def refund(world: World, headers: dict[str, str], payment_id: str, amount: int) -> Any:
    response = world.client.post(
        f"/api/v1/merchant/payments/{payment_id}/refunds",
        json={"amount": amount},
        headers={**headers, **key("refund")},
    )
    assert response.status_code == 201, response.text
    return response.json()


def test_refunds_restore_the_original_buckets_and_their_expiry(
    world: World, clock: FakeClock
) -> None:
    shop = open_shop(world, refund_window_days=366)
    resident = funded_resident(world, 300)  # April 2026: valid until 2027-04-30
    clock.advance(days=30)
    give(world, resident.id, 300)  # May 2026: valid until 2027-05-31
    before = by_expiry(world, resident)
    assert before == {"2027-04-30": 300, "2027-05-31": 300}

    payment = pay(world, resident, payment_qr(world, shop, 500)["token"]).json()
    # Earliest expiry first: all of April's bucket, 200 of May's.
    assert by_expiry(world, resident) == {"2027-05-31": 100}

    refund(world, shop.headers, payment["id"], 250)
    # Latest expiry first: May's 200 back, then 50 of April's.
    assert by_expiry(world, resident) == {"2027-04-30": 50, "2027-05-31": 300}
    done = refund(world, shop.headers, payment["id"], 250)
    assert done["state"] == "refunded"
    assert by_expiry(world, resident) == before
    assert_ledger_sound(world)


def test_the_share_of_a_bucket_expired_since_goes_to_expired_points(
    world: World, clock: FakeClock
) -> None:
    shop = open_shop(world, refund_window_days=366)
    resident = funded_resident(world, 300)  # valid until 2027-04-30
    clock.advance(days=30)
    give(world, resident.id, 300)  # valid until 2027-05-31
    payment = pay(world, resident, payment_qr(world, shop, 500)["token"]).json()
    refund(world, shop.headers, payment["id"], 200)  # all of May's share back
    clock.now = clock.now.replace(year=2027, month=5, day=1)  # April's bucket has expired
    # The till's first token has lapsed by now: a new one, as an admin would issue.
    now = world.now()
    till = world.write(
        lambda session: (
            access.issue_token(
                session, access.SYSTEM, now, role=Role.MERCHANT, principal_id=shop.till.id
            ).secret
        )
    )
    expired_account = world.read(
        lambda session: pointtypes.find_point_type(session, POINT_TYPE_CODE).expired_account_id
    )
    expired_before = Ledger(world.engine).balance(expired_account).credits_posted
    done = refund(world, {"Authorization": f"Bearer {till}"}, payment["id"], 300)
    assert (done["state"], done["refunded"]) == ("refunded", 500)
    # The resident gets nothing of the April share back: it would have expired.
    assert by_expiry(world, resident) == {"2027-05-31": 300}
    expired_after = Ledger(world.engine).balance(expired_account).credits_posted
    assert expired_after - expired_before == 300
    assert_ledger_sound(world)


def test_finance_refunds_a_disputed_payment_on_the_shops_behalf(
    world: World, clock: FakeClock
) -> None:
    shop = open_shop(world, refund_window_days=30)
    resident = funded_resident(world, 1_000)
    payment = pay(world, resident, payment_qr(world, shop, 600)["token"]).json()
    url = f"/api/v1/finance/payments/{payment['id']}/refunds"
    finance = world.finance.headers

    before = world.snapshot()
    no_reason = world.client.post(url, json={"amount": 100}, headers={**finance, **key()})
    assert_problem(no_reason, 422, "validation_error")
    for role in (world.admin, shop.till):  # finance's act: not an admin's, not a till's
        refused = world.client.post(
            url, json={"amount": 100, "reason": "x"}, headers={**role.headers, **key()}
        )
        assert_problem(refused, 403)
    assert world.snapshot() == before

    done = world.client.post(
        url, json={"amount": 250, "reason": "二重請求の申し出"}, headers={**finance, **key()}
    )
    assert done.status_code == 201, done.text
    assert (done.json()["refunded"], done.json()["state"]) == (250, "partly_refunded")
    audit = world.last_audit()
    assert (audit["action"], audit["object_id"], audit["actor_id"]) == (
        "payment.refund_on_behalf",
        payment["id"],
        world.finance.id,
    )
    wallet = world.client.get(f"/api/v1/me/wallets/{POINT_TYPE_CODE}", headers=resident.headers)
    assert wallet.json()["balance"] == 650
    # The shop sees it like its own refund; its payable went down by as much.
    seen = world.client.get(f"/api/v1/merchant/payments/{payment['id']}", headers=shop.headers)
    assert seen.json()["refunded"] == 250
    assert_problem(
        world.client.post(url, json={"amount": 400, "reason": "x"}, headers={**finance, **key()}),
        409,
        "refund_exceeds_payment",
    )
    clock.advance(days=31)
    assert_problem(
        world.client.post(url, json={"amount": 1, "reason": "x"}, headers={**finance, **key()}),
        409,
        "refund_window_over",
    )
    assert_ledger_sound(world)
