"""Paying merchants (``redemption.payouts``): bank details (admins; masked in every answer), a
settlement run's Zengin transfer file, its payout date and rejected transfers (finance), and a
shop's own masked bank details.

The transfer file is made by a POST (its transfers are recorded the first time: a side effect
a GET must not have) and downloaded by a GET, the same bytes each time.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Path, Response
from fastapi.responses import JSONResponse
from pydantic import Field, StringConstraints
from sqlmodel import Session

from api.bodies import StrictRoute
from api.deps import AdminDep, AuditorDep, FinanceDep, MerchantDep, ServicesDep
from api.safety import IdempotencyDep
from api.schemas import (
    PROTECTED_ERRORS,
    ByValue,
    Input,
    Output,
    PathId,
    PlainText,
    Reason,
    ReasonInput,
)
from points.errors import NotFound
from redemption import payouts
from redemption.settlement import get_run

admin_router = APIRouter(
    prefix="/api/v1/admin", tags=["admin"], responses=PROTECTED_ERRORS, route_class=StrictRoute
)
finance_router = APIRouter(
    prefix="/api/v1/finance", tags=["finance"], responses=PROTECTED_ERRORS, route_class=StrictRoute
)
merchant_router = APIRouter(
    prefix="/api/v1/merchant",
    tags=["merchant"],
    responses=PROTECTED_ERRORS,
    route_class=StrictRoute,
)

Digits4 = Annotated[str, StringConstraints(pattern=r"^[0-9]{4}$")]
Digits3 = Annotated[str, StringConstraints(pattern=r"^[0-9]{3}$")]
AccountNumber = Annotated[str, StringConstraints(pattern=r"^[0-9]{1,7}$")]
HolderName = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=60), PlainText
]
TransferId = Annotated[int, Path(ge=1, le=2**62)]


class BankAccountChange(Input):
    bank_code: Digits4 = Field(examples=["0005"])
    branch_code: Digits3 = Field(examples=["123"])
    #: 1 普通 (ordinary), 2 当座 (current), 4 貯蓄 (savings), 9 その他 (other).
    account_type: Annotated[str, StringConstraints(pattern=r"^[1249]$")] = Field(examples=["1"])
    account_number: AccountNumber = Field(examples=["1234567"])
    #: As the bank has it; katakana (full- or half-width) or upper-case latin, converted to the
    #: Zengin set (half-width katakana, small kana made large).
    holder_name: HolderName = Field(examples=["カ）コマエショウテン"])
    reason: Reason


class BankAccountPublic(Output):
    merchant_id: str
    bank_code: str
    branch_code: str
    account_type: str
    account_type_name: str
    #: Masked: ``****567``.
    account_number: str
    #: Masked: the first character only.
    holder_kana: str
    updated_at: Any


class TransferFileCreate(Input):
    #: The transfer date written in the file's header (振込指定日); the payout date once the
    #: run is marked paid.
    transfer_date: Annotated[date, ByValue]


class TransferPublic(Output):
    id: int
    run_id: str
    merchant_id: str
    line: int
    amount: int
    bank_code: str
    branch_code: str
    account_type: str
    #: Masked.
    account_number: str
    status: str
    rejected_reason: str | None


class UnpaidPublic(Output):
    merchant_id: str
    name_ja: str
    yen: int
    statements: int


class TransferFilePublic(Output):
    run_id: str
    period: str
    transfer_date: date
    count: int
    total: int
    transfers: list[TransferPublic]
    #: Owed yen but without bank details: left out of the file (paid in a later one).
    without_bank_details: list[UnpaidPublic]
    download: str


class RunPaid(Input):
    payout_date: Annotated[date, ByValue]


class RunPaidPublic(Output):
    run_id: str
    period: str
    paid_on: date


class TransferRejected(Input):
    reason: Reason


def _transfer(transfer: Any) -> TransferPublic:
    return TransferPublic(
        id=transfer.id,
        run_id=transfer.run_id,
        merchant_id=transfer.merchant_id,
        line=transfer.line,
        amount=transfer.amount,
        bank_code=transfer.bank_code,
        branch_code=transfer.branch_code,
        account_type=transfer.account_type,
        account_number=payouts.mask_number(transfer.account_number),
        status=transfer.status,
        rejected_reason=transfer.rejected_reason,
    )


# Bank details (admins) -----------------------------------------------------------------------


@admin_router.put(
    "/merchants/{merchant_id}/bank-account",
    response_model=BankAccountPublic,
    summary="Set a merchant's bank details",
)
def put_bank_account(
    merchant_id: PathId, body: BankAccountChange, caller: AdminDep, services: ServicesDep
) -> BankAccountPublic:
    """Add or replace where the merchant is paid; checked for the Zengin character set (the
    holder's name converted to half-width katakana; `bank_details_invalid` names the field and
    the `position` of the first character the file cannot carry); audited, masked."""
    now = services.clock()
    details = payouts.BankDetails(
        body.bank_code, body.branch_code, body.account_type, body.account_number, body.holder_name
    )

    def work(session: Session) -> BankAccountPublic:
        account = payouts.set_bank_account(
            session, caller, now, merchant_id, details, reason=body.reason
        )
        return BankAccountPublic.model_validate(payouts.masked(account))

    return services.write(work)


@admin_router.get(
    "/merchants/{merchant_id}/bank-account",
    response_model=BankAccountPublic,
    summary="A merchant's bank details, masked",
)
def get_bank_account(
    merchant_id: PathId, caller: AuditorDep, services: ServicesDep
) -> BankAccountPublic:
    """The merchant's bank details, masked (404 when none are set)."""

    def work(session: Session) -> BankAccountPublic:
        found = payouts.get_bank_account(session, merchant_id)
        if found is None:
            raise NotFound(f"no bank details of merchant {merchant_id}")
        return BankAccountPublic.model_validate(found)

    return services.read(work)


@admin_router.post(
    "/merchants/{merchant_id}/bank-account/remove",
    response_model=BankAccountPublic,
    summary="Remove a merchant's bank details",
)
def remove_bank_account(
    merchant_id: PathId, body: ReasonInput, caller: AdminDep, services: ServicesDep
) -> BankAccountPublic:
    """Remove the bank details (with a reason, audited); answers what was removed, masked. The
    merchant is left out of transfer files (and listed) until new ones are set."""
    now = services.clock()
    return BankAccountPublic.model_validate(
        services.write(
            lambda session: payouts.remove_bank_account(
                session, caller, now, merchant_id, reason=body.reason
            )
        )
    )


@merchant_router.get(
    "/bank-account", response_model=BankAccountPublic, summary="Where my shop is paid, masked"
)
def my_bank_account(caller: MerchantDep, services: ServicesDep) -> BankAccountPublic:
    """The shop's bank details as the city has them, masked (404 when none are set: ask the
    city to add them, or the shop is not paid by transfer)."""
    merchant_id = caller.merchant_id or ""

    def work(session: Session) -> BankAccountPublic:
        found = payouts.get_bank_account(session, merchant_id)
        if found is None:
            raise NotFound("no bank details")
        return BankAccountPublic.model_validate(found)

    return services.read(work)


# The transfer file (finance) -----------------------------------------------------------------


@finance_router.post(
    "/settlement-runs/{run_id}/transfer-file",
    status_code=201,
    response_model=TransferFilePublic,
    summary="Make a run's Zengin transfer file",
)
def make_transfer_file(
    run_id: PathId,
    body: TransferFileCreate,
    caller: FinanceDep,
    services: ServicesDep,
    idempotency: IdempotencyDep,
) -> JSONResponse:
    """Record the run's transfers (once: a merchant's transfer pays every bank statement of
    its not yet in a sent or paid transfer) and describe the file; merchants owed yen without
    bank details are listed and left out. Download the bytes from `download`. Refusals:
    `remitter_not_configured` (the city's account settings), `transfer_file_made` (a later
    run's file exists), `conflict` (nothing to transfer). Requires an `Idempotency-Key`."""
    now = services.clock()
    remitter = payouts.remitter_of(services.settings.zengin_remitter)

    def work(session: Session) -> tuple[int, Any]:
        made = payouts.transfer_file(
            session, caller, now, run_id, remitter=remitter, transfer_date=body.transfer_date
        )
        return 201, _file_public(made).model_dump(mode="json")

    return idempotency.run(caller, body, work)


def _file_public(made: payouts.TransferFile) -> TransferFilePublic:
    return TransferFilePublic(
        run_id=made.run.id,
        period=made.run.period,
        transfer_date=made.transfer_date,
        count=len(made.transfers),
        total=made.total,
        transfers=[_transfer(t) for t in made.transfers],
        without_bank_details=[UnpaidPublic.model_validate(u) for u in made.without_bank_details],
        download=f"/api/v1/finance/settlement-runs/{made.run.id}/transfer-file",
    )


@finance_router.get(
    "/settlement-runs/{run_id}/transfer-file",
    summary="Download a run's Zengin transfer file",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}}},
)
def download_transfer_file(run_id: PathId, caller: FinanceDep, services: ServicesDep) -> Response:
    """The file as made (404 until it is made), the same bytes every time: 120-byte CP932
    records with CR LF, to upload to the bank's 総合振込 (全銀協 format, docs/zengin.md)."""
    now = services.clock()
    remitter = payouts.remitter_of(services.settings.zengin_remitter)

    def work(session: Session) -> payouts.TransferFile:
        run = get_run(session, run_id)
        if run.file_made_at is None:
            raise NotFound(f"the transfer file of run {run_id} is not made yet")
        return payouts.transfer_file(
            session, caller, now, run_id, remitter=remitter, transfer_date=None
        )

    made = services.read(work)
    return Response(
        made.content,
        media_type="text/plain; charset=Windows-31J",
        headers={
            "Content-Disposition": f'attachment; filename="zengin-{made.run.period}.txt"',
            "Cache-Control": "no-store",
        },
    )


@finance_router.post(
    "/settlement-runs/{run_id}/paid", response_model=RunPaidPublic, summary="Mark a run paid"
)
def mark_paid(
    run_id: PathId, body: RunPaid, caller: FinanceDep, services: ServicesDep
) -> RunPaidPublic:
    """The bank paid the run's transfers on `payout_date`: its statements show it. Once (the
    same date again is a replay)."""
    now = services.clock()

    def work(session: Session) -> RunPaidPublic:
        run = payouts.mark_paid(session, caller, now, run_id, payout_date=body.payout_date)
        assert run.paid_on is not None
        return RunPaidPublic(run_id=run.id, period=run.period, paid_on=run.paid_on)

    return services.write(work)


@finance_router.get(
    "/settlement-runs/{run_id}/transfers",
    response_model=list[TransferPublic],
    summary="A run's transfers",
)
def list_transfers(run_id: PathId, caller: AuditorDep, services: ServicesDep) -> Any:
    """The transfers of the run's file, in file order, accounts masked."""

    def work(session: Session) -> list[TransferPublic]:
        get_run(session, run_id)
        return [_transfer(t) for t in payouts.transfers_of(session, run_id)]

    return services.read(work)


@finance_router.post(
    "/transfers/{transfer_id}/rejected",
    response_model=TransferPublic,
    summary="A transfer the bank could not make (振込不能)",
)
def mark_rejected(
    transfer_id: TransferId, body: TransferRejected, caller: FinanceDep, services: ServicesDep
) -> TransferPublic:
    """The bank returned it (account closed, name mismatch, ...): its statements go into the
    next run's file, after the details are corrected. Audited with the reason."""
    now = services.clock()
    return services.write(
        lambda session: _transfer(
            payouts.mark_rejected(session, caller, now, transfer_id, reason=body.reason)
        )
    )
