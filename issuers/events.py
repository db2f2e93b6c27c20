"""Volunteering events and check-in: a department's event for a ``volunteering`` program, and a
resident's claim of attendance (issue 16 part 5).

An event has a string id (``evt_…``), the ``event_id`` a department's CSV names too, so a claim
and a CSV row for the same resident and event share ONE once-key (``event:{id}``, planned by the
``volunteering`` module) and award once; and a numeric ``token_id`` (63 random bits, so it fits
a signed BIGINT and the event token's uint64) that the rotating event QR carries.

One claim, in one transaction (the caller's unit of work):

1. The resident's earlier attendance of the event answers again (``replayed``): nothing new is
   written and no capacity is used.
2. The event is open (``event_closed``) and ``now`` is in its check-in window
   (``outside_check_in_window``).
3. The attendance counter is raised conditionally (``attendance < capacity``; a CHECK holds
   ``attendance <= capacity``), which takes the event's row lock on PostgreSQL (SQLite writers
   serialize), so capacity is never exceeded: beyond it ``event_full``.
4. The award goes through ``issuers.awards.award`` (budget, caps, once per resident per event);
   a refusal there rolls the whole claim back, capacity included.

Points per attendance are the program's amount: the ``volunteering`` module plans no other.
"""

from __future__ import annotations

import enum
import secrets
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, Session, SQLModel, col, select

from issuers import awards
from issuers.errors import EventClosed, EventFull, OutsideCheckInWindow
from issuers.programs import get_program
from ledger import schema as ledger_schema
from points import audit, qrtokens
from points.auth import Principal
from points.errors import InvalidInput, NotFound
from points.registry import new_id
from points.sqlbase import UTCDateTime

#: The largest token id: 63 bits, so a signed BIGINT holds it (the token field is a uint64).
TOKEN_ID_MAX = 2**63 - 1


class EventStatus(enum.StrEnum):
    OPEN = "open"
    CLOSED = "closed"


class VolunteerEvent(SQLModel, table=True):
    __tablename__ = "volunteer_event"
    __table_args__ = (
        sa.CheckConstraint("status IN ('open', 'closed')", name="status"),
        sa.CheckConstraint("capacity > 0", name="capacity_positive"),
        sa.CheckConstraint("attendance >= 0 AND attendance <= capacity", name="within_capacity"),
        sa.CheckConstraint("ends_at > starts_at", name="event_times"),
        sa.CheckConstraint("closes_at > opens_at", name="check_in_window"),
    )

    id: str = Field(primary_key=True, max_length=32)
    token_id: int = Field(sa_column=sa.Column(ledger_schema.Id, nullable=False, unique=True))
    program_id: str = Field(foreign_key="program.id", max_length=32, index=True)
    name: str = Field(max_length=200)
    place: str = Field(max_length=200)
    starts_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))
    ends_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))
    opens_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))
    closes_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))
    capacity: int
    attendance: int = 0
    status: str = Field(default=EventStatus.OPEN, max_length=16)
    closed_reason: str | None = Field(default=None, max_length=500)
    created_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))


class EventAttendance(SQLModel, table=True):
    """One resident's check-in at one event, with the award it earned."""

    __tablename__ = "event_attendance"

    event_id: str = Field(foreign_key="volunteer_event.id", primary_key=True, max_length=32)
    resident_id: str = Field(foreign_key="resident.id", primary_key=True, max_length=32)
    award_id: int = Field(
        sa_column=sa.Column(ledger_schema.Id, sa.ForeignKey("award.id"), nullable=False)
    )
    created_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))


@dataclass(frozen=True, slots=True)
class NewEvent:
    program_id: str
    name: str
    place: str
    starts_at: datetime
    ends_at: datetime
    opens_at: datetime
    closes_at: datetime
    capacity: int


@dataclass(frozen=True, slots=True)
class CheckIn:
    event: VolunteerEvent
    award: awards.Award
    #: True when the resident had checked in before: nothing new was written.
    replayed: bool


def create_event(
    session: Session, actor: Principal, now: datetime, new: NewEvent, *, department_id: str | None
) -> VolunteerEvent:
    """A new open event of one of the department's ``volunteering`` programs."""
    program = get_program(session, new.program_id, department_id=department_id)
    if program.module != "volunteering":
        raise InvalidInput(
            f"program {program.id} is not a volunteering program", field="program_id"
        )
    if new.ends_at <= new.starts_at:
        raise InvalidInput("ends_at is not after starts_at", field="ends_at")
    if new.closes_at <= new.opens_at:
        raise InvalidInput("closes_at is not after opens_at", field="closes_at")
    if new.capacity <= 0:
        raise InvalidInput("capacity must be positive", field="capacity")
    event = VolunteerEvent(
        id=new_id("evt"),
        token_id=secrets.randbelow(TOKEN_ID_MAX) + 1,
        program_id=program.id,
        name=new.name,
        place=new.place,
        starts_at=new.starts_at,
        ends_at=new.ends_at,
        opens_at=new.opens_at,
        closes_at=new.closes_at,
        capacity=new.capacity,
        attendance=0,
        status=EventStatus.OPEN,
        created_at=now,
    )
    session.add(event)
    audit.record(
        session,
        actor=actor,
        action="event.create",
        object_type="volunteer_event",
        object_id=event.id,
        at=now,
        details={"program_id": program.id, "capacity": new.capacity},
    )
    session.flush()
    return event


def get_event(session: Session, event_id: str, *, department_id: str | None) -> VolunteerEvent:
    """The event; with ``department_id``, only if its program is that department's."""
    event = session.get(VolunteerEvent, event_id)
    if event is None:
        raise NotFound(f"no event {event_id}", object_id=event_id)
    try:
        get_program(session, event.program_id, department_id=department_id)
    except NotFound:
        raise NotFound(f"no event {event_id}", object_id=event_id) from None
    return event


def list_events(session: Session, program_id: str) -> list[VolunteerEvent]:
    """The program's events, soonest first."""
    return list(
        session.exec(
            select(VolunteerEvent)
            .where(VolunteerEvent.program_id == program_id)
            .order_by(col(VolunteerEvent.starts_at), col(VolunteerEvent.id))
        )
    )


def attendees(session: Session, event_id: str) -> list[str]:
    """The pseudonymous ids of the residents who checked in, in order of check-in."""
    rows = session.exec(
        select(EventAttendance.resident_id)
        .where(EventAttendance.event_id == event_id)
        .order_by(col(EventAttendance.created_at), col(EventAttendance.resident_id))
    )
    return list(rows)


def close_event(
    session: Session,
    actor: Principal,
    now: datetime,
    event_id: str,
    *,
    reason: str,
    department_id: str | None,
) -> VolunteerEvent:
    """Close the event early: no more check-ins (closing a closed event changes nothing)."""
    event = get_event(session, event_id, department_id=department_id)
    if event.status == EventStatus.CLOSED:
        return event
    event.status = EventStatus.CLOSED
    event.closed_reason = reason
    session.add(event)
    audit.record(
        session,
        actor=actor,
        action="event.close",
        object_type="volunteer_event",
        object_id=event.id,
        at=now,
        details={"reason": reason},
    )
    session.flush()
    return event


def current_token(
    event: VolunteerEvent, keys: qrtokens.KeySource, now: datetime, *, origin: str
) -> tuple[str, int]:
    """The event token of the current 30-second slot, signed with the active key, and the
    seconds it is still accepted: what the organizer's screen shows and refreshes."""
    token = qrtokens.EventToken(event_id=event.token_id, slot=qrtokens.slot_of(now))
    return qrtokens.sign(token, keys, now, origin=origin), token.seconds_left(now)


def check_in_with_token(
    session: Session,
    actor: Principal,
    now: datetime,
    text: str,
    *,
    keys: qrtokens.KeySource,
    origin: str,
    resident_id: str,
) -> CheckIn:
    """``check_in`` at the event a scanned event token names; a token that is not a valid
    event token of now is refused first (``TokenRefused``: token_expired, token_wrong_kind...).
    """
    token = qrtokens.verify(text, expect={qrtokens.Kind.EVENT}, keys=keys, now=now, origin=origin)
    assert isinstance(token, qrtokens.EventToken)
    return check_in(session, actor, now, token_id=token.event_id, resident_id=resident_id)


def check_in(
    session: Session, actor: Principal, now: datetime, *, token_id: int, resident_id: str
) -> CheckIn:
    """Record the resident's attendance at the event a verified event token names, and award
    it; see the module docstring for the order."""
    event = session.exec(select(VolunteerEvent).where(VolunteerEvent.token_id == token_id)).first()
    if event is None:
        raise NotFound("no such event", field="token")
    earlier = session.get(EventAttendance, (event.id, resident_id))
    if earlier is not None:
        award = session.get(awards.Award, earlier.award_id)
        assert award is not None
        return CheckIn(event, award, replayed=True)
    if event.status != EventStatus.OPEN:
        raise EventClosed(f"event {event.id} is closed")
    if not event.opens_at <= now < event.closes_at:
        raise OutsideCheckInWindow(
            f"check-in for event {event.id} is open from {event.opens_at.isoformat()} "
            f"until {event.closes_at.isoformat()}"
        )
    table = VolunteerEvent.__table__  # type: ignore[attr-defined]
    raised = session.connection().execute(
        sa.update(table)
        .where(table.c.id == event.id, table.c.attendance < table.c.capacity)
        .values(attendance=table.c.attendance + 1)
    )
    if raised.rowcount != 1:
        raise EventFull(f"event {event.id} is full ({event.capacity} places)")
    result = awards.award(
        session,
        actor,
        now,
        awards.AwardRequest(
            program_id=event.program_id,
            resident_id=resident_id,
            record_id=f"checkin:{event.id}:{resident_id}",
            details={"event_id": event.id},
        ),
        department_id=None,
    )
    assert result.award.id is not None
    session.add(
        EventAttendance(
            event_id=event.id,
            resident_id=resident_id,
            award_id=result.award.id,
            created_at=now,
        )
    )
    session.flush()
    session.refresh(event)
    return CheckIn(event, result.award, replayed=False)
