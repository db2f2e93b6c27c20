"""The goods-exchange catalog (``redemption.catalog``): ``merchant.kind`` (a shop or the city's
counter), catalog items, their pictures and stock adjustments, exchanges and the allowance
counters per resident and fiscal year; payments without a till (``payment.till_id`` nullable:
an exchange in the wallet app, flow ``exchange``, or a card payment made at the city counter).

On SQLite ``merchant.kind`` is added with a column CHECK (``ALTER TABLE ... ADD COLUMN``
allows it, and rebuilding ``merchant``, which most tables reference, would break their keys);
``payment`` is rebuilt as in 0016, its refunds set aside first. PostgreSQL changes both in place.

Revision ID: 0017_catalog
Revises: 0016_cards
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017_catalog"
down_revision = "0016_cards"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
KIND = "kind IN ('shop', 'counter')"
FLOWS_BEFORE = "flow IN ('payment_qr', 'pay_code', 'store_qr', 'card')"
FLOWS_AFTER = "flow IN ('payment_qr', 'pay_code', 'store_qr', 'card', 'exchange')"
TILL = "till_id IS NOT NULL OR flow IN ('card', 'exchange')"
PAYMENT_COLUMNS = (
    "seq, id, merchant_id, till_id, resident_id, point_type_id, amount, refunded, flow, "
    "reference, request_id, pay_code_id, card_id, entry_id, hold, confirm_by, awaiting, "
    "created_at"
)
REFUND_COLUMNS = "entry_id, payment_id, amount, staff_id, created_at"
PAYMENT_INDEXES = (
    ("ix_payment_awaiting", ["awaiting"]),
    ("ix_payment_merchant_id_created_at", ["merchant_id", "created_at"]),
    ("ix_payment_merchant_id_seq", ["merchant_id", "seq"]),
    ("ix_payment_resident_id_seq", ["resident_id", "seq"]),
)


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    if sqlite:
        op.execute(
            "ALTER TABLE merchant ADD COLUMN kind VARCHAR(16) NOT NULL DEFAULT 'shop' "
            f"CONSTRAINT ck_merchant_kind CHECK ({KIND})"
        )
        _rebuild_payment_on_sqlite(with_exchanges=True)
    else:
        op.add_column(
            "merchant",
            sa.Column("kind", sa.String(length=16), nullable=False, server_default="shop"),
        )
        op.create_check_constraint(op.f("ck_merchant_kind"), "merchant", KIND)
        op.alter_column("payment", "till_id", existing_type=sa.String(length=32), nullable=True)
        op.drop_constraint(op.f("ck_payment_flow"), "payment", type_="check")
        op.create_check_constraint(op.f("ck_payment_flow"), "payment", FLOWS_AFTER)
        op.create_check_constraint(op.f("ck_payment_till"), "payment", TILL)

    op.create_table(
        "catalog_item",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("merchant_id", sa.String(length=32), nullable=False),
        sa.Column("point_type_id", sa.String(length=32), nullable=False),
        sa.Column("name_ja", sa.String(length=200), nullable=False),
        sa.Column("name_en", sa.String(length=200), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("stock", sa.BigInteger(), nullable=False),
        sa.Column("per_resident_limit", sa.Integer(), nullable=True),
        sa.Column("available_from", sa.DateTime(timezone=True), nullable=True),
        sa.Column("available_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("points BETWEEN 1 AND 10000000", name=op.f("ck_catalog_item_points")),
        sa.CheckConstraint("stock BETWEEN 0 AND 1000000", name=op.f("ck_catalog_item_stock")),
        sa.CheckConstraint(
            "per_resident_limit IS NULL OR per_resident_limit >= 1",
            name=op.f("ck_catalog_item_per_resident_limit"),
        ),
        sa.CheckConstraint(
            "available_from IS NULL OR available_until IS NULL OR available_from < available_until",
            name=op.f("ck_catalog_item_window"),
        ),
        sa.CheckConstraint("status IN ('active', 'retired')", name=op.f("ck_catalog_item_status")),
        sa.ForeignKeyConstraint(
            ["merchant_id"], ["merchant.id"], name=op.f("fk_catalog_item_merchant_id")
        ),
        sa.ForeignKeyConstraint(
            ["point_type_id"], ["point_type.id"], name=op.f("fk_catalog_item_point_type_id")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_catalog_item")),
    )
    op.create_index(
        op.f("ix_catalog_item_merchant_id"), "catalog_item", ["merchant_id"], unique=False
    )
    op.create_table(
        "catalog_image",
        sa.Column("item_id", sa.String(length=32), nullable=False),
        sa.Column("content_type", sa.String(length=32), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["item_id"], ["catalog_item.id"], name=op.f("fk_catalog_image_item_id")
        ),
        sa.PrimaryKeyConstraint("item_id", name=op.f("pk_catalog_image")),
    )
    op.create_table(
        "catalog_stock_change",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("item_id", sa.String(length=32), nullable=False),
        sa.Column("delta", sa.BigInteger(), nullable=False),
        sa.Column("stock_after", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("staff_id", sa.String(length=32), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("delta <> 0", name=op.f("ck_catalog_stock_change_delta")),
        sa.ForeignKeyConstraint(
            ["item_id"], ["catalog_item.id"], name=op.f("fk_catalog_stock_change_item_id")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_catalog_stock_change")),
    )
    op.create_index(
        op.f("ix_catalog_stock_change_item_id"), "catalog_stock_change", ["item_id"], unique=False
    )
    op.create_table(
        "exchange",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("payment_id", sa.String(length=32), nullable=False),
        sa.Column("item_id", sa.String(length=32), nullable=False),
        sa.Column("resident_id", sa.String(length=32), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("fiscal_year", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("quantity BETWEEN 1 AND 10", name=op.f("ck_exchange_quantity")),
        sa.CheckConstraint(
            "channel IN ('wallet', 'card', 'assisted')", name=op.f("ck_exchange_channel")
        ),
        sa.ForeignKeyConstraint(["item_id"], ["catalog_item.id"], name=op.f("fk_exchange_item_id")),
        sa.ForeignKeyConstraint(
            ["payment_id"], ["payment.id"], name=op.f("fk_exchange_payment_id")
        ),
        sa.ForeignKeyConstraint(
            ["resident_id"], ["resident.id"], name=op.f("fk_exchange_resident_id")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_exchange")),
        sa.UniqueConstraint("payment_id", name=op.f("uq_exchange_payment_id")),
    )
    op.create_index(op.f("ix_exchange_item_id"), "exchange", ["item_id"], unique=False)
    op.create_index(
        "ix_exchange_resident_id_created_at",
        "exchange",
        ["resident_id", "created_at"],
        unique=False,
    )
    op.create_table(
        "exchange_allowance",
        sa.Column("item_id", sa.String(length=32), nullable=False),
        sa.Column("resident_id", sa.String(length=32), nullable=False),
        sa.Column("fiscal_year", sa.Integer(), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("cap", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "quantity >= 0 AND quantity <= cap", name=op.f("ck_exchange_allowance_within_cap")
        ),
        sa.ForeignKeyConstraint(
            ["item_id"], ["catalog_item.id"], name=op.f("fk_exchange_allowance_item_id")
        ),
        sa.ForeignKeyConstraint(
            ["resident_id"], ["resident.id"], name=op.f("fk_exchange_allowance_resident_id")
        ),
        sa.PrimaryKeyConstraint(
            "item_id", "resident_id", "fiscal_year", name=op.f("pk_exchange_allowance")
        ),
    )


def downgrade() -> None:
    # Exchanges have no place in the earlier schema: their rows go (their entries stay), and
    # with them the payments no till took.
    op.drop_table("exchange_allowance")
    op.drop_index("ix_exchange_resident_id_created_at", table_name="exchange")
    op.drop_index(op.f("ix_exchange_item_id"), table_name="exchange")
    op.drop_table("exchange")
    op.drop_index(op.f("ix_catalog_stock_change_item_id"), table_name="catalog_stock_change")
    op.drop_table("catalog_stock_change")
    op.drop_table("catalog_image")
    op.drop_index(op.f("ix_catalog_item_merchant_id"), table_name="catalog_item")
    op.drop_table("catalog_item")
    if op.get_bind().dialect.name == "sqlite":
        _rebuild_payment_on_sqlite(with_exchanges=False)
        op.execute("ALTER TABLE merchant DROP COLUMN kind")
    else:
        op.execute(
            "DELETE FROM payment_refund WHERE payment_id IN "
            "(SELECT id FROM payment WHERE till_id IS NULL)"
        )
        op.execute("DELETE FROM payment WHERE till_id IS NULL")
        op.drop_constraint(op.f("ck_payment_till"), "payment", type_="check")
        op.drop_constraint(op.f("ck_payment_flow"), "payment", type_="check")
        op.create_check_constraint(op.f("ck_payment_flow"), "payment", FLOWS_BEFORE)
        op.alter_column("payment", "till_id", existing_type=sa.String(length=32), nullable=False)
        op.drop_constraint(op.f("ck_merchant_kind"), "merchant", type_="check")
        op.drop_column("merchant", "kind")


def _rebuild_payment_on_sqlite(*, with_exchanges: bool) -> None:
    op.execute(f"CREATE TABLE _payment_refund_kept AS SELECT {REFUND_COLUMNS} FROM payment_refund")
    op.drop_index("ix_payment_refund_payment_id", table_name="payment_refund")
    op.drop_table("payment_refund")

    _create_payment("_payment_rebuilt", with_exchanges=with_exchanges)
    kept = "" if with_exchanges else " WHERE till_id IS NOT NULL"
    if not with_exchanges:
        op.execute(
            "DELETE FROM _payment_refund_kept WHERE payment_id IN "
            "(SELECT id FROM payment WHERE till_id IS NULL)"
        )
    op.execute(
        f"INSERT INTO _payment_rebuilt ({PAYMENT_COLUMNS}) "
        f"SELECT {PAYMENT_COLUMNS} FROM payment{kept}"
    )
    for index, _ in PAYMENT_INDEXES:
        op.drop_index(index, table_name="payment")
    op.drop_table("payment")
    op.rename_table("_payment_rebuilt", "payment")
    for index, columns in PAYMENT_INDEXES:
        op.create_index(index, "payment", columns, unique=False)

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


def _create_payment(name: str, *, with_exchanges: bool) -> None:
    """The payment table as 0016 left it, with a nullable ``till_id`` and the ``exchange`` flow
    when ``with_exchanges`` (the constraint names are the table's own)."""
    exchanges = [sa.CheckConstraint(TILL, name=op.f("ck_payment_till"))] if with_exchanges else []
    op.create_table(
        name,
        sa.Column("seq", Id, autoincrement=True, nullable=False),
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("merchant_id", sa.String(length=32), nullable=False),
        sa.Column("till_id", sa.String(length=32), nullable=with_exchanges),
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
        sa.Column("card_id", sa.String(length=32), nullable=True),
        *exchanges,
        sa.CheckConstraint("(flow = 'card') = (card_id IS NOT NULL)", name=op.f("ck_payment_card")),
        sa.ForeignKeyConstraint(["card_id"], ["card.id"], name=op.f("fk_payment_card_id")),
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
            FLOWS_AFTER if with_exchanges else FLOWS_BEFORE, name=op.f("ck_payment_flow")
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
