"""Volunteering events and check-in (``issuers.events``), on SQLite and PostgreSQL: a claim
awards once through the award rules, replays, refuses a closed, early, late or full event
without writing anything, shares its once-key with a CSV row for the same event, and capacity
holds under 100 concurrent claims."""

from __future__ import annotations

import json
from collections import Counter
from datetime import timedelta

from concurrency import run_together
from conftest import FakeClock
from earning_helpers import ACTOR, Earning
from sqlalchemy.engine import Engine
from test_earning import NOON, funded, refused
from token_helpers import ORIGIN, key_ring

from issuers import events, programs
from issuers.errors import AlreadyAwarded, EventClosed, EventFull, OutsideCheckInWindow
from issuers.events import CheckIn, NewEvent, VolunteerEvent
from points import qrtokens
from points.errors import InvalidInput, NotFound, TokenExpired, TokenWrongKind


def new_event(earning: Earning, program_id: str, *, capacity: int = 10) -> VolunteerEvent:
    new = NewEvent(
        program_id=program_id,
        name="河川清掃",
        place="多摩川河川敷",
        starts_at=NOON,
        ends_at=NOON + timedelta(hours=2),
        opens_at=NOON - timedelta(minutes=30),
        closes_at=NOON + timedelta(hours=2),
        capacity=capacity,
    )
    return earning.write(
        lambda s: events.create_event(s, ACTOR, earning.clock(), new, department_id=None)
    )


def claim(earning: Earning, event: VolunteerEvent, resident: str) -> CheckIn:
    return earning.write(
        lambda s: events.check_in(
            s, ACTOR, earning.clock(), token_id=event.token_id, resident_id=resident
        )
    )


def volunteering(engine: Engine, clock: FakeClock, **options: object) -> tuple[Earning, str]:
    earning, _, program = funded(engine, clock, module="volunteering", amount=50, **options)
    return earning, program.id


def test_a_check_in_awards_the_programs_amount_once_and_replays(
    engine: Engine, clock: FakeClock
) -> None:
    earning, program_id = volunteering(engine, clock)
    event = new_event(earning, program_id)
    resident = earning.resident()

    first = claim(earning, event, resident)
    written = earning.written()
    again = claim(earning, event, resident)

    assert not first.replayed and first.award.amount == 50
    assert json.loads(first.award.details) == {"event_id": event.id}
    assert again.replayed and again.award.id == first.award.id
    assert earning.written() == written
    assert again.event.attendance == 1
    assert earning.read(lambda s: events.attendees(s, event.id)) == [resident]


def test_a_claim_and_a_csv_row_for_the_same_event_share_one_once_key(
    engine: Engine, clock: FakeClock
) -> None:
    earning, program_id = volunteering(engine, clock)
    event = new_event(earning, program_id)
    program = earning.read(lambda s: programs.get_program(s, program_id))
    resident, other = earning.resident(), earning.resident()
    claim(earning, event, resident)

    refused(
        earning,
        AlreadyAwarded,
        "already_awarded",
        lambda: earning.award(program, resident, "CSV-1", {"event_id": event.id}),
    )
    # And the other way round: the CSV row first, then the claim awards nothing.
    earning.award(program, other, "CSV-2", {"event_id": event.id})
    refused(earning, AlreadyAwarded, "already_awarded", lambda: claim(earning, event, other))


def test_a_closed_early_or_late_event_refuses_a_claim_and_writes_nothing(
    engine: Engine, clock: FakeClock
) -> None:
    earning, program_id = volunteering(engine, clock)
    event = new_event(earning, program_id)
    resident = earning.resident()

    clock.now = NOON - timedelta(minutes=31)
    refused(
        earning,
        OutsideCheckInWindow,
        "outside_check_in_window",
        lambda: claim(earning, event, resident),
    )
    clock.now = NOON + timedelta(hours=2)
    refused(
        earning,
        OutsideCheckInWindow,
        "outside_check_in_window",
        lambda: claim(earning, event, resident),
    )
    clock.now = NOON
    earning.write(
        lambda s: events.close_event(
            s, ACTOR, clock(), event.id, reason="雨天中止", department_id=None
        )
    )
    refused(earning, EventClosed, "event_closed", lambda: claim(earning, event, resident))


def test_a_full_event_refuses_the_next_resident(engine: Engine, clock: FakeClock) -> None:
    earning, program_id = volunteering(engine, clock)
    event = new_event(earning, program_id, capacity=1)
    first, second = earning.resident(), earning.resident()
    claim(earning, event, first)

    refused(earning, EventFull, "event_full", lambda: claim(earning, event, second))
    assert claim(earning, event, first).replayed


def test_events_belong_to_the_departments_volunteering_programs(
    engine: Engine, clock: FakeClock
) -> None:
    earning, program_id = volunteering(engine, clock)
    fixed = earning.program(earning.point_type())
    other = earning.other_department()
    event = new_event(earning, program_id)

    refused(earning, InvalidInput, "validation_error", lambda: new_event(earning, fixed.id))
    refused(
        earning,
        NotFound,
        "not_found",
        lambda: earning.read(lambda s: events.get_event(s, event.id, department_id=other.id)),
    )
    assert (
        earning.read(
            lambda s: events.get_event(s, event.id, department_id=earning.department().id)
        ).id
        == event.id
    )


def test_100_concurrent_claims_for_60_places_award_exactly_60(
    engine: Engine, clock: FakeClock
) -> None:
    earning, program_id = volunteering(engine, clock)
    event = new_event(earning, program_id, capacity=60)
    residents = [earning.resident() for _ in range(100)]

    outcomes = run_together(
        [lambda resident=resident: claim(earning, event, resident) for resident in residents]
    )

    kinds = Counter(
        type(value).__name__ if status == "error" else "awarded" for status, value in outcomes
    )
    assert kinds == {"awarded": 60, "EventFull": 40}, outcomes
    assert len(earning.read(lambda s: events.attendees(s, event.id))) == 60
    stored = earning.read(lambda s: events.get_event(s, event.id, department_id=None))
    assert stored.attendance == 60


def test_a_screens_token_checks_in_and_a_photo_of_it_a_minute_later_is_expired(
    engine: Engine, clock: FakeClock
) -> None:
    earning, program_id = volunteering(engine, clock)
    event = new_event(earning, program_id)
    ring = key_ring()
    first, late = earning.resident(), earning.resident()
    text, seconds_left = events.current_token(event, ring, clock(), origin=ORIGIN)

    def scan(resident: str) -> CheckIn:
        return earning.write(
            lambda s: events.check_in_with_token(
                s, ACTOR, clock(), text, keys=ring, origin=ORIGIN, resident_id=resident
            )
        )

    assert 30 < seconds_left <= 60
    assert scan(first).award.amount == 50
    clock.now = NOON + timedelta(seconds=61)
    refused(earning, TokenExpired, "token_expired", lambda: scan(late))
    payment = qrtokens.sign(
        qrtokens.PaymentToken(
            request_id=qrtokens.new_id(),
            amount=100,
            expires_at=clock() + timedelta(minutes=1),
        ),
        ring,
        clock(),
        origin=ORIGIN,
    )
    text = payment
    refused(earning, TokenWrongKind, "token_wrong_kind", lambda: scan(late))


def test_concurrent_claims_by_one_resident_award_once_and_use_one_place(
    engine: Engine, clock: FakeClock
) -> None:
    earning, program_id = volunteering(engine, clock)
    event = new_event(earning, program_id, capacity=5)
    resident = earning.resident()

    outcomes = run_together([lambda: claim(earning, event, resident) for _ in range(10)])

    assert all(status == "ok" for status, _ in outcomes), outcomes
    results = [value for _, value in outcomes]
    assert sorted(result.replayed for result in results) == [False] + [True] * 9
    assert len({result.award.id for result in results}) == 1
    stored = earning.read(lambda s: events.get_event(s, event.id, department_id=None))
    assert stored.attendance == 1
