"""``points admin`` and ``points db upgrade`` against a real database, then the API on it.

The first admin is bootstrapped from the shell: ``create-staff`` prints an id, ``create-token``
prints a token (once) that the API accepts. Domain errors are one line and exit status 1, never
a traceback.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from api_world import assert_problem
from click.testing import CliRunner, Result
from fastapi.testclient import TestClient
from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url

import ledger
from api.app import create_app
from points import db
from points.settings import Settings
from points.shell.cli import main

STAFF_ID = re.compile(r"^stf_[A-Za-z0-9_-]{16}$")
TOKEN = re.compile(r"^kp_[A-Za-z0-9_-]{8}_[A-Za-z0-9_-]{20,}$")


def points(url: str, *args: str) -> Result:
    """Run ``points *args`` on ``url``; then close the connections the command left open.

    (The commands never dispose of their engines, a known bug: see
    ``test_cli.py::test_commands_close_their_connections``; left to the garbage collector, their
    connections warn, and warnings are errors here.) ``catch_exceptions=False``: an exception
    escaping a command fails the test with its traceback.
    """
    engines: list[Engine] = []

    def track(connection: sa.Connection) -> None:
        if connection.engine not in engines:
            engines.append(connection.engine)

    event.listen(Engine, "engine_connect", track)
    try:
        return CliRunner().invoke(
            main, list(args), env={"POINTS_DATABASE_URL": url}, catch_exceptions=False
        )
    finally:
        event.remove(Engine, "engine_connect", track)
        for engine in engines:
            engine.dispose()


def create_staff(url: str, role: str, name: str = "Shell Admin", *extra: str) -> str:
    result = points(url, "admin", "create-staff", "--role", role, "--name", name, *extra)
    assert result.exit_code == 0, result.output
    staff_id = result.stdout.strip()
    assert STAFF_ID.match(staff_id), result.stdout
    return staff_id


def assert_one_line_error(result: Result, *words: str) -> None:
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("Error: "), lines[0]
    for word in words:
        assert word in lines[0], (word, lines[0])
    assert "Traceback" not in result.output
    assert result.stdout.strip() == "" or result.stdout.strip() == lines[0]


@pytest.fixture
def api(database_url: str) -> Iterator[TestClient]:
    """The API on the same database as the commands, with the real clock (as ``points serve``)."""
    engine = ledger.create_engine(database_url)
    try:
        with TestClient(create_app(Settings(database_url=database_url), engine=engine)) as client:
            yield client
    finally:
        engine.dispose()


def test_create_staff_prints_an_id(database_url: str) -> None:
    staff_id = create_staff(database_url, "admin", "最初の 管理者")
    engine = ledger.create_engine(database_url)
    try:
        with engine.connect() as connection:
            row = connection.execute(
                sa.text("SELECT role, display_name, status FROM staff WHERE id = :id"),
                {"id": staff_id},
            ).one()
            actor = connection.execute(
                sa.text("SELECT actor_id, action FROM audit_event WHERE object_id = :id"),
                {"id": staff_id},
            ).one()
    finally:
        engine.dispose()
    assert tuple(row) == ("admin", "最初の 管理者", "active")
    assert tuple(actor) == ("system", "staff.create")


def test_create_token_prints_a_token_the_api_accepts(database_url: str, api: TestClient) -> None:
    staff_id = create_staff(database_url, "admin")
    result = points(
        database_url,
        "admin",
        "create-token",
        "--role",
        "admin",
        "--principal",
        staff_id,
        "--days",
        "7",
    )
    assert result.exit_code == 0, result.output
    token = result.stdout.strip()
    assert TOKEN.match(token), result.stdout
    # The secret alone on stdout and the note on its own line of stderr, so that neither runs
    # into the other on a terminal.
    assert result.stdout == token + "\n"
    assert result.stderr.startswith("(prefix ") and result.stderr.endswith(")\n")
    assert token[:11] in result.stderr
    assert "expires" in result.stderr
    assert token not in result.stderr

    headers = {"Authorization": f"Bearer {token}"}
    response = api.get("/api/v1/admin/staff", headers=headers)
    assert response.status_code == 200, response.text
    assert staff_id in {item["id"] for item in response.json()["items"]}
    # The new admin can now do the rest over the API: a finance auditor and their token.
    auditor = api.post(
        "/api/v1/admin/staff", headers=headers, json={"role": "finance", "display_name": "監査"}
    )
    assert auditor.status_code == 201, auditor.text
    issued = api.post(
        "/api/v1/admin/tokens",
        headers=headers,
        json={"role": "finance", "principal_id": auditor.json()["id"]},
    )
    assert issued.status_code == 201, issued.text
    finance = {"Authorization": f"Bearer {issued.json()['token']}"}
    trail = api.get("/api/v1/finance/audit", headers=finance)
    assert trail.status_code == 200, trail.text
    actions = [(e["actor_id"], e["action"]) for e in trail.json()["items"]]
    assert actions[:2] == [("system", "staff.create"), ("system", "token.issue")]
    assert (staff_id, "staff.create") in actions
    assert token not in trail.text
    # A token of another database, or a garbled one, is refused.
    assert_problem(
        api.get("/api/v1/admin/staff", headers={"Authorization": f"Bearer {token}x"}),
        401,
        "unauthenticated",
    )


def test_a_wrong_role_for_the_principal_is_one_line_and_exit_1(database_url: str) -> None:
    counter_id = create_staff(database_url, "counter", "窓口")
    result = points(
        database_url, "admin", "create-token", "--role", "admin", "--principal", counter_id
    )
    assert_one_line_error(result, counter_id, "counter", "admin")
    result = points(
        database_url, "admin", "create-token", "--role", "resident", "--principal", counter_id
    )
    assert_one_line_error(result, counter_id)
    result = points(
        database_url, "admin", "create-token", "--role", "finance", "--principal", "stf_nobody"
    )
    assert_one_line_error(result, "stf_nobody")
    result = points(database_url, "admin", "create-staff", "--role", "merchant", "--name", "x")
    assert_one_line_error(result, "merchant")
    result = points(
        database_url,
        "admin",
        "create-staff",
        "--role",
        "issuer",
        "--name",
        "x",
        "--department",
        "dep_nowhere",
    )
    assert_one_line_error(result, "dep_nowhere")
    # Nothing was issued by the failed commands.
    engine = ledger.create_engine(database_url)
    try:
        with engine.connect() as connection:
            tokens = connection.exec_driver_sql("SELECT COUNT(*) FROM api_token").scalar_one()
            staff = connection.exec_driver_sql("SELECT COUNT(*) FROM staff").scalar_one()
    finally:
        engine.dispose()
    assert (tokens, staff) == (0, 1)


def test_an_unknown_role_is_a_usage_error(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'untouched.db'}"
    result = points(url, "admin", "create-staff", "--role", "mayor", "--name", "x")
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert "mayor" in result.output
    assert not (tmp_path / "untouched.db").exists()


# An empty database -------------------------------------------------------------------


@pytest.fixture
def empty_url(backend: str, tmp_path: Path) -> Iterator[str]:
    """A database with no tables at all."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    base = os.environ["POINTS_TEST_POSTGRES_URL"]
    admin = sa.create_engine(
        ledger.database.normalize_url(base),
        isolation_level="AUTOCOMMIT",
        poolclass=sa.pool.NullPool,
    )
    name = f"points_empty_{uuid.uuid4().hex[:12]}"
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        url = make_url(ledger.database.normalize_url(base)).set(database=name)
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def test_db_upgrade_on_an_empty_database_makes_the_api_ready(empty_url: str) -> None:
    engine = ledger.create_engine(empty_url)
    try:
        app = create_app(Settings(database_url=empty_url), engine=engine)
        with TestClient(app) as client:
            body = assert_problem(client.get("/readyz"), 503, "unavailable")
            assert "points db upgrade" in body["detail"]

            result = points(empty_url, "db", "upgrade")
            assert result.exit_code == 0, result.output
            assert db.head_revision() in result.stdout

            response = client.get("/readyz")
            assert response.status_code == 200, response.text
            assert response.json() == {
                "status": "ready",
                "database": engine.dialect.name,
                "schema_revision": db.head_revision(),
            }
            # And the first admin can be made on it.
            staff_id = create_staff(empty_url, "admin")
            token = points(
                empty_url, "admin", "create-token", "--role", "admin", "--principal", staff_id
            ).stdout.strip()
            response = client.get(
                "/api/v1/admin/staff", headers={"Authorization": f"Bearer {token}"}
            )
            assert response.status_code == 200, response.text
    finally:
        engine.dispose()


def test_purge_deletes_only_what_is_past_its_retention(database_url: str) -> None:
    engine = ledger.create_engine(database_url)
    now = datetime.now(UTC)
    try:
        with engine.begin() as connection:
            for key, created in (("old", now - timedelta(hours=25)), ("new", now)):
                connection.execute(
                    sa.text(
                        "INSERT INTO idempotency_record (namespace, key, request_hash, state, "
                        "lease_owner, lease_expires_at, created_at) VALUES ('stf_x', :key, "
                        ":hash, 'in_progress', 'owner', :created, :created)"
                    ),
                    {"key": key, "hash": bytes(32), "created": created},
                )
            for start in (int(now.timestamp()) - 2 * 86_400, int(now.timestamp())):
                connection.execute(
                    sa.text(
                        "INSERT INTO rate_limit_window (bucket, window_start, hits) "
                        "VALUES ('b', :start, 1)"
                    ),
                    {"start": start},
                )
        result = points(database_url, "purge")
        assert result.exit_code == 0, result.output
        assert "purged 1 idempotency records and 1 rate-limit windows" in result.output
        with engine.connect() as connection:
            keys = connection.execute(sa.text("SELECT key FROM idempotency_record")).scalars()
            assert list(keys) == ["new"]
            windows = connection.execute(sa.text("SELECT count(*) FROM rate_limit_window"))
            assert windows.scalar_one() == 1
    finally:
        engine.dispose()


def test_device_code_prints_a_code_that_enrols_a_device(database_url: str, api: TestClient) -> None:
    staff_id = create_staff(database_url, "counter", "窓口 1")
    result = points(database_url, "admin", "device-code", "--staff", staff_id, "--label", "窓口PC")
    assert result.exit_code == 0, result.output
    code = result.stdout.strip()
    assert re.fullmatch(r"[2-9A-HJ-NP-Z]{10}", code), result.stdout
    assert f"/staff/#/enrol/{code}" in result.stderr
    headers = {"X-Points-Client": "staff", "Origin": "http://testserver"}
    started = api.post("/api/v1/sessions/device", json={"code": code}, headers=headers)
    assert started.status_code == 201, started.text
    assert started.json()["role"] == "counter"
    assert started.json()["label"] == "device session: 窓口PC"

    neither = points(database_url, "admin", "device-code")
    assert neither.exit_code == 2 and "exactly one of --till and --staff" in neither.output
    unknown = points(database_url, "admin", "device-code", "--staff", "stf_nobody")
    assert_one_line_error(unknown, "stf_nobody")
