"""Bulk uploads after a crash (issue 15), on SQLite and PostgreSQL: a budget's totals stay exact
when an upload hands points back, an upload nobody resumes is handed back by a job or cancelled
by its department, and a dead process costs a retry only a short wait, said in ``Retry-After``.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, cast

import pytest
import sqlalchemy as sa
from api_world import World, assert_problem
from conftest import FakeClock
from earning_helpers import ACTOR
from sqlalchemy.engine import Engine
from test_bulk import (
    AMOUNT,
    BASIC,
    ISS,
    NOON,
    Stalled,
    checkup_file,
    desk,
    post_file,
    world_file,
)

from api.errors import describe_refusal
from api.safety import request_fingerprint
from issuers import bulk
from issuers.bulk import UploadResult
from points import idempotency
from points.errors import RequestInProgress
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


def test_both_409s_of_a_retried_upload_say_retry_after(world: World) -> None:
    program = world.programs["a"]
    data = world_file(world, 6)
    clock = cast(FakeClock, world.clock)
    first = Stalled(
        functools.partial(
            bulk.upload, world.engine, ACTOR, world.clock, program, department_id=None
        ),
        data,
        batch=2,
    )
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
