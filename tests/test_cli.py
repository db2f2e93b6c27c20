"""The ``points`` command on a real database: schema, demo, seal and verify."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result
from fastapi.testclient import TestClient
from ledger_helpers import count, empty_database, tamper, transfer
from sqlalchemy import event
from sqlalchemy.engine import Engine

import ledger
from api.app import create_app
from ledger import Ledger
from points import db
from points.settings import Settings
from points.shell.cli import main

DEMO_BALANCES = {
    # owner reference: (debits, credits, balance) as the demo prints them
    "city": ("150,000", "0", "150,000"),
    "budget:health-checkup:FY2026": ("500", "100,000", "99,500"),
    "budget:volunteering:FY2026": ("300", "50,000", "49,700"),
    "bucket:R-0001:health-checkup:2027-11-30": ("500", "500", "0"),
    "bucket:R-0001:volunteering:2027-12-31": ("100", "300", "200"),
    "payable:M-0001": ("0", "600", "600"),
}


def invoke(url: str, *args: str) -> Result:
    """Run ``points *args`` on ``url``, then close the connections the command left open.

    The commands create engines and never dispose of them (reported as a bug; see
    ``test_commands_close_their_connections``); on PostgreSQL psycopg would warn when they are
    garbage-collected, and the test suite turns warnings into errors.
    """
    with engines_created() as engines:
        result = CliRunner().invoke(
            main, list(args), env={"POINTS_DATABASE_URL": url}, catch_exceptions=False
        )
    for engine in engines:
        engine.dispose()
    return result


@contextmanager
def engines_created() -> Iterator[list[Engine]]:
    """The engines that connect to a database inside the block."""
    engines: list[Engine] = []

    def track(connection: sa.Connection) -> None:
        if connection.engine not in engines:
            engines.append(connection.engine)

    event.listen(Engine, "engine_connect", track)
    try:
        yield engines
    finally:
        event.remove(Engine, "engine_connect", track)


def demo_balances(output: str) -> dict[str, tuple[str, ...]]:
    balances = {}
    for line in output.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[0] in DEMO_BALANCES:
            balances[parts[0]] = tuple(parts[1:])
    return balances


@pytest.fixture
def empty_url(backend: str, tmp_path: Path) -> Iterator[str]:
    yield from empty_database(backend, tmp_path)


@pytest.fixture
def demo_url(database_url: str) -> str:
    """A migrated database on which the demo has run once."""
    result = invoke(database_url, "ledger", "demo")
    assert result.exit_code == 0, result.output
    return database_url


def test_db_upgrade_and_current_on_an_empty_database(empty_url: str) -> None:
    head = db.head_revision()
    result = invoke(empty_url, "db", "current")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"(empty) (latest is {head})"

    result = invoke(empty_url, "db", "upgrade")
    assert result.exit_code == 0, result.output
    assert f"database at {head}" in result.output

    result = invoke(empty_url, "db", "current")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == head


def test_demo_prints_balances_posts_nothing_new_twice_and_verifies(database_url: str) -> None:
    result = invoke(database_url, "db", "upgrade")
    assert result.exit_code == 0, result.output
    assert f"database at {db.head_revision()}" in result.output

    result = invoke(database_url, "ledger", "demo")
    assert result.exit_code == 0, result.output
    assert demo_balances(result.output) == DEMO_BALANCES
    assert "refused as it should be" in result.output
    assert "sealed 5 new entries; verify: no problems" in result.output

    engine = ledger.create_engine(database_url)
    try:
        before = (count(engine, "ledger_entry"), count(engine, "ledger_account"))
        assert before == (5, 6)
        result = invoke(database_url, "ledger", "demo")
        assert result.exit_code == 0, result.output
        assert (count(engine, "ledger_entry"), count(engine, "ledger_account")) == before
    finally:
        engine.dispose()
    assert demo_balances(result.output) == DEMO_BALANCES
    assert "sealed 0 new entries; verify: no problems" in result.output

    result = invoke(database_url, "verify")
    assert result.exit_code == 0, result.output
    assert "checked 5 entries, 6 accounts, 5 seals (0 unsealed)" in result.output
    assert "ledger verified: no problems" in result.output


def test_verify_exits_1_naming_the_culprit(demo_url: str) -> None:
    engine = ledger.create_engine(demo_url)
    try:
        payable = _account_id(engine, "payable:M-0001")
        with Ledger(engine) as instance:
            spend = instance.find_entry("demo", "spend-1")
        assert spend is not None
        tamper(
            engine,
            f"UPDATE ledger_account SET credits_posted = credits_posted + 5 WHERE id = {payable}",
            f"UPDATE ledger_entry SET description = 'edited' WHERE id = {spend.id}",
        )
    finally:
        engine.dispose()

    result = invoke(demo_url, "verify")

    assert result.exit_code == 1
    assert "ledger verified" not in result.output
    assert f"PROBLEM [account] account {payable}: credits_posted is 605, postings say 600" in (
        result.stderr
    )
    assert f"PROBLEM [seal] entry {spend.id} does not match its seal" in result.stderr
    assert f"first problem: account {payable}:" in result.stderr


def test_seal_prints_a_count_and_verify_reports_unsealed_entries(demo_url: str) -> None:
    engine = ledger.create_engine(demo_url)
    try:
        payable = _account_id(engine, "payable:M-0001")
        city = _account_id(engine, "city")
        with Ledger(engine) as instance:
            late = [instance.post(transfer(city, payable, amount)) for amount in (1, 2, 3)]
    finally:
        engine.dispose()

    result = invoke(demo_url, "verify", "--grace-seconds", "0")
    assert result.exit_code == 1
    assert f"PROBLEM [unsealed] entry {late[0].id} and 2 more are not sealed" in result.stderr

    result = invoke(demo_url, "seal")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "sealed 3 entries"
    result = invoke(demo_url, "seal")
    assert result.output.strip() == "sealed 0 entries"
    result = invoke(demo_url, "verify", "--grace-seconds", "0")
    assert result.exit_code == 0, result.output
    assert "checked 8 entries, 6 accounts, 8 seals (0 unsealed)" in result.output


def test_commands_close_their_connections(database_url: str) -> None:
    with engines_created() as engines:
        result = CliRunner().invoke(
            main, ["db", "current"], env={"POINTS_DATABASE_URL": database_url}
        )
    try:
        assert result.exit_code == 0, result.output
        assert engines
        assert [engine.pool.checkedin() for engine in engines] == [0] * len(engines)
    finally:
        for engine in engines:
            engine.dispose()


def _account_id(engine: Engine, owner_ref: str) -> int:
    with engine.connect() as connection:
        return int(
            connection.exec_driver_sql(
                f"SELECT id FROM ledger_account WHERE owner_ref = '{owner_ref}'"
            ).scalar_one()
        )


def test_points_demo_seeds_a_city_once_and_verifies(database_url: str) -> None:
    result = invoke(database_url, "demo")
    assert result.exit_code == 0, result.output
    assert "Specific health checkup FY" in result.output
    assert "awarded 1,500 to 2 residents, remaining 998,500" in result.output
    assert "awarded 600 to 2 residents, remaining 299,400" in result.output
    # 狛江 花子: 500 + 500 (two checkup types) + 300 (clean-up) - 600 paid at the shop.
    assert "狛江 花子" in result.output and ": 700 pt" in result.output
    # The output says where the 600 went.
    assert "Paid at a shop: 狛江 花子 paid 600 pt at 狛江珈琲店 / Komae Coffee" in result.output
    assert "verify: no problems" in result.output
    # The wallet app's address, and a counter code that signs it in as 狛江 花子.
    assert "The wallet app: http://127.0.0.1:8000/app/" in result.output
    code = re.search(r"Counter code for 狛江 花子 \(valid 15 minutes, once\): (\S+)", result.output)
    assert code is not None, result.output
    first_tokens = re.findall(r"kp_\S+", result.output)
    assert len(first_tokens) == 5  # admin, finance, issuer, resident and till tokens
    # In development the first use creates the QR signing key (conftest: a temporary
    # POINTS_KEY_DIR) and says so on stderr.
    assert "created signing key 1 in " in result.stderr

    engine = ledger.create_engine(database_url)

    def counts() -> tuple[int, ...]:
        return tuple(
            count(engine, table) for table in ("ledger_entry", "award", "program", "staff")
        )

    def live_tokens() -> int:
        with engine.connect() as connection:
            query = "SELECT count(*) FROM api_token WHERE revoked_at IS NULL"
            return int(connection.exec_driver_sql(query).scalar_one())

    try:
        before, live_before = counts(), live_tokens()
        again = invoke(database_url, "demo")
        assert again.exit_code == 0, again.output
        assert "created signing key" not in again.output
        # Nothing awarded or paid twice, no new staff, and the first run's tokens revoked: five
        # demo tokens are live however often the demo runs.
        assert (counts(), live_tokens()) == (before, live_before) == (before, 5)
    finally:
        engine.dispose()
    assert "sealed 0 entries" in again.output
    second_tokens = re.findall(r"kp_\S+", again.output)
    assert len(second_tokens) == 5 and not set(first_tokens) & set(second_tokens)
    engine = ledger.create_engine(database_url)
    try:
        with TestClient(create_app(Settings(database_url=database_url), engine=engine)) as api:
            for old, new in zip(first_tokens, second_tokens, strict=True):
                # Revoked: 401. Live: the resident's wallets, or 403 for a member of staff.
                answers = [
                    api.get("/api/v1/me/wallets", headers={"Authorization": f"Bearer {token}"})
                    for token in (old, new)
                ]
                assert [answer.status_code in (200, 403) for answer in answers] == [False, True]
                assert answers[0].status_code == 401
            # The printed counter code signs the wallet app in as 狛江 花子.
            app_headers = {"X-Points-Client": "wallet", "Origin": "http://testserver"}
            signed_in = api.post(
                "/api/v1/sessions/code", json={"code": code.group(1)}, headers=app_headers
            )
            assert signed_in.status_code == 201, signed_in.text
            assert api.get("/api/v1/me").json()["name"] == "狛江 花子"
    finally:
        engine.dispose()
    # The ledger demo runs beside it on the same database.
    assert invoke(database_url, "ledger", "demo").exit_code == 0
    assert invoke(database_url, "verify").exit_code == 0
