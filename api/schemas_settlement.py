"""Request and response models of monthly settlement (``redemption.settlement``): runs, their
dry run, statements with their budget lines and covered entries, and the recovery of a closed
merchant's negative balance."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated

from fastapi import Query
from pydantic import Field, StringConstraints

from api.schemas import ID_PATTERN, ByValue, Input, Output, Reason
from redemption.settlement_models import PERIOD_PATTERN, RecoveryMethod

#: A month, ``2026-11``.
Period = Annotated[
    str, StringConstraints(pattern=PERIOD_PATTERN), Field(examples=["2026-11"], max_length=7)
]
PeriodQuery = Annotated[str, Query(pattern=PERIOD_PATTERN, description="a month, e.g. 2026-11")]
#: A page of statements goes on after (period, merchant, point type) of the last one listed.
STATEMENT_CURSOR_PATTERN = (
    r"^[0-9]{4}-(0[1-9]|1[0-2])~" + ID_PATTERN.strip("^$") + "~" + ID_PATTERN.strip("^$") + "$"
)


class SettlementRunCreate(Input):
    """The month to settle: it must have ended (Asia/Tokyo)."""

    period: Period


class RecoveryCreate(Input):
    """How a closed merchant's negative balance was recovered."""

    method: Annotated[RecoveryMethod, ByValue]
    note: Reason


class StatementFigures(Output):
    """A statement's figures (``redemption.settlement``: the CHECKs hold them together)."""

    period: str
    merchant_id: str
    merchant_name_ja: str
    merchant_name_en: str
    point_type: str
    unit: str
    payment_count: int
    refund_count: int
    payment_points: int
    refund_points: int
    net_points: int
    carried_in: int
    settle_points: int
    carried_out: int
    #: Yen per point (the point type's rate).
    yen_rate: int
    #: The merchant's cash-out fee, in basis points of the yen.
    fee_bps: int
    yen: int
    fee: int
    yen_to_pay: int
    #: ``bank``, or ``none`` for the city's own counter (no transfer).
    transfer: str
    #: The merchant was closed at the run: its last statement.
    final: bool


class StatementSummary(StatementFigures):
    id: str
    run_id: str


class StatementLinePublic(Output):
    """Part of a statement's points from one program (its budget code), or a carry."""

    #: ``program``, ``unattributed``, ``carried_in`` or ``carried_out``.
    kind: str
    program_id: str | None
    program_name_ja: str | None
    program_name_en: str | None
    #: The program's budget code (款項目節) at the run.
    budget_code: str | None
    points: int
    yen: int


class PlannedStatementPublic(StatementFigures):
    """A statement a run would make now (no id: nothing is written)."""

    lines: list[StatementLinePublic]


class TransferTotals(Output):
    statements: int
    yen_to_pay: int


class RunTotals(Output):
    statements: int
    #: Points settled (moved from the payables).
    points: int
    yen: int
    fee: int
    yen_to_pay: int
    #: Per transfer kind (``bank``, ``none``).
    by_transfer: dict[str, TransferTotals]


class SettlementRunPublic(Output):
    id: str
    period: str
    #: The cut: entries recorded before it (and in no earlier statement) are this run's.
    cut_at: datetime
    #: ``scheduler``, ``cli`` or ``api``.
    trigger: str
    created_by: str
    created_at: datetime
    file_made_at: datetime | None
    #: The payout date finance reported, if it did.
    paid_on: date | None


class SettlementRunDetail(SettlementRunPublic):
    totals: RunTotals
    statements: list[StatementSummary]
    #: The run existed already: nothing was written (only on ``POST``).
    replay: bool = False


class SettlementPlanPublic(Output):
    """A dry run: what a run of the period would write now."""

    period: str
    cut_at: datetime
    totals: RunTotals
    statements: list[PlannedStatementPublic]


class CoveredEntryPublic(Output):
    """A payment or refund a statement covers."""

    #: The ledger entry (finance only; null for the shop).
    entry_id: int | None
    #: ``payment`` or ``refund``.
    kind: str
    #: The payment (for a refund: the payment refunded), when it is one of the shop's.
    payment_id: str | None
    #: Positive for a payment, negative for a refund.
    points: int
    recorded_at: datetime


class RecoveryPublic(Output):
    """How a closed merchant's negative balance was recovered."""

    statement_id: str
    #: ``repaid``, ``offset`` or ``written_off``.
    method: str
    points: int
    yen: int
    note: str
    #: The ledger entry and the member of staff (finance only; null for the shop).
    entry_id: int | None
    recorded_by: str | None
    recorded_at: datetime


class StatementDetail(StatementSummary):
    cut_at: datetime
    #: The payout date (the run's transfers reported paid); null while unpaid or without one.
    payout_date: date | None
    #: The ledger entry that moved the settled points (finance only; null for the shop).
    entry_id: int | None
    created_at: datetime
    lines: list[StatementLinePublic]
    entries: list[CoveredEntryPublic]
    recovery: RecoveryPublic | None
