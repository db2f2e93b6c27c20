"""Residents' cards with a PIN (``redemption.cards``): cards (one active per resident), PIN
attempts (per card and per till), the card limits of each point type and the day counters that
hold them; card payments (``payment.card_id``, and ``card`` among the payment flows).

On SQLite a CHECK constraint changes only with its table, so ``payment`` is rebuilt: the rows of
``payment_refund`` (the one table that references it) are set aside first, and put back after,
so no foreign key is ever broken with the keys on. PostgreSQL changes the constraints in place.

Revision ID: 0016_cards
Revises: 0015_payments
Create Date: 2026-12-05
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0016_cards"
down_revision = "0015_payments"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
ACTIVE = sa.text("status = 'active'")
FLOWS_BEFORE = "flow IN ('payment_qr', 'pay_code', 'store_qr')"
FLOWS_AFTER = "flow IN ('payment_qr', 'pay_code', 'store_qr', 'card')"
PAYMENT_COLUMNS = (
    "seq, id, merchant_id, till_id, resident_id, point_type_id, amount, refunded, flow, "
    "reference, request_id, pay_code_id, entry_id, hold, confirm_by, awaiting, created_at"
)
REFUND_COLUMNS = "entry_id, payment_id, amount, staff_id, created_at"


def upgrade() -> None:
    op.create_table(
        "card",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("resident_id", sa.String(length=32), nullable=False),
        sa.Column("code", sa.LargeBinary(length=16), nullable=False),
        sa.Column("number", sa.String(length=16), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("kid", sa.Integer(), nullable=False),
        sa.Column("pin_hash", sa.LargeBinary(length=48), nullable=False),
        sa.Column("pin_attempts", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("replaces", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "status IN ('active', 'blocked', 'replaced')", name=op.f("ck_card_status")
        ),
        sa.CheckConstraint("pin_attempts BETWEEN 0 AND 5", name=op.f("ck_card_pin_attempts")),
        sa.ForeignKeyConstraint(["resident_id"], ["resident.id"], name=op.f("fk_card_resident_id")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_card")),
        sa.UniqueConstraint("code", name=op.f("uq_card_code")),
        sa.UniqueConstraint("number", name=op.f("uq_card_number")),
    )
    with op.batch_alter_table("card", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_card_kid"), ["kid"], unique=False)
        batch_op.create_index(batch_op.f("ix_card_resident_id"), ["resident_id"], unique=False)
        batch_op.create_index(
            "uq_card_resident_id_active",
            ["resident_id"],
            unique=True,
            sqlite_where=ACTIVE,
            postgresql_where=ACTIVE,
        )

    op.create_table(
        "card_policy",
        sa.Column("point_type_id", sa.String(length=32), nullable=False),
        sa.Column("daily_limit", sa.Integer(), nullable=False),
        sa.Column("payments_per_shop", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("daily_limit >= 1", name=op.f("ck_card_policy_daily_limit")),
        sa.CheckConstraint("payments_per_shop >= 1", name=op.f("ck_card_policy_payments_per_shop")),
        sa.ForeignKeyConstraint(
            ["point_type_id"], ["point_type.id"], name=op.f("fk_card_policy_point_type_id")
        ),
        sa.PrimaryKeyConstraint("point_type_id", name=op.f("pk_card_policy")),
    )
    op.create_table(
        "card_day",
        sa.Column("card_id", sa.String(length=32), nullable=False),
        sa.Column("point_type_id", sa.String(length=32), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("cap", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("amount >= 0 AND amount <= cap", name=op.f("ck_card_day_within_cap")),
        sa.ForeignKeyConstraint(["card_id"], ["card.id"], name=op.f("fk_card_day_card_id")),
        sa.ForeignKeyConstraint(
            ["point_type_id"], ["point_type.id"], name=op.f("fk_card_day_point_type_id")
        ),
        sa.PrimaryKeyConstraint("card_id", "point_type_id", "day", name=op.f("pk_card_day")),
    )
    op.create_table(
        "card_shop_day",
        sa.Column("card_id", sa.String(length=32), nullable=False),
        sa.Column("merchant_id", sa.String(length=32), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("payments", sa.Integer(), nullable=False),
        sa.Column("cap", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "payments >= 0 AND payments <= cap", name=op.f("ck_card_shop_day_within_cap")
        ),
        sa.ForeignKeyConstraint(["card_id"], ["card.id"], name=op.f("fk_card_shop_day_card_id")),
        sa.ForeignKeyConstraint(
            ["merchant_id"], ["merchant.id"], name=op.f("fk_card_shop_day_merchant_id")
        ),
        sa.PrimaryKeyConstraint("card_id", "merchant_id", "day", name=op.f("pk_card_shop_day")),
    )
    op.create_table(
        "pin_attempt",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("card_id", sa.String(length=32), nullable=False),
        sa.Column("till_id", sa.String(length=32), nullable=True),
        sa.Column("staff_id", sa.String(length=32), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "outcome IN ('pending', 'wrong', 'correct')", name=op.f("ck_pin_attempt_outcome")
        ),
        sa.ForeignKeyConstraint(["card_id"], ["card.id"], name=op.f("fk_pin_attempt_card_id")),
        sa.ForeignKeyConstraint(["till_id"], ["till.id"], name=op.f("fk_pin_attempt_till_id")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pin_attempt")),
    )
    with op.batch_alter_table("pin_attempt", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_pin_attempt_card_id"), ["card_id"], unique=False)
        batch_op.create_index("ix_pin_attempt_till_id_at", ["till_id", "at"], unique=False)

    if op.get_bind().dialect.name == "sqlite":
        _rebuild_payment_on_sqlite(with_cards=True)
    else:
        op.add_column("payment", sa.Column("card_id", sa.String(length=32), nullable=True))
        op.create_foreign_key(op.f("fk_payment_card_id"), "payment", "card", ["card_id"], ["id"])
        op.drop_constraint(op.f("ck_payment_flow"), "payment", type_="check")
        op.create_check_constraint(op.f("ck_payment_flow"), "payment", FLOWS_AFTER)
        op.create_check_constraint(
            op.f("ck_payment_card"), "payment", "(flow = 'card') = (card_id IS NOT NULL)"
        )


def downgrade() -> None:
    # Card payments have no place in the earlier schema: their rows go (their entries stay).
    if op.get_bind().dialect.name == "sqlite":
        _rebuild_payment_on_sqlite(with_cards=False)
    else:
        op.execute(
            "DELETE FROM payment_refund WHERE payment_id IN "
            "(SELECT id FROM payment WHERE flow = 'card')"
        )
        op.execute("DELETE FROM payment WHERE flow = 'card'")
        op.drop_constraint(op.f("ck_payment_card"), "payment", type_="check")
        op.drop_constraint(op.f("ck_payment_flow"), "payment", type_="check")
        op.create_check_constraint(op.f("ck_payment_flow"), "payment", FLOWS_BEFORE)
        op.drop_constraint(op.f("fk_payment_card_id"), "payment", type_="foreignkey")
        op.drop_column("payment", "card_id")
    with op.batch_alter_table("pin_attempt", schema=None) as batch_op:
        batch_op.drop_index("ix_pin_attempt_till_id_at")
        batch_op.drop_index(batch_op.f("ix_pin_attempt_card_id"))
    op.drop_table("pin_attempt")
    op.drop_table("card_shop_day")
    op.drop_table("card_day")
    op.drop_table("card_policy")
    with op.batch_alter_table("card", schema=None) as batch_op:
        batch_op.drop_index("uq_card_resident_id_active", sqlite_where=ACTIVE)
        batch_op.drop_index(batch_op.f("ix_card_resident_id"))
        batch_op.drop_index(batch_op.f("ix_card_kid"))
    op.drop_table("card")


def _rebuild_payment_on_sqlite(*, with_cards: bool) -> None:
    op.execute(f"CREATE TABLE _payment_refund_kept AS SELECT {REFUND_COLUMNS} FROM payment_refund")
    op.drop_index("ix_payment_refund_payment_id", table_name="payment_refund")
    op.drop_table("payment_refund")

    _create_payment("_payment_rebuilt", with_cards=with_cards)
    if with_cards:
        op.execute(
            f"INSERT INTO _payment_rebuilt ({PAYMENT_COLUMNS}, card_id) "
            f"SELECT {PAYMENT_COLUMNS}, NULL FROM payment"
        )
    else:
        op.execute(
            "DELETE FROM _payment_refund_kept WHERE payment_id IN "
            "(SELECT id FROM payment WHERE flow = 'card')"
        )
        op.execute(
            f"INSERT INTO _payment_rebuilt ({PAYMENT_COLUMNS}) "
            f"SELECT {PAYMENT_COLUMNS} FROM payment WHERE flow <> 'card'"
        )
    for index in (
        "ix_payment_awaiting",
        "ix_payment_merchant_id_created_at",
        "ix_payment_merchant_id_seq",
        "ix_payment_resident_id_seq",
    ):
        op.drop_index(index, table_name="payment")
    op.drop_table("payment")
    op.rename_table("_payment_rebuilt", "payment")
    op.create_index("ix_payment_awaiting", "payment", ["awaiting"], unique=False)
    op.create_index(
        "ix_payment_merchant_id_created_at", "payment", ["merchant_id", "created_at"], unique=False
    )
    op.create_index("ix_payment_merchant_id_seq", "payment", ["merchant_id", "seq"], unique=False)
    op.create_index("ix_payment_resident_id_seq", "payment", ["resident_id", "seq"], unique=False)

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
    op.create_index("ix_payment_refund_payment_id", "payment_refund", ["payment_id"], unique=False)
    op.execute(
        f"INSERT INTO payment_refund ({REFUND_COLUMNS}) "
        f"SELECT {REFUND_COLUMNS} FROM _payment_refund_kept"
    )
    op.drop_table("_payment_refund_kept")


def _create_payment(name: str, *, with_cards: bool) -> None:
    """The payment table as 0015 made it, with ``card_id`` and its checks when ``with_cards``
    (the constraint names are the table's own, so the renamed table matches the models)."""
    card: list[Any] = (
        [
            sa.Column("card_id", sa.String(length=32), nullable=True),
            sa.CheckConstraint(
                "(flow = 'card') = (card_id IS NOT NULL)", name=op.f("ck_payment_card")
            ),
            sa.ForeignKeyConstraint(["card_id"], ["card.id"], name=op.f("fk_payment_card_id")),
        ]
        if with_cards
        else []
    )
    op.create_table(
        name,
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
        *card,
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
            FLOWS_AFTER if with_cards else FLOWS_BEFORE, name=op.f("ck_payment_flow")
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
