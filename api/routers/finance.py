"""Finance (a read-only auditor) and admins: the ledger, the audit trail, the runs of the
scheduled jobs, residents by pseudonymous id only. Nothing here writes, but for a queued run of
the ledger's verification (``POST /verify-runs``), which changes nothing in the ledger."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Path, Query
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from api.bodies import StrictRoute
from api.deps import AuditorDep, ServicesDep
from api.schemas import (
    ID_PATTERN,
    PROTECTED_ERRORS,
    AccountPublic,
    AuditEventPublic,
    EntryPublic,
    HistoryLinePublic,
    LedgerPublic,
    Page,
    PostingPublic,
    ResidentPseudonymous,
    VerifyResultPublic,
)
from api.schemas_earning import JobRunPublic, JobRunQueued
from api.verify_view import verify_result
from ledger import Account, Entry, LedgerTx
from ledger.model import PAGE_LIMIT_MAX
from points import people
from points.audit import AuditEvent
from points.errors import NotFound
from points.jobs import (
    Claim,
    JobRun,
    RunResult,
    carry_out,
    claim_run,
    list_runs,
    run_of,
    tokyo_minute,
)
from points.registry import Resident
from points.verification import last_run

log = logging.getLogger("points.api.finance")

router = APIRouter(
    prefix="/api/v1/finance", tags=["finance"], responses=PROTECTED_ERRORS, route_class=StrictRoute
)

Limit = Annotated[int, Query(ge=1, le=people.PAGE_LIMIT_MAX)]
# 18 digits stay below 2**63 - 1, the largest id either database holds.
NumericCursor = Annotated[str | None, Query(pattern=r"^[0-9]{1,18}$")]
LedgerId = Annotated[int, Path(ge=1, le=2**63 - 1)]
AccountId = Annotated[int, Path(ge=1, le=2**63 - 1)]
EntryId = Annotated[int, Path(ge=1, le=2**63 - 1)]
RunId = Annotated[int, Path(ge=1, le=2**63 - 1)]


def account_public(account: Account) -> AccountPublic:
    balance = account.balance
    return AccountPublic(
        id=account.id,
        ledger_id=account.ledger_id,
        code=account.code,
        normal_side=account.normal_side.name.lower(),
        owner_ref=account.owner_ref,
        flags=int(account.flags),
        closed=account.closed,
        debits_posted=account.debits_posted,
        credits_posted=account.credits_posted,
        debits_pending=account.debits_pending,
        credits_pending=account.credits_pending,
        posted=balance.posted,
        pending=balance.pending,
        available=balance.available,
    )


def entry_public(entry: Entry) -> EntryPublic:
    return EntryPublic(
        id=entry.id,
        ledger_id=entry.ledger_id,
        phase=entry.phase.name.lower(),
        kind=entry.kind,
        description=entry.description,
        metadata=entry.metadata,
        effective_at=entry.effective_at,
        recorded_at=entry.recorded_at,
        pending_id=entry.pending_id,
        reverses_id=entry.reverses_id,
        postings=[
            PostingPublic(account_id=p.account_id, side=p.side.name.lower(), amount=p.amount)
            for p in entry.postings
        ],
    )


@router.get("/ledgers", response_model=list[LedgerPublic], summary="Every ledger")
def list_ledgers(caller: AuditorDep, services: ServicesDep) -> list[LedgerPublic]:
    """Every ledger (one per point type, a unit of value that entries never cross)."""
    ledgers = services.ledger.read(lambda tx: tx.list_ledgers())
    return [LedgerPublic(id=item.id, code=item.code, name=item.name) for item in ledgers]


@router.get(
    "/ledgers/{ledger_id}/accounts",
    response_model=Page[AccountPublic],
    summary="The accounts of a ledger, with their balances",
)
def list_accounts(
    ledger_id: LedgerId,
    caller: AuditorDep,
    services: ServicesDep,
    cursor: NumericCursor = None,
    limit: Limit = 50,
) -> Page[AccountPublic]:
    """The accounts of a ledger with their posted and pending totals and available balance, paged by
    id."""
    after = int(cursor) if cursor else None
    accounts = services.ledger.read(
        lambda tx: tx.list_accounts(ledger_id, after=after, limit=limit)
    )
    return Page(
        items=[account_public(account) for account in accounts],
        next_cursor=str(accounts[-1].id) if len(accounts) == limit else None,
    )


@router.get(
    "/accounts/{account_id}", response_model=AccountPublic, summary="One account and its balance"
)
def get_account(account_id: AccountId, caller: AuditorDep, services: ServicesDep) -> AccountPublic:
    """One account: its code, owner, flags and totals (debits and credits, posted and pending) and
    available balance."""
    return account_public(services.ledger.get_account(account_id))


@router.get(
    "/accounts/{account_id}/history",
    response_model=Page[HistoryLinePublic],
    summary="An account's postings, newest first",
)
def account_history(
    account_id: AccountId,
    caller: AuditorDep,
    services: ServicesDep,
    cursor: NumericCursor = None,
    limit: Annotated[int, Query(ge=1, le=PAGE_LIMIT_MAX)] = 50,
) -> Page[HistoryLinePublic]:
    """An account's postings, newest first, paged: entry, phase, kind, side and amount."""
    page = services.ledger.history(account_id, limit=limit, cursor=cursor)
    return Page(
        items=[
            HistoryLinePublic(
                posting_id=line.posting_id,
                entry_id=line.entry_id,
                phase=line.phase.name.lower(),
                kind=line.kind,
                description=line.description,
                side=line.side.name.lower(),
                amount=line.amount,
                effective_at=line.effective_at,
            )
            for line in page.items
        ],
        next_cursor=page.next_cursor,
    )


@router.get("/entries/{entry_id}", response_model=EntryPublic, summary="One entry")
def get_entry(entry_id: EntryId, caller: AuditorDep, services: ServicesDep) -> EntryPublic:
    """One ledger entry with its postings, phase (posted, pending, voided), kind, metadata and the
    entries it resolves or reverses."""

    def work(tx: LedgerTx) -> Entry:
        return tx.get_entry(entry_id)

    return entry_public(services.ledger.read(work))


@router.get(
    "/verify/last",
    response_model=VerifyResultPublic,
    summary="The last recorded verification of the ledger",
)
def last_verify(caller: AuditorDep, services: ServicesDep) -> VerifyResultPublic:
    """The last recorded run of the ledger verification (totals recomputed, balance of every entry,
    the seal chain, the schema's guards) and every problem it found; 404 when none ran yet."""

    def work(session: Session) -> VerifyResultPublic:
        run = last_run(session)
        if run is None:
            raise NotFound("the ledger has not been verified yet; run `points verify`")
        return verify_result(run)

    return services.read(work)


@router.get(
    "/residents",
    response_model=Page[ResidentPseudonymous],
    summary="Residents by pseudonymous id (no personal data)",
)
def list_residents(
    caller: AuditorDep,
    services: ServicesDep,
    cursor: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    limit: Limit = 50,
) -> Page[ResidentPseudonymous]:
    """Residents by pseudonymous id with their verification and status, paged; finance never sees
    personal data."""

    def work(session: Session) -> Page[ResidentPseudonymous]:
        rows = people.page(session, Resident, after=cursor, limit=limit)
        return Page(
            items=[ResidentPseudonymous.model_validate(row) for row in rows],
            next_cursor=rows[-1].id if len(rows) == limit else None,
        )

    return services.read(work)


@router.get(
    "/audit",
    response_model=Page[AuditEventPublic],
    summary="The audit trail of administrative acts, oldest first",
)
def audit_trail(
    caller: AuditorDep, services: ServicesDep, cursor: NumericCursor = None, limit: Limit = 50
) -> Page[AuditEventPublic]:
    """The audit trail of administrative acts (who did what to which object, and why), oldest first,
    paged by sequence; each event carries its hash in the chain."""
    after = int(cursor) if cursor else 0

    def work(session: Session) -> Page[AuditEventPublic]:
        rows = list(
            session.exec(
                select(AuditEvent)
                .where(col(AuditEvent.sequence) > after)
                .order_by(col(AuditEvent.sequence))
                .limit(limit)
            )
        )
        return Page(
            items=[
                AuditEventPublic(
                    sequence=row.sequence,
                    at=row.at,
                    actor_role=row.actor_role,
                    actor_id=row.actor_id,
                    action=row.action,
                    object_type=row.object_type,
                    object_id=row.object_id,
                    reason=row.reason,
                    details=json.loads(row.details),
                    hash=row.hash.hex(),
                )
                for row in rows
            ],
            next_cursor=str(rows[-1].sequence) if len(rows) == limit else None,
        )

    return services.read(work)


@router.get(
    "/job-runs",
    response_model=Page[JobRunPublic],
    summary="Runs of the scheduled jobs (expiry, hold timeouts, sealing, purge, verify, ...), "
    "newest first",
)
def list_job_runs(
    caller: AuditorDep,
    services: ServicesDep,
    job: Annotated[str | None, Query(pattern=r"^[a-z_]{1,64}$")] = None,
    cursor: NumericCursor = None,
    limit: Limit = 50,
) -> Page[JobRunPublic]:
    """The runs of the scheduled jobs (expiry, hold timeouts, sealing, purge), newest first, paged,
    optionally of one job: period, state, trigger, start, end, counts and outcome."""

    def work(session: Session) -> Page[JobRunPublic]:
        runs = list_runs(
            session, job=job, before=int(cursor) if cursor is not None else None, limit=limit
        )
        return Page(
            items=[JobRunPublic.model_validate(run) for run in runs],
            next_cursor=str(runs[-1].id) if len(runs) == limit else None,
        )

    return services.read(work)


@router.get("/job-runs/{run_id}", response_model=JobRunPublic, summary="One run of a job")
def get_job_run(run_id: RunId, caller: AuditorDep, services: ServicesDep) -> JobRunPublic:
    """One job run by id (the `run_id` a queued verification answered): its state (`running`,
    `done`, `failed`), counts and outcome; to follow a run without paging through the list."""

    def work(session: Session) -> JobRunPublic:
        run = session.get(JobRun, run_id)
        if run is None:
            raise NotFound(f"no job run {run_id}")
        return JobRunPublic.model_validate(run)

    return services.read(work)


def _carry_out_verify(
    engine: Engine,
    claim: Claim,
    as_of: datetime,
    clock: Callable[[], datetime],
    options: dict[str, int],
) -> None:
    """A queued verify run, after the answer: its outcome is recorded in its job run (and a
    failure logged) by ``carry_out``; nothing is left to raise to."""
    try:
        carry_out(engine, claim, as_of=as_of, clock=clock, options=options)
    except Exception:  # recorded as a failed run and logged already
        log.debug("queued verify run %s failed", claim.run_id)


@router.post(
    "/verify-runs",
    response_model=JobRunQueued,
    status_code=202,
    summary="Queue a verification of the whole ledger (the verify job), answered at once",
)
def queue_verify_run(
    caller: AuditorDep, services: ServicesDep, background: BackgroundTasks
) -> JobRunQueued:
    """Runs the `verify` job now, in the background (what `points verify` and the nightly run
    at 02:30 Tokyo do: totals recomputed, every entry balanced, the seal chain, the schema's
    guards), and answers 202 at once with the run's id. Takes no body (or `{}`).

    The run is for the current Tokyo minute (`2026-06-01T14:03`; the nightly run's period is
    the day, so the two never meet): a second request within the same minute answers the same
    run (its id and state) and starts nothing, unless that run failed, when it runs again.
    Follow it in `GET /api/v1/finance/job-runs?job=verify`: `done` with its counts (`entries`,
    `accounts`, `sealed`, `unsealed`, `problems` 0, `verify_run`), or `failed` when problems
    were found (the outcome names the first; `GET /api/v1/finance/verify/last` lists them all).
    """
    now = services.clock()
    period = tokyo_minute(now)
    claimed = claim_run(
        services.engine, "verify", as_of=now, clock=services.clock, trigger="api", period=period
    )
    if isinstance(claimed, RunResult):

        def existing(session: Session) -> JobRunQueued:
            run = run_of(session, "verify", period)
            if run is None or run.id is None:  # pragma: no cover - the claim saw it just now
                raise NotFound(f"no verify run for {period}")
            return JobRunQueued(run_id=run.id, job="verify", period=period, state=run.state)

        return services.read(existing)
    options = {"unsealed_grace_seconds": services.settings.unsealed_grace_seconds}
    background.add_task(_carry_out_verify, services.engine, claimed, now, services.clock, options)
    return JobRunQueued(run_id=claimed.run_id, job="verify", period=period, state="running")
