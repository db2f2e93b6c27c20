"""Settlement (issue 20, ``redemption.settlement`` and ``redemption.payouts``): settlement runs,
statements with their covered entries and budget lines, merchants' bank accounts, the transfers
of a run's file, and the recovery of a closed merchant's negative balance; ``point_type.yen_rate``
(yen per point, default 1), ``merchant_settings.fee_bps`` (cash-out fee, default 0) and
``program.budget_code`` (款項目節).

On SQLite the two CHECKed columns are added with a column CHECK (``ALTER TABLE ... ADD COLUMN``
allows it, as in 0017); PostgreSQL adds the named constraints.

Revision ID: 0018_settlement
Revises: 0017_catalog
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018_settlement"
down_revision = "0017_catalog"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
YEN_RATE = "yen_rate BETWEEN 1 AND 100000"
FEE_BPS = "fee_bps BETWEEN 0 AND 1000"


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute(
            "ALTER TABLE point_type ADD COLUMN yen_rate INTEGER NOT NULL DEFAULT 1 "
            f"CONSTRAINT ck_point_type_yen_rate CHECK ({YEN_RATE})"
        )
        op.execute(
            "ALTER TABLE merchant_settings ADD COLUMN fee_bps INTEGER NOT NULL DEFAULT 0 "
            f"CONSTRAINT ck_merchant_settings_fee_bps CHECK ({FEE_BPS})"
        )
    else:
        op.add_column(
            "point_type", sa.Column("yen_rate", sa.Integer(), server_default="1", nullable=False)
        )
        op.create_check_constraint(op.f("ck_point_type_yen_rate"), "point_type", YEN_RATE)
        op.add_column(
            "merchant_settings",
            sa.Column("fee_bps", sa.Integer(), server_default="0", nullable=False),
        )
        op.create_check_constraint(
            op.f("ck_merchant_settings_fee_bps"), "merchant_settings", FEE_BPS
        )
    op.add_column("program", sa.Column("budget_code", sa.String(length=64), nullable=True))
    op.create_table(
        "settlement_run",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("cut_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("trigger", sa.String(length=16), nullable=False),
        sa.Column("created_by", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("file_made_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("transfer_on", sa.Date(), nullable=True),
        sa.Column("paid_on", sa.Date(), nullable=True),
        sa.Column("paid_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("paid_by", sa.String(length=32), nullable=True),
        sa.CheckConstraint(
            "trigger IN ('scheduler', 'cli', 'api')", name=op.f("ck_settlement_run_trigger")
        ),
        sa.CheckConstraint(
            "(paid_on IS NULL) = (paid_at IS NULL) AND (paid_on IS NULL) = (paid_by IS NULL)",
            name=op.f("ck_settlement_run_paid"),
        ),
        sa.CheckConstraint(
            "(file_made_at IS NULL) = (transfer_on IS NULL)", name=op.f("ck_settlement_run_file")
        ),
        sa.CheckConstraint(
            "paid_on IS NULL OR file_made_at IS NOT NULL",
            name=op.f("ck_settlement_run_paid_after_file"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_settlement_run")),
        sa.UniqueConstraint("period", name=op.f("uq_settlement_run_period")),
    )
    op.create_table(
        "merchant_bank_account",
        sa.Column("merchant_id", sa.String(length=32), nullable=False),
        sa.Column("bank_code", sa.String(length=4), nullable=False),
        sa.Column("branch_code", sa.String(length=3), nullable=False),
        sa.Column("account_type", sa.String(length=1), nullable=False),
        sa.Column("account_number", sa.String(length=7), nullable=False),
        sa.Column("holder_kana", sa.String(length=30), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(length=32), nullable=False),
        sa.CheckConstraint(
            "account_type IN ('1', '2', '4', '9')",
            name=op.f("ck_merchant_bank_account_account_type"),
        ),
        sa.CheckConstraint(
            "length(bank_code) = 4 AND length(branch_code) = 3 AND length(account_number) = 7",
            name=op.f("ck_merchant_bank_account_codes"),
        ),
        sa.ForeignKeyConstraint(
            ["merchant_id"], ["merchant.id"], name=op.f("fk_merchant_bank_account_merchant_id")
        ),
        sa.PrimaryKeyConstraint("merchant_id", name=op.f("pk_merchant_bank_account")),
    )
    op.create_table(
        "payout_transfer",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("run_id", sa.String(length=32), nullable=False),
        sa.Column("merchant_id", sa.String(length=32), nullable=False),
        sa.Column("line", sa.Integer(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("bank_code", sa.String(length=4), nullable=False),
        sa.Column("branch_code", sa.String(length=3), nullable=False),
        sa.Column("account_type", sa.String(length=1), nullable=False),
        sa.Column("account_number", sa.String(length=7), nullable=False),
        sa.Column("holder_kana", sa.String(length=30), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("rejected_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("rejected_reason", sa.String(length=500), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "(status = 'rejected') = (rejected_at IS NOT NULL)",
            name=op.f("ck_payout_transfer_rejected"),
        ),
        sa.CheckConstraint(
            "status IN ('sent', 'paid', 'rejected')", name=op.f("ck_payout_transfer_status")
        ),
        sa.CheckConstraint("amount > 0", name=op.f("ck_payout_transfer_amount_positive")),
        sa.ForeignKeyConstraint(
            ["merchant_id"], ["merchant.id"], name=op.f("fk_payout_transfer_merchant_id")
        ),
        sa.ForeignKeyConstraint(
            ["run_id"], ["settlement_run.id"], name=op.f("fk_payout_transfer_run_id")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payout_transfer")),
        sa.UniqueConstraint(
            "run_id", "merchant_id", name=op.f("uq_payout_transfer_run_id_merchant_id")
        ),
    )
    with op.batch_alter_table("payout_transfer", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_payout_transfer_merchant_id"), ["merchant_id"], unique=False
        )

    op.create_table(
        "statement",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("run_id", sa.String(length=32), nullable=False),
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("merchant_id", sa.String(length=32), nullable=False),
        sa.Column("point_type_id", sa.String(length=32), nullable=False),
        sa.Column("payment_count", sa.BigInteger(), nullable=False),
        sa.Column("refund_count", sa.BigInteger(), nullable=False),
        sa.Column("payment_points", sa.BigInteger(), nullable=False),
        sa.Column("refund_points", sa.BigInteger(), nullable=False),
        sa.Column("net_points", sa.BigInteger(), nullable=False),
        sa.Column("carried_in", sa.BigInteger(), nullable=False),
        sa.Column("settle_points", sa.BigInteger(), nullable=False),
        sa.Column("carried_out", sa.BigInteger(), nullable=False),
        sa.Column("yen_rate", sa.Integer(), nullable=False),
        sa.Column("fee_bps", sa.Integer(), nullable=False),
        sa.Column("yen", sa.BigInteger(), nullable=False),
        sa.Column("fee", sa.BigInteger(), nullable=False),
        sa.Column("yen_to_pay", sa.BigInteger(), nullable=False),
        sa.Column("transfer", sa.String(length=8), nullable=False),
        sa.Column("final", sa.Boolean(), nullable=False),
        sa.Column("entry_id", Id, nullable=True),
        sa.Column("transfer_id", Id, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "transfer = 'bank' OR transfer_id IS NULL", name=op.f("ck_statement_no_transfer")
        ),
        sa.CheckConstraint("transfer IN ('bank', 'none')", name=op.f("ck_statement_transfer")),
        sa.CheckConstraint(
            "(settle_points = 0) = (entry_id IS NULL)", name=op.f("ck_statement_posted")
        ),
        sa.CheckConstraint(
            "carried_in <= 0 AND carried_out <= 0 AND settle_points >= 0 "
            "AND (settle_points = 0 OR carried_out = 0) "
            "AND settle_points + carried_out = carried_in + net_points",
            name=op.f("ck_statement_carry"),
        ),
        sa.CheckConstraint(
            "net_points = payment_points - refund_points", name=op.f("ck_statement_net")
        ),
        sa.CheckConstraint(
            "payment_points >= 0 AND refund_points >= 0 AND payment_count >= 0 "
            "AND refund_count >= 0",
            name=op.f("ck_statement_counts"),
        ),
        sa.CheckConstraint(
            "yen = settle_points * yen_rate AND fee = (yen * fee_bps) / 10000 "
            "AND yen_to_pay = yen - fee",
            name=op.f("ck_statement_yen"),
        ),
        sa.CheckConstraint(
            "yen_rate >= 1 AND fee_bps BETWEEN 0 AND 10000", name=op.f("ck_statement_terms")
        ),
        sa.ForeignKeyConstraint(
            ["entry_id"], ["ledger_entry.id"], name=op.f("fk_statement_entry_id")
        ),
        sa.ForeignKeyConstraint(
            ["merchant_id"], ["merchant.id"], name=op.f("fk_statement_merchant_id")
        ),
        sa.ForeignKeyConstraint(
            ["point_type_id"], ["point_type.id"], name=op.f("fk_statement_point_type_id")
        ),
        sa.ForeignKeyConstraint(
            ["run_id"], ["settlement_run.id"], name=op.f("fk_statement_run_id")
        ),
        sa.ForeignKeyConstraint(
            ["transfer_id"], ["payout_transfer.id"], name=op.f("fk_statement_transfer_id")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_statement")),
        sa.UniqueConstraint("entry_id", name=op.f("uq_statement_entry_id")),
        sa.UniqueConstraint(
            "run_id",
            "merchant_id",
            "point_type_id",
            name=op.f("uq_statement_run_id_merchant_id_point_type_id"),
        ),
    )
    with op.batch_alter_table("statement", schema=None) as batch_op:
        batch_op.create_index(
            "ix_statement_merchant_id_run_id", ["merchant_id", "run_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_statement_transfer_id"), ["transfer_id"], unique=False)

    op.create_table(
        "statement_entry",
        sa.Column("entry_id", Id, autoincrement=False, nullable=False),
        sa.Column("statement_id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("kind IN ('payment', 'refund')", name=op.f("ck_statement_entry_kind")),
        sa.ForeignKeyConstraint(
            ["entry_id"], ["ledger_entry.id"], name=op.f("fk_statement_entry_entry_id")
        ),
        sa.ForeignKeyConstraint(
            ["statement_id"], ["statement.id"], name=op.f("fk_statement_entry_statement_id")
        ),
        sa.PrimaryKeyConstraint("entry_id", name=op.f("pk_statement_entry")),
    )
    with op.batch_alter_table("statement_entry", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_statement_entry_statement_id"), ["statement_id"], unique=False
        )

    op.create_table(
        "statement_line",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("statement_id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("program_id", sa.String(length=32), nullable=True),
        sa.Column("budget_code", sa.String(length=64), nullable=True),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("yen", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "(kind = 'program') = (program_id IS NOT NULL)", name=op.f("ck_statement_line_program")
        ),
        sa.CheckConstraint(
            "kind IN ('program', 'unattributed', 'carried_in', 'carried_out')",
            name=op.f("ck_statement_line_kind"),
        ),
        sa.ForeignKeyConstraint(
            ["program_id"], ["program.id"], name=op.f("fk_statement_line_program_id")
        ),
        sa.ForeignKeyConstraint(
            ["statement_id"], ["statement.id"], name=op.f("fk_statement_line_statement_id")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_statement_line")),
    )
    with op.batch_alter_table("statement_line", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_statement_line_statement_id"), ["statement_id"], unique=False
        )

    op.create_table(
        "statement_recovery",
        sa.Column("statement_id", sa.String(length=32), nullable=False),
        sa.Column("method", sa.String(length=16), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("yen", sa.BigInteger(), nullable=False),
        sa.Column("note", sa.String(length=500), nullable=False),
        sa.Column("entry_id", Id, nullable=False),
        sa.Column("recorded_by", sa.String(length=32), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "method IN ('repaid', 'offset', 'written_off')",
            name=op.f("ck_statement_recovery_method"),
        ),
        sa.CheckConstraint("points > 0 AND yen >= 0", name=op.f("ck_statement_recovery_amounts")),
        sa.ForeignKeyConstraint(
            ["entry_id"], ["ledger_entry.id"], name=op.f("fk_statement_recovery_entry_id")
        ),
        sa.ForeignKeyConstraint(
            ["statement_id"], ["statement.id"], name=op.f("fk_statement_recovery_statement_id")
        ),
        sa.PrimaryKeyConstraint("statement_id", name=op.f("pk_statement_recovery")),
        sa.UniqueConstraint("entry_id", name=op.f("uq_statement_recovery_entry_id")),
    )


def downgrade() -> None:
    op.drop_table("statement_recovery")
    with op.batch_alter_table("statement_line", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_statement_line_statement_id"))

    op.drop_table("statement_line")
    with op.batch_alter_table("statement_entry", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_statement_entry_statement_id"))

    op.drop_table("statement_entry")
    with op.batch_alter_table("statement", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_statement_transfer_id"))
        batch_op.drop_index("ix_statement_merchant_id_run_id")

    op.drop_table("statement")
    with op.batch_alter_table("payout_transfer", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_payout_transfer_merchant_id"))

    op.drop_table("payout_transfer")
    op.drop_table("merchant_bank_account")
    op.drop_table("settlement_run")
    op.drop_column("program", "budget_code")
    if op.get_bind().dialect.name == "sqlite":
        # A column CHECK of the column itself does not stop SQLite dropping it (0017 too).
        op.execute("ALTER TABLE merchant_settings DROP COLUMN fee_bps")
        op.execute("ALTER TABLE point_type DROP COLUMN yen_rate")
    else:
        op.drop_constraint(op.f("ck_merchant_settings_fee_bps"), "merchant_settings", "check")
        op.drop_column("merchant_settings", "fee_bps")
        op.drop_constraint(op.f("ck_point_type_yen_rate"), "point_type", "check")
        op.drop_column("point_type", "yen_rate")
