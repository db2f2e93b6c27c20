"""The audit trail: every administrative act, append-only and hash-chained.

Each event records who (role and principal id), when, what (action, object type and id, details
as canonical JSON) and why (a reason). Rows are chained like the ledger's seals::

    hash = SHA-256(previous_hash || canonical_bytes)
    canonical_bytes = UTF-8 JSON, no spaces, of
        ["audit-event/1", sequence, at_us, actor_role, actor_id, action, object_type, object_id,
         reason, details]

``details`` is the stored canonical-JSON string, ``at_us`` microseconds since the epoch, UTC.
Administrative acts are rare, so the chain is extended inside the act's own transaction: the new
row takes ``sequence = last + 1``, and the primary key on ``sequence`` makes two concurrent acts
collide (one is retried) instead of forking the chain. Triggers refuse UPDATE and DELETE.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, Session, SQLModel, col, select

from ledger.model import canonical_json, to_us
from points.auth import Principal
from points.sqlbase import UTCDateTime

GENESIS_HASH = bytes(32)


class AuditEvent(SQLModel, table=True):
    __tablename__ = "audit_event"

    sequence: int = Field(
        sa_column=sa.Column(
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=False,
        )
    )
    at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))
    actor_role: str = Field(max_length=16)
    actor_id: str = Field(max_length=32)
    action: str = Field(max_length=64)
    object_type: str = Field(max_length=32)
    object_id: str = Field(max_length=64, index=True)
    reason: str = Field(default="", max_length=500)
    details: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    previous_hash: bytes = Field(sa_column=sa.Column(sa.LargeBinary(32), nullable=False))
    hash: bytes = Field(sa_column=sa.Column(sa.LargeBinary(32), nullable=False))


def canonical_bytes(event: AuditEvent) -> bytes:
    document = [
        "audit-event/1",
        event.sequence,
        to_us(event.at),
        event.actor_role,
        event.actor_id,
        event.action,
        event.object_type,
        event.object_id,
        event.reason,
        event.details,
    ]
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def record(
    session: Session,
    *,
    actor: Principal,
    action: str,
    object_type: str,
    object_id: str,
    at: datetime,
    reason: str = "",
    details: Mapping[str, Any] | None = None,
) -> AuditEvent:
    """Append one event in the caller's transaction (the act and its record commit together)."""
    last = session.exec(
        select(AuditEvent).order_by(col(AuditEvent.sequence).desc()).limit(1)
    ).first()
    previous_hash = last.hash if last is not None else GENESIS_HASH
    event = AuditEvent(
        sequence=(last.sequence + 1) if last is not None else 1,
        at=at,
        actor_role=str(actor.role),
        actor_id=actor.principal_id,
        action=action,
        object_type=object_type,
        object_id=object_id,
        reason=reason,
        details=canonical_json(dict(details or {})),
        previous_hash=previous_hash,
        hash=b"",
    )
    event.hash = hashlib.sha256(previous_hash + canonical_bytes(event)).digest()
    session.add(event)
    session.flush()
    return event


@dataclass(frozen=True, slots=True)
class ChainCheck:
    ok: bool
    events: int
    first_bad_sequence: int | None = None


def verify_chain(session: Session) -> ChainCheck:
    previous = GENESIS_HASH
    count = 0
    for event in session.exec(select(AuditEvent).order_by(col(AuditEvent.sequence))):
        count += 1
        expected = hashlib.sha256(previous + canonical_bytes(event)).digest()
        if event.sequence != count or event.previous_hash != previous or event.hash != expected:
            return ChainCheck(False, count, event.sequence)
        previous = event.hash
    return ChainCheck(True, count)
