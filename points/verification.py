"""Runs of the ledger's ``verify``, recorded so that finance can see the last result.

``points verify`` and the admin API record every run here; the ledger itself knows nothing of
this table (it only reports).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, Session, SQLModel, col, select

from ledger import Ledger, Report
from points.sqlbase import UTCDateTime
from points.uow import unit_of_work


class VerifyRun(SQLModel, table=True):
    __tablename__ = "verify_run"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))
    ok: bool
    entries: int
    accounts: int
    sealed: int
    unsealed: int
    #: The problems found, as JSON (at most 100).
    problems: str = Field(sa_column=sa.Column(sa.Text, nullable=False))


def verify_and_record(ledger: Ledger, *, unsealed_grace_seconds: int) -> tuple[Report, VerifyRun]:
    report = ledger.verify(unsealed_grace_seconds=unsealed_grace_seconds)
    run = VerifyRun(
        at=ledger.clock(),
        ok=report.ok,
        entries=report.entries,
        accounts=report.accounts,
        sealed=report.sealed,
        unsealed=report.unsealed,
        problems=json.dumps([asdict(problem) for problem in report.problems], ensure_ascii=False),
    )

    def store(session: Session) -> VerifyRun:
        session.add(run)
        session.flush()
        return run

    return report, unit_of_work(ledger.engine, store)


def last_run(session: Session) -> VerifyRun | None:
    return session.exec(select(VerifyRun).order_by(col(VerifyRun.id).desc()).limit(1)).first()
