"""Bulk awards from a CSV file: the health department's list of checkup attendees.

==============  =================================================================
module          what it does
==============  =================================================================
``reading``     the file: encodings, header, rows, what is wrong without a database
``check``       the whole file against the database, by the award rules; a plan
``upload``      the upload: its lease, setting the total aside, settling, resuming
``batches``     awarding the plan a batch at a time, set-based or row by row
``ending``      ending an unfinished upload: cancelled, or handed back by a job
==============  =================================================================

Words: the file's total is *set aside* from the budget in *clearing accounts* of the upload;
each award is *paid from* them (``issuers.awards.award(paid_from=...)``); one run at a time
has the upload's *lease*. ``issuers.bulk.upload`` tells the whole story.
"""

from issuers.bulk.check import Plan, check_file
from issuers.bulk.ending import HAND_BACK_AFTER, JOBS, UPLOAD_HANDBACK, cancel, hand_back_stale
from issuers.bulk.reading import ROWS_MAX, Row, decode, errors_csv, parse
from issuers.bulk.upload import (
    BATCH,
    LEASE,
    AwardUpload,
    UploadResult,
    UploadStatus,
    get_upload,
    upload,
)
from issuers.errors import CsvInvalid, RowError, UploadFinished, UploadInProgress

__all__ = [
    "BATCH",
    "HAND_BACK_AFTER",
    "JOBS",
    "LEASE",
    "ROWS_MAX",
    "UPLOAD_HANDBACK",
    "AwardUpload",
    "CsvInvalid",
    "Plan",
    "Row",
    "RowError",
    "UploadFinished",
    "UploadInProgress",
    "UploadResult",
    "UploadStatus",
    "cancel",
    "check_file",
    "decode",
    "errors_csv",
    "get_upload",
    "hand_back_stale",
    "parse",
    "upload",
]
