"""Earning through the HTTP API: point types and programs (admin), budgets (finance), awards
(issuers), wallets (residents) and wallet closure (counter), on SQLite and, when
``POINTS_TEST_POSTGRES_URL`` is set, PostgreSQL.

Every test gets a world of its own (``tests/api_world.py``): most move the clock, and the
refusals compare row counts before and after. The world's clock starts at 2026-04-01 00:00 UTC
(09:00 in Tokyo, the first day of FY2026); staff tokens live 90 days, resident tokens 400.

The races (section 7) run over HTTP in threads, each with a TestClient of its own. Where one
interleaving matters, PostgreSQL tests force it with a gate: a transaction holding a row lock
the requests need, released once they wait on it. SQLite serialises writers, so there the same
requests simply run one after the other.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from api_world import Actor, World, assert_problem, unique
from concurrency import wait_for_lock_waiters
from conftest import FakeClock
from fastapi.testclient import TestClient
from sqlmodel import Session

from ledger import Entry, LedgerTx, Side
from points import spending
from points.pointtypes import find_point_type
from points.registry import StaffRole
from points.uow import unit_of_work

A = "/api/v1/admin"
B = "/api/v1/budgets"
ISS = "/api/v1/issuer"
ME = "/api/v1/me"
C = "/api/v1/counter"

#: What a TestClient returns.
Reply = Any


# Helpers ----------------------------------------------------------------------------------


def ok(response: Reply, status: int = 200) -> Any:
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json")
    return response.json()


def new_key() -> str:
    return str(uuid.uuid4())


def keyed(actor: Actor, key: str | None = None) -> dict[str, str]:
    """The actor's headers with an Idempotency-Key (a new one unless given)."""
    return {**actor.headers, "Idempotency-Key": key or new_key()}


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def award(
    world: World,
    program_id: str,
    resident_id: str,
    record_id: str | None = None,
    *,
    actor: Actor | None = None,
    key: str | None = None,
    client: TestClient | None = None,
    **extra: Any,
) -> Reply:
    """POST an award (issuer_a and a new Idempotency-Key unless told otherwise)."""
    body = {"resident_id": resident_id, "record_id": record_id or unique("rec"), **extra}
    return (client or world.client).post(
        f"{ISS}/programs/{program_id}/awards",
        headers=keyed(actor or world.actors["issuer_a"], key),
        json=body,
    )


def awarded(world: World, program_id: str, resident_id: str, **extra: Any) -> dict[str, Any]:
    """An award that must succeed (201)."""
    body: dict[str, Any] = ok(award(world, program_id, resident_id, **extra), 201)
    return body


def budget(world: World, program_id: str, year: int = 2026) -> dict[str, Any]:
    """The budget as finance sees it."""
    body: dict[str, Any] = ok(
        world.client.get(f"{B}/{program_id}/{year}", headers=world.finance.headers)
    )
    return body


def ledger_rows(world: World) -> dict[str, int]:
    """Row counts of the ledger's own tables (``World.snapshot`` counts only entries)."""
    with world.engine.connect() as connection:
        return {
            table: int(connection.exec_driver_sql(f"SELECT COUNT(*) FROM {table}").scalar_one())
            for table in ("ledger", "ledger_account", "ledger_posting")
        }


def state(world: World, program_ids: tuple[str, ...]) -> dict[str, Any]:
    return {
        "rows": world.snapshot(),
        "ledger": ledger_rows(world),
        "budgets": {pid: budget(world, pid) for pid in program_ids},
    }


@contextmanager
def nothing_written(world: World, *program_ids: str) -> Iterator[None]:
    """No row of any table an API call may write to is added or removed, and the programs'
    FY2026 budgets are unchanged."""
    before = state(world, program_ids)
    yield
    assert state(world, program_ids) == before


def wallet_of(world: World, resident: Actor, code: str = "pt") -> dict[str, Any]:
    body: dict[str, Any] = ok(world.client.get(f"{ME}/wallets/{code}", headers=resident.headers))
    return body


def history(world: World, resident: Actor, code: str = "pt", query: str = "") -> dict[str, Any]:
    body: dict[str, Any] = ok(
        world.client.get(f"{ME}/wallets/{code}/history{query}", headers=resident.headers)
    )
    return body


def set_status(world: World, program_id: str, status: str) -> None:
    changed = ok(
        world.client.post(
            f"{A}/programs/{program_id}/status",
            headers=world.admin.headers,
            json={"status": status, "reason": "test"},
        )
    )
    assert changed["status"] == status


def new_point_type_body(**fields: Any) -> dict[str, Any]:
    return {
        "code": unique("t").replace("-", "_")[:32],
        "name_ja": "試験ポイント",
        "name_en": "Test points",
        **fields,
    }


EMPTY_NOTICE = {"expiring_soon": None, "notice_ja": None, "notice_en": None}


# 1. The issue's "Done when" story --------------------------------------------------------


def test_done_when_story_through_the_api_alone(world: World, clock: FakeClock) -> None:
    client, admin, finance = world.client, world.admin.headers, world.finance.headers
    issuer = world.actors["issuer_a"]

    # An admin creates a point type and a health-checkup program for department a.
    point_type = ok(
        client.post(
            f"{A}/point-types",
            headers=admin,
            json={"code": "kenko", "name_ja": "健康ポイント", "name_en": "Health points"},
        ),
        201,
    )
    assert point_type["id"].startswith("pty_")
    assert isinstance(point_type["ledger_id"], int)
    assert point_type == {
        **point_type,
        "code": "kenko",
        "name_ja": "健康ポイント",
        "name_en": "Health points",
        "unit": "pt",
        "expiry_rule": "months",
        "expiry_months": 12,
        "expiry_date": None,
        "transferable": False,
        "issuer": "city",
        "funding": "free",
        "psa_override_reason": None,
        "created_at": "2026-04-01T00:00:00Z",
    }
    assert ok(client.get(f"{A}/point-types/{point_type['id']}", headers=admin)) == point_type
    assert point_type in ok(client.get(f"{A}/point-types", headers=admin))

    program = ok(
        client.post(
            f"{A}/programs",
            headers=admin,
            json={
                "department_id": world.departments["a"],
                "point_type_id": point_type["id"],
                "module": "health_checkup",
                "name_ja": "特定健診受診ポイント",
                "name_en": "Specific health checkup",
                "amount": 500,
                "valid_from": "2026-04-01",
                "config": {"checkup_types": ["specific_health_checkup"]},
            },
        ),
        201,
    )
    program_id = program["id"]
    assert program_id.startswith("prg_")
    assert program == {
        **program,
        "department_id": world.departments["a"],
        "point_type_id": point_type["id"],
        "module": "health_checkup",
        "amount": 500,
        "valid_from": "2026-04-01",
        "valid_until": None,
        "cap_per_day": None,
        "cap_per_month": None,
        "cap_per_fiscal_year": None,
        "status": "draft",
        "config": {"checkup_types": ["specific_health_checkup"]},
    }
    # A draft awards nothing.
    resident = world.fresh_resident(with_token=True)
    assert_problem(
        award(world, program_id, resident.id, details={"checkup_type": "specific_health_checkup"}),
        409,
        "program_not_active",
    )
    activated = ok(
        client.post(
            f"{A}/programs/{program_id}/status",
            headers=admin,
            json={"status": "active", "reason": "council approved"},
        )
    )
    assert activated == {**program, "status": "active", "updated_at": activated["updated_at"]}

    # Finance allocates 10,000 for FY2026 (a retry with the same key allocates nothing more).
    allocation_key = new_key()
    allocation = client.post(
        f"{B}/{program_id}/2026/allocations",
        headers={**finance, "Idempotency-Key": allocation_key},
        json={"amount": 10_000, "reason": "FY2026 budget"},
    )
    allocated = ok(allocation, 201)
    assert "Idempotent-Replayed" not in allocation.headers
    assert isinstance(allocated["entry_id"], int)
    assert allocated["budget"] == {
        "program_id": program_id,
        "fiscal_year": 2026,
        "status": "open",
        "allocated": 10_000,
        "awarded": 0,
        "awards": 0,
        "residents_awarded": 0,
        "remaining": 10_000,
    }
    retry = client.post(
        f"{B}/{program_id}/2026/allocations",
        headers={**finance, "Idempotency-Key": allocation_key},
        json={"amount": 10_000, "reason": "FY2026 budget"},
    )
    assert ok(retry, 201) == allocated
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert budget(world, program_id)["allocated"] == 10_000

    # 2026-05-31 16:00 UTC is June 1 in Tokyo: valid until the end of June 2027.
    clock.now = utc(2026, 5, 31, 16)
    created = ok(
        award(
            world,
            program_id,
            resident.id,
            "HC-2026-000123",
            details={"checkup_type": "specific_health_checkup"},
        ),
        201,
    )
    assert isinstance(created["id"], int)
    assert isinstance(created["entry_id"], int)
    assert created == {
        **created,
        "program_id": program_id,
        "record_id": "HC-2026-000123",
        "resident_id": resident.id,
        "amount": 500,
        "fiscal_year": 2026,
        "occurred_on": "2026-06-01",
        "valid_until": "2027-06-30",
        "created_at": "2026-05-31T16:00:00Z",
        "replayed": False,
    }

    # The department sees its program, its status for the year, and the award.
    mine = ok(client.get(f"{ISS}/programs", headers=issuer.headers))
    assert {item["department_id"] for item in mine["items"]} == {world.departments["a"]}
    assert {**program, "status": "active", "updated_at": activated["updated_at"]} in mine["items"]
    assert ok(client.get(f"{ISS}/programs/{program_id}", headers=issuer.headers))["status"] == (
        "active"
    )
    status = ok(client.get(f"{ISS}/programs/{program_id}/budgets/2026", headers=issuer.headers))
    assert status == {
        "program_id": program_id,
        "fiscal_year": 2026,
        "status": "open",
        "allocated": 10_000,
        "awarded": 500,
        "awards": 1,
        "residents_awarded": 1,
        "remaining": 9_500,
    }
    assert budget(world, program_id) == status
    listed = ok(client.get(f"{ISS}/programs/{program_id}/awards", headers=issuer.headers))
    assert listed == {"items": [created], "next_cursor": None}
    by_year = f"{ISS}/programs/{program_id}/awards?fiscal_year="
    assert ok(client.get(f"{by_year}2026", headers=issuer.headers))["items"] == [created]
    assert ok(client.get(f"{by_year}2025", headers=issuer.headers))["items"] == []

    # The resident sees the points, when they expire, and a line naming the program.
    wallet = wallet_of(world, resident, "kenko")
    assert wallet == {
        "point_type": "kenko",
        "name_ja": "健康ポイント",
        "name_en": "Health points",
        "unit": "pt",
        "status": "open",
        "balance": 500,
        "held": 0,
        "by_expiry": [{"valid_until": "2027-06-30", "amount": 500}],
        **EMPTY_NOTICE,
    }
    every = ok(client.get(f"{ME}/wallets", headers=resident.headers))
    # Only the types the resident holds points of: no empty wallet of the city's other type.
    assert {item["point_type"]: item["balance"] for item in every} == {"kenko": 500}
    assert wallet in every
    assert history(world, resident, "kenko") == {
        "items": [
            {
                "entry_id": created["entry_id"],
                "kind": "award",
                "amount": 500,
                "state": "posted",
                "at": "2026-05-31T16:00:00Z",
                "text_ja": "特定健診受診ポイント 付与",
                "text_en": "Specific health checkup: awarded",
            }
        ],
        "next_cursor": None,
    }
    assert history(world, resident, "pt") == {"items": [], "next_cursor": None}


# 2. Bad input: the right problem, nothing written ----------------------------------------


def test_awards_to_a_program_that_is_not_active_are_refused(world: World) -> None:
    draft = world.fresh_program(activate=False, budget={2026: 1_000})
    paused = world.fresh_program(budget={2026: 1_000})
    set_status(world, paused, "paused")
    closed = world.fresh_program(budget={2026: 1_000})
    set_status(world, closed, "closed")
    resident = world.fresh_resident()
    for program_id in (draft, paused, closed):
        with nothing_written(world, program_id):
            body = assert_problem(award(world, program_id, resident.id), 409, "program_not_active")
            assert program_id in body["detail"]
    # A paused program awards again once it is active again.
    set_status(world, paused, "active")
    assert awarded(world, paused, resident.id)["amount"] == 100
    assert budget(world, paused)["remaining"] == 900


def test_unknown_programs_and_other_departments_programs_are_not_found(world: World) -> None:
    issuer = world.actors["issuer_a"]
    other = world.programs["b"]
    unknown = "prg_doesnotexist00000000"
    resident = world.fresh_resident()
    for program_id in (unknown, other):
        with nothing_written(world, world.programs["a"], world.programs["b"]):
            body = assert_problem(award(world, program_id, resident.id), 404, "not_found")
            # The same answer for another department's program as for none at all.
            assert body["detail"] == f"no program {program_id}"
            for path in ("", "/budgets/2026", "/awards"):
                response = world.client.get(
                    f"{ISS}/programs/{program_id}{path}", headers=issuer.headers
                )
                assert assert_problem(response, 404, "not_found")["detail"] == (
                    f"no program {program_id}"
                )
    listed = ok(world.client.get(f"{ISS}/programs", headers=issuer.headers))
    assert other not in {item["id"] for item in listed["items"]}
    # Department b's own issuer does see it.
    issuer_b = world.actors["issuer_b"]
    assert ok(world.client.get(f"{ISS}/programs/{other}", headers=issuer_b.headers))["id"] == other


def test_a_second_health_checkup_of_a_type_in_a_year_is_already_awarded(world: World) -> None:
    program_id = world.fresh_program(
        module="health_checkup",
        config={"checkup_types": ["specific_health_checkup", "cancer_screening"]},
        amount=500,
        budget={2026: 10_000},
    )
    resident = world.fresh_resident()
    first = awarded(
        world,
        program_id,
        resident.id,
        record_id="HC-1",
        details={"checkup_type": "specific_health_checkup"},
    )
    with nothing_written(world, program_id):
        body = assert_problem(
            award(
                world,
                program_id,
                resident.id,
                "HC-2",
                details={"checkup_type": "specific_health_checkup"},
            ),
            409,
            "already_awarded",
        )
        assert body["once_key"] == "FY2026:specific_health_checkup"
        assert body["record_id"] == "HC-1"
        # A type the program does not reward, and details the module does not know.
        for details in (
            {"checkup_type": "dental_checkup"},
            {},
            {"checkup_type": "cancer_screening", "x": "y"},
        ):
            assert_problem(
                award(world, program_id, resident.id, "HC-3", details=details),
                422,
                "validation_error",
            )
    # Another type, and the same type for another resident, are awarded.
    awarded(
        world,
        program_id,
        resident.id,
        record_id="HC-4",
        details={"checkup_type": "cancer_screening"},
    )
    awarded(
        world,
        program_id,
        world.fresh_resident().id,
        record_id="HC-5",
        details={"checkup_type": "specific_health_checkup"},
    )
    assert budget(world, program_id) == {
        **budget(world, program_id),
        "awarded": 1_500,
        "awards": 3,
        "residents_awarded": 2,
        "remaining": 8_500,
    }
    assert first["amount"] == 500


def test_an_award_over_a_cap_is_refused(world: World, clock: FakeClock) -> None:
    program_id = world.fresh_program(
        cap_per_day=100, cap_per_fiscal_year=200, budget={2026: 10_000}
    )
    resident = world.fresh_resident()
    awarded(world, program_id, resident.id)
    with nothing_written(world, program_id):
        body = assert_problem(award(world, program_id, resident.id), 409, "cap_exceeded")
        assert (body["period"], body["cap"], body["awarded"]) == ("D2026-04-01", 100, 100)
    # Another resident has caps of their own.
    awarded(world, program_id, world.fresh_resident().id)
    # The next day in Tokyo (2026-04-01 15:00 UTC), the daily cap starts again...
    clock.now = utc(2026, 4, 1, 15)
    awarded(world, program_id, resident.id)
    # ... but the fiscal year's does not.
    clock.now = utc(2026, 4, 2, 15)
    with nothing_written(world, program_id):
        body = assert_problem(award(world, program_id, resident.id), 409, "cap_exceeded")
        assert (body["period"], body["cap"], body["awarded"]) == ("FY2026", 200, 200)
    assert budget(world, program_id)["awarded"] == 300


def test_an_award_beyond_the_budget_is_refused_saying_what_remains(world: World) -> None:
    program_id = world.fresh_program(budget={2026: 150})
    awarded(world, program_id, world.fresh_resident().id)
    resident = world.fresh_resident()
    with nothing_written(world, program_id):
        body = assert_problem(award(world, program_id, resident.id), 409, "budget_exhausted")
        assert (body["remaining"], body["requested"]) == (50, 100)
    assert budget(world, program_id) == {
        **budget(world, program_id),
        "allocated": 150,
        "awarded": 100,
        "remaining": 50,
    }
    # A program with no budget for the year has nothing remaining.
    unfunded = world.fresh_program()
    with nothing_written(world, unfunded):
        body = assert_problem(award(world, unfunded, resident.id), 409, "budget_exhausted")
        assert body["remaining"] == 0
    assert budget(world, unfunded)["status"] == "none"


def test_a_record_id_reused_for_another_resident_is_refused(world: World) -> None:
    program_id = world.programs["a"]
    first, second = world.fresh_resident(), world.fresh_resident()
    created = awarded(world, program_id, first.id, record_id="REC-1")
    with nothing_written(world, program_id):
        body = assert_problem(award(world, program_id, second.id, "REC-1"), 409, "record_id_reused")
        assert body["field"] == "record_id"
        # The same record for the same resident on another day, or with other details, too.
        assert_problem(
            award(world, program_id, first.id, "REC-1", occurred_on="2026-03-31"),
            409,
            "record_id_reused",
        )
    # The same record of another program is another record.
    other = world.fresh_program(budget={2026: 1_000})
    assert awarded(world, other, second.id, record_id="REC-1")["id"] != created["id"]


def test_point_types_with_an_expiry_rule_that_makes_no_sense_are_refused(world: World) -> None:
    client, admin = world.client, world.admin.headers
    refusals = [
        # 0 months (and more than 120): the domain's rule refuses them, not the schema.
        ({"expiry_months": 0}, "expiry_rule_invalid"),
        ({"expiry_months": -1}, "expiry_rule_invalid"),
        ({"expiry_months": 121}, "expiry_rule_invalid"),
        ({"expiry_months": 12, "expiry_date": "2027-03-31"}, "expiry_rule_invalid"),
        ({"expiry_rule": "none", "expiry_months": 12}, "expiry_rule_invalid"),
        ({"expiry_rule": "sometimes"}, "validation_error"),
        # A fixed date that is not in the future (today, April 1 in Tokyo, included).
        (
            {"expiry_rule": "fixed_date", "expiry_date": "2026-03-31", "expiry_months": None},
            "expiry_rule_invalid",
        ),
        (
            {"expiry_rule": "fixed_date", "expiry_date": "2026-04-01", "expiry_months": None},
            "expiry_rule_invalid",
        ),
        ({"expiry_rule": "fixed_date", "expiry_months": None}, "expiry_rule_invalid"),
        # Points an operator sells, valid for 6 months or more, without the override.
        ({"issuer": "operator", "funding": "bought"}, "payment_services_act"),
        ({"issuer": "operator", "funding": "bought", "expiry_months": 6}, "payment_services_act"),
        (
            {"issuer": "operator", "funding": "bought", "psa_override_reason": "  "},
            "validation_error",
        ),
    ]
    with nothing_written(world):
        for fields, code in refusals:
            body = assert_problem(
                client.post(f"{A}/point-types", headers=admin, json=new_point_type_body(**fields)),
                422,
                code,
            )
            if code == "payment_services_act":
                assert body["field"] == "psa_override_reason"
            if code == "expiry_rule_invalid" and fields.get("expiry_rule") == "fixed_date":
                assert body["field"] == "expiry_date"
    zero = assert_problem(
        client.post(f"{A}/point-types", headers=admin, json=new_point_type_body(expiry_months=0)),
        422,
        "expiry_rule_invalid",
    )
    assert zero["field"] == "expiry_months"

    # What the law allows: shorter than 6 months, or recorded with the operator's registration.
    short = ok(
        client.post(
            f"{A}/point-types",
            headers=admin,
            json=new_point_type_body(issuer="operator", funding="bought", expiry_months=5),
        ),
        201,
    )
    assert (short["issuer"], short["funding"], short["expiry_months"]) == ("operator", "bought", 5)
    registered = ok(
        client.post(
            f"{A}/point-types",
            headers=admin,
            json=new_point_type_body(
                issuer="operator", funding="bought", psa_override_reason="関東財務局 00001"
            ),
        ),
        201,
    )
    assert registered["psa_override_reason"] == "関東財務局 00001"
    # A fixed date in the future, sent with expiry_months null.
    fixed = ok(
        client.post(
            f"{A}/point-types",
            headers=admin,
            json=new_point_type_body(
                expiry_rule="fixed_date", expiry_date="2026-04-02", expiry_months=None
            ),
        ),
        201,
    )
    assert (fixed["expiry_rule"], fixed["expiry_date"], fixed["expiry_months"]) == (
        "fixed_date",
        "2026-04-02",
        None,
    )


@pytest.mark.parametrize(
    ("fields", "months", "until"),
    [
        ({}, 12, None),
        ({"expiry_months": None}, 12, None),
        ({"expiry_months": 3}, 3, None),
        ({"expiry_rule": "fixed_date", "expiry_date": "2027-03-31"}, None, "2027-03-31"),
        ({"expiry_rule": "none"}, None, None),
    ],
    ids=["default", "months-null", "months-3", "fixed_date", "none"],
)
def test_expiry_months_defaults_to_12_only_for_the_months_rule(
    world: World, fields: dict[str, Any], months: int | None, until: str | None
) -> None:
    response = world.client.post(
        f"{A}/point-types", headers=world.admin.headers, json=new_point_type_body(**fields)
    )
    created = ok(response, 201)
    assert (created["expiry_rule"], created["expiry_months"], created["expiry_date"]) == (
        fields.get("expiry_rule", "months"),
        months,
        until,
    )


def test_a_point_type_in_use_cannot_be_deleted(world: World) -> None:
    client, admin = world.client, world.admin.headers
    with nothing_written(world):
        body = assert_problem(
            client.delete(f"{A}/point-types/{world.point_type_id}", headers=admin),
            409,
            "point_type_in_use",
        )
        assert body["programs"] == 2
        assert body["entries"] == 3  # two allocations and the world's award
    assert ok(client.get(f"{A}/point-types/{world.point_type_id}", headers=admin))["code"] == "pt"
    # A type only a draft program refers to is in use too.
    created = ok(client.post(f"{A}/point-types", headers=admin, json=new_point_type_body()), 201)
    ok(
        client.post(
            f"{A}/programs",
            headers=admin,
            json={
                "department_id": world.departments["a"],
                "point_type_id": created["id"],
                "module": "fixed_award",
                "name_ja": "下書き",
                "name_en": "Draft",
                "amount": 10,
                "valid_from": "2026-04-01",
            },
        ),
        201,
    )
    body = assert_problem(
        client.delete(f"{A}/point-types/{created['id']}", headers=admin), 409, "point_type_in_use"
    )
    assert (body["programs"], body["entries"]) == (1, 0)
    # An unused one is deleted with its ledger.
    unused = world.fresh_point_type()
    ledgers = ledger_rows(world)["ledger"]
    response = client.delete(f"{A}/point-types/{unused}", headers=admin)
    assert response.status_code == 204, response.text
    assert ledger_rows(world)["ledger"] == ledgers - 1
    assert_problem(client.get(f"{A}/point-types/{unused}", headers=admin), 404, "not_found")


def test_a_year_end_before_the_year_ended_is_refused(world: World) -> None:
    program_id = world.programs["a"]
    with nothing_written(world, program_id):
        for decision in ("lapse", "carry_over"):
            assert_problem(
                world.client.post(
                    f"{B}/{program_id}/2026/year-end",
                    headers=keyed(world.finance),
                    json={"decision": decision, "reason": "too early"},
                ),
                409,
                "fiscal_year_not_ended",
            )
    assert budget(world, program_id)["status"] == "open"


def test_an_award_without_an_idempotency_key_is_a_validation_error(world: World) -> None:
    program_id = world.programs["a"]
    resident = world.fresh_resident()
    with nothing_written(world, program_id):
        for headers in (
            world.actors["issuer_a"].headers,
            {**world.actors["issuer_a"].headers, "Idempotency-Key": ""},
        ):
            response = world.client.post(
                f"{ISS}/programs/{program_id}/awards",
                headers=headers,
                json={"resident_id": resident.id, "record_id": "NO-KEY"},
            )
            body = assert_problem(response, 422, "validation_error")
            assert body["errors"][0]["location"] == ["header", "Idempotency-Key"]


def test_an_event_outside_the_program_window_is_refused(world: World) -> None:
    program_id = world.fresh_program(valid_until=date(2026, 4, 30), budget={2026: 1_000})
    resident = world.fresh_resident()
    with nothing_written(world, program_id):
        for day in ("2026-04-02", "2027-01-01", "2026-03-31"):
            body = assert_problem(
                award(world, program_id, resident.id, occurred_on=day),
                422,
                "outside_program_window",
            )
            assert body["field"] == "occurred_on"
    # Today (April 1 in Tokyo) is in the window; a back-dated event in it too.
    assert awarded(world, program_id, resident.id)["occurred_on"] == "2026-04-01"


def test_awards_to_unknown_or_malformed_residents_write_nothing(world: World) -> None:
    program_id = world.programs["a"]
    with nothing_written(world, program_id):
        body = assert_problem(
            award(world, program_id, "res_doesnotexist00000000"), 404, "not_found"
        )
        assert body["field"] == "resident_id"
        for bad in ({"resident_id": "nobody"}, {"record_id": "has space"}, {"amount": 1}):
            response = world.client.post(
                f"{ISS}/programs/{program_id}/awards",
                headers=keyed(world.actors["issuer_a"]),
                json={"resident_id": world.resident.id, "record_id": "R-x", **bad},
            )
            assert_problem(response, 422, "validation_error")


def test_awards_to_a_resident_who_is_not_active_are_refused(world: World) -> None:
    program_id = world.programs["a"]
    resident = world.fresh_resident()
    never = world.fresh_resident()
    awarded(world, program_id, resident.id)  # the wallet is open
    for who in (resident, never):
        ok(
            world.client.post(
                f"{A}/residents/{who.id}/status",
                headers=world.admin.headers,
                json={"status": "moved_out", "reason": "転出"},
            )
        )
    with nothing_written(world, program_id):
        for who in (resident, never):
            assert_problem(award(world, program_id, who.id), 409, "resident_not_active")


def test_a_budget_is_allocated_only_for_the_years_of_the_program(world: World) -> None:
    """A program from 2026-04-01 (the world's clock is in FY2026) is funded for FY2026 and, a
    year ahead, FY2027; not for a year before it starts, after it ends, or years ahead."""
    open_ended = world.fresh_program()
    ending = world.fresh_program(valid_until=date(2026, 12, 31))

    def allocate(program_id: str, year: int) -> Reply:
        return world.client.post(
            f"{B}/{program_id}/{year}/allocations",
            headers=keyed(world.finance),
            json={"amount": 100, "reason": "plan"},
        )

    with nothing_written(world, open_ended, ending):
        for program_id, year, years in [
            (open_ended, 2020, (2026, 2027)),
            (open_ended, 2025, (2026, 2027)),
            (open_ended, 2028, (2026, 2027)),
            (open_ended, 2999, (2026, 2027)),
            (ending, 2027, (2026, 2026)),
        ]:
            body = assert_problem(allocate(program_id, year), 422, "fiscal_year_outside_program")
            assert body["field"] == "fiscal_year", body
            assert (body["first_year"], body["last_year"]) == years, body
            assert f"FY{year} is outside the program's years" in body["detail"]
    for program_id, year in [(open_ended, 2026), (open_ended, 2027), (ending, 2026)]:
        ok(allocate(program_id, year), 201)
        assert budget(world, program_id, year)["allocated"] == 100


def test_programs_and_allocations_that_make_no_sense_are_refused(world: World) -> None:
    client, admin = world.client, world.admin.headers
    base = {
        "department_id": world.departments["a"],
        "point_type_id": world.point_type_id,
        "module": "fixed_award",
        "name_ja": "試験",
        "name_en": "Test",
        "amount": 100,
        "valid_from": "2026-04-01",
    }
    refusals: list[tuple[dict[str, Any], int, str, str | None]] = [
        ({"cap_per_day": 99}, 422, "validation_error", "cap_per_day"),
        ({"cap_per_fiscal_year": 50}, 422, "validation_error", "cap_per_fiscal_year"),
        ({"valid_until": "2026-03-31"}, 422, "validation_error", "valid_until"),
        ({"amount": 0}, 422, "validation_error", None),
        ({"module": "lottery"}, 422, "validation_error", None),
        ({"module": "health_checkup"}, 422, "validation_error", "config.checkup_types"),
        (
            {"module": "health_checkup", "config": {"checkup_types": []}},
            422,
            "validation_error",
            "config.checkup_types",
        ),
        ({"config": {"extra": "x"}}, 422, "validation_error", "config.extra"),
        ({"department_id": "dep_doesnotexist0000000"}, 404, "not_found", "department_id"),
        ({"point_type_id": "pty_doesnotexist0000000"}, 404, "not_found", None),
    ]
    closed = world.fresh_program(budget={2026: 100})
    set_status(world, closed, "closed")
    with nothing_written(world, world.programs["a"], closed):
        for fields, status, code, field in refusals:
            body = assert_problem(
                client.post(f"{A}/programs", headers=admin, json={**base, **fields}), status, code
            )
            if field is not None:
                assert body["field"] == field, body
        # A closed program never opens again, and is given no more budget.
        for status in ("active", "paused", "draft"):
            assert_problem(
                client.post(
                    f"{A}/programs/{closed}/status",
                    headers=admin,
                    json={"status": status, "reason": "again"},
                ),
                409,
                "status_change_refused",
            )
        assert_problem(
            client.post(
                f"{B}/{closed}/2026/allocations",
                headers=keyed(world.finance),
                json={"amount": 100, "reason": "more"},
            ),
            409,
            "program_not_active",
        )
        for amount in (0, -5):
            assert_problem(
                client.post(
                    f"{B}/{world.programs['a']}/2026/allocations",
                    headers=keyed(world.finance),
                    json={"amount": amount, "reason": "none"},
                ),
                422,
                "validation_error",
            )
        assert_problem(
            client.post(
                f"{B}/{world.programs['a']}/2026/allocations",
                headers=world.finance.headers,
                json={"amount": 100, "reason": "no key"},
            ),
            422,
            "validation_error",
        )
        assert_problem(
            client.get(f"{B}/prg_doesnotexist00000000/2026", headers=world.finance.headers),
            404,
            "not_found",
        )
        assert_problem(
            client.get(
                f"{C}/residents/res_doesnotexist00000000/wallets", headers=world.counter.headers
            ),
            404,
            "not_found",
        )


def funded_program_of_a_new_type(world: World, **point_type: Any) -> str:
    """An active fixed-award program (10 pt) of department a, funded with 100 pt for FY2026,
    in a new point type of this policy; its id."""
    client, admin = world.client, world.admin.headers
    created = ok(
        client.post(f"{A}/point-types", headers=admin, json=new_point_type_body(**point_type)), 201
    )
    program = ok(
        client.post(
            f"{A}/programs",
            headers=admin,
            json={
                "department_id": world.departments["a"],
                "point_type_id": created["id"],
                "module": "fixed_award",
                "name_ja": "ポイント",
                "name_en": "Points",
                "amount": 10,
                "valid_from": "2026-04-01",
            },
        ),
        201,
    )
    set_status(world, program["id"], "active")
    allocation = {"amount": 100, "reason": "FY2026"}
    ok(
        client.post(
            f"{B}/{program['id']}/2026/allocations", headers=keyed(world.finance), json=allocation
        ),
        201,
    )
    return str(program["id"])


def test_no_points_are_awarded_in_a_type_that_has_expired(world: World, clock: FakeClock) -> None:
    program_id = funded_program_of_a_new_type(
        world, expiry_rule="fixed_date", expiry_date="2026-04-02"
    )
    resident = world.fresh_resident()
    # April 2 in Tokyo, its last day: awarded, valid until the end of the day.
    clock.now = utc(2026, 4, 1, 15)
    assert awarded(world, program_id, resident.id)["valid_until"] == "2026-04-02"
    clock.now = utc(2026, 4, 2, 15)
    with nothing_written(world, program_id):
        body = assert_problem(award(world, program_id, resident.id), 409, "conflict")
        assert "expired on 2026-04-02" in body["detail"]


# 3. Idempotency, namespaced by department --------------------------------------------------


def test_idempotency_keys_are_shared_within_a_department_only(world: World) -> None:
    program_a, program_b = world.programs["a"], world.programs["b"]
    issuer_a, issuer_b = world.actors["issuer_a"], world.actors["issuer_b"]
    colleague = world.fresh_staff(StaffRole.ISSUER, department_id=world.departments["a"])
    resident = world.fresh_resident()
    key = new_key()
    body = {"resident_id": resident.id, "record_id": "SHARED-1"}

    first = world.client.post(
        f"{ISS}/programs/{program_a}/awards", headers=keyed(issuer_a, key), json=body
    )
    created = ok(first, 201)
    assert "Idempotent-Replayed" not in first.headers
    before = budget(world, program_a)

    # A colleague retrying the same call with the same key gets the stored result.
    with nothing_written(world, program_a, program_b):
        replay = world.client.post(
            f"{ISS}/programs/{program_a}/awards", headers=keyed(colleague, key), json=body
        )
        assert ok(replay, 201) == created
        assert replay.headers["Idempotent-Replayed"] == "true"
        # The same key with another body is refused.
        reused = world.client.post(
            f"{ISS}/programs/{program_a}/awards",
            headers=keyed(colleague, key),
            json={**body, "record_id": "SHARED-2"},
        )
        assert assert_problem(reused, 422, "idempotency_key_reused")["field"] == "Idempotency-Key"
        assert "Idempotent-Replayed" not in reused.headers
    assert budget(world, program_a) == before
    listed = ok(world.client.get(f"{ISS}/programs/{program_a}/awards", headers=issuer_a.headers))
    assert [item["record_id"] for item in listed["items"]].count("SHARED-1") == 1

    # Department b's issuer sending the same key makes a request of its own.
    before_b = budget(world, program_b)
    other = world.client.post(
        f"{ISS}/programs/{program_b}/awards", headers=keyed(issuer_b, key), json=body
    )
    other_award = ok(other, 201)
    assert "Idempotent-Replayed" not in other.headers
    assert other_award["id"] != created["id"]
    assert other_award["program_id"] == program_b
    assert budget(world, program_b)["awarded"] == before_b["awarded"] + 100

    # The same record with a new key: the award is the first one, replayed, nothing new.
    with nothing_written(world, program_a, program_b):
        again = award(world, program_a, resident.id, "SHARED-1", actor=colleague)
        assert ok(again, 200) == {**created, "replayed": True}
        assert "Idempotent-Replayed" not in again.headers
        # And that answer is stored under its key too.
        key2 = new_key()
        first_answer = ok(award(world, program_a, resident.id, "SHARED-1", key=key2), 200)
        stored = award(world, program_a, resident.id, "SHARED-1", key=key2)
        assert ok(stored, 200) == first_answer
        assert stored.headers["Idempotent-Replayed"] == "true"


def test_a_refusal_is_stored_under_its_key(world: World) -> None:
    program_id = world.fresh_program(budget={2026: 100})
    awarded(world, program_id, world.fresh_resident().id)
    key = new_key()
    resident = world.fresh_resident()
    first = assert_problem(
        award(world, program_id, resident.id, "LATE-1", key=key), 409, "budget_exhausted"
    )
    # More budget arrives; the same request with the same key still gets the stored refusal.
    ok(
        world.client.post(
            f"{B}/{program_id}/2026/allocations",
            headers=keyed(world.finance),
            json={"amount": 100, "reason": "top-up"},
        ),
        201,
    )
    replay = award(world, program_id, resident.id, "LATE-1", key=key)
    again = assert_problem(replay, 409, "budget_exhausted")
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert {k: v for k, v in again.items() if k != "request_id"} == {
        k: v for k, v in first.items() if k != "request_id"
    }
    # A new key is a new request, and it is awarded.
    assert awarded(world, program_id, resident.id, record_id="LATE-1")["amount"] == 100
    assert budget(world, program_id)["remaining"] == 0


def test_the_awards_list_pages_newest_first(world: World) -> None:
    issuer = world.actors["issuer_a"]
    program_id = world.fresh_program(budget={2026: 1_000})
    made = [awarded(world, program_id, world.fresh_resident().id) for _ in range(3)]
    newest_first = sorted(made, key=lambda item: item["id"], reverse=True)
    path = f"{ISS}/programs/{program_id}/awards"
    seen: list[dict[str, Any]] = []
    cursor = ""
    while True:
        page = ok(world.client.get(f"{path}?limit=2{cursor}", headers=issuer.headers))
        seen += page["items"]
        if page["next_cursor"] is None:
            break
        assert page["next_cursor"] == str(page["items"][-1]["id"])
        cursor = f"&cursor={page['next_cursor']}"
    assert seen == newest_first
    one = ok(world.client.get(f"{path}?limit=1", headers=issuer.headers))
    assert one == {"items": newest_first[:1], "next_cursor": str(newest_first[0]["id"])}
    for bad in ("?limit=0", "?cursor=x", "?fiscal_year=1999"):
        assert_problem(
            world.client.get(f"{path}{bad}", headers=issuer.headers), 422, "validation_error"
        )


# 4. Wallets: expiry notices, expiry, history -------------------------------------------


def test_the_wallet_warns_of_points_expiring_within_60_days(world: World, clock: FakeClock) -> None:
    resident = world.fresh_resident(with_token=True)
    program_id = world.programs["a"]
    # Earned April 1 (Tokyo): valid until 2027-04-30. Earned May 1: valid until 2027-05-31.
    awarded(world, program_id, resident.id)
    clock.now = utc(2026, 5, 1)
    awarded(world, program_id, resident.id)
    awarded(world, program_id, resident.id)
    both = [
        {"valid_until": "2027-04-30", "amount": 100},
        {"valid_until": "2027-05-31", "amount": 200},
    ]

    # 2027-02-28 23:59:59 in Tokyo: April 30 is 61 days away.
    clock.now = utc(2027, 2, 28, 14, 59, 59)
    wallet = wallet_of(world, resident)
    assert wallet == {**wallet, "balance": 300, "by_expiry": both, **EMPTY_NOTICE}

    # 2027-03-01 in Tokyo: within 60 days; the nearest expiry only.
    clock.now = utc(2027, 2, 28, 15)
    wallet = wallet_of(world, resident)
    assert wallet == {
        **wallet,
        "balance": 300,
        "by_expiry": both,
        "expiring_soon": {"valid_until": "2027-04-30", "amount": 100},
        "notice_ja": "100ptが2027年4月30日に失効します",
        "notice_en": "100 pt expire on 2027-04-30",
    }
    assert ok(world.client.get(f"{ME}/wallets", headers=resident.headers)) == [wallet]

    # The last second of April 30 in Tokyo: still there.
    clock.now = utc(2027, 4, 30, 14, 59, 59)
    assert wallet_of(world, resident)["balance"] == 300

    # The start of May 1 in Tokyo: gone from the balance; the next expiry is the notice.
    clock.now = utc(2027, 4, 30, 15)
    wallet = wallet_of(world, resident)
    assert wallet == {
        **wallet,
        "balance": 200,
        "by_expiry": [{"valid_until": "2027-05-31", "amount": 200}],
        "expiring_soon": {"valid_until": "2027-05-31", "amount": 200},
        "notice_ja": "200ptが2027年5月31日に失効します",
        "notice_en": "200 pt expire on 2027-05-31",
    }
    # The counter sees the same (a clerk of 2027: staff tokens live 90 days).
    clerk = world.fresh_staff(StaffRole.COUNTER)
    counter_view = ok(
        world.client.get(f"{C}/residents/{resident.id}/wallets", headers=clerk.headers)
    )
    assert counter_view == [wallet]


def test_points_of_a_fixed_date_type_are_noticed_from_the_start(world: World) -> None:
    """A type valid until a fixed date 30 days ahead: the notice shows from the first award,
    with thousands separated."""
    client, admin = world.client, world.admin.headers
    point_type = ok(
        client.post(
            f"{A}/point-types",
            headers=admin,
            json=new_point_type_body(
                code="kigen", expiry_rule="fixed_date", expiry_date="2026-05-01", expiry_months=None
            ),
        ),
        201,
    )
    program = ok(
        client.post(
            f"{A}/programs",
            headers=admin,
            json={
                "department_id": world.departments["a"],
                "point_type_id": point_type["id"],
                "module": "volunteering",
                "name_ja": "清掃活動",
                "name_en": "Clean-up",
                "amount": 1_500,
                "valid_from": "2026-04-01",
            },
        ),
        201,
    )
    set_status(world, program["id"], "active")
    ok(
        client.post(
            f"{B}/{program['id']}/2026/allocations",
            headers=keyed(world.finance),
            json={"amount": 3_000, "reason": "FY2026"},
        ),
        201,
    )
    resident = world.fresh_resident(with_token=True)
    created = awarded(
        world, program["id"], resident.id, record_id="EV-1", details={"event_id": "river-0401"}
    )
    assert created["valid_until"] == "2026-05-01"
    with nothing_written(world, program["id"]):
        assert_problem(
            award(world, program["id"], resident.id, "EV-2", details={"event_id": "river-0401"}),
            409,
            "already_awarded",
        )
    assert wallet_of(world, resident, "kigen") == {
        "point_type": "kigen",
        "name_ja": "試験ポイント",
        "name_en": "Test points",
        "unit": "pt",
        "status": "open",
        "balance": 1_500,
        "held": 0,
        "by_expiry": [{"valid_until": "2026-05-01", "amount": 1_500}],
        "expiring_soon": {"valid_until": "2026-05-01", "amount": 1_500},
        "notice_ja": "1,500ptが2026年5月1日に失効します",
        "notice_en": "1,500 pt expire on 2026-05-01",
    }
    line = history(world, resident, "kigen")["items"][0]
    assert (line["text_ja"], line["text_en"]) == ("清掃活動 付与", "Clean-up: awarded")


def test_points_that_never_expire_have_no_expiry_date_and_no_notice(
    world: World, clock: FakeClock
) -> None:
    program_id = funded_program_of_a_new_type(world, code="eien", expiry_rule="none")
    resident = world.fresh_resident(with_token=True)
    awarded(world, program_id, resident.id)
    expected = {"balance": 10, "by_expiry": [{"valid_until": None, "amount": 10}], **EMPTY_NOTICE}
    wallet = wallet_of(world, resident, "eien")
    assert wallet == {**wallet, **expected}
    clock.now = utc(2027, 5, 1)  # a year on: still there, still no notice
    wallet = wallet_of(world, resident, "eien")
    assert wallet == {**wallet, **expected}


def test_history_shows_holds_pending_voided_and_posted_once(world: World) -> None:
    """Holds made by the spending service, read through HTTP: a pending hold, a hold the
    merchant declined (voided) and a hold posted in part, which is one line: its payment."""
    resident = world.fresh_resident(with_token=True)
    award_id = awarded(world, world.programs["a"], resident.id)["entry_id"]

    def write(work: Callable[[Session], Any]) -> Any:
        return unit_of_work(world.engine, work)

    merchant = write(
        lambda s: (
            LedgerTx(s.connection(), world.clock)
            .create_account(
                ledger_id=find_point_type(s, "pt").ledger_id,
                code=400,
                normal_side=Side.CREDIT,
                owner_ref="mer_x",
            )
            .id
        )
    )

    def hold(amount: int) -> Entry:
        request = spending.Spend(
            resident.id, amount, merchant, hold_until=world.clock() + timedelta(hours=1)
        )
        return write(lambda s: spending.spend(s, find_point_type(s, "pt"), request, world.clock()))

    pending, declined, confirmed = hold(10), hold(20), hold(30)
    write(lambda s: LedgerTx(s.connection(), world.clock).void_pending(declined.id))
    post = write(lambda s: spending.post_hold(s, confirmed.id, world.clock(), amount=25))

    items = history(world, resident)["items"]
    assert [
        (i["entry_id"], i["kind"], i["amount"], i["state"], i["text_ja"], i["text_en"])
        for i in items
    ] == [
        (post.id, "payment_post", -25, "posted", "支払い", "payment"),
        (declined.id, "payment", -20, "voided", "支払い取消", "payment voided"),
        (pending.id, "payment", -10, "pending", "支払い", "payment"),
        (award_id, "award", 100, "posted", "ボランティア 付与", "Volunteering: awarded"),
    ]
    wallet = ok(world.client.get(f"{ME}/wallets/pt", headers=resident.headers))
    assert (wallet["balance"], wallet["held"]) == (100 - 25 - 10, 10)


def test_history_pages_newest_first(world: World, clock: FakeClock) -> None:
    resident = world.fresh_resident(with_token=True)
    entries = []
    for _ in range(3):
        entries.append(awarded(world, world.programs["a"], resident.id)["entry_id"])
        clock.advance(minutes=1)
    newest_first = sorted(entries, reverse=True)

    seen: list[dict[str, Any]] = []
    query = "?limit=1"
    for expected in newest_first:
        page = history(world, resident, query=query)
        assert [item["entry_id"] for item in page["items"]] == [expected]
        assert page["next_cursor"] == str(expected)
        seen += page["items"]
        query = f"?limit=1&cursor={page['next_cursor']}"
    assert history(world, resident, query=query) == {"items": [], "next_cursor": None}
    assert [item["at"] for item in seen] == [
        "2026-04-01T00:02:00Z",
        "2026-04-01T00:01:00Z",
        "2026-04-01T00:00:00Z",
    ]
    assert {(item["kind"], item["amount"], item["text_en"]) for item in seen} == {
        ("award", 100, "Volunteering: awarded")
    }
    two = history(world, resident, query="?limit=2")
    assert [item["entry_id"] for item in two["items"]] == newest_first[:2]
    rest = history(world, resident, query=f"?limit=2&cursor={two['next_cursor']}")
    assert rest == {"items": seen[2:], "next_cursor": None}
    # A resident's history is their own: the world's resident's award is not in it.
    assert len(history(world, resident)["items"]) == 3
    for bad in ("?limit=0", "?cursor=abc", "?cursor=-1"):
        assert_problem(
            world.client.get(f"{ME}/wallets/pt/history{bad}", headers=resident.headers),
            422,
            "validation_error",
        )
    assert_problem(
        world.client.get(f"{ME}/wallets/nope", headers=resident.headers), 404, "not_found"
    )


# 5. Counter: reading and closing a wallet ------------------------------------------------


def test_the_counter_closes_a_wallet_and_nothing_is_awarded_to_it_again(world: World) -> None:
    program_id = world.programs["a"]
    counter = world.counter
    resident = world.fresh_resident(with_token=True)
    awarded(world, program_id, resident.id)
    awarded(world, program_id, resident.id)
    wallets = ok(world.client.get(f"{C}/residents/{resident.id}/wallets", headers=counter.headers))
    assert wallets == [
        {
            **wallets[0],
            "point_type": "pt",
            "status": "open",
            "balance": 200,
            "held": 0,
            "by_expiry": [{"valid_until": "2027-04-30", "amount": 200}],
        }
    ]

    key = new_key()
    close = f"{C}/residents/{resident.id}/wallets/pt/close"
    response = world.client.post(close, headers=keyed(counter, key), json={"reason": "moved out"})
    closed = ok(response)
    assert len(closed["entry_ids"]) == 1
    assert closed == {
        "resident_id": resident.id,
        "point_type": "pt",
        "status": "closed",
        "moved_to_expired": 200,
        "entry_ids": closed["entry_ids"],
        "closed_at": "2026-04-01T00:00:00Z",
        "closed_reason": "moved out",
    }
    replay = world.client.post(close, headers=keyed(counter, key), json={"reason": "moved out"})
    assert ok(replay) == closed
    assert replay.headers["Idempotent-Replayed"] == "true"

    after = ok(world.client.get(f"{C}/residents/{resident.id}/wallets", headers=counter.headers))
    assert after == [{**wallets[0], "status": "closed", "balance": 0, "by_expiry": []}]
    assert wallet_of(world, resident) == after[0]
    line = history(world, resident)["items"][0]
    assert line == {
        **line,
        "entry_id": closed["entry_ids"][0],
        "kind": "wallet_closed",
        "amount": -200,
        "text_ja": "ウォレット閉鎖",
        "text_en": "wallet closed",
    }

    with nothing_written(world, program_id):
        assert_problem(award(world, program_id, resident.id), 409, "wallet_closed")
        again = world.client.post(close, headers=keyed(counter), json={"reason": "again"})
        assert_problem(again, 409, "wallet_closed")
    # The budget still shows what was awarded: closing does not give points back to it.
    assert budget(world, program_id)["awarded"] == 300  # the world's award and these two


def test_a_closed_wallet_is_reopened_at_the_counter_and_receives_again(world: World) -> None:
    program_id = world.programs["a"]
    counter = world.counter
    resident = world.fresh_resident(with_token=True)
    # Nothing earned yet: no wallet listed, for the resident or at the counter.
    assert ok(world.client.get(f"{ME}/wallets", headers=resident.headers)) == []
    at_counter = f"{C}/residents/{resident.id}/wallets"
    assert ok(world.client.get(at_counter, headers=counter.headers)) == []
    awarded(world, program_id, resident.id, record_id="before-moving")
    close = f"{C}/residents/{resident.id}/wallets/pt/close"
    reopen = f"{C}/residents/{resident.id}/wallets/pt/reopen"
    assert_problem(
        world.client.post(reopen, headers=keyed(counter), json={"reason": "not closed"}),
        409,
        "wallet_not_closed",
    )
    ok(world.client.post(close, headers=keyed(counter), json={"reason": "moved out"}))
    with nothing_written(world, program_id):
        assert_problem(
            world.client.post(reopen, headers=keyed(counter), json={"reason": " "}),
            422,
            "validation_error",
        )
        assert_problem(
            world.client.post(
                f"{C}/residents/res_doesnotexist00000000/wallets/pt/reopen",
                headers=keyed(counter),
                json={"reason": "came back"},
            ),
            404,
            "not_found",
        )

    key = new_key()
    response = world.client.post(reopen, headers=keyed(counter, key), json={"reason": "came back"})
    reopened = ok(response)
    # The points moved to expired at the closure stay expired.
    assert reopened == {**reopened, "point_type": "pt", "status": "open", "balance": 0}
    replay = world.client.post(reopen, headers=keyed(counter, key), json={"reason": "came back"})
    assert ok(replay) == reopened
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert_problem(
        world.client.post(reopen, headers=keyed(counter), json={"reason": "again"}),
        409,
        "wallet_not_closed",
    )

    # Awards reach it again, also into the bucket of the same program and expiry day.
    awarded(world, program_id, resident.id, record_id="after-returning")
    assert wallet_of(world, resident) == {
        **reopened,
        "balance": 100,
        "by_expiry": [{"valid_until": "2027-04-30", "amount": 100}],
    }
    assert ok(world.client.get(at_counter, headers=counter.headers)) == [wallet_of(world, resident)]
    assert [line["kind"] for line in history(world, resident)["items"]] == [
        "award",
        "wallet_closed",
        "award",
    ]
    with world.engine.connect() as connection:
        ((reason, details),) = connection.execute(
            sa.text(
                "SELECT reason, details FROM audit_event"
                " WHERE action = 'wallet.reopen' AND object_id = :resident"
            ),
            {"resident": resident.id},
        ).all()
    assert (reason, json.loads(details)["closed_reason"]) == ("came back", "moved out")


def test_closing_a_wallet_never_used_keeps_it_closed(world: World) -> None:
    resident = world.fresh_resident()
    close = f"{C}/residents/{resident.id}/wallets/pt/close"
    closed = ok(world.client.post(close, headers=keyed(world.counter), json={"reason": "died"}))
    assert (closed["status"], closed["moved_to_expired"], closed["entry_ids"]) == ("closed", 0, [])
    with nothing_written(world, world.programs["a"]):
        assert_problem(award(world, world.programs["a"], resident.id), 409, "wallet_closed")
    assert_problem(
        world.client.post(
            f"{C}/residents/res_doesnotexist00000000/wallets/pt/close",
            headers=keyed(world.counter),
            json={"reason": "x"},
        ),
        404,
        "not_found",
    )
    assert_problem(
        world.client.post(
            f"{C}/residents/{resident.id}/wallets/nope/close",
            headers=keyed(world.counter),
            json={"reason": "x"},
        ),
        404,
        "not_found",
    )


# 6. Year end ---------------------------------------------------------------------------


def year_end(world: World, program_id: str, decision: str, year: int = 2025) -> Reply:
    return world.client.post(
        f"{B}/{program_id}/{year}/year-end",
        headers=keyed(world.finance),
        json={"decision": decision, "reason": "FY closed"},
    )


def test_year_end_carries_the_remainder_over_once(world: World) -> None:
    program_id = world.fresh_program(budget={2025: 500})
    assert budget(world, program_id, 2025) == {
        "program_id": program_id,
        "fiscal_year": 2025,
        "status": "open",
        "allocated": 500,
        "awarded": 0,
        "awards": 0,
        "residents_awarded": 0,
        "remaining": 500,
    }
    assert budget(world, program_id)["status"] == "none"
    decided = ok(year_end(world, program_id, "carry_over"))
    assert decided == {
        "program_id": program_id,
        "fiscal_year": 2025,
        "status": "carried_over",
        "allocated": 500,
        "awarded": 0,
        "awards": 0,
        "residents_awarded": 0,
        "remaining": 0,
    }
    assert budget(world, program_id, 2025) == decided
    assert budget(world, program_id) == {
        "program_id": program_id,
        "fiscal_year": 2026,
        "status": "open",
        "allocated": 500,
        "awarded": 0,
        "awards": 0,
        "residents_awarded": 0,
        "remaining": 500,
    }
    with nothing_written(world, program_id):
        assert_problem(year_end(world, program_id, "lapse"), 409, "budget_closed")
        assert_problem(year_end(world, program_id, "carry_over"), 409, "budget_closed")
        assert_problem(
            world.client.post(
                f"{B}/{program_id}/2025/allocations",
                headers=keyed(world.finance),
                json={"amount": 1, "reason": "late"},
            ),
            409,
            "budget_closed",
        )
    # What was carried over is awarded in FY2026.
    awarded(world, program_id, world.fresh_resident().id)
    assert budget(world, program_id)["remaining"] == 400


def test_year_end_lapses_or_adds_to_next_years_budget(world: World) -> None:
    lapsing = world.fresh_program(budget={2025: 300})
    decided = ok(year_end(world, lapsing, "lapse"))
    assert (decided["status"], decided["allocated"], decided["remaining"]) == ("lapsed", 300, 0)
    assert budget(world, lapsing)["status"] == "none"

    topped = world.fresh_program(budget={2025: 500, 2026: 1_000})
    ok(year_end(world, topped, "carry_over"))
    assert budget(world, topped) == {
        **budget(world, topped),
        "allocated": 1_500,
        "remaining": 1_500,
    }

    # No FY2025 budget: nothing to decide.
    with nothing_written(world, world.programs["a"]):
        assert_problem(year_end(world, world.programs["a"], "lapse"), 404, "not_found")


def test_carrying_over_into_a_year_already_decided_is_budget_closed(world: World) -> None:
    """FY2025 decided before FY2024: FY2024's remainder cannot carry into it (the answer is
    budget_closed, as for an allocation, not the ledger's account_closed); it can still lapse."""
    program_id = world.fresh_program(budget={2024: 300, 2025: 500})
    ok(year_end(world, program_id, "lapse", 2025))
    with nothing_written(world, program_id):
        body = assert_problem(year_end(world, program_id, "carry_over", 2024), 409, "budget_closed")
        assert "account_id" not in body
        assert "FY2025" in body["detail"]
    assert budget(world, program_id, 2024)["status"] == "open"
    lapsed = ok(year_end(world, program_id, "lapse", 2024))
    assert (lapsed["status"], lapsed["remaining"]) == ("lapsed", 0)
    assert budget(world, program_id, 2025)["allocated"] == 500


def test_a_back_dated_event_is_paid_by_its_own_years_budget(world: World) -> None:
    """A checkup on March 28 reported on April 1 is FY2025's: its budget pays, until the year
    end closes it."""
    program_id = world.fresh_program(valid_from=date(2026, 3, 1), budget={2025: 500, 2026: 500})
    resident = world.fresh_resident()
    late = awarded(world, program_id, resident.id, occurred_on="2026-03-28")
    # The fiscal year is the event's; the expiry runs from the day the points land.
    assert (late["fiscal_year"], late["occurred_on"], late["valid_until"]) == (
        2025,
        "2026-03-28",
        "2027-04-30",
    )
    assert (
        budget(world, program_id, 2025)["remaining"],
        budget(world, program_id)["remaining"],
    ) == (
        400,
        500,
    )
    ok(year_end(world, program_id, "carry_over"))
    assert budget(world, program_id)["allocated"] == 900
    with nothing_written(world, program_id):
        assert_problem(
            award(world, program_id, resident.id, occurred_on="2026-03-29"), 409, "budget_closed"
        )
    # The same record again is still its award, replayed.
    again = award(world, program_id, resident.id, late["record_id"], occurred_on="2026-03-28")
    assert ok(again, 200) == {**late, "replayed": True}


# 7. Concurrent awards over HTTP --------------------------------------------------------


def run_together(how_many: int, call: Callable[[int], Reply]) -> list[Reply]:
    """``call(i)`` in ``how_many`` threads released together; their responses in order."""
    barrier = threading.Barrier(how_many)
    results: list[Any] = [None] * how_many

    def run(index: int) -> None:
        try:
            barrier.wait(timeout=30)
            results[index] = call(index)
        except BaseException as error:
            results[index] = error

    threads = [threading.Thread(target=run, args=(index,)) for index in range(how_many)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
        assert not thread.is_alive(), f"{thread.name} is stuck (deadlock?)"
    failures = [result for result in results if result is None or isinstance(result, BaseException)]
    assert not failures, failures
    return results


def test_concurrent_awards_never_overspend_the_budget(world: World) -> None:
    program_id = world.fresh_program(budget={2026: 1_000})
    residents = [world.fresh_resident().id for _ in range(16)]
    before = world.snapshot()

    def call(index: int) -> Reply:
        client = TestClient(world.app, raise_server_exceptions=False)
        try:
            return award(world, program_id, residents[index], f"RACE-{index}", client=client)
        finally:
            client.close()

    responses = run_together(16, call)
    statuses = Counter(response.status_code for response in responses)
    assert statuses == {201: 10, 409: 6}, [response.text for response in responses]
    created = [response.json() for response in responses if response.status_code == 201]
    for response in responses:
        if response.status_code == 409:
            body = assert_problem(response, 409, "budget_exhausted")
            assert (body["remaining"], body["requested"]) == (0, 100)
    assert len({item["id"] for item in created}) == 10
    assert len({item["resident_id"] for item in created}) == 10
    assert budget(world, program_id) == {
        "program_id": program_id,
        "fiscal_year": 2026,
        "status": "open",
        "allocated": 1_000,
        "awarded": 1_000,
        "awards": 10,
        "residents_awarded": 10,
        "remaining": 0,
    }
    after = world.snapshot()
    assert after["award"] - before["award"] == 10
    assert after["ledger_entry"] - before["ledger_entry"] == 10
    assert after["wallet_bucket"] - before["wallet_bucket"] == 10
    # The ledger still balances.
    run = ok(world.client.post(f"{A}/verify", headers=world.admin.headers), 201)
    assert (run["ok"], run["problems"]) == (True, [])


def test_concurrent_retries_of_one_call_in_a_department_award_once(world: World) -> None:
    """One call retried eight times at once by two officers of one department with the same
    Idempotency-Key: one award; every answer is it or "still in progress"."""
    program_id = world.programs["a"]
    officers = [
        world.actors["issuer_a"],
        world.fresh_staff(StaffRole.ISSUER, department_id=world.departments["a"]),
    ]
    resident = world.fresh_resident()
    key = new_key()
    before = budget(world, program_id)

    def call(index: int) -> Reply:
        client = TestClient(world.app, raise_server_exceptions=False)
        try:
            return award(
                world,
                program_id,
                resident.id,
                "ONE-CALL",
                actor=officers[index % 2],
                key=key,
                client=client,
            )
        finally:
            client.close()

    responses = run_together(8, call)
    created = [response.json() for response in responses if response.status_code == 201]
    assert created, [response.text for response in responses]
    assert all(body == created[0] for body in created)
    assert created[0]["replayed"] is False
    for response in responses:
        if response.status_code != 201:
            assert_problem(response, 409, "request_in_progress")
    assert budget(world, program_id) == {
        **before,
        "awarded": before["awarded"] + 100,
        "awards": before["awards"] + 1,
        "residents_awarded": before["residents_awarded"] + 1,
        "remaining": before["remaining"] - 100,
    }
    replay = award(world, program_id, resident.id, "ONE-CALL", key=key)
    assert ok(replay, 201) == created[0]
    assert replay.headers["Idempotent-Replayed"] == "true"


def test_two_reports_of_one_record_racing_award_once(world: World, backend: str) -> None:
    """Two officers report one record at once, each with a key of its own: one award (201) and
    its replay (200, ``replayed``). On PostgreSQL a gate (the lock of the resident's daily cap
    counter row) holds both after their check for an earlier award, so that the second goes on
    only once the first has committed, so that the ledger hands it the first award's entry
    (the record is the entry's idempotency key): it must answer with the replay, not 409."""
    program_id = world.fresh_program(cap_per_day=1_000, budget={2026: 10_000})
    officers = [
        world.actors["issuer_a"],
        world.fresh_staff(StaffRole.ISSUER, department_id=world.departments["a"]),
    ]
    resident = world.fresh_resident()
    # The wallet, its bucket and the day's cap counter exist already.
    awarded(world, program_id, resident.id, record_id="EARLIER")
    results: dict[int, Reply] = {}

    def call(index: int) -> None:
        client = TestClient(world.app, raise_server_exceptions=False)
        try:
            results[index] = award(
                world, program_id, resident.id, "SAME-EVENT", actor=officers[index], client=client
            )
        finally:
            client.close()

    threads = [threading.Thread(target=call, args=(index,)) for index in range(2)]
    if backend == "sqlite":
        # Writers are serialised (BEGIN IMMEDIATE): the second meets the first's award.
        for thread in threads:
            thread.start()
    else:
        gate = world.engine.connect()
        held = gate.begin()
        try:
            gate.execute(
                sa.text(
                    "SELECT amount FROM award_counter"
                    " WHERE program_id = :program AND resident_id = :resident FOR UPDATE"
                ),
                {"program": program_id, "resident": resident.id},
            )
            for waiting, thread in enumerate(threads, start=1):
                thread.start()
                wait_for_lock_waiters(world.engine, waiting)
        finally:
            held.rollback()
            gate.close()
    for thread in threads:
        thread.join(timeout=60)
        assert not thread.is_alive()
    assert budget(world, program_id)["awards"] == 2  # EARLIER and SAME-EVENT, once
    statuses = sorted(response.status_code for response in results.values())
    assert statuses == [200, 201], [response.text for response in results.values()]
    first, second = sorted((response.json() for response in results.values()), key=str)
    assert first["id"] == second["id"]
    assert sorted([first["replayed"], second["replayed"]]) == [False, True]


def test_concurrent_checkups_of_one_type_award_once(world: World) -> None:
    program_id = world.fresh_program(
        module="health_checkup",
        config={"checkup_types": ["specific_health_checkup"]},
        budget={2026: 10_000},
    )
    resident = world.fresh_resident()

    def call(index: int) -> Reply:
        client = TestClient(world.app, raise_server_exceptions=False)
        try:
            return award(
                world,
                program_id,
                resident.id,
                f"HC-{index}",
                details={"checkup_type": "specific_health_checkup"},
                client=client,
            )
        finally:
            client.close()

    responses = run_together(8, call)
    statuses = Counter(response.status_code for response in responses)
    assert statuses == {201: 1, 409: 7}, [response.text for response in responses]
    winner = next(response.json() for response in responses if response.status_code == 201)
    for response in responses:
        if response.status_code == 409:
            body = assert_problem(response, 409, "already_awarded")
            assert body["record_id"] == winner["record_id"]
    assert budget(world, program_id)["awarded"] == 100


def test_concurrent_closures_of_one_wallet_close_it_once(world: World) -> None:
    resident = world.fresh_resident()
    awarded(world, world.programs["a"], resident.id)
    close = f"{C}/residents/{resident.id}/wallets/pt/close"

    def call(index: int) -> Reply:
        client = TestClient(world.app, raise_server_exceptions=False)
        try:
            return client.post(close, headers=keyed(world.counter), json={"reason": f"r{index}"})
        finally:
            client.close()

    responses = run_together(4, call)
    assert Counter(response.status_code for response in responses) == {200: 1, 409: 3}
    for response in responses:
        if response.status_code == 200:
            assert response.json()["moved_to_expired"] == 100
        else:
            assert_problem(response, 409, "wallet_closed")


def test_concurrent_year_end_decisions_decide_once(world: World) -> None:
    program_id = world.fresh_program(budget={2025: 500})

    def call(index: int) -> Reply:
        client = TestClient(world.app, raise_server_exceptions=False)
        try:
            return client.post(
                f"{B}/{program_id}/2025/year-end",
                headers=keyed(world.finance),
                json={"decision": ("lapse", "carry_over")[index % 2], "reason": "FY closed"},
            )
        finally:
            client.close()

    responses = run_together(4, call)
    assert Counter(response.status_code for response in responses) == {200: 1, 409: 3}
    decided = next(response.json() for response in responses if response.status_code == 200)
    for response in responses:
        if response.status_code == 409:
            assert_problem(response, 409, "budget_closed")
    carried = decided["status"] == "carried_over"
    assert budget(world, program_id)["allocated"] == (500 if carried else 0)


def budget_account_of(world: World, program_id: str, year: int) -> int:
    with world.engine.connect() as connection:
        account_id: int = connection.execute(
            sa.text(
                "SELECT account_id FROM program_budget"
                " WHERE program_id = :program AND fiscal_year = :year"
            ),
            {"program": program_id, "year": year},
        ).scalar_one()
    return account_id


def test_a_year_end_racing_a_back_dated_award_carries_over_what_remains(
    world: World, backend: str
) -> None:
    """A back-dated award of FY2025 and FY2025's year end at once. On PostgreSQL a gate (the
    budget account's row lock) lets the award go first and the decision second: the decision
    must carry over what remains after the award (400), not what remained when it started."""
    program_id = world.fresh_program(valid_from=date(2026, 3, 1), budget={2025: 500})
    resident = world.fresh_resident()
    results: dict[str, Reply] = {}

    def run_award() -> None:
        client = TestClient(world.app, raise_server_exceptions=False)
        try:
            results["award"] = award(
                world, program_id, resident.id, occurred_on="2026-03-28", client=client
            )
        finally:
            client.close()

    def run_year_end() -> None:
        client = TestClient(world.app, raise_server_exceptions=False)
        try:
            results["year_end"] = client.post(
                f"{B}/{program_id}/2025/year-end",
                headers=keyed(world.finance),
                json={"decision": "carry_over", "reason": "FY closed"},
            )
        finally:
            client.close()

    threads = [threading.Thread(target=run_award), threading.Thread(target=run_year_end)]
    if backend == "sqlite":
        for thread in threads:
            thread.start()
    else:
        gate = world.engine.connect()
        held = gate.begin()
        try:
            gate.execute(
                sa.text("SELECT id FROM ledger_account WHERE id = :id FOR UPDATE"),
                {"id": budget_account_of(world, program_id, 2025)},
            )
            for waiting, thread in enumerate(threads, start=1):
                thread.start()
                wait_for_lock_waiters(world.engine, waiting)
        finally:
            held.rollback()
            gate.close()
    for thread in threads:
        thread.join(timeout=60)
        assert not thread.is_alive()
    decided = ok(results["year_end"])
    assert (decided["status"], decided["remaining"]) == ("carried_over", 0)
    if backend == "postgresql" or results["award"].status_code == 201:
        assert ok(results["award"], 201)["fiscal_year"] == 2025
        assert (decided["awarded"], budget(world, program_id)["allocated"]) == (100, 400)
    else:  # SQLite, the decision first: the year is closed to the award
        assert_problem(results["award"], 409, "budget_closed")
        assert (decided["awarded"], budget(world, program_id)["allocated"]) == (0, 500)
    run = ok(world.client.post(f"{A}/verify", headers=world.admin.headers), 201)
    assert (run["ok"], run["problems"]) == (True, [])


def test_a_closure_waits_for_an_award_in_flight_and_takes_its_points(
    world: World, backend: str, request: pytest.FixtureRequest
) -> None:
    """An award blocked at its ledger posting (a gate holds the budget account's row lock)
    while counter staff close the wallet. The award holds a shared lock on the wallet row, so
    the closure waits for it; once the award commits, the closure moves its points too: no
    award ever lands in a wallet closed under it."""
    if backend == "sqlite":
        pytest.skip("SQLite serialises writers (BEGIN IMMEDIATE): the interleaving cannot happen")
    program_id = world.programs["a"]
    resident = world.fresh_resident()
    awarded(world, program_id, resident.id)  # the bucket (program a, 2027-04-30) exists
    budget_account = budget_account_of(world, program_id, 2026)
    before = budget(world, program_id)
    results: dict[str, Reply] = {}

    def run_award() -> None:
        client = TestClient(world.app, raise_server_exceptions=False)
        try:
            results["award"] = award(world, program_id, resident.id, "RACE-CLOSE", client=client)
        finally:
            client.close()

    def run_close() -> None:
        client = TestClient(world.app, raise_server_exceptions=False)
        try:
            results["close"] = client.post(
                f"{C}/residents/{resident.id}/wallets/pt/close",
                headers=keyed(world.counter),
                json={"reason": "moved out"},
            )
        finally:
            client.close()

    gate = world.engine.connect()
    held = gate.begin()
    threads = [threading.Thread(target=run_award), threading.Thread(target=run_close)]
    try:
        gate.execute(
            sa.text("SELECT id FROM ledger_account WHERE id = :id FOR UPDATE"),
            {"id": budget_account},
        )
        threads[0].start()
        wait_for_lock_waiters(world.engine, 1)  # the award waits at the budget's lock
        threads[1].start()
        threads[1].join(timeout=2)
        closure_waited = threads[1].is_alive()
    finally:
        held.rollback()
        gate.close()
        for thread in threads:
            thread.join(timeout=60)
            assert not thread.is_alive()
    assert closure_waited  # the closure waited for the award in flight
    assert results["award"].status_code == 201, results["award"].text
    closed = ok(results["close"])
    assert closed["moved_to_expired"] == 200  # the first award and the one in flight
    wallet = ok(
        world.client.get(f"{C}/residents/{resident.id}/wallets", headers=world.counter.headers)
    )[0]
    assert (wallet["status"], wallet["balance"]) == ("closed", 0)
    assert budget(world, program_id)["remaining"] == before["remaining"] - 100
