"""Units of work: a Session in one transaction, retried when the failure is transient."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session

from ledger.database import RACE_CONSTRAINTS as LEDGER_RACE_CONSTRAINTS
from ledger.database import run_with_retries

T = TypeVar("T")


#: Unique constraints that mean "another writer won a race"; the unit of work is run again.
RACE_CONSTRAINTS = LEDGER_RACE_CONSTRAINTS | {
    "pk_audit_event",
    "uq_department_code",
    # Two first requests with one idempotency key: the loser's retry finds the claim.
    "pk_idempotency_record",
    # Opened or created on demand by concurrent awards: the loser's retry finds the row.
    "pk_wallet",
    "uq_wallet_bucket_key",
    "pk_program_budget",
    # Concurrent awards of one record or one once-key: the retry answers replay or refusal.
    "uq_award_program_id_record_id",
    # The ledger replayed the first award's entry (same record id) to a racer that checked for
    # the award before the first committed: the retry finds the award and replays it.
    "uq_award_entry_id",
    "pk_award_once",
    # The same file uploaded twice at once: the loser's retry resumes the winner's upload.
    "uq_award_upload_program_id_sha256",
    # Two processes claiming one job period: the loser's retry finds the claim.
    "uq_job_run_job_period",
    # One once-only QR token used twice at once: the loser's retry finds the row (token_used).
    "uq_used_token_kind_token_id",
    # One resident checking in at one event twice at once: the retry replays the first.
    "pk_event_attendance",
    # A shop's settings, payable account or a resident's pay settings made on first need by
    # two requests at once: the loser's retry finds the winner's row.
    "pk_merchant_settings",
    "pk_merchant_payable",
    "pk_resident_pay_settings",
    # Two settlement runs of one period at once: the loser's retry finds the run (a replay).
    "uq_settlement_run_period",
    # A run's transfer file made twice at once: the loser's retry reads the winner's transfers.
    "uq_payout_transfer_run_id_merchant_id",
    # A recovery recorded twice at once: the loser's retry is refused (recorded already).
    "pk_statement_recovery",
}


def unit_of_work(engine: Engine, work: Callable[[Session], T], *, read_only: bool = False) -> T:
    """Run ``work`` with a Session in one transaction, retried when transient; commit at the end.

    ``work`` may run more than once, so it must have no effects outside the database; build the
    response inside it (objects stay usable after the commit).
    """

    def run(connection: sa.Connection) -> T:
        with Session(bind=connection, expire_on_commit=False) as session:
            result = work(session)
            session.flush()
            return result

    return run_with_retries(engine, run, read_only=read_only, race_constraints=RACE_CONSTRAINTS)
