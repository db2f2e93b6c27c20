"""Volunteering events and check-in (``issuers.events``): ``volunteer_event``, with its
attendance counter held within capacity by a CHECK, and ``event_attendance``, one row per
resident per event with the award it earned.

Revision ID: 0014_volunteer_events
Revises: 0013_used_tokens
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014_volunteer_events"
down_revision = "0013_used_tokens"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "volunteer_event",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("token_id", Id, nullable=False),
        sa.Column("program_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("place", sa.String(length=200), nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("opens_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closes_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("capacity", sa.Integer(), nullable=False),
        sa.Column("attendance", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("closed_reason", sa.String(length=500), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("status IN ('open', 'closed')", name=op.f("ck_volunteer_event_status")),
        sa.CheckConstraint("capacity > 0", name=op.f("ck_volunteer_event_capacity_positive")),
        sa.CheckConstraint(
            "attendance >= 0 AND attendance <= capacity",
            name=op.f("ck_volunteer_event_within_capacity"),
        ),
        sa.CheckConstraint("ends_at > starts_at", name=op.f("ck_volunteer_event_event_times")),
        sa.CheckConstraint("closes_at > opens_at", name=op.f("ck_volunteer_event_check_in_window")),
        sa.ForeignKeyConstraint(
            ["program_id"], ["program.id"], name=op.f("fk_volunteer_event_program_id")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_volunteer_event")),
        sa.UniqueConstraint("token_id", name=op.f("uq_volunteer_event_token_id")),
    )
    with op.batch_alter_table("volunteer_event", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_volunteer_event_program_id"), ["program_id"], unique=False
        )
    op.create_table(
        "event_attendance",
        sa.Column("event_id", sa.String(length=32), nullable=False),
        sa.Column("resident_id", sa.String(length=32), nullable=False),
        sa.Column("award_id", Id, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["award_id"], ["award.id"], name=op.f("fk_event_attendance_award_id")
        ),
        sa.ForeignKeyConstraint(
            ["event_id"], ["volunteer_event.id"], name=op.f("fk_event_attendance_event_id")
        ),
        sa.ForeignKeyConstraint(
            ["resident_id"], ["resident.id"], name=op.f("fk_event_attendance_resident_id")
        ),
        sa.PrimaryKeyConstraint("event_id", "resident_id", name=op.f("pk_event_attendance")),
    )


def downgrade() -> None:
    op.drop_table("event_attendance")
    with op.batch_alter_table("volunteer_event", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_volunteer_event_program_id"))
    op.drop_table("volunteer_event")
