"""The ledger's verification as a job (issue 21, part 4): ``verify`` runs nightly at 02:30 Tokyo
for the Tokyo day, and finance queues a run with ``POST /api/v1/finance/verify-runs`` (202 and
the run's id; the run is for the Tokyo minute, so it never takes the nightly run's day). A run
that finds problems is recorded ``failed``: its outcome names the first problem and its counts
say how many; ``points jobs run verify`` then exits 1. On SQLite and, when
``POINTS_TEST_POSTGRES_URL`` is set, PostgreSQL.

The world's entries are not sealed: verified at once they are within the grace (10 seconds),
five minutes on they are reported unsealed, a problem; sealed, the ledger verifies clean.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from api_world import World, assert_problem, open_world
from conftest import FakeClock
from sqlalchemy.engine import Engine
from test_cli import invoke

from ledger import Ledger
from ledger.service import system_clock
from points.errors import ProblemsFound
from points.jobs import JOBS, run_job, tokyo_day, tokyo_minute

F = "/api/v1/finance"


@pytest.fixture
def world(engine: Engine, clock: FakeClock, database_url: str) -> Iterator[World]:
    """The API's world with its entries not sealed and no verify run recorded."""
    with open_world(engine, clock, database_url, record_verify_run=False) as built:
        yield built


def entry_count(world: World) -> int:
    with world.engine.connect() as connection:
        return int(connection.exec_driver_sql("SELECT COUNT(*) FROM ledger_entry").scalar_one())


def verify_runs(world: World) -> list[dict[str, Any]]:
    response = world.client.get(
        f"{F}/job-runs", params={"job": "verify"}, headers=world.finance.headers
    )
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def finished(world: World, run_id: int, timeout: float = 30.0) -> dict[str, Any]:
    """The run ``run_id`` as finance lists it, once it is no longer running (and as finance
    reads it alone, the same)."""
    deadline = time.monotonic() + timeout
    while True:
        [run] = [item for item in verify_runs(world) if item["id"] == run_id]
        if run["state"] != "running":
            alone = world.client.get(f"{F}/job-runs/{run_id}", headers=world.finance.headers)
            assert alone.status_code == 200, alone.text
            assert alone.json() == run
            return run
        assert time.monotonic() < deadline, f"run {run_id} still running after {timeout} s"
        time.sleep(0.05)


def last_verify(world: World) -> dict[str, Any]:
    response = world.client.get(f"{F}/verify/last", headers=world.finance.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def queue(world: World, headers: dict[str, str]) -> dict[str, Any]:
    response = world.client.post(f"{F}/verify-runs", headers=headers)
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    return body


def test_the_verify_job_is_nightly_for_the_tokyo_day() -> None:
    job = JOBS["verify"]
    assert job.schedule == {"trigger": "cron", "hour": 2, "minute": 30}
    assert job.frequent is False  # its runs are kept


def test_the_nightly_run_of_a_clean_ledger_is_done_with_its_counts(
    world: World, clock: FakeClock
) -> None:
    Ledger(world.engine).seal()
    entries = entry_count(world)
    result = run_job(world.engine, "verify", as_of=clock(), clock=clock)
    assert (result.status, result.period) == ("done", tokyo_day(clock()))
    last = last_verify(world)
    assert result.counts == {
        "entries": entries,
        "accounts": last["accounts"],
        "sealed": entries,
        "unsealed": 0,
        "problems": 0,
        "verify_run": last["id"],
    }
    assert last["ok"] is True
    [listed] = verify_runs(world)
    assert listed == {
        **listed,
        "id": result.run_id,
        "period": tokyo_day(clock()),
        "state": "done",
        "trigger": "scheduler",
        "outcome": "ok",
        "counts": result.counts,
    }
    # Once a day: a second run for the day changes nothing.
    again = run_job(world.engine, "verify", as_of=clock() + timedelta(hours=1), clock=clock)
    assert (again.status, again.run_id) == ("already_done", None)
    assert len(verify_runs(world)) == 1


def test_a_run_that_finds_problems_fails_naming_the_first_and_keeps_its_counts(
    world: World, clock: FakeClock, database_url: str
) -> None:
    clock.advance(minutes=5)  # the world's entries are now unsealed past the grace
    entries = entry_count(world)
    with pytest.raises(ProblemsFound) as raised:
        run_job(world.engine, "verify", as_of=clock(), clock=clock, trigger="cli")
    last = last_verify(world)
    assert last["ok"] is False and last["problems"]
    [failed] = verify_runs(world)
    assert failed["state"] == "failed"
    assert failed["counts"] == raised.value.counts
    assert failed["counts"] == {
        "entries": entries,
        "accounts": last["accounts"],
        "sealed": 0,
        "unsealed": entries,
        "problems": len(last["problems"]),
        "verify_run": last["id"],
    }
    first = last["problems"][0]
    assert (
        failed["outcome"]
        == (
            f"ProblemsFound: {len(last['problems'])} problems found; "
            f"the first: [{first['kind']}] {first['message']}"
        )[:500]
    )

    # The problem put right, the day's failed run is run again (the same run) and is done.
    Ledger(world.engine).seal()
    again = run_job(world.engine, "verify", as_of=clock(), clock=clock)
    assert (again.status, again.run_id, again.counts["problems"]) == ("done", failed["id"], 0)
    [done] = verify_runs(world)
    assert (done["id"], done["state"], done["outcome"]) == (failed["id"], "done", "ok")

    # By hand: `points jobs run verify` (today by the system clock) runs it and prints counts.
    result = invoke(database_url, "jobs", "run", "verify")
    assert result.exit_code == 0, result.output
    today = tokyo_day(system_clock())
    assert f"verify for {today}: done (" in result.output
    assert "problems 0" in result.output


def test_a_run_by_hand_that_finds_problems_exits_1(world: World, database_url: str) -> None:
    # The world's entries were made at the fake clock's 2026-04-01: by the system clock they
    # are long past the grace and not sealed.
    result = invoke(database_url, "jobs", "run", "verify")
    assert result.exit_code == 1, result.output
    assert "problems found; the first: [" in result.output
    [failed] = verify_runs(world)
    assert (failed["state"], failed["trigger"]) == ("failed", "cli")
    assert failed["counts"]["problems"] >= 1


def test_finance_queues_a_run_answered_202_and_listed_with_the_job_runs(
    world: World, clock: FakeClock
) -> None:
    clock.advance(minutes=5)  # unsealed past the grace: the first run finds problems
    minute = tokyo_minute(clock())
    queued = queue(world, world.finance.headers)
    assert queued == {
        "run_id": queued["run_id"],
        "job": "verify",
        "period": minute,
        "state": "running",
    }
    failed = finished(world, queued["run_id"])
    assert (failed["period"], failed["state"], failed["trigger"]) == (minute, "failed", "api")
    assert failed["counts"]["problems"] == len(last_verify(world)["problems"]) >= 1
    assert "problems found; the first: [" in failed["outcome"]

    # Put right; queued again within the minute, the failed run is run again (the same run).
    Ledger(world.engine).seal()
    clock.advance(seconds=20)
    assert tokyo_minute(clock()) == minute
    again = queue(world, world.finance.headers)
    assert (again["run_id"], again["period"], again["state"]) == (
        queued["run_id"],
        minute,
        "running",
    )
    done = finished(world, queued["run_id"])
    assert (done["state"], done["outcome"], done["counts"]["problems"]) == ("done", "ok", 0)
    assert done["counts"]["verify_run"] == last_verify(world)["id"]

    # Once done, the minute's run is the answer to any other request that minute (admins too):
    # nothing runs again.
    verified = last_verify(world)["id"]
    for headers in (world.finance.headers, world.admin.headers):
        same = queue(world, headers)
        assert same == {**again, "state": "done"}
    assert last_verify(world)["id"] == verified
    assert len(verify_runs(world)) == 1

    # The next minute is a new run; the nightly run of the day is another still.
    clock.advance(minutes=1)
    later = queue(world, world.admin.headers)
    assert later["run_id"] > queued["run_id"]
    assert later["period"] == tokyo_minute(clock()) != minute
    assert finished(world, later["run_id"])["state"] == "done"
    nightly = run_job(world.engine, "verify", as_of=clock(), clock=clock)
    assert (nightly.status, nightly.period) == ("done", tokyo_day(clock()))
    listed = verify_runs(world)
    assert [item["id"] for item in listed] == [nightly.run_id, later["run_id"], queued["run_id"]]
    assert [item["trigger"] for item in listed] == ["scheduler", "api", "api"]
    assert all(json.dumps(item["counts"]) for item in listed)


def test_only_finance_and_admins_queue_a_run(world: World) -> None:
    for actor in (world.counter, world.resident):
        refused = world.client.post(f"{F}/verify-runs", headers=actor.headers)
        assert_problem(refused, 403, "forbidden")
    assert_problem(world.client.post(f"{F}/verify-runs"), 401, "unauthenticated")
    assert verify_runs(world) == []
    # No body, or an empty object; anything else is refused.
    assert queue(world, world.finance.headers)["job"] == "verify"
    refused = world.client.post(
        f"{F}/verify-runs", headers=world.finance.headers, json={"grace": 1}
    )
    assert refused.status_code == 422, refused.text


def test_an_unknown_run_is_404(world: World) -> None:
    response = world.client.get(f"{F}/job-runs/987654321", headers=world.finance.headers)
    assert_problem(response, 404, "not_found")
    response = world.client.get(f"{F}/job-runs/0", headers=world.finance.headers)
    assert_problem(response, 422, "validation_error")
