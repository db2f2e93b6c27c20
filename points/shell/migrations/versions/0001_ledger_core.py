"""Ledger core: ledgers, accounts, entries, postings, the seal chain, and their guards.

Revision ID: 0001_ledger_core
Revises:
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_ledger_core"
down_revision = None
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

APPEND_ONLY = ("ledger_entry", "ledger_posting", "ledger_seal")

PG_FUNCTIONS = [
    """
    CREATE FUNCTION ledger_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
            USING ERRCODE = 'restrict_violation';
    END $$
    """,
    """
    CREATE FUNCTION ledger_assert_entry_balanced(target_id bigint) RETURNS void
    LANGUAGE plpgsql AS $$
    DECLARE
        entry_phase smallint;
        debits numeric;
        credits numeric;
        postings bigint;
    BEGIN
        SELECT phase INTO entry_phase FROM ledger_entry WHERE id = target_id;
        SELECT coalesce(sum(amount) FILTER (WHERE side = 1), 0),
               coalesce(sum(amount) FILTER (WHERE side = 2), 0),
               count(*)
          INTO debits, credits, postings
          FROM ledger_posting WHERE entry_id = target_id;
        IF debits <> credits THEN
            RAISE EXCEPTION 'entry % is unbalanced: debits %, credits %',
                target_id, debits, credits USING ERRCODE = 'check_violation',
                CONSTRAINT = 'ledger_entry_balanced';
        END IF;
        IF (entry_phase = 3 AND postings > 0) OR (entry_phase <> 3 AND postings < 2) THEN
            RAISE EXCEPTION 'entry % (phase %) has % postings', target_id, entry_phase, postings
                USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_entry_balanced';
        END IF;
    END $$
    """,
    """
    CREATE FUNCTION ledger_entry_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM ledger_assert_entry_balanced(NEW.id);
        RETURN NULL;
    END $$
    """,
    """
    CREATE FUNCTION ledger_posting_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM ledger_assert_entry_balanced(NEW.entry_id);
        RETURN NULL;
    END $$
    """,
]


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"

    op.create_table(
        "ledger",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("code", sa.String(32), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("created_at_us", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_ledger"),
        sa.UniqueConstraint("code", name="uq_ledger_code"),
    )

    account_guards = []
    if sqlite:
        account_guards.append(
            sa.CheckConstraint(
                "typeof(debits_posted) = 'integer' AND typeof(credits_posted) = 'integer' "
                "AND typeof(debits_pending) = 'integer' AND typeof(credits_pending) = 'integer'",
                name="ck_ledger_account_totals_are_integers",
            )
        )
    op.create_table(
        "ledger_account",
        sa.Column("id", Id, nullable=False),
        sa.Column("ledger_id", sa.Integer, nullable=False),
        sa.Column("code", sa.Integer, nullable=False),
        sa.Column("normal_side", sa.SmallInteger, nullable=False),
        sa.Column("owner_ref", sa.String(128), nullable=True),
        sa.Column("flags", sa.Integer, nullable=False, server_default="0"),
        sa.Column("closed", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("debits_posted", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("credits_posted", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("debits_pending", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("credits_pending", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("created_at_us", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_ledger_account"),
        sa.ForeignKeyConstraint(["ledger_id"], ["ledger.id"], name="fk_ledger_account_ledger_id"),
        sa.UniqueConstraint("id", "ledger_id", name="uq_ledger_account_id_ledger_id"),
        sa.CheckConstraint("normal_side IN (1, 2)", name="ck_ledger_account_normal_side"),
        sa.CheckConstraint("flags >= 0 AND flags <= 3", name="ck_ledger_account_flags"),
        sa.CheckConstraint(
            "debits_posted >= 0 AND credits_posted >= 0 AND debits_pending >= 0 "
            "AND credits_pending >= 0",
            name="ck_ledger_account_totals_not_negative",
        ),
        sa.CheckConstraint(
            "(flags & 1) = 0 OR debits_posted + debits_pending <= credits_posted",
            name="ck_ledger_account_debits_within_credits",
        ),
        sa.CheckConstraint(
            "(flags & 2) = 0 OR credits_posted + credits_pending <= debits_posted",
            name="ck_ledger_account_credits_within_debits",
        ),
        sa.CheckConstraint(
            "NOT closed OR (debits_pending = 0 AND credits_pending = 0)",
            name="ck_ledger_account_closed_has_no_pending",
        ),
        *account_guards,
    )
    op.create_index("ix_ledger_account_ledger_owner", "ledger_account", ["ledger_id", "owner_ref"])

    op.create_table(
        "ledger_entry",
        sa.Column("id", Id, nullable=False),
        sa.Column("ledger_id", sa.Integer, nullable=False),
        sa.Column("phase", sa.SmallInteger, nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("description", sa.String(500), nullable=False),
        sa.Column("metadata", sa.Text, nullable=False),
        sa.Column("effective_at_us", sa.BigInteger, nullable=False),
        sa.Column("recorded_at_us", sa.BigInteger, nullable=False),
        sa.Column("namespace", sa.String(128), nullable=True),
        sa.Column("idempotency_key", sa.String(255), nullable=True),
        sa.Column("content_digest", sa.LargeBinary(32), nullable=True),
        sa.Column("timeout_at_us", sa.BigInteger, nullable=True),
        sa.Column("pending_id", Id, nullable=True),
        sa.Column("reverses_id", Id, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_ledger_entry"),
        sa.ForeignKeyConstraint(["ledger_id"], ["ledger.id"], name="fk_ledger_entry_ledger_id"),
        sa.ForeignKeyConstraint(
            ["pending_id"], ["ledger_entry.id"], name="fk_ledger_entry_pending_id"
        ),
        sa.ForeignKeyConstraint(
            ["reverses_id"], ["ledger_entry.id"], name="fk_ledger_entry_reverses_id"
        ),
        sa.UniqueConstraint("id", "ledger_id", name="uq_ledger_entry_id_ledger_id"),
        sa.UniqueConstraint(
            "namespace", "idempotency_key", name="uq_ledger_entry_namespace_idempotency_key"
        ),
        sa.UniqueConstraint("pending_id", name="uq_ledger_entry_pending_id"),
        sa.UniqueConstraint("reverses_id", name="uq_ledger_entry_reverses_id"),
        sa.CheckConstraint("phase IN (0, 1, 2, 3)", name="ck_ledger_entry_phase"),
        sa.CheckConstraint(
            "(namespace IS NULL) = (idempotency_key IS NULL)",
            name="ck_ledger_entry_key_has_namespace",
        ),
        sa.CheckConstraint(
            "(content_digest IS NULL) = (idempotency_key IS NULL)",
            name="ck_ledger_entry_key_has_digest",
        ),
        sa.CheckConstraint(
            "(phase IN (2, 3)) = (pending_id IS NOT NULL)",
            name="ck_ledger_entry_resolution_names_hold",
        ),
        sa.CheckConstraint(
            "timeout_at_us IS NULL OR phase = 1", name="ck_ledger_entry_timeout_only_on_hold"
        ),
        sa.CheckConstraint(
            "reverses_id IS NULL OR phase = 0", name="ck_ledger_entry_reversal_is_posted"
        ),
    )

    op.create_index("ix_ledger_entry_timeout_at_us", "ledger_entry", ["timeout_at_us"])

    posting_guards = []
    if sqlite:
        posting_guards.append(
            sa.CheckConstraint(
                "typeof(amount) = 'integer'", name="ck_ledger_posting_amount_is_integer"
            )
        )
    op.create_table(
        "ledger_posting",
        sa.Column("id", Id, nullable=False),
        sa.Column("entry_id", Id, nullable=False),
        sa.Column("ledger_id", sa.Integer, nullable=False),
        sa.Column("account_id", Id, nullable=False),
        sa.Column("side", sa.SmallInteger, nullable=False),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_ledger_posting"),
        sa.ForeignKeyConstraint(
            ["entry_id", "ledger_id"],
            ["ledger_entry.id", "ledger_entry.ledger_id"],
            name="fk_ledger_posting_entry_id_ledger_id",
        ),
        sa.ForeignKeyConstraint(
            ["account_id", "ledger_id"],
            ["ledger_account.id", "ledger_account.ledger_id"],
            name="fk_ledger_posting_account_id_ledger_id",
        ),
        sa.CheckConstraint("side IN (1, 2)", name="ck_ledger_posting_side"),
        sa.CheckConstraint("amount > 0", name="ck_ledger_posting_amount_positive"),
        *posting_guards,
    )
    op.create_index("ix_ledger_posting_account_id", "ledger_posting", ["account_id", "id"])
    op.create_index("ix_ledger_posting_entry_id", "ledger_posting", ["entry_id"])

    op.create_table(
        "ledger_unsealed",
        sa.Column("entry_id", Id, nullable=False),
        sa.PrimaryKeyConstraint("entry_id", name="pk_ledger_unsealed"),
        sa.ForeignKeyConstraint(
            ["entry_id"], ["ledger_entry.id"], name="fk_ledger_unsealed_entry_id"
        ),
    )
    op.create_table(
        "ledger_seal",
        sa.Column("sequence", Id, nullable=False, autoincrement=False),
        sa.Column("entry_id", Id, nullable=False),
        sa.Column("previous_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("hash", sa.LargeBinary(32), nullable=False),
        sa.PrimaryKeyConstraint("sequence", name="pk_ledger_seal"),
        sa.ForeignKeyConstraint(["entry_id"], ["ledger_entry.id"], name="fk_ledger_seal_entry_id"),
        sa.UniqueConstraint("entry_id", name="uq_ledger_seal_entry_id"),
        sa.CheckConstraint("sequence > 0", name="ck_ledger_seal_sequence_positive"),
    )
    seal_head = op.create_table(
        "ledger_seal_head",
        sa.Column("id", sa.Integer, nullable=False, autoincrement=False),
        sa.Column("sequence", sa.BigInteger, nullable=False),
        sa.Column("hash", sa.LargeBinary(32), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_ledger_seal_head"),
        sa.CheckConstraint("id = 1", name="ck_ledger_seal_head_single_row"),
    )
    op.bulk_insert(seal_head, [{"id": 1, "sequence": 0, "hash": bytes(32)}])

    if sqlite:
        for table in APPEND_ONLY:
            for action in ("update", "delete"):
                op.execute(
                    f"CREATE TRIGGER {table}_no_{action} BEFORE {action.upper()} ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, '{table} is append-only: {action} refused'); END"
                )
    else:
        for function in PG_FUNCTIONS:
            op.execute(function)
        for table in APPEND_ONLY:
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE OR TRUNCATE "
                f"ON {table} FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change()"
            )
        op.execute(
            "CREATE CONSTRAINT TRIGGER ledger_entry_balanced AFTER INSERT ON ledger_entry "
            "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW "
            "EXECUTE FUNCTION ledger_entry_balanced()"
        )
        op.execute(
            "CREATE CONSTRAINT TRIGGER ledger_posting_balanced AFTER INSERT ON ledger_posting "
            "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW "
            "EXECUTE FUNCTION ledger_posting_balanced()"
        )


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    if not sqlite:
        for table in APPEND_ONLY:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
        op.execute("DROP TRIGGER IF EXISTS ledger_entry_balanced ON ledger_entry")
        op.execute("DROP TRIGGER IF EXISTS ledger_posting_balanced ON ledger_posting")
        op.execute("DROP FUNCTION IF EXISTS ledger_refuse_change()")
        op.execute("DROP FUNCTION IF EXISTS ledger_entry_balanced()")
        op.execute("DROP FUNCTION IF EXISTS ledger_posting_balanced()")
        op.execute("DROP FUNCTION IF EXISTS ledger_assert_entry_balanced(bigint)")
    for table in (
        "ledger_seal_head",
        "ledger_seal",
        "ledger_unsealed",
        "ledger_posting",
        "ledger_entry",
        "ledger_account",
        "ledger",
    ):
        op.drop_table(table)
