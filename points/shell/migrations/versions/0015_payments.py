"""Paying at shops (``redemption``): shop settings, accepted point types and payable accounts,
tills with their printed store QR, payment QRs, pay codes, residents' pay-code limits, payments
(their state is read from the ledger), refunds and the shops' payment events.

Revision ID: 0015_payments
Revises: 0014_volunteer_events
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015_payments"
down_revision = "0014_volunteer_events"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "payment_event",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("merchant_id", sa.String(length=32), nullable=False),
        sa.Column("payment_id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "kind IN ('created', 'posted', 'voided', 'refunded')",
            name=op.f("ck_payment_event_kind"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payment_event")),
    )
    with op.batch_alter_table("payment_event", schema=None) as batch_op:
        batch_op.create_index(
            "ix_payment_event_merchant_id_id", ["merchant_id", "id"], unique=False
        )

    op.create_table(
        "merchant_payable",
        sa.Column("merchant_id", sa.String(length=32), nullable=False),
        sa.Column("point_type_id", sa.String(length=32), nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["merchant_id"], ["merchant.id"], name=op.f("fk_merchant_payable_merchant_id")
        ),
        sa.ForeignKeyConstraint(
            ["point_type_id"], ["point_type.id"], name=op.f("fk_merchant_payable_point_type_id")
        ),
        sa.PrimaryKeyConstraint("merchant_id", "point_type_id", name=op.f("pk_merchant_payable")),
        sa.UniqueConstraint("account_id", name=op.f("uq_merchant_payable_account_id")),
    )
    op.create_table(
        "merchant_point_type",
        sa.Column("merchant_id", sa.String(length=32), nullable=False),
        sa.Column("point_type_id", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(
            ["merchant_id"], ["merchant.id"], name=op.f("fk_merchant_point_type_merchant_id")
        ),
        sa.ForeignKeyConstraint(
            ["point_type_id"], ["point_type.id"], name=op.f("fk_merchant_point_type_point_type_id")
        ),
        sa.PrimaryKeyConstraint(
            "merchant_id", "point_type_id", name=op.f("pk_merchant_point_type")
        ),
    )
    op.create_table(
        "merchant_settings",
        sa.Column("merchant_id", sa.String(length=32), nullable=False),
        sa.Column("confirm_mode", sa.String(length=16), nullable=False),
        sa.Column("auto_confirm_max", sa.Integer(), nullable=False),
        sa.Column("confirm_timeout_seconds", sa.Integer(), nullable=False),
        sa.Column("refund_window_days", sa.Integer(), nullable=False),
        sa.Column("event_count", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "confirm_mode IN ('confirm_each', 'auto_confirm')",
            name=op.f("ck_merchant_settings_confirm_mode"),
        ),
        sa.CheckConstraint(
            "auto_confirm_max BETWEEN 0 AND 1000000",
            name=op.f("ck_merchant_settings_auto_confirm_max"),
        ),
        sa.CheckConstraint(
            "confirm_timeout_seconds BETWEEN 60 AND 86400",
            name=op.f("ck_merchant_settings_confirm_timeout"),
        ),
        sa.CheckConstraint("event_count >= 0", name=op.f("ck_merchant_settings_event_count")),
        sa.CheckConstraint(
            "refund_window_days BETWEEN 0 AND 366", name=op.f("ck_merchant_settings_refund_window")
        ),
        sa.ForeignKeyConstraint(
            ["merchant_id"], ["merchant.id"], name=op.f("fk_merchant_settings_merchant_id")
        ),
        sa.PrimaryKeyConstraint("merchant_id", name=op.f("pk_merchant_settings")),
    )
    op.create_table(
        "pay_code",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("resident_id", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["resident_id"], ["resident.id"], name=op.f("fk_pay_code_resident_id")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pay_code")),
    )
    with op.batch_alter_table("pay_code", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_pay_code_resident_id"), ["resident_id"], unique=False)

    op.create_table(
        "resident_pay_settings",
        sa.Column("resident_id", sa.String(length=32), nullable=False),
        sa.Column("pay_code_limit", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "pay_code_limit BETWEEN 1 AND 5000",
            name=op.f("ck_resident_pay_settings_pay_code_limit"),
        ),
        sa.ForeignKeyConstraint(
            ["resident_id"], ["resident.id"], name=op.f("fk_resident_pay_settings_resident_id")
        ),
        sa.PrimaryKeyConstraint("resident_id", name=op.f("pk_resident_pay_settings")),
    )
    op.create_table(
        "till",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("merchant_id", sa.String(length=32), nullable=False),
        sa.Column("staff_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("store_code", sa.LargeBinary(length=16), nullable=False),
        sa.Column("store_text", sa.Text(), nullable=False),
        sa.Column("store_kid", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("status IN ('active', 'revoked')", name=op.f("ck_till_status")),
        sa.ForeignKeyConstraint(["merchant_id"], ["merchant.id"], name=op.f("fk_till_merchant_id")),
        sa.ForeignKeyConstraint(["staff_id"], ["staff.id"], name=op.f("fk_till_staff_id")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_till")),
        sa.UniqueConstraint("staff_id", name=op.f("uq_till_staff_id")),
        sa.UniqueConstraint("store_code", name=op.f("uq_till_store_code")),
    )
    with op.batch_alter_table("till", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_till_merchant_id"), ["merchant_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_till_store_kid"), ["store_kid"], unique=False)

    op.create_table(
        "payment",
        sa.Column("seq", Id, autoincrement=True, nullable=False),
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("merchant_id", sa.String(length=32), nullable=False),
        sa.Column("till_id", sa.String(length=32), nullable=False),
        sa.Column("resident_id", sa.String(length=32), nullable=False),
        sa.Column("point_type_id", sa.String(length=32), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("refunded", sa.BigInteger(), nullable=False),
        sa.Column("flow", sa.String(length=16), nullable=False),
        sa.Column("reference", sa.String(length=64), nullable=False),
        sa.Column("request_id", sa.String(length=32), nullable=True),
        sa.Column("pay_code_id", sa.String(length=32), nullable=True),
        sa.Column("entry_id", sa.BigInteger(), nullable=False),
        sa.Column("hold", sa.Boolean(), nullable=False),
        sa.Column("confirm_by", sa.DateTime(timezone=True), nullable=True),
        sa.Column("awaiting", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "(flow = 'pay_code') = (pay_code_id IS NOT NULL)", name=op.f("ck_payment_pay_code")
        ),
        sa.CheckConstraint(
            "(flow = 'payment_qr') = (request_id IS NOT NULL)", name=op.f("ck_payment_request")
        ),
        sa.CheckConstraint(
            "NOT hold OR flow = 'store_qr'", name=op.f("ck_payment_hold_only_store_qr")
        ),
        sa.CheckConstraint(
            "flow IN ('payment_qr', 'pay_code', 'store_qr')", name=op.f("ck_payment_flow")
        ),
        sa.CheckConstraint(
            "(hold AND confirm_by IS NOT NULL) OR NOT hold", name=op.f("ck_payment_hold_deadline")
        ),
        sa.CheckConstraint("amount BETWEEN 1 AND 10000000", name=op.f("ck_payment_amount")),
        sa.CheckConstraint(
            "refunded >= 0 AND refunded <= amount", name=op.f("ck_payment_refunded_within_amount")
        ),
        sa.ForeignKeyConstraint(
            ["merchant_id"], ["merchant.id"], name=op.f("fk_payment_merchant_id")
        ),
        sa.ForeignKeyConstraint(
            ["point_type_id"], ["point_type.id"], name=op.f("fk_payment_point_type_id")
        ),
        sa.ForeignKeyConstraint(
            ["resident_id"], ["resident.id"], name=op.f("fk_payment_resident_id")
        ),
        sa.ForeignKeyConstraint(["till_id"], ["till.id"], name=op.f("fk_payment_till_id")),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_payment")),
        sa.UniqueConstraint("entry_id", name=op.f("uq_payment_entry_id")),
        sa.UniqueConstraint("id", name=op.f("uq_payment_id")),
        sa.UniqueConstraint("pay_code_id", name=op.f("uq_payment_pay_code_id")),
        sa.UniqueConstraint("request_id", name=op.f("uq_payment_request_id")),
    )
    with op.batch_alter_table("payment", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_payment_awaiting"), ["awaiting"], unique=False)
        batch_op.create_index(
            "ix_payment_merchant_id_created_at", ["merchant_id", "created_at"], unique=False
        )
        batch_op.create_index("ix_payment_merchant_id_seq", ["merchant_id", "seq"], unique=False)
        batch_op.create_index("ix_payment_resident_id_seq", ["resident_id", "seq"], unique=False)

    op.create_table(
        "payment_request",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("merchant_id", sa.String(length=32), nullable=False),
        sa.Column("till_id", sa.String(length=32), nullable=False),
        sa.Column("point_type_id", sa.String(length=32), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("reference", sa.String(length=64), nullable=False),
        sa.Column("token", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("amount BETWEEN 1 AND 10000000", name=op.f("ck_payment_request_amount")),
        sa.ForeignKeyConstraint(
            ["merchant_id"], ["merchant.id"], name=op.f("fk_payment_request_merchant_id")
        ),
        sa.ForeignKeyConstraint(
            ["point_type_id"], ["point_type.id"], name=op.f("fk_payment_request_point_type_id")
        ),
        sa.ForeignKeyConstraint(["till_id"], ["till.id"], name=op.f("fk_payment_request_till_id")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payment_request")),
    )
    with op.batch_alter_table("payment_request", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_payment_request_merchant_id"), ["merchant_id"], unique=False
        )

    op.create_table(
        "payment_refund",
        sa.Column("entry_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("payment_id", sa.String(length=32), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("staff_id", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["payment_id"], ["payment.id"], name=op.f("fk_payment_refund_payment_id")
        ),
        sa.PrimaryKeyConstraint("entry_id", name=op.f("pk_payment_refund")),
    )
    with op.batch_alter_table("payment_refund", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_payment_refund_payment_id"), ["payment_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("payment_refund", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_payment_refund_payment_id"))

    op.drop_table("payment_refund")
    with op.batch_alter_table("payment_request", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_payment_request_merchant_id"))

    op.drop_table("payment_request")
    with op.batch_alter_table("payment", schema=None) as batch_op:
        batch_op.drop_index("ix_payment_resident_id_seq")
        batch_op.drop_index("ix_payment_merchant_id_seq")
        batch_op.drop_index("ix_payment_merchant_id_created_at")
        batch_op.drop_index(batch_op.f("ix_payment_awaiting"))

    op.drop_table("payment")
    with op.batch_alter_table("till", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_till_store_kid"))
        batch_op.drop_index(batch_op.f("ix_till_merchant_id"))

    op.drop_table("till")
    op.drop_table("resident_pay_settings")
    with op.batch_alter_table("pay_code", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_pay_code_resident_id"))

    op.drop_table("pay_code")
    op.drop_table("merchant_settings")
    op.drop_table("merchant_point_type")
    op.drop_table("merchant_payable")
    with op.batch_alter_table("payment_event", schema=None) as batch_op:
        batch_op.drop_index("ix_payment_event_merchant_id_id")

    op.drop_table("payment_event")
