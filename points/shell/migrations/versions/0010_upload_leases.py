"""Bulk uploads are held by one run at a time: ``award_upload.owner`` and ``lease_expires_at``.

A second upload of a file while a run awards it was resumed alongside that run, met its awards
as replays and counted them twice. Now the run holding the upload renews a lease with every
batch, and another upload of the file meanwhile is refused (``upload_in_progress``); see
``issuers.bulk``. Uploads that exist already are held by no run (both columns NULL): an
interrupted one is resumed by the next upload of its file, as before.

Revision ID: 0010_upload_leases
Revises: 0009_reference_checks
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_upload_leases"
down_revision = "0009_reference_checks"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("award_upload", schema=None) as batch_op:
        batch_op.add_column(sa.Column("owner", sa.String(length=32), nullable=True))
        batch_op.add_column(
            sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("award_upload", schema=None) as batch_op:
        batch_op.drop_column("lease_expires_at")
        batch_op.drop_column("owner")
