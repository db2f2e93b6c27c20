"""Bulk uploads after a crash (issue 15), on SQLite and PostgreSQL: a budget's totals stay exact
when an upload hands points back, an upload nobody resumes is handed back by a job or cancelled
by its department, and a dead process costs a retry only a short wait, said in ``Retry-After``.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, cast

import pytest
import sqlalchemy as sa
from api_world import World, assert_problem
from concurrency import run_together
from conftest import FakeClock
from earning_helpers import ACTOR
from sqlalchemy.engine import Engine
from sqlmodel import select
from test_bulk import (
    AMOUNT,
    BASIC,
    HEADER,
    ISS,
    NOON,
    Stalled,
    checkup_file,
    desk,
    encode,
    post_file,
    world_file,
)
from test_cli import invoke

from api.errors import describe_refusal
from api.safety import request_fingerprint
from issuers import bulk
from issuers.bulk import UploadResult
from points import idempotency
from points.audit import AuditEvent
from points.errors import RequestInProgress
from points.jobs import run_job
from points.registry import ResidentStatus
from points.uow import unit_of_work

# Budget totals -----------------------------------------------------------------------------


def test_points_an_upload_hands_back_are_not_counted_as_allocated(
    engine: Engine, clock: FakeClock
) -> None:
    d = desk(engine, clock, budget=50_000_000)
    residents = d.residents(12)
    gone = residents[2:6]

    def meanwhile(done: int, total: int | None) -> None:
        if done == 0:
            d.earning.award(d.program, residents[0], "BY-HAND", BASIC)  # line 2 is refused
            for resident in gone:
                d.earning.set_resident_status(resident, ResidentStatus.MOVED_OUT)

    result = d.upload(checkup_file(residents), batch=5, progress=meanwhile)

    assert (result.upload.awarded, result.upload.failed) == (7, 5)
    assert d.entries("bulk_return") == 1
    budget = d.earning.budget(d.program, 2026)
    assert budget.allocated == 50_000_000
    assert budget.awarded == 8 * AMOUNT
    assert budget.remaining == 50_000_000 - 8 * AMOUNT
    assert budget.allocated - budget.awarded == budget.remaining
    d.assert_settled(result.upload)


# A dead process costs a short wait, and says how long -------------------------------------


def as_dead_process_leaves_it(engine: Engine, died_at: datetime) -> None:
    """The upload as a process leaves it that renewed its lease at ``died_at`` and died: held by
    an owner that will never renew it or let it go."""
    with engine.begin() as connection:
        connection.execute(
            sa.update(bulk.AwardUpload).values(
                owner="dead" * 8, lease_expires_at=died_at + bulk.LEASE
            )
        )


def test_the_lease_of_a_dead_process_lapses_within_twenty_seconds(
    engine: Engine, clock: FakeClock
) -> None:
    d = desk(engine, clock)
    residents = d.residents(8)
    data = checkup_file(residents)
    d.upload_dying(data, batch=3)
    as_dead_process_leaves_it(engine, clock())

    waits = []
    for seconds in (0, 12, 7):
        clock.advance(seconds=seconds)
        with pytest.raises(bulk.UploadInProgress) as raised:
            d.upload(data, batch=3)
        waits.append(raised.value.context["retry_after_seconds"])
    # Whole seconds until the lease lapses, rounded up and at least 1.
    assert waits == [20, 8, 1]
    clock.advance(seconds=1)

    resumed = d.upload(data, batch=3)

    assert (resumed.upload.awarded, resumed.upload.replayed, resumed.upload.failed) == (8, 0, 0)
    for resident in residents:
        assert d.posted(resident) == [AMOUNT]
    d.assert_settled(resumed.upload)


def test_a_live_upload_renews_its_lease_before_every_batch(
    engine: Engine, clock: FakeClock
) -> None:
    """Each batch takes almost a whole lease (the clock moves 19 s per batch): the upload
    outlives its first lease many times over, and another upload of the file is refused all
    along, told to wait the lease renewed before the batch."""
    d = desk(engine, clock)
    residents = d.residents(8)
    data = checkup_file(residents)
    leases: list[tuple[datetime, datetime | None]] = []
    refusals: list[Any] = []
    started = clock()

    def slow_batches(done: int, total: int | None) -> None:
        if done == 0:
            return
        renewed_at = clock()
        leases.append((renewed_at, d.the_upload().lease_expires_at))
        clock.advance(seconds=19)
        with pytest.raises(bulk.UploadInProgress) as raised:
            d.upload(data, batch=2)
        refusals.append(raised.value.context["retry_after_seconds"])

    result = d.upload(data, batch=2, progress=slow_batches)

    assert (result.upload.awarded, result.upload.failed) == (8, 0)
    assert clock() - started == timedelta(seconds=4 * 19)
    assert leases == [(at, at + bulk.LEASE) for at, _ in leases]
    assert [at - started for at, _ in leases] == [timedelta(seconds=19 * n) for n in range(4)]
    assert refusals == [1, 1, 1, 1]
    d.assert_settled(result.upload)


def test_a_claim_whose_work_renews_it_is_short_and_kept_while_the_work_proceeds(
    engine: Engine, clock: FakeClock
) -> None:
    """``own_transactions`` work (a bulk upload) holds its key for ``RENEWED_LEASE`` and renews
    it as it goes; the same key meanwhile is ``request_in_progress`` with the wait."""
    clock.now = NOON
    fingerprint = b"f" * 32

    def run(work: Callable[[Any], tuple[int, Any]]) -> Any:
        return idempotency.run_idempotent(
            engine,
            clock,
            namespace="department:x",
            key="k",
            fingerprint=fingerprint,
            work=work,
            describe_refusal=describe_refusal,
            lease=timedelta(seconds=30),
            own_transactions=True,
        )

    waits: list[int] = []

    def long_work(renew: Callable[[], None]) -> tuple[int, Any]:
        for _ in range(4):
            clock.advance(seconds=15)
            renew()
            with pytest.raises(RequestInProgress) as raised:
                run(long_work)
            waits.append(raised.value.retry_after_seconds)
        return 201, {"done": True}

    stored = run(long_work)

    assert (stored.status, stored.body, stored.replayed) == (201, {"done": True}, False)
    # A minute of work; the claim was renewed each time and always had 20 s to go.
    assert waits == [20, 20, 20, 20]
    assert run(long_work).replayed


def test_a_dead_requests_claim_lapses_in_twenty_seconds(engine: Engine, clock: FakeClock) -> None:
    clock.now = NOON
    fingerprint = b"f" * 32
    unit_of_work(
        engine,
        lambda session: idempotency._claim(
            session, clock(), "department:x", "k", fingerprint, "dead", idempotency.RENEWED_LEASE
        ),
    )

    def work(_renew: Callable[[], None]) -> tuple[int, Any]:
        return 201, {"done": True}

    def run() -> Any:
        return idempotency.run_idempotent(
            engine,
            clock,
            namespace="department:x",
            key="k",
            fingerprint=fingerprint,
            work=work,
            describe_refusal=describe_refusal,
            own_transactions=True,
        )

    clock.advance(seconds=19.5)
    with pytest.raises(RequestInProgress) as raised:
        run()
    assert raised.value.retry_after_seconds == 1
    clock.advance(seconds=0.5)
    assert run().status == 201


@pytest.fixture
def world_clock(clock: FakeClock) -> FakeClock:
    clock.now = NOON
    return clock


def stalled_upload(world: World, program: str, data: bytes) -> Stalled:
    """An upload of ``data`` through the API's world, held after its second batch."""
    upload = functools.partial(
        bulk.upload, world.engine, ACTOR, world.clock, program, department_id=None
    )
    return Stalled(upload, data, batch=2)


def test_both_409s_of_a_retried_upload_say_retry_after(world: World) -> None:
    program = world.programs["a"]
    data = world_file(world, 6)
    clock = cast(FakeClock, world.clock)
    first = stalled_upload(world, program, data)
    clock.advance(seconds=5)

    busy = post_file(world, "issuer_a", program, data)

    body = assert_problem(busy, 409, "upload_in_progress")
    assert busy.headers["Retry-After"] == "15"
    assert body["retry_after_seconds"] == 15
    # The key of a request that died while it held it: claimed 3 s ago.
    fingerprint = request_fingerprint(
        "POST",
        f"{ISS}/programs/{program}/award-uploads",
        [],
        {"sha256": hashlib.sha256(data).hexdigest(), "filename": ""},
    )
    claimed_at = clock() - timedelta(seconds=3)
    unit_of_work(
        world.engine,
        lambda session: idempotency._claim(
            session,
            claimed_at,
            f"department:{world.departments['a']}",
            "key-2",
            fingerprint,
            "dead",
            idempotency.RENEWED_LEASE,
        ),
    )

    claimed = post_file(world, "issuer_a", program, data, key="key-2")

    body = assert_problem(claimed, 409, "request_in_progress")
    assert claimed.headers["Retry-After"] == "17"
    assert body["retry_after_seconds"] == 17
    assert isinstance(first.finish(), UploadResult)
    clock.advance(seconds=17)
    retried = post_file(world, "issuer_a", program, data, key="key-2")
    assert retried.status_code == 200, retried.text
    assert retried.json()["awarded"] == 6


# Ending an upload nobody resumes -----------------------------------------------------------


def dies_after_the_first_batch(
    d: Any, residents: list[str], *, dead: bool
) -> tuple[bulk.AwardUpload, bytes]:
    """An upload of a file for ``residents`` that stops after its first batch (2 rows): its run
    failed and let go (``dead=False``), or its process died holding the lease (``dead=True``);
    the upload and the file."""
    data = named_file(residents)
    d.upload_dying(data, batch=2)
    (upload,) = d.earning.read(
        lambda s: list(s.exec(select(bulk.AwardUpload).where(bulk.AwardUpload.sha256 == sha(data))))
    )
    if dead:
        with d.engine.begin() as connection:
            connection.execute(
                sa.update(bulk.AwardUpload)
                .where(bulk.AwardUpload.id == upload.id)
                .values(owner="dead" * 8, lease_expires_at=d.earning.clock() + bulk.LEASE)
            )
    return upload, data


def named_file(residents: list[str]) -> bytes:
    """A checkup file whose record ids are named after the residents (so that files of other
    residents never share one)."""
    return encode([HEADER] + [f"{r},REC-{r},specific_health_checkup" for r in residents])


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def upload_row(d: Any, upload_id: str) -> bulk.AwardUpload:
    found = d.earning.read(lambda s: s.get(bulk.AwardUpload, upload_id))
    assert found is not None
    return cast(bulk.AwardUpload, found)


def audit_events(engine: Engine, action: str) -> list[AuditEvent]:
    return unit_of_work(
        engine,
        lambda s: list(s.exec(select(AuditEvent).where(AuditEvent.action == action))),
        read_only=True,
    )


def test_the_handback_job_ends_only_uploads_nobody_resumed_fifteen_minutes_after_their_lease(
    engine: Engine, clock: FakeClock
) -> None:
    d = desk(engine, clock, budget=100_000)
    start = clock()
    dead, dead_file = dies_after_the_first_batch(d, d.residents(6), dead=True)  # start + 20 s
    clock.advance(minutes=10)
    let_go, _ = dies_after_the_first_batch(d, d.residents(5), dead=False)  # start + 10 min
    clock.advance(minutes=6)
    fresh, _ = dies_after_the_first_batch(d, d.residents(4), dead=True)  # start + 16 min 20 s
    done = d.upload(named_file(d.residents(3))).upload
    assert d.earning.budget(d.program, 2026).remaining == 100_000 - 18 * AMOUNT

    def run(at: datetime) -> Any:
        clock.now = at
        return run_job(engine, "upload_handback", as_of=at, clock=clock, trigger="cli")

    lapsed = start + bulk.LEASE + bulk.HAND_BACK_AFTER
    just_before = lapsed - timedelta(seconds=1)
    assert bulk.hand_back_stale(engine, just_before, just_before) == {"uploads": 0, "points": 0}
    first = run(lapsed)

    assert (first.status, first.counts) == ("done", {"uploads": 1, "points": 4 * AMOUNT})
    ended = upload_row(d, dead.id)
    assert (ended.status, ended.awarded, ended.returned) == ("abandoned", 2, 4 * AMOUNT)
    assert (ended.owner, ended.lease_expires_at, ended.finished_at) == (None, None, lapsed)
    for account in d.clearing(ended):
        assert account.closed and account.debits_posted == account.credits_posted
    assert [upload_row(d, u.id).status for u in (let_go, fresh, done)] == [
        "issuing",
        "issuing",
        "done",
    ]
    (event,) = audit_events(engine, "award_upload.abandon")
    assert (event.actor_id, event.object_id) == ("system", dead.id)
    assert json.loads(event.details)["returned"] == 4 * AMOUNT
    # The same period again does nothing; the next finds nothing to do.
    assert run(lapsed).status == "already_done"
    assert run(lapsed + timedelta(minutes=1)).counts == {"uploads": 0, "points": 0}
    # An abandoned upload is not resumed: the file again is refused, nothing written.
    before = d.snapshot()
    with pytest.raises(bulk.UploadFinished) as raised:
        d.upload(dead_file)
    assert raised.value.context["upload_status"] == "abandoned"
    assert d.snapshot() == before

    later = run(start + timedelta(minutes=16, seconds=20) + bulk.HAND_BACK_AFTER)

    assert later.counts == {"uploads": 2, "points": (3 + 2) * AMOUNT}
    assert [upload_row(d, u.id).status for u in (let_go, fresh)] == ["abandoned", "abandoned"]
    budget = d.earning.budget(d.program, 2026)
    assert budget.awarded == (2 + 2 + 2 + 3) * AMOUNT
    assert budget.allocated - budget.awarded == budget.remaining == 100_000 - 9 * AMOUNT
    assert d.earning.verify().ok


def test_two_handbacks_at_once_end_each_upload_once_and_a_later_as_of_takes_no_live_one(
    engine: Engine, clock: FakeClock
) -> None:
    d = desk(engine, clock)
    stale = [dies_after_the_first_batch(d, d.residents(4), dead=False)[0] for _ in range(3)]
    clock.advance(minutes=20)
    live, _ = dies_after_the_first_batch(d, d.residents(4), dead=True)  # leased until now + 20 s
    remaining = d.remaining()
    now = clock()

    outcomes = run_together([lambda: bulk.hand_back_stale(engine, now, now)] * 2)

    assert [status for status, _ in outcomes] == ["ok", "ok"], outcomes
    counts = [value for _, value in outcomes]
    assert sum(c["uploads"] for c in counts) == 3
    assert sum(c["points"] for c in counts) == 3 * 2 * AMOUNT
    assert d.remaining() == remaining + 3 * 2 * AMOUNT
    assert [upload_row(d, u.id).status for u in stale] == ["abandoned"] * 3
    assert len(audit_events(engine, "award_upload.abandon")) == 3
    # A run for an instant an hour ahead (by hand, --as-of): the live upload is not its to end.
    ahead = bulk.hand_back_stale(engine, now + timedelta(hours=1), now)
    assert ahead == {"uploads": 0, "points": 0}
    assert upload_row(d, live.id).status == "issuing"
    budget = d.earning.budget(d.program, 2026)
    # What the live upload set aside is in neither awarded nor remaining until it ends.
    assert budget.allocated - budget.awarded - budget.remaining == 2 * AMOUNT
    assert d.earning.verify().ok


def test_a_run_resuming_an_upload_keeps_it_from_the_handback_job(
    engine: Engine, clock: FakeClock
) -> None:
    d = desk(engine, clock)
    residents = d.residents(6)
    upload, _ = dies_after_the_first_batch(d, residents, dead=False)
    clock.advance(minutes=14)
    handed_back: list[Any] = []

    def job_meanwhile(done: int, total: int | None) -> None:
        # 16 minutes after the first run let go, but this run holds the upload now.
        if done == 2:
            clock.advance(minutes=2)
            at = clock()
            handed_back.append(run_job(engine, "upload_handback", as_of=at, clock=clock).counts)

    resumed = d.upload(named_file(residents), batch=2, progress=job_meanwhile)

    assert handed_back == [{"uploads": 0, "points": 0}]
    assert (resumed.upload.id, resumed.upload.status, resumed.upload.awarded) == (
        upload.id,
        "done",
        6,
    )
    d.assert_settled(resumed.upload)


def cancel(world: World, actor: str, upload_id: str, reason: str, key: str) -> Any:
    return world.client.post(
        f"{ISS}/award-uploads/{upload_id}/cancel",
        headers={**world.actors[actor].headers, "Idempotency-Key": key},
        json={"reason": reason},
    )


def budget_of(world: World, program: str) -> dict[str, int]:
    response = world.client.get(
        f"{ISS}/programs/{program}/budgets/2026", headers=world.actors["issuer_a"].headers
    )
    assert response.status_code == 200, response.text
    body = response.json()
    return {name: body[name] for name in ("allocated", "awarded", "remaining")}


def upload_dying_in(world: World, program: str, data: bytes) -> bulk.AwardUpload:
    """Upload ``data`` in batches of 2 and stop after the first (the run lets go)."""

    def die(done: int, total: int | None) -> None:
        if done == 2:
            raise RuntimeError("the process stopped")

    with pytest.raises(RuntimeError):
        bulk.upload(
            world.engine,
            ACTOR,
            world.clock,
            program,
            data,
            department_id=None,
            batch=2,
            progress=die,
        )
    (upload,) = world.read(
        lambda s: list(
            s.exec(select(bulk.AwardUpload).where(bulk.AwardUpload.program_id == program))
        )
    )
    return cast(bulk.AwardUpload, upload)


def test_a_department_cancels_an_unfinished_upload_and_the_rest_returns_exactly(
    world: World,
) -> None:
    program = world.fresh_program("a", budget={2026: 100_000})
    data = world_file(world, 6)
    upload = upload_dying_in(world, program, data)
    amount = upload.total // upload.to_award
    assert budget_of(world, program) == {
        "allocated": 100_000,
        "awarded": 2 * amount,
        "remaining": 100_000 - 6 * amount,
    }
    entries = world.read(lambda s: s.execute(sa.text("SELECT count(*) FROM ledger_entry")).one()[0])

    reason = "  wrong list; a corrected file follows "
    cancelled = cancel(world, "issuer_a", upload.id, reason, "c-1")

    assert cancelled.status_code == 200, cancelled.text
    body = cancelled.json()
    assert (body["id"], body["status"], body["awarded"], body["returned"]) == (
        upload.id,
        "cancelled",
        2,
        4 * amount,
    )
    assert body["finished_at"] is not None
    after = budget_of(world, program)
    assert after == {"allocated": 100_000, "awarded": 2 * amount, "remaining": 100_000 - 2 * amount}
    assert after["allocated"] - after["awarded"] == after["remaining"]
    (event,) = [
        e for e in audit_events(world.engine, "award_upload.cancel") if e.object_id == upload.id
    ]
    assert (event.actor_id, event.reason) == (world.actors["issuer_a"].id, reason.strip())
    # The same request again is its stored answer: nothing moves twice.
    again = cancel(world, "issuer_a", upload.id, reason, "c-1")
    assert again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == body
    assert budget_of(world, program) == after
    assert (
        world.read(lambda s: s.execute(sa.text("SELECT count(*) FROM ledger_entry")).one()[0])
        == entries + 1
    )
    # Another key: the upload is finished. The file again: it is not resumed.
    refused = cancel(world, "issuer_a", upload.id, "again", "c-2")
    finished = assert_problem(refused, 409, "upload_finished")
    assert (finished["upload_id"], finished["upload_status"]) == (upload.id, "cancelled")
    resumed = post_file(world, "issuer_a", program, data, key="u-1")
    assert assert_problem(resumed, 409, "upload_finished")["upload_status"] == "cancelled"
    assert budget_of(world, program) == after
    # The rows it did not award, in a file of their own, are a new upload.
    lines = data.decode("utf-8-sig").splitlines()
    rest = post_file(world, "issuer_a", program, encode([lines[0], *lines[3:]]), key="u-2")
    assert rest.status_code == 201, rest.text
    assert (rest.json()["awarded"], rest.json()["returned"]) == (4, 0)
    assert budget_of(world, program) == {
        "allocated": 100_000,
        "awarded": 6 * amount,
        "remaining": 100_000 - 6 * amount,
    }


def test_an_upload_being_awarded_or_finished_or_of_another_department_is_not_cancelled(
    world: World,
) -> None:
    program = world.programs["a"]
    data = world_file(world, 6)
    clock = cast(FakeClock, world.clock)
    first = stalled_upload(world, program, data)
    clock.advance(seconds=8)
    (upload,) = world.read(
        lambda s: list(
            s.exec(select(bulk.AwardUpload).where(bulk.AwardUpload.program_id == program))
        )
    )
    snapshot = world.snapshot()

    busy = cancel(world, "issuer_a", upload.id, "stop it", "c-1")

    body = assert_problem(busy, 409, "upload_in_progress")
    assert busy.headers["Retry-After"] == "12"
    assert (body["upload_id"], body["awarded"], body["retry_after_seconds"]) == (upload.id, 2, 12)
    hidden = cancel(world, "issuer_b", upload.id, "not ours", "c-1")
    assert_problem(hidden, 404, "not_found")
    assert world.snapshot() == snapshot
    assert isinstance(first.finish(), UploadResult)
    # Not stored as the key's answer: the same key now meets the finished upload.
    late = cancel(world, "issuer_a", upload.id, "stop it", "c-1")
    assert assert_problem(late, 409, "upload_finished")["upload_status"] == "done"


def test_points_jobs_runs_the_handback_by_hand_and_lists_its_runs(
    engine: Engine, clock: FakeClock, database_url: str
) -> None:
    """By hand the job runs on the real clock, long after the desk's ``NOON``."""
    d = desk(engine, clock)
    upload, _ = dies_after_the_first_batch(d, d.residents(5), dead=False)

    ran = invoke(database_url, "jobs", "run", "upload_handback")

    assert ran.exit_code == 0, ran.output
    assert f"points {3 * AMOUNT}, uploads 1" in ran.stdout
    assert upload_row(d, upload.id).status == "abandoned"
    listed = invoke(database_url, "jobs", "list", "--job", "upload_handback", "--json")
    (run,) = [json.loads(line) for line in listed.stdout.splitlines()]
    assert (run["state"], run["trigger"], run["counts"]) == (
        "done",
        "cli",
        {"points": 3 * AMOUNT, "uploads": 1},
    )
    assert d.earning.verify().ok
