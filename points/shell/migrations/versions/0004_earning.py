"""Earning: point types, programs and budgets, awards (with once-keys and cap counters),
wallets and their expiry buckets, refunds of spends.

Revision ID: 0004_earning
Revises: 0003_api_safety
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_earning"
down_revision = "0003_api_safety"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "point_type",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("ledger_id", sa.Integer(), nullable=False),
        sa.Column("name_ja", sa.String(length=200), nullable=False),
        sa.Column("name_en", sa.String(length=200), nullable=False),
        sa.Column("unit", sa.String(length=16), nullable=False),
        sa.Column("expiry_rule", sa.String(length=16), nullable=False),
        sa.Column("expiry_months", sa.Integer(), nullable=True),
        sa.Column("expiry_date", sa.Date(), nullable=True),
        sa.Column("transferable", sa.Boolean(), nullable=False),
        sa.Column("issuer", sa.String(length=16), nullable=False),
        sa.Column("funding", sa.String(length=16), nullable=False),
        sa.Column("psa_override_reason", sa.String(length=500), nullable=True),
        sa.Column(
            "city_account_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column(
            "expired_account_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=False,
        ),
        sa.Column(
            "settled_account_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "(expiry_rule = 'months' AND expiry_months BETWEEN 1 AND 120 "
            "AND expiry_date IS NULL) OR (expiry_rule = 'fixed_date' AND expiry_months IS NULL "
            "AND expiry_date IS NOT NULL) OR (expiry_rule = 'none' AND expiry_months IS NULL "
            "AND expiry_date IS NULL)",
            name=op.f("ck_point_type_expiry_rule"),
        ),
        sa.CheckConstraint("funding IN ('free', 'bought')", name=op.f("ck_point_type_funding")),
        sa.CheckConstraint("issuer IN ('city', 'operator')", name=op.f("ck_point_type_issuer")),
        sa.ForeignKeyConstraint(
            ["city_account_id"], ["ledger_account.id"], name=op.f("fk_point_type_city_account_id")
        ),
        sa.ForeignKeyConstraint(
            ["expired_account_id"],
            ["ledger_account.id"],
            name=op.f("fk_point_type_expired_account_id"),
        ),
        sa.ForeignKeyConstraint(["ledger_id"], ["ledger.id"], name=op.f("fk_point_type_ledger_id")),
        sa.ForeignKeyConstraint(
            ["settled_account_id"],
            ["ledger_account.id"],
            name=op.f("fk_point_type_settled_account_id"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_point_type")),
        sa.UniqueConstraint("code", name=op.f("uq_point_type_code")),
        sa.UniqueConstraint("ledger_id", name=op.f("uq_point_type_ledger_id")),
    )
    op.create_table(
        "spend_return",
        sa.Column("entry_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "spend_entry_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("amount > 0", name=op.f("ck_spend_return_amount_positive")),
        sa.ForeignKeyConstraint(
            ["entry_id"], ["ledger_entry.id"], name=op.f("fk_spend_return_entry_id")
        ),
        sa.ForeignKeyConstraint(
            ["spend_entry_id"], ["ledger_entry.id"], name=op.f("fk_spend_return_spend_entry_id")
        ),
        sa.PrimaryKeyConstraint("entry_id", name=op.f("pk_spend_return")),
    )
    with op.batch_alter_table("spend_return", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_spend_return_spend_entry_id"), ["spend_entry_id"], unique=False
        )

    op.create_table(
        "program",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("department_id", sa.String(length=32), nullable=False),
        sa.Column("point_type_id", sa.String(length=32), nullable=False),
        sa.Column("module", sa.String(length=32), nullable=False),
        sa.Column("name_ja", sa.String(length=200), nullable=False),
        sa.Column("name_en", sa.String(length=200), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("cap_per_day", sa.BigInteger(), nullable=True),
        sa.Column("cap_per_month", sa.BigInteger(), nullable=True),
        sa.Column("cap_per_fiscal_year", sa.BigInteger(), nullable=True),
        sa.Column("valid_from", sa.Date(), nullable=False),
        sa.Column("valid_until", sa.Date(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("config", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "status IN ('draft', 'active', 'paused', 'closed')", name=op.f("ck_program_status")
        ),
        sa.CheckConstraint(
            "(cap_per_day IS NULL OR cap_per_day > 0) AND "
            "(cap_per_month IS NULL OR cap_per_month > 0) AND "
            "(cap_per_fiscal_year IS NULL OR cap_per_fiscal_year > 0)",
            name=op.f("ck_program_caps_positive"),
        ),
        sa.CheckConstraint("amount > 0", name=op.f("ck_program_amount_positive")),
        sa.CheckConstraint(
            "valid_until IS NULL OR valid_until >= valid_from",
            name=op.f("ck_program_validity_window"),
        ),
        sa.ForeignKeyConstraint(
            ["department_id"], ["department.id"], name=op.f("fk_program_department_id")
        ),
        sa.ForeignKeyConstraint(
            ["point_type_id"], ["point_type.id"], name=op.f("fk_program_point_type_id")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_program")),
    )
    with op.batch_alter_table("program", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_program_department_id"), ["department_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_program_point_type_id"), ["point_type_id"], unique=False
        )

    op.create_table(
        "wallet",
        sa.Column("resident_id", sa.String(length=32), nullable=False),
        sa.Column("point_type_id", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_reason", sa.String(length=500), nullable=True),
        sa.Column("closed_by", sa.String(length=32), nullable=True),
        sa.CheckConstraint("status IN ('open', 'closed')", name=op.f("ck_wallet_status")),
        sa.ForeignKeyConstraint(
            ["point_type_id"], ["point_type.id"], name=op.f("fk_wallet_point_type_id")
        ),
        sa.ForeignKeyConstraint(
            ["resident_id"], ["resident.id"], name=op.f("fk_wallet_resident_id")
        ),
        sa.PrimaryKeyConstraint("resident_id", "point_type_id", name=op.f("pk_wallet")),
    )
    op.create_table(
        "award",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("program_id", sa.String(length=32), nullable=False),
        sa.Column("record_id", sa.String(length=128), nullable=False),
        sa.Column("resident_id", sa.String(length=32), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("fiscal_year", sa.Integer(), nullable=False),
        sa.Column("occurred_on", sa.Date(), nullable=False),
        sa.Column("valid_until", sa.Date(), nullable=False),
        sa.Column("entry_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "bucket_account_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=False,
        ),
        sa.Column("details", sa.Text(), nullable=False),
        sa.Column("awarded_by", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("amount > 0", name=op.f("ck_award_amount_positive")),
        sa.ForeignKeyConstraint(["entry_id"], ["ledger_entry.id"], name=op.f("fk_award_entry_id")),
        sa.ForeignKeyConstraint(["program_id"], ["program.id"], name=op.f("fk_award_program_id")),
        sa.ForeignKeyConstraint(
            ["resident_id"], ["resident.id"], name=op.f("fk_award_resident_id")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_award")),
        sa.UniqueConstraint("entry_id", name=op.f("uq_award_entry_id")),
        sa.UniqueConstraint("program_id", "record_id", name=op.f("uq_award_program_id_record_id")),
    )
    with op.batch_alter_table("award", schema=None) as batch_op:
        batch_op.create_index(
            "ix_award_program_fiscal_year", ["program_id", "fiscal_year"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_award_resident_id"), ["resident_id"], unique=False)

    op.create_table(
        "award_counter",
        sa.Column("program_id", sa.String(length=32), nullable=False),
        sa.Column("resident_id", sa.String(length=32), nullable=False),
        sa.Column("period", sa.String(length=16), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("cap", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "amount >= 0 AND amount <= cap", name=op.f("ck_award_counter_within_cap")
        ),
        sa.ForeignKeyConstraint(
            ["program_id"], ["program.id"], name=op.f("fk_award_counter_program_id")
        ),
        sa.ForeignKeyConstraint(
            ["resident_id"], ["resident.id"], name=op.f("fk_award_counter_resident_id")
        ),
        sa.PrimaryKeyConstraint(
            "program_id", "resident_id", "period", name=op.f("pk_award_counter")
        ),
    )
    op.create_table(
        "award_once",
        sa.Column("program_id", sa.String(length=32), nullable=False),
        sa.Column("resident_id", sa.String(length=32), nullable=False),
        sa.Column("once_key", sa.String(length=200), nullable=False),
        sa.Column("record_id", sa.String(length=128), nullable=False),
        sa.ForeignKeyConstraint(
            ["program_id"], ["program.id"], name=op.f("fk_award_once_program_id")
        ),
        sa.ForeignKeyConstraint(
            ["resident_id"], ["resident.id"], name=op.f("fk_award_once_resident_id")
        ),
        sa.PrimaryKeyConstraint(
            "program_id", "resident_id", "once_key", name=op.f("pk_award_once")
        ),
    )
    op.create_table(
        "program_budget",
        sa.Column("program_id", sa.String(length=32), nullable=False),
        sa.Column("fiscal_year", sa.Integer(), nullable=False),
        sa.Column(
            "account_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decided_by", sa.String(length=32), nullable=True),
        sa.Column(
            "decision_entry_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "status IN ('open', 'lapsed', 'carried_over')", name=op.f("ck_program_budget_status")
        ),
        sa.CheckConstraint(
            "fiscal_year BETWEEN 2000 AND 2999", name=op.f("ck_program_budget_fiscal_year")
        ),
        sa.ForeignKeyConstraint(
            ["account_id"], ["ledger_account.id"], name=op.f("fk_program_budget_account_id")
        ),
        sa.ForeignKeyConstraint(
            ["program_id"], ["program.id"], name=op.f("fk_program_budget_program_id")
        ),
        sa.PrimaryKeyConstraint("program_id", "fiscal_year", name=op.f("pk_program_budget")),
        sa.UniqueConstraint("account_id", name=op.f("uq_program_budget_account_id")),
    )
    op.create_table(
        "wallet_bucket",
        sa.Column(
            "account_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("resident_id", sa.String(length=32), nullable=False),
        sa.Column("point_type_id", sa.String(length=32), nullable=False),
        sa.Column("program_id", sa.String(length=32), nullable=False),
        sa.Column("valid_until", sa.Date(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["ledger_account.id"], name=op.f("fk_wallet_bucket_account_id")
        ),
        sa.ForeignKeyConstraint(
            ["program_id"], ["program.id"], name=op.f("fk_wallet_bucket_program_id")
        ),
        sa.ForeignKeyConstraint(
            ["resident_id", "point_type_id"],
            ["wallet.resident_id", "wallet.point_type_id"],
            name=op.f("fk_wallet_bucket_resident_id_point_type_id"),
        ),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_wallet_bucket")),
        sa.UniqueConstraint(
            "resident_id", "point_type_id", "program_id", "valid_until", name="uq_wallet_bucket_key"
        ),
    )


def downgrade() -> None:
    op.drop_table("wallet_bucket")
    op.drop_table("program_budget")
    op.drop_table("award_once")
    op.drop_table("award_counter")
    with op.batch_alter_table("award", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_award_resident_id"))
        batch_op.drop_index("ix_award_program_fiscal_year")

    op.drop_table("award")
    op.drop_table("wallet")
    with op.batch_alter_table("program", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_program_point_type_id"))
        batch_op.drop_index(batch_op.f("ix_program_department_id"))

    op.drop_table("program")
    with op.batch_alter_table("spend_return", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_spend_return_spend_entry_id"))

    op.drop_table("spend_return")
    op.drop_table("point_type")
