"""Settlement's terms (issue 20, parts 1 and 3): a point type's yen rate, a shop's cash-out fee
and a program's budget code, on SQLite and, when ``POINTS_TEST_POSTGRES_URL`` is set,
PostgreSQL.

* A point type's ``yen_rate`` is 1 unless told, a JSON integer of 1 to 100,000; an admin changes
  it (audited ``point_type.yen_rate``) until the type has a payment, then it is frozen (409
  ``rate_frozen``, nothing changed).
* A shop's ``fee_bps`` is 0 unless set, 0 to 1,000; finance or an admin set it (the admin's
  settings PATCH or ``PUT /api/v1/finance/merchants/{id}/fee``), the shop only reads it.
* A program's ``budget_code`` (款項目節) is set at creation or by ``PUT .../budget-code``
  (audited ``program.budget_code``), cleared with null, 1 to 64 characters after stripping, no
  control characters.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import sqlalchemy as sa
from api_world import POINT_TYPE_CODE, Actor, World, assert_problem, unique
from payment_helpers import Shop, funded_resident, once_per_world, open_shop, pay, payment_qr

from points import access, pointtypes
from points.errors import InvalidInput, RateFrozen
from points.pointtypes import YEN_RATE_MAX, NewPointType

A = "/api/v1/admin"
F = "/api/v1/finance"
M = "/api/v1/merchant"


@pytest.fixture(scope="module")
def world(shared_world: World) -> World:
    return shared_world


def ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def audits(world: World, action: str, object_id: str) -> list[dict[str, Any]]:
    with world.engine.connect() as connection:
        rows = connection.execute(
            sa.text(
                "SELECT actor_id, reason, details FROM audit_event"
                " WHERE action = :action AND object_id = :object_id ORDER BY sequence"
            ),
            {"action": action, "object_id": object_id},
        ).mappings()
        return [{**row, "details": json.loads(row["details"])} for row in rows]


def raw_body(field: str, raw: str) -> str:
    """A body with ``field`` set to the raw JSON text ``raw`` and a reason."""
    return '{"' + field + '": ' + raw + ', "reason": "bad"}'


def new_point_type_body(**fields: Any) -> dict[str, Any]:
    code = unique("r").replace("-", "_")[:32]
    return {"code": code, "name_ja": "率ポイント", "name_en": "Rate points", **fields}


def new_program_body(world: World, **fields: Any) -> dict[str, Any]:
    return {
        "department_id": world.departments["a"],
        "point_type_id": world.point_type_id,
        "module": "fixed_award",
        "name_ja": "予算コード",
        "name_en": "Budget code",
        "amount": 100,
        "valid_from": "2026-04-01",
        **fields,
    }


def paid_shop(world: World) -> Shop:
    """A shop that took one posted payment in the world's point type."""

    def build() -> Shop:
        shop = open_shop(world)
        request = payment_qr(world, shop, 200)
        paid = pay(world, funded_resident(world, 1_000), request["token"])
        assert paid.status_code == 201, paid.text
        return shop

    return once_per_world(world, "rates: paid shop", build)


def department_and_merchant(world: World) -> list[Actor]:
    return [world.actors["issuer_a"], world.actors["merchant_a"], world.resident]


# Yen rates ----------------------------------------------------------------------------------


def test_a_point_types_yen_rate_is_1_unless_told(world: World) -> None:
    admin = world.admin.headers
    created = ok(
        world.client.post(f"{A}/point-types", json=new_point_type_body(), headers=admin), 201
    )
    assert created["yen_rate"] == 1
    assert ok(world.client.get(f"{A}/point-types/{created['id']}", headers=admin))["yen_rate"] == 1
    ten = ok(
        world.client.post(f"{A}/point-types", json=new_point_type_body(yen_rate=10), headers=admin),
        201,
    )
    assert ten["yen_rate"] == 10
    listed = ok(world.client.get(f"{A}/point-types", headers=admin))
    assert {row["id"]: row["yen_rate"] for row in listed}[ten["id"]] == 10


def test_an_admin_sets_the_yen_rate_audited(world: World) -> None:
    point_type_id = world.fresh_point_type()
    url = f"{A}/point-types/{point_type_id}/yen-rate"
    changed = ok(
        world.client.put(
            url, json={"yen_rate": 3, "reason": " council 12 "}, headers=world.admin.headers
        )
    )
    assert (changed["id"], changed["yen_rate"]) == (point_type_id, 3)
    events = audits(world, "point_type.yen_rate", point_type_id)
    assert events == [
        {"actor_id": world.admin.id, "reason": "council 12", "details": {"before": 1, "after": 3}}
    ]
    # The same rate again changes nothing and records nothing.
    again = ok(
        world.client.put(url, json={"yen_rate": 3, "reason": "again"}, headers=world.admin.headers)
    )
    assert again["yen_rate"] == 3
    assert len(audits(world, "point_type.yen_rate", point_type_id)) == 1
    assert (
        ok(world.client.get(f"{A}/point-types/{point_type_id}", headers=world.admin.headers))[
            "yen_rate"
        ]
        == 3
    )


def test_the_rate_is_frozen_once_the_type_has_a_payment(world: World) -> None:
    paid_shop(world)
    url = f"{A}/point-types/{world.point_type_id}/yen-rate"
    audit_count, snapshot = world.audit_count(), world.snapshot()

    body = assert_problem(
        world.client.put(
            url, json={"yen_rate": 2, "reason": "too late"}, headers=world.admin.headers
        ),
        409,
        "rate_frozen",
    )

    assert body["yen_rate"] == 1
    assert (world.audit_count(), world.snapshot()) == (audit_count, snapshot)
    shown = ok(
        world.client.get(f"{A}/point-types/{world.point_type_id}", headers=world.admin.headers)
    )
    assert shown["yen_rate"] == 1
    # Setting the rate it has is still a harmless no-op.
    assert (
        ok(
            world.client.put(
                url, json={"yen_rate": 1, "reason": "same"}, headers=world.admin.headers
            )
        )["yen_rate"]
        == 1
    )
    assert world.audit_count() == audit_count


def test_only_a_payment_freezes_the_rate(world: World) -> None:
    """The world's type has allocations and awards on its ledger; only the payment counts."""
    point_type_id = world.fresh_point_type()
    now = world.now()

    def paid(point_type_id: str) -> bool:
        return world.read(
            lambda session: pointtypes.has_payment(
                session, pointtypes.get_point_type(session, point_type_id)
            )
        )

    assert not paid(point_type_id)
    changed = world.write(
        lambda session: (
            pointtypes.set_yen_rate(
                session, access.SYSTEM, now, point_type_id, 5, reason="before payments"
            ).yen_rate
        )
    )
    assert changed == 5
    paid_shop(world)
    assert paid(world.point_type_id)


@pytest.mark.parametrize("raw", ["0", "-1", str(YEN_RATE_MAX + 1), "true", '"2"', "2.0", "null"])
def test_a_yen_rate_out_of_range_or_not_an_integer_is_refused(world: World, raw: str) -> None:
    point_type_id = world.fresh_point_type()
    audit_count = world.audit_count()
    content = raw_body("yen_rate", raw)
    response = world.client.put(
        f"{A}/point-types/{point_type_id}/yen-rate",
        content=content.encode(),
        headers={**world.admin.headers, "Content-Type": "application/json"},
    )
    body = assert_problem(response, 422, "validation_error")
    assert ["body", "yen_rate"] in [error["location"] for error in body["errors"]]
    assert world.audit_count() == audit_count
    created = world.client.post(
        f"{A}/point-types",
        content=json.dumps(new_point_type_body(yen_rate="HOLE")).replace('"HOLE"', raw).encode(),
        headers={**world.admin.headers, "Content-Type": "application/json"},
    )
    assert_problem(created, 422, "validation_error")


def test_the_yen_rate_change_needs_a_reason_and_no_other_field(world: World) -> None:
    url = f"{A}/point-types/{world.fresh_point_type()}/yen-rate"
    admin = world.admin.headers
    for body in (
        {"yen_rate": 2},
        {"yen_rate": 2, "reason": "  "},
        {"yen_rate": 2, "reason": "x", "extra": 1},
    ):
        assert_problem(world.client.put(url, json=body, headers=admin), 422, "validation_error")
    assert_problem(
        world.client.put(
            f"{A}/point-types/pty_nothing/yen-rate",
            json={"yen_rate": 2, "reason": "x"},
            headers=admin,
        ),
        404,
        "not_found",
    )


def test_the_domain_refuses_a_bad_rate_and_a_frozen_one(world: World) -> None:
    now = world.now()
    point_type_id = world.fresh_point_type()
    for bad in (0, -1, YEN_RATE_MAX + 1, True):
        with pytest.raises(InvalidInput) as refused:
            world.write(
                lambda session, bad=bad: pointtypes.set_yen_rate(
                    session, access.SYSTEM, now, point_type_id, bad, reason="bad"
                )
            )
        assert refused.value.context == {"field": "yen_rate"}
    with pytest.raises(InvalidInput):
        world.write(
            lambda session: pointtypes.create_point_type(
                session,
                access.SYSTEM,
                now,
                NewPointType(
                    code=unique("z").replace("-", "_")[:32], name_ja="x", name_en="x", yen_rate=0
                ),
            )
        )
    paid_shop(world)
    with pytest.raises(RateFrozen) as frozen:
        world.write(
            lambda session: pointtypes.set_yen_rate(
                session, access.SYSTEM, now, world.point_type_id, 7, reason="late"
            )
        )
    assert frozen.value.code == "rate_frozen"


def test_only_an_admin_changes_the_yen_rate(world: World) -> None:
    url = f"{A}/point-types/{world.fresh_point_type()}/yen-rate"
    body = {"yen_rate": 4, "reason": "not mine"}
    for actor in [*department_and_merchant(world), world.finance, world.counter]:
        assert_problem(world.client.put(url, json=body, headers=actor.headers), 403, "forbidden")
    assert_problem(world.client.put(url, json=body), 401, "unauthenticated")


# Cash-out fees ------------------------------------------------------------------------------


def test_a_shops_fee_is_0_unless_set_and_finance_or_an_admin_sets_it(world: World) -> None:
    shop = open_shop(world)
    settings_url = f"{A}/merchants/{shop.merchant_id}/settings"
    assert ok(world.client.get(settings_url, headers=world.admin.headers))["fee_bps"] == 0
    assert ok(world.client.get(f"{M}/settings", headers=shop.headers))["fee_bps"] == 0

    fee_url = f"{F}/merchants/{shop.merchant_id}/fee"
    set_by_finance = ok(
        world.client.put(
            fee_url, json={"fee_bps": 150, "reason": "contract"}, headers=world.finance.headers
        )
    )
    assert set_by_finance["fee_bps"] == 150
    assert set_by_finance["accepted_point_types"] == [POINT_TYPE_CODE]  # nothing else changed
    assert ok(world.client.get(f"{M}/settings", headers=shop.headers))["fee_bps"] == 150
    event = audits(world, "merchant.settings", shop.merchant_id)[-1]
    assert event["actor_id"] == world.finance.id and event["reason"] == "contract"
    assert (event["details"]["before"]["fee_bps"], event["details"]["after"]["fee_bps"]) == (0, 150)

    by_admin = ok(
        world.client.put(
            fee_url, json={"fee_bps": 1_000, "reason": "max"}, headers=world.admin.headers
        )
    )
    assert by_admin["fee_bps"] == 1_000
    patched = ok(
        world.client.patch(
            settings_url, json={"fee_bps": 0, "reason": "waived"}, headers=world.admin.headers
        )
    )
    assert patched["fee_bps"] == 0
    assert ok(world.client.get(settings_url, headers=world.admin.headers))["fee_bps"] == 0


@pytest.mark.parametrize("raw", ["-1", "1001", "true", '"100"', "100.0", "null"])
def test_a_fee_out_of_range_or_not_an_integer_is_refused(world: World, raw: str) -> None:
    merchant_id = world.fresh_merchant()
    audit_count = world.audit_count()
    headers = {**world.admin.headers, "Content-Type": "application/json"}
    for method, url, content in (
        ("PUT", f"{F}/merchants/{merchant_id}/fee", raw_body("fee_bps", raw)),
        (
            "PATCH",
            f"{A}/merchants/{merchant_id}/settings",
            raw_body("fee_bps", raw),
        ),
    ):
        if method == "PATCH" and raw == "null":
            continue  # null leaves the fee as it is in a PATCH
        response = world.client.request(method, url, content=content.encode(), headers=headers)
        body = assert_problem(response, 422, "validation_error")
        assert ["body", "fee_bps"] in [error["location"] for error in body["errors"]]
    assert world.audit_count() == audit_count
    shown = ok(
        world.client.get(f"{A}/merchants/{merchant_id}/settings", headers=world.admin.headers)
    )
    assert shown["fee_bps"] == 0


def test_a_shop_never_sets_its_own_fee(world: World) -> None:
    shop = open_shop(world)
    body = {"fee_bps": 0, "reason": "mine"}
    for headers in (shop.headers, world.actors["merchant_a"].headers):
        assert_problem(
            world.client.put(f"{F}/merchants/{shop.merchant_id}/fee", json=body, headers=headers),
            403,
            "forbidden",
        )
        assert_problem(
            world.client.patch(
                f"{A}/merchants/{shop.merchant_id}/settings", json=body, headers=headers
            ),
            403,
            "forbidden",
        )
    # The shop's own settings route reads only.
    response = world.client.patch(f"{M}/settings", json=body, headers=shop.headers)
    assert response.status_code == 405
    for actor in (world.actors["issuer_a"], world.counter, world.resident):
        assert_problem(
            world.client.put(
                f"{F}/merchants/{shop.merchant_id}/fee", json=body, headers=actor.headers
            ),
            403,
            "forbidden",
        )
    assert_problem(
        world.client.put(
            f"{F}/merchants/mer_nothing/fee", json=body, headers=world.finance.headers
        ),
        404,
        "not_found",
    )


# Budget codes -------------------------------------------------------------------------------


def test_a_program_takes_a_budget_code_at_creation(world: World) -> None:
    admin = world.admin.headers
    plain = ok(world.client.post(f"{A}/programs", json=new_program_body(world), headers=admin), 201)
    assert plain["budget_code"] is None
    coded = ok(
        world.client.post(
            f"{A}/programs",
            json=new_program_body(world, budget_code=" 衛生費-01-02 "),
            headers=admin,
        ),
        201,
    )
    assert coded["budget_code"] == "衛生費-01-02"
    assert ok(world.client.get(f"{A}/programs/{coded['id']}", headers=admin))["budget_code"] == (
        "衛生費-01-02"
    )


def test_an_admin_sets_and_clears_the_budget_code_audited(world: World) -> None:
    program_id = world.fresh_program(activate=False)
    url = f"{A}/programs/{program_id}/budget-code"
    admin = world.admin.headers

    set_ = ok(
        world.client.put(
            url, json={"budget_code": "03-01-02-19", "reason": "FY2026"}, headers=admin
        )
    )
    assert set_["budget_code"] == "03-01-02-19"
    again = ok(
        world.client.put(url, json={"budget_code": "03-01-02-19", "reason": "again"}, headers=admin)
    )
    assert again["budget_code"] == "03-01-02-19"
    cleared = ok(
        world.client.put(url, json={"budget_code": None, "reason": "wrong line"}, headers=admin)
    )
    assert cleared["budget_code"] is None
    assert ok(world.client.get(f"{A}/programs/{program_id}", headers=admin))["budget_code"] is None

    events = audits(world, "program.budget_code", program_id)
    assert [(e["reason"], e["details"]) for e in events] == [
        ("FY2026", {"before": None, "after": "03-01-02-19"}),
        ("wrong line", {"before": "03-01-02-19", "after": None}),
    ]
    assert {e["actor_id"] for e in events} == {world.admin.id}


@pytest.mark.parametrize(
    "value",
    ["", "   ", "x" * 65, "01\n02", "01\t02", "a\x7fb", 12, True, ["01"]],
    ids=["empty", "blank", "too long", "newline", "tab", "delete", "number", "bool", "list"],
)
def test_a_bad_budget_code_is_refused(world: World, value: Any) -> None:
    program_id = world.fresh_program(activate=False)
    audit_count = world.audit_count()
    admin = world.admin.headers
    response = world.client.put(
        f"{A}/programs/{program_id}/budget-code",
        json={"budget_code": value, "reason": "bad"},
        headers=admin,
    )
    body = assert_problem(response, 422, "validation_error")
    assert any(error["location"][:2] == ["body", "budget_code"] for error in body["errors"]), body
    created = world.client.post(
        f"{A}/programs", json=new_program_body(world, budget_code=value), headers=admin
    )
    assert_problem(created, 422, "validation_error")
    assert world.audit_count() == audit_count
    assert ok(world.client.get(f"{A}/programs/{program_id}", headers=admin))["budget_code"] is None


def test_64_characters_are_a_budget_code(world: World) -> None:
    program_id = world.fresh_program(activate=False)
    code = "款" * 64
    changed = ok(
        world.client.put(
            f"{A}/programs/{program_id}/budget-code",
            json={"budget_code": code, "reason": "long"},
            headers=world.admin.headers,
        )
    )
    assert changed["budget_code"] == code


def test_the_budget_code_needs_a_reason(world: World) -> None:
    url = f"{A}/programs/{world.fresh_program(activate=False)}/budget-code"
    for body in ({"budget_code": "01"}, {"budget_code": "01", "reason": ""}, {"reason": "x"}):
        assert_problem(
            world.client.put(url, json=body, headers=world.admin.headers), 422, "validation_error"
        )
    assert_problem(
        world.client.put(
            f"{A}/programs/prg_nothing/budget-code",
            json={"budget_code": "01", "reason": "x"},
            headers=world.admin.headers,
        ),
        404,
        "not_found",
    )


def test_only_an_admin_sets_a_budget_code(world: World) -> None:
    program_id = world.programs["a"]
    url = f"{A}/programs/{program_id}/budget-code"
    body = {"budget_code": "99", "reason": "not mine"}
    for actor in [*department_and_merchant(world), world.finance, world.counter]:
        assert_problem(world.client.put(url, json=body, headers=actor.headers), 403, "forbidden")
    assert_problem(world.client.put(url, json=body), 401, "unauthenticated")
    shown = ok(world.client.get(f"{A}/programs/{program_id}", headers=world.admin.headers))
    assert shown["budget_code"] is None
