"""The ledger's tables, and the names of the database rules that guard them.

The tables are SQLAlchemy Core metadata; Alembic migrations (``points/shell/migrations``) create
them and add what autogenerate cannot see: triggers, and on SQLite the ``typeof`` guards. What each
rule holds, on both databases unless noted:

- ``ledger_account``: CHECK constraints hold the flags on the maintained totals
  (``ck_ledger_account_debits_within_credits``, ``ck_ledger_account_credits_within_debits``),
  keep totals non-negative and stop a closed account from having pending totals. On SQLite,
  ``typeof(...) = 'integer'`` CHECKs stop SQLite's silent overflow of an integer sum into a
  float; PostgreSQL raises on bigint overflow by itself.
- ``ledger_entry``, ``ledger_posting``, ``ledger_seal``: append-only; triggers refuse UPDATE and
  DELETE (and TRUNCATE on PostgreSQL).
- ``ledger_posting``: the composite references ``(entry_id, ledger_id)`` and
  ``(account_id, ledger_id)`` make it impossible for one entry to post to two ledgers. SQLite
  holds them as foreign keys. PostgreSQL checks them set-based, once per INSERT statement, in the
  ``ledger_postings_check`` trigger (migration 0007 says why: row-by-row referential checks were
  a third of a bulk write), which also checks that every entry the statement touches balances,
  has the postings its phase needs, and was written by the same transaction (so nothing is
  slipped into a committed entry); ``ledger_account_referenced`` refuses deleting an account with
  postings or changing its keys, as the foreign key did. ``include_in_comparison`` tells
  autogenerate so.
- On PostgreSQL a deferred constraint trigger also checks at commit that every new entry has its
  postings (an entry written without any is refused).
- ``ledger_entry.pending_id`` and ``ledger_entry.reverses_id`` are UNIQUE: a hold resolves at most
  once, an entry is reversed at most once.
- ``(namespace, idempotency_key)`` is UNIQUE.

Identifiers are 64-bit integers (``INTEGER PRIMARY KEY``, the rowid, on SQLite).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

#: Constraint names, so that migrations, error mapping and ``verify`` can refer to them.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s",
    "pk": "pk_%(table_name)s",
}
metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)

#: A 64-bit identifier that is the rowid on SQLite (``BIGINT`` would not auto-increment there).
Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Amount = sa.BigInteger()

ledger = sa.Table(
    "ledger",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("code", sa.String(32), nullable=False, unique=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("created_at_us", sa.BigInteger, nullable=False),
)

account = sa.Table(
    "ledger_account",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("ledger_id", sa.Integer, sa.ForeignKey("ledger.id"), nullable=False),
    sa.Column("code", sa.Integer, nullable=False),
    sa.Column("normal_side", sa.SmallInteger, nullable=False),
    sa.Column("owner_ref", sa.String(128), nullable=True),
    sa.Column("flags", sa.Integer, nullable=False, server_default="0"),
    sa.Column("closed", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("debits_posted", Amount, nullable=False, server_default="0"),
    sa.Column("credits_posted", Amount, nullable=False, server_default="0"),
    sa.Column("debits_pending", Amount, nullable=False, server_default="0"),
    sa.Column("credits_pending", Amount, nullable=False, server_default="0"),
    sa.Column("created_at_us", sa.BigInteger, nullable=False),
    sa.UniqueConstraint("id", "ledger_id"),
    sa.CheckConstraint("normal_side IN (1, 2)", name="normal_side"),
    sa.CheckConstraint("flags >= 0 AND flags <= 3", name="flags"),
    sa.CheckConstraint(
        "debits_posted >= 0 AND credits_posted >= 0 AND debits_pending >= 0 "
        "AND credits_pending >= 0",
        name="totals_not_negative",
    ),
    sa.CheckConstraint(
        "(flags & 1) = 0 OR debits_posted + debits_pending <= credits_posted",
        name="debits_within_credits",
    ),
    sa.CheckConstraint(
        "(flags & 2) = 0 OR credits_posted + credits_pending <= debits_posted",
        name="credits_within_debits",
    ),
    sa.CheckConstraint(
        "NOT closed OR (debits_pending = 0 AND credits_pending = 0)",
        name="closed_has_no_pending",
    ),
)
sa.Index("ix_ledger_account_ledger_owner", account.c.ledger_id, account.c.owner_ref)

entry = sa.Table(
    "ledger_entry",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("ledger_id", sa.Integer, sa.ForeignKey("ledger.id"), nullable=False),
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
    sa.Column("pending_id", Id, sa.ForeignKey("ledger_entry.id"), nullable=True, unique=True),
    sa.Column("reverses_id", Id, sa.ForeignKey("ledger_entry.id"), nullable=True, unique=True),
    sa.UniqueConstraint("id", "ledger_id"),
    sa.UniqueConstraint("namespace", "idempotency_key"),
    sa.CheckConstraint("phase IN (0, 1, 2, 3)", name="phase"),
    sa.CheckConstraint("(namespace IS NULL) = (idempotency_key IS NULL)", name="key_has_namespace"),
    sa.CheckConstraint(
        "(phase IN (2, 3)) = (pending_id IS NOT NULL)", name="resolution_names_hold"
    ),
    sa.CheckConstraint("timeout_at_us IS NULL OR phase = 1", name="timeout_only_on_hold"),
    sa.CheckConstraint("reverses_id IS NULL OR phase = 0", name="reversal_is_posted"),
)

sa.Index("ix_ledger_entry_timeout_at_us", entry.c.timeout_at_us)

posting = sa.Table(
    "ledger_posting",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("entry_id", Id, nullable=False),
    sa.Column("ledger_id", sa.Integer, nullable=False),
    sa.Column("account_id", Id, nullable=False),
    sa.Column("side", sa.SmallInteger, nullable=False),
    sa.Column("amount", Amount, nullable=False),
    sa.ForeignKeyConstraint(
        ["entry_id", "ledger_id"], ["ledger_entry.id", "ledger_entry.ledger_id"]
    ),
    sa.ForeignKeyConstraint(
        ["account_id", "ledger_id"], ["ledger_account.id", "ledger_account.ledger_id"]
    ),
    sa.CheckConstraint("side IN (1, 2)", name="side"),
    sa.CheckConstraint("amount > 0", name="amount_positive"),
)
sa.Index("ix_ledger_posting_account_id", posting.c.account_id, posting.c.id)
sa.Index("ix_ledger_posting_entry_id", posting.c.entry_id)

# Entries committed but not yet sealed. A queue rather than a scan of ``ledger_entry``: an entry
# with a lower id can commit after one with a higher id, so "everything above the last sealed
# id" is not a safe rule, and a full anti-join grows with the ledger.
unsealed = sa.Table(
    "ledger_unsealed",
    metadata,
    sa.Column("entry_id", Id, sa.ForeignKey("ledger_entry.id"), primary_key=True),
)

seal = sa.Table(
    "ledger_seal",
    metadata,
    sa.Column("sequence", Id, primary_key=True, autoincrement=False),
    sa.Column("entry_id", Id, sa.ForeignKey("ledger_entry.id"), nullable=False, unique=True),
    sa.Column("previous_hash", sa.LargeBinary(32), nullable=False),
    sa.Column("hash", sa.LargeBinary(32), nullable=False),
    sa.CheckConstraint("sequence > 0", name="sequence_positive"),
)

# One row: the head of the seal chain. A sealer locks it, so that one sealer runs at a time.
seal_head = sa.Table(
    "ledger_seal_head",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("sequence", sa.BigInteger, nullable=False),
    sa.Column("hash", sa.LargeBinary(32), nullable=False),
    sa.CheckConstraint("id = 1", name="single_row"),
)

APPEND_ONLY_TABLES = ("ledger_entry", "ledger_posting", "ledger_seal")

#: Triggers ``verify`` expects, per dialect.
EXPECTED_TRIGGERS: dict[str, frozenset[str]] = {
    "sqlite": frozenset(
        f"{table}_no_{action}" for table in APPEND_ONLY_TABLES for action in ("update", "delete")
    ),
    "postgresql": frozenset(
        {f"{table}_append_only" for table in APPEND_ONLY_TABLES}
        | {
            "ledger_entry_balanced",
            "ledger_postings_check",
            "ledger_account_referenced",
            "ledger_account_key_referenced",
            "ledger_account_referenced_truncate",
        }
    ),
}

#: The posting references PostgreSQL checks with the ``ledger_postings_check`` trigger instead
#: of foreign keys (migration 0007); the model declares them for SQLite.
TRIGGER_CHECKED_FOREIGN_KEYS = frozenset(
    {"fk_ledger_posting_entry_id_ledger_id", "fk_ledger_posting_account_id_ledger_id"}
)


def include_in_comparison(
    dialect_name: str, trigger_checked: frozenset[str] = TRIGGER_CHECKED_FOREIGN_KEYS
) -> Callable[..., bool]:
    """An Alembic ``include_object`` hook: on PostgreSQL, leave out the foreign keys the
    triggers check (``trigger_checked``), so autogenerate does not propose adding them back."""

    def include(item: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
        return not (
            dialect_name == "postgresql"
            and type_ == "foreign_key_constraint"
            and name in trigger_checked
        )

    return include


#: CHECK constraints ``verify`` expects on ``ledger_account`` (by name, on both dialects).
EXPECTED_ACCOUNT_CHECKS = frozenset(
    {
        "ck_ledger_account_debits_within_credits",
        "ck_ledger_account_credits_within_debits",
        "ck_ledger_account_totals_not_negative",
        "ck_ledger_account_closed_has_no_pending",
    }
)
#: SQLite only: the guards against integer overflow into floats.
EXPECTED_SQLITE_TYPE_CHECKS = frozenset(
    {"ck_ledger_account_totals_are_integers", "ck_ledger_posting_amount_is_integer"}
)
