"""What the application's tables share: constraint names, and ``UTCDateTime``.

``SQLModel.metadata`` gets the same naming convention as the ledger's tables, so constraints have
stable names that migrations, error mapping and ``verify`` can refer to.

``UTCDateTime``: an aware instant in and out of both databases.

PostgreSQL stores ``timestamptz``; SQLite keeps no time zone, so values are written as UTC and
read back as UTC. A naive datetime is refused on the way in, so local time never sneaks in.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlmodel import SQLModel

from ledger.schema import NAMING_CONVENTION

SQLModel.metadata.naming_convention = NAMING_CONVENTION


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("instants must carry a time zone")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
