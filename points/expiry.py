"""Expiry: move each expired bucket's remainder to its ledger's expired-points account.

Points valid until D expire at the start of D + 1 in Tokyo, so a run *as of* an instant expires
every bucket whose ``valid_until`` is before that instant's Tokyo date. Spends already refuse
such buckets (``points.wallets``); this job only moves what is left in them, so the city's
liability (the sum of the buckets) stops counting points nobody can spend.

The work is set-based and chunked: one statement finds the next chunk of expired buckets that
still hold points (keyset on the account id, locked), and the chunk is posted through the
ledger's batch path as entries of up to 63 buckets and one credit to expired points, in one
short transaction per chunk. It is idempotent by construction: it moves only what is still in
an expired bucket, so a rerun for the same day moves nothing, and two concurrent runs cannot
move a point twice (the buckets are locked; the ledger's flag refuses a bucket going negative).
Lock order: the expired-points account first (the lowest id of the accounts involved), then the
buckets in id order, as the ledger itself locks, so a run and a refund cannot deadlock.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session

from ledger import BatchMode, LedgerTx, NewEntry, Posting, Side
from ledger.database import DriverCursor
from ledger.service import system_clock
from points.calendar import tokyo_date
from points.jobs import Progress, frozen_heap, no_progress
from points.pointtypes import PointType
from points.uow import unit_of_work
from points.wallets import BUCKETS_PER_SPEND_MAX

#: Buckets expired per transaction.
CHUNK = 1008  # 16 entries of 63 buckets


@dataclass(frozen=True, slots=True)
class ExpiryCounts:
    buckets: int
    points: int
    entries: int

    def as_dict(self) -> dict[str, int]:
        return {"buckets": self.buckets, "points": self.points, "entries": self.entries}


def _candidates_sql(dialect: str, *, lock: bool, limit: bool = True) -> str:
    """The expired buckets that still hold points, after an account id, in id order: account
    id, remaining points, point type. The bound on ``a.id`` repeats the one on the bucket so
    that both index scans start at ``after`` (without it PostgreSQL merge-joined from the first
    account on every chunk, quadratic over a run)."""

    def p(name: str) -> str:
        return f":{name}" if dialect == "sqlite" else f"%({name})s"

    return (
        "SELECT a.id, a.credits_posted - a.debits_posted, b.point_type_id "
        "FROM wallet_bucket AS b JOIN ledger_account AS a ON a.id = b.account_id "
        f"WHERE b.valid_until < {p('cutoff')} AND b.account_id > {p('after')} "
        f"AND a.id > {p('after')} "
        "AND a.credits_posted > a.debits_posted AND a.debits_pending = 0 "
        + (f"ORDER BY a.id LIMIT {p('limit')}" if limit else "")
        + (" FOR UPDATE OF a" if lock and dialect != "sqlite" else "")
    )


def _candidate_parameters(dialect: str, cutoff: date, after: int, limit: int) -> dict[str, Any]:
    # SQLite stores dates as ISO text (SQLAlchemy's Date); the driver is given the same.
    return {
        "cutoff": cutoff.isoformat() if dialect == "sqlite" else cutoff,
        "after": after,
        "limit": limit,
    }


def _expired_accounts(connection: sa.Connection) -> dict[str, int]:
    """Each point type's expired-points account."""
    point_type = PointType.__table__  # type: ignore[attr-defined]
    rows = connection.execute(sa.select(point_type.c.id, point_type.c.expired_account_id))
    return {type_id: int(account_id) for type_id, account_id in rows}


def pending(engine: Engine, as_of: datetime, *, chunk: int = CHUNK) -> ExpiryCounts:
    """What a run as of ``as_of`` would move (for ``--dry-run`` and progress): the buckets, the
    points, and the entries a run would write (per chunk, one per 63 buckets of a ledger)."""
    cutoff = tokyo_date(as_of)

    def work(session: Session) -> ExpiryCounts:
        buckets = points = entries = 0
        in_chunk: dict[str, int] = {}
        connection = session.connection()
        dialect = connection.dialect.name
        result = connection.execution_options(yield_per=10_000).exec_driver_sql(
            _candidates_sql(dialect, lock=False, limit=False) + " ORDER BY a.id",
            _candidate_parameters(dialect, cutoff, 0, 0),
        )
        for _account_id, remaining, point_type_id in result:
            buckets += 1
            points += int(remaining)
            in_chunk[point_type_id] = in_chunk.get(point_type_id, 0) + 1
            if buckets % chunk == 0:
                entries += sum(-(-n // BUCKETS_PER_SPEND_MAX) for n in in_chunk.values())
                in_chunk = {}
        entries += sum(-(-n // BUCKETS_PER_SPEND_MAX) for n in in_chunk.values())
        return ExpiryCounts(buckets, points, entries)

    return unit_of_work(engine, work, read_only=True)


def _count(engine: Engine, cutoff: date) -> int:
    """How many buckets a run will expire (the progress bar's total), counted by the database."""

    def work(session: Session) -> int:
        connection = session.connection()
        dialect = connection.dialect.name
        return int(
            connection.exec_driver_sql(
                f"SELECT count(*) FROM ({_candidates_sql(dialect, lock=False, limit=False)}) AS c",
                _candidate_parameters(dialect, cutoff, 0, 0),
            ).scalar_one()
        )

    return unit_of_work(engine, work, read_only=True)


def expire(
    engine: Engine,
    as_of: datetime,
    *,
    progress: Progress = no_progress,
    chunk: int = CHUNK,
    clock: Callable[[], datetime] | None = None,
) -> ExpiryCounts:
    """Expire every bucket expired at ``as_of``; see the module docstring. The entries take
    effect at ``as_of`` and are recorded at the real time (``clock``)."""
    clock = clock or system_clock
    cutoff = tokyo_date(as_of)
    total = _count(engine, cutoff)
    progress(0, total)
    buckets = points = entries = 0
    after = 0
    with frozen_heap():
        while True:
            moved = unit_of_work(
                engine,
                lambda session, after=after: _expire_chunk(  # type: ignore[misc]
                    session, cutoff, after, chunk, as_of, clock
                ),
            )
            if moved is None:
                break
            last_id, chunk_buckets, chunk_points, chunk_entries = moved
            after = last_id
            buckets += chunk_buckets
            points += chunk_points
            entries += chunk_entries
            progress(buckets, total)
    return ExpiryCounts(buckets, points, entries)


def _expire_chunk(
    session: Session,
    cutoff: date,
    after: int,
    chunk: int,
    as_of: datetime,
    clock: Callable[[], datetime],
) -> tuple[int, int, int, int] | None:
    connection = session.connection()
    tx = LedgerTx(connection, clock)
    # The expired-points accounts first (one per point type, the lowest ids), then the
    # buckets, in id order: the ledger's own lock order.
    expired_accounts = _expired_accounts(connection)
    for expired_id in sorted(set(expired_accounts.values())):
        tx.lock_account(expired_id)
    # The driver's cursor: a chunk's rows are plain tuples, not result rows.
    dialect = connection.dialect.name
    cursor = DriverCursor(connection)
    try:
        rows = cursor.execute(
            _candidates_sql(dialect, lock=True),
            _candidate_parameters(dialect, cutoff, after, chunk),
        ).fetchall()
    finally:
        cursor.close()
    if not rows:
        return None
    by_target: dict[int, list[tuple[int, int]]] = {}
    for account_id, remaining, point_type_id in rows:
        by_target.setdefault(expired_accounts[point_type_id], []).append(
            (account_id, int(remaining))
        )
    batch: list[NewEntry] = []
    for expired_id, found in by_target.items():
        for start in range(0, len(found), BUCKETS_PER_SPEND_MAX):
            part = found[start : start + BUCKETS_PER_SPEND_MAX]
            postings = [Posting(account_id, Side.DEBIT, amount) for account_id, amount in part]
            postings.append(Posting(expired_id, Side.CREDIT, sum(a for _, a in part)))
            batch.append(
                NewEntry(
                    postings,
                    kind="expiry",
                    description="expired",
                    metadata={"expired_before": cutoff.isoformat()},
                    effective_at=as_of,
                )
            )
    if batch:
        tx.post_batch(batch, BatchMode.ATOMIC)
    return (
        int(rows[-1][0]),
        len(rows),
        sum(int(remaining) for _, remaining, _ in rows),
        len(batch),
    )
