"""The demo city's record (``points demo``, ``points.shell.city_record``): the seed, the size and
the anchor day of the pilot city a database holds, so that seeding it again adds nothing.

Revision ID: 0020_demo_city
Revises: 0019_device_codes
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020_demo_city"
down_revision = "0019_device_codes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "demo_city",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("seed", sa.BigInteger(), nullable=False),
        sa.Column("residents", sa.Integer(), nullable=False),
        sa.Column("generator", sa.Integer(), nullable=False),
        sa.Column("anchor_day", sa.Date(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=True),
        sa.CheckConstraint("id = 1", name=op.f("ck_demo_city_one_city")),
        sa.CheckConstraint("residents > 0", name=op.f("ck_demo_city_residents_positive")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_demo_city")),
    )


def downgrade() -> None:
    op.drop_table("demo_city")
