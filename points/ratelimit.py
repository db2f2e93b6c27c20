"""Rate limits held in the database, so they hold across processes and hosts.

A fixed window per (bucket, window start): each hit is one conditional upsert
(``INSERT ... ON CONFLICT DO UPDATE SET hits = hits + 1 RETURNING hits``) in its own short
transaction, so concurrent hits from any number of API processes are counted exactly. A bucket
names what is limited and for whom, for example ``enrolment:ip:203.0.113.9`` or
``enrolment_code:principal:stf_...``. Windows older than a day are purged by a job.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Field, SQLModel

from ledger.database import run_with_retries
from points.errors import RateLimited
from points.uow import RACE_CONSTRAINTS

BUCKET_MAX_LENGTH = 200


class RateLimitWindow(SQLModel, table=True):
    __tablename__ = "rate_limit_window"

    bucket: str = Field(primary_key=True, max_length=BUCKET_MAX_LENGTH)
    #: The window's start, in whole seconds since the epoch.
    window_start: int = Field(sa_column=sa.Column(sa.BigInteger, primary_key=True))
    hits: int


@dataclass(frozen=True, slots=True)
class Limit:
    """At most ``hits`` per ``window_seconds``."""

    name: str
    hits: int
    window_seconds: int

    def __post_init__(self) -> None:
        assert self.hits >= 1 and 1 <= self.window_seconds <= 86_400


def hit(engine: Engine, limit: Limit, subject: str, now: datetime) -> None:
    """Count one hit for ``subject``; raise ``RateLimited`` once the window is full."""
    bucket = f"{limit.name}:{subject}"[:BUCKET_MAX_LENGTH]
    epoch = int(now.timestamp())
    window_start = epoch - epoch % limit.window_seconds

    def count(connection: sa.Connection) -> int:
        row = connection.execute(
            sa.text(
                "INSERT INTO rate_limit_window (bucket, window_start, hits) "
                "VALUES (:bucket, :window_start, 1) "
                "ON CONFLICT (bucket, window_start) "
                "DO UPDATE SET hits = rate_limit_window.hits + 1 RETURNING hits"
            ),
            {"bucket": bucket, "window_start": window_start},
        ).scalar_one()
        return int(row)

    hits = run_with_retries(engine, count, race_constraints=RACE_CONSTRAINTS)
    if hits > limit.hits:
        retry_after = window_start + limit.window_seconds - epoch
        raise RateLimited(
            f"too many requests; try again in {retry_after} seconds",
            retry_after_seconds=max(1, retry_after),
        )


def purge(engine: Engine, *, before: datetime) -> int:
    cutoff = int(before.timestamp())

    def work(connection: sa.Connection) -> int:
        result = connection.execute(
            sa.text("DELETE FROM rate_limit_window WHERE window_start < :cutoff"),
            {"cutoff": cutoff},
        )
        return int(result.rowcount)

    return run_with_retries(engine, work)
