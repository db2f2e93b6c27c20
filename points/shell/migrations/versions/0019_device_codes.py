"""Device codes (issue 22, ``points.access.create_device_code``): single-use codes that enrol a
staff device (a shop's till, a counter PC) and give it a device session; a redeemed code keeps
the id of the session's token, which is how device sessions are listed and revoked.

Revision ID: 0019_device_codes
Revises: 0018_settlement
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019_device_codes"
down_revision = "0018_settlement"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "device_code",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("code_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("staff_id", sa.String(length=32), nullable=False),
        sa.Column("label", sa.String(length=200), nullable=False),
        sa.Column("created_by", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("token_id", sa.String(length=32), nullable=True),
        sa.CheckConstraint(
            "(used_at IS NULL) = (token_id IS NULL)", name=op.f("ck_device_code_used_token")
        ),
        sa.ForeignKeyConstraint(["staff_id"], ["staff.id"], name=op.f("fk_device_code_staff_id")),
        sa.ForeignKeyConstraint(
            ["token_id"], ["api_token.id"], name=op.f("fk_device_code_token_id")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_device_code")),
        sa.UniqueConstraint("code_hash", name=op.f("uq_device_code_code_hash")),
        sa.UniqueConstraint("token_id", name=op.f("uq_device_code_token_id")),
    )
    with op.batch_alter_table("device_code", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_device_code_staff_id"), ["staff_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("device_code", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_device_code_staff_id"))
    op.drop_table("device_code")
