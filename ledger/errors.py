"""Every error the ledger raises, in one hierarchy.

Operating errors (expected failures a caller must handle) are typed and carry their context, so
that the API layer can map each to a stable problem+json code in one place. Programmer errors
(broken invariants inside the ledger) are ``AssertionError`` and are never caught here.

::

    LedgerError
    ├── InvalidRequest                 the request itself is malformed; nothing was read or written
    │   ├── InvalidAmount              an amount is not an integer in 1 .. 2**63-1
    │   ├── UnbalancedEntry            debits and credits of an entry differ
    │   ├── InvalidMetadata            not canonical-JSON-able, holds a float, or too large
    │   ├── InvalidField               a name, key, side, code or limit is out of range
    │   └── MixedLedgers               an entry names accounts of two ledgers
    ├── NotFound
    │   ├── LedgerNotFound
    │   ├── AccountNotFound
    │   └── EntryNotFound
    ├── Refused                        the request is well formed but the ledger's state refuses it
    │   ├── AccountClosed
    │   ├── AccountHasPending          an account with pending totals cannot be closed
    │   ├── DuplicateLedger            a ledger with that code exists already
    │   ├── FlagViolation              an account flag would be broken
    │   │   ├── InsufficientFunds      debits would exceed credits
    │   │   └── CreditsExceedDebits    credits would exceed debits
    │   ├── TotalOverflow              a maintained total would pass 2**63-1
    │   ├── IdempotencyConflict        the same key was used with different content
    │   ├── ConstraintViolation        the database itself refused a write (a rule held twice)
    │   ├── HoldError                  (holds: see ledger.holds)
    │   │   ├── HoldNotPending         the entry is not a pending entry
    │   │   ├── HoldAlreadyResolved    the hold was posted or voided already
    │   │   ├── HoldExpired            the hold's timeout has passed
    │   │   └── HoldAmountExceeded     a post asks for more than was held
    │   └── ReversalError
    │       ├── AlreadyReversed
    │       └── NotReversible          a pending entry, a resolution or a reversal
    ├── BatchRejected                  an atomic batch failed; carries the index and the cause
    └── StorageError                   the database failed in a way retries did not cure
        └── SchemaError                the database is not at the expected schema
"""

from __future__ import annotations

from typing import Any


class LedgerError(Exception):
    """Base of every error the ledger raises on purpose."""

    #: A stable, machine-readable code (snake_case) for the API's problem+json ``code`` field.
    code = "ledger_error"

    def __init__(self, message: str, **context: Any) -> None:
        super().__init__(message)
        self.message = message
        self.context: dict[str, Any] = context

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"


class InvalidRequest(LedgerError):
    code = "invalid_request"


class InvalidAmount(InvalidRequest):
    code = "invalid_amount"


class UnbalancedEntry(InvalidRequest):
    code = "unbalanced_entry"

    def __init__(self, debits: int, credits: int) -> None:
        super().__init__(
            f"entry is unbalanced: debits {debits} != credits {credits}",
            debits=debits,
            credits=credits,
        )
        self.debits = debits
        self.credits = credits


class InvalidMetadata(InvalidRequest):
    code = "invalid_metadata"


class InvalidField(InvalidRequest):
    code = "invalid_field"


class MixedLedgers(InvalidRequest):
    code = "mixed_ledgers"

    def __init__(self, ledger_ids: list[int]) -> None:
        super().__init__(
            f"an entry must stay within one ledger; it names ledgers {sorted(ledger_ids)}",
            ledger_ids=sorted(ledger_ids),
        )


class NotFound(LedgerError):
    code = "not_found"


class LedgerNotFound(NotFound):
    code = "ledger_not_found"


class AccountNotFound(NotFound):
    code = "account_not_found"

    def __init__(self, account_id: int) -> None:
        super().__init__(f"account {account_id} does not exist", account_id=account_id)
        self.account_id = account_id


class EntryNotFound(NotFound):
    code = "entry_not_found"


class Refused(LedgerError):
    code = "refused"


class DuplicateLedger(Refused):
    code = "duplicate_ledger"


class AccountClosed(Refused):
    code = "account_closed"

    def __init__(self, account_id: int) -> None:
        super().__init__(f"account {account_id} is closed", account_id=account_id)
        self.account_id = account_id


class AccountHasPending(Refused):
    code = "account_has_pending"

    def __init__(self, account_id: int, debits_pending: int, credits_pending: int) -> None:
        super().__init__(
            f"account {account_id} cannot be closed while holds are pending "
            f"(debits pending {debits_pending}, credits pending {credits_pending})",
            account_id=account_id,
            debits_pending=debits_pending,
            credits_pending=credits_pending,
        )
        self.account_id = account_id


class FlagViolation(Refused):
    code = "flag_violation"

    def __init__(self, message: str, *, account_id: int, available: int, requested: int) -> None:
        super().__init__(message, account_id=account_id, available=available, requested=requested)
        self.account_id = account_id
        self.available = available
        self.requested = requested


class InsufficientFunds(FlagViolation):
    """Debits (posted and pending) would exceed posted credits of a flagged account."""

    code = "insufficient_funds"

    def __init__(self, *, account_id: int, available: int, requested: int) -> None:
        super().__init__(
            f"account {account_id} has {available} available, {requested} requested",
            account_id=account_id,
            available=available,
            requested=requested,
        )


class CreditsExceedDebits(FlagViolation):
    """Credits (posted and pending) would exceed posted debits of a flagged account."""

    code = "credits_exceed_debits"

    def __init__(self, *, account_id: int, available: int, requested: int) -> None:
        super().__init__(
            f"account {account_id} may take {available} more credits, {requested} requested",
            account_id=account_id,
            available=available,
            requested=requested,
        )


class TotalOverflow(Refused):
    code = "total_overflow"

    def __init__(self, account_id: int, total: str) -> None:
        super().__init__(
            f"{total} of account {account_id} would exceed 2**63-1",
            account_id=account_id,
            total=total,
        )


class IdempotencyConflict(Refused):
    code = "idempotency_conflict"

    def __init__(self, namespace: str, key: str, entry_id: int | None) -> None:
        super().__init__(
            f"idempotency key {key!r} in namespace {namespace!r} was used for a different entry",
            namespace=namespace,
            key=key,
            entry_id=entry_id,
        )
        self.entry_id = entry_id


class ConstraintViolation(Refused):
    """The database refused a write that the ledger's own checks let through.

    The ledger checks every rule before it writes, so this means a second writer bypassed the
    ledger (raw SQL) or a bug; the database's constraints held, and nothing was written.
    """

    code = "constraint_violation"

    def __init__(self, constraint: str, detail: str) -> None:
        super().__init__(
            f"the database refused the write ({constraint}): {detail}",
            constraint=constraint,
        )
        self.constraint = constraint


class HoldError(Refused):
    code = "hold_error"


class HoldNotPending(HoldError):
    code = "hold_not_pending"


class HoldAlreadyResolved(HoldError):
    code = "hold_already_resolved"


class HoldExpired(HoldError):
    code = "hold_expired"


class HoldAmountExceeded(HoldError):
    code = "hold_amount_exceeded"


class ReversalError(Refused):
    code = "reversal_error"


class AlreadyReversed(ReversalError):
    code = "already_reversed"


class NotReversible(ReversalError):
    code = "not_reversible"


class BatchRejected(LedgerError):
    """An atomic batch was refused as a whole because of one entry; nothing was written."""

    code = "batch_rejected"

    def __init__(self, index: int, cause: LedgerError) -> None:
        super().__init__(
            f"batch rejected at entry {index}: {cause.message}",
            index=index,
            cause_code=cause.code,
            **cause.context,
        )
        self.index = index
        self.cause = cause


class StorageError(LedgerError):
    code = "storage_error"


class SchemaError(StorageError):
    code = "schema_error"
