"""Once-only QR tokens (payment, pay code) that were used: ``used_token``, unique per (kind,
token id), written in the same transaction as what the token pays for (``points.qrtokens``);
the purge job deletes rows a day after their token expired.

Revision ID: 0013_used_tokens
Revises: 0012_upload_endings
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013_used_tokens"
down_revision = "0012_upload_endings"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "used_token",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("kind", sa.SmallInteger(), nullable=False),
        sa.Column("token_id", sa.LargeBinary(length=16), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_used_token")),
        sa.UniqueConstraint("kind", "token_id", name="uq_used_token_kind_token_id"),
    )
    with op.batch_alter_table("used_token", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_used_token_expires_at"), ["expires_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("used_token", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_used_token_expires_at"))
    op.drop_table("used_token")
