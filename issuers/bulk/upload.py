"""A bulk upload of awards, from the file to the settled outcome (``upload``).

1. **Check the whole file first** (``issuers.bulk.check``): every bad row is reported and
   nothing is written.
2. **Set the file's total aside**: in one transaction, each fiscal year's total moves from the
   program's budget to a *clearing account* of the upload. A file that needs more than remains
   is refused here, before anything is awarded; and once it is set aside, a concurrent single
   award can no longer take the budget the file needs.
3. **Award in batches** (``issuers.bulk.batches``), paid from the clearing accounts.
4. **Settle**: return what is left in the clearing accounts to the budget (or, if the year was
   closed meanwhile, to the city's funding), close them, and record the outcome on the upload
   (``done``). The points returned are not an allocation: a budget's ``allocated`` leaves them
   out (``issuers.awards.budget_view``).

An upload that stops before it settles keeps its total set aside until it is resumed, or ended
without finishing (``issuers.bulk.ending``): cancelled by its department (``cancelled``) or,
when nobody resumes it, handed back by a job (``abandoned``). Both settle it the same way
(``end_upload``), keeping the awards made. Every status but ``issuing`` is final.

An upload is known by the SHA-256 of the file: uploading the same file again returns the first
upload's outcome, or resumes it if it was interrupted (every row is protected by its record id,
so a resumed upload awards each row at most once). A cancelled or abandoned upload is not
resumed (``upload_finished``): a file of the rows it did not award (other bytes) is a new upload,
whose check finds the rows awarded before as replays.

One run at a time awards a file: the run takes a **lease** on the upload row (``owner``,
``lease_expires_at``) for ``LEASE``, short (seconds) and renewed often: in a transaction of its
own before every batch (so a live upload of any length keeps it), and again by the batch itself.
Another upload of the same file meanwhile (a retry from an impatient client, a second clerk) is
refused with ``upload_in_progress``, saying in ``retry_after_seconds`` when the lease lapses, and
may look at the upload's progress instead; it is not run alongside, where it would meet the first
run's awards as replays and count them twice. A run that fails gives its lease up at once, so
that the file can be uploaded again to resume it; a run whose process died keeps it until it
lapses, ``LEASE`` after its last renewal at most. The resuming run takes the lease *before* it
checks the file again, so the check sees every row the old run awarded, and the old run, should
it wake, stops at its next batch.
"""

from __future__ import annotations

import enum
import gc
import hashlib
import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Field, Session, SQLModel, select

from issuers.bulk.batches import award_batch
from issuers.bulk.check import Plan, check_file
from issuers.bulk.reading import Row
from issuers.eligibility import check_program_active
from issuers.errors import (
    BudgetClosed,
    BudgetExhausted,
    CsvInvalid,
    UploadFinished,
    UploadInProgress,
)
from issuers.programs import BudgetStatus, find_budget, get_program
from ledger import LedgerTx, NewEntry, Posting, Side
from points.accounts import ACCOUNT_RULES, AccountCode
from points.auth import Principal
from points.errors import NotFound, seconds_until
from points.jobs import frozen_heap
from points.pointtypes import get_point_type
from points.registry import new_id
from points.sqlbase import UTCDateTime
from points.uow import unit_of_work

#: How long a run's lease on its upload lasts after its last renewal (before each batch, at the
#: set-aside, when it resumes) before another upload of the file may take it over: what a dead
#: process costs a retry. It covers the longest step between two renewals, with room for a busy
#: machine: a batch of ``BATCH`` rows (a fraction of a second), checking a 100,000-row file when
#: resuming (a few seconds).
LEASE = timedelta(seconds=20)
BATCH = 2000
#: On PostgreSQL, refresh the planner's statistics every this many batches of an upload.
ANALYZE_EVERY = 5

log = logging.getLogger("issuers.bulk")


class UploadStatus(enum.StrEnum):
    ISSUING = "issuing"
    #: Every row awarded or refused, the rest returned (final, like the two below).
    DONE = "done"
    #: Ended by its department before it finished (``issuers.bulk.ending.cancel``).
    CANCELLED = "cancelled"
    #: Ended by the ``upload_handback`` job: nobody resumed it after its lease lapsed.
    ABANDONED = "abandoned"


class AwardUpload(SQLModel, table=True):
    __tablename__ = "award_upload"
    __table_args__ = (
        sa.UniqueConstraint("program_id", "sha256"),
        sa.CheckConstraint(
            "status IN ('issuing', 'done', 'cancelled', 'abandoned')", name="status"
        ),
    )

    id: str = Field(primary_key=True, max_length=32)
    program_id: str = Field(foreign_key="program.id", max_length=32, index=True)
    sha256: str = Field(max_length=64)
    filename: str = Field(default="", max_length=200)
    status: str = Field(max_length=16)
    rows: int
    #: Rows to award when the upload started (the others were replays).
    to_award: int
    total: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    #: What went back from the clearing accounts when the upload ended (migration 0012).
    returned: int = Field(
        default=0, sa_column=sa.Column(sa.BigInteger, nullable=False, server_default="0")
    )
    awarded: int = 0
    replayed: int = 0
    failed: int = 0
    #: Rows refused while awarding, as JSON [{"line": 12, "code": ..., "reason": ...}].
    failures: str = Field(default="[]", sa_column=sa.Column(sa.Text, nullable=False))
    #: The accounts the file's total was set aside in: {fiscal year: account id}, as JSON.
    clearing_accounts: str = Field(default="{}", sa_column=sa.Column(sa.Text, nullable=False))
    created_by: str = Field(max_length=32)
    created_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))
    finished_at: datetime | None = Field(default=None, sa_column=sa.Column(UTCDateTime()))
    #: The run awarding the file and until when its lease lasts (renewed by every batch). No
    #: owner when no run has the lease; ``lease_expires_at`` is then when the last run let go
    #: (None once the upload ended, or for an upload of before migration 0012 let go).
    owner: str | None = Field(default=None, max_length=32)
    lease_expires_at: datetime | None = Field(default=None, sa_column=sa.Column(UTCDateTime()))


@dataclass(frozen=True, slots=True)
class UploadResult:
    upload: AwardUpload
    #: True when this file was uploaded before and is done: nothing was awarded now.
    replayed: bool


@frozen_heap()
def upload(
    engine: Engine,
    actor: Principal,
    clock: Callable[[], datetime],
    program_id: str,
    data: bytes,
    *,
    department_id: str | None,
    filename: str = "",
    progress: Callable[[int, int | None], None] | None = None,
    batch: int = BATCH,
) -> UploadResult:
    """Validate, set aside, award in batches, settle; see the module docstring. The heap is
    frozen out of the garbage collector while it runs (``points.jobs.frozen_heap``)."""
    sha256 = hashlib.sha256(data).hexdigest()
    now = clock()
    owner = uuid.uuid4().hex
    existing = unit_of_work(
        engine,
        lambda session: _find_upload(session, program_id, department_id, sha256),
        read_only=True,
    )
    if existing is not None and existing.status == UploadStatus.DONE:
        return UploadResult(existing, replayed=True)
    if existing is not None and existing.status != UploadStatus.ISSUING:
        raise finished_refusal(existing)
    leased: str | None = None
    try:
        if existing is not None:
            # Interrupted: take its lease before checking, so that the check sees every row the
            # run that had it awarded (and that run stops at its next batch).
            taken = unit_of_work(
                engine, lambda session: _take_lease(session, existing.id, owner, now)
            )
            if taken.status == UploadStatus.DONE:
                return UploadResult(taken, replayed=True)
            leased = taken.id
        plan, errors = check_file(engine, program_id, department_id, data, now)
        if errors:
            raise CsvInvalid(errors)
        assert plan is not None
        # The plan (an object or more per row) lives until the upload ends: keep the collector
        # off it as well, or every full collection of the batches walks it again (frozen_heap
        # thaws).
        gc.freeze()
        aside = unit_of_work(
            engine,
            lambda session: _set_aside(
                session, actor, now, program_id, plan, sha256, filename, owner
            ),
        )
        if aside.status == UploadStatus.DONE:  # another run finished the file meanwhile
            return UploadResult(aside, replayed=True)
        upload_id = leased = aside.id
        clearing_json = unit_of_work(
            engine,
            lambda session: _get_upload(session, upload_id).clearing_accounts,
            read_only=True,
        )
        clearing_accounts = {
            int(year): account for year, account in json.loads(clearing_json).items()
        }
        done = 0
        if progress is not None:
            progress(0, len(plan.to_award))
        for start in range(0, len(plan.to_award), batch):
            part = plan.to_award[start : start + batch]
            # Renewed and committed before the batch, so that the whole lease covers it.
            unit_of_work(engine, lambda session: _renew_lease(session, upload_id, owner, clock()))
            unit_of_work(
                engine,
                lambda session, part=part: _award_batch(  # type: ignore[misc]
                    session, actor, clock(), program_id, upload_id, owner, part, clearing_accounts
                ),
            )
            done += len(part)
            if progress is not None:
                progress(done, len(plan.to_award))
            if engine.dialect.name == "postgresql" and (start // batch) % ANALYZE_EVERY == 0:
                # The tables grow fast during a big upload; fresh statistics keep the lookups
                # on their unique indexes instead of scanning.
                with engine.connect() as connection:
                    connection.exec_driver_sql("ANALYZE award, wallet_bucket, award_once")
                    connection.commit()
        finished = unit_of_work(engine, lambda session: _settle(session, clock(), upload_id, owner))
    except BaseException:
        if leased is not None:
            _give_up_lease(engine, leased, owner, clock())
        raise
    return UploadResult(finished, replayed=False)


def _take_lease(session: Session, upload_id: str, owner: str, now: datetime) -> AwardUpload:
    """Lease the upload to the run ``owner`` until ``now + LEASE``; refused while another run's
    lease lasts. A finished upload is returned as it is."""
    upload = session.exec(
        select(AwardUpload).where(AwardUpload.id == upload_id).with_for_update()
    ).one()
    if upload.status == UploadStatus.DONE:
        return upload
    if upload.status != UploadStatus.ISSUING:
        raise finished_refusal(upload)
    if (
        upload.owner is not None
        and upload.owner != owner
        and upload.lease_expires_at is not None
        and upload.lease_expires_at > now
    ):
        raise UploadInProgress(
            f"upload {upload.id} of this file is being awarded by another request "
            f"({upload.awarded} of {upload.to_award} rows so far); look at the upload for its "
            "progress, or upload the file again later to resume it if that request has stopped",
            upload_id=upload.id,
            awarded=upload.awarded,
            to_award=upload.to_award,
            retry_after_seconds=seconds_until(upload.lease_expires_at, now),
        )
    upload.owner = owner
    upload.lease_expires_at = now + LEASE
    session.add(upload)
    session.flush()
    return upload


def finished_refusal(upload: AwardUpload) -> UploadFinished:
    """The refusal to resume or cancel an upload that has a final status."""
    return UploadFinished(
        f"upload {upload.id} is {upload.status}: {upload.awarded} of its {upload.to_award} rows "
        f"were awarded and stand, {upload.returned} points went back to the budget; it can be "
        "neither resumed nor cancelled. To award rows it did not, upload a file of them",
        upload_id=upload.id,
        upload_status=upload.status,
        awarded=upload.awarded,
        to_award=upload.to_award,
    )


def _give_up_lease(engine: Engine, upload_id: str, owner: str, now: datetime) -> None:
    """After a failed run: give the lease up at once (if this run still has it), so that
    uploading the file again resumes it without waiting for the lease to lapse. The lease
    lapses now: the ``upload_handback`` job counts from here."""

    def work(session: Session) -> None:
        upload = session.get(AwardUpload, upload_id, with_for_update=True)
        if upload is not None and upload.owner == owner:
            upload.owner = None
            upload.lease_expires_at = now
            session.add(upload)

    try:
        unit_of_work(engine, work)
    except Exception:  # the run's own error is the one to report; the lease lapses anyway
        log.warning(
            "upload %s: could not give its lease up; it lasts until it lapses",
            upload_id,
            exc_info=True,
        )


def _find_upload(
    session: Session, program_id: str, department_id: str | None, sha256: str
) -> AwardUpload | None:
    get_program(session, program_id, department_id=department_id)
    return session.exec(
        select(AwardUpload).where(
            AwardUpload.program_id == program_id, AwardUpload.sha256 == sha256
        )
    ).first()


def _get_upload(session: Session, upload_id: str) -> AwardUpload:
    found = session.get(AwardUpload, upload_id)
    assert found is not None
    return found


def _set_aside(
    session: Session,
    actor: Principal,
    now: datetime,
    program_id: str,
    plan: Plan,
    sha256: str,
    filename: str,
    owner: str,
) -> AwardUpload:
    """Create the upload, leased to ``owner`` (or lease the interrupted one), and move each
    year's total from the budget to a clearing account of the upload; refuse when a budget has
    too little."""
    program = get_program(session, program_id)
    existing = session.exec(
        select(AwardUpload).where(
            AwardUpload.program_id == program_id, AwardUpload.sha256 == sha256
        )
    ).first()
    if existing is not None:
        # An interrupted upload of this file (or one a concurrent upload of the same file has
        # just created): resume it, unless another run's lease lasts; what it set aside is
        # still in its clearing accounts.
        return _take_lease(session, existing.id, owner, now)
    check_program_active(program)
    point_type = get_point_type(session, program.point_type_id)
    tx = LedgerTx(session.connection(), lambda: now)
    upload = AwardUpload(
        id=new_id("upl"),
        program_id=program_id,
        sha256=sha256,
        filename=filename[:200],
        status=UploadStatus.ISSUING,
        rows=plan.rows,
        to_award=len(plan.to_award),
        total=sum(plan.totals.values()),
        replayed=plan.replays,
        created_by=actor.principal_id,
        created_at=now,
        owner=owner,
        lease_expires_at=now + LEASE,
    )
    clearing_accounts: dict[str, int] = {}
    for year, total in sorted(plan.totals.items()):
        budget = find_budget(session, program.id, year)
        if budget is None:
            raise BudgetExhausted(
                f"program {program.id} has no FY{year} budget; the file needs {total}",
                remaining=0,
                requested=total,
            )
        if budget.status != BudgetStatus.OPEN:
            raise BudgetClosed(f"the FY{year} budget of program {program.id} is closed")
        remaining = tx.lock_account(budget.account_id).balance.available
        if remaining < total:
            raise BudgetExhausted(
                f"the FY{year} budget has {remaining} remaining; the file needs {total}",
                remaining=remaining,
                requested=total,
            )
        side, flags = ACCOUNT_RULES[AccountCode.BULK_CLEARING]
        clearing = tx.create_account(
            ledger_id=point_type.ledger_id,
            code=int(AccountCode.BULK_CLEARING),
            normal_side=side,
            owner_ref=f"{upload.id}:FY{year}",
            flags=flags,
        )
        tx.post(
            NewEntry(
                [
                    Posting(budget.account_id, Side.DEBIT, total),
                    Posting(clearing.id, Side.CREDIT, total),
                ],
                kind="bulk_set_aside",
                description=f"upload {upload.id}: {len(plan.to_award)} awards",
                metadata={"upload_id": upload.id, "fiscal_year": year},
            )
        )
        clearing_accounts[str(year)] = clearing.id
    upload.clearing_accounts = json.dumps(clearing_accounts, sort_keys=True)
    session.add(upload)
    session.flush()
    return upload


def _award_batch(
    session: Session,
    actor: Principal,
    now: datetime,
    program_id: str,
    upload_id: str,
    owner: str,
    rows: list[Row],
    clearing_accounts: dict[int, int],
) -> None:
    """Renew the run's lease (a run that lost it stops here), award the batch and count it on
    the upload, in one transaction."""
    _renew_lease(session, upload_id, owner, now)
    outcome = award_batch(session, actor, now, program_id, rows, clearing_accounts)
    upload = session.get(AwardUpload, upload_id, populate_existing=True)
    assert upload is not None
    upload.awarded += outcome.awarded
    upload.replayed += outcome.replayed
    upload.failed += len(outcome.failures)
    upload.failures = json.dumps(
        [*json.loads(upload.failures), *outcome.failures], ensure_ascii=False
    )
    session.add(upload)
    session.flush()


def _renew_lease(session: Session, upload_id: str, owner: str, now: datetime) -> AwardUpload:
    """Lock the upload and renew the run's lease on it; refused if another run took it over."""
    upload = session.exec(
        select(AwardUpload).where(AwardUpload.id == upload_id).with_for_update()
    ).one()
    if upload.status not in (UploadStatus.ISSUING, UploadStatus.DONE):
        raise finished_refusal(upload)
    if upload.owner != owner or upload.status == UploadStatus.DONE:
        raise UploadInProgress(
            f"upload {upload.id}: another request took it over while this one was stalled; "
            "it goes on there",
            upload_id=upload.id,
            awarded=upload.awarded,
            to_award=upload.to_award,
            retry_after_seconds=seconds_until(upload.lease_expires_at or now, now),
        )
    upload.lease_expires_at = now + LEASE
    session.add(upload)
    return upload


def _settle(session: Session, now: datetime, upload_id: str, owner: str) -> AwardUpload:
    """Return what the clearing accounts still hold, close them, and finish the upload."""
    upload = _renew_lease(session, upload_id, owner, now)
    end_upload(session, now, upload, UploadStatus.DONE)
    return upload


def end_upload(session: Session, now: datetime, upload: AwardUpload, status: UploadStatus) -> int:
    """Return what the upload's clearing accounts still hold to their budgets (or, for a year
    closed meanwhile, to the city's funding), close them, and give the upload its final
    ``status``, held by no run; the points returned. The caller holds the upload's row lock."""
    assert status != UploadStatus.ISSUING and upload.status == UploadStatus.ISSUING
    program = get_program(session, upload.program_id)
    point_type = get_point_type(session, program.point_type_id)
    tx = LedgerTx(session.connection(), lambda: now)
    returned = 0
    for year, clearing_id in json.loads(upload.clearing_accounts).items():
        left = tx.lock_account(clearing_id).balance.available
        returned += left
        if left > 0:
            budget = find_budget(session, program.id, int(year))
            open_budget = budget is not None and budget.status == BudgetStatus.OPEN
            target = budget.account_id if budget is not None and open_budget else None
            tx.post(
                NewEntry(
                    [
                        Posting(clearing_id, Side.DEBIT, left),
                        Posting(target or point_type.city_account_id, Side.CREDIT, left),
                    ],
                    kind="bulk_return",
                    description=f"upload {upload.id}: not awarded",
                    metadata={"upload_id": upload.id, "fiscal_year": int(year)},
                )
            )
        tx.close_account(clearing_id)
    upload.status = status
    upload.returned = returned
    upload.finished_at = now
    upload.owner = upload.lease_expires_at = None
    session.add(upload)
    session.flush()
    return returned


def get_upload(session: Session, upload_id: str, *, department_id: str | None) -> AwardUpload:
    """The upload; with ``department_id``, only if it is to that department's program. Another
    department's upload is not found, and the refusal names only the id the caller gave (not
    the program it belongs to)."""
    found = session.get(AwardUpload, upload_id)
    if found is not None and (
        department_id is None
        or get_program(session, found.program_id).department_id == department_id
    ):
        return found
    raise NotFound(f"no upload {upload_id}", object_id=upload_id)
