"""Errors of the point domain and the application, in one hierarchy.

::

    PointsError
    ├── InvalidInput           a value is out of range or inconsistent (validation_error)
    │   └── EnrolmentCodeInvalid
    ├── Unauthenticated        no usable credential (unauthenticated)
    ├── Forbidden              the credential may not do this, or the object is not its (forbidden)
    ├── NotFound               no such object, or not one the caller may know of (not_found)
    ├── Conflict               the object's state refuses the act (conflict)
    │   ├── EnrolmentCodeUsed
    │   └── EnrolmentCodeExpired
    └── Unavailable            the database or another dependency is down (unavailable)

Ledger errors (``ledger.errors``) pass through unchanged; ``api.errors`` maps both trees to
problem+json in one place. Every error has a stable ``code``.
"""

from __future__ import annotations

from typing import Any


class PointsError(Exception):
    code = "points_error"
    status = 400
    #: A refusal of the moment (another run holds the object), not of the request: an
    #: idempotent request that met it is not answered with it for good (``points.idempotency``).
    retry_later = False

    def __init__(self, message: str, **context: Any) -> None:
        super().__init__(message)
        self.message = message
        self.context = context


class InvalidInput(PointsError):
    code = "validation_error"
    status = 422


class Unauthenticated(PointsError):
    code = "unauthenticated"
    status = 401


class Forbidden(PointsError):
    code = "forbidden"
    status = 403


class NotFound(PointsError):
    code = "not_found"
    status = 404


class Conflict(PointsError):
    code = "conflict"
    status = 409


class EnrolmentCodeUsed(Conflict):
    code = "enrolment_code_used"


class EnrolmentCodeInvalid(InvalidInput):
    code = "enrolment_code_invalid"


class EnrolmentCodeExpired(Conflict):
    code = "enrolment_code_expired"


class Unavailable(PointsError):
    code = "unavailable"
    status = 503
