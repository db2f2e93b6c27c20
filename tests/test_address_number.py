"""Departments name residents by their address number (宛名番号) instead of the pseudonymous
resident id: single awards through the API, CSV rows of a bulk upload, and the issuer's lookup
``GET /api/v1/issuer/residents?address_number=...``; on SQLite and PostgreSQL.

What must hold: exactly one of ``resident_id`` and ``address_number`` names the resident; an
unknown number is refused like an unknown id and a number two residents share is refused too;
the award is stored under the resident id and the number is written nowhere an award writes; a
file's numbers are looked up in one statement however many rows it has.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import sqlalchemy as sa
from api_world import World, assert_problem, unique, unique_address_number
from conftest import FakeClock
from earning_helpers import ACTOR
from sqlalchemy.engine import Engine
from sqlmodel import Session
from test_bulk import AMOUNT, Desk, desk, encode

from issuers import awards
from issuers.bulk import RowError
from points import access, people
from points.errors import InvalidInput
from points.registry import Resident

ISS = "/api/v1/issuer"
C = "/api/v1/counter"

#: Tables whose text must never hold an address number given for an award.
AWARD_TABLES = (
    "award",
    "award_once",
    "award_counter",
    "award_upload",
    "wallet",
    "wallet_bucket",
    "ledger_entry",
    "ledger_account",
    "audit_event",
)


def stored_text(engine: Engine) -> str:
    """Every value of ``AWARD_TABLES``, as one string to search."""
    with engine.connect() as connection:
        return "\n".join(
            repr(list(connection.exec_driver_sql(f"SELECT * FROM {table}").all()))
            for table in AWARD_TABLES
        )


def numbered_resident(session: Session, number: str, now: Any) -> str:
    return people.create_resident(
        session,
        access.SYSTEM,
        now,
        name="番号 太郎",
        address_number=number,
        birth_year=1960,
        verified=True,
    ).id


# Single awards through the API -----------------------------------------------------------


def address_number_of(world: World, resident_id: str) -> str:
    number = world.read(lambda session: people.get(session, Resident, resident_id).address_number)
    assert number is not None
    return number


def post_award(world: World, program_id: str, body: dict[str, Any], key: str | None = None) -> Any:
    headers = {**world.actors["issuer_a"].headers, "Idempotency-Key": key or str(uuid.uuid4())}
    return world.client.post(f"{ISS}/programs/{program_id}/awards", headers=headers, json=body)


@contextmanager
def nothing_written(world: World) -> Iterator[None]:
    before = world.snapshot()
    yield
    assert world.snapshot() == before


def test_an_award_by_address_number_is_stored_under_the_resident_id(shared_world: World) -> None:
    world = shared_world
    program_id = world.programs["a"]
    resident = world.fresh_resident()
    number = address_number_of(world, resident.id)
    record = unique("by-number")

    response = post_award(world, program_id, {"address_number": number, "record_id": record})

    assert response.status_code == 201, response.text
    body = response.json()
    assert body["resident_id"] == resident.id
    assert "address_number" not in body and number not in response.text
    stored = world.read(
        lambda session: [
            (award.resident_id, award.record_id)
            for award in awards.list_awards(
                session, program_id, fiscal_year=None, before=None, limit=5
            )
        ]
    )
    assert (resident.id, record) in stored
    assert number not in stored_text(world.engine)
    # The same record again, by number or by id, is the same event: a replay.
    for again in ({"address_number": number}, {"resident_id": resident.id}):
        replay = post_award(world, program_id, {**again, "record_id": record})
        assert replay.status_code == 200, replay.text
        assert (replay.json()["replayed"], replay.json()["id"]) == (True, body["id"])


def test_both_or_neither_resident_field_is_a_validation_error_naming_them(
    shared_world: World,
) -> None:
    world = shared_world
    program_id = world.programs["a"]
    resident = world.fresh_resident()
    number = address_number_of(world, resident.id)
    with nothing_written(world):
        for who in ({"resident_id": resident.id, "address_number": number}, {}):
            response = post_award(world, program_id, {**who, "record_id": unique("r")})
            body = assert_problem(response, 422, "validation_error")
            (error,) = body["errors"]
            assert error["location"] == ["body"]
            assert "exactly one of resident_id and address_number" in error["message"]


def test_an_unknown_address_number_is_not_found_like_an_unknown_resident_id(
    shared_world: World,
) -> None:
    world = shared_world
    program_id = world.programs["a"]
    unknown = unique_address_number()
    with nothing_written(world):
        by_id = assert_problem(
            post_award(world, program_id, {"resident_id": "res_nobody0000", "record_id": "R-u"}),
            404,
            "not_found",
        )
        by_number = assert_problem(
            post_award(world, program_id, {"address_number": unknown, "record_id": "R-u"}),
            404,
            "not_found",
        )
    assert (by_id["field"], by_number["field"]) == ("resident_id", "address_number")
    assert by_number["detail"] == f"no resident has address number {unknown}"
    assert "res_" not in by_number["detail"]
    # A malformed number is refused before anything is looked up.
    for bad in ("12-34", "", "１２３", "1" * 21):
        assert_problem(
            post_award(world, program_id, {"address_number": bad, "record_id": "R-b"}),
            422,
            "validation_error",
        )


def test_a_number_two_residents_share_is_refused_as_a_conflict(shared_world: World) -> None:
    world = shared_world
    number = unique_address_number()
    now = world.now()
    for _ in range(2):
        world.write(lambda session: numbered_resident(session, number, now))
    with nothing_written(world):
        body = assert_problem(
            post_award(world, world.programs["a"], {"address_number": number, "record_id": "R-2"}),
            409,
            "conflict",
        )
    assert body["field"] == "address_number"
    assert number in body["detail"] and "res_" not in body["detail"]


def test_the_service_refuses_both_or_neither_too(engine: Engine, clock: FakeClock) -> None:
    d = desk(engine, clock, module="fixed_award", amount=100)
    resident = d.earning.resident()
    for resident_id, number in ((resident, "123"), (None, None)):
        request = awards.AwardRequest(d.program.id, resident_id, "R-1", {}, address_number=number)
        with pytest.raises(InvalidInput, match="exactly one of"):
            d.earning.write(
                lambda s, request=request: awards.award(  # type: ignore[misc]
                    s, ACTOR, clock(), request, department_id=d.program.department_id
                )
            )
    assert d.earning.count("award") == 0


# CSV rows ---------------------------------------------------------------------------------


def numbered(d: Desk, count: int) -> list[tuple[str, str]]:
    """``count`` new residents with address numbers: (resident id, number)."""
    numbers = [unique_address_number() for _ in range(count)]
    now = d.earning.clock()
    ids = d.earning.write(
        lambda session: [numbered_resident(session, number, now) for number in numbers]
    )
    return list(zip(ids, numbers, strict=True))


def test_a_file_by_address_number_awards_each_resident_under_their_id(
    engine: Engine, clock: FakeClock
) -> None:
    d = desk(engine, clock)
    residents = numbered(d, 4)
    lines = ["address_number,record_id,checkup_type"] + [
        f"{number},HC-{n},specific_health_checkup" for n, (_id, number) in enumerate(residents)
    ]

    result = d.upload(encode(lines))

    assert (result.upload.rows, result.upload.awarded, result.upload.failed) == (4, 4, 0)
    stored = sorted((a.record_id, a.resident_id) for a in d.earning.awards_of(d.program))
    assert stored == sorted((f"HC-{n}", rid) for n, (rid, _number) in enumerate(residents))
    for resident_id, _number in residents:
        assert d.posted(resident_id) == [AMOUNT]
    text = stored_text(engine)
    assert not [number for _id, number in residents if number in text]
    d.assert_settled(result.upload)
    # The same file again awards nothing twice.
    again = d.upload(encode(lines))
    assert again.replayed and d.earning.count("award") == 4


def test_a_mixed_file_names_each_resident_one_way_and_reports_the_rest_on_their_lines(
    engine: Engine, clock: FakeClock
) -> None:
    d = desk(engine, clock)
    (by_id, _), (by_number_id, by_number), (both_id, both_number) = numbered(d, 3)
    shared = unique_address_number()
    now = d.earning.clock()
    d.earning.write(lambda session: [numbered_resident(session, shared, now) for _ in range(2)])
    unknown = unique_address_number()
    lines = [
        "resident_id,address_number,record_id,checkup_type",  # 1
        f"{by_id},,R-1,specific_health_checkup",  # 2: by id
        f",{by_number},R-2,specific_health_checkup",  # 3: by number
        f"{both_id},{both_number},R-3,specific_health_checkup",  # 4: both
        ",,R-4,specific_health_checkup",  # 5: neither
        f",{unknown},R-5,specific_health_checkup",  # 6: nobody has it
        f",{shared},R-6,specific_health_checkup",  # 7: two residents have it
        f",{by_number},R-7,specific_health_checkup",  # 8: line 3's checkup again
        ",12a,R-8,specific_health_checkup",  # 9
    ]

    errors = d.refused(encode(lines))

    assert errors == [
        RowError(4, "address_number", "give resident_id or address_number, not both"),
        RowError(5, "resident_id", "give resident_id or address_number"),
        RowError(6, "address_number", f"no resident has address number {unknown}"),
        RowError(
            7,
            "address_number",
            f"more than one resident has address number {shared}; name the resident by "
            "resident_id, or have the counter correct the registry",
        ),
        RowError(8, "record_id", "FY2026:specific_health_checkup is also on line 3"),
        RowError(9, "address_number", "not an address number (1 to 20 digits): '12a'"),
    ]
    # The good lines alone are awarded, each to the resident it names.
    result = d.upload(encode(lines[:3]))
    assert result.upload.awarded == 2
    assert sorted((a.record_id, a.resident_id) for a in d.earning.awards_of(d.program)) == [
        ("R-1", by_id),
        ("R-2", by_number_id),
    ]


def test_the_numbers_of_a_file_are_looked_up_in_one_statement(
    engine: Engine, clock: FakeClock
) -> None:
    """The check of a 1,000-row file by number runs as many statements as a 10-row one."""
    d = desk(engine, clock, module="fixed_award", amount=1)
    residents = numbered(d, 1_000)

    def statements_to_check(rows: list[tuple[str, str]]) -> int:
        lines = ["address_number,record_id"] + [f"{n},R-{k}" for k, (_i, n) in enumerate(rows)]
        data = encode(lines)
        counted: list[str] = []

        def count(*args: Any) -> None:
            counted.append(args[2])

        sa.event.listen(engine, "before_cursor_execute", count)
        try:
            plan, errors = d.check(data)
        finally:
            sa.event.remove(engine, "before_cursor_execute", count)
        assert errors == [] and plan is not None and len(plan.to_award) == len(rows)
        return len(counted)

    assert statements_to_check(residents) == statements_to_check(residents[:10])


# The issuer's lookup ----------------------------------------------------------------------


def test_an_issuer_looks_a_resident_up_by_number_and_learns_only_the_id_and_wallet(
    shared_world: World,
) -> None:
    world = shared_world
    resident = world.fresh_resident()
    number = address_number_of(world, resident.id)

    def look_up(actor: str = "issuer_a") -> Any:
        response = world.client.get(
            f"{ISS}/residents",
            params={"address_number": number},
            headers=world.actors[actor].headers,
        )
        assert response.status_code == 200, response.text
        return response.json()

    with nothing_written(world):
        # No wallet yet: the first award opens one. Any department may look up.
        assert look_up() == {"resident_id": resident.id, "wallet_open": False}
        assert look_up("issuer_b") == {"resident_id": resident.id, "wallet_open": False}
    awarded = post_award(
        world, world.programs["a"], {"address_number": number, "record_id": unique("w")}
    )
    assert awarded.status_code == 201, awarded.text
    assert look_up() == {"resident_id": resident.id, "wallet_open": True}
    closed = world.client.post(
        f"{C}/residents/{resident.id}/wallets/pt/close",
        headers={**world.counter.headers, "Idempotency-Key": str(uuid.uuid4())},
        json={"reason": "転出"},
    )
    assert closed.status_code == 200, closed.text
    assert look_up() == {"resident_id": resident.id, "wallet_open": False}


def test_the_lookup_of_an_unknown_number_is_404_naming_only_that_number(
    shared_world: World,
) -> None:
    world = shared_world
    unknown = unique_address_number()
    with nothing_written(world):
        response = world.client.get(
            f"{ISS}/residents?address_number={unknown}", headers=world.actors["issuer_a"].headers
        )
        body = assert_problem(response, 404, "not_found")
        assert body["detail"] == f"no resident has address number {unknown}"
        assert_problem(
            world.client.get(
                f"{ISS}/residents?address_number=12-3", headers=world.actors["issuer_a"].headers
            ),
            422,
            "validation_error",
        )


@pytest.mark.parametrize("actor", ["counter", "resident", "merchant_a", "finance", "admin"])
def test_only_issuers_look_residents_up_by_number(shared_world: World, actor: str) -> None:
    world = shared_world
    number = address_number_of(world, world.resident.id)
    response = world.client.get(
        f"{ISS}/residents?address_number={number}", headers=world.actors[actor].headers
    )
    body = assert_problem(response, 403, "forbidden")
    assert number not in response.text and world.resident.id not in body["detail"]
