"""Bulk award uploads: one row per uploaded file (by SHA-256), its holds and outcome.

Revision ID: 0006_award_uploads
Revises: 0005_jobs
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_award_uploads"
down_revision = "0005_jobs"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "award_upload",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("program_id", sa.String(length=32), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("filename", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("to_award", sa.Integer(), nullable=False),
        sa.Column("total", sa.BigInteger(), nullable=False),
        sa.Column("awarded", sa.Integer(), nullable=False),
        sa.Column("replayed", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.Column("failures", sa.Text(), nullable=False),
        sa.Column("holds", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("status IN ('issuing', 'done')", name=op.f("ck_award_upload_status")),
        sa.ForeignKeyConstraint(
            ["program_id"], ["program.id"], name=op.f("fk_award_upload_program_id")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_award_upload")),
        sa.UniqueConstraint("program_id", "sha256", name=op.f("uq_award_upload_program_id_sha256")),
    )
    with op.batch_alter_table("award_upload", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_award_upload_program_id"), ["program_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("award_upload", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_award_upload_program_id"))

    op.drop_table("award_upload")
