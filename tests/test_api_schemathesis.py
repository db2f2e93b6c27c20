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
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from api_world import World, world_settings
from schemathesis.checks import CheckFunction

import ledger
from api.app import create_app
from points import access
from points.errors import Unauthenticated

#: Part of ``make test``; ``make fuzz`` (``pytest -m fuzz``) runs only these.
pytestmark = pytest.mark.fuzz

#: Known failures of the application: (operation, check) -> "bug: ...". Empty is the goal.
KNOWN_FAILURES: dict[tuple[str, str], str] = {}

OPENAPI_PATH = "/api/v1/openapi.json"
SEED = 20260401
#: Examples per operation and identity in the fuzzing phase (the coverage phase adds its own
#: deterministic boundary and negative cases, about 20 per operation).
MAX_EXAMPLES = 10

ANONYMOUS = "anonymous"
#: Who sends the requests: nobody, or the world's principal (``World.actors``) of each role.
IDENTITIES: dict[str, str | None] = {
    ANONYMOUS: None,
    "resident": "resident",
    "merchant": "merchant_a",
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


schema = load_schema()


@pytest.fixture(scope="module")
def world(shared_world: World) -> Iterator[World]:
    yield shared_world
    spoiled = [
        name for name in IDENTITIES.values() if name and not authenticates(shared_world, name)
    ]
    assert not spoiled, f"the generated requests spoiled the tokens of {spoiled}"


def authenticates(world: World, actor: str) -> bool:
    secret, now = world.actors[actor].token, world.now()
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


@pytest.mark.parametrize("identity", list(IDENTITIES))
@schema.parametrize()
def test_api(case: schemathesis.Case, identity: str, world: World) -> None:
    actor = IDENTITIES[identity]
    headers = world.actors[actor].headers if actor is not None else None
    case.call_and_validate(app=world.app, headers=headers, checks=checks_for(case.operation.label))
