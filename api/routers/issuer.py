"""Department (issuer) endpoints: only their own department and its programs.

A program of another department is "not found" here, never "forbidden": a department does not
learn what another runs. Awards are value-moving: the ``Idempotency-Key`` is namespaced by the
department (two officers of one department retrying the same call share it), and the award's
``record_id`` — the department's own id of the event — makes a record award at most once even
across keys. A CSV file of awards is checked (``.../award-uploads/check``, nothing written) or
uploaded (``.../award-uploads``): validated whole, then awarded in batches (``issuers.bulk``).
An upload that stopped before it finished may be cancelled (``.../award-uploads/{id}/cancel``):
what it had not awarded goes back to the budget. A volunteering program's events
(``issuers.events``) are created, listed, read for attendance and closed early here, and
``.../events/{id}/check-in`` gives the check-in screen its rotating event token; a resident
without a phone is checked in by their card (``.../events/{id}/card-check-ins``, no PIN: a
check-in only earns).

Departments know residents by their address number (宛名番号): an award, a CSV row and the
lookup ``/residents?address_number=...`` take it instead of the pseudonymous resident id, which
is all they are answered and all that is stored. The lookup is a read and, like the counter's
lookup by number, not written to the audit trail.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlmodel import Session

from api.bodies import StrictRoute
from api.deps import IssuerDep, ServicesDep
from api.routers.budgets import budget_public
from api.safety import VALUE_MOVING, IdempotencyDep
from api.schemas import PROTECTED_ERRORS, AddressNumber, DepartmentPublic, Page, PathId
from api.schemas_cards import CardLookup
from api.schemas_earning import (
    AwardCreate,
    AwardPublic,
    BudgetPublic,
    CheckInPublic,
    CheckInScreen,
    EventAttendancePublic,
    EventClose,
    EventCreate,
    EventPublic,
    FiscalYear,
    FiscalYearQuery,
    IdCursor,
    NumericCursor,
    ProgramPublic,
    ResidentLookupPublic,
    RowProblem,
    UploadCancel,
    UploadCheck,
    UploadPublic,
)
from issuers import awards, bulk, events, programs
from points import people, qrrender, wallets
from points.auth import Principal
from points.people import get
from points.registry import Department
from redemption import cards

router = APIRouter(
    prefix="/api/v1/issuer", tags=["issuer"], responses=PROTECTED_ERRORS, route_class=StrictRoute
)

Limit = Annotated[int, Query(ge=1, le=people.PAGE_LIMIT_MAX)]


def _department_of(caller: Principal) -> str:
    assert caller.department_id is not None
    return caller.department_id


@router.get("/department", response_model=DepartmentPublic, summary="The department I work for")
def my_department(caller: IssuerDep, services: ServicesDep) -> DepartmentPublic:
    """The department the calling issuer works for."""
    department_id = _department_of(caller)

    def work(session: Session) -> DepartmentPublic:
        return DepartmentPublic.model_validate(get(session, Department, department_id))

    return services.read(work)


@router.get("/programs", response_model=Page[ProgramPublic], summary="My department's programs")
def my_programs(
    caller: IssuerDep, services: ServicesDep, cursor: IdCursor = None, limit: Limit = 50
) -> Page[ProgramPublic]:
    """The programs of the caller's department, by id, paged; other departments' programs are never
    listed."""
    department_id = _department_of(caller)

    def work(session: Session) -> Page[ProgramPublic]:
        rows = programs.list_programs(
            session, department_id=department_id, after=cursor, limit=limit
        )
        return Page(
            items=[ProgramPublic.model_validate(row) for row in rows],
            next_cursor=rows[-1].id if len(rows) == limit else None,
        )

    return services.read(work)


@router.get("/programs/{program_id}", response_model=ProgramPublic, summary="One of my programs")
def my_program(program_id: PathId, caller: IssuerDep, services: ServicesDep) -> ProgramPublic:
    """One program of the caller's department; another department's program is 404 `not_found`."""
    department_id = _department_of(caller)
    return services.read(
        lambda session: ProgramPublic.model_validate(
            programs.get_program(session, program_id, department_id=department_id)
        )
    )


@router.get(
    "/programs/{program_id}/budgets/{fiscal_year}",
    response_model=BudgetPublic,
    summary="Program status for a fiscal year: allocated, awarded, remaining, residents awarded",
)
def my_program_budget(
    program_id: PathId, fiscal_year: FiscalYear, caller: IssuerDep, services: ServicesDep
) -> BudgetPublic:
    """What a program of the caller's department did in a fiscal year (April to March): allocated,
    awarded, number of awards and of residents awarded, and what remains."""
    department_id = _department_of(caller)
    now = services.clock()

    def work(session: Session) -> BudgetPublic:
        programs.get_program(session, program_id, department_id=department_id)
        return budget_public(session, program_id, fiscal_year, now)

    return services.read(work)


@router.get(
    "/residents",
    response_model=ResidentLookupPublic,
    summary="The resident with this exact address number: their id and whether a wallet is open",
    description="A department knows residents by their address number (宛名番号); this "
    "answers only the resident's pseudonymous id and `wallet_open`: whether the resident has "
    "any open wallet, of any point type (one flag, not a list per point type, so that a "
    "department learns no more than it needs to award). Never a name, a birth year or "
    "anything else. An unknown number is `not_found`, a number two residents share "
    "`conflict`. Awards and uploads take the address number directly too.",
)
def find_resident(
    caller: IssuerDep,
    services: ServicesDep,
    address_number: Annotated[
        AddressNumber,
        Query(description="The resident's address number (宛名番号), 1 to 20 digits"),
    ],
) -> ResidentLookupPublic:
    return services.read(
        lambda session: ResidentLookupPublic.model_validate(
            wallets.look_up_resident(session, address_number)
        )
    )


@router.post(
    "/programs/{program_id}/awards",
    status_code=201,
    response_model=AwardPublic,
    openapi_extra=VALUE_MOVING,
    responses={200: {"model": AwardPublic, "description": "The record was awarded before"}},
    summary="Award a resident for one qualifying event",
)
def award(
    program_id: PathId,
    body: AwardCreate,
    caller: IssuerDep,
    services: ServicesDep,
    idempotency: IdempotencyDep,
) -> JSONResponse:
    """Awards the program's amount to a resident for one qualifying event: `record_id` is the
    department's own id of the event, and `details` what the module needs (`checkup_type` for
    health checkups, `event_id` for volunteering). Requires an `Idempotency-Key`; a record
    awarded before is answered 200 with `replayed: true` and awards nothing twice. Refusals:
    `program_not_active`, `outside_program_window`, `budget_exhausted`, `cap_exceeded`,
    `already_awarded`, `record_id_reused`, `resident_not_active`, `wallet_closed`."""
    department_id = _department_of(caller)
    now = services.clock()
    request = awards.AwardRequest(
        program_id=program_id,
        resident_id=body.resident_id,
        record_id=body.record_id,
        details=dict(body.details),
        occurred_on=body.occurred_on,
        address_number=body.address_number,
    )

    def work(session: Session) -> tuple[int, Any]:
        result = awards.award(session, caller, now, request, department_id=department_id)
        public = AwardPublic.model_validate(result.award).model_copy(
            update={"replayed": result.replayed}
        )
        return (200 if result.replayed else 201), public.model_dump(mode="json")

    return idempotency.run(caller, body, work, namespace=f"department:{department_id}")


@router.get(
    "/programs/{program_id}/awards",
    response_model=Page[AwardPublic],
    summary="My program's awards, newest first",
)
def my_program_awards(
    program_id: PathId,
    caller: IssuerDep,
    services: ServicesDep,
    fiscal_year: FiscalYearQuery = None,
    cursor: NumericCursor = None,
    limit: Limit = 50,
) -> Page[AwardPublic]:
    """The awards of a program of the caller's department, newest first, paged; optionally of one
    fiscal year."""
    department_id = _department_of(caller)

    def work(session: Session) -> Page[AwardPublic]:
        programs.get_program(session, program_id, department_id=department_id)
        rows = awards.list_awards(
            session,
            program_id,
            fiscal_year=fiscal_year,
            before=int(cursor) if cursor is not None else None,
            limit=limit,
        )
        return Page(
            items=[AwardPublic.model_validate(row) for row in rows],
            next_cursor=str(rows[-1].id) if len(rows) == limit else None,
        )

    return services.read(work)


# Bulk uploads -----------------------------------------------------------------------------

CSV_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "The CSV file, sent as `text/csv`: UTF-8 (with or without BOM) or "
        "Shift_JIS (CP932); a header row naming the columns in any order: `resident_id` or "
        "`address_number` (or both: each row then fills exactly one), `record_id`, and "
        "optionally `occurred_on`, `amount` and the module's detail column "
        "(`checkup_type` | `event_id`); at most 200,000 rows.",
        "content": {"text/csv": {"schema": {"type": "string"}}},
    }
}


class UploadFingerprint(BaseModel):
    """What makes two uploads the same request: the file's digest and name."""

    sha256: str
    filename: str


FileName = Annotated[str, Query(max_length=200, pattern=r"^[^\x00-\x1f\x7f]*$")]


@router.post(
    "/programs/{program_id}/award-uploads",
    status_code=201,
    response_model=UploadPublic,
    responses={200: {"model": UploadPublic, "description": "The same file was uploaded before"}},
    openapi_extra={**VALUE_MOVING, **CSV_BODY},
    summary="Award every row of a CSV file (validated first; all or nothing at validation)",
)
async def upload_awards(
    program_id: PathId,
    request: Request,
    caller: IssuerDep,
    services: ServicesDep,
    idempotency: IdempotencyDep,
    filename: FileName = "",
) -> JSONResponse:
    """Awards every row of a CSV file in the body (`Content-Type: text/csv`; `application/csv`,
    `text/x-csv`, `text/comma-separated-values` and `application/vnd.ms-excel`, as browsers label
    a `.csv` file, are taken too; anything else is 415 `unsupported_media_type`). The file is
    UTF-8 with or without a byte order mark, or Shift_JIS (CP932) as Excel saves it, with a
    header row naming the columns in any order: `resident_id` or `address_number` (宛名番号; or
    both columns, each row then filling exactly one) and `record_id` (required),
    `occurred_on` (`2026-05-12` or `2026/5/12`; today when blank), `amount` (when given, the
    program's amount per event), and the module's detail column, `checkup_type` (health checkups,
    by code or Japanese name) or `event_id` (volunteering). At most 200,000 rows; blank lines are
    skipped. The whole file is checked first: one bad row refuses it (`csv_invalid`, every bad
    row's line, column and reason) and nothing is awarded; then its total is set aside from the
    budget and the rows are awarded in batches. Requires an `Idempotency-Key`; the same file
    again (by its digest) awards nothing twice, and while another request is awarding it the
    answer is 409 `upload_in_progress`."""
    department_id = _department_of(caller)
    data = await request.body()
    fingerprint = UploadFingerprint(sha256=hashlib.sha256(data).hexdigest(), filename=filename)

    def work(renew_claim: Callable[[], None]) -> tuple[int, Any]:
        # The upload commits batch by batch in transactions of its own, and is idempotent by
        # the file's digest (a retry resumes or replays it). It renews the key's short claim
        # between batches, as it renews its own lease: a dead process holds neither for long.
        result = bulk.upload(
            services.engine,
            caller,
            services.clock,
            program_id,
            data,
            department_id=department_id,
            filename=filename,
            progress=lambda _done, _total: renew_claim(),
        )
        public = UploadPublic.model_validate(result.upload)
        return (200 if result.replayed else 201), public.model_dump(mode="json")

    return await run_in_threadpool(
        idempotency.run,
        caller,
        fingerprint,
        work,  # type: ignore[arg-type]
        namespace=f"department:{department_id}",
        own_transactions=True,
    )


@router.post(
    "/programs/{program_id}/award-uploads/check",
    response_model=UploadCheck,
    responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}}}},
    openapi_extra=CSV_BODY,
    summary="Check a CSV file without awarding: every bad row (line, column, reason)",
)
async def check_awards_file(
    program_id: PathId,
    request: Request,
    caller: IssuerDep,
    services: ServicesDep,
    format: Annotated[Literal["json", "csv"], Query()] = "json",
) -> Response:
    """Checks a CSV file of awards as `.../award-uploads` would, and writes nothing: the rows, those
    to award, those awarded before, the points needed per fiscal year, and every bad row (line,
    column, reason); `?format=csv` gives the bad rows as CSV. The body is the same file, with the
    same media types: `text/csv` (or a browser's name for a `.csv` file); UTF-8 with or without
    BOM or CP932; a header row with `resident_id` or `address_number`, `record_id`, optionally
    `occurred_on`,
    `amount` and `checkup_type` | `event_id`."""
    department_id = _department_of(caller)
    data = await request.body()
    plan, errors = await run_in_threadpool(
        bulk.check_file, services.engine, program_id, department_id, data, services.clock()
    )
    if format == "csv":
        return Response(
            bulk.errors_csv(errors),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="upload-check.csv"'},
        )
    check = UploadCheck(
        ok=not errors,
        rows=plan.rows if plan is not None else 0,
        to_award=len(plan.to_award) if plan is not None else 0,
        replays=plan.replays if plan is not None else 0,
        totals={str(year): total for year, total in (plan.totals if plan else {}).items()},
        errors=[RowProblem(**error.as_dict()) for error in errors],
    )
    return JSONResponse(check.model_dump(mode="json"))


@router.get(
    "/award-uploads/{upload_id}",
    response_model=UploadPublic,
    summary="One upload of my department: its outcome and the rows refused while awarding",
)
def get_upload(upload_id: PathId, caller: IssuerDep, services: ServicesDep) -> UploadPublic:
    """One upload of the caller's department: its status, rows, points awarded and replayed, and the
    rows refused while awarding. Another department's upload is 404 `not_found`, naming only the
    id asked for."""
    department_id = _department_of(caller)
    return services.read(
        lambda session: UploadPublic.model_validate(
            bulk.get_upload(session, upload_id, department_id=department_id)
        )
    )


@router.post(
    "/award-uploads/{upload_id}/cancel",
    response_model=UploadPublic,
    openapi_extra=VALUE_MOVING,
    summary="Cancel an upload that stopped before it finished: the rest returns to the budget",
)
def cancel_upload(
    upload_id: PathId,
    body: UploadCancel,
    caller: IssuerDep,
    services: ServicesDep,
    idempotency: IdempotencyDep,
) -> JSONResponse:
    """The awards made stand; what the upload set aside and did not award goes back to the
    budget. Refused while a request is awarding it (``upload_in_progress``, with Retry-After)
    and once it is finished (``upload_finished``)."""
    department_id = _department_of(caller)
    now = services.clock()

    def work(session: Session) -> tuple[int, Any]:
        upload = bulk.cancel(
            session, caller, now, upload_id, department_id=department_id, reason=body.reason
        )
        return 200, UploadPublic.model_validate(upload).model_dump(mode="json")

    return idempotency.run(caller, body, work, namespace=f"department:{department_id}")


# Volunteering events ----------------------------------------------------------------------


def _event_public(session: Session, event: events.VolunteerEvent) -> EventPublic:
    """The event as its department sees it, with the points each attendance earns (the
    program's amount)."""
    program = programs.get_program(session, event.program_id)
    return EventPublic.model_validate(
        {**event.model_dump(), "points_per_attendance": program.amount}
    )


@router.post(
    "/programs/{program_id}/events",
    status_code=201,
    response_model=EventPublic,
    summary="Create a volunteering event of my volunteering program",
)
def create_event(
    program_id: PathId, body: EventCreate, caller: IssuerDep, services: ServicesDep
) -> EventPublic:
    """A new open event of a `volunteering` program of the caller's department (audited). Each
    attendance earns the program's amount, once per resident: a check-in and a CSV row with the
    event's id as `event_id` award once between them. Another module's program is
    `validation_error`."""
    department_id = _department_of(caller)
    now = services.clock()
    new = events.NewEvent(program_id=program_id, **body.model_dump())
    return services.write(
        lambda session: _event_public(
            session, events.create_event(session, caller, now, new, department_id=department_id)
        )
    )


@router.get(
    "/programs/{program_id}/events",
    response_model=list[EventPublic],
    summary="My program's events, with their attendance",
)
def my_program_events(
    program_id: PathId, caller: IssuerDep, services: ServicesDep
) -> list[EventPublic]:
    """The events of a program of the caller's department, soonest first, each with its
    attendance so far."""
    department_id = _department_of(caller)

    def work(session: Session) -> list[EventPublic]:
        programs.get_program(session, program_id, department_id=department_id)
        return [_event_public(session, row) for row in events.list_events(session, program_id)]

    return services.read(work)


@router.get(
    "/events/{event_id}/attendance",
    response_model=EventAttendancePublic,
    summary="Who checked in at my event (pseudonymous ids)",
)
def event_attendance(
    event_id: PathId, caller: IssuerDep, services: ServicesDep
) -> EventAttendancePublic:
    """How many residents checked in at an event of the caller's department, and their
    pseudonymous ids in order of check-in (never a name or an address number)."""
    department_id = _department_of(caller)

    def work(session: Session) -> EventAttendancePublic:
        event = events.get_event(session, event_id, department_id=department_id)
        return EventAttendancePublic(
            event_id=event.id,
            attendance=event.attendance,
            resident_ids=events.attendees(session, event.id),
        )

    return services.read(work)


@router.post("/events/{event_id}/close", response_model=EventPublic, summary="Close my event early")
def close_event(
    event_id: PathId, body: EventClose, caller: IssuerDep, services: ServicesDep
) -> EventPublic:
    """No more check-ins (audited, with the reason); closing a closed event changes nothing."""
    department_id = _department_of(caller)
    now = services.clock()
    return services.write(
        lambda session: _event_public(
            session,
            events.close_event(
                session, caller, now, event_id, reason=body.reason, department_id=department_id
            ),
        )
    )


@router.get(
    "/events/{event_id}/check-in",
    response_model=CheckInScreen,
    summary="The event token of the current 30-second slot, for the check-in screen",
)
def check_in_screen(event_id: PathId, caller: IssuerDep, services: ServicesDep) -> CheckInScreen:
    """The token residents scan to check in, signed with the active key, as text and SVG; it
    is accepted until `seconds_left` runs out, so the screen fetches the next one before."""
    department_id = _department_of(caller)
    now = services.clock()
    event = services.read(
        lambda session: events.get_event(session, event_id, department_id=department_id)
    )
    text, seconds_left = events.current_token(
        event, services.keys, now, origin=services.settings.public_origin
    )
    return CheckInScreen(
        token=text, svg=qrrender.svg(text, 80, quick=True), seconds_left=seconds_left
    )


@router.post(
    "/events/{event_id}/card-check-ins",
    status_code=201,
    response_model=CheckInPublic,
    openapi_extra=VALUE_MOVING,
    responses={200: {"model": CheckInPublic, "description": "The resident had checked in before"}},
    summary="Check a resident in at my event by their card (no phone needed)",
)
def card_check_in(
    event_id: PathId,
    body: CardLookup,
    caller: IssuerDep,
    services: ServicesDep,
    idempotency: IdempotencyDep,
) -> JSONResponse:
    """The organizer's device scanned a resident's card (`card_qr`) or keyed its number
    (`card_number`) at an open event of the caller's department: the resident checks in and
    earns the event's points, by the very rule of a wallet's check-in (`issuers.events.check_in`:
    once per resident per event, within the check-in window and the capacity). A second
    check-in answers the first again (200, `replayed: true`). Requires an `Idempotency-Key`
    (namespaced by the department).

    **No PIN**: a check-in only earns; it moves nothing out of the wallet, so the card alone
    names the resident, as the resident's own scan does in the wallet. For the same reason a
    card locked after 5 wrong PINs still checks in; a blocked or replaced card, or one whose
    resident is not active (moved out, deceased, blocked, erased), is `card_blocked`.
    Refusals: `not_found` (not the caller's event, or no such card), `event_closed`,
    `outside_check_in_window`, `event_full`, `card_number_invalid`, `token_*` (422),
    `already_awarded` (the department awarded this event by file), and the award rules'."""
    department_id = _department_of(caller)
    now, signing = services.clock(), services.card_signing

    def work(session: Session) -> tuple[int, Any]:
        event = events.get_event(session, event_id, department_id=department_id)
        card = cards.find_card(
            session, card_number=body.card_number, card_qr=body.card_qr, signing=signing, now=now
        )
        cards.holder(session, card)
        result = events.check_in(
            session, caller, now, token_id=event.token_id, resident_id=card.resident_id
        )
        public = CheckInPublic(
            event_id=result.event.id,
            event_name=result.event.name,
            award_id=result.award.id or 0,
            amount=result.award.amount,
            replayed=result.replayed,
        )
        return (200 if result.replayed else 201), public.model_dump(mode="json")

    return idempotency.run(caller, body, work, namespace=f"department:{department_id}")
