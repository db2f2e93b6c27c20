"""Issue 21's done-when on the demo city's ledger: ``points demo`` seeds it (a small pilot city:
a year of awards, payments, refunds, expiry and settlement), ``points export
--format hledger`` writes its journal, and Debian's ``hledger`` passes ``hledger check -s`` on
it and reads account balances that equal our trial balance (``points.reports``), kind of account
by kind of account in each point type. ``points verify-export`` passes on its JSON Lines twin.
On SQLite and PostgreSQL."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections import defaultdict
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session
from test_cli import DEMO, invoke
from test_exports import balances_from_hledger

from ledger.model import from_us
from points import exports, reports
from points.accounts import AccountCode
from points.calendar import tokyo_date

pytestmark = pytest.mark.skipif(
    shutil.which("hledger") is None and os.environ.get("POINTS_TEST_HLEDGER") != "required",
    reason="hledger is not installed (CI installs it and sets POINTS_TEST_HLEDGER=required)",
)

#: The chart's base names, longest first, to tell an account name's kind.
KINDS = sorted(
    ((name, AccountCode(code)) for code, name in exports._BASE_NAMES.items()),
    key=lambda pair: -len(pair[0]),
)


def kind_of(account: str) -> AccountCode:
    for base, code in KINDS:
        if account == base or account.startswith(base + ":"):
            return code
    raise AssertionError(f"an account name outside the chart: {account}")


def test_the_demo_citys_journal_passes_hledger_and_is_the_trial_balance(
    database_url: str, engine: Engine, tmp_path: Path
) -> None:
    seeded = invoke(database_url, *DEMO)
    assert seeded.exit_code == 0, seeded.output
    with engine.connect() as connection:
        head = int(connection.exec_driver_sql("SELECT sequence FROM ledger_seal_head").scalar_one())
        unsealed = connection.exec_driver_sql("SELECT count(*) FROM ledger_unsealed").scalar_one()
        last_us = connection.exec_driver_sql("SELECT max(recorded_at_us) FROM ledger_entry")
        last_day = tokyo_date(from_us(int(last_us.scalar_one())))
    assert head >= 5 and unsealed == 0

    journal = tmp_path / "demo.journal"
    exported = invoke(
        database_url, "export", "--format", "hledger", "--from-seq", "1", "--to-seq", str(head),
        "--out", str(journal),
    )  # fmt: skip
    assert exported.exit_code == 0, exported.output
    check = subprocess.run(
        ["hledger", "check", "-s", "-f", str(journal)], capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stderr

    from_hledger: dict[tuple[str, str], int] = defaultdict(int)
    for (account, symbol), amount in balances_from_hledger(journal).items():
        from_hledger[(symbol, kind_of(account).name)] += amount

    with Session(engine) as session:
        trial = reports.trial_balance(session, last_day)
    ours: dict[tuple[str, str], int] = {}
    for ledger_code, _code, kind, debits, credits in trial.rows[:-1]:
        if debits != credits:
            ours[(exports.commodity(ledger_code).strip('"'), kind)] = debits - credits
    assert dict(from_hledger) == ours
    assert {kind for _symbol, kind in ours} >= {"RESIDENT_BUCKET", "PROGRAM_BUDGET"}

    twin = journal.with_name(journal.name + ".jsonl")
    verified = invoke(database_url, "verify-export", str(twin))
    assert verified.exit_code == 0, verified.output
