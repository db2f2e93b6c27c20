"""Paying merchants through the HTTP API, on both databases: bank details (strict input, the
Zengin set, masked in every answer), a run's transfer file made and downloaded, paid, and a
rejected transfer."""

from __future__ import annotations

from typing import Any

import pytest
from api_world import World, assert_problem
from conftest import FakeClock
from payment_helpers import funded_resident, key, open_shop
from test_settlement import pay_shop, settle, tokyo

from redemption import zengin

BANK = {
    "bank_code": "0005",
    "branch_code": "123",
    "account_type": "1",
    "account_number": "1234567",
    "holder_name": "カ）コマエショウテン",
    "reason": "口座届出書",
}


def put_bank(world: World, merchant_id: str, **changes: Any) -> Any:
    return world.client.put(
        f"/api/v1/admin/merchants/{merchant_id}/bank-account",
        json={**BANK, **changes},
        headers=world.admin.headers,
    )


def test_bank_details_are_masked_in_every_answer(world: World) -> None:
    shop = open_shop(world)
    made = put_bank(world, shop.merchant_id)
    assert made.status_code == 200, made.text
    body = made.json()
    assert body["account_number"] == "****567" and body["holder_kana"] == "ｶ*********"
    assert body["account_type_name"] == "普通"
    for headers, path in (
        (world.finance.headers, f"/api/v1/admin/merchants/{shop.merchant_id}/bank-account"),
        (shop.headers, "/api/v1/merchant/bank-account"),
    ):
        seen = world.client.get(path, headers=headers)
        assert seen.status_code == 200, seen.text
        assert "1234567" not in seen.text and "ｺﾏｴ" not in seen.text
    removed = world.client.post(
        f"/api/v1/admin/merchants/{shop.merchant_id}/bank-account/remove",
        json={"reason": "解約"},
        headers=world.admin.headers,
    )
    assert removed.status_code == 200 and removed.json()["account_number"] == "****567"
    gone = world.client.get("/api/v1/merchant/bank-account", headers=shop.headers)
    assert_problem(gone, 404, "not_found")


@pytest.mark.parametrize(
    ("changes", "status", "code"),
    [
        ({"holder_name": "株式会社コマエ"}, 422, "bank_details_invalid"),
        ({"holder_name": "コマエ＠ショップ"}, 422, "bank_details_invalid"),
        ({"account_number": 1234567}, 422, "validation_error"),
        ({"account_number": "12345678"}, 422, "validation_error"),
        ({"bank_code": "５"}, 422, "validation_error"),
        ({"account_type": "3"}, 422, "validation_error"),
        ({"iban": "JP00"}, 422, "validation_error"),
        ({"reason": ""}, 422, "validation_error"),
    ],
)
def test_bank_details_the_file_cannot_carry_are_refused(
    world: World, changes: dict[str, Any], status: int, code: str
) -> None:
    merchant = world.fresh_merchant()
    refused = put_bank(world, merchant, **changes)
    assert_problem(refused, status, code)
    if code == "bank_details_invalid":
        assert refused.json()["field"] == "holder_name"
        assert isinstance(refused.json()["position"], int)
    seen = world.client.get(
        f"/api/v1/admin/merchants/{merchant}/bank-account", headers=world.admin.headers
    )
    assert_problem(seen, 404, "not_found")


def test_finance_makes_downloads_and_pays_a_runs_transfer_file(
    world: World, clock: FakeClock
) -> None:
    clock.now = tokyo(2026, 4, 10)
    a, b = open_shop(world), open_shop(world)
    resident = funded_resident(world, 1000)
    pay_shop(world, a, resident, 300)
    pay_shop(world, b, resident, 120)
    assert put_bank(world, a.merchant_id).status_code == 200
    clock.now = tokyo(2026, 5, 1, 1)
    run = settle(world, "2026-04").run
    base = f"/api/v1/finance/settlement-runs/{run.id}"

    not_yet = world.client.get(f"{base}/transfer-file", headers=world.finance.headers)
    assert_problem(not_yet, 404, "not_found")
    made = world.client.post(
        f"{base}/transfer-file",
        json={"transfer_date": "2026-05-25"},
        headers={**world.finance.headers, **key("file")},
    )
    assert made.status_code == 201, made.text
    body = made.json()
    assert (body["count"], body["total"]) == (1, 300)
    assert [m["merchant_id"] for m in body["without_bank_details"]] == [b.merchant_id]
    assert body["transfers"][0]["account_number"] == "****567"

    file = world.client.get(body["download"], headers=world.finance.headers)
    assert file.status_code == 200, file.text
    assert file.headers["content-type"].startswith("text/plain")
    assert "zengin-2026-04.txt" in file.headers["content-disposition"]
    header, records, trailer = zengin.parse_transfer_file(file.content)
    assert header["transfer_date"] == "0525"
    assert records[0]["account_number"] == "1234567" and int(records[0]["amount"]) == 300
    assert records[0]["payee_name"] == "ｶ)ｺﾏｴｼﾖｳﾃﾝ"
    assert int(trailer["total_amount"]) == 300

    paid = world.client.post(
        f"{base}/paid", json={"payout_date": "2026-05-25"}, headers=world.finance.headers
    )
    assert paid.status_code == 200, paid.text
    again = world.client.post(
        f"{base}/paid", json={"payout_date": "2026-05-26"}, headers=world.finance.headers
    )
    assert_problem(again, 409, "conflict")
    strict = world.client.post(
        f"{base}/paid", json={"payout_date": 20260525}, headers=world.finance.headers
    )
    assert_problem(strict, 422, "validation_error")

    transfer_id = body["transfers"][0]["id"]
    rejected = world.client.post(
        f"/api/v1/finance/transfers/{transfer_id}/rejected",
        json={"reason": "口座なし"},
        headers=world.finance.headers,
    )
    assert rejected.status_code == 200 and rejected.json()["status"] == "rejected"
    listed = world.client.get(f"{base}/transfers", headers=world.admin.headers)
    assert [t["status"] for t in listed.json()] == ["rejected"]
