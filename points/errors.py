"""Errors of the point domain and the application, in one hierarchy.

::

    PointsError
    ├── InvalidInput               a value is out of range or inconsistent (validation_error)
    │   ├── EnrolmentCodeInvalid   an enrolment code that was never issued
    │   ├── IdempotencyKeyReused   the same Idempotency-Key with another request
    │   ├── PaymentServicesActRefused  a point type the Payment Services Act would govern
    │   └── ExpiryRuleInvalid      an expiry rule that makes no sense
    ├── Unauthenticated            no usable credential (unauthenticated)
    │   └── SessionExpired         the wallet app's session lapsed unused (session_expired)
    ├── Forbidden                  the credential may not do this (forbidden)
    │   ├── CsrfRefused            a cookie session's change without the app's header or
    │   │                          from another origin (csrf_refused)
    │   └── SelfEnrolmentClosed    the city does not allow self-enrolment
    ├── NotFound                   no such object, or not one the caller may know of
    │   └── KeyNotFound            no key with this id in the key directory (key_not_found)
    ├── Conflict                   the object's state refuses the act (conflict)
    │   ├── EnrolmentCodeUsed
    │   ├── EnrolmentCodeExpired
    │   ├── RequestInProgress      the first request with this Idempotency-Key is running
    │   │                          (with ``retry_after_seconds``, sent as Retry-After)
    │   ├── PointTypeInUse         a point type a program uses cannot be deleted
    │   ├── RateFrozen             a point type's yen rate once it has a payment (rate_frozen)
    │   ├── AlreadyDone            a job's period is done already (job_period_done)
    │   ├── RunningElsewhere       another process runs the job's period (job_running)
    │   ├── LeaseLost              another process took a job's period over (job_lease_lost)
    │   ├── ProblemsFound          a checking job (verify) found problems (ledger_problems)
    │   ├── InsufficientPoints     the wallet holds too little (insufficient_balance)
    │   ├── WalletClosed           the wallet was closed (moved out, deceased)
    │   ├── WalletNotClosed        only a closed wallet can be reopened
    │   ├── WalletHasPending       a wallet with a payment in progress cannot be closed
    │   ├── ResidentNotActive      the resident is not active
    │   ├── KeyExists              ``points keys init`` where a key exists (key_exists)
    │   ├── KeyActive              the active signing key cannot be retired (key_active)
    │   └── KeyInUse               live printed tokens use the key (key_in_use)
    ├── RateLimited                too many attempts; retry after ``retry_after_seconds``
    ├── TokenRefused               a scanned QR token is refused (``points.qrtokens``)
    │   ├── TokenMalformed         not a token of ours: origin, base32, length, version, kind
    │   ├── TokenUnknownKey        signed with a key id no key directory knows
    │   ├── TokenKeyRetired        signed with a key that was retired
    │   ├── TokenSignatureInvalid  the signature does not match the bytes
    │   ├── TokenExpired           past its expiry (or its event slot) by the server's clock
    │   ├── TokenWrongKind         a kind the caller did not expect (a card for a payment)
    │   ├── TokenRevoked           its till, card or code was revoked
    │   └── TokenUsed              a once-only token that was used already
    └── Unavailable                the database or another dependency is down (unavailable)
        ├── KeyDirectoryMissing    POINTS_KEY_DIR does not exist (key_directory_missing)
        ├── NoSigningKey           no active key to sign with (no_signing_key)
        │   └── NoPinPepper        no card PIN pepper in the key directory (no_pin_pepper)
        └── KeyFileUnsafe          a key file others may read, or a broken one (key_file_unsafe)

The issuing side's refusals (programs, budgets, awards, uploads) extend ``Conflict`` and
``InvalidInput``: their tree is drawn in ``issuers.errors``. Ledger errors (``ledger.errors``)
pass through unchanged. Every error has a stable ``code`` and carries its context; what HTTP
status each kind of refusal is given is decided in one place, ``api.errors``.
``tests/test_error_tree.py`` fails when a class is missing from these drawings.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any


class PointsError(Exception):
    code = "points_error"
    #: A refusal of the moment (another run holds the object), not of the request: an
    #: idempotent request that met it is not answered with it for good (``points.idempotency``).
    retry_later = False

    def __init__(self, message: str, **context: Any) -> None:
        super().__init__(message)
        self.message = message
        self.context = context


class InvalidInput(PointsError):
    code = "validation_error"


class Unauthenticated(PointsError):
    code = "unauthenticated"


class SessionExpired(Unauthenticated):
    """The wallet app's session was not used for longer than it lasts: the resident links the
    phone again with a code from the counter."""

    code = "session_expired"


class Forbidden(PointsError):
    code = "forbidden"


class CsrfRefused(Forbidden):
    """A change sent with the wallet app's session cookie but without the app's own header, or
    from another origin: a forged cross-site request."""

    code = "csrf_refused"


class SelfEnrolmentClosed(Forbidden):
    code = "self_enrolment_closed"


class NotFound(PointsError):
    code = "not_found"


class Conflict(PointsError):
    code = "conflict"


class Unavailable(PointsError):
    code = "unavailable"


class RateLimited(PointsError):
    code = "rate_limited"

    def __init__(self, message: str, retry_after_seconds: int) -> None:
        super().__init__(message, retry_after_seconds=retry_after_seconds)
        self.retry_after_seconds = retry_after_seconds


# Registries and enrolment ----------------------------------------------------------------


class EnrolmentCodeUsed(Conflict):
    code = "enrolment_code_used"


class EnrolmentCodeInvalid(InvalidInput):
    code = "enrolment_code_invalid"


class EnrolmentCodeExpired(Conflict):
    code = "enrolment_code_expired"


# Idempotent requests (points.idempotency) --------------------------------------------------


class IdempotencyKeyReused(InvalidInput):
    code = "idempotency_key_reused"


class RequestInProgress(Conflict):
    """The first request with this key holds its claim for ``retry_after_seconds`` more (the
    API sends it as ``Retry-After``): a retry after that runs or replays it."""

    code = "request_in_progress"

    def __init__(self, message: str, *, retry_after_seconds: int) -> None:
        super().__init__(message, retry_after_seconds=retry_after_seconds)
        self.retry_after_seconds = retry_after_seconds


def seconds_until(instant: datetime, now: datetime) -> int:
    """Whole seconds from ``now`` until ``instant`` (a lease lapsing), at least 1: what a
    refusal of the moment tells the client to wait (``Retry-After``)."""
    return max(1, math.ceil((instant - now).total_seconds()))


# Point types (points.pointtypes) -----------------------------------------------------------


class PointTypeInUse(Conflict):
    code = "point_type_in_use"


class RateFrozen(Conflict):
    """The point type has a payment: its yen rate stays (a new rate means a new point type)."""

    code = "rate_frozen"


class PaymentServicesActRefused(InvalidInput):
    code = "payment_services_act"


class ExpiryRuleInvalid(InvalidInput):
    code = "expiry_rule_invalid"


# Scheduled jobs (points.jobs) ---------------------------------------------------------------


class AlreadyDone(Conflict):
    code = "job_period_done"


class RunningElsewhere(Conflict):
    code = "job_running"


class LeaseLost(Conflict):
    """The run's lease lapsed and another process took the period over: this run stops (its
    work so far stands, being idempotent; the other run finishes it)."""

    code = "job_lease_lost"


class ProblemsFound(Conflict):
    """A job that checks (``verify``) did its work and found problems: the run is recorded
    failed, with the counts it carries and this message as its outcome."""

    code = "ledger_problems"

    def __init__(self, message: str, *, counts: dict[str, int], **context: Any) -> None:
        super().__init__(message, **context)
        self.counts = counts


# Wallets and spending (points.wallets, points.spending) -----------------------------------


class InsufficientPoints(Conflict):
    code = "insufficient_balance"


class WalletClosed(Conflict):
    code = "wallet_closed"


class WalletNotClosed(Conflict):
    code = "wallet_not_closed"


class WalletHasPending(Conflict):
    code = "wallet_has_pending"


class ResidentNotActive(Conflict):
    code = "resident_not_active"


# Signing keys (points.keys) ----------------------------------------------------------------


class KeyExists(Conflict):
    code = "key_exists"


class KeyActive(Conflict):
    code = "key_active"


class KeyInUse(Conflict):
    code = "key_in_use"


class KeyNotFound(NotFound):
    code = "key_not_found"


class KeyDirectoryMissing(Unavailable):
    code = "key_directory_missing"


class NoSigningKey(Unavailable):
    code = "no_signing_key"


class NoPinPepper(NoSigningKey):
    """The key directory holds no ``pin-pepper`` (``points keys init`` writes it): card PINs can
    be neither set nor checked."""

    code = "no_pin_pepper"


class KeyFileUnsafe(Unavailable):
    code = "key_file_unsafe"


# Signed QR tokens (points.qrtokens) ---------------------------------------------------------


class TokenRefused(PointsError):
    """A scanned QR token refused; each reason is a subclass with its own code (422)."""

    code = "token_refused"


class TokenMalformed(TokenRefused):
    code = "token_malformed"


class TokenUnknownKey(TokenRefused):
    code = "token_unknown_key"


class TokenKeyRetired(TokenRefused):
    code = "token_key_retired"


class TokenSignatureInvalid(TokenRefused):
    code = "token_signature_invalid"


class TokenExpired(TokenRefused):
    code = "token_expired"


class TokenWrongKind(TokenRefused):
    code = "token_wrong_kind"


class TokenRevoked(TokenRefused):
    code = "token_revoked"


class TokenUsed(TokenRefused):
    code = "token_used"
