"""API safety: idempotency keys (claims, leases, stored results), rate limits held in the
database, and hardening (security headers, CORS, bounded bodies, production settings).

No production endpoint moves value yet, so the idempotency tests add one to a test app, the
way ``api.safety`` documents: ``openapi_extra=VALUE_MOVING``, an ``IdempotencyDep``, and work
that posts a ledger entry in the transaction that stores the result. Every test that touches
storage runs on SQLite, and on PostgreSQL when ``POINTS_TEST_POSTGRES_URL`` is set.
"""

from __future__ import annotations

import inspect
import json
import os
import secrets
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from api_world import assert_problem, unique, unique_address_number, world_settings
from concurrency import wait_for_lock_waiters
from conftest import FakeClock
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient
from pydantic import BaseModel, Field, ValidationError
from sqlalchemy.engine import Engine
from sqlmodel import Session

import ledger
from api.app import create_app
from api.deps import CallerDep
from api.safety import (
    API_CSP,
    JSON_DEPTH_MAX,
    VALUE_MOVING,
    Idempotency,
    IdempotencyDep,
    request_fingerprint,
)
from ledger import AccountFlags, Ledger, LedgerTx, NewEntry, Posting, Side
from points import access, auth, idempotency, people
from points.auth import Role
from points.errors import RequestInProgress
from points.registry import StaffRole
from points.settings import DEVELOPMENT_SECRET_KEY, Settings
from points.uow import unit_of_work

#: What a TestClient returns (an httpx-like response; the library depends on Starlette).
Reply = Any

TRANSFER = "/test/transfer"
SELF_ENROL = "/api/v1/enrolments/self"
CODE_ENROL = "/api/v1/enrolments/code"
DEPARTMENTS = "/api/v1/admin/departments"
BOOM = "/api/v1/test/boom"


# Principals, accounts and the test app ----------------------------------------------------


@dataclass(frozen=True)
class Caller:
    id: str
    token: str

    def headers(self, key: str | bytes | None = None) -> dict[str, Any]:
        headers: dict[str, Any] = {"Authorization": f"Bearer {self.token}"}
        if key is not None:
            headers["Idempotency-Key"] = key
        return headers


def new_staff(engine: Engine, clock: FakeClock, role: StaffRole = StaffRole.FINANCE) -> Caller:
    """A member of staff with a token, made with the services (as the CLI bootstraps)."""
    now = clock()

    def work(session: Session) -> Caller:
        member = people.create_staff(
            session, access.SYSTEM, now, role=role, display_name=unique("safety")
        )
        session.flush()
        new = access.issue_token(
            session, access.SYSTEM, now, role=Role(role.value), principal_id=member.id
        )
        return Caller(member.id, new.secret)

    return unit_of_work(engine, work)


def new_verified_resident(engine: Engine, clock: FakeClock) -> str:
    now = clock()
    return unit_of_work(
        engine,
        lambda session: (
            people.create_resident(
                session,
                access.SYSTEM,
                now,
                name="安全 試験",
                address_number=unique_address_number(),
                birth_year=1975,
                verified=True,
            ).id
        ),
    )


def count(engine: Engine, table: str) -> int:
    with engine.connect() as connection:
        return int(connection.exec_driver_sql(f"SELECT COUNT(*) FROM {table}").scalar_one())


class TransferBody(BaseModel):
    source: int = Field(alias="from")
    target: int = Field(alias="to")
    amount: int = Field(gt=0)


Hook = Callable[[Session], None]


def add_transfer_route(
    app: FastAPI, clock: Callable[..., Any], hooks: list[Hook] | None = None
) -> None:
    """A value-moving route, exactly as ``api.safety`` documents the pattern. ``hooks`` run in
    the work's transaction before the entry is posted, each once (a test appends them)."""
    pending = hooks if hooks is not None else []

    @app.post(TRANSFER, status_code=201, openapi_extra=VALUE_MOVING)
    def transfer(
        body: TransferBody, caller: CallerDep, idempotency: IdempotencyDep
    ) -> JSONResponse:
        def work(session: Session) -> tuple[int, Any]:
            while pending:
                pending.pop(0)(session)
            entry = LedgerTx(session.connection(), clock).post(
                NewEntry(
                    [
                        Posting(body.source, Side.DEBIT, body.amount),
                        Posting(body.target, Side.CREDIT, body.amount),
                    ],
                    kind="transfer",
                    description="test transfer",
                )
            )
            return 201, {"entry_id": entry.id}

        return idempotency.run(caller, body, work)


def transfer_app(
    database_url: str, engine: Engine, clock: FakeClock, hooks: list[Hook] | None = None
) -> FastAPI:
    app = create_app(world_settings(database_url), engine=engine, clock=clock)
    add_transfer_route(app, clock, hooks)
    return app


@dataclass
class Env:
    """A test app with the transfer route, two callers, and three accounts."""

    database_url: str
    engine: Engine
    clock: FakeClock
    app: FastAPI
    client: TestClient
    alice: Caller
    bob: Caller
    #: A debit-normal source without limits.
    source: int
    #: A wallet (credit-normal, may not go below zero), empty at the start.
    wallet: int
    #: Another wallet.
    other: int
    #: Run once each in the transfer's work, before it posts (see ``add_transfer_route``).
    hooks: list[Hook]

    def body(self, amount: int = 100, *, source: int | None = None) -> dict[str, int]:
        return {
            "from": self.source if source is None else source,
            "to": self.other,
            "amount": amount,
        }

    def transfer(
        self,
        body: dict[str, Any],
        key: str | bytes | None,
        *,
        caller: Caller | None = None,
        client: TestClient | None = None,
    ) -> Reply:
        headers = (caller or self.alice).headers(key)
        return (client or self.client).post(TRANSFER, headers=headers, json=body)

    def entries(self) -> int:
        return count(self.engine, "ledger_entry")

    def records(self) -> int:
        return count(self.engine, "idempotency_record")

    def posted(self, achow_manyid: int) -> int:
        return Ledger(self.engine, clock=self.clock).balance(achow_manyid).posted

    def fund_wallet(self, amount: int) -> None:
        Ledger(self.engine, clock=self.clock).post(
            NewEntry(
                [
                    Posting(self.source, Side.DEBIT, amount),
                    Posting(self.wallet, Side.CREDIT, amount),
                ],
                kind="award",
            )
        )


@pytest.fixture
def env(engine: Engine, clock: FakeClock, database_url: str) -> Iterator[Env]:
    books = Ledger(engine, clock=clock)
    info = books.create_ledger(unique("safety")[:32], "safety points")
    source = books.create_account(ledger_id=info.id, code=100, normal_side=Side.DEBIT)
    wallet, other = (
        books.create_account(
            ledger_id=info.id,
            code=300,
            normal_side=Side.CREDIT,
            owner_ref=f"wallet:{name}",
            flags=AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS,
        )
        for name in ("one", "two")
    )
    alice = new_staff(engine, clock)
    bob = new_staff(engine, clock)
    hooks: list[Hook] = []
    app = transfer_app(database_url, engine, clock, hooks)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield Env(
            database_url,
            engine,
            clock,
            app,
            client,
            alice,
            bob,
            source.id,
            wallet.id,
            other.id,
            hooks,
        )


def without_request_id(body: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in body.items() if name != "request_id"}


def run_together(
    how_many: int, call: Callable[[int], Reply], *, meanwhile: Callable[[], None] | None = None
) -> list[Reply]:
    """``call(i)`` in ``how_many`` threads started together (then ``meanwhile()`` here); their
    responses in order."""
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
    try:
        if meanwhile is not None:
            meanwhile()
    finally:
        for thread in threads:
            thread.join(timeout=120)
    failures = [result for result in results if result is None or isinstance(result, BaseException)]
    assert not failures, failures
    return results


# Idempotency ------------------------------------------------------------------------------


def test_same_key_same_body_runs_once_and_replays(env: Env) -> None:
    key = str(uuid.uuid4())
    first = env.transfer(env.body(100), key)
    assert first.status_code == 201, first.text
    assert "idempotent-replayed" not in first.headers
    entry_id = first.json()["entry_id"]
    assert isinstance(entry_id, int)

    second = env.transfer(env.body(100), key)
    assert second.status_code == 201, second.text
    assert second.json() == {"entry_id": entry_id}
    assert second.headers["Idempotent-Replayed"] == "true"

    assert env.entries() == 1
    assert env.posted(env.other) == 100
    assert env.records() == 1


def test_same_key_different_body_is_refused_and_writes_nothing(env: Env) -> None:
    key = str(uuid.uuid4())
    assert env.transfer(env.body(100), key).status_code == 201
    before = (env.entries(), env.records(), env.posted(env.other))

    reused = env.transfer(env.body(101), key)
    assert_problem(reused, 422, "idempotency_key_reused")
    assert (env.entries(), env.records(), env.posted(env.other)) == before
    # The first request's result is still what the key answers.
    assert env.transfer(env.body(100), key).headers["Idempotent-Replayed"] == "true"


def test_invalid_keys_are_validation_errors_and_write_nothing(env: Env) -> None:
    keys: list[str | bytes | None] = [
        None,
        "",
        "k" * 256,
        "has space",
        " leading-space",
        "tab\there",
        "キー".encode(),
        "caf\u00e9".encode("latin-1"),
        b"del\x7f",
    ]
    for key in keys:
        response = env.transfer(env.body(100), key)
        body = assert_problem(response, 422, "validation_error")
        locations = [error["location"] for error in body["errors"]]
        assert ["header", "Idempotency-Key"] in locations, (key, body)
    assert (env.entries(), env.records()) == (0, 0)


def test_refused_requests_never_reach_the_claim(env: Env) -> None:
    key = str(uuid.uuid4())
    anonymous = env.client.post(TRANSFER, headers={"Idempotency-Key": key}, json=env.body(5))
    assert_problem(anonymous, 401, "unauthenticated")
    for invalid in ({"from": env.source, "amount": 5}, {**env.body(5), "amount": -5}):
        assert_problem(env.transfer(invalid, key), 422, "validation_error")
    assert (env.entries(), env.records()) == (0, 0)
    # The key was not spent on the refused requests.
    accepted = env.transfer(env.body(5), key)
    assert accepted.status_code == 201, accepted.text
    assert "idempotent-replayed" not in accepted.headers


def test_the_same_body_written_differently_is_the_same_request(env: Env) -> None:
    key = str(uuid.uuid4())
    first = env.transfer({"from": env.source, "to": env.other, "amount": 9}, key)
    assert first.status_code == 201
    reordered = env.client.post(
        TRANSFER,
        headers={**env.alice.headers(key), "Content-Type": "application/json"},
        content=f'{{ "amount" : 9,\n "to": {env.other}, "from": {env.source} }}'.encode(),
    )
    assert reordered.status_code == 201, reordered.text
    assert reordered.headers["Idempotent-Replayed"] == "true"
    assert reordered.json() == first.json()
    assert env.entries() == 1


def test_key_of_255_printable_characters_is_accepted(env: Env) -> None:
    key = ("".join(chr(code) for code in range(0x21, 0x7F)) * 3)[:255]
    assert len(key) == 255
    response = env.transfer(env.body(100), key)
    assert response.status_code == 201, response.text
    assert env.transfer(env.body(100), key).headers["Idempotent-Replayed"] == "true"
    assert env.entries() == 1


def test_keys_are_namespaced_by_principal(env: Env) -> None:
    key = "shared-key"
    by_alice = env.transfer(env.body(100), key, caller=env.alice)
    by_bob = env.transfer(env.body(100), key, caller=env.bob)
    assert by_alice.status_code == by_bob.status_code == 201
    assert "idempotent-replayed" not in by_bob.headers
    assert by_alice.json()["entry_id"] != by_bob.json()["entry_id"]
    # Bob may even send a different body under Alice's key.
    assert env.transfer(env.body(7), "alice-only", caller=env.alice).status_code == 201
    assert env.transfer(env.body(8), "alice-only", caller=env.bob).status_code == 201
    assert env.entries() == 4
    assert env.posted(env.other) == 215


def test_domain_refusal_is_stored_and_replayed(env: Env) -> None:
    key = str(uuid.uuid4())
    body = env.body(50, source=env.wallet)
    refused = env.transfer(body, key)
    first = assert_problem(refused, 409, "insufficient_balance")
    assert "idempotent-replayed" not in refused.headers
    assert env.entries() == 0

    env.fund_wallet(500)
    assert env.entries() == 1
    again = env.transfer(body, key)
    second = assert_problem(again, 409, "insufficient_balance")
    assert again.headers["Idempotent-Replayed"] == "true"
    assert without_request_id(second) == without_request_id(first)
    assert env.entries() == 1
    assert env.posted(env.wallet) == 500

    # A new key is a new request, and now it succeeds.
    fresh = env.transfer(body, str(uuid.uuid4()))
    assert fresh.status_code == 201, fresh.text
    assert env.posted(env.wallet) == 450


def test_concurrent_requests_with_one_key_post_once(
    env: Env, backend: str, request: pytest.FixtureRequest
) -> None:
    key = str(uuid.uuid4())
    body = env.body(10)
    concurrent = 20
    # A gate: an uncommitted claim of the same key (a transaction holding the write lock, on
    # SQLite), so that all requests reach their claim together and race when it rolls back.
    gate = env.engine.connect()
    held = gate.begin()
    now = env.clock()
    gate.execute(
        sa.insert(idempotency.IdempotencyRecord).values(
            namespace=env.alice.id,
            key=key,
            request_hash=idempotency.request_hash(
                "POST", TRANSFER, TransferBody.model_validate(body).model_dump(mode="json")
            ),
            state="in_progress",
            lease_owner=str(uuid.uuid4()),
            lease_expires_at=now + timedelta(seconds=30),
            created_at=now,
        )
    )

    def open_gate() -> None:
        try:
            wait_for_lock_waiters(env.engine, concurrent)
        finally:
            held.rollback()
            gate.close()

    def call(_index: int) -> Reply:
        client = TestClient(env.app, raise_server_exceptions=False)
        try:
            return env.transfer(body, key, client=client)
        finally:
            client.close()

    responses = run_together(concurrent, call, meanwhile=open_gate)
    created = [response for response in responses if response.status_code == 201]
    assert created, [response.text for response in responses]
    assert len({response.json()["entry_id"] for response in created}) == 1
    for response in responses:
        if response.status_code != 201:
            assert_problem(response, 409, "request_in_progress")
    assert env.entries() == 1
    assert env.posted(env.other) == 10
    # Once done, every retry is the stored result.
    replay = env.transfer(body, key)
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json() == created[0].json()


def test_concurrent_requests_with_one_key_without_a_gate(env: Env) -> None:
    """The same race, left to the scheduler: whatever the interleaving, one entry."""
    key = str(uuid.uuid4())
    body = env.body(10)

    def call(_index: int) -> Reply:
        client = TestClient(env.app, raise_server_exceptions=False)
        try:
            return env.transfer(body, key, client=client)
        finally:
            client.close()

    responses = run_together(20, call)
    created = [response for response in responses if response.status_code == 201]
    assert created, [response.text for response in responses]
    assert len({response.json()["entry_id"] for response in created}) == 1
    for response in responses:
        if response.status_code != 201:
            assert_problem(response, 409, "request_in_progress")
    assert env.entries() == 1
    assert env.posted(env.other) == 10


def test_an_unexpected_failure_releases_the_claim(env: Env) -> None:
    def crash(_session: Session) -> None:
        raise RuntimeError("the process hit a bug halfway")

    key = str(uuid.uuid4())
    env.hooks.append(crash)
    failed = env.transfer(env.body(30), key)
    assert_problem(failed, 500, "internal_error")
    assert (env.entries(), env.records()) == (0, 0)

    retried = env.transfer(env.body(30), key)
    assert retried.status_code == 201, retried.text
    assert "idempotent-replayed" not in retried.headers
    assert env.transfer(env.body(30), key).json() == retried.json()
    assert env.entries() == 1


def test_a_database_failure_in_the_work_is_not_stored(env: Env) -> None:
    def database_fails(session: Session) -> None:
        # Any failure the ledger reports as StorageError (here: a statement the database
        # refuses; in production a lock timeout, a lost server, retries exhausted).
        session.execute(sa.text("SELECT * FROM table_that_is_not_there"))

    key = str(uuid.uuid4())
    env.hooks.append(database_fails)
    failed = env.transfer(env.body(30), key)
    assert_problem(failed, 503, "unavailable")
    assert env.entries() == 0

    retried = env.transfer(env.body(30), key)
    assert retried.status_code == 201, retried.text
    assert env.entries() == 1


@pytest.mark.parametrize("backend", ["postgresql"])
def test_a_claimant_whose_lease_was_taken_over_cannot_commit(env: Env) -> None:
    """PostgreSQL only: on SQLite the work's transaction holds the write lock, so no other
    request can take a lease over while the work runs."""
    key = str(uuid.uuid4())
    body = env.body(60)
    taken_over: list[Reply] = []

    def slow_and_overtaken(_session: Session) -> None:
        env.clock.advance(seconds=31)  # the work outlives its lease; a retry arrives
        client = TestClient(env.app, raise_server_exceptions=False)
        try:
            taken_over.append(env.transfer(body, key, client=client))
        finally:
            client.close()

    env.hooks.append(slow_and_overtaken)
    slow = env.transfer(body, key)
    assert taken_over[0].status_code == 201, taken_over[0].text
    assert_problem(slow, 409, "request_in_progress")
    assert env.entries() == 1
    assert env.posted(env.other) == 60
    replay = env.transfer(body, key)
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json() == taken_over[0].json()


def claim_as_dead_process(env: Env, caller: Caller, key: str, body: dict[str, Any]) -> str:
    """Commit a claim for ``key`` that nobody completes (its process died); its owner."""
    owner = str(uuid.uuid4())
    fingerprint = request_fingerprint(
        "POST", TRANSFER, [], TransferBody.model_validate(body).model_dump(mode="json")
    )
    now = env.clock()
    stored = unit_of_work(
        env.engine,
        lambda session: idempotency._claim(
            session, now, caller.id, key, fingerprint, owner, timedelta(seconds=30)
        ),
    )
    assert stored is None
    return owner


def test_a_lapsed_lease_is_taken_over_and_the_work_runs_once(env: Env) -> None:
    key = str(uuid.uuid4())
    body = env.body(25)
    dead_owner = claim_as_dead_process(env, env.alice, key, body)

    for seconds in (0, 29):
        env.clock.advance(seconds=seconds)
        busy = env.transfer(body, key)
        assert_problem(busy, 409, "request_in_progress")
    assert env.entries() == 0

    env.clock.advance(seconds=2)  # 31 seconds after the claim: the lease lapsed
    taken = env.transfer(body, key)
    assert taken.status_code == 201, taken.text
    assert "idempotent-replayed" not in taken.headers
    assert env.entries() == 1

    replay = env.transfer(body, key)
    assert replay.status_code == 201
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json() == taken.json()
    assert env.entries() == 1
    assert env.posted(env.other) == 25

    # The dead claimant, were it to wake up, could not complete the key any more.
    with pytest.raises(RequestInProgress):
        unit_of_work(
            env.engine,
            lambda session: idempotency._complete(
                session, env.clock(), env.alice.id, key, dead_owner, 201, {"entry_id": -1}
            ),
        )
    assert env.transfer(body, key).json() == taken.json()


def test_a_claim_in_progress_with_another_body_is_still_a_reused_key(env: Env) -> None:
    key = str(uuid.uuid4())
    claim_as_dead_process(env, env.alice, key, env.body(25))
    assert_problem(env.transfer(env.body(26), key), 422, "idempotency_key_reused")
    assert env.entries() == 0


def test_results_survive_a_restart(env: Env) -> None:
    key = str(uuid.uuid4())
    first = env.transfer(env.body(40), key)
    assert first.status_code == 201

    other_engine = ledger.create_engine(env.database_url)
    try:
        restarted = transfer_app(env.database_url, other_engine, env.clock)
        with TestClient(restarted, raise_server_exceptions=False) as client:
            replay = env.transfer(env.body(40), key, client=client)
            assert replay.status_code == 201
            assert replay.headers["Idempotent-Replayed"] == "true"
            assert replay.json() == first.json()
            reused = env.transfer(env.body(41), key, client=client)
            assert_problem(reused, 422, "idempotency_key_reused")
    finally:
        other_engine.dispose()
    assert env.entries() == 1


def test_purge_deletes_records_older_than_the_retention(env: Env) -> None:
    retention = timedelta(hours=world_settings(env.database_url).idempotency_retention_hours)
    assert env.transfer(env.body(1), "old-key").status_code == 201
    env.clock.advance(hours=25)
    assert env.transfer(env.body(2), "new-key").status_code == 201
    assert env.records() == 2

    assert idempotency.purge(env.engine, before=env.clock() - retention) == 1
    with env.engine.connect() as connection:
        keys = connection.exec_driver_sql("SELECT key FROM idempotency_record").scalars().all()
    assert keys == ["new-key"]
    assert env.transfer(env.body(2), "new-key").headers["Idempotent-Replayed"] == "true"
    # Purging again at the same cutoff finds nothing more.
    assert idempotency.purge(env.engine, before=env.clock() - retention) == 0
    assert env.records() == 1


# Every value-moving route is idempotent: the route walk ---------------------------------


def depends_on(dependant: Dependant | None, call: Any) -> bool:
    if dependant is None:
        return False
    return dependant.call is call or any(
        depends_on(inner, call) for inner in dependant.dependencies
    )


def value_moving_violations(app: FastAPI) -> tuple[int, int, list[str]]:
    """(routes walked, value-moving routes, violations) for every route of ``app``."""
    with TestClient(app) as client:
        document = client.get("/api/v1/openapi.json").json()
    walked = moving = 0
    violations: list[str] = []
    for context in iter_route_contexts(app.routes):
        if not isinstance(context.original_route, APIRoute):
            continue
        walked += 1
        if not (context.openapi_extra or {}).get("x-value-moving"):
            continue
        moving += 1
        for method in sorted(context.methods):
            name = f"{method} {context.path}"
            if not depends_on(context.dependant, Idempotency):
                violations.append(f"{name}: does not depend on Idempotency")
            operation = document["paths"].get(context.path, {}).get(method.lower(), {})
            if not any(
                parameter.get("in") == "header"
                and parameter.get("name") == "Idempotency-Key"
                and parameter.get("required") is True
                for parameter in operation.get("parameters", [])
            ):
                violations.append(f"{name}: no required Idempotency-Key header in the OpenAPI")
    # The document agrees: an operation marked value-moving documents the header.
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if operation.get("x-value-moving") and not any(
                parameter.get("name") == "Idempotency-Key" and parameter.get("required")
                for parameter in operation.get("parameters", [])
            ):
                violations.append(f"{method.upper()} {path}: documented without the key")
    return walked, moving, violations


def test_every_value_moving_route_of_the_app_is_idempotent(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'unused.db'}"
    engine = sa.create_engine(url)
    try:
        walked, _moving, violations = value_moving_violations(
            create_app(Settings(database_url=url), engine=engine)
        )
    finally:
        engine.dispose()
    assert walked >= 40, "the walk found too few routes to mean anything"
    assert not violations, violations


def test_the_route_walk_accepts_the_documented_pattern(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'unused.db'}"
    engine = sa.create_engine(url)
    try:
        _walked, routes_of_the_app, _violations = value_moving_violations(
            create_app(Settings(database_url=url), engine=engine)
        )
        app = create_app(Settings(database_url=url), engine=engine)
        add_transfer_route(app, FakeClock())
        walked, moving, violations = value_moving_violations(app)
    finally:
        engine.dispose()
    assert moving == routes_of_the_app + 1
    assert walked >= 41
    assert not violations, violations


def test_the_route_walk_flags_a_value_moving_route_without_idempotency(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'unused.db'}"
    engine = sa.create_engine(url)
    try:
        app = create_app(Settings(database_url=url), engine=engine)

        @app.post("/test/unsafe", status_code=201, openapi_extra=VALUE_MOVING)
        def unsafe(body: TransferBody, caller: CallerDep) -> dict[str, str]:
            return {"moved": "twice, on a retry"}

        _walked, _moving, violations = value_moving_violations(app)
    finally:
        engine.dispose()
    assert violations == [
        "POST /test/unsafe: does not depend on Idempotency",
        "POST /test/unsafe: no required Idempotency-Key header in the OpenAPI",
        "POST /test/unsafe: documented without the key",
    ]


# Rate limits ------------------------------------------------------------------------------


def limited_settings(database_url: str, **limits: int) -> Settings:
    values = {
        "rate_limit_self_enrolments_per_address": 3,
        "rate_limit_code_attempts_per_address": 3,
        "rate_limit_codes_per_counter": 2,
    }
    values.update(limits)
    return Settings(database_url=database_url, **values)


def retry_after(response: Reply, window: int) -> int:
    body = assert_problem(response, 429, "rate_limited")
    header = response.headers["Retry-After"]
    assert header.isdigit(), header
    seconds = int(header)
    assert 1 <= seconds <= window
    assert body["retry_after_seconds"] == seconds
    return seconds


def test_enrolment_code_attempts_are_limited_per_address(
    engine: Engine, clock: FakeClock, database_url: str
) -> None:
    settings = limited_settings(database_url)
    resident_id = new_verified_resident(engine, clock)
    _enrolment, code = unit_of_work(
        engine,
        lambda session: access.create_enrolment_code(
            session, access.SYSTEM, clock(), resident_id, secret_key=settings.secret_key_bytes
        ),
    )
    clock.advance(seconds=100)
    app = create_app(settings, engine=engine, clock=clock)
    with TestClient(app, raise_server_exceptions=False) as client:
        for attempt in range(3):
            wrong = client.post(CODE_ENROL, json={"code": f"WRONG-{attempt:04d}"})
            assert_problem(wrong, 422, "enrolment_code_invalid")
        tokens = count(engine, "api_token")
        limited = client.post(CODE_ENROL, json={"code": code})
        retry_after(limited, 600)
        assert count(engine, "api_token") == tokens  # the right code was not even tried

        clock.advance(seconds=600)
        allowed = client.post(CODE_ENROL, json={"code": code})
        assert allowed.status_code == 201, allowed.text
        assert allowed.json()["resident_id"] == resident_id


def test_self_enrolment_is_limited_per_address(
    engine: Engine, clock: FakeClock, database_url: str
) -> None:
    app = create_app(limited_settings(database_url), engine=engine, clock=clock)
    with TestClient(app, raise_server_exceptions=False) as client:
        for _ in range(3):
            assert client.post(SELF_ENROL).status_code == 201
        residents = count(engine, "resident")
        seconds = retry_after(client.post(SELF_ENROL), 3600)
        assert count(engine, "resident") == residents

        clock.advance(seconds=seconds - 1)
        retry_after(client.post(SELF_ENROL), 3600)
        clock.advance(seconds=1)
        assert client.post(SELF_ENROL).status_code == 201


def test_enrolment_codes_are_limited_per_counter_principal(
    engine: Engine, clock: FakeClock, database_url: str
) -> None:
    first = new_staff(engine, clock, StaffRole.COUNTER)
    second = new_staff(engine, clock, StaffRole.COUNTER)
    resident_id = new_verified_resident(engine, clock)
    path = f"/api/v1/counter/residents/{resident_id}/enrolment-codes"
    app = create_app(limited_settings(database_url), engine=engine, clock=clock)
    with TestClient(app, raise_server_exceptions=False) as client:
        for _ in range(2):
            assert client.post(path, headers=first.headers()).status_code == 201
        codes = count(engine, "enrolment_code")
        retry_after(client.post(path, headers=first.headers()), 3600)
        assert count(engine, "enrolment_code") == codes
        # The same address, another counter principal: its own budget.
        for _ in range(2):
            assert client.post(path, headers=second.headers()).status_code == 201
        retry_after(client.post(path, headers=second.headers()), 3600)
        retry_after(client.post(path, headers=first.headers()), 3600)


def test_limits_hold_across_processes(engine: Engine, clock: FakeClock, database_url: str) -> None:
    settings = limited_settings(database_url)
    other_engine = ledger.create_engine(database_url)
    try:
        one = create_app(settings, engine=engine, clock=clock)
        two = create_app(settings, engine=other_engine, clock=clock)
        with (
            TestClient(one, raise_server_exceptions=False) as first,
            TestClient(two, raise_server_exceptions=False) as second,
        ):
            for client in (first, second, first):
                assert client.post(SELF_ENROL).status_code == 201
            retry_after(second.post(SELF_ENROL), 3600)
            retry_after(first.post(SELF_ENROL), 3600)
    finally:
        other_engine.dispose()


def test_concurrent_hits_are_counted_exactly(
    engine: Engine, clock: FakeClock, database_url: str
) -> None:
    limit, threads = 5, 16
    settings = limited_settings(database_url, rate_limit_self_enrolments_per_address=limit)
    other_engine = ledger.create_engine(database_url)
    try:
        apps = [
            create_app(settings, engine=engine, clock=clock),
            create_app(settings, engine=other_engine, clock=clock),
        ]
        # FastAPI builds each app's routes on first use, two apps at once meeting in the
        # process-wide warning filters (pydantic's catch_warnings is not thread-safe): built
        # beforehand, by a request that matches the same routes and counts no hit (405).
        for app in apps:
            warm = TestClient(app, raise_server_exceptions=False)
            try:
                assert warm.get(SELF_ENROL).status_code == 405
            finally:
                warm.close()

        def call(index: int) -> Reply:
            client = TestClient(apps[index % 2], raise_server_exceptions=False)
            try:
                return client.post(SELF_ENROL)
            finally:
                client.close()

        responses = run_together(threads, call)
    finally:
        other_engine.dispose()
    statuses = sorted(response.status_code for response in responses)
    assert statuses == [201] * limit + [429] * (threads - limit)
    for response in responses:
        if response.status_code == 429:
            retry_after(response, 3600)
    with engine.connect() as connection:
        hits = connection.exec_driver_sql("SELECT SUM(hits) FROM rate_limit_window").scalar_one()
    assert hits == threads


# Hardening --------------------------------------------------------------------------------

SQLITE_ONLY = pytest.mark.parametrize("backend", ["sqlite"])


@dataclass
class Plain:
    engine: Engine
    client: TestClient
    admin: Caller


@pytest.fixture
def plain(engine: Engine, clock: FakeClock, database_url: str) -> Iterator[Plain]:
    settings = world_settings(database_url).model_copy(update={"max_body_bytes": 1024})
    app = create_app(settings, engine=engine, clock=clock)

    @app.get(BOOM)
    def boom() -> None:
        raise RuntimeError("a bug in a route")

    admin = new_staff(engine, clock, StaffRole.ADMIN)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield Plain(engine, client, admin)


def writes(engine: Engine) -> tuple[int, int]:
    return count(engine, "department"), count(engine, "audit_event")


def assert_security_headers(response: Reply, *, api: bool = True) -> None:
    headers = response.headers
    assert headers.get("X-Content-Type-Options") == "nosniff", (response.url, headers)
    assert headers.get("X-Frame-Options") == "DENY", (response.url, headers)
    assert headers.get("Referrer-Policy") == "no-referrer", (response.url, headers)
    if api:
        csp = headers.get("Content-Security-Policy", "")
        assert csp.startswith("default-src 'none'"), (response.url, csp)
        assert csp == API_CSP


@SQLITE_ONLY
def test_every_response_carries_security_headers(plain: Plain) -> None:
    client = plain.client
    responses = [
        client.get("/healthz"),
        client.get("/readyz"),
        client.get("/api/v1/openapi.json"),
        client.get("/api/v1/me"),  # 401
        client.get(DEPARTMENTS, headers=plain.admin.headers()),
        client.get("/api/v1/no-such-route"),  # 404
        client.put("/healthz"),  # 405
        client.post(DEPARTMENTS, headers=plain.admin.headers(), json={"code": "UPPER"}),  # 422
        client.post(DEPARTMENTS, headers=plain.admin.headers(), content=b"x" * 2000),  # 413
        client.post(
            DEPARTMENTS, headers=plain.admin.headers(), content=b"[" * 100 + b"]" * 100
        ),  # 422 by the guard
        client.get(BOOM),  # 500
    ]
    assert [response.status_code for response in responses] == [
        200,
        200,
        200,
        401,
        200,
        404,
        405,
        422,
        413,
        422,
        500,
    ]
    for response in responses:
        assert_security_headers(response)
    docs = client.get("/api/v1/docs")
    assert docs.status_code == 200
    assert_security_headers(docs, api=False)


@SQLITE_ONLY
def test_no_cors_by_default(plain: Plain) -> None:
    response = plain.client.get("/healthz", headers={"Origin": "https://wallet.example"})
    assert response.status_code == 200
    assert "access-control-allow-origin" not in response.headers
    preflight = plain.client.options(
        "/api/v1/enrolments/self",
        headers={
            "Origin": "https://wallet.example",
            "Access-Control-Request-Method": "POST",
        },
    )
    assert "access-control-allow-origin" not in preflight.headers


@SQLITE_ONLY
def test_cors_allows_only_the_configured_origins(
    engine: Engine, clock: FakeClock, database_url: str
) -> None:
    settings = world_settings(database_url).model_copy(
        update={"cors_origins": ["https://wallet.example"]}
    )
    app = create_app(settings, engine=engine, clock=clock)
    with TestClient(app, raise_server_exceptions=False) as client:
        allowed = client.get("/healthz", headers={"Origin": "https://wallet.example"})
        assert allowed.headers["access-control-allow-origin"] == "https://wallet.example"
        assert_security_headers(allowed)
        other = client.get("/healthz", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers
        preflight = client.options(
            SELF_ENROL,
            headers={
                "Origin": "https://wallet.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, idempotency-key",
            },
        )
        assert preflight.status_code == 200, preflight.text
        assert preflight.headers["access-control-allow-origin"] == "https://wallet.example"
        allowed_headers = preflight.headers["access-control-allow-headers"].lower()
        assert "idempotency-key" in allowed_headers
        refused = client.options(
            SELF_ENROL,
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
        )
        assert "access-control-allow-origin" not in refused.headers


@SQLITE_ONLY
def test_cors_preflight_responses_carry_security_headers_too(
    engine: Engine, clock: FakeClock, database_url: str
) -> None:
    settings = world_settings(database_url).model_copy(
        update={"cors_origins": ["https://wallet.example"]}
    )
    app = create_app(settings, engine=engine, clock=clock)
    with TestClient(app, raise_server_exceptions=False) as client:
        for origin in ("https://wallet.example", "https://evil.example"):
            preflight = client.options(
                SELF_ENROL,
                headers={"Origin": origin, "Access-Control-Request-Method": "POST"},
            )
            assert_security_headers(preflight)


@SQLITE_ONLY
def test_a_body_over_the_limit_is_refused_before_parsing(plain: Plain) -> None:
    before = writes(plain.engine)
    big = {"code": "big", "name_ja": "大" * 600, "name_en": "x" * 600}
    with_length = plain.client.post(DEPARTMENTS, headers=plain.admin.headers(), json=big)
    assert "content-length" in with_length.request.headers
    body = assert_problem(with_length, 413, "request_too_large")
    assert "1024" in body["detail"]

    def chunks() -> Iterator[bytes]:
        for _ in range(64):
            yield b" " * 64

    chunked = plain.client.post(
        DEPARTMENTS,
        headers={**plain.admin.headers(), "Content-Type": "application/json"},
        content=chunks(),
    )
    assert "content-length" not in chunked.request.headers
    assert chunked.request.headers.get("transfer-encoding") == "chunked"
    assert_problem(chunked, 413, "request_too_large")

    lying = plain.client.post(
        DEPARTMENTS,
        headers={**plain.admin.headers(), "Content-Length": "not-a-number"},
        content=b"{}",
    )
    assert_problem(lying, 413, "request_too_large")
    assert writes(plain.engine) == before

    # The limit is inclusive: 1024 bytes pass (JSON allows the padding), 1025 do not.
    document = json.dumps({"code": unique("edge"), "name_ja": "端", "name_en": "edge"}).encode()
    headers = {**plain.admin.headers(), "Content-Type": "application/json"}
    over = plain.client.post(
        DEPARTMENTS, headers=headers, content=document + b" " * (1025 - len(document))
    )
    assert_problem(over, 413, "request_too_large")
    assert writes(plain.engine) == before
    exact = plain.client.post(
        DEPARTMENTS, headers=headers, content=document + b" " * (1024 - len(document))
    )
    assert exact.status_code == 201, exact.text


@SQLITE_ONLY
def test_deeply_nested_json_is_a_validation_error(plain: Plain) -> None:
    before = writes(plain.engine)
    for document in (
        b"[" * 100 + b"]" * 100,
        b'{"code": ' + b"[" * 100 + b"]" * 100 + b"}",
        b'{"a":' * 100 + b"1" + b"}" * 100,
        b"[" * (JSON_DEPTH_MAX + 1) + b"]" * (JSON_DEPTH_MAX + 1),
    ):
        response = plain.client.post(
            DEPARTMENTS,
            headers={**plain.admin.headers(), "Content-Type": "application/json"},
            content=document,
        )
        body = assert_problem(response, 422, "validation_error")
        assert "nests deeper" in body["detail"]
    assert writes(plain.engine) == before

    # Brackets inside strings are not nesting; a body at the depth limit reaches validation.
    name = '\\"' + "[{" * 60
    response = plain.client.post(
        DEPARTMENTS,
        headers={**plain.admin.headers(), "Content-Type": "application/json"},
        content=f'{{"code": "{unique("brackets")}", "name_ja": "{name}", "name_en": "b"}}'.encode(),
    )
    assert response.status_code == 201, response.text
    at_limit = b"[" * JSON_DEPTH_MAX + b"]" * JSON_DEPTH_MAX
    response = plain.client.post(
        DEPARTMENTS,
        headers={**plain.admin.headers(), "Content-Type": "application/json"},
        content=at_limit,
    )
    body = assert_problem(response, 422, "validation_error")
    assert "nests deeper" not in body["detail"]


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No POINTS_* variables and no .env file: the settings see only what a test passes."""
    for name in list(os.environ):
        if name.startswith("POINTS_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.mark.usefixtures("clean_environment")
def test_production_settings_need_a_real_secret_key(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError, match="POINTS_SECRET_KEY"):
        Settings(environment="production")
    with pytest.raises(ValidationError, match="POINTS_SECRET_KEY"):
        Settings(environment="production", secret_key=DEVELOPMENT_SECRET_KEY)
    with pytest.raises(ValidationError, match="POINTS_SECRET_KEY"):
        Settings(environment="production", secret_key="short-but-not-empty")
    with pytest.raises(ValidationError, match="POINTS_SECRET_KEY"):
        Settings(environment="production", secret_key="x" * 31)

    key = secrets.token_urlsafe(30)
    assert len(key) == 40
    origin = "https://pay.komae.example"
    assert Settings(environment="production", secret_key=key, public_url=origin).secret_key == key

    # The same through the environment, as a deployment sets it.
    monkeypatch.setenv("POINTS_ENVIRONMENT", "production")
    with pytest.raises(ValidationError, match="POINTS_SECRET_KEY"):
        Settings()
    monkeypatch.setenv("POINTS_SECRET_KEY", "too-short")
    with pytest.raises(ValidationError, match="POINTS_SECRET_KEY"):
        Settings()
    monkeypatch.setenv("POINTS_SECRET_KEY", key)
    monkeypatch.setenv("POINTS_PUBLIC_URL", origin)
    loaded = Settings()
    assert (loaded.environment, loaded.secret_key) == ("production", key)
    # Development keeps working without a key.
    monkeypatch.setenv("POINTS_ENVIRONMENT", "development")
    monkeypatch.delenv("POINTS_SECRET_KEY")
    assert Settings().secret_key == DEVELOPMENT_SECRET_KEY


def test_token_comparison_is_constant_time() -> None:
    source = inspect.getsource(auth.secret_matches)
    assert "hmac.compare_digest(" in source
    assert "==" not in source
    assert "secret_matches(" in inspect.getsource(access._token_row)  # bearer and session alike
    stored = auth.hash_secret("a-secret")
    assert auth.secret_matches("a-secret", stored)
    assert not auth.secret_matches("b-secret", stored)
