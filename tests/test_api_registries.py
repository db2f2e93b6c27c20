"""The registries through the API: departments, merchants, residents, staff, tokens, enrolment;
the audit trail; health and readiness; recorded verify runs.

Most tests share one world per backend and work on objects they create themselves; those that
move the clock, need an exact audit trail or tamper with the database get a world of their own.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from api_world import (
    RESIDENT_ADDRESS_NUMBER,
    RESIDENT_NAME,
    World,
    assert_problem,
    open_world,
    unique,
    unique_address_number,
)
from conftest import FakeClock
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

import ledger
from api.app import create_app
from points import db
from points.audit import verify_chain
from points.registry import StaffRole
from points.settings import Settings
from points.uow import unit_of_work

A = "/api/v1/admin"
C = "/api/v1/counter"


@pytest.fixture(scope="module")
def shared(shared_world: World) -> World:
    return shared_world


def ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, (response.status_code, response.text)
    return response.json()


def all_pages(world: World, path: str, headers: dict[str, str], limit: int = 200) -> list[Any]:
    items: list[Any] = []
    cursor = None
    separator = "&" if "?" in path else "?"
    while True:
        url = f"{path}{separator}limit={limit}" + (f"&cursor={cursor}" if cursor else "")
        page = ok(world.client.get(url, headers=headers))
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items


# Departments and merchants ---------------------------------------------------------------


def test_admins_create_and_read_departments(shared: World) -> None:
    client, admin = shared.client, shared.admin.headers
    code = unique("health")
    created = ok(
        client.post(
            f"{A}/departments",
            headers=admin,
            json={"code": code, "name_ja": "健康推進課", "name_en": "Health Promotion"},
        ),
        201,
    )
    assert created["id"].startswith("dep_")
    assert (created["code"], created["name_ja"], created["name_en"]) == (
        code,
        "健康推進課",
        "Health Promotion",
    )
    assert ok(client.get(f"{A}/departments/{created['id']}", headers=admin)) == created
    assert created in all_pages(shared, f"{A}/departments", admin)
    duplicate = client.post(
        f"{A}/departments", headers=admin, json={"code": code, "name_ja": "x", "name_en": "y"}
    )
    assert assert_problem(duplicate, 409, "conflict")["field"] == "code"
    for bad in ("Upper", "-leading", "with space", "x" * 65, ""):
        response = client.post(
            f"{A}/departments", headers=admin, json={"code": bad, "name_ja": "x", "name_en": "y"}
        )
        assert_problem(response, 422, "validation_error")


def test_concurrent_duplicate_department_codes_never_fail_with_5xx(shared: World) -> None:
    code = unique("race")
    statuses: list[int] = []
    barrier = threading.Barrier(6)

    def create() -> None:
        barrier.wait()
        response = shared.client.post(
            f"{A}/departments",
            headers=shared.admin.headers,
            json={"code": code, "name_ja": "同時", "name_en": "Race"},
        )
        statuses.append(response.status_code)

    threads = [threading.Thread(target=create) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses.count(201) == 1, statuses
    assert all(status in (409, 422) for status in statuses if status != 201), statuses


def test_a_duplicate_lost_in_a_race_is_reported_like_any_duplicate(
    shared: World, request: pytest.FixtureRequest
) -> None:
    """Another writer inserts the same code and commits while the request is inside its
    transaction: the client should see the same 422 as for any duplicate, and no database
    message."""
    engine = shared.engine
    code = unique("raced")
    responses: list[Any] = []
    with engine.connect() as other:
        transaction = other.begin()
        other.execute(
            sa.text(
                "INSERT INTO department (id, code, name_ja, name_en, created_at)"
                " VALUES (:id, :code, 'x', 'x', :at)"
            ),
            {"id": f"dep_{code[-12:]}", "code": code, "at": shared.now()},
        )
        thread = threading.Thread(
            target=lambda: responses.append(
                shared.client.post(
                    f"{A}/departments",
                    headers=shared.admin.headers,
                    json={"code": code, "name_ja": "競合", "name_en": "Raced"},
                )
            )
        )
        thread.start()
        wait_until_blocked(engine)
        transaction.commit()
        thread.join(timeout=60)
    body = assert_problem(responses[0], 409, "conflict")
    assert body.get("field") == "code"
    for leak in ("duplicate key", "uq_department_code", "UNIQUE constraint"):
        assert leak not in responses[0].text


def wait_until_blocked(engine: Engine) -> None:
    """Until another session waits for a lock (PostgreSQL), or a short while (SQLite, where
    the request waits for the write lock at BEGIN IMMEDIATE)."""
    if engine.dialect.name != "postgresql":
        time.sleep(0.3)
        return
    deadline = time.monotonic() + 20
    with engine.connect() as probe:
        while time.monotonic() < deadline:
            waiting = probe.exec_driver_sql(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            ).scalar_one()
            probe.rollback()
            if waiting:
                return
            time.sleep(0.02)
    raise AssertionError("the request never waited for the other writer")


def test_admins_register_merchants_and_change_their_status(shared: World) -> None:
    client, admin = shared.client, shared.admin.headers
    merchant = ok(
        client.post(
            f"{A}/merchants",
            headers=admin,
            json={"name_ja": "狛江パン", "name_en": "Komae Bakery", "category": "bakery"},
        ),
        201,
    )
    assert merchant["id"].startswith("mer_")
    assert merchant["status"] == "active"
    path = f"{A}/merchants/{merchant['id']}"
    for status in ("suspended", "closed", "active"):
        changed = ok(
            client.post(
                f"{path}/status", headers=admin, json={"status": status, "reason": f"to {status}"}
            )
        )
        assert changed["status"] == status
        assert ok(client.get(path, headers=admin))["status"] == status
    for body in (
        {"status": "gone", "reason": "x"},
        {"status": "closed"},
        {"status": "closed", "reason": " "},
    ):
        assert_problem(client.post(f"{path}/status", headers=admin, json=body), 422)
    assert merchant["id"] in {item["id"] for item in all_pages(shared, f"{A}/merchants", admin)}
    assert_problem(
        client.post(
            f"{A}/merchants/mer_missing/status",
            headers=admin,
            json={"status": "closed", "reason": "x"},
        ),
        404,
        "not_found",
    )


# Residents ----------------------------------------------------------------------------


def new_resident(world: World, **fields: Any) -> dict[str, Any]:
    body = {"name": "登録 花子", "address_number": unique_address_number(), "birth_year": 1950}
    return ok(
        world.client.post(f"{A}/residents", headers=world.admin.headers, json={**body, **fields}),
        201,
    )


def test_admins_register_correct_and_change_the_status_of_residents(shared: World) -> None:
    client, admin = shared.client, shared.admin.headers
    unverified = new_resident(shared)
    assert unverified["verification"] == "self_enrolled"
    resident = new_resident(shared, verified=True)
    assert resident["verification"] == "verified"
    assert resident["id"].startswith("res_")
    assert resident["erased_at"] is None
    path = f"{A}/residents/{resident['id']}"
    assert ok(client.get(path, headers=admin)) == resident
    corrected = ok(
        client.patch(path, headers=admin, json={"name": "登録 華子", "reason": "misspelt"})
    )
    assert corrected == {**resident, "name": "登録 華子"}
    assert_problem(client.patch(path, headers=admin, json={"birth_year": 2030, "reason": "x"}), 422)
    assert_problem(client.patch(path, headers=admin, json={"name": "x"}), 422)
    assert_problem(
        client.patch(path, headers=admin, json={"verification": "verified", "reason": "x"}), 422
    )
    for status in ("moved_out", "deceased", "blocked", "active"):
        changed = ok(
            client.post(f"{path}/status", headers=admin, json={"status": status, "reason": "r"})
        )
        assert changed["status"] == status
    ids = {item["id"] for item in all_pages(shared, f"{A}/residents", admin)}
    assert {resident["id"], unverified["id"], shared.resident.id} <= ids


def test_list_pages_do_not_overlap(shared: World) -> None:
    for _ in range(3):
        new_resident(shared)
    everything = all_pages(shared, f"{A}/residents", shared.admin.headers)
    paged = all_pages(shared, f"{A}/residents", shared.admin.headers, limit=2)
    assert [item["id"] for item in paged] == [item["id"] for item in everything]
    assert len({item["id"] for item in paged}) == len(paged) >= 5


def test_erasure_blanks_personal_data_and_keeps_the_id(shared: World) -> None:
    client, admin = shared.client, shared.admin.headers
    resident = shared.fresh_resident(with_token=True)
    path = f"{A}/residents/{resident.id}"
    before = ok(client.get(path, headers=admin))
    address_number = before["address_number"]
    assert address_number is not None
    erased = ok(client.post(f"{path}/erase", headers=admin, json={"reason": "APPI request"}))
    assert erased["id"] == resident.id
    assert (erased["name"], erased["address_number"], erased["birth_year"]) == (None, None, None)
    assert erased["erased_at"] == "2026-04-01T00:00:00Z"
    assert (erased["status"], erased["verification"]) == (before["status"], before["verification"])
    assert ok(client.get(path, headers=admin)) == erased
    # The resident's wallet (the pseudonymous id) stays; the counter cannot find the person.
    assert ok(client.get("/api/v1/me", headers=resident.headers)) == erased
    response = client.get(
        f"{C}/residents?address_number={address_number}", headers=shared.counter.headers
    )
    assert_problem(response, 404, "not_found")
    finance = all_pages(shared, "/api/v1/finance/residents", shared.finance.headers)
    assert resident.id in {item["id"] for item in finance}
    # A correction after erasure is refused, by admins and at the counter.
    for actor, prefix in ((shared.admin, A), (shared.counter, C)):
        response = client.patch(
            f"{prefix}/residents/{resident.id}",
            headers=actor.headers,
            json={"name": "復活", "reason": "restore"},
        )
        assert_problem(response, 422, "validation_error")
    assert ok(client.get(path, headers=admin))["name"] is None


# Staff --------------------------------------------------------------------------------


def test_staff_belong_to_a_merchant_a_department_or_neither(shared: World) -> None:
    client, admin = shared.client, shared.admin.headers
    merchant, department = shared.merchants["b"], shared.departments["b"]
    accepted = [
        {"role": "merchant", "merchant_id": merchant},
        {"role": "issuer", "department_id": department},
        {"role": "counter"},
        {"role": "finance"},
        {"role": "admin"},
    ]
    refused = [
        {"role": "merchant"},
        {"role": "merchant", "department_id": department},
        {"role": "merchant", "merchant_id": merchant, "department_id": department},
        {"role": "issuer"},
        {"role": "issuer", "merchant_id": merchant},
        {"role": "counter", "merchant_id": merchant},
        {"role": "finance", "department_id": department},
        {"role": "admin", "merchant_id": merchant, "department_id": department},
        {"role": "resident"},
    ]
    before = shared.snapshot()
    for body in refused:
        response = client.post(f"{A}/staff", headers=admin, json={**body, "display_name": "x"})
        assert_problem(response, 422, "validation_error")
    response = client.post(
        f"{A}/staff",
        headers=admin,
        json={"role": "merchant", "merchant_id": "mer_missing", "display_name": "x"},
    )
    assert assert_problem(response, 422, "validation_error")["field"] == "merchant_id"
    assert shared.snapshot() == before
    for body in accepted:
        created = ok(
            client.post(f"{A}/staff", headers=admin, json={**body, "display_name": "新 職員"}), 201
        )
        assert created["id"].startswith("stf_")
        assert created == {
            **created,
            "role": body["role"],
            "merchant_id": body.get("merchant_id"),
            "department_id": body.get("department_id"),
            "status": "active",
            "display_name": "新 職員",
        }
        assert ok(client.get(f"{A}/staff/{created['id']}", headers=admin)) == created
    ids = {item["id"] for item in all_pages(shared, f"{A}/staff", admin)}
    assert shared.counter.id in ids


def test_disabled_staff_can_be_enabled_again(shared: World) -> None:
    client, admin = shared.client, shared.admin.headers
    clerk = shared.fresh_staff()
    path = f"{A}/staff/{clerk.id}/status"
    me = f"{C}/residents/{shared.resident.id}"
    assert (
        ok(client.post(path, headers=admin, json={"status": "disabled", "reason": "leave"}))[
            "status"
        ]
        == "disabled"
    )
    assert_problem(client.get(me, headers=clerk.headers), 401)
    # No new token for a disabled member of staff.
    response = client.post(
        f"{A}/tokens", headers=admin, json={"role": "counter", "principal_id": clerk.id}
    )
    assert_problem(response, 422, "validation_error")
    ok(client.post(path, headers=admin, json={"status": "active", "reason": "back"}))
    assert client.get(me, headers=clerk.headers).status_code == 200


# Tokens -------------------------------------------------------------------------------


def test_tokens_are_issued_listed_found_and_revoked(shared: World) -> None:
    client, admin = shared.client, shared.admin.headers
    auditor = shared.fresh_staff(StaffRole.FINANCE)
    created = ok(
        client.post(
            f"{A}/tokens",
            headers=admin,
            json={
                "role": "finance",
                "principal_id": auditor.id,
                "label": "laptop",
                "lifetime_days": 30,
            },
        ),
        201,
    )
    secret = created["token"]
    assert secret.startswith(created["prefix"] + "_")
    assert created["expires_at"] == "2026-05-01T00:00:00Z"
    headers = {"Authorization": f"Bearer {secret}"}
    assert client.get("/api/v1/finance/ledgers", headers=headers).status_code == 200

    listed = all_pages(shared, f"{A}/tokens?principal_id={auditor.id}", admin)
    assert {item["id"] for item in listed} == {auditor.token_id, created["id"]}
    everything = all_pages(shared, f"{A}/tokens", admin)
    text = json.dumps(everything)
    for actor in [*shared.actors.values(), auditor]:
        assert actor.token not in text
    assert secret not in text
    for item in everything:
        assert set(item) == {
            "id",
            "prefix",
            "role",
            "principal_id",
            "label",
            "created_at",
            "expires_at",
            "revoked_at",
        }

    found = ok(client.get(f"{A}/tokens?prefix={created['prefix']}", headers=admin))["items"]
    assert [item["id"] for item in found] == [created["id"]]
    assert found[0]["label"] == "laptop"

    revoked = ok(
        client.post(f"{A}/tokens/{created['id']}/revoke", headers=admin, json={"reason": "lost"})
    )
    assert revoked["revoked_at"] == "2026-04-01T00:00:00Z"
    assert_problem(client.get("/api/v1/finance/ledgers", headers=headers), 401)
    # The member's other token is untouched; revoking twice changes nothing.
    assert client.get("/api/v1/finance/ledgers", headers=auditor.headers).status_code == 200
    audit_before = shared.audit_count()
    again = ok(
        client.post(f"{A}/tokens/{created['id']}/revoke", headers=admin, json={"reason": "again"})
    )
    assert again == revoked
    assert shared.audit_count() == audit_before
    for lifetime in (0, 401):
        response = client.post(
            f"{A}/tokens",
            headers=admin,
            json={"role": "finance", "principal_id": auditor.id, "lifetime_days": lifetime},
        )
        assert_problem(response, 422, "validation_error")


# The counter and enrolment -------------------------------------------------------------


def test_counter_registers_finds_and_verifies_residents(shared: World) -> None:
    client, counter = shared.client, shared.counter.headers
    address_number = unique_address_number()
    registered = ok(
        client.post(
            f"{C}/residents",
            headers=counter,
            json={"name": "窓口 登録", "address_number": address_number, "birth_year": 1940},
        ),
        201,
    )
    # The counter checked identity: always verified; the body cannot say otherwise, and name
    # and address number are required.
    assert registered["verification"] == "verified"
    for refused in ({"verified": False, "name": "x", "address_number": "1"}, {}, {"name": "x"}):
        response = client.post(f"{C}/residents", headers=counter, json=refused)
        assert_problem(response, 422, "validation_error")
    found = ok(client.get(f"{C}/residents?address_number={address_number}", headers=counter))
    assert found == registered
    for near in (address_number[:-1], address_number + "0", "0" + address_number):
        response = client.get(f"{C}/residents?address_number={near}", headers=counter)
        assert_problem(response, 404, "not_found")
    assert ok(client.get(f"{C}/residents/{registered['id']}", headers=counter)) == registered
    corrected = ok(
        client.patch(
            f"{C}/residents/{registered['id']}",
            headers=counter,
            json={"address_number": address_number[:-1] + "9", "reason": "typo"},
        )
    )
    assert corrected["address_number"] == address_number[:-1] + "9"

    self_enrolled = shared.fresh_resident(verified=False)
    verified = ok(
        client.post(
            f"{C}/residents/{self_enrolled.id}/verify",
            headers=counter,
            json={"reason": "my number card checked"},
        )
    )
    assert verified["verification"] == "verified"
    assert verified["id"] == self_enrolled.id


def test_a_self_enrolled_resident_cannot_get_an_enrolment_code(shared: World) -> None:
    before = shared.snapshot()
    response = shared.client.post(
        f"{C}/residents/{shared.resident_self.id}/enrolment-codes", headers=shared.counter.headers
    )
    assert_problem(response, 422, "validation_error")
    assert shared.snapshot() == before


def enrolment_code(world: World, resident_id: str) -> dict[str, Any]:
    return ok(
        world.client.post(
            f"{C}/residents/{resident_id}/enrolment-codes", headers=world.counter.headers
        ),
        201,
    )


def redeem(world: World, code: str) -> Any:
    return world.client.post("/api/v1/enrolments/code", json={"code": code})


def test_a_resident_enrols_with_a_code_once(shared: World) -> None:
    resident = shared.fresh_resident()
    issued = enrolment_code(shared, resident.id)
    assert issued["resident_id"] == resident.id
    assert issued["expires_at"] == "2026-04-01T00:15:00Z"
    enrolled = ok(redeem(shared, issued["code"]), 201)
    assert enrolled["resident_id"] == resident.id
    me = ok(
        shared.client.get("/api/v1/me", headers={"Authorization": f"Bearer {enrolled['token']}"})
    )
    assert me["id"] == resident.id
    assert_problem(redeem(shared, issued["code"]), 409, "enrolment_code_used")
    # What a person types: lower case, spaces and dashes are fine.
    other = enrolment_code(shared, resident.id)["code"]
    typed = " ".join([other[:4].lower(), other[4:8], "-", other[8:]])
    assert ok(redeem(shared, typed), 201)["resident_id"] == resident.id
    assert_problem(redeem(shared, "ZZZZ-ZZZZ-ZZ"), 422, "enrolment_code_invalid")


def test_a_code_expires_after_fifteen_minutes(world: World, clock: FakeClock) -> None:
    resident = world.fresh_resident()
    early = enrolment_code(world, resident.id)["code"]
    late = enrolment_code(world, resident.id)["code"]
    clock.advance(minutes=14, seconds=59)
    assert ok(redeem(world, early), 201)["resident_id"] == resident.id
    clock.advance(minutes=1, seconds=1)
    before = world.snapshot()
    assert_problem(redeem(world, late), 409, "enrolment_code_expired")
    assert world.snapshot() == before
    # A fresh code from the counter works.
    assert ok(redeem(world, enrolment_code(world, resident.id)["code"]), 201)


def test_a_lost_phone(shared: World) -> None:
    client = shared.client
    resident = shared.fresh_resident()
    old = ok(redeem(shared, enrolment_code(shared, resident.id)["code"]), 201)["token"]
    spare = ok(redeem(shared, enrolment_code(shared, resident.id)["code"]), 201)["token"]
    for token in (old, spare):
        assert (
            client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).status_code
            == 200
        )
    revoked = ok(
        client.post(
            f"{C}/residents/{resident.id}/revoke-tokens",
            headers=shared.counter.headers,
            json={"reason": "phone lost"},
        )
    )
    assert revoked == {"revoked": 2}
    for token in (old, spare):
        response = client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
        assert_problem(response, 401, "unauthenticated")
    new = ok(redeem(shared, enrolment_code(shared, resident.id)["code"]), 201)["token"]
    me = ok(client.get("/api/v1/me", headers={"Authorization": f"Bearer {new}"}))
    assert me["id"] == resident.id
    # Other residents' wallets are untouched.
    assert client.get("/api/v1/me", headers=shared.resident.headers).status_code == 200


def test_self_enrolment_gives_a_working_token_and_no_personal_data(shared: World) -> None:
    enrolled = ok(shared.client.post("/api/v1/enrolments/self"), 201)
    assert set(enrolled) == {"resident_id", "token", "expires_at"}
    assert enrolled["expires_at"] == "2027-05-06T00:00:00Z"  # 400 days
    me = ok(
        shared.client.get("/api/v1/me", headers={"Authorization": f"Bearer {enrolled['token']}"})
    )
    assert me["id"] == enrolled["resident_id"]
    assert (me["name"], me["address_number"], me["birth_year"]) == (None, None, None)
    assert (me["verification"], me["status"]) == ("self_enrolled", "active")
    # Self-enrolment takes no data: personal fields sent along are refused, never stored.
    before = shared.snapshot()
    response = shared.client.post("/api/v1/enrolments/self", json={"name": "自分"})
    body = assert_problem(response, 422, "validation_error")
    assert body["errors"][0]["type"] == "body_not_allowed"
    assert shared.snapshot() == before


def test_one_code_redeemed_by_ten_phones_at_once(shared: World) -> None:
    resident = shared.fresh_resident()
    code = enrolment_code(shared, resident.id)["code"]
    barrier = threading.Barrier(10)
    results: list[tuple[int, str]] = []
    lock = threading.Lock()

    def attempt() -> None:
        barrier.wait()
        response = redeem(shared, code)
        body = response.json()
        with lock:
            results.append((response.status_code, body.get("code", "")))

    threads = [threading.Thread(target=attempt) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(results) == 10
    statuses = sorted(status for status, _ in results)
    assert statuses == [201] + [409] * 9, results
    assert {code for status, code in results if status == 409} == {"enrolment_code_used"}
    tokens = all_pages(shared, f"{A}/tokens?principal_id={resident.id}", shared.admin.headers)
    assert len(tokens) == 1


# The audit trail -----------------------------------------------------------------------


AUDITED_NAME = "監査 太郎"
AUDITED_CORRECTION = "監査 次郎"
AUDITED_ADDRESS = "5550001234"
AUDITED_BIRTH_YEAR = 1933


def audit_trail(world: World, headers: dict[str, str], limit: int = 200) -> list[dict[str, Any]]:
    return all_pages(world, "/api/v1/finance/audit", headers, limit=limit)


def test_every_administrative_act_is_in_the_audit_trail(world: World) -> None:
    client = world.client
    admin, counter = world.admin, world.counter
    start = world.audit_count()
    expected: list[tuple[str, str, str, str, str | None]] = []

    def act(actor: Any, method: str, path: str, body: Any = None, status: int = 200) -> Any:
        return ok(client.request(method, path, headers=actor.headers, json=body), status)

    def expect(actor: Any, action: str, object_type: str, object_id: str | None) -> None:
        expected.append((str(actor.role), actor.id, action, object_type, object_id))

    department = act(
        admin,
        "POST",
        f"{A}/departments",
        {"code": "audited", "name_ja": "監査課", "name_en": "Audit"},
        201,
    )
    expect(admin, "department.create", "department", department["id"])
    merchant = act(
        admin,
        "POST",
        f"{A}/merchants",
        {"name_ja": "監査店", "name_en": "Audited", "category": "cafe"},
        201,
    )
    expect(admin, "merchant.create", "merchant", merchant["id"])
    act(
        admin,
        "POST",
        f"{A}/merchants/{merchant['id']}/status",
        {"status": "suspended", "reason": "inspection"},
    )
    expect(admin, "merchant.status", "merchant", merchant["id"])
    resident = act(
        admin,
        "POST",
        f"{A}/residents",
        {
            "name": AUDITED_NAME,
            "address_number": AUDITED_ADDRESS,
            "birth_year": AUDITED_BIRTH_YEAR,
            "verified": True,
        },
        201,
    )
    expect(admin, "resident.create", "resident", resident["id"])
    act(
        admin,
        "PATCH",
        f"{A}/residents/{resident['id']}",
        {"name": AUDITED_CORRECTION, "reason": "typo"},
    )
    expect(admin, "resident.correct", "resident", resident["id"])
    staff = act(
        admin,
        "POST",
        f"{A}/staff",
        {"role": "issuer", "display_name": "監査 職員", "department_id": department["id"]},
        201,
    )
    expect(admin, "staff.create", "staff", staff["id"])
    act(admin, "POST", f"{A}/staff/{staff['id']}/status", {"status": "disabled", "reason": "left"})
    expect(admin, "staff.status", "staff", staff["id"])
    token = act(
        admin, "POST", f"{A}/tokens", {"role": "finance", "principal_id": world.finance.id}, 201
    )
    expect(admin, "token.issue", "token", token["id"])
    act(admin, "POST", f"{A}/tokens/{token['id']}/revoke", {"reason": "not needed"})
    expect(admin, "token.revoke", "token", token["id"])

    registered = act(
        counter,
        "POST",
        f"{C}/residents",
        {"name": AUDITED_NAME, "address_number": AUDITED_ADDRESS[::-1]},
        201,
    )
    expect(counter, "resident.create", "resident", registered["id"])
    act(
        counter,
        "PATCH",
        f"{C}/residents/{registered['id']}",
        {"birth_year": AUDITED_BIRTH_YEAR, "reason": "added"},
    )
    expect(counter, "resident.correct", "resident", registered["id"])
    act(
        counter,
        "POST",
        f"{C}/residents/{world.resident_self.id}/verify",
        {"reason": "card checked"},
    )
    expect(counter, "resident.correct", "resident", world.resident_self.id)
    code = act(counter, "POST", f"{C}/residents/{registered['id']}/enrolment-codes", None, 201)
    expect(counter, "enrolment_code.create", "resident", registered["id"])
    enrolled = ok(redeem(world, code["code"]), 201)
    expected.append(("resident", registered["id"], "token.issue", "token", None))
    act(counter, "POST", f"{C}/residents/{registered['id']}/revoke-tokens", {"reason": "lost"})
    expect(counter, "token.revoke_all", "principal", registered["id"])
    own = ok(client.post("/api/v1/enrolments/self"), 201)
    expected.append(
        ("resident", own["resident_id"], "resident.self_enrol", "resident", own["resident_id"])
    )
    expected.append(("resident", own["resident_id"], "token.issue", "token", None))
    act(
        admin,
        "POST",
        f"{A}/residents/{resident['id']}/status",
        {"status": "moved_out", "reason": "moved"},
    )
    expect(admin, "resident.status", "resident", resident["id"])
    act(admin, "POST", f"{A}/residents/{resident['id']}/erase", {"reason": "APPI"})
    expect(admin, "resident.erase", "resident", resident["id"])

    as_finance = audit_trail(world, world.finance.headers)
    as_admin = audit_trail(world, world.admin.headers)
    assert as_finance == as_admin
    assert audit_trail(world, world.finance.headers, limit=3) == as_finance
    assert [event["sequence"] for event in as_finance] == list(range(1, len(as_finance) + 1))
    events = as_finance[start:]
    # (An object id the client cannot know, such as a wallet token's, is not compared.)
    got = [
        (e["actor_role"], e["actor_id"], e["action"], e["object_type"], e["object_id"])
        for e in events
    ]
    assert len(got) == len(expected), got
    assert [
        row if wanted[4] is not None else (*row[:4], None)
        for row, wanted in zip(got, expected, strict=True)
    ] == expected
    for event in events:
        assert event["at"] == "2026-04-01T00:00:00Z"
        assert len(event["hash"]) == 64
    reasons = {(e["action"], e["object_id"]): e["reason"] for e in events}
    assert reasons[("merchant.status", merchant["id"])] == "inspection"
    assert reasons[("resident.erase", resident["id"])] == "APPI"
    statuses = [e for e in events if e["action"] == "merchant.status"]
    assert statuses[0]["details"] == {"from": "active", "to": "suspended"}
    corrections = [e for e in events if e["action"] == "resident.correct"]
    assert [e["details"] for e in corrections] == [
        {"fields": ["name"]},
        {"fields": ["birth_year"]},
        {"fields": ["verified"]},
    ]

    # No personal value anywhere in the trail, and no secret.
    text = json.dumps(
        [{key: value for key, value in e.items() if key != "hash"} for e in as_finance],
        ensure_ascii=False,
    )
    for value in (
        AUDITED_NAME,
        AUDITED_CORRECTION,
        AUDITED_ADDRESS,
        AUDITED_ADDRESS[::-1],
        str(AUDITED_BIRTH_YEAR),
        RESIDENT_NAME,
        RESIDENT_ADDRESS_NUMBER,
        "1948",
        token["token"],
        enrolled["token"],
        own["token"],
        code["code"],
    ):
        assert value not in text, value
    assert unit_of_work(world.engine, verify_chain, read_only=True).ok


def test_an_admin_verify_run_is_audited(shared: World) -> None:
    before = shared.audit_count()
    ok(shared.client.post(f"{A}/verify", headers=shared.admin.headers), 201)
    assert shared.audit_count() == before + 1
    event = shared.last_audit()
    assert (event["actor_role"], event["actor_id"]) == ("admin", shared.admin.id)


def raw(engine: Engine, *statements: str) -> None:
    with engine.begin() as connection:
        for statement in statements:
            connection.exec_driver_sql(statement)


def test_the_audit_trail_is_append_only_and_tamper_evident(world: World) -> None:
    engine = world.engine
    check = unit_of_work(engine, verify_chain, read_only=True)
    assert check.ok
    assert check.events == world.audit_count() > 5
    for statement in (
        "UPDATE audit_event SET reason = 'tampered' WHERE sequence = 3",
        "DELETE FROM audit_event WHERE sequence = 3",
        "DELETE FROM audit_event",
    ):
        with pytest.raises(sa.exc.DBAPIError):
            raw(engine, statement)
    if engine.dialect.name == "postgresql":
        with pytest.raises(sa.exc.DBAPIError):
            raw(engine, "TRUNCATE audit_event")
    assert unit_of_work(engine, verify_chain, read_only=True).ok

    tamper = "UPDATE audit_event SET reason = 'tampered' WHERE sequence = 3"
    if engine.dialect.name == "postgresql":
        raw(engine, "SET LOCAL session_replication_role = replica", tamper)
    else:
        raw(engine, "DROP TRIGGER audit_event_no_update", tamper)
    check = unit_of_work(engine, verify_chain, read_only=True)
    assert (check.ok, check.first_bad_sequence) == (False, 3)
    # The tampered reason is what finance would see: the chain is how they know.
    events = audit_trail(world, world.finance.headers)
    assert events[2]["reason"] == "tampered"


# Health, readiness, verify runs ----------------------------------------------------------


def test_health_and_readiness_on_a_migrated_database(shared: World) -> None:
    assert ok(shared.client.get("/healthz")) == {
        "status": "ok",
        "database": None,
        "schema_revision": None,
    }
    ready = ok(shared.client.get("/readyz"))
    assert ready == {
        "status": "ready",
        "database": shared.engine.dialect.name,
        "schema_revision": db.head_revision(),
    }


def test_readiness_on_an_empty_or_unreachable_database(tmp_path: Path) -> None:
    for url, words in (
        (f"sqlite:///{tmp_path / 'empty.db'}", "points db upgrade"),
        (f"sqlite:///{tmp_path / 'missing' / 'dir' / 'x.db'}", "not reachable"),
    ):
        engine = ledger.create_engine(url)
        try:
            app = create_app(Settings(database_url=url), engine=engine)
            with TestClient(app) as client:
                assert client.get("/healthz").status_code == 200
                body = assert_problem(client.get("/readyz"), 503, "unavailable")
                assert words in body["detail"]
        finally:
            engine.dispose()


def test_verify_runs_are_recorded_and_shown_to_finance(
    engine: Engine, clock: FakeClock, database_url: str
) -> None:
    with open_world(engine, clock, database_url, record_verify_run=False) as world:
        assert_problem(
            world.client.get("/api/v1/finance/verify/last", headers=world.finance.headers),
            404,
            "not_found",
        )
        run = ok(world.client.post(f"{A}/verify", headers=world.admin.headers), 201)
        with world.engine.connect() as connection:
            entries, accounts = (
                connection.exec_driver_sql(f"SELECT COUNT(*) FROM {table}").scalar_one()
                for table in ("ledger_entry", "ledger_account")
            )
        assert entries >= 2 and accounts >= 3  # the world's ledger and its earning
        assert run == {**run, "ok": True, "entries": entries, "accounts": accounts}
        assert run["problems"] == []
        assert run["at"] == "2026-04-01T00:00:00Z"
        for auditor in (world.finance, world.admin):
            last = ok(world.client.get("/api/v1/finance/verify/last", headers=auditor.headers))
            assert last == run
        clock.advance(minutes=5)
        second = ok(world.client.post(f"{A}/verify", headers=world.admin.headers), 201)
        assert second["id"] > run["id"]
        assert second["unsealed"] == entries  # none of the world's entries is sealed
        assert second["ok"] is False
        assert second["problems"][0]["kind"]
        last = ok(world.client.get("/api/v1/finance/verify/last", headers=world.finance.headers))
        assert last == second
