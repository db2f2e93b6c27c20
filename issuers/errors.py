"""The refusals of the issuing side: programs, budgets, awards and bulk uploads.

They extend the tree drawn in ``points.errors`` (each code is stable; ``api.errors`` decides
every HTTP status, by the base class)::

    Conflict
    ├── ProgramNotActive       the program is draft, paused or closed (program_not_active)
    ├── BudgetClosed           the fiscal year's budget was decided (budget_closed)
    ├── BudgetExhausted        the budget has too little left (budget_exhausted, remaining)
    ├── FiscalYearNotEnded     a year-end decision before the year ended
    ├── StatusChangeRefused    a program status change the lifecycle does not allow
    ├── RecordIdReused         a record id awarded before for another event
    ├── AlreadyAwarded         a once-key claimed before (already_awarded)
    ├── CapExceeded            a cap per day, month or fiscal year (cap_exceeded)
    ├── UploadInProgress       another run is awarding the same file (upload_in_progress)
    ├── UploadFinished         the upload is done, cancelled or abandoned (upload_finished)
    ├── EventClosed            a check-in at a volunteering event closed early (event_closed)
    ├── OutsideCheckInWindow   a check-in before or after the event's window
    └── EventFull              a check-in beyond the event's capacity (event_full)
    InvalidInput
    ├── OutsideProgramWindow   the event's date is outside the program's window, or future
    ├── FiscalYearOutsideProgram  an allocation for a year the program does not run in
    └── CsvInvalid             an uploaded file has bad rows (csv_invalid, every row's problem)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from points.errors import Conflict, InvalidInput


@dataclass(frozen=True, slots=True)
class RowError:
    """A problem found in one row of an uploaded file (line 1 is the header)."""

    line: int
    column: str
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"line": self.line, "column": self.column, "reason": self.reason}


class ProgramNotActive(Conflict):
    code = "program_not_active"


class BudgetClosed(Conflict):
    code = "budget_closed"


class BudgetExhausted(Conflict):
    code = "budget_exhausted"


class FiscalYearNotEnded(Conflict):
    code = "fiscal_year_not_ended"


class StatusChangeRefused(Conflict):
    code = "status_change_refused"


class RecordIdReused(Conflict):
    code = "record_id_reused"


class AlreadyAwarded(Conflict):
    code = "already_awarded"


class CapExceeded(Conflict):
    code = "cap_exceeded"


class UploadInProgress(Conflict):
    """Another run is awarding this file: look at the upload (``upload_id``) for its progress,
    or upload the file again later (its lease lapses in ``retry_after_seconds``, sent as
    ``Retry-After``). A refusal of the moment, not of the request: an idempotent request that
    met it may be retried with the same key."""

    code = "upload_in_progress"
    retry_later = True


class UploadFinished(Conflict):
    """The upload has a final status (``upload_status``): it cannot be cancelled, and a cancelled or
    abandoned one cannot be resumed (a file of the rows it did not award is a new upload)."""

    code = "upload_finished"


class EventClosed(Conflict):
    code = "event_closed"


class OutsideCheckInWindow(Conflict):
    code = "outside_check_in_window"


class EventFull(Conflict):
    code = "event_full"


class OutsideProgramWindow(InvalidInput):
    code = "outside_program_window"


class FiscalYearOutsideProgram(InvalidInput):
    """A budget for a fiscal year the program's dates do not reach, or beyond next year."""

    code = "fiscal_year_outside_program"


class CsvInvalid(InvalidInput):
    """Every problem found in an uploaded file (the first thousand travel with the refusal)."""

    code = "csv_invalid"
    SHOWN_MAX = 1000

    def __init__(self, errors: list[RowError]) -> None:
        shown = errors[: self.SHOWN_MAX]
        super().__init__(
            f"the file has {len(errors)} problem(s); nothing was awarded. First: line "
            f"{errors[0].line}, {errors[0].column}: {errors[0].reason}",
            errors=[error.as_dict() for error in shown],
            error_count=len(errors),
        )
        self.errors = errors
