"""Paying merchants (issue 20 part 6): bank details, a run's Zengin transfer file, the payout
date, and transfers the bank could not make (振込不能).

**Bank details** (``MerchantBankAccount``) are managed by admins and audited (the audit keeps the
masked values, never the account number). Every view masks them (``masked``): the account
number's last three digits, the holder's name's first character; only the transfer file carries
them whole. They are checked for the Zengin set when they are saved (``BankDetailsInvalid``
names the field and the position of the first character the file cannot carry), so a file never
fails on them later: codes are digits of their length, the holder's name is converted to
half-width katakana (``redemption.zengin.to_zengin_kana``: small kana made large) and fits 30.

**The transfer file of a run** (``transfer_file``): made the first time finance asks for it.
Then one ``PayoutTransfer`` per merchant is recorded, with the yen and a copy of the account;
later downloads write the same file from those rows, whatever changed since. A merchant's
transfer pays every bank statement of that merchant not yet in a transfer that is sent or paid:
the run's own, those of a merchant whose bank details were missing at an earlier file, and those
of a transfer the bank rejected. Statements of the city counter (``transfer = none``) and
statements with nothing to pay are in no transfer. Merchants with something owed but no bank
details are listed (``without_bank_details``) and left out; their statements go into the first
file made after their details are added.

**Paid and rejected.** Finance marks a run paid with the payout date (the bank's value date);
its sent transfers become paid and statements show that date. A transfer the bank rejected is
marked (with the reason); its statements are free again and go into the next file. A rejected
transfer is never sent again by itself: the next run's file carries the amount.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

import sqlalchemy as sa
from sqlmodel import Session, col, select

from points import audit
from points.auth import Principal
from points.calendar import tokyo_date
from points.errors import Conflict, InvalidInput, NotFound
from points.registry import Merchant
from redemption import zengin
from redemption.errors import BankDetailsInvalid, RemitterNotConfigured, TransferFileMade
from redemption.settlement import get_run
from redemption.settlement_models import (
    MerchantBankAccount,
    PayoutTransfer,
    SettlementRun,
    Statement,
    Transfer,
    TransferStatus,
)

ACCOUNT_TYPES = {"1": "普通", "2": "当座", "4": "貯蓄", "9": "その他"}
HOLDER_MAX = 30
REASON_MAX = 500


# Bank details --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BankDetails:
    bank_code: str
    branch_code: str
    account_type: str
    account_number: str
    holder_name: str


@dataclass(frozen=True, slots=True)
class MaskedBankAccount:
    merchant_id: str
    bank_code: str
    branch_code: str
    account_type: str
    account_type_name: str
    #: ``****567``: the last three digits.
    account_number: str
    #: ``ｶ****``: the first character.
    holder_kana: str
    updated_at: datetime


def mask_number(number: str) -> str:
    return "*" * (len(number) - 3) + number[-3:]


def mask_name(name: str) -> str:
    return name[:1] + "*" * max(len(name) - 1, 0)


def masked(account: MerchantBankAccount) -> MaskedBankAccount:
    return MaskedBankAccount(
        merchant_id=account.merchant_id,
        bank_code=account.bank_code,
        branch_code=account.branch_code,
        account_type=account.account_type,
        account_type_name=ACCOUNT_TYPES[account.account_type],
        account_number=mask_number(account.account_number),
        holder_kana=mask_name(account.holder_kana),
        updated_at=account.updated_at,
    )


def check_bank_details(details: BankDetails) -> BankDetails:
    """The details as the file will carry them, or ``BankDetailsInvalid`` naming the field."""
    for name, length in (("bank_code", 4), ("branch_code", 3)):
        value = getattr(details, name)
        if (
            not (isinstance(value, str) and value.isascii() and value.isdigit())
            or len(value) != length
        ):
            raise BankDetailsInvalid(f"{name} is {length} digits", field=name)
    number = details.account_number
    if not (isinstance(number, str) and number.isascii() and number.isdigit()) or not (
        1 <= len(number) <= 7
    ):
        raise BankDetailsInvalid("account_number is 1 to 7 digits", field="account_number")
    if details.account_type not in ACCOUNT_TYPES:
        raise BankDetailsInvalid(
            "account_type is 1 (普通), 2 (当座), 4 (貯蓄) or 9 (その他)", field="account_type"
        )
    if not details.holder_name.strip():
        raise BankDetailsInvalid("the holder's name is required", field="holder_name")
    try:
        holder = zengin.to_zengin_kana(
            details.holder_name.strip(), field="holder_name", max_length=HOLDER_MAX
        )
    except zengin.ZenginTooLong as error:
        raise BankDetailsInvalid(
            f"the holder's name is at most {HOLDER_MAX} half-width characters in the file",
            field="holder_name",
            position=error.position,
        ) from error
    except zengin.ZenginCharsetError as error:
        raise BankDetailsInvalid(
            f"the holder's name has a character the bank transfer file cannot carry: "
            f"{error.char!r} at position {error.position} (use katakana as the bank has it)",
            field="holder_name",
            position=error.position,
        ) from error
    return BankDetails(
        details.bank_code, details.branch_code, details.account_type, number.zfill(7), holder
    )


def set_bank_account(
    session: Session,
    actor: Principal,
    now: datetime,
    merchant_id: str,
    details: BankDetails,
    *,
    reason: str,
) -> MerchantBankAccount:
    """Add or replace the merchant's bank details (admins), audited masked."""
    if session.get(Merchant, merchant_id) is None:
        raise NotFound(f"no merchant {merchant_id}")
    clean = check_bank_details(details)
    account = session.get(MerchantBankAccount, merchant_id)
    before = masked(account) if account is not None else None
    if account is None:
        account = MerchantBankAccount(
            merchant_id=merchant_id,
            bank_code=clean.bank_code,
            branch_code=clean.branch_code,
            account_type=clean.account_type,
            account_number=clean.account_number,
            holder_kana=clean.holder_name,
            updated_at=now,
            updated_by=actor.principal_id,
        )
    else:
        account.bank_code, account.branch_code = clean.bank_code, clean.branch_code
        account.account_type, account.account_number = clean.account_type, clean.account_number
        account.holder_kana = clean.holder_name
        account.updated_at, account.updated_by = now, actor.principal_id
    session.add(account)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="merchant.bank_account",
        object_type="merchant",
        object_id=merchant_id,
        at=now,
        reason=reason,
        details={
            "before": _audit_view(before),
            "after": _audit_view(masked(account)),
        },
    )
    return account


def _audit_view(view: MaskedBankAccount | None) -> dict[str, str] | None:
    if view is None:
        return None
    return {
        "bank_code": view.bank_code,
        "branch_code": view.branch_code,
        "account_type": view.account_type,
        "account_number": view.account_number,
        "holder_kana": view.holder_kana,
    }


def get_bank_account(session: Session, merchant_id: str) -> MaskedBankAccount | None:
    account = session.get(MerchantBankAccount, merchant_id)
    return masked(account) if account is not None else None


def remove_bank_account(
    session: Session, actor: Principal, now: datetime, merchant_id: str, *, reason: str
) -> MaskedBankAccount:
    account = session.get(MerchantBankAccount, merchant_id)
    if account is None:
        raise NotFound(f"merchant {merchant_id} has no bank details")
    view = masked(account)
    session.delete(account)
    audit.record(
        session,
        actor=actor,
        action="merchant.bank_account_removed",
        object_type="merchant",
        object_id=merchant_id,
        at=now,
        reason=reason,
        details={"before": _audit_view(view)},
    )
    session.flush()
    return view


# The transfer file ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Unpaid:
    merchant_id: str
    name_ja: str
    yen: int
    statements: int


@dataclass(frozen=True, slots=True)
class TransferFile:
    run: SettlementRun
    transfers: list[PayoutTransfer]
    #: Merchants owed yen but without bank details (left out of the file).
    without_bank_details: list[Unpaid]
    content: bytes
    #: The transfer date written in the header (the run's payout date, or the one asked for).
    transfer_date: date

    @property
    def total(self) -> int:
        return sum(t.amount for t in self.transfers)


def remitter_of(settings_remitter: dict[str, str] | None) -> zengin.Remitter:
    if settings_remitter is None:
        raise RemitterNotConfigured(
            "the city's account for transfer files is not set (POINTS_ZENGIN_REMITTER_CODE, "
            "POINTS_ZENGIN_REMITTER_NAME, POINTS_ZENGIN_BANK_CODE, POINTS_ZENGIN_BRANCH_CODE, "
            "POINTS_ZENGIN_ACCOUNT_NUMBER)"
        )
    return zengin.Remitter(**settings_remitter)


def _owed(session: Session) -> dict[str, list[Statement]]:
    """Bank statements with yen to pay that no sent or paid transfer carries, by merchant."""
    carried = sa.select(PayoutTransfer.id).where(  # type: ignore[call-overload]
        col(PayoutTransfer.id) == col(Statement.transfer_id),
        col(PayoutTransfer.status).in_((TransferStatus.SENT, TransferStatus.PAID)),
    )
    rows = session.exec(
        select(Statement)
        .where(
            Statement.transfer == Transfer.BANK,
            col(Statement.yen_to_pay) > 0,
            ~sa.exists(carried),
        )
        .order_by(col(Statement.merchant_id), col(Statement.period))
    ).all()
    owed: dict[str, list[Statement]] = {}
    for statement in rows:
        owed.setdefault(statement.merchant_id, []).append(statement)
    return owed


def make_transfers(
    session: Session, actor: Principal, now: datetime, run_id: str, transfer_date: date | None
) -> list[PayoutTransfer]:
    """Record the transfers of a run's file, once, with its transfer date (later calls return
    them)."""
    run = get_run(session, run_id)
    existing = transfers_of(session, run.id)
    if run.file_made_at is not None:
        return existing
    later = session.exec(
        select(SettlementRun.period).where(
            col(SettlementRun.period) > run.period, col(SettlementRun.file_made_at).is_not(None)
        )
    ).first()
    if later is not None:
        raise TransferFileMade(
            f"the transfer file of {later} is made already; what {run.period} still owes is in "
            "the file of the next run"
        )
    owed = _owed(session)
    line = 0
    made = []
    for merchant_id, owed_statements in sorted(owed.items()):
        account = session.get(MerchantBankAccount, merchant_id)
        # A later run's statements (made before this file) wait for their own run's file.
        statements = [s for s in owed_statements if s.period <= run.period]
        if account is None or not statements:
            continue
        line += 1
        transfer = PayoutTransfer(
            run_id=run.id,
            merchant_id=merchant_id,
            line=line,
            amount=sum(s.yen_to_pay for s in statements),
            bank_code=account.bank_code,
            branch_code=account.branch_code,
            account_type=account.account_type,
            account_number=account.account_number,
            holder_kana=account.holder_kana,
            created_at=now,
        )
        session.add(transfer)
        session.flush()
        for statement in statements:
            statement.transfer_id = transfer.id
            session.add(statement)
        made.append(transfer)
    if transfer_date is None:
        raise InvalidInput("the file's transfer date is required", field="transfer_date")
    if transfer_date < tokyo_date(run.cut_at):
        raise InvalidInput("the transfer date is after the period's end", field="transfer_date")
    run.file_made_at, run.transfer_on = now, transfer_date
    session.add(run)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="settlement.transfer_file",
        object_type="settlement_run",
        object_id=run.id,
        at=now,
        details={"transfers": len(made), "yen": sum(t.amount for t in made)},
    )
    return made


def transfers_of(session: Session, run_id: str) -> list[PayoutTransfer]:
    return list(
        session.exec(
            select(PayoutTransfer)
            .where(PayoutTransfer.run_id == run_id)
            .order_by(col(PayoutTransfer.line))
        ).all()
    )


def without_bank_details(session: Session) -> list[Unpaid]:
    """Merchants owed yen by bank transfer that have no bank details."""
    owed = _owed(session)
    missing = []
    for merchant_id, statements in sorted(owed.items()):
        if session.get(MerchantBankAccount, merchant_id) is not None:
            continue
        merchant = session.get(Merchant, merchant_id)
        assert merchant is not None
        missing.append(
            Unpaid(
                merchant_id,
                merchant.name_ja,
                sum(s.yen_to_pay for s in statements),
                len(statements),
            )
        )
    return missing


def transfer_file(
    session: Session,
    actor: Principal,
    now: datetime,
    run_id: str,
    *,
    remitter: zengin.Remitter,
    transfer_date: date | None,
) -> TransferFile:
    """The run's Zengin file: its transfers recorded the first time (``transfer_date`` is then
    required), the same bytes every time after (with the date given then)."""
    transfers = make_transfers(session, actor, now, run_id, transfer_date)
    run = get_run(session, run_id)
    if not transfers:
        raise Conflict(
            "nothing to transfer in this run: no merchant with bank details is owed yen",
            run_id=run_id,
        )
    assert run.transfer_on is not None
    day = run.transfer_on
    content = zengin.transfer_file(
        remitter,
        day,
        [
            zengin.TransferRecord(
                bank_code=t.bank_code,
                branch_code=t.branch_code,
                account_type=t.account_type,
                account_number=t.account_number,
                holder_kana=t.holder_kana,
                amount=t.amount,
                customer_code1=str(t.id).zfill(10),
            )
            for t in transfers
        ],
    )
    return TransferFile(run, transfers, without_bank_details(session), content, day)


def mark_paid(
    session: Session, actor: Principal, now: datetime, run_id: str, *, payout_date: date
) -> SettlementRun:
    """Finance reports the run's transfers paid on ``payout_date`` (once)."""
    run = get_run(session, run_id)
    if run.paid_on is not None:
        if run.paid_on == payout_date:
            return run
        raise Conflict(f"the run was marked paid on {run.paid_on.isoformat()} already")
    if run.file_made_at is None:
        raise Conflict("make the run's transfer file first")
    if payout_date < tokyo_date(run.cut_at):
        raise InvalidInput("the payout date is after the period's end", field="payout_date")
    run.paid_on, run.paid_at, run.paid_by = payout_date, now, actor.principal_id
    session.add(run)
    for transfer in transfers_of(session, run.id):
        if transfer.status == TransferStatus.SENT:
            transfer.status = TransferStatus.PAID
            session.add(transfer)
    audit.record(
        session,
        actor=actor,
        action="settlement.paid",
        object_type="settlement_run",
        object_id=run.id,
        at=now,
        details={"payout_date": payout_date.isoformat()},
    )
    session.flush()
    return run


def mark_rejected(
    session: Session, actor: Principal, now: datetime, transfer_id: int, *, reason: str
) -> PayoutTransfer:
    """The bank could not make this transfer (振込不能): its statements go into the next file."""
    transfer = session.get(PayoutTransfer, transfer_id)
    if transfer is None:
        raise NotFound(f"no transfer {transfer_id}")
    reason = reason.strip()
    if not reason or len(reason) > REASON_MAX:
        raise InvalidInput(f"a reason of 1 to {REASON_MAX} characters", field="reason")
    if transfer.status == TransferStatus.REJECTED:
        return transfer
    statements = list(
        session.exec(select(Statement.id).where(Statement.transfer_id == transfer.id)).all()
    )
    transfer.status = TransferStatus.REJECTED
    transfer.rejected_at, transfer.rejected_reason = now, reason
    session.add(transfer)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="settlement.transfer_rejected",
        object_type="payout_transfer",
        object_id=str(transfer.id),
        at=now,
        reason=reason,
        details={
            "run_id": transfer.run_id,
            "merchant_id": transfer.merchant_id,
            "amount": transfer.amount,
            "statements": statements,
        },
    )
    return transfer
