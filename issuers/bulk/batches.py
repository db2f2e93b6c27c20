"""The batches of a bulk upload: awarding a checked file's rows, ``BATCH`` at a time.

A batch is awarded set-based when nothing changed since the file was checked (the usual case):
a handful of multi-row statements for the once-keys, cap counters, new wallets and buckets, the
ledger entries (``post_batch``, atomic) and the award rows. It applies the award rules
(``issuers.eligibility``) to its distinct residents and dates at once, and leaves once-keys and
caps to the database's own guards (a unique key; a CHECK ``amount <= cap``). If anything is not
as it was when the file was checked, the batch is rolled back to its savepoint and awarded row
by row through ``issuers.awards.award``, each row in a savepoint of its own: a row that a
concurrent award made invalid is reported, never half-applied, and the others are awarded.

Each row is awarded as the check planned it (amount, fiscal year, once-keys, details), paid
from the upload's clearing accounts: the file's total was set aside on those amounts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col

from issuers import eligibility
from issuers.awards import (
    OPEN_COUNTER,
    RAISE_COUNTER,
    Award,
    AwardOnce,
    AwardRequest,
    award,
    award_entry,
)
from issuers.bulk.check import NO_PARTIES, parties_of, select_in
from issuers.bulk.reading import Row
from issuers.programs import Program, get_program
from ledger import BatchMode, LedgerTx
from ledger.errors import LedgerError
from points.accounts import ACCOUNT_RULES, AccountCode
from points.auth import Principal
from points.calendar import tokyo_date
from points.errors import PointsError
from points.pointtypes import get_point_type
from points.sqlbase import insert_many
from points.wallets import Wallet, WalletBucket, WalletStatus


@dataclass
class BatchOutcome:
    awarded: int = 0
    replayed: int = 0
    #: Rows refused while awarding: {"line": 12, "code": ..., "reason": ...}.
    failures: list[dict[str, Any]] = field(default_factory=list)


class _Changed(Exception):
    """Something changed since the file was checked: award this batch row by row."""


def award_batch(
    session: Session,
    actor: Principal,
    now: datetime,
    program_id: str,
    rows: list[Row],
    paid_from: Mapping[int, int],
) -> BatchOutcome:
    """Award ``rows`` (see the module docstring), paid from ``paid_from``: the upload's clearing
    account per fiscal year."""
    try:
        with session.begin_nested():
            awarded = _award_set_based(session, actor, now, program_id, rows, paid_from)
        return BatchOutcome(awarded=awarded)
    except (_Changed, PointsError, LedgerError, sa.exc.IntegrityError):
        return _award_row_by_row(session, actor, now, program_id, rows, paid_from)


def _award_row_by_row(
    session: Session,
    actor: Principal,
    now: datetime,
    program_id: str,
    rows: list[Row],
    paid_from: Mapping[int, int],
) -> BatchOutcome:
    outcome = BatchOutcome()
    for row in rows:
        request = AwardRequest(
            program_id, row.resident_id, row.record_id, row.details, row.occurred_on
        )
        try:
            with session.begin_nested():
                result = award(
                    session, actor, now, request, department_id=None, paid_from=paid_from
                )
        except (PointsError, LedgerError) as refused:
            outcome.failures.append(
                {"line": row.line, "code": refused.code, "reason": refused.message}
            )
            continue
        if result.replayed:
            outcome.replayed += 1
        else:
            outcome.awarded += 1
    return outcome


def _award_set_based(
    session: Session,
    actor: Principal,
    now: datetime,
    program_id: str,
    rows: list[Row],
    paid_from: Mapping[int, int],
) -> int:
    """The batch in a handful of multi-row statements; raises when anything is not as it was
    when the file was checked (the caller then goes row by row). Returns the rows awarded."""
    program = get_program(session, program_id)
    point_type = get_point_type(session, program.point_type_id)
    today = tokyo_date(now)
    valid_until = point_type.valid_until(today)
    connection = session.connection()
    resident_ids = sorted({row.resident_id for row in rows})
    # Wallets share-locked, as single awards lock them: a closure waits for this batch.
    parties = parties_of(session, resident_ids, point_type.id, share_lock=True)
    # The rules ``decide`` applies to each row, applied once per distinct program, date and
    # resident; once-keys and caps are left to the database (below).
    try:
        eligibility.check_program_active(program)
        eligibility.check_points_valid(valid_until, today)
        for day in {row.occurred_on or today for row in rows}:
            eligibility.fiscal_year_of(program, day, today)
        for resident_id in resident_ids:
            eligibility.check_parties(parties.get(resident_id, NO_PARTIES))
    except PointsError as changed:
        raise _Changed(changed.message) from changed
    if any(row.fiscal_year not in paid_from for row in rows):
        raise _Changed("nothing was set aside for a fiscal year of this batch")
    # No lookup of earlier awards: an award of one of these records made since the check (or by
    # an interrupted run of this upload) shows as a replay of its ledger entry below, and the
    # batch goes row by row, where each such row is replayed or refused (record_id_reused).
    # Once-keys and cap counters: the database refuses a collision (unique key) or a cap
    # exceeded (CHECK amount <= cap), and the batch goes row by row.
    once = [(row.resident_id, key, row.record_id) for row in rows for key in row.once_keys]
    if once:
        once_residents, once_keys, once_records = zip(*once, strict=True)
        insert_many(
            connection,
            AwardOnce.__table__,  # type: ignore[attr-defined]
            {"resident_id": once_residents, "once_key": once_keys, "record_id": once_records},
            {"program_id": program_id},
        )
    _count_batch_towards_caps(connection, program, rows)
    missing_wallets = [
        resident
        for resident in resident_ids
        if parties.get(resident, NO_PARTIES).wallet_status is None
    ]
    if missing_wallets:
        insert_many(
            connection,
            Wallet.__table__,  # type: ignore[attr-defined]
            {"resident_id": missing_wallets},
            {"point_type_id": point_type.id, "status": WalletStatus.OPEN, "created_at": now},
        )
    buckets: dict[str, int] = {
        bucket.resident_id: bucket.account_id
        for bucket in select_in(
            session,
            WalletBucket,
            col(WalletBucket.resident_id),
            resident_ids,
            WalletBucket.point_type_id == point_type.id,
            WalletBucket.program_id == program_id,
            WalletBucket.valid_until == valid_until,
            columns=(col(WalletBucket.resident_id), col(WalletBucket.account_id)),
        )
    }
    tx = LedgerTx(connection, lambda: now)
    new_buckets = [resident for resident in resident_ids if resident not in buckets]
    if new_buckets:
        side, flags = ACCOUNT_RULES[AccountCode.RESIDENT_BUCKET]
        ids = tx.create_accounts(
            ledger_id=point_type.ledger_id,
            code=int(AccountCode.RESIDENT_BUCKET),
            normal_side=side,
            owner_refs=new_buckets,
            flags=flags,
        )
        insert_many(
            connection,
            WalletBucket.__table__,  # type: ignore[attr-defined]
            {"account_id": ids, "resident_id": new_buckets},
            {"point_type_id": point_type.id, "program_id": program_id, "valid_until": valid_until},
        )
        buckets.update(zip(new_buckets, ids, strict=True))
    results = tx.post_batch(
        [
            award_entry(
                program,
                row.record_id,
                row.fiscal_year,
                row.amount,
                paid_from[row.fiscal_year],
                buckets[row.resident_id],
            )
            for row in rows
        ],
        BatchMode.ATOMIC,
    )
    entry_ids: list[int] = []
    for result in results:
        if result.replayed or result.entry is None:
            raise _Changed("an award of this file was recorded meanwhile")
        entry_ids.append(result.entry.id)
    insert_many(
        connection,
        Award.__table__,  # type: ignore[attr-defined]
        {
            "record_id": [row.record_id for row in rows],
            "resident_id": [row.resident_id for row in rows],
            "amount": [row.amount for row in rows],
            "fiscal_year": [row.fiscal_year for row in rows],
            "occurred_on": [row.occurred_on or today for row in rows],
            "entry_id": entry_ids,
            "bucket_account_id": [buckets[row.resident_id] for row in rows],
            "details": [row.details_json for row in rows],
        },
        {
            "program_id": program_id,
            "valid_until": valid_until,
            "awarded_by": actor.principal_id,
            "created_at": now,
        },
    )
    return len(rows)


def _count_batch_towards_caps(connection: sa.Connection, program: Program, rows: list[Row]) -> None:
    """Add the batch's amounts to the cap counters, one statement for all. Unconditional, unlike
    a single award's: the CHECK ``amount <= cap`` refuses a counter pushed past its cap, and
    the batch then goes row by row."""
    caps: dict[tuple[str, str], tuple[int, int]] = {}
    for row in rows:
        assert row.occurred_on is not None  # set by the check
        for period, cap in eligibility.cap_periods(program, row.occurred_on, row.fiscal_year):
            so_far, _ = caps.get((row.resident_id, period), (0, cap))
            caps[(row.resident_id, period)] = (so_far + row.amount, cap)
    if not caps:
        return
    counters = [
        {
            "program_id": program.id,
            "resident_id": resident,
            "period": period,
            "amount": amount,
            "cap": cap,
        }
        for (resident, period), (amount, cap) in caps.items()
    ]
    connection.execute(OPEN_COUNTER, counters)
    connection.execute(sa.text(RAISE_COUNTER), counters)
