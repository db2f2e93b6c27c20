"""The tables of settlement (issue 20): runs, statements, what each covers, budget lines, bank
details, transfers and the recovery of a closed merchant's negative balance.

The rules they hold are written in ``redemption.settlement`` (runs and statements) and
``redemption.payouts`` (bank details, the transfer file, paid and rejected transfers); the
database holds the arithmetic of a statement by CHECK constraints, so that no code path can
write a statement whose figures disagree with each other:

* ``settle_points + carried_out = carried_in + net_points``, with ``settle_points >= 0``,
  ``carried_out <= 0`` and one of them zero (a negative net carries forward, never a negative
  payout);
* ``yen = settle_points * yen_rate``, ``fee = yen * fee_bps / 10000`` (integer division: the
  floor, both are non-negative), ``yen_to_pay = yen - fee``;
* ``statement_entry.entry_id`` is the primary key: a ledger entry is covered by one statement at
  most, whatever the order runs see entries committed in.
"""

from __future__ import annotations

import enum
from datetime import date, datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from ledger import schema as ledger_schema
from points.sqlbase import UTCDateTime

#: A period is a month: ``2026-11``.
PERIOD_PATTERN = r"^[0-9]{4}-(0[1-9]|1[0-2])$"


class RunTrigger(enum.StrEnum):
    SCHEDULER = "scheduler"
    CLI = "cli"
    API = "api"


class Transfer(enum.StrEnum):
    """How a statement is paid: by bank transfer, or not at all (the city's own counter)."""

    BANK = "bank"
    NONE = "none"


class LineKind(enum.StrEnum):
    #: Points that came from one program (and so from its budget line).
    PROGRAM = "program"
    #: Points whose program could not be told (none in practice: kept so the lines always sum).
    UNATTRIBUTED = "unattributed"
    #: A negative balance carried in from the last statement.
    CARRIED_IN = "carried_in"
    #: A negative balance carried to the next statement (the opposite sign of ``carried_out``).
    CARRIED_OUT = "carried_out"


class TransferStatus(enum.StrEnum):
    #: In a transfer file, not yet reported paid.
    SENT = "sent"
    PAID = "paid"
    #: The bank could not pay it (振込不能): its statements go into the next file.
    REJECTED = "rejected"


class RecoveryMethod(enum.StrEnum):
    #: The merchant paid the city back.
    REPAID = "repaid"
    #: Set off against another payment the city owed the merchant.
    OFFSET = "offset"
    #: Written off by decision of the city.
    WRITTEN_OFF = "written_off"


def _id_column() -> sa.Column[int]:
    return sa.Column(ledger_schema.Id, primary_key=True, autoincrement=True)


def _entry_column(*, nullable: bool, unique: bool = False) -> sa.Column[int]:
    return sa.Column(
        ledger_schema.Id,
        sa.ForeignKey(ledger_schema.entry.c.id),
        nullable=nullable,
        unique=unique,
    )


class SettlementRun(SQLModel, table=True):
    """One month's settlement: made once per period (a replay returns it), then paid."""

    __tablename__ = "settlement_run"
    __table_args__ = (
        sa.CheckConstraint("trigger IN ('scheduler', 'cli', 'api')", name="trigger"),
        sa.CheckConstraint(
            "(paid_on IS NULL) = (paid_at IS NULL) AND (paid_on IS NULL) = (paid_by IS NULL)",
            name="paid",
        ),
        sa.CheckConstraint("(file_made_at IS NULL) = (transfer_on IS NULL)", name="file"),
        sa.CheckConstraint("paid_on IS NULL OR file_made_at IS NOT NULL", name="paid_after_file"),
    )

    id: str = Field(primary_key=True, max_length=32)
    period: str = Field(max_length=7, unique=True)
    #: The cut: 00:00 Asia/Tokyo on the 1st of the next month. Entries recorded before it and in
    #: no earlier statement are this run's.
    cut_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))
    trigger: str = Field(max_length=16)
    created_by: str = Field(max_length=32)
    created_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))
    #: When the run's transfer file was first made (its transfers recorded), if it was.
    file_made_at: datetime | None = Field(default=None, sa_column=sa.Column(UTCDateTime()))
    #: The transfer date written in the file's header (振込指定日), given when it was made.
    transfer_on: date | None = None
    #: The payout date finance reported (the bank's value date), and who reported it when.
    paid_on: date | None = None
    paid_at: datetime | None = Field(default=None, sa_column=sa.Column(UTCDateTime()))
    paid_by: str | None = Field(default=None, max_length=32)


class Statement(SQLModel, table=True):
    """What one merchant is owed for one point type in one run. Immutable once written but for
    ``transfer_id``, the transfer that pays it (changed when a rejected transfer is resent)."""

    __tablename__ = "statement"
    __table_args__ = (
        sa.UniqueConstraint("run_id", "merchant_id", "point_type_id"),
        sa.CheckConstraint("transfer IN ('bank', 'none')", name="transfer"),
        sa.CheckConstraint(
            "payment_points >= 0 AND refund_points >= 0 AND payment_count >= 0 "
            "AND refund_count >= 0",
            name="counts",
        ),
        sa.CheckConstraint("net_points = payment_points - refund_points", name="net"),
        sa.CheckConstraint(
            "carried_in <= 0 AND carried_out <= 0 AND settle_points >= 0 "
            "AND (settle_points = 0 OR carried_out = 0) "
            "AND settle_points + carried_out = carried_in + net_points",
            name="carry",
        ),
        sa.CheckConstraint("yen_rate >= 1 AND fee_bps BETWEEN 0 AND 10000", name="terms"),
        sa.CheckConstraint(
            "yen = settle_points * yen_rate AND fee = (yen * fee_bps) / 10000 "
            "AND yen_to_pay = yen - fee",
            name="yen",
        ),
        sa.CheckConstraint("(settle_points = 0) = (entry_id IS NULL)", name="posted"),
        sa.CheckConstraint("transfer = 'bank' OR transfer_id IS NULL", name="no_transfer"),
        sa.Index("ix_statement_merchant_id_run_id", "merchant_id", "run_id"),
    )

    id: str = Field(primary_key=True, max_length=32)
    run_id: str = Field(foreign_key="settlement_run.id", max_length=32)
    period: str = Field(max_length=7)
    merchant_id: str = Field(foreign_key="merchant.id", max_length=32)
    point_type_id: str = Field(foreign_key="point_type.id", max_length=32)
    payment_count: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    refund_count: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    #: Points the covered payments brought, and the covered refunds took back.
    payment_points: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    refund_points: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    net_points: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    #: The negative balance the last statement carried to this one (0 or less).
    carried_in: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    #: Points moved from the payable to settled by ``entry_id``.
    settle_points: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    #: The negative balance carried to the next statement (0 or less).
    carried_out: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    yen_rate: int
    fee_bps: int
    yen: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    fee: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    yen_to_pay: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    transfer: str = Field(max_length=8)
    #: The merchant was closed at the cut: this statement is its last.
    final: bool = Field(default=False)
    #: The ledger entry that moved ``settle_points`` from the payable to settled.
    entry_id: int | None = Field(default=None, sa_column=_entry_column(nullable=True, unique=True))
    transfer_id: int | None = Field(
        default=None,
        sa_column=sa.Column(
            ledger_schema.Id, sa.ForeignKey("payout_transfer.id"), nullable=True, index=True
        ),
    )
    created_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))


class StatementEntry(SQLModel, table=True):
    """A ledger entry on a merchant's payable and the one statement that covers it."""

    __tablename__ = "statement_entry"
    __table_args__ = (sa.CheckConstraint("kind IN ('payment', 'refund')", name="kind"),)

    entry_id: int = Field(
        sa_column=sa.Column(
            ledger_schema.Id,
            sa.ForeignKey(ledger_schema.entry.c.id),
            primary_key=True,
            autoincrement=False,
        )
    )
    statement_id: str = Field(foreign_key="statement.id", max_length=32, index=True)
    kind: str = Field(max_length=8)
    #: Points the entry moved on the payable: positive for a payment, negative for a refund.
    points: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    recorded_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))


class StatementLine(SQLModel, table=True):
    """A statement's points and yen split by program and budget code (and the carries)."""

    __tablename__ = "statement_line"
    __table_args__ = (
        sa.CheckConstraint(
            "kind IN ('program', 'unattributed', 'carried_in', 'carried_out')", name="kind"
        ),
        sa.CheckConstraint("(kind = 'program') = (program_id IS NOT NULL)", name="program"),
    )

    id: int | None = Field(default=None, sa_column=_id_column())
    statement_id: str = Field(foreign_key="statement.id", max_length=32, index=True)
    kind: str = Field(max_length=16)
    program_id: str | None = Field(default=None, foreign_key="program.id", max_length=32)
    #: The program's budget code at the cut (``None`` when it had none).
    budget_code: str | None = Field(default=None, max_length=64)
    points: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    yen: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))


class MerchantBankAccount(SQLModel, table=True):
    """Where a merchant is paid (admins manage it; shown masked everywhere but the file)."""

    __tablename__ = "merchant_bank_account"
    __table_args__ = (
        sa.CheckConstraint(
            "length(bank_code) = 4 AND length(branch_code) = 3 AND length(account_number) = 7",
            name="codes",
        ),
        sa.CheckConstraint("account_type IN ('1', '2', '4', '9')", name="account_type"),
    )

    merchant_id: str = Field(primary_key=True, foreign_key="merchant.id", max_length=32)
    bank_code: str = Field(max_length=4)
    branch_code: str = Field(max_length=3)
    #: 1 普通 (ordinary), 2 当座 (current), 4 貯蓄 (savings), 9 その他 (other).
    account_type: str = Field(max_length=1)
    account_number: str = Field(max_length=7)
    #: The holder's name as the bank has it, in the Zengin set (half-width katakana).
    holder_kana: str = Field(max_length=30)
    updated_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))
    updated_by: str = Field(max_length=32)


class PayoutTransfer(SQLModel, table=True):
    """One data record of a run's transfer file: a merchant, the yen, and the account it went to
    (a copy, so that the file of a run is the same whenever it is downloaded)."""

    __tablename__ = "payout_transfer"
    __table_args__ = (
        sa.UniqueConstraint("run_id", "merchant_id"),
        sa.CheckConstraint("status IN ('sent', 'paid', 'rejected')", name="status"),
        sa.CheckConstraint("amount > 0", name="amount_positive"),
        sa.CheckConstraint("(status = 'rejected') = (rejected_at IS NOT NULL)", name="rejected"),
    )

    id: int | None = Field(default=None, sa_column=_id_column())
    run_id: str = Field(foreign_key="settlement_run.id", max_length=32)
    merchant_id: str = Field(foreign_key="merchant.id", max_length=32, index=True)
    #: The order of the record in the file (1, 2, ...).
    line: int
    amount: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    bank_code: str = Field(max_length=4)
    branch_code: str = Field(max_length=3)
    account_type: str = Field(max_length=1)
    account_number: str = Field(max_length=7)
    holder_kana: str = Field(max_length=30)
    status: str = Field(default=TransferStatus.SENT, max_length=16)
    rejected_at: datetime | None = Field(default=None, sa_column=sa.Column(UTCDateTime()))
    rejected_reason: str | None = Field(default=None, max_length=500)
    created_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))


class StatementRecovery(SQLModel, table=True):
    """How a closed merchant's negative balance was recovered (finance records it): the entry
    moves the points back from settled to the payable, which is then zero."""

    __tablename__ = "statement_recovery"
    __table_args__ = (
        sa.CheckConstraint("method IN ('repaid', 'offset', 'written_off')", name="method"),
        sa.CheckConstraint("points > 0 AND yen >= 0", name="amounts"),
    )

    statement_id: str = Field(primary_key=True, foreign_key="statement.id", max_length=32)
    method: str = Field(max_length=16)
    points: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    yen: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    note: str = Field(max_length=500)
    entry_id: int = Field(sa_column=_entry_column(nullable=False, unique=True))
    recorded_by: str = Field(max_length=32)
    recorded_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))
