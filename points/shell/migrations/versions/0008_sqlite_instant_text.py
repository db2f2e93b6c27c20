"""SQLite: instants written by bulk uploads in the text form every other write uses.

Bulk uploads (``points.sqlbase.insert_many``, up to revision 0007 of the code) handed SQLite's
driver ``datetime`` values without SQLAlchemy's SQLite processing, so sqlite3's default adapter
stored ``2026-05-10 03:00:00`` where every other write stores ``2026-05-10 03:00:00.000000``.
Both read back as the same instant, but SQL compares this text as text: a cursor or a range
over ``created_at`` could order such rows wrongly. The adapter only dropped the fraction when it
was zero (any other fraction is written in full by both), so appending it is the whole fix.
PostgreSQL stored ``timestamptz`` values and needs nothing. Downgrade leaves the text as is
(both forms read back alike).

Revision ID: 0008_sqlite_instant_text
Revises: 0007_posting_checks
Create Date: 2026-11-30
"""

from __future__ import annotations

from alembic import op

revision = "0008_sqlite_instant_text"
down_revision = "0007_posting_checks"
branch_labels = None
depends_on = None

#: The columns ``insert_many`` wrote instants into.
_COLUMNS = (("award", "created_at"), ("wallet", "created_at"))


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for table, column in _COLUMNS:
        op.execute(
            f"UPDATE {table} SET {column} = {column} || '.000000' "
            f"WHERE typeof({column}) = 'text' AND length({column}) = 19"
        )


def downgrade() -> None:
    pass
