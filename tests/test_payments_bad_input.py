"""Paying at shops with bad input (issue 17, "Bad input"), through the API, on SQLite and
PostgreSQL.

Each refusal is problem+json with its own stable code (and the figures a client needs:
``available``, ``refundable``, ``accepted``, ``limit``), and writes nothing: the world's row counts
(``World.snapshot``: payments, payment QRs, used tokens, ledger entries, events...) are the same
before and after, and so is the resident's balance. The idempotency records are not compared: a
refusal of a value-moving request is stored under its key on purpose, to be replayed.

The cases: an amount of zero or less; more than the balance; more than the pay-code limit; a
point type the shop does not take; a payment QR paid already, expired, cancelled, forged, signed
elsewhere or not one at all; the store QR of a revoked till and a reissued store QR; a suspended
shop (takes no payments, but its tills read and refund) and a closed one (its tokens are
refused); a closed wallet; refunds over what is left, after the window, of a pending or voided
payment; and the staff of one shop (and one resident) reaching for another's objects, which is
404 naming nothing but the id sent.
"""

from __future__ import annotations

import base64
import struct
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from api_world import POINT_TYPE_CODE, Actor, World, assert_problem, open_world
from conftest import FakeClock
from payment_helpers import (
    Shop,
    balance,
    funded_resident,
    give,
    key,
    open_shop,
    pay,
    payment_qr,
)
from sqlalchemy.engine import Engine
from token_helpers import MemoryKeyRing

from points import qrtokens
from points.jobs import run_job
from points.registry import StaffRole

M = "/api/v1/merchant"
ME = "/api/v1/me"
A = "/api/v1/admin"


@pytest.fixture
def world(engine: Engine, clock: FakeClock, database_url: str) -> Iterator[World]:
    with open_world(engine, clock, database_url, record_verify_run=False) as built:
        yield built


def refused(
    world: World, response: Any, status: int, code: str, before: dict[str, int]
) -> dict[str, Any]:
    """The response is the problem ``code`` and nothing was written since ``before``."""
    body = assert_problem(response, status, code)
    after = world.snapshot()
    changed = {
        table: (before[table], after[table]) for table in before if before[table] != after[table]
    }
    assert not changed, f"a refused request wrote {changed}"
    return body


def pay_code(world: World, resident: Actor) -> dict[str, Any]:
    made = world.client.post(f"{ME}/pay-codes", json={}, headers=resident.headers)
    assert made.status_code == 201, made.text
    return dict(made.json())


def scan(world: World, shop: Shop, token: str, amount: int, **fields: Any) -> Any:
    """The till scans a pay code and keys ``amount``."""
    return world.client.post(
        f"{M}/pay-code-payments",
        json={"token": token, "amount": amount, **fields},
        headers={**shop.headers, **key("scan")},
    )


def preview(world: World, resident: Actor, token: str) -> Any:
    return world.client.post(
        f"{ME}/payment-previews", json={"token": token}, headers=resident.headers
    )


def refund(world: World, staff: Actor, payment_id: str, amount: int) -> Any:
    return world.client.post(
        f"{M}/payments/{payment_id}/refunds",
        json={"amount": amount},
        headers={**staff.headers, **key("refund")},
    )


def posted(world: World, shop: Shop, resident: Actor, amount: int) -> dict[str, Any]:
    paid = pay(world, resident, payment_qr(world, shop, amount)["token"])
    assert paid.status_code == 201, paid.text
    assert paid.json()["state"] == "posted"
    return dict(paid.json())


def pending(world: World, shop: Shop, resident: Actor, amount: int) -> dict[str, Any]:
    held = pay(world, resident, shop.store_qr, amount=amount)
    assert held.status_code == 201, held.text
    assert held.json()["state"] == "pending"
    return dict(held.json())


def set_merchant_status(world: World, merchant_id: str, status: str) -> None:
    changed = world.client.post(
        f"{A}/merchants/{merchant_id}/status",
        json={"status": status, "reason": "bad input test"},
        headers=world.admin.headers,
    )
    assert changed.status_code == 200, changed.text


# Amounts -------------------------------------------------------------------------------------


@pytest.mark.parametrize("amount", [0, -1, -500, 10_000_001])
def test_an_amount_out_of_range_is_a_validation_error_on_every_route(
    world: World, amount: int
) -> None:
    shop = open_shop(world)
    resident = funded_resident(world, 1_000)
    request = payment_qr(world, shop, 100)
    payment = posted(world, shop, resident, 100)
    code = pay_code(world, resident)
    before = world.snapshot()
    attempts = [
        world.client.post(f"{M}/payment-requests", json={"amount": amount}, headers=shop.headers),
        scan(world, shop, code["token"], amount),
        pay(world, resident, shop.store_qr, amount=amount),
        pay(world, resident, request["token"], amount=amount),
        refund(world, shop.till, payment["id"], amount),
    ]
    for response in attempts:
        body = refused(world, response, 422, "validation_error", before)
        assert ["body", "amount"] in [error["location"] for error in body["errors"]], body
    assert balance(world, resident) == 900


def test_a_store_qr_needs_the_amount_typed(world: World) -> None:
    shop = open_shop(world)
    resident = funded_resident(world, 100)
    before = world.snapshot()

    body = refused(world, pay(world, resident, shop.store_qr), 422, "validation_error", before)

    assert body["field"] == "amount"
    assert balance(world, resident) == 100


def test_a_payment_qr_paid_with_another_amount_is_refused(world: World) -> None:
    shop = open_shop(world)
    resident = funded_resident(world, 1_000)
    request = payment_qr(world, shop, 300)
    before = world.snapshot()

    body = refused(
        world, pay(world, resident, request["token"], amount=30), 422, "amount_mismatch", before
    )

    assert body["asked"] == 300
    assert balance(world, resident) == 1_000


# More than the resident has, or may pay by pay code ------------------------------------------


def test_more_than_the_balance_is_refused_naming_what_is_available(world: World) -> None:
    shop = open_shop(world)
    resident = funded_resident(world, 250)
    request = payment_qr(world, shop, 251)
    code = pay_code(world, resident)
    before = world.snapshot()
    for response in (
        pay(world, resident, request["token"]),
        pay(world, resident, shop.store_qr, amount=251),
        scan(world, shop, code["token"], 251),
    ):
        body = refused(world, response, 409, "insufficient_balance", before)
        assert (body["available"], body["requested"]) == (250, 251)
    assert balance(world, resident) == 250
    # The refused payment QR and pay code were not used up: with the points, they pay.
    give(world, resident.id, 1)
    assert pay(world, resident, request["token"]).status_code == 201
    give(world, resident.id, 251)
    assert scan(world, shop, code["token"], 251).status_code == 201
    assert balance(world, resident) == 0


def test_exactly_the_balance_is_paid(world: World) -> None:
    shop = open_shop(world)
    resident = funded_resident(world, 250)

    paid = pay(world, resident, payment_qr(world, shop, 250)["token"])

    assert paid.status_code == 201, paid.text
    assert balance(world, resident) == 0


def test_points_held_for_a_store_qr_payment_are_not_available(world: World) -> None:
    shop = open_shop(world)
    resident = funded_resident(world, 500)
    pending(world, shop, resident, 400)
    before = world.snapshot()

    body = refused(
        world, pay(world, resident, shop.store_qr, amount=101), 409, "insufficient_balance", before
    )

    assert body["available"] == 100


def test_more_than_the_pay_code_limit_is_refused(world: World) -> None:
    shop = open_shop(world)
    resident = funded_resident(world, 10_000)
    default = pay_code(world, resident)
    before = world.snapshot()

    body = refused(
        world, scan(world, shop, default["token"], 5_001), 422, "pay_code_limit_exceeded", before
    )
    assert body["limit"] == 5_000

    lowered = world.client.put(
        f"{ME}/payment-settings", json={"pay_code_limit": 300}, headers=resident.headers
    )
    assert lowered.status_code == 200, lowered.text
    code = pay_code(world, resident)
    assert code["limit"] == 300
    before = world.snapshot()
    body = refused(
        world, scan(world, shop, code["token"], 301), 422, "pay_code_limit_exceeded", before
    )
    assert body["limit"] == 300
    assert balance(world, resident) == 10_000
    # The limit itself is allowed, and the refused code was not used up by the refusal.
    taken = scan(world, shop, code["token"], 300)
    assert taken.status_code == 201, taken.text
    assert balance(world, resident) == 9_700


def test_the_pay_code_limit_is_checked_before_the_balance(world: World) -> None:
    """A code over the limit is refused as such, even from a wallet that could not pay it."""
    shop = open_shop(world)
    resident = funded_resident(world, 10)
    code = pay_code(world, resident)
    before = world.snapshot()

    refused(world, scan(world, shop, code["token"], 5_001), 422, "pay_code_limit_exceeded", before)


@pytest.mark.parametrize("limit", [0, -1, 5_001])
def test_a_pay_code_limit_out_of_range_is_refused(world: World, limit: int) -> None:
    resident = funded_resident(world, 0)
    before = world.snapshot()

    response = world.client.put(
        f"{ME}/payment-settings", json={"pay_code_limit": limit}, headers=resident.headers
    )

    body = refused(world, response, 422, "validation_error", before)
    assert body["errors"][0]["location"] == ["body", "pay_code_limit"]


# Point types ---------------------------------------------------------------------------------


def other_point_type(world: World) -> str:
    """A second point type (the shops accept only the world's)."""
    made = world.client.post(
        f"{A}/point-types",
        json={"code": "eco", "name_ja": "エコポイント", "name_en": "Eco points"},
        headers=world.admin.headers,
    )
    assert made.status_code == 201, made.text
    return str(made.json()["code"])


@pytest.mark.parametrize("which", ["another", "unknown"])
def test_a_point_type_the_shop_does_not_accept_is_refused(world: World, which: str) -> None:
    shop = open_shop(world)
    resident = funded_resident(world, 1_000)
    code = pay_code(world, resident)
    point_type = other_point_type(world) if which == "another" else "nosuch"
    before = world.snapshot()
    for response in (
        world.client.post(
            f"{M}/payment-requests",
            json={"amount": 100, "point_type": point_type},
            headers=shop.headers,
        ),
        pay(world, resident, shop.store_qr, amount=100, point_type=point_type),
        scan(world, shop, code["token"], 100, point_type=point_type),
    ):
        body = refused(world, response, 422, "point_type_not_accepted", before)
        assert body["field"] == "point_type"
        assert point_type in body["detail"]
    assert balance(world, resident) == 1_000


def test_point_type_not_accepted_names_the_accepted_point_types(world: World) -> None:
    shop = open_shop(world)
    made = world.client.post(
        f"{M}/payment-requests", json={"amount": 1, "point_type": "nosuch"}, headers=shop.headers
    )
    body = assert_problem(made, 422, "point_type_not_accepted")
    assert body["accepted"] == [POINT_TYPE_CODE]


def test_a_shop_taking_several_point_types_needs_one_named(world: World) -> None:
    second = other_point_type(world)
    shop = open_shop(world)
    changed = world.client.patch(
        f"{A}/merchants/{shop.merchant_id}/settings",
        json={"accepted_point_types": [POINT_TYPE_CODE, second], "reason": "two types"},
        headers=world.admin.headers,
    )
    assert changed.status_code == 200, changed.text
    resident = funded_resident(world, 1_000)
    before = world.snapshot()

    body = refused(
        world,
        pay(world, resident, shop.store_qr, amount=10),
        422,
        "point_type_not_accepted",
        before,
    )

    assert body["field"] == "point_type"
    named = pay(world, resident, shop.store_qr, amount=10, point_type=POINT_TYPE_CODE)
    assert named.status_code == 201, named.text


def test_a_shop_accepting_no_point_type_takes_no_payment(world: World) -> None:
    shop = open_shop(world)
    changed = world.client.patch(
        f"{A}/merchants/{shop.merchant_id}/settings",
        json={"accepted_point_types": [], "reason": "none yet"},
        headers=world.admin.headers,
    )
    assert changed.status_code == 200, changed.text
    before = world.snapshot()

    made = world.client.post(f"{M}/payment-requests", json={"amount": 1}, headers=shop.headers)

    body = refused(world, made, 422, "point_type_not_accepted", before)
    assert body["field"] == "point_type"


# Payment QRs that cannot be paid -------------------------------------------------------------


def test_a_paid_payment_qr_is_refused(world: World) -> None:
    shop = open_shop(world)
    first, second = funded_resident(world, 500), funded_resident(world, 500)
    request = payment_qr(world, shop, 200)
    assert pay(world, first, request["token"]).status_code == 201
    before = world.snapshot()

    for response in (
        pay(world, second, request["token"]),
        pay(world, first, request["token"]),
        preview(world, second, request["token"]),
    ):
        refused(world, response, 409, "payment_request_paid", before)
    assert (balance(world, first), balance(world, second)) == (300, 500)
    cancel = world.client.post(f"{M}/payment-requests/{request['id']}/cancel", headers=shop.headers)
    refused(world, cancel, 409, "payment_request_paid", before)


def test_an_expired_payment_qr_is_refused(world: World, clock: FakeClock) -> None:
    shop = open_shop(world)
    resident = funded_resident(world, 500)
    request = payment_qr(world, shop, 200, expires_in_seconds=30)
    clock.advance(seconds=30)
    before = world.snapshot()

    for response in (
        pay(world, resident, request["token"]),
        preview(world, resident, request["token"]),
    ):
        refused(world, response, 422, "token_expired", before)
    assert balance(world, resident) == 500
    seen = world.client.get(f"{M}/payment-requests/{request['id']}", headers=shop.headers)
    assert seen.json()["state"] == "expired"


def test_an_expired_pay_code_is_refused(world: World, clock: FakeClock) -> None:
    shop = open_shop(world)
    resident = funded_resident(world, 500)
    code = pay_code(world, resident)
    clock.advance(seconds=90)
    before = world.snapshot()

    refused(world, scan(world, shop, code["token"], 100), 422, "token_expired", before)

    assert balance(world, resident) == 500


def test_a_cancelled_payment_qr_is_refused(world: World) -> None:
    shop = open_shop(world)
    resident = funded_resident(world, 500)
    request = payment_qr(world, shop, 200)
    cancelled = world.client.post(
        f"{M}/payment-requests/{request['id']}/cancel", headers=shop.headers
    )
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
    before = world.snapshot()

    for response in (
        pay(world, resident, request["token"]),
        preview(world, resident, request["token"]),
    ):
        refused(world, response, 409, "payment_request_cancelled", before)
    assert balance(world, resident) == 500


def b32(raw: bytes) -> str:
    return base64.b32encode(raw).decode("ascii").rstrip("=")


def raw_of(text: str) -> tuple[str, bytes]:
    """A token's prefix (origin and ``/Q/``) and its bytes."""
    prefix, encoded = text[: text.index("/Q/") + 3], text[text.index("/Q/") + 3 :]
    return prefix, base64.b32decode(encoded + "=" * (-len(encoded) % 8))


def forged_amount(text: str, amount: int) -> str:
    """The payment QR ``text`` with its amount changed and its signature kept."""
    prefix, raw = raw_of(text)
    start = qrtokens.HEADER.size + qrtokens.ID_SIZE
    return prefix + b32(raw[:start] + struct.pack(">Q", amount) + raw[start + 8 :])


def signed_elsewhere(world: World, token: qrtokens.Token, *, origin: str | None = None) -> str:
    """``token`` signed by another server's key under this server's key id."""
    services = world.app.state.services
    kid = services.keys.signing_key()[0]
    ring = MemoryKeyRing()
    ring.rotate()
    ring.private = {kid: ring.private[ring.active]}
    ring.status = {kid: "active"}
    ring.active = kid
    return qrtokens.sign(token, ring, world.now(), origin=origin or services.settings.public_origin)


def test_a_forged_or_foreign_payment_qr_is_refused(world: World) -> None:
    shop = open_shop(world)
    resident = funded_resident(world, 1_000)
    request = payment_qr(world, shop, 500)
    _, raw = raw_of(request["token"])
    request_id = raw[qrtokens.HEADER.size : qrtokens.HEADER.size + qrtokens.ID_SIZE]
    expires = world.now().replace(microsecond=0) + qrtokens.PAYMENT_LIFETIME_MAX
    same_request_elsewhere = signed_elsewhere(world, qrtokens.PaymentToken(request_id, 5, expires))
    another_city = signed_elsewhere(
        world, qrtokens.PaymentToken(request_id, 5, expires), origin="https://pay.example.org"
    )
    cases = [
        (forged_amount(request["token"], 5), "token_signature_invalid"),
        (same_request_elsewhere, "token_signature_invalid"),
        (another_city, "token_malformed"),
        (request["token"][:-6], "token_malformed"),
        ("https://example.com/pay?amount=5", "token_malformed"),
        ("支払い", "token_malformed"),
    ]
    before = world.snapshot()
    for text, code in cases:
        for response in (pay(world, resident, text), preview(world, resident, text)):
            refused(world, response, 422, code, before)
    assert balance(world, resident) == 1_000
    # The real one still pays its own amount.
    paid = pay(world, resident, request["token"])
    assert (paid.status_code, paid.json()["amount"]) == (201, 500)


def test_a_forged_pay_code_is_refused(world: World) -> None:
    shop = open_shop(world)
    resident = funded_resident(world, 1_000)
    code = pay_code(world, resident)
    prefix, raw = raw_of(code["token"])
    tampered = prefix + b32(raw[:-1] + bytes([raw[-1] ^ 1]))
    _, code_raw = raw_of(code["token"])
    code_id = code_raw[qrtokens.HEADER.size : qrtokens.HEADER.size + qrtokens.ID_SIZE]
    expires = world.now().replace(microsecond=0) + qrtokens.PAY_CODE_LIFETIME_MAX
    elsewhere = signed_elsewhere(world, qrtokens.PayCodeToken(code_id, expires))
    before = world.snapshot()

    for text in (tampered, elsewhere):
        refused(world, scan(world, shop, text, 100), 422, "token_signature_invalid", before)
    # A payment QR or a store QR is not a pay code; a pay code is not paid by the wallet.
    refused(world, scan(world, shop, shop.store_qr, 100), 422, "token_wrong_kind", before)
    refused(world, pay(world, resident, code["token"]), 422, "token_wrong_kind", before)
    assert balance(world, resident) == 1_000


# Store QRs of revoked tills ------------------------------------------------------------------


def test_the_store_qr_of_a_revoked_till_is_refused(world: World) -> None:
    shop = open_shop(world)
    resident = funded_resident(world, 500)
    revoked = world.client.post(
        f"{A}/tills/{shop.till_id}/revoke", json={"reason": "stolen"}, headers=world.admin.headers
    )
    assert revoked.status_code == 200 and revoked.json()["status"] == "revoked", revoked.text
    before = world.snapshot()

    for response in (
        pay(world, resident, shop.store_qr, amount=100),
        preview(world, resident, shop.store_qr),
    ):
        refused(world, response, 422, "token_revoked", before)
    # The till's own token is refused too.
    made = world.client.post(f"{M}/payment-requests", json={"amount": 1}, headers=shop.headers)
    refused(world, made, 401, "unauthenticated", before)
    assert balance(world, resident) == 500


def test_a_reissued_store_qr_refuses_the_old_sticker(world: World) -> None:
    shop = open_shop(world)
    resident = funded_resident(world, 500)
    reissued = world.client.post(
        f"{A}/tills/{shop.till_id}/store-qr",
        json={"reason": "sticker damaged"},
        headers=world.admin.headers,
    )
    assert reissued.status_code == 200, reissued.text
    new_qr = reissued.json()["store_qr"]
    assert new_qr != shop.store_qr
    before = world.snapshot()

    for response in (
        pay(world, resident, shop.store_qr, amount=100),
        preview(world, resident, shop.store_qr),
    ):
        refused(world, response, 422, "token_revoked", before)
    assert balance(world, resident) == 500
    assert preview(world, resident, new_qr).status_code == 200
    assert pay(world, resident, new_qr, amount=100).status_code == 201


# Suspended and closed shops ------------------------------------------------------------------


def test_a_suspended_shop_takes_no_payment_but_reads_and_refunds(world: World) -> None:
    shop = open_shop(world)
    resident = funded_resident(world, 1_000)
    earlier = posted(world, shop, resident, 300)
    request = payment_qr(world, shop, 100)
    code = pay_code(world, resident)
    set_merchant_status(world, shop.merchant_id, "suspended")
    before = world.snapshot()

    for response in (
        world.client.post(f"{M}/payment-requests", json={"amount": 100}, headers=shop.headers),
        scan(world, shop, code["token"], 100),
        pay(world, resident, shop.store_qr, amount=100),
        pay(world, resident, request["token"]),
        preview(world, resident, shop.store_qr),
        preview(world, resident, request["token"]),
    ):
        refused(world, response, 409, "merchant_not_active", before)
    assert balance(world, resident) == 700

    listed = world.client.get(f"{M}/payments", headers=shop.headers)
    assert [p["id"] for p in listed.json()["items"]] == [earlier["id"]]
    one = world.client.get(f"{M}/payments/{earlier['id']}", headers=shop.headers)
    assert one.status_code == 200, one.text
    back = refund(world, shop.till, earlier["id"], 300)
    assert (back.status_code, back.json()["state"]) == (201, "refunded"), back.text
    assert balance(world, resident) == 1_000


def test_a_closed_shops_tokens_are_refused_and_its_qrs_take_nothing(world: World) -> None:
    shop = open_shop(world)
    clerk = world.fresh_staff(StaffRole.MERCHANT, merchant_id=shop.merchant_id)
    resident = funded_resident(world, 1_000)
    earlier = posted(world, shop, resident, 300)
    request = payment_qr(world, shop, 100)
    code = pay_code(world, resident)
    set_merchant_status(world, shop.merchant_id, "closed")
    before = world.snapshot()

    for staff in (shop.till, clerk):
        for response in (
            world.client.get(f"{M}/payments", headers=staff.headers),
            world.client.get(f"{M}/payments/{earlier['id']}", headers=staff.headers),
            world.client.post(f"{M}/payment-requests", json={"amount": 100}, headers=staff.headers),
            world.client.post(
                f"{M}/pay-code-payments",
                json={"token": code["token"], "amount": 100},
                headers={**staff.headers, **key()},
            ),
            refund(world, staff, earlier["id"], 1),
        ):
            body = refused(world, response, 401, "unauthenticated", before)
            assert response.headers.get("www-authenticate") == "Bearer", body
    for response in (
        pay(world, resident, shop.store_qr, amount=100),
        pay(world, resident, request["token"]),
    ):
        refused(world, response, 409, "merchant_not_active", before)
    assert balance(world, resident) == 700


# Closed wallets ------------------------------------------------------------------------------


def close_wallet(world: World, resident: Actor) -> None:
    closed = world.client.post(
        f"/api/v1/counter/residents/{resident.id}/wallets/{POINT_TYPE_CODE}/close",
        json={"reason": "moved out"},
        headers={**world.counter.headers, "Idempotency-Key": str(uuid.uuid4())},
    )
    assert closed.status_code == 200, closed.text


def test_a_closed_wallet_pays_nothing(world: World) -> None:
    shop = open_shop(world)
    resident = funded_resident(world, 1_000)
    request = payment_qr(world, shop, 100)
    code = pay_code(world, resident)
    close_wallet(world, resident)
    before = world.snapshot()

    for response in (
        pay(world, resident, request["token"]),
        pay(world, resident, shop.store_qr, amount=100),
        scan(world, shop, code["token"], 100),
    ):
        refused(world, response, 409, "wallet_closed", before)
    # The payment QR was not used up: another resident pays it.
    other = funded_resident(world, 100)
    assert pay(world, other, request["token"]).status_code == 201


# Refunds -------------------------------------------------------------------------------------


def test_a_refund_over_what_is_left_is_refused(world: World) -> None:
    shop = open_shop(world)
    resident = funded_resident(world, 500)
    payment = posted(world, shop, resident, 500)
    before = world.snapshot()
    body = refused(
        world, refund(world, shop.till, payment["id"], 501), 409, "refund_exceeds_payment", before
    )
    assert body["refundable"] == 500

    assert refund(world, shop.till, payment["id"], 200).status_code == 201
    before = world.snapshot()
    body = refused(
        world, refund(world, shop.till, payment["id"], 301), 409, "refund_exceeds_payment", before
    )
    assert body["refundable"] == 300
    assert refund(world, shop.till, payment["id"], 300).status_code == 201
    before = world.snapshot()
    body = refused(
        world, refund(world, shop.till, payment["id"], 1), 409, "refund_exceeds_payment", before
    )
    assert body["refundable"] == 0
    assert balance(world, resident) == 500


def test_a_refund_after_the_window_is_refused(world: World, clock: FakeClock) -> None:
    shop = open_shop(world, refund_window_days=1)
    resident = funded_resident(world, 500)
    first, second = posted(world, shop, resident, 100), posted(world, shop, resident, 100)
    clock.advance(days=1)
    # The last moment of the window refunds.
    assert refund(world, shop.till, first["id"], 100).status_code == 201
    clock.advance(microseconds=1)
    before = world.snapshot()

    body = refused(
        world, refund(world, shop.till, second["id"], 100), 409, "refund_window_over", before
    )

    assert body["refund_window_days"] == 1
    assert balance(world, resident) == 400


def test_a_pending_or_voided_payment_is_not_refunded(world: World, clock: FakeClock) -> None:
    shop = open_shop(world)
    resident = funded_resident(world, 1_000)
    declined = pending(world, shop, resident, 200)
    response = world.client.post(
        f"{M}/payments/{declined['id']}/decline", headers={**shop.headers, **key()}
    )
    assert response.json()["state"] == "voided"
    timed_out = pending(world, shop, resident, 300)
    clock.advance(minutes=11)
    run_job(world.engine, "hold_timeouts", as_of=clock(), clock=clock)
    assert (
        world.client.get(f"{M}/payments/{timed_out['id']}", headers=shop.headers).json()["state"]
        == "voided"
    )
    before = world.snapshot()

    for payment, state in ((declined, "voided"), (timed_out, "voided")):
        body = refused(
            world, refund(world, shop.till, payment["id"], 1), 409, "refund_not_allowed", before
        )
        assert body["state"] == state
    # A hold still awaiting the shop (made after the job ran).
    waiting = pending(world, shop, resident, 100)
    before = world.snapshot()
    body = refused(
        world, refund(world, shop.till, waiting["id"], 1), 409, "refund_not_allowed", before
    )
    assert body["state"] == "pending"


# Another shop's, another resident's ----------------------------------------------------------


def same_refusal(theirs: Any, unknown: Any, asked: str, never: str) -> None:
    """A 404 that names only the id asked (``asked``), word for word the one for an id that
    never was (``never``)."""
    body = assert_problem(theirs, 404, "not_found")
    other = assert_problem(unknown, 404, "not_found")
    ignore = ("detail", "request_id")
    assert {k: v for k, v in body.items() if k not in ignore} == {
        k: v for k, v in other.items() if k not in ignore
    }
    assert asked in body["detail"]
    assert body["detail"].replace(asked, "?") == other["detail"].replace(never, "?")


def test_one_shop_never_reaches_another_shops_payments(world: World) -> None:
    ours, theirs = open_shop(world), open_shop(world)
    their_clerk = world.fresh_staff(StaffRole.MERCHANT, merchant_id=theirs.merchant_id)
    resident = funded_resident(world, 1_000)
    paid = posted(world, ours, resident, 300)
    held = pending(world, ours, resident, 100)
    request = payment_qr(world, ours, 50)
    customer = world.client.get(f"{M}/payments/{paid['id']}", headers=ours.headers).json()[
        "customer"
    ]
    hidden = (ours.merchant_id, "仮店", resident.id, paid["till_id"], customer)
    unknown_payment = "pay_doesnotexist00"
    unknown_request = "0" * 32
    before = world.snapshot()

    for staff in (theirs.till, their_clerk):
        headers = staff.headers
        for payment_id in (paid["id"], held["id"]):
            for method, suffix, body in (
                ("GET", "", None),
                ("POST", "/confirm", None),
                ("POST", "/decline", None),
                ("POST", "/refunds", {"amount": 1}),
            ):
                responses = [
                    world.client.request(
                        method,
                        f"{M}/payments/{asked}{suffix}",
                        json=body,
                        headers={**headers, **key()} if method == "POST" else headers,
                    )
                    for asked in (payment_id, unknown_payment)
                ]
                same_refusal(responses[0], responses[1], payment_id, unknown_payment)
                for value in hidden:
                    assert value not in responses[0].text, (suffix, value)
        for method, suffix in (("GET", ""), ("POST", "/cancel")):
            responses = [
                world.client.request(
                    method, f"{M}/payment-requests/{asked}{suffix}", headers=headers
                )
                for asked in (request["id"], unknown_request)
            ]
            same_refusal(responses[0], responses[1], request["id"], unknown_request)
            for value in hidden:
                assert value not in responses[0].text, (suffix, value)
        listed = world.client.get(f"{M}/payments", headers=headers).json()
        assert listed["items"] == [] and listed["totals"]["count"] == 0
        events = world.client.get(f"{M}/payment-events", params={"after": 0}, headers=headers)
        assert events.json()["items"] == []
    assert world.snapshot() == before
    # Nothing of ours changed: the hold still awaits us, the request is still open.
    mine = world.client.get(f"{M}/payments/{held['id']}", headers=ours.headers).json()
    assert mine["state"] == "pending"
    seen = world.client.get(f"{M}/payment-requests/{request['id']}", headers=ours.headers)
    assert seen.json()["state"] == "open"
    assert balance(world, resident) == 600


def test_one_resident_never_reaches_anothers_payments_or_pay_codes(world: World) -> None:
    shop = open_shop(world)
    owner, other = funded_resident(world, 500), funded_resident(world, 500)
    paid = posted(world, shop, owner, 200)
    code = pay_code(world, owner)
    before = world.snapshot()

    for path, asked, unknown in (
        (f"{ME}/payments/", paid["id"], "pay_doesnotexist00"),
        (f"{ME}/pay-codes/", code["id"], "f" * 32),
    ):
        responses = [
            world.client.get(path + value, headers=other.headers) for value in (asked, unknown)
        ]
        same_refusal(responses[0], responses[1], asked, unknown)
        assert owner.id not in responses[0].text
        assert shop.merchant_id not in responses[0].text
    mine = world.client.get(f"{ME}/payments", headers=other.headers).json()
    assert mine["items"] == []
    assert world.snapshot() == before


# A till revoked, a resident blocked, a shop suspended after the fact ---------------------------


def test_a_revoked_tills_payment_qr_is_refused(world: World) -> None:
    shop = open_shop(world)
    resident = funded_resident(world, 1_000)
    request = payment_qr(world, shop, 100)
    revoked = world.client.post(
        f"{A}/tills/{shop.till_id}/revoke",
        json={"reason": "device lost"},
        headers=world.admin.headers,
    )
    assert revoked.status_code == 200, revoked.text
    before = world.snapshot()
    refused(world, preview(world, resident, request["token"]), 422, "token_revoked", before)
    refused(world, pay(world, resident, request["token"]), 422, "token_revoked", before)
    again = world.client.post(
        f"{A}/tills/{shop.till_id}/store-qr", json={"reason": "x"}, headers=world.admin.headers
    )
    refused(world, again, 409, "till_revoked", before)
    assert balance(world, resident) == 1_000


def test_a_blocked_residents_pay_code_pays_nothing(world: World) -> None:
    shop = open_shop(world)
    resident = funded_resident(world, 1_000)
    code = pay_code(world, resident)
    blocked = world.client.post(
        f"{A}/residents/{resident.id}/status",
        json={"status": "blocked", "reason": "a stolen phone"},
        headers=world.admin.headers,
    )
    assert blocked.status_code == 200, blocked.text
    before = world.snapshot()
    refused(world, scan(world, shop, code["token"], 100), 409, "resident_not_active", before)


def test_a_suspended_shop_declines_but_does_not_confirm(world: World) -> None:
    shop = open_shop(world)
    resident = funded_resident(world, 1_000)
    first = pending(world, shop, resident, 100)
    second = pending(world, shop, resident, 200)
    set_merchant_status(world, shop.merchant_id, "suspended")
    before = world.snapshot()
    confirm = world.client.post(
        f"{M}/payments/{first['id']}/confirm", headers={**shop.headers, **key("confirm")}
    )
    refused(world, confirm, 409, "merchant_not_active", before)
    declined = world.client.post(
        f"{M}/payments/{second['id']}/decline", headers={**shop.headers, **key("decline")}
    )
    assert declined.json()["state"] == "voided", declined.text
    assert balance(world, resident) == 900
