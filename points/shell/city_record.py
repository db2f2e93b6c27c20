"""The demo city's record (``points demo``, ``points.shell.city``): one row saying that this
database holds the pilot city, which seed and size made it, and the day its history is anchored
to (the Tokyo date of the first seeding).

A second ``points demo`` reads it and adds nothing, whatever day it runs on and whatever options
it is given: the city is the one the first run made. The row is written before the history
(``finished_at`` empty) and completed at the end, so a seeding that was interrupted is told from
a finished one. At most one row (``id = 1``): one city per database.
"""

from __future__ import annotations

from datetime import date, datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from points.sqlbase import UTCDateTime


class DemoCity(SQLModel, table=True):
    __tablename__ = "demo_city"
    __table_args__ = (
        sa.CheckConstraint("id = 1", name="one_city"),
        sa.CheckConstraint("residents > 0", name="residents_positive"),
    )

    id: int = Field(default=1, primary_key=True)
    #: The seed of the city's random choices (names, who earns and pays what, when).
    seed: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    residents: int
    #: The version of the city's script (``points.shell.city.GENERATOR``) that seeded it.
    generator: int
    #: The Tokyo date of the first seeding: the history is the twelve months before it.
    anchor_day: date
    started_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))
    #: When the seeding finished (empty while it runs, or if it was interrupted).
    finished_at: datetime | None = Field(default=None, sa_column=sa.Column(UTCDateTime()))
    #: How long the seeding took, in milliseconds.
    duration_ms: int | None = None
