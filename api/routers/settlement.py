"""Monthly settlement through the API (``redemption.settlement``): finance runs a month, reads
its runs and statements (and a dry run), downloads them as CSV and as a page to print, and
records how a closed merchant's negative balance was recovered; a shop reads, downloads and
prints its own statements.

Finance's reads are open to admins too (as every read of ``/api/v1/finance``); the two writes
(a run, a recovery) are finance's, need an ``Idempotency-Key`` and are audited by the domain.
A shop asking for another shop's statement gets the 404 of a statement that does not exist.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from fastapi.responses import HTMLResponse, JSONResponse, Response
from sqlmodel import Session, col, select

from api import statement_documents as documents
from api.bodies import StrictRoute
from api.deps import AuditorDep, FinanceDep, MerchantDep, ServicesDep
from api.safety import VALUE_MOVING, IdempotencyDep
from api.schemas import HTML_PAGE, PROTECTED_ERRORS, Page
from api.schemas_settlement import (
    STATEMENT_CURSOR_PATTERN,
    PeriodQuery,
    PlannedStatementPublic,
    RecoveryCreate,
    RecoveryPublic,
    SettlementPlanPublic,
    SettlementRunCreate,
    SettlementRunDetail,
    SettlementRunPublic,
    StatementDetail,
    StatementSummary,
)
from api.schemas_spending import Limit
from points.calendar import tokyo_date
from redemption import settlement
from redemption.settlement_models import PERIOD_PATTERN, RunTrigger, SettlementRun, Statement

finance_router = APIRouter(
    prefix="/api/v1/finance", tags=["finance"], responses=PROTECTED_ERRORS, route_class=StrictRoute
)
merchant_router = APIRouter(
    prefix="/api/v1/merchant",
    tags=["merchant"],
    responses=PROTECTED_ERRORS,
    route_class=StrictRoute,
)

RunId = Annotated[str, Path(pattern=r"^stl_[A-Za-z0-9_-]{1,28}$")]
StatementId = Annotated[str, Path(pattern=r"^stm_[A-Za-z0-9_-]{1,28}$")]
PeriodCursor = Annotated[
    str | None, Query(pattern=PERIOD_PATTERN, description="the period of the last run listed")
]
StatementCursor = Annotated[
    str | None,
    Query(pattern=STATEMENT_CURSOR_PATTERN, description="the `next_cursor` of the last page"),
]
Encoding = Annotated[
    Literal["utf-8", "cp932"],
    Query(description="`utf-8` (with a BOM, the default) or `cp932` (Shift_JIS, older Excel)"),
]
CSV_FILE: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "A CSV file (UTF-8 with BOM, or CP932), its header row in Japanese",
        "content": {"text/csv": {"schema": {"type": "string"}}},
    }
}


def run_detail(
    session: Session, run: SettlementRun, statements: list[Statement], *, replay: bool = False
) -> SettlementRunDetail:
    names = documents.Names.of(session, statements)
    return SettlementRunDetail(
        **SettlementRunPublic.model_validate(run).model_dump(),
        totals=documents.totals(statements),
        statements=[documents.summary(s, names) for s in statements],
        replay=replay,
    )


def statements_page(
    session: Session,
    *,
    merchant_id: str | None,
    period: str | None,
    cursor: str | None,
    limit: int,
) -> Page[StatementSummary]:
    """Statements, latest period first, then by merchant and point type; the cursor is the
    last one's (period, merchant, point type), so a page never skips the rest of a month."""
    query = select(Statement).order_by(
        col(Statement.period).desc(), col(Statement.merchant_id), col(Statement.point_type_id)
    )
    if merchant_id is not None:
        query = query.where(Statement.merchant_id == merchant_id)
    if period is not None:
        query = query.where(Statement.period == period)
    if cursor is not None:
        last_period, last_merchant, last_type = cursor.split("~")
        query = query.where(
            (col(Statement.period) < last_period)
            | (
                (col(Statement.period) == last_period)
                & (
                    (col(Statement.merchant_id) > last_merchant)
                    | (
                        (col(Statement.merchant_id) == last_merchant)
                        & (col(Statement.point_type_id) > last_type)
                    )
                )
            )
        )
    rows = list(session.exec(query.limit(limit)).all())
    names = documents.Names.of(session, rows)
    last = rows[-1] if rows else None
    return Page(
        items=[documents.summary(s, names) for s in rows],
        next_cursor=f"{last.period}~{last.merchant_id}~{last.point_type_id}"
        if last is not None and len(rows) == limit
        else None,
    )


def csv_response(content: bytes, encoding: str, ascii_name: str, name: str) -> Response:
    return Response(
        content,
        media_type=documents.media_type(encoding),
        headers={
            "Content-Disposition": documents.attachment(ascii_name, name),
            "Cache-Control": "no-store",
        },
    )


def statement_csv(view: documents.StatementView, encoding: str) -> Response:
    ascii_name, name = documents.statement_file_names(view)
    return csv_response(documents.statement_csv(view, encoding), encoding, ascii_name, name)


# Finance: runs ------------------------------------------------------------------------------


@finance_router.post(
    "/settlement-runs",
    status_code=201,
    response_model=SettlementRunDetail,
    responses={200: {"model": SettlementRunDetail, "description": "The run existed: a replay"}},
    openapi_extra=VALUE_MOVING,
    summary="Settle a month with the merchants",
)
def create_run(
    body: SettlementRunCreate,
    caller: FinanceDep,
    services: ServicesDep,
    idempotency: IdempotencyDep,
) -> JSONResponse:
    """Makes the settlement run of a month that has ended (Asia/Tokyo): a statement per
    merchant and point type with the payments and refunds recorded before the cut and in no
    earlier statement, their budget lines, and the postings that move each merchant's payable
    to settled (audited). 201 the first time; asking again answers 200 with the same run and
    `replay: true`, and writes nothing. Requires an `Idempotency-Key`. Refusals:
    `period_not_ended` (409, with `cut_at`), `period_superseded` (409: a later month was
    settled already, which covers this one's entries), `validation_error` (not `YYYY-MM`)."""
    now = services.clock()

    def work(session: Session) -> tuple[int, Any]:
        done = settlement.settle(session, caller, now, body.period, trigger=RunTrigger.API)
        answer = run_detail(session, done.run, done.statements, replay=done.replay)
        return (200 if done.replay else 201), answer.model_dump(mode="json")

    return idempotency.run(caller, body, work)


@finance_router.get(
    "/settlement-runs",
    response_model=Page[SettlementRunPublic],
    summary="Settlement runs, latest month first",
)
def list_runs(
    caller: AuditorDep, services: ServicesDep, cursor: PeriodCursor = None, limit: Limit = 50
) -> Page[SettlementRunPublic]:
    """The settlement runs, latest period first, paged (the cursor is the last run's period):
    the cut, who or what made it (`scheduler`, `cli`, `api`), and the payout date once
    reported."""

    def work(session: Session) -> Page[SettlementRunPublic]:
        runs = settlement.list_runs(session, before=cursor, limit=limit)
        return Page(
            items=[SettlementRunPublic.model_validate(run) for run in runs],
            next_cursor=runs[-1].period if len(runs) == limit else None,
        )

    return services.read(work)


@finance_router.get(
    "/settlement-runs/{run_id}",
    response_model=SettlementRunDetail,
    summary="A settlement run, its statements and totals",
)
def get_run(run_id: RunId, caller: AuditorDep, services: ServicesDep) -> SettlementRunDetail:
    """A run with each statement's figures and the totals: statements, points settled, yen,
    fees and yen to pay, overall and per transfer kind (`bank`, or `none` for the city's
    counter)."""

    def work(session: Session) -> SettlementRunDetail:
        run = settlement.get_run(session, run_id)
        return run_detail(session, run, settlement.statements_of_run(session, run.id))

    return services.read(work)


@finance_router.get(
    "/settlement-runs/{run_id}/statements.csv",
    response_class=Response,
    responses=CSV_FILE,
    summary="A run's statements as CSV, one row each",
)
def run_statements_csv(
    run_id: RunId, caller: AuditorDep, services: ServicesDep, encoding: Encoding = "utf-8"
) -> Response:
    """One row per statement of the run with all its figures (counts, points, carries, rate,
    yen, fee, yen to pay, transfer, final). UTF-8 with BOM by default, or CP932
    (`encoding=cp932`); the header row in Japanese."""

    def work(session: Session) -> tuple[str, bytes]:
        run = settlement.get_run(session, run_id)
        statements = settlement.statements_of_run(session, run.id)
        names = documents.Names.of(session, statements)
        return run.period, documents.run_csv(statements, names, encoding)

    period, content = services.read(work)
    return csv_response(content, encoding, f"statements-{period}.csv", f"精算明細一覧-{period}.csv")


@finance_router.get(
    "/settlement-runs/{run_id}/budget-lines.csv",
    response_class=Response,
    responses=CSV_FILE,
    summary="A run's budget lines as CSV, summed per budget code",
)
def run_budget_lines_csv(
    run_id: RunId, caller: AuditorDep, services: ServicesDep, encoding: Encoding = "utf-8"
) -> Response:
    """What the run pays out of each budget line: the points and yen summed per budget code
    (款項目節) and program across the run's statements, the carries and any unattributed points
    as lines of their own, a total per budget code and the run's total. UTF-8 with BOM by
    default, or CP932 (`encoding=cp932`); the header row in Japanese."""

    def work(session: Session) -> tuple[str, bytes]:
        run = settlement.get_run(session, run_id)
        statements = settlement.statements_of_run(session, run.id)
        return run.period, documents.budget_lines_csv(session, run, statements, encoding)

    period, content = services.read(work)
    return csv_response(content, encoding, f"budget-lines-{period}.csv", f"予算科目別-{period}.csv")


@finance_router.get(
    "/settlement-plan",
    response_model=SettlementPlanPublic,
    summary="A dry run: the statements a run of the month would make now",
)
def settlement_plan(
    period: PeriodQuery, caller: AuditorDep, services: ServicesDep
) -> SettlementPlanPublic:
    """The statements (figures and budget lines, without ids) and totals a run of `period`
    would make now; nothing is written. Refusals as a run's: `period_not_ended`,
    `period_superseded`, `validation_error`."""
    now = services.clock()

    def work(session: Session) -> SettlementPlanPublic:
        planned = settlement.plan(session, period, now)
        names = documents.Names.of(session, planned.statements)
        return SettlementPlanPublic(
            period=planned.period,
            cut_at=planned.cut_at,
            totals=documents.totals(planned.statements),
            statements=[
                PlannedStatementPublic.model_validate(
                    {
                        **documents.figures(item, names, planned.period),
                        "lines": [
                            documents.line_public(
                                line.kind,
                                line.program_id,
                                line.budget_code,
                                line.points,
                                line.yen,
                                {
                                    line.program_id: settlement.ProgramInfo(
                                        line.name_ja, line.name_en, line.budget_code
                                    )
                                }
                                if line.program_id is not None
                                else {},
                            )
                            for line in item.lines
                        ],
                    }
                )
                for item in planned.statements
            ],
        )

    return services.read(work)


# Finance: statements ------------------------------------------------------------------------


@finance_router.get(
    "/statements", response_model=Page[StatementSummary], summary="Statements, latest month first"
)
def list_statements(
    caller: AuditorDep,
    services: ServicesDep,
    period: Annotated[str | None, Query(pattern=PERIOD_PATTERN)] = None,
    merchant_id: Annotated[str | None, Query(pattern=r"^[a-z]{3}_[A-Za-z0-9_-]{1,28}$")] = None,
    cursor: StatementCursor = None,
    limit: Limit = 50,
) -> Page[StatementSummary]:
    """Every statement, latest period first, then by merchant and point type, paged; filtered by
    period and merchant."""
    return services.read(
        lambda session: statements_page(
            session, merchant_id=merchant_id, period=period, cursor=cursor, limit=limit
        )
    )


@finance_router.get(
    "/statements/{statement_id}.csv",
    response_class=Response,
    responses=CSV_FILE,
    summary="A statement as CSV",
)
def statement_csv_for_finance(
    statement_id: StatementId,
    caller: AuditorDep,
    services: ServicesDep,
    encoding: Encoding = "utf-8",
) -> Response:
    """The statement's figures, its budget lines (事業, 予算科目) and the entries it covers
    (payment and ledger entry), a row each. UTF-8 with BOM by default, or CP932
    (`encoding=cp932`); the header row in Japanese."""
    view = services.read(lambda session: documents.load(session, statement_id, for_finance=True))
    return statement_csv(view, encoding)


@finance_router.get(
    "/statements/{statement_id}", response_model=StatementDetail, summary="One statement"
)
def get_statement(
    statement_id: StatementId, caller: AuditorDep, services: ServicesDep
) -> StatementDetail:
    """A statement with its figures, its budget lines (program names and budget codes), the
    payments and refunds it covers (ledger entry and payment), the merchant, the point type,
    the cut, the payout date (null while unpaid), and the recovery of a final statement's
    negative balance if recorded."""
    return documents.detail(
        services.read(lambda session: documents.load(session, statement_id, for_finance=True))
    )


@finance_router.get(
    "/statements/{statement_id}/print",
    response_class=Response,
    responses=HTML_PAGE,
    summary="A statement as a page to print (A4)",
)
def print_statement_for_finance(
    statement_id: StatementId, caller: AuditorDep, services: ServicesDep
) -> HTMLResponse:
    """The statement (精算書) as the merchant receives it, in Japanese, laid out for A4: the
    period, the payout date (or 未払い), the figures, the budget lines; not cached."""
    return _page(services, statement_id, merchant_id=None)


@finance_router.post(
    "/statements/{statement_id}/recovery",
    status_code=201,
    response_model=RecoveryPublic,
    openapi_extra=VALUE_MOVING,
    summary="Record how a closed merchant's negative balance was recovered",
)
def record_recovery(
    statement_id: StatementId,
    body: RecoveryCreate,
    caller: FinanceDep,
    services: ServicesDep,
    idempotency: IdempotencyDep,
) -> JSONResponse:
    """Finance records how the negative balance on a closed merchant's final statement was
    recovered (`repaid`, `offset` or `written_off`, with a note); the points go back from
    settled to the merchant's payable (audited). Requires an `Idempotency-Key`. Refusals:
    `conflict` (not a closed merchant's latest statement with a negative balance, or
    recorded already), `not_found`, `validation_error`."""
    now = services.clock()

    def work(session: Session) -> tuple[int, Any]:
        done = settlement.record_recovery(
            session, caller, now, statement_id, method=body.method, note=body.note
        )
        return 201, documents.recovery_public(done, for_finance=True).model_dump(mode="json")

    return idempotency.run(caller, body, work)


# The shop's own statements ------------------------------------------------------------------


@merchant_router.get(
    "/statements", response_model=Page[StatementSummary], summary="My shop's statements"
)
def my_statements(
    caller: MerchantDep,
    services: ServicesDep,
    period: Annotated[str | None, Query(pattern=PERIOD_PATTERN)] = None,
    cursor: StatementCursor = None,
    limit: Limit = 50,
) -> Page[StatementSummary]:
    """The shop's monthly statements, latest period first, paged: what the city pays for the
    points taken, per point type."""
    assert caller.merchant_id is not None
    merchant_id = caller.merchant_id
    return services.read(
        lambda session: statements_page(
            session, merchant_id=merchant_id, period=period, cursor=cursor, limit=limit
        )
    )


@merchant_router.get(
    "/statements/{statement_id}.csv",
    response_class=Response,
    responses=CSV_FILE,
    summary="One of my shop's statements as CSV",
)
def my_statement_csv(
    statement_id: StatementId,
    caller: MerchantDep,
    services: ServicesDep,
    encoding: Encoding = "utf-8",
) -> Response:
    """The statement's figures, its budget lines and the payments and refunds it covers (by
    payment), a row each. UTF-8 with BOM by default, or CP932 (`encoding=cp932`); the header
    row in Japanese."""
    assert caller.merchant_id is not None
    merchant_id = caller.merchant_id
    view = services.read(
        lambda session: documents.load(
            session, statement_id, merchant_id=merchant_id, for_finance=False
        )
    )
    return statement_csv(view, encoding)


@merchant_router.get(
    "/statements/{statement_id}", response_model=StatementDetail, summary="One of my statements"
)
def my_statement(
    statement_id: StatementId, caller: MerchantDep, services: ServicesDep
) -> StatementDetail:
    """The statement's figures, budget lines, the payments and refunds it covers (by payment
    id), the payout date (null while unpaid); another shop's is not found."""
    assert caller.merchant_id is not None
    merchant_id = caller.merchant_id
    return documents.detail(
        services.read(
            lambda session: documents.load(
                session, statement_id, merchant_id=merchant_id, for_finance=False
            )
        )
    )


@merchant_router.get(
    "/statements/{statement_id}/print",
    response_class=Response,
    responses=HTML_PAGE,
    summary="One of my statements as a page to print (A4)",
)
def print_my_statement(
    statement_id: StatementId, caller: MerchantDep, services: ServicesDep
) -> HTMLResponse:
    """The statement (精算書) in Japanese, laid out for A4: the period, the payout date (or
    未払い), the figures and the budget lines; not cached."""
    assert caller.merchant_id is not None
    return _page(services, statement_id, merchant_id=caller.merchant_id)


def _page(services: Any, statement_id: str, *, merchant_id: str | None) -> HTMLResponse:
    today = tokyo_date(services.clock())
    view = services.read(
        lambda session: documents.load(
            session, statement_id, merchant_id=merchant_id, for_finance=merchant_id is None
        )
    )
    page = documents.render(view, services.settings.city_name, today)
    return HTMLResponse(page, headers=documents.HEADERS)
