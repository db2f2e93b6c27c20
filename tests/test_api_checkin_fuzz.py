"""The check-in API under forged, damaged and foreign tokens, on SQLite and PostgreSQL: every
altered token is refused with one of the token codes (never a 5xx, never a check-in), and a
refused claim writes nothing and uses no place of the event (issue 16, "Bad input")."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest
from api_world import World, open_world
from conftest import FakeClock
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine
from token_helpers import CODES

from points import qrtokens

ISS = "/api/v1/issuer"
BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


@pytest.fixture
def world(engine: Engine, clock: FakeClock, database_url: str) -> Iterator[World]:
    with open_world(engine, clock, database_url, record_verify_run=False) as built:
        yield built


def screen_token(world: World) -> str:
    event = world.fresh_event(capacity=5)
    issuer = world.actors["issuer_a"]
    screen = world.client.get(f"{ISS}/events/{event.id}/check-in", headers=issuer.headers)
    assert screen.status_code == 200, screen.text
    token: str = screen.json()["token"]
    return token


def refused(world: World, token: object) -> None:
    resident = world.actors["resident"]
    response = world.client.post(
        "/api/v1/me/check-ins",
        headers={**resident.headers, "Idempotency-Key": str(uuid.uuid4())},
        json={"token": token},
    )
    assert response.status_code < 500, response.text
    body = response.json()
    if isinstance(token, str) and response.status_code == 422 and body["code"] in CODES:
        return
    # Not a string, or not a token's shape at all: refused by validation.
    assert (response.status_code, body["code"]) == (422, "validation_error"), response.text


def altered(token: str) -> Iterator[str]:
    """Every character of the token's base32 part replaced by the next base32 letter; the token
    cut short and run on; another origin; the path's marker changed."""
    head, tail = token.rsplit("/Q/", 1)
    for position, char in enumerate(tail):
        other = BASE32[(BASE32.index(char.upper()) + 1) % len(BASE32)]
        yield f"{head}/Q/{tail[:position]}{other}{tail[position + 1 :]}"
    yield f"{head}/Q/{tail[:-1]}"
    yield f"{head}/Q/{tail}A"
    yield f"{head}/Q/{tail[:-8]}"
    yield f"HTTPS://EVIL.EXAMPLE/Q/{tail}"
    yield f"{head}/R/{tail}"
    yield f"{head}/Q/{tail}===="


def test_every_altered_event_token_is_refused_and_writes_nothing(world: World) -> None:
    token = screen_token(world)
    before = world.snapshot()
    for text in altered(token):
        refused(world, text)
    assert world.snapshot() == before
    # The genuine token still checks the resident in: the refusals used no place.
    resident = world.actors["resident"]
    response = world.client.post(
        "/api/v1/me/check-ins",
        headers={**resident.headers, "Idempotency-Key": str(uuid.uuid4())},
        json={"token": token},
    )
    assert response.status_code == 201, response.text


def test_another_kinds_token_is_the_wrong_kind(world: World, clock: FakeClock) -> None:
    screen_token(world)  # the app's first signing key
    keys = world.app.state.services.keys
    origin = world.app.state.services.settings.public_origin
    payment = qrtokens.sign(
        qrtokens.PaymentToken(
            request_id=bytes(16), amount=100, expires_at=clock() + timedelta(seconds=60)
        ),
        keys,
        clock(),
        origin=origin,
    )
    before = world.snapshot()
    resident = world.actors["resident"]
    response = world.client.post(
        "/api/v1/me/check-ins",
        headers={**resident.headers, "Idempotency-Key": str(uuid.uuid4())},
        json={"token": payment},
    )
    assert (response.status_code, response.json()["code"]) == (422, "token_wrong_kind")
    assert world.snapshot() == before


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    st.one_of(
        st.text(max_size=300),
        st.text(alphabet=BASE32 + "abc=01/:.", max_size=200).map(
            lambda tail: "HTTP://127.0.0.1:8000/Q/" + tail
        ),
        st.integers(),
        st.none(),
        st.lists(st.text(max_size=3), max_size=2),
    )
)
def test_random_tokens_are_refused_never_a_5xx(world: World, token: object) -> None:
    before = world.snapshot()
    refused(world, token)
    assert world.snapshot() == before
