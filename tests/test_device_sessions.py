"""Staff devices enrolled by a one-time code (``points.access.create_device_code``,
``api.routers.devices``, ``POST /api/v1/sessions/device``): the code, the device session in the
HttpOnly cookie, its CSRF guard, renewal, lapse and revocation, and the list of sessions. On
SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from api_world import World, assert_problem, open_world
from conftest import FakeClock
from fastapi.testclient import TestClient
from payment_helpers import open_shop
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from points import access
from points.auth import DeviceCode, Token
from points.errors import EnrolmentCodeUsed
from points.settings import DEVELOPMENT_SECRET_KEY
from redemption.merchants import Till

ORIGIN = "http://testserver"
STAFF = {"X-Points-Client": "staff", "Origin": ORIGIN}
WALLET = {"X-Points-Client": "wallet", "Origin": ORIGIN}


@pytest.fixture
def world(engine: Engine, clock: FakeClock, database_url: str) -> Iterator[World]:
    with open_world(engine, clock, database_url, record_verify_run=False) as built:
        yield built


@pytest.fixture
def device(world: World) -> Iterator[TestClient]:
    """A device of its own (its own cookie jar) on the world's app."""
    with TestClient(world.app, raise_server_exceptions=False) as client:
        yield client


def new_till(world: World) -> dict[str, Any]:
    """A till レジ1 of the world's shop 店a, which accepts the world's points."""
    shop = open_shop(world, world.merchants["a"])
    return {"id": shop.till_id}


def device_code(world: World, **body: str) -> dict[str, Any]:
    response = world.client.post(
        "/api/v1/admin/device-codes", json=body, headers=world.admin.headers
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def enrol(device: TestClient, code: str) -> Any:
    return device.post("/api/v1/sessions/device", json={"code": code}, headers=STAFF)


def test_a_till_is_enrolled_by_a_code_and_takes_payments_in_its_session(
    world: World, device: TestClient
) -> None:
    till = new_till(world)
    made = device_code(world, till_id=till["id"])
    assert made["role"] == "merchant"
    assert made["label"] == "レジ1 (店a)"
    origin = world.app.state.services.settings.public_origin
    assert made["enrol_url"] == f"{origin}/staff/#/enrol/{made['code']}"
    assert made["qr_svg"].startswith("<svg")
    assert world.last_audit()["action"] == "device_code.create"

    started = enrol(device, made["code"])
    assert started.status_code == 201, started.text
    body = started.json()
    assert body["till_id"] == till["id"] and body["till_name"] == "レジ1"
    assert body["merchant_id"] == world.merchants["a"] and body["merchant_name"] == "店a"
    assert body["merchant_name_en"] == "Merchant a"
    assert body["expires_at"].startswith(str((world.now() + timedelta(days=30)).date()))
    cookie = started.headers["set-cookie"]
    assert cookie.startswith("points_session=kp_") and "httponly" in cookie.lower()
    assert "token" not in body

    assert device.get("/api/v1/sessions/current").json()["till_name"] == "レジ1"
    assert device.get("/api/v1/merchant/till").json()["id"] == till["id"]
    # An unsafe request needs the staff app's header and origin.
    request = {"amount": 1200, "point_type": "pt"}
    refused = device.post("/api/v1/merchant/payment-requests", json=request)
    assert_problem(refused, 403, "csrf_refused")
    made_qr = device.post("/api/v1/merchant/payment-requests", json=request, headers=STAFF)
    assert made_qr.status_code == 201, made_qr.text


def test_a_code_is_used_once_and_a_wrong_or_late_one_changes_nothing(
    world: World, device: TestClient, clock: FakeClock
) -> None:
    staff = world.counter
    made = device_code(world, staff_id=staff.id, label="窓口PC 1")
    assert made["role"] == "counter" and made["label"] == "窓口PC 1"
    assert enrol(device, made["code"].lower()).status_code == 201  # typed in lower case
    with TestClient(world.app, raise_server_exceptions=False) as other:
        before = world.snapshot()
        assert_problem(enrol(other, made["code"]), 409, "enrolment_code_used")
        assert_problem(enrol(other, "ABCD-EFGH-23"), 422, "enrolment_code_invalid")
        late = device_code(world, staff_id=staff.id)
        after_code = world.snapshot()
        clock.advance(minutes=15)
        assert_problem(enrol(other, late["code"]), 409, "enrolment_code_expired")
        assert world.snapshot() == after_code
        assert after_code["api_token"] == before["api_token"]
        assert "set-cookie" not in enrol(other, made["code"]).headers


@pytest.mark.parametrize(
    "headers",
    [{"Origin": ORIGIN}, WALLET, {"X-Points-Client": "staff", "Origin": "https://evil.example"}],
    ids=["no-header", "wallet-header", "foreign-origin"],
)
def test_only_the_staff_apps_own_request_starts_a_device_session(
    world: World, device: TestClient, headers: dict[str, str]
) -> None:
    made = device_code(world, staff_id=world.counter.id)
    before = world.snapshot()
    refused = device.post("/api/v1/sessions/device", json={"code": made["code"]}, headers=headers)
    assert_problem(refused, 403, "csrf_refused")
    assert world.snapshot() == before
    assert enrol(device, made["code"]).status_code == 201  # the code is still good


def test_only_admins_make_device_codes_and_bad_bodies_are_refused(world: World) -> None:
    till = new_till(world)
    for actor in (world.counter, world.finance, world.actors["merchant_a"], world.resident):
        response = world.client.post(
            "/api/v1/admin/device-codes", json={"till_id": till["id"]}, headers=actor.headers
        )
        assert_problem(response, 403, "forbidden")
    before = world.snapshot()
    for body in (
        {},
        {"till_id": till["id"], "staff_id": world.counter.id},
        {"till_id": till["id"], "extra": 1},
        {"staff_id": world.counter.id, "label": 5},
    ):
        response = world.client.post(
            "/api/v1/admin/device-codes", json=body, headers=world.admin.headers
        )
        assert_problem(response, 422, "validation_error")
    response = world.client.post(
        "/api/v1/admin/device-codes", json={"till_id": "til_nothere"}, headers=world.admin.headers
    )
    assert_problem(response, 404, "not_found")
    assert world.snapshot() == before


def test_a_revoked_till_gets_no_code(world: World) -> None:
    till = new_till(world)
    revoked = world.client.post(
        f"/api/v1/admin/tills/{till['id']}/revoke",
        json={"reason": "stolen"},
        headers=world.admin.headers,
    )
    assert revoked.status_code == 200, revoked.text
    response = world.client.post(
        "/api/v1/admin/device-codes", json={"till_id": till["id"]}, headers=world.admin.headers
    )
    assert_problem(response, 409, "till_revoked")


def test_sessions_are_listed_renewed_while_used_lapse_unused_and_are_revoked(
    world: World, device: TestClient, clock: FakeClock
) -> None:
    till = new_till(world)
    assert enrol(device, device_code(world, till_id=till["id"])["code"]).status_code == 201
    (listed,) = world.client.get(
        "/api/v1/admin/device-sessions", headers=world.admin.headers
    ).json()
    assert listed["label"] == "レジ1 (店a)" and listed["role"] == "merchant"
    first_lapse = listed["expires_at"]

    clock.advance(days=20)  # used on day 20: pushed to day 50
    assert device.get("/api/v1/merchant/till").status_code == 200
    (listed,) = world.client.get(
        "/api/v1/admin/device-sessions", headers=world.admin.headers
    ).json()
    assert listed["expires_at"] > first_lapse

    clock.advance(days=31)  # unused for 31 days: lapsed
    assert_problem(device.get("/api/v1/sessions/current"), 401, "session_expired")
    assert (
        world.client.get("/api/v1/admin/device-sessions", headers=world.admin.headers).json() == []
    )

    with TestClient(world.app, raise_server_exceptions=False) as second:
        assert enrol(second, device_code(world, till_id=till["id"])["code"]).status_code == 201
        (listed,) = world.client.get(
            "/api/v1/admin/device-sessions", headers=world.admin.headers
        ).json()
        revoked = world.client.post(
            f"/api/v1/admin/tokens/{listed['token_id']}/revoke",
            json={"reason": "the tablet was lost"},
            headers=world.admin.headers,
        )
        assert revoked.status_code == 200, revoked.text
        assert_problem(second.get("/api/v1/sessions/current"), 401, "unauthenticated")


def test_tokens_are_listed_by_kind_and_state(
    world: World, device: TestClient, clock: FakeClock
) -> None:
    """The admin screen's list of other systems' tokens asks for ``kind=api&state=live``: not the
    devices' sessions, not residents' wallets, nothing revoked or expired."""
    admin = world.admin.headers
    assert enrol(device, device_code(world, staff_id=world.finance.id)["code"]).status_code == 201
    device_token = device.get("/api/v1/sessions/current").json()
    till_id = new_till(world)["id"]
    with Session(world.engine) as session:
        till_staff = session.exec(select(Till.staff_id).where(Till.id == till_id)).one()

    def issue(lifetime_days: int) -> str:
        made = world.client.post(
            "/api/v1/admin/tokens",
            json={
                "role": "finance",
                "principal_id": world.finance.id,
                "label": "会計システム",
                "lifetime_days": lifetime_days,
            },
            headers=admin,
        )
        assert made.status_code == 201, made.text
        return str(made.json()["id"])

    short, kept, revoked = issue(1), issue(30), issue(30)
    assert (
        world.client.post(
            f"/api/v1/admin/tokens/{revoked}/revoke", json={"reason": "leaked"}, headers=admin
        ).status_code
        == 200
    )
    clock.advance(days=2)
    assert device.get("/api/v1/sessions/current").status_code == 200  # still used: still live

    def listed(query: str) -> list[dict[str, Any]]:
        response = world.client.get(f"/api/v1/admin/tokens?limit=200&{query}", headers=admin)
        assert response.status_code == 200, response.text
        return list(response.json()["items"])

    def ids(query: str) -> set[str]:
        return {item["id"] for item in listed(query)}

    everything = listed("")
    devices = ids("kind=device")
    wallets = ids("kind=wallet")
    api_tokens = ids("kind=api")
    # The till's own token (made with the till) is a device's, as the enrolled PC's session is.
    till_tokens = {item["id"] for item in everything if item["principal_id"] == till_staff}
    (session_row,) = world.client.get("/api/v1/admin/device-sessions", headers=admin).json()
    assert till_tokens and devices == till_tokens | {session_row["token_id"]}
    assert wallets == {item["id"] for item in everything if item["role"] == "resident"}
    assert wallets and devices.isdisjoint(api_tokens) and wallets.isdisjoint(api_tokens)
    assert devices | wallets | api_tokens == {item["id"] for item in everything}
    assert {short, kept, revoked} <= api_tokens
    assert kept in ids("kind=api&state=live")
    assert {short, revoked}.isdisjoint(ids("kind=api&state=live"))
    assert ids("kind=api&state=revoked") == {revoked}
    assert short in ids("state=expired") and revoked not in ids("state=expired")
    assert devices <= ids("state=live")
    assert device_token["role"] == "finance"
    for bad in ("kind=till", "state=dead", "kind=API"):
        assert_problem(world.client.get(f"/api/v1/admin/tokens?{bad}", headers=admin), 422)


def test_signing_a_device_out_revokes_its_session(world: World, device: TestClient) -> None:
    assert enrol(device, device_code(world, staff_id=world.finance.id)["code"]).status_code == 201
    assert device.get("/api/v1/sessions/current").json()["role"] == "finance"
    assert device.post("/api/v1/sessions/end", headers=STAFF).status_code == 204
    assert_problem(device.get("/api/v1/sessions/current"), 401, "unauthenticated")


def test_current_answers_for_a_bearer_token_and_a_wallet_too(world: World) -> None:
    me = world.client.get("/api/v1/sessions/current", headers=world.resident.headers).json()
    assert me["role"] == "resident" and me["principal_id"] == world.resident.id
    assert me["merchant_id"] is None and me["till_id"] is None
    issuer = world.actors["issuer_a"]
    them = world.client.get("/api/v1/sessions/current", headers=issuer.headers).json()
    assert them["department_id"] == world.departments["a"]
    assert (them["department_name_ja"], them["department_name_en"]) == ("部署a", "Department a")
    assert_problem(world.client.get("/api/v1/sessions/current"), 401, "unauthenticated")


def test_two_devices_racing_with_one_code_get_one_session(world: World) -> None:
    made = device_code(world, staff_id=world.counter.id)
    now = world.now()
    results: list[str] = []
    barrier = threading.Barrier(2)

    def redeem() -> None:
        barrier.wait()
        try:
            world.write(
                lambda session: access.redeem_device_code(
                    session,
                    now,
                    made["code"],
                    secret_key=DEVELOPMENT_SECRET_KEY.encode(),
                    lifetime=timedelta(days=30),
                )
            )
            results.append("won")
        except EnrolmentCodeUsed:
            results.append("used")

    threads = [threading.Thread(target=redeem) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == ["used", "won"]

    def sessions(session: Session) -> tuple[int, int]:
        codes = session.exec(select(DeviceCode).where(DeviceCode.staff_id == world.counter.id))
        (code,) = list(codes)
        tokens = session.exec(select(Token).where(Token.label.startswith("device session")))  # type: ignore[attr-defined]
        return int(code.token_id is not None), len(list(tokens))

    assert world.read(sessions) == (1, 1)
