"""Schemathesis over the whole OpenAPI document, in process, as every kind of caller.

The document is loaded from the ASGI app itself (``schemathesis.openapi.from_asgi``), and every
operation in it becomes a test, so a new endpoint is covered without touching this file. Each
operation runs once per identity: anonymous (no token) and the bearer token of the world's
principal of each role. Schemathesis generates the requests from the document (its examples,
coverage and fuzzing phases; valid and invalid data) and checks every response:

* ``not_a_server_error``: no 5xx;
* ``response_schema_conformance``: the body matches the schema documented for its status;
* ``status_code_conformance``: the status is one the operation documents;
* ``content_type_conformance``: the media type is the one documented for that status;
* ``ignored_auth``: an operation that declares the bearer scheme enforces it. With a token and a
  2xx, schemathesis re-sends the request without a token and with an invalid one and expects
  401/403; with no token or a generated one, a 2xx is a failure.

One world (``tests/api_world.py``) per backend is shared by the module. Generated ids name
nothing that exists (404) and generated bodies create new objects, so the world's principals and
their tokens stay as they are (the fixture checks that at the end: otherwise the tests after the
spoiling request ran as nobody). The run is reproducible: a fixed seed, no example database.

``KNOWN_FAILURES`` lists (operation, check) pairs to skip while a reported bug is being fixed.

``NOT_FUZZED`` lists the operations left out, each with why: the shop's server-sent event stream
stays open for up to 55 seconds per request (``POINTS_EVENT_STREAM_SECONDS``), so a few
hundred generated requests would take hours; its polling twin ``GET
/api/v1/merchant/payment-events`` answers the same data and is fuzzed, and the stream itself is
tested in ``tests/test_api_authorization.py`` (with the stream cut short).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from api_world import Actor, World, world_settings
from payment_helpers import ensure_signing_key, once_per_world, open_shop
from schemathesis.checks import CheckFunction
from schemathesis.core.result import Ok

import ledger
from api.app import create_app
from points import access
from points.errors import Unauthenticated

#: Part of ``make test``; ``make fuzz`` (``pytest -m fuzz``) runs only these.
pytestmark = pytest.mark.fuzz

#: Known failures of the application: (operation, check) -> "bug: ...". Empty is the goal.
KNOWN_FAILURES: dict[tuple[str, str], str] = {}

#: Operations schemathesis does not call: (method, path) -> why.
NOT_FUZZED: dict[tuple[str, str], str] = {
    ("GET", "/api/v1/merchant/payment-events/stream"): "streams for up to 55 s a request",
}
#: The twin of each operation left out, which is fuzzed in its place.
FUZZED_INSTEAD = {
    ("GET", "/api/v1/merchant/payment-events/stream"): "GET /api/v1/merchant/payment-events"
}

OPENAPI_PATH = "/api/v1/openapi.json"
SEED = 20260401
#: Examples per operation and identity in the fuzzing phase (the coverage phase adds its own
#: deterministic boundary and negative cases, about 20 per operation).
MAX_EXAMPLES = 10

ANONYMOUS = "anonymous"
TILL = "till"
#: Who sends the requests: nobody, or the world's principal (``World.actors``) of each role, and
#: a till of merchant a (merchant staff with a device: only a till takes payments, so without it
#: the payment-taking routes would only ever answer ``till_required``).
IDENTITIES: dict[str, str | None] = {
    ANONYMOUS: None,
    "resident": "resident",
    "merchant": "merchant_a",
    TILL: TILL,
    "issuer": "issuer_a",
    "counter": "counter",
    "finance": "finance",
    "admin": "admin",
}

CHECKS = (
    "not_a_server_error",
    "response_schema_conformance",
    "status_code_conformance",
    "content_type_conformance",
    "ignored_auth",
)


def checks_for(operation: str) -> list[CheckFunction]:
    return [
        getattr(schemathesis.checks, name)
        for name in CHECKS
        if (operation, name) not in KNOWN_FAILURES
    ]


def load_schema() -> schemathesis.BaseSchema:
    """The document as the app serves it. Serving it touches no database, so the app here has an
    empty in-memory one; the tests send their requests to the world's app."""
    config = schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "generation": {"max-examples": MAX_EXAMPLES, "database": "none"},
            # Only the `unsupported_method` check (not ours) looks at undeclared methods.
            "phases": {"coverage": {"unexpected-methods": []}},
        }
    )
    engine = ledger.create_engine("sqlite://")
    try:
        app = create_app(world_settings("sqlite://"), engine=engine)
        return schemathesis.openapi.from_asgi(OPENAPI_PATH, app, config=config)
    finally:
        engine.dispose()


def fuzzed(document: schemathesis.BaseSchema) -> schemathesis.BaseSchema:
    """The document without the operations of ``NOT_FUZZED``."""
    for method, path in NOT_FUZZED:
        document = document.exclude(method=method, path=path)
    return document


full_schema = load_schema()
schema = fuzzed(full_schema)


@pytest.fixture(scope="module")
def world(shared_world: World) -> Iterator[World]:
    # A server as deployed has a signing key (``points keys init``): without one, signing a
    # pay code or a payment QR is 503 ``no_signing_key``, which is right but not what is tested.
    ensure_signing_key(shared_world)
    actor(shared_world, TILL)
    yield shared_world
    spoiled = [
        name for name in IDENTITIES.values() if name and not authenticates(shared_world, name)
    ]
    assert not spoiled, f"the generated requests spoiled the tokens of {spoiled}"


def actor(world: World, name: str) -> Actor:
    """A principal of the world by name, or the till of merchant a (made once)."""
    if name == TILL:
        shop = once_per_world(
            world,
            "schemathesis till",
            lambda: open_shop(world, world.merchants["a"], till_name="fuzz till"),
        )
        return shop.till
    return world.actors[name]


def authenticates(world: World, name: str) -> bool:
    secret, now = actor(world, name).token, world.now()
    try:
        world.read(lambda session: access.authenticate(session, secret, now))
    except Unauthenticated:
        return False
    return True


def test_known_failures_name_real_operations_and_checks() -> None:
    operations = {result.ok().label for result in schema.get_all_operations()}
    for operation, check in KNOWN_FAILURES:
        assert operation in operations, operation
        assert check in CHECKS, check


def labels(document: schemathesis.BaseSchema) -> set[str]:
    """The label (``METHOD /path``) of every operation of the document."""
    results = list(document.get_all_operations())
    found = {result.ok().label for result in results if isinstance(result, Ok)}
    assert len(found) == len(results), "the document has an operation schemathesis cannot read"
    return found


def test_only_the_event_stream_is_left_out_and_its_polling_twin_is_fuzzed() -> None:
    everything, run = labels(full_schema), labels(schema)
    left_out = {f"{method} {path}" for method, path in NOT_FUZZED}
    assert left_out <= everything, "NOT_FUZZED names an operation the document does not have"
    assert everything - run == left_out
    assert set(FUZZED_INSTEAD) == set(NOT_FUZZED)
    assert set(FUZZED_INSTEAD.values()) <= run
    # The new routes of the shops, the wallet and finance are all fuzzed.
    for label in (
        "POST /api/v1/merchant/payment-requests",
        "POST /api/v1/merchant/pay-code-payments",
        "POST /api/v1/merchant/payments/{payment_id}/refunds",
        "POST /api/v1/me/payments",
        "POST /api/v1/me/pay-codes",
        "GET /api/v1/finance/payments",
        "PATCH /api/v1/admin/merchants/{merchant_id}/settings",
        "POST /api/v1/admin/tills/{till_id}/revoke",
    ):
        assert label in run, label


@pytest.mark.parametrize("identity", list(IDENTITIES))
@schema.parametrize()
def test_api(case: schemathesis.Case, identity: str, world: World) -> None:
    name = IDENTITIES[identity]
    headers = actor(world, name).headers if name is not None else None
    case.call_and_validate(app=world.app, headers=headers, checks=checks_for(case.operation.label))
