"""Ending an upload that will not finish: cancelled by its department, or handed back by a job.

An upload cut short (its process died, its client gave up) keeps its file's total set aside in
its clearing accounts until a run resumes it. Two acts end it instead, each settling it as a
finished run would (``issuers.bulk.upload.end_upload``): what the clearing accounts still hold
goes back to the budget (or to the city's funding, if the year was closed meanwhile), the
awards already made stand, and the upload takes a final status. Each is audited, and neither
can be undone: a cancelled or abandoned upload is not resumed (``upload_finished``).

- **Cancel** (``cancel``, ``POST /api/v1/issuer/award-uploads/{id}/cancel``): the department,
  with a reason. Refused while a run holds a live lease on the upload (``upload_in_progress``,
  with the seconds until it lapses) and for an upload already finished (``upload_finished``).
- **Hand back** (``hand_back_stale``, the ``upload_handback`` job every five minutes): an
  upload whose lease lapsed (or was let go) ``HAND_BACK_AFTER`` ago and that nobody resumed
  becomes ``abandoned``. Idempotent: each upload is locked and looked at again before it is
  ended, so a rerun, or a second run at once, ends nothing twice; an upload resumed meanwhile
  is left to its run.
"""

from __future__ import annotations

import functools
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from issuers.bulk.upload import (
    AwardUpload,
    UploadStatus,
    end_upload,
    finished_refusal,
    get_upload,
)
from issuers.errors import UploadInProgress
from points import audit
from points.access import SYSTEM
from points.auth import Principal
from points.errors import seconds_until
from points.jobs import Job, JobContext, tokyo_minute
from points.uow import unit_of_work

#: An upload nobody resumed this long after its lease lapsed is handed back: time enough for a
#: client's retries (a lease lasts seconds), short enough that a budget is not held for hours.
HAND_BACK_AFTER = timedelta(minutes=15)
#: The job looks at this many uploads per run at most (the next run takes the rest).
HAND_BACK_MAX = 100


def cancel(
    session: Session,
    actor: Principal,
    now: datetime,
    upload_id: str,
    *,
    department_id: str | None,
    reason: str,
) -> AwardUpload:
    """End the department's unfinished upload ``cancelled``; see the module docstring."""
    get_upload(session, upload_id, department_id=department_id)  # not found for others
    upload = session.exec(
        select(AwardUpload)
        .where(AwardUpload.id == upload_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one()
    if upload.status != UploadStatus.ISSUING:
        raise finished_refusal(upload)
    lease = upload.lease_expires_at
    if upload.owner is not None and lease is not None and lease > now:
        raise UploadInProgress(
            f"upload {upload.id} is being awarded by a request right now ({upload.awarded} of "
            f"{upload.to_award} rows so far); cancel it once that request has stopped",
            upload_id=upload.id,
            awarded=upload.awarded,
            to_award=upload.to_award,
            retry_after_seconds=seconds_until(lease, now),
        )
    _end(session, actor, now, upload, UploadStatus.CANCELLED, reason)
    return upload


def hand_back_stale(engine: Engine, as_of: datetime, now: datetime) -> dict[str, int]:
    """End ``abandoned`` every upload (up to ``HAND_BACK_MAX``) that nobody has held since
    ``HAND_BACK_AFTER`` before ``as_of`` (and before ``now``: a run for a later instant cannot
    take a live upload), each in a transaction of its own; counts of uploads and points."""
    cutoff = min(as_of, now) - HAND_BACK_AFTER
    stale = unit_of_work(
        engine,
        lambda session: list(
            session.exec(
                select(AwardUpload.id)
                .where(AwardUpload.status == UploadStatus.ISSUING, _idle_since(cutoff))
                .order_by(col(AwardUpload.id))
                .limit(HAND_BACK_MAX)
            )
        ),
        read_only=True,
    )
    counts = {"uploads": 0, "points": 0}
    for upload_id in stale:
        returned = unit_of_work(
            engine, functools.partial(_abandon, upload_id=upload_id, cutoff=cutoff, now=now)
        )
        if returned is not None:
            counts["uploads"] += 1
            counts["points"] += returned
    return counts


def _idle_since(cutoff: datetime) -> sa.ColumnElement[bool]:
    """The upload's lease lapsed (or was let go) at ``cutoff`` or before; an upload of before
    migration 0012 that was let go counts from its creation."""
    lease = col(AwardUpload.lease_expires_at)
    return sa.or_(
        lease <= cutoff,
        sa.and_(lease.is_(None), col(AwardUpload.created_at) <= cutoff),
    )


def _abandon(session: Session, *, upload_id: str, cutoff: datetime, now: datetime) -> int | None:
    """The points returned, or None if the upload was resumed or ended meanwhile."""
    upload = session.exec(
        select(AwardUpload)
        .where(
            AwardUpload.id == upload_id,
            AwardUpload.status == UploadStatus.ISSUING,
            _idle_since(cutoff),
        )
        .with_for_update()
    ).first()
    if upload is None:
        return None
    reason = (
        f"no request resumed it within {HAND_BACK_AFTER.total_seconds() / 60:g} minutes of its "
        "lease lapsing"
    )
    return _end(session, SYSTEM, now, upload, UploadStatus.ABANDONED, reason)


def _end(
    session: Session,
    actor: Principal,
    now: datetime,
    upload: AwardUpload,
    status: UploadStatus,
    reason: str,
) -> int:
    returned = end_upload(session, now, upload, status)
    cancelled = status == UploadStatus.CANCELLED
    audit.record(
        session,
        actor=actor,
        action="award_upload.cancel" if cancelled else "award_upload.abandon",
        object_type="award_upload",
        object_id=upload.id,
        at=now,
        reason=reason,
        details={
            "program_id": upload.program_id,
            "awarded": upload.awarded,
            "to_award": upload.to_award,
            "returned": returned,
        },
    )
    return returned


def _hand_back_job(context: JobContext) -> dict[str, int]:
    context.progress(0, 1)
    now = context.clock() if context.clock is not None else context.as_of
    counts = hand_back_stale(context.engine, context.as_of, now)
    context.progress(1, 1)
    return counts


UPLOAD_HANDBACK = Job(
    "upload_handback",
    "hand back the set-aside rest of uploads nobody resumed after their lease lapsed",
    tokyo_minute,
    _hand_back_job,
    {"trigger": "cron", "minute": "*/5"},
    frequent=True,
)

#: The jobs of bulk uploads, registered by the application shell (``points.shell.wiring``).
JOBS = (UPLOAD_HANDBACK,)
