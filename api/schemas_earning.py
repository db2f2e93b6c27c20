"""Request and response models of earning: point types, programs, budgets, awards, wallets."""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Annotated, Any, Literal, get_args

from fastapi import Path, Query
from pydantic import Field, StringConstraints, field_validator, model_validator

from api.schemas import (
    ID_PATTERN,
    AddressNumber,
    ByValue,
    Day,
    Input,
    Instant,
    Name,
    ObjectId,
    Output,
    PlainText,
    Reason,
)
from issuers.awards import RECORD_ID_MAX_LENGTH
from issuers.modules import CHECKUP_TYPES, MODULES
from issuers.programs import BUDGET_CODE_MAX, BudgetStatus, ProgramStatus, YearEndDecision
from points.calendar import NEVER
from points.pointtypes import CODE_PATTERN, YEN_RATE_MAX, ExpiryRule, Funding, IssuerKind
from points.wallet_views import LineState

#: Amounts of points: positive integers that fit the ledger's 64-bit totals.
Points = Annotated[int, Field(ge=1, le=10**15)]
FiscalYear = Annotated[int, Path(ge=2000, le=2999, description="April of this year to March")]
FiscalYearQuery = Annotated[int | None, Query(ge=2000, le=2999)]
PointTypeCode = Annotated[str, Path(pattern=CODE_PATTERN, description="e.g. pt")]
# 18 digits stay below 2**63 - 1, the largest id either database holds.
NumericCursor = Annotated[
    str | None, Query(pattern=r"^[0-9]{1,18}$", description="next_cursor of the page before")
]
IdCursor = Annotated[
    str | None, Query(pattern=ID_PATTERN, description="next_cursor of the page before")
]
RecordId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=RECORD_ID_MAX_LENGTH, pattern=r"^[\x21-\x7e]+$"),
]
DetailValue = Annotated[str, StringConstraints(max_length=200), PlainText]
#: Whole yen the city pays a shop per point at settlement (a JSON integer).
YenRate = Annotated[int, Field(ge=1, le=YEN_RATE_MAX, examples=[1])]
#: A program's budget line (款項目節), e.g. ``01-02-03-04``.
BudgetCode = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=BUDGET_CODE_MAX),
    PlainText,
]
ModuleKind = Literal["fixed_award", "health_checkup", "volunteering"]
assert set(get_args(ModuleKind)) == set(MODULES), "keep ModuleKind in step with issuers.modules"


class PointTypeCreate(Input):
    code: Annotated[str, StringConstraints(pattern=CODE_PATTERN)] = Field(examples=["pt"])
    name_ja: Name = Field(examples=["狛江ポイント"])
    name_en: Name = Field(examples=["Komae points"])
    unit: Annotated[str, StringConstraints(min_length=1, max_length=16), PlainText] = "pt"
    expiry_rule: Annotated[ExpiryRule, ByValue] = ExpiryRule.MONTHS
    #: For the ``months`` rule (1 to 120; 12 when left out): valid until the end of the month
    #: N months after the month earned.
    expiry_months: int | None = None
    #: For the ``fixed_date`` rule: the last day the points can be spent.
    expiry_date: Day | None = None
    transferable: bool = False
    issuer: Annotated[IssuerKind, ByValue] = IssuerKind.CITY
    funding: Annotated[Funding, ByValue] = Funding.FREE
    #: Required for operator-sold points valid for more than 6 months (Payment Services Act).
    psa_override_reason: Reason | None = None
    #: Whole yen per point paid to shops at settlement (1 when left out); frozen once the type
    #: has a payment.
    yen_rate: YenRate = 1


class PointTypePublic(Output):
    id: str
    code: str
    name_ja: str
    name_en: str
    unit: str
    expiry_rule: ExpiryRule
    expiry_months: int | None
    expiry_date: date | None
    transferable: bool
    issuer: IssuerKind
    funding: Funding
    psa_override_reason: str | None
    yen_rate: int
    ledger_id: int
    created_at: datetime


class YenRateChange(Input):
    yen_rate: YenRate
    reason: Reason


class ProgramCreate(Input):
    department_id: ObjectId
    point_type_id: ObjectId
    module: ModuleKind = Field(examples=["health_checkup"])
    name_ja: Name = Field(examples=["特定健診受診ポイント"])
    name_en: Name = Field(examples=["Specific health checkup"])
    #: Points per qualifying event.
    amount: Points = Field(examples=[500])
    valid_from: Day
    valid_until: Day | None = None
    cap_per_day: Points | None = None
    cap_per_month: Points | None = None
    cap_per_fiscal_year: Points | None = None
    #: The module's settings, e.g. ``{"checkup_types": ["specific_health_checkup"]}``.
    config: dict[str, list[DetailValue] | DetailValue] = Field(
        default_factory=dict,
        max_length=20,
        description=(
            "The module's settings. health_checkup: `checkup_types`, a list of "
            + ", ".join(f"`{code}` ({ja})" for code, (ja, _en) in CHECKUP_TYPES.items())
            + "; volunteering and fixed_award: none."
        ),
        examples=[{"checkup_types": ["specific_health_checkup", "cancer_screening"]}],
    )
    #: The budget line (款項目節) the program's points are paid from at settlement.
    budget_code: BudgetCode | None = Field(default=None, examples=["03-01-02-19"])


class ProgramPublic(Output):
    id: str
    department_id: str
    point_type_id: str
    module: str
    name_ja: str
    name_en: str
    amount: int
    valid_from: date
    valid_until: date | None
    cap_per_day: int | None
    cap_per_month: int | None
    cap_per_fiscal_year: int | None
    status: ProgramStatus
    config: dict[str, Any]
    budget_code: str | None
    created_at: datetime
    updated_at: datetime

    @field_validator("config", mode="before")
    @classmethod
    def _parse_config(cls, value: Any) -> Any:
        return json.loads(value) if isinstance(value, str) else value


class BudgetCodeChange(Input):
    #: The new budget code, or null to clear it.
    budget_code: BudgetCode | None = Field(examples=["03-01-02-19"])
    reason: Reason


class ProgramStatusChange(Input):
    status: Annotated[ProgramStatus, ByValue]
    reason: Reason


class AllocationCreate(Input):
    amount: Points = Field(examples=[1_000_000])
    reason: Reason = Field(examples=["FY2026 budget, council resolution 12"])


class YearEndCreate(Input):
    decision: Annotated[YearEndDecision, ByValue]
    reason: Reason


class BudgetPublic(Output):
    program_id: str
    fiscal_year: int
    #: ``none`` when nothing was ever allocated for the year.
    status: BudgetStatus | Literal["none"]
    #: Credited to the budget: allocations and carry-over from the year before.
    allocated: int
    awarded: int
    awards: int
    residents_awarded: int
    remaining: int


class AllocationPublic(Output):
    entry_id: int
    budget: BudgetPublic


class AwardCreate(Input):
    """One qualifying event of one resident, who is named by `resident_id` or by
    `address_number`: exactly one of the two (both or neither is `validation_error`)."""

    resident_id: ObjectId | None = Field(
        default=None,
        description="The resident's pseudonymous id (`res_...`). Give this or "
        "`address_number`, not both.",
        examples=["res_5MHn8rJVS31B37_j"],
    )
    address_number: AddressNumber | None = Field(
        default=None,
        description="Instead of `resident_id`: the resident's address number (宛名番号), 1 to "
        "20 digits, as the department's own records know them. It is looked up and not stored: "
        "the award names the resident by `resident_id`. An unknown number is `not_found`; a "
        "number two residents share is `conflict`.",
        examples=["1234567890"],
    )
    #: The department's own id of the qualifying event (a checkup record, an attendance line):
    #: reporting the same record again awards nothing twice.
    record_id: RecordId = Field(examples=["HC-2026-000123"])
    #: What the program's module needs, e.g. ``{"checkup_type": "specific_health_checkup"}``.
    details: dict[str, DetailValue] = Field(default_factory=dict, max_length=20)
    #: The day of the event (Asia/Tokyo); today when left out.
    occurred_on: Day | None = None

    @model_validator(mode="after")
    def _one_resident(self) -> AwardCreate:
        if (self.resident_id is None) == (self.address_number is None):
            raise ValueError("give exactly one of resident_id and address_number")
        return self


class ResidentLookupPublic(Output):
    """The resident a department knows by address number, as the department may see them:
    nothing personal."""

    resident_id: str = Field(
        description="The resident's pseudonymous id, to award them by", examples=["res_..."]
    )
    wallet_open: bool = Field(
        description="True when the resident has a wallet open, of any point type. False: no "
        "open wallet, either none yet (their first award opens one) or every one closed "
        "(moved out, deceased)."
    )


class AwardPublic(Output):
    id: int
    program_id: str
    record_id: str
    resident_id: str
    amount: int
    fiscal_year: int
    occurred_on: date
    #: The last day the points can be spent; null: they never expire.
    valid_until: date | None
    entry_id: int
    created_at: datetime
    #: True when this record had been awarded before: nothing new was awarded.
    replayed: bool = False

    @field_validator("valid_until", mode="after")
    @classmethod
    def _never_is_null(cls, value: date | None) -> date | None:
        return None if value == NEVER else value


class ExpiryLinePublic(Output):
    valid_until: date | None = Field(description="null: the points never expire")
    amount: int


class WalletPublic(Output):
    point_type: str
    name_ja: str
    name_en: str
    unit: str
    status: str
    balance: int
    held: int
    by_expiry: list[ExpiryLinePublic]
    #: The nearest expiry within the notice window ("N pt expire on D"), or null.
    expiring_soon: ExpiryLinePublic | None
    notice_ja: str | None
    notice_en: str | None


class WalletHistoryLine(Output):
    """One entry that touched the wallet. Each payment is one line: a hold that was posted is
    not listed, the entry that posted it (kind ``payment_post``) is."""

    entry_id: int
    kind: str
    amount: int = Field(
        description="The net change to the wallet, positive when points came in; for a pending "
        "or voided hold, what it keeps or kept"
    )
    state: LineState
    at: datetime
    text_ja: str
    text_en: str


class WalletClosedPublic(Output):
    resident_id: str
    point_type: str
    status: str
    moved_to_expired: int
    entry_ids: list[int]
    closed_at: datetime | None
    closed_reason: str | None


class JobRunPublic(Output):
    id: int
    job: str
    period: str
    state: str
    trigger: str
    started_at: datetime
    finished_at: datetime | None
    counts: dict[str, int]
    outcome: str

    @field_validator("counts", mode="before")
    @classmethod
    def _parse_counts(cls, value: Any) -> Any:
        return json.loads(value) if isinstance(value, str) else value


class UploadFailure(Output):
    line: int
    code: str
    reason: str


class UploadPublic(Output):
    id: str
    program_id: str
    sha256: str
    filename: str
    status: str
    rows: int
    to_award: int
    total: int
    #: What went back to the budget when the upload ended (done, cancelled or abandoned).
    returned: int
    awarded: int
    replayed: int
    failed: int
    failures: list[UploadFailure]
    created_at: datetime
    finished_at: datetime | None

    @field_validator("failures", mode="before")
    @classmethod
    def _parse_failures(cls, value: Any) -> Any:
        return json.loads(value) if isinstance(value, str) else value


class UploadCancel(Input):
    reason: Reason = Field(examples=["the file had last year's list; a corrected one follows"])


class RowProblem(Output):
    line: int
    column: str
    reason: str


class UploadCheck(Output):
    """What an upload of the file would do; nothing is written. A file with bad rows is still
    counted: ``rows`` is every data row, ``to_award`` and ``totals`` what its good rows would
    award once the bad ones are mended (all zero when the file cannot be read at all)."""

    ok: bool
    rows: int = Field(description="The file's data rows, good or bad (blank lines not counted)")
    to_award: int = Field(description="Good rows not awarded before")
    replays: int = Field(description="Good rows awarded before, by an earlier upload or one by one")
    totals: dict[str, int] = Field(description="Points the good rows need, per fiscal year")
    errors: list[RowProblem]


# Volunteering events and check-in ---------------------------------------------------------


class EventCreate(Input):
    name: Name = Field(examples=["多摩川河川敷清掃"])
    place: Name = Field(examples=["多摩川河川敷 (狛江五本松)"])
    starts_at: Instant
    ends_at: Instant
    #: When residents may check in: from ``opens_at`` until (before) ``closes_at``.
    opens_at: Instant
    closes_at: Instant
    capacity: int = Field(ge=1, le=100_000)


class EventPublic(Output):
    id: str
    program_id: str
    name: str
    place: str
    starts_at: datetime
    ends_at: datetime
    opens_at: datetime
    closes_at: datetime
    capacity: int
    #: What each attendance earns: the program's amount.
    points_per_attendance: int
    #: Residents checked in so far.
    attendance: int
    status: str
    closed_reason: str | None


class EventAttendancePublic(Output):
    event_id: str
    attendance: int
    #: The pseudonymous ids of the residents checked in, in order of check-in.
    resident_ids: list[str]


class EventClose(Input):
    reason: Reason = Field(examples=["雨天のため中止"])


class CheckInScreen(Output):
    """The event token of the current 30-second slot, for the organizer's screen."""

    token: str
    svg: str
    #: Seconds the token is still accepted; fetch the next one before then.
    seconds_left: int


class CheckInCreate(Input):
    token: str = Field(min_length=1, max_length=300)


class CheckInPublic(Output):
    event_id: str
    event_name: str
    award_id: int
    amount: int
    #: True when the resident had checked in before: nothing new was awarded.
    replayed: bool


class JobRunQueued(Output):
    """A job run queued by the API (``POST /api/v1/finance/verify-runs``)."""

    run_id: int = Field(description="The run's id in `GET /api/v1/finance/job-runs`.")
    job: str
    period: str = Field(description="The Tokyo minute the run is for (`2026-06-01T14:03`).")
    state: str = Field(
        description="`running` (queued now, or still running), `done` or `failed` (this "
        "minute's run had finished already)."
    )
