"""``award_upload.holds`` is ``clearing_accounts``: the accounts an upload set its file's total
aside in, by fiscal year.

"Hold" named three things in bulk uploads: these clearing accounts, the accounts an award is
paid from, and an upload's lease. A hold is the ledger's pending entry (DESIGN §10), so the
column takes the name of what it holds. The values (JSON ``{"2026": account id}``) are kept.

Revision ID: 0011_clearing_accounts
Revises: 0010_upload_leases
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op

revision = "0011_clearing_accounts"
down_revision = "0010_upload_leases"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Both databases rename a column in place (SQLite since 3.25), keeping the rows.
    op.execute("ALTER TABLE award_upload RENAME COLUMN holds TO clearing_accounts")


def downgrade() -> None:
    op.execute("ALTER TABLE award_upload RENAME COLUMN clearing_accounts TO holds")
