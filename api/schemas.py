"""Request and response models.

Input models refuse unknown fields and validate in pydantic's strict mode: a JSON body's values
are taken as they are, never coerced (``true``, ``"100"``, ``100.0`` and ``1e2`` are not the
integer 100; ``5`` is not the id ``"5"``). JSON has no dates nor enumerations, so the two are
let through by what JSON sends for them: a ``Day`` is exactly a ``YYYY-MM-DD`` string, and an
enumeration field annotated ``ByValue`` takes its string values (and nothing else).
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Path
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
    model_validator,
)

from points.auth import Role
from points.registry import (
    ADDRESS_NUMBER_PATTERN,
    MerchantKind,
    MerchantStatus,
    ResidentStatus,
    StaffRole,
    StaffStatus,
)

ItemT = TypeVar("ItemT")


def _plain_text(value: str) -> str:
    """No control characters (a NUL cannot even be stored on PostgreSQL) and valid Unicode."""
    if any(ord(character) < 32 or ord(character) == 127 for character in value):
        raise ValueError("control characters are not allowed")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as error:
        raise ValueError("the text is not valid Unicode") from error
    return value


PlainText = AfterValidator(_plain_text)
_ISO_DAY = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")


def _iso_day(value: Any) -> Any:
    """A day from JSON: exactly ``YYYY-MM-DD`` (not a number, not ``20260512``, not a time)."""
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not _ISO_DAY.match(value):
        raise ValueError("a day is a string YYYY-MM-DD")
    return date.fromisoformat(value)  # a ValueError for a day that does not exist


#: A calendar day in a JSON body.
Day = Annotated[date, BeforeValidator(_iso_day)]


def _iso_instant(value: Any) -> datetime:
    """An instant from JSON: an ISO 8601 string with its UTC offset (``Z`` or ``+09:00``)."""
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value
    if not isinstance(value, str):
        raise ValueError("an instant is an ISO 8601 string with its UTC offset")
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError("an instant needs its UTC offset (Z or +09:00)")
    return parsed


#: An instant in a JSON body, with its offset.
Instant = Annotated[datetime, BeforeValidator(_iso_instant)]
#: An enumeration in a JSON body: one of its string values (the only non-strict validation of
#: an input; pydantic's lax enum validator accepts the values and nothing else).
ByValue = Strict(False)
Name = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200), PlainText
]
Reason = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500), PlainText
]
#: The id pattern of every registry object (``res_...``, ``stf_...``), for paths and cursors.
ID_PATTERN = r"^[a-z]{3}_[A-Za-z0-9_-]{1,28}$"
Code = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$")]
AddressNumber = Annotated[str, StringConstraints(pattern=ADDRESS_NUMBER_PATTERN)]
ObjectId = Annotated[str, StringConstraints(pattern=ID_PATTERN)]
PathId = Annotated[str, Path(pattern=ID_PATTERN)]


class Input(BaseModel):
    """A request body: unknown fields refused, nothing coerced (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", strict=True)


class Output(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class Page(BaseModel, Generic[ItemT]):
    items: list[ItemT]
    #: Pass as ``cursor`` to get the next page; null on the last page.
    next_cursor: str | None


class DepartmentCreate(Input):
    code: Code = Field(examples=["health"])
    name_ja: Name = Field(examples=["健康推進課"])
    name_en: Name = Field(examples=["Health Promotion Division"])


class DepartmentPublic(Output):
    id: str
    code: str
    name_ja: str
    name_en: str
    created_at: datetime


class MerchantCreate(Input):
    name_ja: Name = Field(examples=["狛江珈琲店"])
    name_en: Name = Field(examples=["Komae Coffee"])
    category: Code = Field(examples=["cafe"])
    #: ``counter`` for the city's counter, which exchanges points for goods from its catalog.
    kind: Annotated[MerchantKind, ByValue] = MerchantKind.SHOP


class MerchantPublic(Output):
    id: str
    name_ja: str
    name_en: str
    category: str
    kind: MerchantKind
    status: MerchantStatus
    created_at: datetime


class MerchantStatusChange(Input):
    status: Annotated[MerchantStatus, ByValue]
    reason: Reason


class ResidentCreate(Input):
    name: Name | None = Field(default=None, examples=["狛江 花子"])
    address_number: AddressNumber | None = Field(default=None, examples=["1234567890"])
    birth_year: int | None = Field(default=None, ge=1880, le=2100, examples=[1948])
    #: True when counter staff checked the resident's identity.
    verified: bool = False


class CounterResidentCreate(Input):
    """A resident registered at the counter: identity was checked, so name and resident address
    number are required."""

    name: Name = Field(examples=["狛江 花子"])
    address_number: AddressNumber = Field(examples=["1234567890"])
    birth_year: int | None = Field(default=None, ge=1880, le=2100, examples=[1948])


class ResidentPublic(Output):
    """A resident as the resident, counter staff and admins see them."""

    id: str
    name: str | None
    address_number: str | None
    birth_year: int | None
    verification: str
    status: ResidentStatus
    erased_at: datetime | None
    created_at: datetime


class ResidentPseudonymous(Output):
    """A resident as finance sees them: the pseudonymous id, nothing personal."""

    id: str
    verification: str
    status: ResidentStatus
    created_at: datetime


class ResidentCorrection(Input):
    name: Name | None = None
    address_number: AddressNumber | None = None
    birth_year: int | None = Field(default=None, ge=1880, le=2100)
    reason: Reason


class ResidentStatusChange(Input):
    status: Annotated[ResidentStatus, ByValue]
    reason: Reason


class ReasonInput(Input):
    reason: Reason


class StaffCreate(Input):
    role: Annotated[StaffRole, ByValue]
    display_name: Name = Field(examples=["窓口 一郎"])
    merchant_id: ObjectId | None = None
    department_id: ObjectId | None = None


class StaffPublic(Output):
    id: str
    role: StaffRole
    display_name: str
    merchant_id: str | None
    department_id: str | None
    status: StaffStatus
    created_at: datetime


class StaffStatusChange(Input):
    status: Annotated[StaffStatus, ByValue]
    reason: Reason


class TokenCreate(Input):
    role: Annotated[Role, ByValue]
    principal_id: ObjectId
    label: Annotated[str, StringConstraints(max_length=200), PlainText] = ""
    lifetime_days: int | None = Field(default=None, ge=1, le=400)


class TokenPublic(Output):
    id: str
    prefix: str
    role: Role
    principal_id: str
    label: str
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None


class TokenCreated(Output):
    """A new token. ``token`` is shown this once and cannot be recovered."""

    id: str
    prefix: str
    token: str
    role: Role
    principal_id: str
    expires_at: datetime


class RevokedCount(Output):
    revoked: int


class EnrolmentCodeCreated(Output):
    """A single-use code to read to the resident or print; valid until ``expires_at``."""

    resident_id: str
    code: str
    expires_at: datetime


class EnrolmentRedeem(Input):
    code: Annotated[str, StringConstraints(min_length=4, max_length=32), PlainText] = Field(
        examples=["ABCD-EF23-45"]
    )


class WalletEnrolled(Output):
    resident_id: str
    token: str
    expires_at: datetime


class SessionStarted(Output):
    """A wallet app's session started: the token is in the HttpOnly cookie, not here."""

    resident_id: str
    expires_at: datetime


class DeviceCodeCreate(Input):
    """The device to enrol: a shop's till (`till_id`) or a member of staff (`staff_id`, e.g.
    a counter PC): exactly one of the two."""

    till_id: ObjectId | None = None
    staff_id: ObjectId | None = None
    label: Annotated[str, StringConstraints(max_length=120), PlainText] | None = Field(
        default=None,
        description="What the device is, shown in the list of sessions; by default the till "
        "and its shop, or the member of staff's name",
    )

    @model_validator(mode="after")
    def _one_device(self) -> DeviceCodeCreate:
        if (self.till_id is None) == (self.staff_id is None):
            raise ValueError("give exactly one of till_id and staff_id")
        return self


class DeviceCodeCreated(Output):
    """A single-use, 15-minute code for one device, shown this once: as text to type, and as
    a QR (`qr_svg`) of `enrol_url`, which the device's camera opens or scans."""

    code: str
    expires_at: datetime
    staff_id: str
    role: Role
    label: str
    enrol_url: str
    qr_svg: str


class DeviceCodeRedeem(Input):
    code: Annotated[str, StringConstraints(min_length=4, max_length=32), PlainText] = Field(
        examples=["ABCD-EF23-45"]
    )


class SessionPublic(Output):
    """Who the session (or bearer token) is: a resident, or a member of staff with their shop,
    till or department; `expires_at` is when it lapses unless used."""

    role: Role
    principal_id: str
    label: str
    expires_at: datetime
    merchant_id: str | None = None
    #: The shop's name in Japanese (`merchant_name`) and in English.
    merchant_name: str | None = None
    merchant_name_en: str | None = None
    till_id: str | None = None
    till_name: str | None = None
    department_id: str | None = None
    department_name_ja: str | None = None
    department_name_en: str | None = None


class DeviceSessionPublic(Output):
    """A live device session: its token (revoke it with `POST /api/v1/admin/tokens/{id}/revoke`),
    the device's label and member of staff, when it was enrolled and when it lapses unless
    used."""

    token_id: str
    token_prefix: str
    label: str
    staff_id: str
    role: Role
    enrolled_at: datetime
    expires_at: datetime


class WalletAppConfig(Output):
    self_enrolment: bool
    session_days: int
    expiry_notice_days: int
    qr_prefix: str = Field(
        description="What the text of every QR code of this city starts with "
        "(the public origin uppercased, then `/Q/`): a scanned code is sent whole",
        examples=["HTTPS://PAY.EXAMPLE.JP/Q/"],
    )


class AuditEventPublic(Output):
    sequence: int
    at: datetime
    actor_role: str
    actor_id: str
    action: str
    object_type: str
    object_id: str
    reason: str
    details: dict[str, Any]
    hash: str


class LedgerPublic(Output):
    id: int
    code: str
    name: str


class AccountPublic(Output):
    id: int
    ledger_id: int
    code: int
    normal_side: str
    owner_ref: str | None
    flags: int
    closed: bool
    debits_posted: int
    credits_posted: int
    debits_pending: int
    credits_pending: int
    posted: int
    pending: int
    available: int


class PostingPublic(Output):
    account_id: int
    side: str
    amount: int


class EntryPublic(Output):
    id: int
    ledger_id: int
    phase: str
    kind: str
    description: str
    metadata: dict[str, Any]
    effective_at: datetime
    recorded_at: datetime
    pending_id: int | None
    reverses_id: int | None
    postings: list[PostingPublic]


class HistoryLinePublic(Output):
    posting_id: int
    entry_id: int
    phase: str
    kind: str
    description: str
    side: str
    amount: int
    effective_at: datetime


class VerifyProblemPublic(Output):
    kind: str
    message: str
    entry_id: int | None
    account_id: int | None
    sequence: int | None


class VerifyResultPublic(Output):
    id: int
    at: datetime
    ok: bool
    entries: int
    accounts: int
    sealed: int
    unsealed: int
    problems: list[VerifyProblemPublic]


class Health(Output):
    status: str
    database: str | None = None
    schema_revision: str | None = None


class PublicKey(Output):
    kid: int = Field(description="The key id every token carries (2 bytes, big-endian).")
    algorithm: str = Field(description="Always `Ed25519`.")
    public_key: str = Field(description="The raw 32-byte public key, base64url without padding.")
    status: str = Field(description="`active` (signs now) or `verifying` (rotated away).")
    valid_from: datetime
    valid_until: datetime | None = Field(
        description="Always null: a published key verifies until it is retired, and a retired "
        "key is no longer published."
    )


class PublicKeySet(Output):
    keys: list[PublicKey]


class ProblemError(BaseModel):
    location: list[str]
    message: str
    type: str


class Problem(BaseModel):
    """An error (RFC 9457 problem details), served as ``application/problem+json``."""

    type: str = Field(examples=["https://komae-points.example/problems/forbidden"])
    title: str = Field(examples=["Forbidden"])
    status: int = Field(examples=[403])
    detail: str = Field(examples=["this needs the role admin"])
    code: str = Field(examples=["forbidden"])
    request_id: str | None = Field(examples=["9d03f344ba0946febb007a99a6ae319a"])
    errors: list[ProblemError] | None = None


_ERROR_DESCRIPTIONS = {
    401: "No valid token (code `unauthenticated`)",
    403: "The token's role may not do this (code `forbidden`)",
    404: "No such object, or not one the caller may see (code `not_found`)",
    409: "The object's state refuses this (for example `enrolment_code_used`)",
    413: "The request body is too large (code `request_too_large`)",
    415: "The body is not of the media type the operation takes (code `unsupported_media_type`)",
    422: "The request is not valid (code `validation_error`)",
    429: "Too many requests; see Retry-After (code `rate_limited`)",
    503: "The database is not available (code `unavailable`)",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for these error statuses, all problem+json."""
    return {
        status: {"model": Problem, "description": _ERROR_DESCRIPTIONS[status]}
        for status in statuses
    }


#: The success of a route answering a page (its errors stay problem+json).
HTML_PAGE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/html": {"schema": {"type": "string"}}}, "description": "A page"}
}
PROTECTED_ERRORS = error_responses(401, 403, 404, 409, 413, 422, 429, 503)
