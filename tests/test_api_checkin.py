"""Volunteering check-in through the API alone, on SQLite and PostgreSQL: a department creates
an event, its screen fetches the rotating token, residents check in, replay, are refused a
photographed token a minute later, a full event, a closed window and an event closed early."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from api_world import FISCAL_YEAR, Actor, World, assert_problem, open_world
from conftest import FakeClock
from sqlalchemy.engine import Engine

ISS = "/api/v1/issuer"


@pytest.fixture
def world(engine: Engine, clock: FakeClock, database_url: str) -> Iterator[World]:
    with open_world(engine, clock, database_url, record_verify_run=False) as built:
        yield built


def check_in(world: World, resident: Actor, token: str, key: str | None = None) -> Any:
    return world.client.post(
        "/api/v1/me/check-ins",
        headers={**resident.headers, "Idempotency-Key": key or str(uuid.uuid4())},
        json={"token": token},
    )


def test_the_check_in_story(world: World, clock: FakeClock) -> None:
    issuer = world.actors["issuer_a"]
    program_id = world.fresh_program("a", module="volunteering", budget={FISCAL_YEAR: 10_000})
    world.fresh_event()  # the app's first signing key
    now = clock()
    created = world.client.post(
        f"{ISS}/programs/{program_id}/events",
        headers=issuer.headers,
        json={
            "name": "河川清掃",
            "place": "多摩川河川敷",
            "starts_at": now.isoformat(),
            "ends_at": (now + timedelta(hours=2)).isoformat(),
            "opens_at": now.isoformat(),
            "closes_at": (now + timedelta(hours=1)).isoformat(),
            "capacity": 2,
        },
    )
    assert created.status_code == 201, created.text
    event_id = created.json()["id"]
    assert world.last_audit()["action"] == "event.create"
    # Each attendance earns the program's amount, shown with the event.
    assert created.json()["points_per_attendance"] == 100

    screen = world.client.get(f"{ISS}/events/{event_id}/check-in", headers=issuer.headers)
    assert screen.status_code == 200, screen.text
    token = screen.json()["token"]
    assert screen.json()["svg"].startswith("<")
    assert 30 < screen.json()["seconds_left"] <= 60

    first, second, third = (world.fresh_resident(with_token=True) for _ in range(3))
    claimed = check_in(world, first, token)
    assert claimed.status_code == 201, claimed.text
    assert claimed.json()["amount"] == 100 and not claimed.json()["replayed"]
    again = check_in(world, first, token)
    assert again.status_code == 200 and again.json()["replayed"], again.text
    assert again.json()["award_id"] == claimed.json()["award_id"]

    clock.advance(seconds=61)
    assert_problem(check_in(world, second, token), 422, "token_expired")
    token = world.client.get(f"{ISS}/events/{event_id}/check-in", headers=issuer.headers).json()[
        "token"
    ]
    assert check_in(world, second, token).status_code == 201
    assert_problem(check_in(world, third, token), 409, "event_full")

    attendance = world.client.get(f"{ISS}/events/{event_id}/attendance", headers=issuer.headers)
    assert attendance.json() == {
        "event_id": event_id,
        "attendance": 2,
        "resident_ids": [first.id, second.id],
    }
    listed = world.client.get(f"{ISS}/programs/{program_id}/events", headers=issuer.headers)
    assert [(e["id"], e["attendance"]) for e in listed.json()] == [(event_id, 2)]
    other = world.client.get(
        f"{ISS}/events/{event_id}/attendance", headers=world.actors["issuer_b"].headers
    )
    assert_problem(other, 404, "not_found")


def test_a_window_that_closed_and_an_event_closed_early_refuse(
    world: World, clock: FakeClock
) -> None:
    issuer = world.actors["issuer_a"]
    late, early = world.fresh_event(), world.fresh_event()
    resident = world.fresh_resident(with_token=True)

    def token_of(event_id: str) -> str:
        screen = world.client.get(f"{ISS}/events/{event_id}/check-in", headers=issuer.headers)
        assert screen.status_code == 200, screen.text
        return str(screen.json()["token"])

    closed = world.client.post(
        f"{ISS}/events/{early.id}/close", headers=issuer.headers, json={"reason": "雨天中止"}
    )
    assert closed.status_code == 200 and closed.json()["status"] == "closed", closed.text
    assert world.last_audit()["action"] == "event.close"
    assert_problem(check_in(world, resident, token_of(early.id)), 409, "event_closed")

    clock.advance(hours=1)
    assert_problem(check_in(world, resident, token_of(late.id)), 409, "outside_check_in_window")
    assert (
        world.client.get(f"{ISS}/events/{late.id}/attendance", headers=issuer.headers).json()[
            "attendance"
        ]
        == 0
    )
