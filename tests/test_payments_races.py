"""Races of paying at shops through the HTTP API, on SQLite and PostgreSQL (issue 17, "Races and
safety").

Every race sends its requests from threads released together (``concurrency.run_together``),
each thread with a ``TestClient`` of its own on the world's app, so the requests meet in the
app's connection pool and in the database. Each request has an ``Idempotency-Key`` of its own:
they are different attempts, not retries of one. A refusal must be clean, problem+json with the
code the race calls for, and no request may end in a 5xx. Afterwards the ledger is read back:
how many payments, what the payer and the shop's payable account hold, and ``Ledger.verify``.

* 200 attempts to pay one payment QR, from 200 residents and from one: one payment, 199
  ``payment_request_paid``; and one payment sent 20 times at once with one key: one payment,
  the others its replay or ``request_in_progress``.
* 50 confirms and declines of one store-QR payment: one outcome, 49 ``payment_not_pending``.
* Confirms just before the deadline racing the ``hold_timeouts`` job run for the deadline: each
  payment has one outcome, and the shop, the resident, the events and the ledger agree on it;
  on PostgreSQL both orders are also made certain with a gate.
* One pay code scanned by two tills of a shop, and by two shops: one payment, ``pay_code_used``.
* Refunds racing refunds of one payment: never more than was paid (``refund_exceeds_payment``).
* Rows made on first need (a new shop's payable account, a shop's settings, a resident's pay
  settings) made by racers at once: nobody is refused (the loser of the insert is run again:
  ``points.uow.RACE_CONSTRAINTS``).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from api_world import Actor, World, assert_problem, open_world
from concurrency import run_together, wait_for_lock_waiters
from conftest import FakeClock
from fastapi.testclient import TestClient
from ledger_helpers import seal_and_verify
from payment_helpers import (
    Shop,
    balance,
    funded_resident,
    funded_residents,
    key,
    open_shop,
    payment_qr,
)
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

import ledger
from ledger import Ledger
from points.jobs import RunResult, run_job
from points.pointtypes import get_point_type
from points.registry import StaffRole
from points.wallet_views import wallet_view
from redemption.flows import ResidentPaySettings
from redemption.merchants import MerchantPayable, MerchantSettings

Reply = Any

#: Racers of the payment-QR race (the issue's number).
PAYERS = 200


@pytest.fixture
def engine(database_url: str, backend: str) -> Iterator[Engine]:
    """The world's engine with a pool for the races. SQLite: a connection for every racer (a
    writer waiting for the write lock holds its connection while it waits, so a smaller pool
    would make the others wait for a connection instead, up to the pool's timeout). PostgreSQL:
    a bounded pool that leaves the server's connections to others; the racers queue for a
    connection in the pool, the way a busy server's requests do."""
    if backend == "sqlite":
        built = ledger.create_engine(database_url, pool_size=10, max_overflow=PAYERS + 20)
    else:
        built = ledger.create_engine(database_url, pool_size=10, max_overflow=30)
    yield built
    built.dispose()


@pytest.fixture
def world(engine: Engine, clock: FakeClock, database_url: str) -> Iterator[World]:
    with open_world(engine, clock, database_url, record_verify_run=False) as built:
        yield built


# Racing through the API ----------------------------------------------------------------------


def race(
    world: World,
    calls: list[Callable[[TestClient], Reply]],
    *,
    meanwhile: Callable[[], None] | None = None,
) -> list[Reply]:
    """Each call with a client of its own, in threads released together (then ``meanwhile()``
    here, e.g. opening a gate); what they returned (their responses), in order. No call may
    raise, and no response may be a server error."""
    clients = [TestClient(world.app, raise_server_exceptions=False) for _ in calls]
    outcomes: list[tuple[str, Any]] = []

    def bound(call: Callable[[TestClient], Reply], client: TestClient) -> Callable[[], Reply]:
        return lambda: call(client)

    def run() -> None:
        outcomes.extend(
            run_together([bound(call, client) for call, client in zip(calls, clients, strict=True)])
        )

    runner = threading.Thread(target=run, name="race")
    runner.start()
    try:
        if meanwhile is not None:
            meanwhile()
    finally:
        runner.join(timeout=300)
        for client in clients:
            client.close()
    assert not runner.is_alive(), "the race is stuck"
    assert len(outcomes) == len(calls), "the race did not finish"
    failures = [value for status, value in outcomes if status != "ok"]
    assert not failures, failures[:3]
    responses = [value for _, value in outcomes]
    server_errors = [
        (r.status_code, r.text)
        for r in responses
        if hasattr(r, "status_code") and r.status_code >= 500
    ]
    assert not server_errors, server_errors[:3]
    return responses


class Gate:
    """PostgreSQL: a transaction of the test's own holding what every racer needs (a row
    locked, or a row inserted and not committed), so that they all reach that point before any
    goes on; ``open(waiters)`` waits until that many sessions wait on a lock, then rolls back.
    SQLite needs none (a writer takes the database's write lock at BEGIN, so its writers take
    turns whatever happens), and gets a gate that does nothing."""

    def __init__(self, world: World, statement: sa.Executable) -> None:
        self._engine = world.engine
        self._connection: sa.Connection | None = None
        if world.engine.dialect.name == "sqlite":
            return
        self._connection = world.engine.connect()
        self._held = self._connection.begin()
        try:
            self._connection.execute(statement)
        except BaseException:
            self.open()
            raise

    def wait(self, waiters: int) -> None:
        """Until ``waiters`` sessions wait on a lock (nothing on SQLite)."""
        if self._connection is not None:
            wait_for_lock_waiters(self._engine, waiters)

    def open(self, waiters: int = 0) -> None:
        if self._connection is None:
            return
        try:
            self.wait(waiters)
        finally:
            self._held.rollback()
            self._connection.close()
            self._connection = None


def statuses(responses: list[Reply]) -> Counter[int]:
    return Counter(response.status_code for response in responses)


def refused_with(responses: list[Reply], status: int, code: str) -> list[dict[str, Any]]:
    """Every response that is not a success is the clean refusal ``code``; their bodies."""
    return [
        assert_problem(response, status, code)
        for response in responses
        if response.status_code >= 400
    ]


def paying(resident: Actor, token: str, **fields: Any) -> Callable[[TestClient], Reply]:
    """The resident's wallet paying a scanned QR, with a key of its own."""
    headers = {**resident.headers, **key("pay")}
    return lambda client: client.post(
        "/api/v1/me/payments", json={"token": token, **fields}, headers=headers
    )


def scanning(till: Actor, token: str, amount: int) -> Callable[[TestClient], Reply]:
    """A till scanning a resident's pay code and keying ``amount``."""
    headers = {**till.headers, **key("scan")}
    return lambda client: client.post(
        "/api/v1/merchant/pay-code-payments",
        json={"token": token, "amount": amount},
        headers=headers,
    )


def acting(staff: Actor, payment_id: str, act: str) -> Callable[[TestClient], Reply]:
    """The shop's staff confirming or declining a store-QR payment."""
    headers = {**staff.headers, **key(act)}
    return lambda client: client.post(
        f"/api/v1/merchant/payments/{payment_id}/{act}", headers=headers
    )


def refunding(staff: Actor, payment_id: str, amount: int) -> Callable[[TestClient], Reply]:
    headers = {**staff.headers, **key("refund")}
    return lambda client: client.post(
        f"/api/v1/merchant/payments/{payment_id}/refunds",
        json={"amount": amount, "reason": "race"},
        headers=headers,
    )


# Reading back --------------------------------------------------------------------------------


def shop_view(world: World, shop: Shop, payment_id: str) -> dict[str, Any]:
    response = world.client.get(f"/api/v1/merchant/payments/{payment_id}", headers=shop.headers)
    assert response.status_code == 200, response.text
    return dict(response.json())


def resident_view(world: World, resident: Actor, payment_id: str) -> dict[str, Any]:
    response = world.client.get(f"/api/v1/me/payments/{payment_id}", headers=resident.headers)
    assert response.status_code == 200, response.text
    return dict(response.json())


def payable(world: World, merchant_id: str) -> tuple[int, int]:
    """The shop's payable account in the world's point type: (posted, pending); (0, 0) while it
    has none."""
    account_id = world.read(
        lambda session: session.exec(
            select(MerchantPayable.account_id).where(
                MerchantPayable.merchant_id == merchant_id,
                MerchantPayable.point_type_id == world.point_type_id,
            )
        ).first()
    )
    if account_id is None:
        return 0, 0
    with Ledger(world.engine, clock=world.clock) as book:
        found = book.balance(account_id)
    return found.posted, found.pending


def balances(world: World, resident_ids: list[str]) -> dict[str, int]:
    """What each resident can spend now, as their wallets show it, read in one transaction."""
    now = world.now()

    def work(session: Session) -> dict[str, int]:
        point_type = get_point_type(session, world.point_type_id)
        return {
            resident_id: wallet_view(session, point_type, resident_id, now, 1).balance
            for resident_id in resident_ids
        }

    return world.read(work)


def events_of(world: World, shop: Shop) -> list[tuple[str, str]]:
    """The shop's payment events, oldest first: (kind, payment id)."""
    response = world.client.get(
        "/api/v1/merchant/payment-events", params={"after": 0}, headers=shop.headers
    )
    assert response.status_code == 200, response.text
    return [(event["kind"], event["payment"]["id"]) for event in response.json()["items"]]


def ledger_is_sound(world: World) -> None:
    with Ledger(world.engine, clock=world.clock) as book:
        seal_and_verify(book)


def grown(world: World, before: dict[str, int]) -> dict[str, int]:
    """The tables whose row counts changed since ``before``, and by how much (the idempotency
    records aside: the world does not count them)."""
    after = world.snapshot()
    return {table: after[table] - before[table] for table in after if after[table] != before[table]}


# 1. One payment QR, 200 payers ---------------------------------------------------------------


@pytest.mark.parametrize("payers", ["many residents", "one resident"])
def test_200_attempts_to_pay_one_payment_qr_pay_it_once(world: World, payers: str) -> None:
    shop = open_shop(world)
    if payers == "many residents":
        residents = funded_residents(world, PAYERS, 1_000)
    else:
        residents = [funded_resident(world, 1_000)] * PAYERS
    request = payment_qr(world, shop, 300, reference="R-RACE")
    before = world.snapshot()

    responses = race(world, [paying(resident, request["token"]) for resident in residents])

    assert statuses(responses) == {201: 1, 409: PAYERS - 1}, statuses(responses)
    refused_with(responses, 409, "payment_request_paid")
    winner = next(index for index, r in enumerate(responses) if r.status_code == 201)
    payment = responses[winner].json()
    assert (payment["state"], payment["flow"], payment["amount"]) == ("posted", "payment_qr", 300)
    # One payment: one row, one entry, one used token, one event.
    assert grown(world, before) == {
        "payment": 1,
        "ledger_entry": 1,
        "used_token": 1,
        "payment_event": 1,
        # The new shop's payable account, made with its first payment.
        "merchant_payable": 1,
    }
    seen = world.client.get(
        f"/api/v1/merchant/payment-requests/{request['id']}", headers=shop.headers
    ).json()
    assert seen["state"] == "paid" and seen["payment"]["id"] == payment["id"]
    # The payer paid once; nobody else paid anything.
    payer = residents[winner]
    assert balance(world, payer) == 700
    assert resident_view(world, payer, payment["id"])["state"] == "posted"
    others = balances(world, [resident.id for resident in residents if resident.id != payer.id])
    assert set(others.values()) <= {1_000}
    assert payable(world, shop.merchant_id) == (300, 0)
    assert events_of(world, shop) == [("posted", payment["id"])]
    ledger_is_sound(world)


def test_one_payment_retried_at_once_with_one_key_pays_once(world: World) -> None:
    """A wallet sending its one payment many times at once (a double tap, a retry on a flaky
    line) with the same key: one payment; every answer is it, or "still in progress"."""
    shop = open_shop(world)
    resident = funded_resident(world, 1_000)
    request = payment_qr(world, shop, 300)
    headers = {**resident.headers, **key("retry")}

    def call(client: TestClient) -> Reply:
        return client.post("/api/v1/me/payments", json={"token": request["token"]}, headers=headers)

    responses = race(world, [call] * 20)

    created = [response.json() for response in responses if response.status_code == 201]
    assert created, [response.text for response in responses]
    assert all(body == created[0] for body in created)
    refused_with(responses, 409, "request_in_progress")
    assert balance(world, resident) == 700
    assert payable(world, shop.merchant_id) == (300, 0)
    # Once done, the key answers with the payment.
    again = world.client.post(
        "/api/v1/me/payments", json={"token": request["token"]}, headers=headers
    )
    assert again.status_code == 201 and again.json() == created[0]
    assert again.headers["Idempotent-Replayed"] == "true"
    ledger_is_sound(world)


# 2. Confirms and declines of one store-QR payment --------------------------------------------


def test_50_confirms_and_declines_of_one_payment_have_one_outcome(world: World) -> None:
    shop = open_shop(world)
    colleague = world.fresh_staff(StaffRole.MERCHANT, merchant_id=shop.merchant_id)
    resident = funded_resident(world, 1_000)
    held = world.client.post(
        "/api/v1/me/payments",
        json={"token": shop.store_qr, "amount": 400},
        headers={**resident.headers, **key()},
    )
    assert held.status_code == 201, held.text
    payment_id = held.json()["id"]
    assert held.json()["state"] == "pending"
    before = world.snapshot()

    calls = [
        acting(
            (shop.till, colleague)[index % 2], payment_id, ("confirm", "decline")[index // 2 % 2]
        )
        for index in range(50)
    ]
    responses = race(world, calls)

    assert statuses(responses) == {200: 1, 409: 49}, statuses(responses)
    refused_with(responses, 409, "payment_not_pending")
    winner = next(index for index, r in enumerate(responses) if r.status_code == 200)
    outcome = responses[winner].json()["state"]
    assert outcome == ("posted", "voided")[winner // 2 % 2]
    # The shop, the resident and the ledger tell the same outcome.
    seen = shop_view(world, shop, payment_id)
    assert seen == responses[winner].json()
    assert resident_view(world, resident, payment_id)["state"] == outcome
    assert seen["resolution_entry_id"] is not None
    # One resolution of the hold, one event.
    assert grown(world, before) == {"ledger_entry": 1, "payment_event": 1}
    assert events_of(world, shop) == [("created", payment_id), (outcome, payment_id)]
    if outcome == "posted":
        assert balance(world, resident) == 600
        assert payable(world, shop.merchant_id) == (400, 0)
    else:
        assert balance(world, resident) == 1_000
        assert payable(world, shop.merchant_id) == (0, 0)
    ledger_is_sound(world)


# 3. Confirms racing the timeout job ----------------------------------------------------------


def store_payments(world: World, shop: Shop, residents: list[Actor]) -> list[dict[str, Any]]:
    """Each resident pays the shop's store QR (100, 101, ...): holds awaiting the shop, made at
    one instant, so with one deadline."""
    held = []
    for index, resident in enumerate(residents):
        response = world.client.post(
            "/api/v1/me/payments",
            json={"token": shop.store_qr, "amount": 100 + index},
            headers={**resident.headers, **key()},
        )
        assert response.status_code == 201, response.text
        assert response.json()["state"] == "pending"
        held.append(dict(response.json()))
    return held


def deadline_of(held: list[dict[str, Any]]) -> datetime:
    deadlines = {datetime.fromisoformat(payment["confirm_by"]) for payment in held}
    assert len(deadlines) == 1
    return deadlines.pop()


def posted_events(world: World, merchant_id: str) -> int:
    """How many of the shop's payments were posted (a read that takes no write lock)."""
    query = sa.text(
        "SELECT COUNT(*) FROM payment_event WHERE merchant_id = :merchant AND kind = 'posted'"
    ).bindparams(merchant=merchant_id)
    return int(world.read(lambda session: session.execute(query).scalar_one()))


def agreed_outcome(
    world: World, shop: Shop, resident: Actor, payment: dict[str, Any], confirm: Reply
) -> str:
    """The payment's one outcome, which the shop, the resident, the confirm's answer, the
    resident's balance and the shop's events all tell: ``posted`` or ``voided``."""
    seen = shop_view(world, shop, payment["id"])
    mine = resident_view(world, resident, payment["id"])
    assert seen["state"] == mine["state"]
    assert seen["resolution_entry_id"] == mine["resolution_entry_id"] is not None
    if confirm.status_code == 200:
        assert seen["state"] == "posted"
        assert confirm.json()["resolution_entry_id"] == seen["resolution_entry_id"]
        assert balance(world, resident) == 1_000 - payment["amount"]
    else:
        assert_problem(confirm, 409, "payment_not_pending")
        assert seen["state"] == "voided"
        assert balance(world, resident) == 1_000
    # Created, then its one outcome, announced once.
    events = [kind for kind, paid in events_of(world, shop) if paid == payment["id"]]
    assert events == ["created", seen["state"]]
    return str(seen["state"])


def test_confirms_racing_the_timeout_job_have_one_outcome_each(
    world: World, clock: FakeClock
) -> None:
    """Twenty store-QR payments awaiting the shop; one second before their deadline the shop
    confirms each, and the ``hold_timeouts`` job runs for the deadline (its ``as_of`` given, as
    the scheduler gives it) once five confirms went through, while the others are under way.
    Each payment is posted (its confirm answered 200, and the job did not void it) or voided
    (the job voided it, its confirm refused), never both: the shop, the resident, the events
    and the ledger agree."""
    how_many, head_start = 20, 5
    shop = open_shop(world)
    residents = funded_residents(world, how_many, 1_000)
    held = store_payments(world, shop, residents)
    deadline = deadline_of(held)
    clock.now = deadline - timedelta(seconds=1)

    def the_job(_client: TestClient) -> RunResult:
        # Left alone, the job (one transaction) voids every hold before the first confirm
        # (a request) is through; let a few confirms go first.
        waited = time.monotonic() + 60
        while posted_events(world, shop.merchant_id) < head_start:
            assert time.monotonic() < waited, "the confirms do not go through"
            time.sleep(0.01)
        return run_job(world.engine, "hold_timeouts", as_of=deadline, clock=clock)

    confirms = [acting(shop.till, payment["id"], "confirm") for payment in held]
    *responses, job_run = race(world, [*confirms, the_job])

    assert job_run.status == "done"
    outcomes = Counter(
        agreed_outcome(world, shop, resident, payment, response)
        for payment, resident, response in zip(held, residents, responses, strict=True)
    )
    assert outcomes["posted"] >= head_start
    assert outcomes["posted"] + outcomes["voided"] == how_many
    assert job_run.counts == {"voided": outcomes["voided"], "announced": outcomes["voided"]}
    posted_amount = sum(
        payment["amount"]
        for payment, response in zip(held, responses, strict=True)
        if response.status_code == 200
    )
    assert payable(world, shop.merchant_id) == (posted_amount, 0)
    # Nothing is left for the next run.
    later = run_job(
        world.engine, "hold_timeouts", as_of=deadline + timedelta(minutes=1), clock=clock
    )
    assert later.counts == {"voided": 0, "announced": 0}
    ledger_is_sound(world)


@pytest.mark.parametrize("backend", ["postgresql"])
@pytest.mark.parametrize("first", ["confirm", "job"])
def test_a_confirm_and_the_timeout_job_meeting_on_one_hold(
    world: World, clock: FakeClock, first: str
) -> None:
    """The two orders of the race, made certain on PostgreSQL: a gate locks the hold's last
    ledger account (both lock the hold's accounts in id order), the one sent first locks the
    others and waits at the gate, the second waits behind the first; the gate opens. The first
    wins: a confirm first posts the hold and the job voids nothing; the job first voids it and
    the confirm, sent one second before the deadline, is refused ``payment_not_pending``."""
    shop = open_shop(world)
    [resident] = funded_residents(world, 1, 1_000)
    [payment] = store_payments(world, shop, [resident])
    deadline = deadline_of([payment])
    clock.now = deadline - timedelta(seconds=1)
    with Ledger(world.engine, clock=clock) as book:
        accounts = sorted(
            {posting.account_id for posting in book.get_entry(payment["entry_id"]).postings}
        )
    assert len(accounts) >= 2
    gate = Gate(
        world,
        sa.text("SELECT id FROM ledger_account WHERE id = :last FOR UPDATE").bindparams(
            last=accounts[-1]
        ),
    )
    results: dict[str, Any] = {}

    def confirm() -> None:
        client = TestClient(world.app, raise_server_exceptions=False)
        try:
            results["confirm"] = acting(shop.till, payment["id"], "confirm")(client)
        finally:
            client.close()

    def job() -> None:
        results["job"] = run_job(world.engine, "hold_timeouts", as_of=deadline, clock=clock)

    second = "job" if first == "confirm" else "confirm"
    threads = {"confirm": threading.Thread(target=confirm), "job": threading.Thread(target=job)}
    try:
        threads[first].start()
        gate.wait(1)
        threads[second].start()
        gate.wait(2)
    finally:
        gate.open()
        for thread in threads.values():
            thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads.values())

    outcome = agreed_outcome(world, shop, resident, payment, results["confirm"])
    assert outcome == ("posted" if first == "confirm" else "voided")
    voided = int(outcome == "voided")
    assert results["job"].counts == {"voided": voided, "announced": voided}
    assert payable(world, shop.merchant_id) == (
        (payment["amount"], 0) if outcome == "posted" else (0, 0)
    )
    ledger_is_sound(world)


# 4. One pay code, two devices ----------------------------------------------------------------


@pytest.mark.parametrize("devices", ["two tills of one shop", "two shops"])
def test_one_pay_code_scanned_by_two_devices_pays_once(world: World, devices: str) -> None:
    """Each device scans the code ten times at once (a double scan, a retry), keying its own
    amount: one payment, at one device."""
    first = open_shop(world)
    if devices == "two tills of one shop":
        second = open_shop(world, first.merchant_id, till_name="レジ2")
    else:
        second = open_shop(world)
    resident = funded_resident(world, 1_000)
    made = world.client.post("/api/v1/me/pay-codes", json={}, headers=resident.headers)
    assert made.status_code == 201, made.text
    code = made.json()
    amounts = {first.till_id: 300, second.till_id: 400}
    before = world.snapshot()

    calls = [
        scanning(shop.till, code["token"], amounts[shop.till_id])
        for _ in range(10)
        for shop in (first, second)
    ]
    responses = race(world, calls)

    assert statuses(responses) == {201: 1, 409: 19}, statuses(responses)
    refused_with(responses, 409, "pay_code_used")
    payment = next(r.json() for r in responses if r.status_code == 201)
    winner = first if payment["till_id"] == first.till_id else second
    assert payment["till_id"] == winner.till_id
    assert (payment["state"], payment["amount"]) == ("posted", amounts[winner.till_id])
    assert balance(world, resident) == 1_000 - payment["amount"]
    used = world.client.get(f"/api/v1/me/pay-codes/{code['id']}", headers=resident.headers).json()
    assert used["state"] == "used" and used["payment"]["id"] == payment["id"]
    assert grown(world, before) == {
        "payment": 1,
        "ledger_entry": 1,
        "used_token": 1,
        "payment_event": 1,
        "merchant_payable": 1,
    }
    assert payable(world, winner.merchant_id) == (payment["amount"], 0)
    if devices == "two shops":
        loser = second if winner is first else first
        assert payable(world, loser.merchant_id) == (0, 0)
    ledger_is_sound(world)


# 5. Refunds racing refunds -------------------------------------------------------------------


def paid(world: World, shop: Shop, resident: Actor, amount: int) -> dict[str, Any]:
    request = payment_qr(world, shop, amount)
    response = world.client.post(
        "/api/v1/me/payments",
        json={"token": request["token"]},
        headers={**resident.headers, **key()},
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def test_racing_refunds_never_return_more_than_was_paid(world: World) -> None:
    """A payment of 500 and twenty refunds of 100 to 300 at once, by two of the shop's staff:
    the refunds granted add up to at most 500, each 201 tells the total refunded after it, in
    the order they were granted, and every other is ``refund_exceeds_payment`` naming what was
    left (never less than is left now, always less than it asked)."""
    shop = open_shop(world)
    colleague = world.fresh_staff(StaffRole.MERCHANT, merchant_id=shop.merchant_id)
    resident = funded_resident(world, 600)
    payment = paid(world, shop, resident, 500)
    asked = [100 + (37 * index) % 201 for index in range(20)]
    assert min(asked) == 100 and max(asked) <= 300

    calls = [
        refunding((shop.till, colleague)[index % 2], payment["id"], amount)
        for index, amount in enumerate(asked)
    ]
    responses = race(world, calls)

    assert set(statuses(responses)) <= {201, 409}, statuses(responses)
    granted = [
        (r.json()["refunded"], amount)
        for r, amount in zip(responses, asked, strict=True)
        if r.status_code == 201
    ]
    total = sum(amount for _, amount in granted)
    assert granted and total <= 500
    # In the order granted, each answer's ``refunded`` is the running total.
    running = 0
    for refunded, amount in sorted(granted):
        running += amount
        assert refunded == running
    seen = shop_view(world, shop, payment["id"])
    assert seen["refunded"] == total
    assert seen["state"] == ("refunded" if total == 500 else "partly_refunded")
    assert len(seen["refund_entry_ids"]) == len(granted)
    left = 500 - total
    refused = [amount for r, amount in zip(responses, asked, strict=True) if r.status_code == 409]
    bodies = refused_with(responses, 409, "refund_exceeds_payment")
    for body, amount in zip(bodies, refused, strict=True):
        assert left <= body["refundable"] < amount, (body, amount)
    assert balance(world, resident) == 100 + total
    assert payable(world, shop.merchant_id) == (500 - total, 0)
    ledger_is_sound(world)


def test_racing_refunds_fill_the_payment_exactly(world: World) -> None:
    """Twenty refunds of 100 of a payment of 500 at once: five granted, the payment refunded."""
    shop = open_shop(world)
    resident = funded_resident(world, 500)
    payment = paid(world, shop, resident, 500)

    responses = race(world, [refunding(shop.till, payment["id"], 100) for _ in range(20)])

    assert statuses(responses) == {201: 5, 409: 15}, statuses(responses)
    for body in refused_with(responses, 409, "refund_exceeds_payment"):
        assert body["refundable"] == 0
    assert sorted(r.json()["refunded"] for r in responses if r.status_code == 201) == [
        100,
        200,
        300,
        400,
        500,
    ]
    seen = shop_view(world, shop, payment["id"])
    assert (seen["state"], seen["refunded"], len(seen["refund_entry_ids"])) == ("refunded", 500, 5)
    assert balance(world, resident) == 500
    assert payable(world, shop.merchant_id) == (0, 0)
    ledger_is_sound(world)


# 6. Rows made on first need -------------------------------------------------------------------
#
# A shop's payable account is made with its first payment, its settings row when first read,
# a resident's pay settings when first changed. Racers that all find the row missing each make
# it: one wins, and the others must be run again (and find it), not refused. On PostgreSQL a
# gate (the row inserted, not committed) makes the race certain: every racer has looked for the
# row and waits to insert its own when the gate rolls back. SQLite's writers take turns.


def test_the_first_payments_at_a_new_shop_all_go_through(world: World) -> None:
    """Eight residents pay eight payment QRs of a shop that has taken nothing yet, at once:
    every payment goes through, into one payable account."""
    shop = open_shop(world)
    residents = funded_residents(world, 8, 1_000)
    requests = [payment_qr(world, shop, 100 + index) for index in range(len(residents))]
    assert payable(world, shop.merchant_id) == (0, 0)
    gate = Gate(
        world,
        sa.insert(MerchantPayable.__table__).values(  # type: ignore[attr-defined]
            merchant_id=shop.merchant_id, point_type_id=world.point_type_id, account_id=2**62
        ),
    )

    responses = race(
        world,
        [
            paying(resident, request["token"])
            for resident, request in zip(residents, requests, strict=True)
        ],
        meanwhile=lambda: gate.open(len(residents)),
    )

    assert statuses(responses) == {201: len(residents)}, [
        (r.status_code, r.json().get("code")) for r in responses
    ]
    assert payable(world, shop.merchant_id) == (sum(100 + i for i in range(len(residents))), 0)
    paid_now = balances(world, [resident.id for resident in residents])
    assert paid_now == {r.id: 1_000 - (100 + i) for i, r in enumerate(residents)}
    ledger_is_sound(world)


def test_a_shops_first_settings_changed_at_once_are_made_once(world: World) -> None:
    """A shop whose settings were never set: admins change them from four sessions at once (the
    first change makes the row) while its staff read them (a read writes nothing): every change
    is taken, one after the other, and every read answers the defaults or a change."""
    merchant_id = world.merchants["a"]
    staff = world.actors["merchant_a"]
    gate = Gate(
        world,
        sa.insert(MerchantSettings.__table__).values(  # type: ignore[attr-defined]
            merchant_id=merchant_id, event_count=0, updated_at=world.now()
        ),
    )

    def changing(seconds: int) -> Callable[[TestClient], Reply]:
        return lambda client: client.patch(
            f"/api/v1/admin/merchants/{merchant_id}/settings",
            json={"confirm_timeout_seconds": seconds, "reason": "the shop asked"},
            headers=world.admin.headers,
        )

    def reading(client: TestClient) -> Reply:
        return client.get("/api/v1/merchant/settings", headers=staff.headers)

    timeouts = [120, 240, 360, 480]
    calls = [changing(seconds) for seconds in timeouts] + [reading] * 4
    responses = race(world, calls, meanwhile=lambda: gate.open(len(timeouts)))

    assert statuses(responses) == {200: len(calls)}, [
        (r.status_code, r.json().get("code")) for r in responses
    ]
    assert [r.json()["confirm_timeout_seconds"] for r in responses[:4]] == timeouts
    shown = {r.json()["confirm_timeout_seconds"] for r in responses[4:]}
    assert shown <= {600, *timeouts}
    with Session(world.engine) as session:
        rows = session.exec(
            select(MerchantSettings).where(MerchantSettings.merchant_id == merchant_id)
        ).all()
    assert len(rows) == 1
    assert rows[0].confirm_timeout_seconds in timeouts


def test_a_residents_first_pay_settings_changed_at_once_are_made_once(world: World) -> None:
    """A resident's devices lower the pay-code limit at once, the first change ever: every
    change is taken, one after the other."""
    resident = funded_resident(world, 0)
    gate = Gate(
        world,
        sa.insert(ResidentPaySettings.__table__).values(  # type: ignore[attr-defined]
            resident_id=resident.id, pay_code_limit=5_000, updated_at=world.now()
        ),
    )

    def changing(limit: int) -> Callable[[TestClient], Reply]:
        return lambda client: client.put(
            "/api/v1/me/payment-settings", json={"pay_code_limit": limit}, headers=resident.headers
        )

    limits = [1_000, 2_000, 3_000, 4_000]
    responses = race(
        world, [changing(limit) for limit in limits], meanwhile=lambda: gate.open(len(limits))
    )

    assert statuses(responses) == {200: len(limits)}, [
        (r.status_code, r.json().get("code")) for r in responses
    ]
    now = world.client.get("/api/v1/me/payment-settings", headers=resident.headers).json()
    assert now["pay_code_limit"] in limits
