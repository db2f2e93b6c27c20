"""The wallet app's session (``api.sessions``): a resident token in an HttpOnly cookie, its
cross-site forgery guard, its lapse and renewal, signing out, and ``/Q/`` opened by a phone's
camera. On SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from api_world import World, assert_problem, open_world, world_settings
from conftest import FakeClock
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session

from api.app import create_app
from points.auth import Token

ORIGIN = "http://testserver"
APP = {"X-Points-Client": "wallet", "Origin": ORIGIN}
#: A token text's shape (base32, a store token's length): /Q/ does not verify it.
QR_TEXT = "AE" + "A" * 133


@pytest.fixture
def world(engine: Engine, clock: FakeClock, database_url: str) -> Iterator[World]:
    with open_world(engine, clock, database_url, record_verify_run=False) as built:
        yield built


@pytest.fixture
def browser(world: World) -> Iterator[TestClient]:
    """A browser of its own (its own cookie jar) on the world's app."""
    with TestClient(world.app, raise_server_exceptions=False) as client:
        yield client


def signed_in(world: World, browser: TestClient) -> str:
    """Start a session with a fresh counter code; the resident's id."""
    code = world.fresh_enrolment_code()
    response = browser.post("/api/v1/sessions/code", json={"code": code}, headers=APP)
    assert response.status_code == 201, response.text
    return str(response.json()["resident_id"])


def set_cookie_headers(response: object) -> list[str]:
    return [v for k, v in response.headers.multi_items() if k.lower() == "set-cookie"]  # type: ignore[attr-defined]


def token_of(world: World, resident_id: str) -> Token:
    def work(session: Session) -> Token:
        from sqlmodel import select

        tokens = session.exec(select(Token).where(Token.principal_id == resident_id)).all()
        assert len(tokens) == 1
        return tokens[0]

    return world.read(work)


def test_a_counter_code_starts_a_session_in_an_httponly_cookie(
    world: World, browser: TestClient
) -> None:
    code = world.fresh_enrolment_code()
    response = browser.post("/api/v1/sessions/code", json={"code": code}, headers=APP)

    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == {"resident_id", "expires_at"}  # the token is not in the body
    (cookie,) = set_cookie_headers(response)
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
    assert cookie.startswith("points_session=kp_")
    assert {"httponly", "path", "max-age", "samesite"} <= attributes
    assert "samesite=strict" in cookie.lower()
    assert "secure" not in attributes  # development: http on this machine
    me = browser.get("/api/v1/me")
    assert me.status_code == 200, me.text
    assert me.json()["id"] == body["resident_id"]
    assert token_of(world, body["resident_id"]).expires_at == world.now() + timedelta(days=180)


def test_the_cookie_is_secure_in_production(
    world: World, engine: Engine, database_url: str
) -> None:
    settings = world_settings(database_url).model_copy(
        update={"environment": "production", "public_url": "https://pay.komae.example"}
    )
    app = create_app(settings, engine=engine, clock=world.clock)
    with TestClient(app, base_url="https://pay.komae.example") as client:
        code = world.fresh_enrolment_code()
        response = client.post(
            "/api/v1/sessions/code",
            json={"code": code},
            headers={"X-Points-Client": "wallet", "Origin": "https://pay.komae.example"},
        )
    assert response.status_code == 201, response.text
    (cookie,) = set_cookie_headers(response)
    assert "secure" in cookie.lower()


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": ORIGIN},
        {"X-Points-Client": "wallet"},
        {"X-Points-Client": "other", "Origin": ORIGIN},
        {"X-Points-Client": "wallet", "Origin": "https://evil.example"},
        {"X-Points-Client": "wallet", "Origin": "null"},
        {**APP, "Sec-Fetch-Site": "cross-site"},
    ],
    ids=["no-header", "no-origin", "wrong-header", "foreign-origin", "null-origin", "cross-site"],
)
def test_a_session_is_started_only_by_the_apps_own_requests(
    world: World, browser: TestClient, headers: dict[str, str]
) -> None:
    code = world.fresh_enrolment_code()
    before = world.snapshot()
    refused = browser.post("/api/v1/sessions/code", json={"code": code}, headers=headers)

    assert_problem(refused, 403, "csrf_refused")
    assert set_cookie_headers(refused) == []
    assert world.snapshot() == before  # the code is still unused
    assert (
        browser.post("/api/v1/sessions/code", json={"code": code}, headers=APP).status_code == 201
    )


@pytest.mark.parametrize(
    "headers",
    [{"Origin": ORIGIN}, {"X-Points-Client": "wallet"}, {**APP, "Origin": "http://localhost:9"}],
    ids=["no-header", "no-origin", "foreign-origin"],
)
def test_a_change_with_the_cookie_needs_the_apps_header_and_origin(
    world: World, browser: TestClient, headers: dict[str, str]
) -> None:
    signed_in(world, browser)
    before = browser.get("/api/v1/me/payment-settings").json()

    refused = browser.put(
        "/api/v1/me/payment-settings", json={"pay_code_limit": 1000}, headers=headers
    )

    assert_problem(refused, 403, "csrf_refused")
    assert browser.get("/api/v1/me/payment-settings").json() == before
    taken = browser.put("/api/v1/me/payment-settings", json={"pay_code_limit": 1000}, headers=APP)
    assert taken.status_code == 200, taken.text
    assert browser.get("/api/v1/me/payment-settings").json()["pay_code_limit"] == 1000


def test_a_bearer_token_is_not_held_to_the_apps_checks(world: World, browser: TestClient) -> None:
    """Other clients keep bearer tokens: a request with an Authorization header is never read as
    a session, whatever cookie the client also holds."""
    signed_in(world, browser)
    resident = world.resident
    response = browser.put(
        "/api/v1/me/payment-settings", json={"pay_code_limit": 2000}, headers=resident.headers
    )
    assert response.status_code == 200, response.text
    assert browser.get("/api/v1/me", headers=resident.headers).json()["id"] == resident.id


def test_a_staff_token_in_the_cookie_is_refused(world: World, browser: TestClient) -> None:
    browser.cookies.set("points_session", world.admin.token)
    assert_problem(browser.get("/api/v1/admin/departments"), 401, "unauthenticated")
    assert_problem(browser.get("/api/v1/me"), 401, "unauthenticated")


def test_a_session_used_renews_itself_at_most_once_an_hour(
    world: World, browser: TestClient, clock: FakeClock
) -> None:
    resident_id = signed_in(world, browser)
    started = world.now()

    clock.advance(minutes=30)
    quiet = browser.get("/api/v1/me")
    assert quiet.status_code == 200
    assert set_cookie_headers(quiet) == []
    assert token_of(world, resident_id).expires_at == started + timedelta(days=180)

    clock.advance(days=100)
    used = browser.get("/api/v1/me")
    assert used.status_code == 200
    (cookie,) = set_cookie_headers(used)
    assert cookie.startswith("points_session=kp_") and "httponly" in cookie.lower()
    assert token_of(world, resident_id).expires_at == world.now() + timedelta(days=180)

    clock.advance(days=179)  # 279 days after it started: alive, because it was used
    assert browser.get("/api/v1/me").status_code == 200


def test_a_lapsed_session_says_so(world: World, browser: TestClient, clock: FakeClock) -> None:
    signed_in(world, browser)
    clock.advance(days=180)
    assert_problem(browser.get("/api/v1/me"), 401, "session_expired")
    assert_problem(
        browser.put("/api/v1/me/payment-settings", json={"pay_code_limit": 1}, headers=APP),
        401,
        "session_expired",
    )


def test_a_revoked_session_is_simply_unauthenticated(world: World, browser: TestClient) -> None:
    """A lost phone: the counter revokes the resident's tokens; the phone learns nothing more."""
    resident_id = signed_in(world, browser)
    revoked = world.client.post(
        f"/api/v1/counter/residents/{resident_id}/revoke-tokens",
        json={"reason": "lost phone"},
        headers=world.counter.headers,
    )
    assert revoked.status_code == 200, revoked.text
    assert_problem(browser.get("/api/v1/me"), 401, "unauthenticated")


def test_signing_out_revokes_the_session_and_clears_the_cookie(
    world: World, browser: TestClient
) -> None:
    resident_id = signed_in(world, browser)
    secret = browser.cookies["points_session"]

    assert_problem(browser.post("/api/v1/sessions/end"), 403, "csrf_refused")
    ended = browser.post("/api/v1/sessions/end", headers=APP)

    assert ended.status_code == 204
    (cookie,) = set_cookie_headers(ended)
    assert cookie.startswith('points_session=""') or "max-age=0" in cookie.lower()
    assert "points_session" not in browser.cookies
    assert token_of(world, resident_id).revoked_at == world.now()
    stolen = {"Authorization": f"Bearer {secret}"}
    assert_problem(browser.get("/api/v1/me", headers=stolen), 401, "unauthenticated")
    # Signing out again (no session) is not an error.
    assert browser.post("/api/v1/sessions/end", headers=APP).status_code == 204


def test_self_enrolment_in_the_app(world: World, browser: TestClient) -> None:
    assert browser.get("/api/v1/wallet-app").json() == {
        "self_enrolment": True,
        "session_days": 180,
        "expiry_notice_days": 60,
        "qr_prefix": world.app.state.services.settings.public_origin.upper() + "/Q/",
    }
    response = browser.post("/api/v1/sessions/self", json={}, headers=APP)
    assert response.status_code == 201, response.text
    assert browser.get("/api/v1/me").json()["id"] == response.json()["resident_id"]


def test_a_city_may_close_self_enrolment(world: World, engine: Engine, database_url: str) -> None:
    settings = world_settings(database_url).model_copy(update={"self_enrolment": False})
    app = create_app(settings, engine=engine, clock=world.clock)
    with TestClient(app, raise_server_exceptions=False) as client:
        before = world.snapshot()
        assert client.get("/api/v1/wallet-app").json()["self_enrolment"] is False
        assert_problem(
            client.post("/api/v1/sessions/self", json={}, headers=APP), 403, "self_enrolment_closed"
        )
        assert_problem(client.post("/api/v1/enrolments/self"), 403, "self_enrolment_closed")
        assert world.snapshot() == before


def test_a_qr_opened_by_the_camera_goes_to_the_app_with_a_session(
    world: World, browser: TestClient, clock: FakeClock
) -> None:
    page = browser.get(f"/Q/{QR_TEXT}", follow_redirects=False)
    assert page.status_code == 200
    assert "ウォレット" in page.text and 'href="/app/"' in page.text

    signed_in(world, browser)
    for path in (f"/Q/{QR_TEXT}", f"/q/{QR_TEXT.lower()}"):
        sent = browser.get(path, follow_redirects=False)
        assert sent.status_code == 303
        assert sent.headers["location"] == f"/app/#/q/{QR_TEXT}"
        assert sent.headers["referrer-policy"] == "no-referrer"

    clock.advance(days=181)  # lapsed: the page, not the app
    assert browser.get(f"/Q/{QR_TEXT}", follow_redirects=False).status_code == 200
    assert_problem(browser.get("/Q/not-a-token", follow_redirects=False), 422, "token_malformed")
