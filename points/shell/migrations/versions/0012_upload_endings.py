"""Uploads that will not finish are ended: ``award_upload.status`` may be ``cancelled`` (by the
department) or ``abandoned`` (by the ``upload_handback`` job), and ``award_upload.returned``
records what went back from the clearing accounts when an upload ended (``issuers.bulk``).

Uploads that exist already returned what their settling entries (``bulk_return``) say; the
column starts at 0 for them. Downgrade turns the two new statuses into ``done`` (both are
final, as ``done`` is) before the narrower CHECK is put back.

Revision ID: 0012_upload_endings
Revises: 0011_clearing_accounts
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012_upload_endings"
down_revision = "0011_clearing_accounts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("award_upload", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("returned", sa.BigInteger(), nullable=False, server_default="0")
        )
        batch_op.drop_constraint("ck_award_upload_status", type_="check")
        batch_op.create_check_constraint(
            "ck_award_upload_status", "status IN ('issuing', 'done', 'cancelled', 'abandoned')"
        )


def downgrade() -> None:
    op.execute("UPDATE award_upload SET status = 'done' WHERE status IN ('cancelled', 'abandoned')")
    with op.batch_alter_table("award_upload", schema=None) as batch_op:
        batch_op.drop_constraint("ck_award_upload_status", type_="check")
        batch_op.create_check_constraint("ck_award_upload_status", "status IN ('issuing', 'done')")
        batch_op.drop_column("returned")
