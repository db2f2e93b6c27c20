"""Scheduled jobs: job runs, unique per (job, period); an index for finding expired buckets.

Revision ID: 0005_jobs
Revises: 0004_earning
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_jobs"
down_revision = "0004_earning"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "job_run",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("job", sa.String(length=64), nullable=False),
        sa.Column("period", sa.String(length=32), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("owner", sa.String(length=36), nullable=False),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("counts", sa.Text(), nullable=False),
        sa.Column("outcome", sa.String(length=500), nullable=False),
        sa.Column("trigger", sa.String(length=16), nullable=False),
        sa.CheckConstraint("state IN ('running', 'done', 'failed')", name=op.f("ck_job_run_state")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_run")),
        sa.UniqueConstraint("job", "period", name=op.f("uq_job_run_job_period")),
    )
    with op.batch_alter_table("job_run", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_job_run_started_at"), ["started_at"], unique=False)

    with op.batch_alter_table("wallet_bucket", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_wallet_bucket_valid_until"), ["valid_until"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("wallet_bucket", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_wallet_bucket_valid_until"))

    with op.batch_alter_table("job_run", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_job_run_started_at"))

    op.drop_table("job_run")
