"""Idempotency keys for value-moving requests, with claims and leases.

The semantics are Stripe's and the IETF draft's. A request carries an ``Idempotency-Key``; keys
are namespaced by the calling principal, so two callers never collide.

1. **Claim.** In a short transaction of its own, the key is claimed: a row
   ``(namespace, key, request_hash, state='in_progress', lease_owner, lease_expires_at)`` is
   committed. A duplicate arriving while the lease holds is told ``request_in_progress`` (409).
   A lease that lapsed (the process that held it died) is taken over by a conditional update.
   ``request_in_progress`` says how long the lease lasts (``retry_after_seconds``, and the API's
   ``Retry-After`` header), so a client knows when a retry can take it over.
2. **Work.** The work and its stored result (status and body) commit *together*, in one
   transaction with the ledger entries: the result row is updated only ``WHERE lease_owner =``
   this claim, so a claimant whose lease was taken over cannot also commit.
3. **Replay.** The same key with the same request returns the stored result, also after a
   restart; the same key with a different request is ``idempotency_key_reused`` (422).

Work that commits in transactions of its own (a bulk upload, batch by batch; ``own_transactions``)
may run for minutes. Its claim is not given a lease that long, which a dead process would hold
for as long: it is leased for ``RENEWED_LEASE`` and the work renews it as it proceeds (``renew``,
called between batches), so a live upload keeps its claim and a dead one's lapses in seconds.

A domain refusal (a 4xx the work raised) is stored as the result too: the same request always
gets the same answer. An unexpected failure releases the claim, so a retry runs the work again.
Validation failures never reach the claim. Records older than the retention period are purged.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Field, Session, SQLModel, select

from ledger.errors import ConstraintViolation, LedgerError, StorageError
from points.errors import (
    IdempotencyKeyReused,
    InvalidInput,
    PointsError,
    RequestInProgress,
    seconds_until,
)
from points.sqlbase import UTCDateTime
from points.uow import unit_of_work

KEY_MAX_LENGTH = 255
LEASE_DEFAULT = timedelta(seconds=30)
#: The lease of a claim whose work renews it as it proceeds (``own_transactions``): how long a
#: retry waits for a claim whose process died. It covers the longest step between two renewals
#: (checking a 100,000-row file takes a few seconds).
RENEWED_LEASE = timedelta(seconds=20)
#: Such work renews its claim at most this often (a renewal is a write).
RENEW_EVERY = timedelta(seconds=5)
RETENTION_DEFAULT = timedelta(hours=24)


class IdempotencyRecord(SQLModel, table=True):
    __tablename__ = "idempotency_record"

    namespace: str = Field(primary_key=True, max_length=64)
    key: str = Field(primary_key=True, max_length=KEY_MAX_LENGTH)
    request_hash: bytes = Field(sa_column=sa.Column(sa.LargeBinary(32), nullable=False))
    state: str = Field(max_length=16)
    lease_owner: str = Field(max_length=36)
    lease_expires_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))
    response_status: int | None = None
    response_body: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    created_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False, index=True))
    completed_at: datetime | None = Field(
        default=None, sa_column=sa.Column(UTCDateTime(), nullable=True)
    )


_TABLE = SQLModel.metadata.tables["idempotency_record"]


@dataclass(frozen=True, slots=True)
class StoredResponse:
    status: int
    body: Any
    #: True when this is the stored result of an earlier request with the same key.
    replayed: bool


def request_hash(method: str, route: str, body: Any) -> bytes:
    """What makes two requests "the same": method, route template and canonical body."""
    document = json.dumps(
        [method.upper(), route, body], sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.sha256(document.encode("utf-8")).digest()


def stored_result(
    engine: Engine, namespace: str, key: str, fingerprint: bytes
) -> StoredResponse | None:
    """The stored result of this very request, if it completed (a read, no claim): lets a
    route answer a retry before doing what must not be repeated before the claim (counting a
    card's PIN attempt). ``None`` when there is none yet, or it is another request's (the claim
    then says so)."""

    def read(session: Session) -> StoredResponse | None:
        record = session.get(IdempotencyRecord, (namespace, key))
        if record is None or record.state != "done" or bytes(record.request_hash) != fingerprint:
            return None
        assert record.response_status is not None and record.response_body is not None
        return StoredResponse(
            record.response_status, json.loads(record.response_body), replayed=True
        )

    return unit_of_work(engine, read, read_only=True)


def check_key(key: str | None) -> str:
    if key is None or key == "":
        raise InvalidInput(
            "this request moves value: send an Idempotency-Key header (a UUID is a good choice)",
            field="Idempotency-Key",
        )
    if len(key) > KEY_MAX_LENGTH or not key.isascii() or not key.isprintable():
        raise InvalidInput(
            f"Idempotency-Key is 1 to {KEY_MAX_LENGTH} printable ASCII characters",
            field="Idempotency-Key",
        )
    return key


def run_idempotent(
    engine: Engine,
    clock: Callable[[], datetime],
    *,
    namespace: str,
    key: str,
    fingerprint: bytes,
    work: Callable[[Session], tuple[int, Any]],
    describe_refusal: Callable[[PointsError | LedgerError], tuple[int, Any]],
    lease: timedelta = LEASE_DEFAULT,
    own_transactions: bool = False,
) -> StoredResponse:
    """Run ``work`` at most once per (namespace, key); see the module docstring.

    ``work`` returns ``(status, body)`` and runs in the transaction that stores that result.
    A ``PointsError`` or ``LedgerError`` it raises is stored, as ``describe_refusal`` renders
    it, and raised again; one marked ``retry_later`` (another run holds the object for the
    moment) is raised without being stored, and the key is released for a retry.

    With ``own_transactions``, ``work`` is given no session but a ``renew`` function to call as
    it proceeds, and commits in transactions of its own (a bulk upload, awarded batch by batch);
    the claim is leased for ``RENEWED_LEASE`` (not ``lease``) and ``renew`` extends it (at most
    every ``RENEW_EVERY``); the result is stored after the work. Such work must be idempotent
    itself: if its process dies before the result is stored, the request that takes the lapsed
    lease over runs it again.
    """
    owner = str(uuid.uuid4())
    if own_transactions:
        lease = min(lease, RENEWED_LEASE)
    stored = unit_of_work(
        engine, lambda session: _claim(session, clock(), namespace, key, fingerprint, owner, lease)
    )
    if stored is not None:
        return stored

    def perform(session: Session) -> tuple[int, Any]:
        status, body = work(session)
        _complete(session, clock(), namespace, key, owner, status, body)
        return status, body

    renewed = clock()

    def renew() -> None:
        nonlocal renewed
        now = clock()
        if now - renewed >= RENEW_EVERY:
            unit_of_work(engine, lambda session: _renew(session, now, namespace, key, owner, lease))
            renewed = now

    def perform_outside() -> tuple[int, Any]:
        status, body = work(renew)  # type: ignore[arg-type]
        unit_of_work(
            engine,
            lambda session: _complete(session, clock(), namespace, key, owner, status, body),
        )
        return status, body

    try:
        status, body = perform_outside() if own_transactions else unit_of_work(engine, perform)
    except (StorageError, ConstraintViolation):
        # Not an answer to the request but a failure of the moment: let a retry run the work.
        unit_of_work(engine, lambda session: _release(session, namespace, key, owner))
        raise
    except (PointsError, LedgerError) as refusal:
        if getattr(refusal, "retry_later", False):
            # Another run holds the object for the moment: a retry with this key may succeed.
            unit_of_work(engine, lambda session: _release(session, namespace, key, owner))
            raise
        # The same request will always meet the same refusal: store it as the result.
        refused_status, refused_body = describe_refusal(refusal)
        unit_of_work(
            engine,
            lambda session: _complete(
                session,
                clock(),
                namespace,
                key,
                owner,
                refused_status,
                refused_body,
            ),
        )
        raise
    except BaseException:
        unit_of_work(engine, lambda session: _release(session, namespace, key, owner))
        raise
    return StoredResponse(status, body, replayed=False)


def purge(engine: Engine, *, before: datetime) -> int:
    """Delete records created before ``before``; return how many."""

    def work(session: Session) -> int:
        result = session.execute(
            sa.delete(IdempotencyRecord).where(
                IdempotencyRecord.created_at < before  # type: ignore[arg-type]
            )
        )
        return int(result.rowcount)  # type: ignore[attr-defined]

    return unit_of_work(engine, work)


def _claim(
    session: Session,
    now: datetime,
    namespace: str,
    key: str,
    fingerprint: bytes,
    owner: str,
    lease: timedelta,
) -> StoredResponse | None:
    """Claim the key, or return the stored result; raise when it is reused or in progress."""
    table = _TABLE
    record = session.exec(
        select(IdempotencyRecord)
        .where(IdempotencyRecord.namespace == namespace, IdempotencyRecord.key == key)
        .with_for_update()
    ).first()
    if record is None:
        session.add(
            IdempotencyRecord(
                namespace=namespace,
                key=key,
                request_hash=fingerprint,
                state="in_progress",
                lease_owner=owner,
                lease_expires_at=now + lease,
                created_at=now,
            )
        )
        return None
    if bytes(record.request_hash) != fingerprint:
        raise IdempotencyKeyReused(
            "this Idempotency-Key was used for a different request; use a new key",
            field="Idempotency-Key",
        )
    if record.state == "done":
        assert record.response_status is not None and record.response_body is not None
        return StoredResponse(
            record.response_status, json.loads(record.response_body), replayed=True
        )
    if record.lease_expires_at > now:
        raise RequestInProgress(
            "a request with this Idempotency-Key is still being processed; retry shortly",
            retry_after_seconds=seconds_until(record.lease_expires_at, now),
        )
    # The lease lapsed: its holder died. Take it over, conditionally on it being the same lease.
    taken = session.execute(
        sa.update(table)
        .where(
            table.c.namespace == namespace,
            table.c.key == key,
            table.c.lease_owner == record.lease_owner,
            table.c.state == "in_progress",
        )
        .values(lease_owner=owner, lease_expires_at=now + lease)
    )
    if taken.rowcount != 1:  # type: ignore[attr-defined]
        raise RequestInProgress(
            "another retry took this request over; retry shortly",
            retry_after_seconds=seconds_until(now + lease, now),
        )
    return None


def _complete(
    session: Session,
    now: datetime,
    namespace: str,
    key: str,
    owner: str,
    status: int,
    body: Any,
) -> None:
    table = _TABLE
    done = session.execute(
        sa.update(table)
        .where(
            table.c.namespace == namespace,
            table.c.key == key,
            table.c.lease_owner == owner,
            table.c.state == "in_progress",
        )
        .values(
            state="done",
            response_status=status,
            response_body=json.dumps(body, ensure_ascii=False, default=str),
            completed_at=now,
        )
    )
    if done.rowcount != 1:  # type: ignore[attr-defined]
        # Our lease lapsed and another request took over: it, not we, completes the work.
        raise RequestInProgress(
            "this request took too long and was taken over; retry it", retry_after_seconds=1
        )


def _renew(
    session: Session, now: datetime, namespace: str, key: str, owner: str, lease: timedelta
) -> None:
    """Extend the claim of work in progress, if this request still holds it (if another took it
    over, that one stores the result: ``_complete`` says so to this one)."""
    table = _TABLE
    session.execute(
        sa.update(table)
        .where(
            table.c.namespace == namespace,
            table.c.key == key,
            table.c.lease_owner == owner,
            table.c.state == "in_progress",
        )
        .values(lease_expires_at=now + lease)
    )


def _release(session: Session, namespace: str, key: str, owner: str) -> None:
    table = _TABLE
    session.execute(
        sa.delete(table).where(
            table.c.namespace == namespace,
            table.c.key == key,
            table.c.lease_owner == owner,
            table.c.state == "in_progress",
        )
    )
