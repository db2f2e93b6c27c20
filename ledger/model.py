"""The ledger's value types and pure rules; no database, no I/O.

These rules are exercised by unit tests without a database. The write path's planning
(``ledger.planning``) applies them to the rows the storage layer (``ledger.store``,
``ledger.recording``) has locked, and the database's CHECK constraints and triggers hold the
same rules once more, so that a bug here cannot write a wrong state.

Instants: the application passes the clock in. An instant is an aware ``datetime``; it is stored
as an integer count of microseconds since the Unix epoch, UTC (``*_at_us`` columns). Integers are
exact, sort correctly, hash the same on every platform, and mean the same on SQLite (which keeps
no time zone) and PostgreSQL.

Over 600 lines because it is the ledger's whole vocabulary (values, flags, phases, the entry's
canonical bytes) and its per-entry rules in one place; each part is small and they are read
together.
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]
from typing import Any

from ledger.errors import (
    CreditsExceedDebits,
    InsufficientFunds,
    InvalidAmount,
    InvalidField,
    InvalidMetadata,
    TotalOverflow,
    UnbalancedEntry,
)

#: Largest amount or total: amounts and totals are signed 64-bit integers in both databases.
MAX_AMOUNT = 2**63 - 1
#: Canonical JSON metadata is at most this many UTF-8 bytes.
METADATA_MAX_BYTES = 4096
#: Metadata nests at most this deep.
METADATA_MAX_DEPTH = 8
#: An entry has at most this many postings.
POSTINGS_PER_ENTRY_MAX = 64
#: A batch has at most this many entries.
BATCH_ENTRIES_MAX = 8192
KIND_MAX_LENGTH = 64
DESCRIPTION_MAX_LENGTH = 500
NAMESPACE_MAX_LENGTH = 128
IDEMPOTENCY_KEY_MAX_LENGTH = 255
OWNER_REF_MAX_LENGTH = 128
#: A history page holds at most this many lines.
PAGE_LIMIT_MAX = 1000


class Side(enum.IntEnum):
    """The side of a posting; stored as 1 (debit) and 2 (credit)."""

    DEBIT = 1
    CREDIT = 2

    @property
    def opposite(self) -> Side:
        return Side.CREDIT if self is Side.DEBIT else Side.DEBIT


class AccountFlags(enum.IntFlag):
    """Account flags, stored as an integer bit set and held by CHECK constraints."""

    NONE = 0
    #: ``debits_posted + debits_pending <= credits_posted`` (a wallet, a budget: never below zero).
    DEBITS_MUST_NOT_EXCEED_CREDITS = 1
    #: ``credits_posted + credits_pending <= debits_posted``.
    CREDITS_MUST_NOT_EXCEED_DEBITS = 2


class Phase(enum.IntEnum):
    """What an entry does to totals; stored as an integer.

    A *posted* entry moves posted totals. A *pending* entry (a hold) moves pending totals only,
    and is later resolved by a *post_pending* entry (moves the posted amounts, releases the hold)
    or a *void_pending* entry (releases the hold, has no postings of its own).
    """

    POSTED = 0
    PENDING = 1
    POST_PENDING = 2
    VOID_PENDING = 3


class BatchMode(enum.Enum):
    ATOMIC = "atomic"
    INDEPENDENT = "independent"


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_us(instant: datetime) -> int:
    """An aware datetime as integer microseconds since the epoch, UTC."""
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise InvalidField("instants must carry a time zone", value=str(instant))
    delta = instant - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_us(microseconds: int) -> datetime:
    return EPOCH + timedelta(microseconds=microseconds)


def _json_writer(*, sort_keys: bool) -> Callable[[Any], str]:
    """Compact JSON, UTF-8 text left as is, exactly as ``json.dumps(value, sort_keys=...,
    separators=(",", ":"), ensure_ascii=False)`` writes it, for documents without cycles.

    ``json.dumps`` and ``JSONEncoder.encode`` build a new C encoder on every call, which cost
    more than encoding a small document (half of checking an entry's metadata and digest); this
    builds it once. ``tests/test_model.py`` holds it to ``json.dumps``'s text (stored request
    digests depend on it). Without the C accelerator, it is ``JSONEncoder.encode``."""
    if c_make_encoder is None:  # pragma: no cover - CPython has it
        return json.JSONEncoder(
            sort_keys=sort_keys, separators=(",", ":"), ensure_ascii=False
        ).encode
    # markers None: no cycle detection (these documents are flat or built here).
    encoder = c_make_encoder(None, None, encode_basestring, None, ":", ",", sort_keys, False, True)
    return lambda value: "".join(encoder(value, 0))


_canonical = _json_writer(sort_keys=True)
_compact = _json_writer(sort_keys=False)


def canonical_json(value: Any) -> str:
    """Metadata as canonical JSON: sorted keys, no spaces, UTF-8, no floats, bounded size."""
    if _is_flat(value):
        text = _canonical(value)
    else:
        _check_json_value(value, depth=0)  # depth-bounded, so no cycles either
        text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    try:
        # Also the check for lone surrogates, in keys and text alike: they cannot be encoded.
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidMetadata(
            "metadata text and keys must be valid Unicode (no lone surrogates)"
        ) from None
    if size > METADATA_MAX_BYTES:
        raise InvalidMetadata(
            f"metadata is {size} bytes; the limit is {METADATA_MAX_BYTES}",
            size_bytes=size,
            limit_bytes=METADATA_MAX_BYTES,
        )
    return text


def _is_flat(value: Any) -> bool:
    """A dict of text keys and plain values (text, 64-bit integers, booleans, None): what
    entries almost always carry, accepted in one loop (anything else is checked in depth)."""
    if type(value) is not dict:
        return False
    for key, item in value.items():
        kind = type(item)
        if type(key) is not str or not (
            kind is str
            or item is None
            or kind is bool
            or (kind is int and -MAX_AMOUNT <= item <= MAX_AMOUNT)
        ):
            return False
    return True


def _check_json_value(value: Any, depth: int) -> None:
    if depth > METADATA_MAX_DEPTH:
        raise InvalidMetadata(f"metadata nests deeper than {METADATA_MAX_DEPTH} levels")
    if value is None or isinstance(value, (bool, str)):
        return  # text is checked whole, encoded, by canonical_json
    if isinstance(value, int):
        if abs(value) > MAX_AMOUNT:
            raise InvalidMetadata("metadata integers must fit in 64 bits")
        return
    if isinstance(value, float):
        raise InvalidMetadata(
            "metadata must not hold floats (write amounts as integers, decimals as strings)"
        )
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidMetadata("metadata keys must be strings")
            _check_json_value(item, depth + 1)
        return
    if isinstance(value, list | tuple):
        for item in value:
            _check_json_value(item, depth + 1)
        return
    raise InvalidMetadata(f"metadata cannot hold a {type(value).__name__}")


def check_amount(amount: object) -> int:
    # bool is an int subclass; True is not an amount.
    if type(amount) is not int:
        raise InvalidAmount(
            f"amounts are integers; got {type(amount).__name__}", amount=repr(amount)
        )
    if not 0 < amount <= MAX_AMOUNT:
        raise InvalidAmount(f"amount {amount} is outside 1 .. 2**63-1", amount=amount)
    return amount


def check_text(name: str, value: object, max_length: int, *, allow_empty: bool = False) -> str:
    # The common case (short printable ASCII) answered without a scan per character.
    if (
        type(value) is str
        and 0 < len(value) <= max_length
        and value.isascii()
        and value.isprintable()
    ):
        return value
    if allow_empty and value == "":
        return value
    if not isinstance(value, str):
        raise InvalidField(f"{name} must be a string", field=name)
    if (not value and not allow_empty) or len(value) > max_length:
        raise InvalidField(
            f"{name} must be {'0' if allow_empty else '1'} to {max_length} characters",
            field=name,
        )
    if any(ord(character) < 32 for character in value) and name != "description":
        raise InvalidField(f"{name} must not contain control characters", field=name)
    if "\x00" in value:
        raise InvalidField(f"{name} must not contain NUL", field=name)
    if not _encodable(value):
        raise InvalidField(f"{name} must be valid Unicode (no lone surrogates)", field=name)
    return value


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class Posting:
    """One line of an entry: ``amount`` (an integer > 0) on ``side`` of ``account_id``."""

    account_id: int
    side: Side
    amount: int


@dataclass(frozen=True, slots=True)
class NewEntry:
    """An entry as a caller asks for it.

    ``namespace`` and ``idempotency_key`` go together: the key is unique within the namespace
    (the caller's), and a repeat with the same content returns the original entry.
    ``effective_at`` defaults to the ledger's clock; a server-set time is not part of the content.
    """

    postings: Sequence[Posting]
    kind: str = "transfer"
    description: str = ""
    metadata: Mapping[str, Any] = field(default_factory=dict)
    effective_at: datetime | None = None
    namespace: str | None = None
    idempotency_key: str | None = None
    pending: bool = False
    timeout_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ValidEntry:
    """A ``NewEntry`` after the pure checks: canonical metadata, checked amounts, a digest."""

    postings: tuple[Posting, ...]
    kind: str
    description: str
    metadata: dict[str, Any]
    metadata_json: str
    effective_at_us: int | None
    namespace: str | None
    idempotency_key: str | None
    phase: Phase
    timeout_at_us: int | None
    pending_id: int | None
    reverses_id: int | None
    #: SHA-256 of the request, for idempotency; None when the entry has no idempotency key.
    content_digest: bytes | None


def validate_entry(
    entry: NewEntry,
    *,
    phase: Phase | None = None,
    pending_id: int | None = None,
    reverses_id: int | None = None,
) -> ValidEntry:
    """Check everything that needs no database; raise a typed error or return a ``ValidEntry``."""
    if phase is None:
        phase = Phase.PENDING if entry.pending else Phase.POSTED
    kind = check_text("kind", entry.kind, KIND_MAX_LENGTH)
    description = check_text(
        "description", entry.description, DESCRIPTION_MAX_LENGTH, allow_empty=True
    )
    if (entry.namespace is None) != (entry.idempotency_key is None):
        raise InvalidField("namespace and idempotency_key are given together or not at all")
    if entry.namespace is not None:
        check_text("namespace", entry.namespace, NAMESPACE_MAX_LENGTH)
        check_text("idempotency_key", entry.idempotency_key, IDEMPOTENCY_KEY_MAX_LENGTH)
    metadata_json = canonical_json(dict(entry.metadata)) if entry.metadata else "{}"
    postings = tuple(entry.postings)
    if phase is Phase.VOID_PENDING:
        if postings:
            raise InvalidField("a void entry has no postings")
    elif len(postings) < 2:
        raise InvalidField("an entry needs at least two postings", postings=len(postings))
    if len(postings) > POSTINGS_PER_ENTRY_MAX:
        raise InvalidField(
            f"an entry has at most {POSTINGS_PER_ENTRY_MAX} postings", postings=len(postings)
        )
    debits = credits = 0
    for posting in postings:
        if not isinstance(posting, Posting):
            raise InvalidField("postings must be ledger.Posting values")
        if type(posting.account_id) is not int or posting.account_id <= 0:
            raise InvalidField(
                "account ids are positive integers", account_id=repr(posting.account_id)
            )
        if not isinstance(posting.side, Side):
            raise InvalidField("side must be Side.DEBIT or Side.CREDIT", side=repr(posting.side))
        amount = check_amount(posting.amount)
        if posting.side is Side.DEBIT:
            debits += amount
        else:
            credits += amount
    if debits != credits:
        raise UnbalancedEntry(debits, credits)
    if debits > MAX_AMOUNT:
        raise InvalidAmount("the total of an entry must fit in 64 bits", total=debits)
    effective_at_us = to_us(entry.effective_at) if entry.effective_at is not None else None
    timeout_at_us = to_us(entry.timeout_at) if entry.timeout_at is not None else None
    if timeout_at_us is not None and phase is not Phase.PENDING:
        raise InvalidField("only a pending entry has a timeout")
    # The digest is only ever compared between requests with the same idempotency key.
    digest = (
        None
        if entry.idempotency_key is None
        else content_digest(
            kind=kind,
            description=description,
            metadata_json=metadata_json,
            effective_at_us=effective_at_us,
            phase=phase,
            timeout_at_us=timeout_at_us,
            pending_id=pending_id,
            reverses_id=reverses_id,
            postings=postings,
        )
    )
    return ValidEntry(
        postings=postings,
        kind=kind,
        description=description,
        metadata=dict(entry.metadata) if entry.metadata else {},
        metadata_json=metadata_json,
        effective_at_us=effective_at_us,
        namespace=entry.namespace,
        idempotency_key=entry.idempotency_key,
        phase=phase,
        timeout_at_us=timeout_at_us,
        pending_id=pending_id,
        reverses_id=reverses_id,
        content_digest=digest,
    )


def content_digest(
    *,
    kind: str,
    description: str,
    metadata_json: str,
    effective_at_us: int | None,
    phase: Phase,
    timeout_at_us: int | None,
    pending_id: int | None,
    reverses_id: int | None,
    postings: Sequence[Posting],
) -> bytes:
    """SHA-256 of what the caller asked for; equal digests mean "the same request".

    A server-set effective time is ``None`` here, so a retry some seconds later still matches.
    """
    document = [
        kind,
        description,
        metadata_json,
        effective_at_us,
        int(phase),
        timeout_at_us,
        pending_id,
        reverses_id,
        [[p.account_id, int(p.side), p.amount] for p in postings],
    ]
    return hashlib.sha256(_compact(document).encode("utf-8")).digest()


@dataclass(slots=True)
class Totals:
    """The four maintained totals of one account, with its flags, for applying deltas."""

    account_id: int
    flags: int
    debits_posted: int
    credits_posted: int
    debits_pending: int
    credits_pending: int

    def copy(self) -> Totals:
        return Totals(
            self.account_id,
            self.flags,
            self.debits_posted,
            self.credits_posted,
            self.debits_pending,
            self.credits_pending,
        )

    def apply(self, delta: Delta) -> None:
        """Add ``delta`` and check the flags and the 64-bit limit; raise before changing.

        On the hot path of every write (once per account and batch): plain integer tests, the
        error's detail worked out only when something is wrong."""
        debits_posted = self.debits_posted + delta.debits_posted
        credits_posted = self.credits_posted + delta.credits_posted
        debits_pending = self.debits_pending + delta.debits_pending
        credits_pending = self.credits_pending + delta.credits_pending
        debits = debits_posted + debits_pending
        credits = credits_posted + credits_pending
        if (
            debits > MAX_AMOUNT
            or credits > MAX_AMOUNT
            or debits_posted > MAX_AMOUNT
            or credits_posted > MAX_AMOUNT
        ):
            for name, value in (
                ("debits_posted", debits_posted),
                ("credits_posted", credits_posted),
                ("debits_pending", debits_pending),
                ("credits_pending", credits_pending),
                ("debits_posted + debits_pending", debits),
                ("credits_posted + credits_pending", credits),
            ):
                if value > MAX_AMOUNT:
                    raise TotalOverflow(self.account_id, name)
        assert min(debits_posted, credits_posted, debits_pending, credits_pending) >= 0, (
            f"a total of account {self.account_id} would go negative"
        )
        flags = self.flags
        if (
            flags & _DEBITS_MUST_NOT_EXCEED_CREDITS
            and debits > credits_posted
            and (delta.debits_posted > 0 or delta.debits_pending > 0 or delta.credits_posted < 0)
        ):
            raise InsufficientFunds(
                account_id=self.account_id,
                available=max(0, self.credits_posted - self.debits_posted - self.debits_pending),
                requested=delta.debits_posted + delta.debits_pending - delta.credits_posted,
            )
        if (
            flags & _CREDITS_MUST_NOT_EXCEED_DEBITS
            and credits > debits_posted
            and (delta.credits_posted > 0 or delta.credits_pending > 0 or delta.debits_posted < 0)
        ):
            raise CreditsExceedDebits(
                account_id=self.account_id,
                available=max(0, self.debits_posted - self.credits_posted - self.credits_pending),
                requested=delta.credits_posted + delta.credits_pending - delta.debits_posted,
            )
        self.debits_posted = debits_posted
        self.credits_posted = credits_posted
        self.debits_pending = debits_pending
        self.credits_pending = credits_pending


_DEBITS_MUST_NOT_EXCEED_CREDITS = int(AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS)
_CREDITS_MUST_NOT_EXCEED_DEBITS = int(AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS)


@dataclass(slots=True)
class Delta:
    """A change to the four totals of one account."""

    debits_posted: int = 0
    credits_posted: int = 0
    debits_pending: int = 0
    credits_pending: int = 0

    def add(self, other: Delta) -> None:
        self.debits_posted += other.debits_posted
        self.credits_posted += other.credits_posted
        self.debits_pending += other.debits_pending
        self.credits_pending += other.credits_pending

    def is_zero(self) -> bool:
        return not (
            self.debits_posted or self.credits_posted or self.debits_pending or self.credits_pending
        )


def posting_delta(side: Side, amount: int, *, pending: bool) -> Delta:
    if pending:
        return Delta(debits_pending=amount) if side is Side.DEBIT else Delta(credits_pending=amount)
    return Delta(debits_posted=amount) if side is Side.DEBIT else Delta(credits_posted=amount)


@dataclass(frozen=True, slots=True)
class Balance:
    """An account's totals and what they mean, signed by the account's normal side.

    For a credit-normal account (a wallet bucket): ``posted = credits_posted - debits_posted``,
    ``pending`` is the net pending movement, and ``available = posted - debits_pending``: what a
    new debit may still take. Debit-normal accounts mirror this.
    """

    account_id: int
    normal_side: Side
    debits_posted: int
    credits_posted: int
    debits_pending: int
    credits_pending: int

    @property
    def posted(self) -> int:
        if self.normal_side is Side.CREDIT:
            return self.credits_posted - self.debits_posted
        return self.debits_posted - self.credits_posted

    @property
    def pending(self) -> int:
        if self.normal_side is Side.CREDIT:
            return self.credits_pending - self.debits_pending
        return self.debits_pending - self.credits_pending

    @property
    def available(self) -> int:
        if self.normal_side is Side.CREDIT:
            return self.credits_posted - self.debits_posted - self.debits_pending
        return self.debits_posted - self.credits_posted - self.credits_pending


@dataclass(frozen=True, slots=True)
class LedgerInfo:
    id: int
    code: str
    name: str


@dataclass(frozen=True, slots=True)
class Account:
    id: int
    ledger_id: int
    code: int
    normal_side: Side
    owner_ref: str | None
    flags: AccountFlags
    closed: bool
    debits_posted: int
    credits_posted: int
    debits_pending: int
    credits_pending: int
    created_at: datetime

    @property
    def balance(self) -> Balance:
        return Balance(
            self.id,
            self.normal_side,
            self.debits_posted,
            self.credits_posted,
            self.debits_pending,
            self.credits_pending,
        )


@dataclass(frozen=True, slots=True)
class Entry:
    """A recorded entry, immutable."""

    id: int
    ledger_id: int
    phase: Phase
    kind: str
    description: str
    metadata: dict[str, Any]
    effective_at: datetime
    recorded_at: datetime
    namespace: str | None
    idempotency_key: str | None
    timeout_at: datetime | None
    pending_id: int | None
    reverses_id: int | None
    postings: tuple[Posting, ...]


@dataclass(frozen=True, slots=True)
class HistoryLine:
    """One posting of an account, with its entry, for an account's history."""

    posting_id: int
    entry_id: int
    phase: Phase
    kind: str
    description: str
    side: Side
    amount: int
    effective_at: datetime
    recorded_at: datetime


@dataclass(frozen=True, slots=True)
class Page:
    items: list[HistoryLine]
    #: Pass back to get the next (older) page; ``None`` when there is none.
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class EntryResult:
    """One entry's outcome in an independent batch: an ``entry`` or an ``error``."""

    index: int
    entry: Entry | None
    error: Exception | None
    #: True when the idempotency key matched an entry recorded earlier; nothing was posted.
    replayed: bool = False
