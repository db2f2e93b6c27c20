"""The database holds the ledger's rules by itself: raw SQL that bypasses the ledger is refused.

Each test sets up a small ledger through the API, then writes to the migrated database with raw
SQL the way a second writer (a script, a careless migration, an attacker with credentials)
would, and checks that the database refuses and that nothing changed.
"""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from concurrency import Waiting
from ledger_helpers import (
    MAX,
    Chart,
    count,
    fund,
    make_chart,
    run_sql,
    seal_and_verify,
    snapshot,
    totals,
    transfer,
)
from sqlalchemy.engine import Engine

from ledger import Ledger, Side, errors
from ledger.database import DriverCursor, constraint_violation

_INSERT_ENTRY = (
    "INSERT INTO ledger_entry (ledger_id, phase, kind, description, metadata, effective_at_us, "
    "recorded_at_us, namespace, idempotency_key, content_digest, pending_id) VALUES "
    "(:ledger_id, :phase, 'raw', '', '{}', 0, 0, :namespace, :key, :digest, :pending_id)"
)
_INSERT_POSTING = (
    "INSERT INTO ledger_posting (entry_id, ledger_id, account_id, side, amount) "
    "VALUES (:entry_id, :ledger_id, :account_id, :side, :amount)"
)


def insert_entry(
    connection: sa.Connection,
    ledger_id: int,
    *,
    phase: int = 0,
    namespace: str | None = None,
    key: str | None = None,
    pending_id: int | None = None,
) -> int:
    connection.execute(
        sa.text(_INSERT_ENTRY),
        {
            "ledger_id": ledger_id,
            "phase": phase,
            "namespace": namespace,
            "key": key,
            # An entry's request digest exists exactly when it has an idempotency key.
            "digest": bytes(32) if key is not None else None,
            "pending_id": pending_id,
        },
    )
    return int(
        connection.execute(
            sa.text("SELECT max(id) FROM ledger_entry WHERE ledger_id = :l"), {"l": ledger_id}
        ).scalar_one()
    )


def insert_posting(
    connection: sa.Connection,
    entry_id: int,
    ledger_id: int,
    account_id: int,
    side: Side,
    amount: int,
) -> None:
    connection.execute(
        sa.text(_INSERT_POSTING),
        {
            "entry_id": entry_id,
            "ledger_id": ledger_id,
            "account_id": account_id,
            "side": int(side),
            "amount": amount,
        },
    )


def assert_refused(
    engine: Engine,
    sql: str,
    params: dict[str, Any] | None = None,
    *,
    error: type[Exception] = sa.exc.IntegrityError,
    names: str | None = None,
) -> None:
    """``sql`` is refused with ``error`` (naming ``names`` when given) and changes nothing."""
    before = snapshot(engine)
    with pytest.raises(error) as raised:
        run_sql(engine, sql, params)
    if names is not None:
        assert names in str(raised.value)
    assert snapshot(engine) == before


@pytest.fixture
def chart(ledger_: Ledger) -> Chart:
    chart = make_chart(ledger_)
    fund(ledger_, chart, 100)
    ledger_.post(transfer(chart.capped.id, chart.merchant.id, 50))
    return chart


# Account totals: the flags, non-negative totals, closed accounts -------------------------------


def test_raw_updates_breaking_a_flag_are_refused(
    ledger_: Ledger, engine: Engine, chart: Chart
) -> None:
    # DEBITS_MUST_NOT_EXCEED_CREDITS (the wallet).
    wallet = chart.wallet.id
    name = "ck_ledger_account_debits_within_credits"
    assert_refused(
        engine, f"UPDATE ledger_account SET debits_posted = 101 WHERE id = {wallet}", names=name
    )
    assert_refused(
        engine, f"UPDATE ledger_account SET debits_pending = 101 WHERE id = {wallet}", names=name
    )
    assert_refused(
        engine,
        f"UPDATE ledger_account SET debits_posted = 60, debits_pending = 41 WHERE id = {wallet}",
        names=name,
    )
    assert totals(ledger_, wallet) == (0, 100, 0, 0)
    ledger_.post(transfer(wallet, chart.merchant.id, 60))
    assert_refused(
        engine, f"UPDATE ledger_account SET credits_posted = 59 WHERE id = {wallet}", names=name
    )
    assert totals(ledger_, wallet) == (60, 100, 0, 0)
    # The same change within the flag is accepted: the refusals above are the flag's doing.
    run_sql(engine, f"UPDATE ledger_account SET debits_pending = 40 WHERE id = {wallet}")
    assert totals(ledger_, wallet) == (60, 100, 40, 0)

    # CREDITS_MUST_NOT_EXCEED_DEBITS (the capped account).
    capped = chart.capped.id
    assert totals(ledger_, capped) == (50, 0, 0, 0)
    name = "ck_ledger_account_credits_within_debits"
    assert_refused(
        engine, f"UPDATE ledger_account SET credits_posted = 51 WHERE id = {capped}", names=name
    )
    assert_refused(
        engine, f"UPDATE ledger_account SET credits_pending = 51 WHERE id = {capped}", names=name
    )
    assert totals(ledger_, capped) == (50, 0, 0, 0)
    ledger_.post(transfer(chart.source.id, capped, 20))
    assert_refused(
        engine, f"UPDATE ledger_account SET debits_posted = 19 WHERE id = {capped}", names=name
    )
    assert totals(ledger_, capped) == (50, 20, 0, 0)
    run_sql(engine, f"UPDATE ledger_account SET credits_pending = 30 WHERE id = {capped}")
    assert totals(ledger_, capped) == (50, 20, 0, 30)


def test_negative_totals_and_pending_on_a_closed_account_are_refused(
    ledger_: Ledger, engine: Engine, chart: Chart
) -> None:
    # Totals are never negative.
    merchant = chart.merchant.id
    for column in ("debits_posted", "credits_posted", "debits_pending", "credits_pending"):
        assert_refused(
            engine,
            f"UPDATE ledger_account SET {column} = -1 WHERE id = {merchant}",
            names="ck_ledger_account_totals_not_negative",
        )
    assert totals(ledger_, merchant) == (0, 50, 0, 0)

    # A closed account has no pending totals.
    ledger_.post(transfer(chart.wallet.id, chart.merchant.id, 30, pending=True))
    assert_refused(
        engine,
        f"UPDATE ledger_account SET closed = true WHERE id = {chart.wallet.id}",
        names="ck_ledger_account_closed_has_no_pending",
    )
    assert_refused(
        engine,
        f"UPDATE ledger_account SET closed = true WHERE id = {chart.merchant.id}",
        names="ck_ledger_account_closed_has_no_pending",
    )
    assert not ledger_.get_account(chart.wallet.id).closed
    # A closed account cannot be given a pending total either.
    run_sql(engine, f"UPDATE ledger_account SET closed = true WHERE id = {chart.source.id}")
    assert_refused(
        engine,
        f"UPDATE ledger_account SET debits_pending = 1 WHERE id = {chart.source.id}",
        names="ck_ledger_account_closed_has_no_pending",
    )


def test_integer_overflow_of_a_total_is_refused(
    backend: str, ledger_: Ledger, engine: Engine, chart: Chart
) -> None:
    merchant = chart.merchant.id
    overflow = (
        f"UPDATE ledger_account SET credits_posted = credits_posted + {MAX} WHERE id = {merchant}"
    )
    if backend == "sqlite":
        # SQLite turns an overflowing integer sum into a REAL instead of raising; the typeof
        # CHECK refuses it, and any other non-integer.
        assert scalar_typeof(engine, f"{MAX} + 50") == "real"
        assert_refused(engine, overflow, names="ck_ledger_account_totals_are_integers")
        assert_refused(
            engine,
            f"UPDATE ledger_account SET debits_pending = 1.5 WHERE id = {merchant}",
            names="ck_ledger_account_totals_are_integers",
        )
    else:
        # PostgreSQL raises on bigint overflow by itself.
        assert_refused(engine, overflow, error=sa.exc.DBAPIError, names="out of range")
    assert totals(ledger_, merchant) == (0, 50, 0, 0)


def scalar_typeof(engine: Engine, expression: str) -> str:
    with engine.connect() as connection:
        return str(connection.exec_driver_sql(f"SELECT typeof({expression})").scalar_one())


# Append-only history ---------------------------------------------------------------------------


APPEND_ONLY_STATEMENTS = [
    "UPDATE ledger_entry SET description = 'changed'",
    "UPDATE ledger_entry SET kind = 'x' WHERE id = {entry}",
    "DELETE FROM ledger_entry WHERE id = {entry}",
    "UPDATE ledger_posting SET amount = amount + 1",
    "DELETE FROM ledger_posting WHERE entry_id = {entry}",
    "UPDATE ledger_seal SET hash = previous_hash",
    "DELETE FROM ledger_seal",
]


def test_history_is_append_only(
    backend: str, ledger_: Ledger, engine: Engine, chart: Chart
) -> None:
    entry = ledger_.post(transfer(chart.wallet.id, chart.merchant.id, 10))
    assert ledger_.seal() == 3
    for table in ("ledger_entry", "ledger_posting", "ledger_seal"):
        assert count(engine, table) > 0
    for statement in APPEND_ONLY_STATEMENTS:
        assert_refused(
            engine, statement.format(entry=entry.id), error=sa.exc.DBAPIError, names="append-only"
        )
    assert ledger_.verify().ok

    # PostgreSQL: TRUNCATE too (SQLite has no TRUNCATE).
    if backend == "postgresql":
        for statement in (
            "TRUNCATE ledger_posting",
            "TRUNCATE ledger_seal",
            "TRUNCATE ledger_entry CASCADE",
        ):
            assert_refused(engine, statement, error=sa.exc.DBAPIError, names="append-only")
        assert ledger_.verify().ok


# One ledger per entry: composite references -------------------------------------------------


def insert_postings(
    connection: sa.Connection,
    entry_id: int,
    rows: list[tuple[int, int, Side, int]],
) -> None:
    """Insert ``(ledger_id, account_id, side, amount)`` rows for one entry in one statement, as
    the ledger writes them (PostgreSQL checks each statement's postings when it ends)."""
    values = ", ".join(
        f"({entry_id}, {ledger_id}, {account_id}, {int(side)}, {amount})"
        for ledger_id, account_id, side, amount in rows
    )
    connection.exec_driver_sql(
        "INSERT INTO ledger_posting (entry_id, ledger_id, account_id, side, amount) "
        f"VALUES {values}"
    )


def test_a_posting_cannot_cross_ledgers_or_name_unknown_rows(
    backend: str, ledger_: Ledger, engine: Engine, chart: Chart
) -> None:
    other = make_chart(ledger_, "other")
    before = snapshot(engine)
    # Each case is a new, balanced entry of this ledger whose debit posting is wrong.
    cases = [
        # The posting claims the entry's ledger, but its account is in the other ledger.
        (chart.ledger_id, other.merchant.id, "fk_ledger_posting_account_id_ledger_id"),
        # The posting claims the account's ledger, which is not the entry's.
        (other.ledger_id, other.merchant.id, "fk_ledger_posting_entry_id_ledger_id"),
        # The posting claims the other ledger for an account of this one.
        (other.ledger_id, chart.merchant.id, "fk_ledger_posting_account_id_ledger_id"),
        # An account that does not exist.
        (chart.ledger_id, 999_999, "fk_ledger_posting_account_id_ledger_id"),
    ]
    for ledger_id, account_id, constraint in cases:
        with engine.connect() as connection:
            entry_id = insert_entry(connection, chart.ledger_id)
            with pytest.raises(sa.exc.IntegrityError) as raised:
                insert_postings(
                    connection,
                    entry_id,
                    [
                        (ledger_id, account_id, Side.DEBIT, 5),
                        (chart.ledger_id, chart.source.id, Side.CREDIT, 5),
                    ],
                )
            if backend == "postgresql":
                # SQLite's foreign-key errors name no constraint; PostgreSQL's trigger does.
                assert constraint_violation(raised.value).constraint == constraint
    assert snapshot(engine) == before
    # Control: the same statement within one ledger passes (not committed here).
    with engine.connect() as connection:
        entry_id = insert_entry(connection, chart.ledger_id)
        insert_postings(
            connection,
            entry_id,
            [
                (chart.ledger_id, chart.merchant.id, Side.DEBIT, 5),
                (chart.ledger_id, chart.source.id, Side.CREDIT, 5),
            ],
        )
        connection.rollback()
    assert snapshot(engine) == before

    # An entry in a ledger that does not exist is refused too.
    with engine.connect() as connection, pytest.raises(sa.exc.IntegrityError):
        insert_entry(connection, 999)
    assert snapshot(engine) == before


def test_an_account_with_postings_keeps_its_keys_and_cannot_be_deleted(
    backend: str, ledger_: Ledger, engine: Engine, chart: Chart
) -> None:
    ledger_.post(transfer(chart.wallet.id, chart.merchant.id, 10))
    other = make_chart(ledger_, "other")
    for statement in (
        f"DELETE FROM ledger_account WHERE id = {chart.merchant.id}",
        f"UPDATE ledger_account SET ledger_id = {other.ledger_id} WHERE id = {chart.merchant.id}",
        f"UPDATE ledger_account SET id = 999999 WHERE id = {chart.merchant.id}",
    ):
        assert_refused(engine, statement)
    if backend == "postgresql":
        # CASCADE reaches every table with a foreign key to accounts, but postings have none.
        assert_refused(engine, "TRUNCATE ledger_account CASCADE", names="referenced by postings")
        assert_refused(engine, "TRUNCATE ledger_account", error=sa.exc.DBAPIError)
    # Control: an account without postings can be deleted, and totals can change.
    with engine.connect() as connection:
        connection.exec_driver_sql(f"DELETE FROM ledger_account WHERE id = {other.merchant.id}")
        connection.exec_driver_sql(
            "UPDATE ledger_account SET credits_posted = credits_posted "
            f"WHERE id = {chart.merchant.id}"
        )
        connection.rollback()
    assert ledger_.verify().ok


def test_postgresql_a_delete_waits_for_a_posting_being_written_and_is_refused(
    backend: str, ledger_: Ledger, engine: Engine, chart: Chart
) -> None:
    """The trigger takes the lock the foreign key took (FOR KEY SHARE on the accounts): a
    delete of an account that an uncommitted posting names waits, then sees the posting."""
    if backend != "postgresql":
        pytest.skip("SQLite has one writer at a time")
    spare = ledger_.create_account(ledger_id=chart.ledger_id, code=400, normal_side=Side.CREDIT)
    before = snapshot(engine)
    with engine.connect() as writer:
        entry_id = insert_entry(writer, chart.ledger_id)
        insert_postings(
            writer,
            entry_id,
            [
                (chart.ledger_id, chart.source.id, Side.DEBIT, 5),
                (chart.ledger_id, spare.id, Side.CREDIT, 5),
            ],
        )

        delete = Waiting(
            engine, f"DELETE FROM ledger_account WHERE id = {spare.id}", what="the delete"
        )
        # The raw entry is not through the ledger, so its totals are not maintained; roll it
        # into the totals by hand so the ledger still verifies.
        writer.exec_driver_sql(
            "UPDATE ledger_account SET debits_posted = debits_posted + 5 "
            f"WHERE id = {chart.source.id}"
        )
        writer.exec_driver_sql(
            f"UPDATE ledger_account SET credits_posted = credits_posted + 5 WHERE id = {spare.id}"
        )
        writer.exec_driver_sql(f"INSERT INTO ledger_unsealed (entry_id) VALUES ({entry_id})")
        writer.commit()
    error = delete.error()
    assert isinstance(error, sa.exc.IntegrityError)
    assert constraint_violation(error).constraint == "fk_ledger_posting_account_id_ledger_id"
    assert count(engine, "ledger_entry") == before[0]["ledger_entry"] + 1
    assert ledger_.get_account(spare.id).credits_posted == 5
    seal_and_verify(ledger_)


# PostgreSQL: every entry balances when its postings are written, and has them at commit -------


@pytest.fixture
def postgresql_only(backend: str) -> None:
    if backend != "postgresql":
        pytest.skip("the balance triggers are PostgreSQL's")


def test_postgresql_unbalanced_entries_are_refused(
    postgresql_only: None, ledger_: Ledger, engine: Engine, chart: Chart
) -> None:
    # A new entry whose postings do not balance, or are too few: refused by the statement.
    before = snapshot(engine)
    bad_entries = [
        [(chart.wallet.id, Side.DEBIT, 10)],
        [(chart.wallet.id, Side.DEBIT, 10), (chart.merchant.id, Side.CREDIT, 9)],
    ]
    for postings in bad_entries:
        with engine.connect() as connection:
            entry_id = insert_entry(connection, chart.ledger_id)
            with pytest.raises(sa.exc.IntegrityError) as raised:
                insert_postings(
                    connection,
                    entry_id,
                    [
                        (chart.ledger_id, account, side, amount)
                        for account, side, amount in postings
                    ],
                )
            assert constraint_violation(raised.value).constraint == "ledger_entry_balanced"
    # Postings balanced only together, but written by two statements: the first is refused.
    with engine.connect() as connection:
        entry_id = insert_entry(connection, chart.ledger_id)
        with pytest.raises(sa.exc.IntegrityError) as raised:
            insert_posting(connection, entry_id, chart.ledger_id, chart.source.id, Side.DEBIT, 7)
        assert f"entry {entry_id} is unbalanced" in str(raised.value)
    # A new entry without postings: refused at commit by the deferred trigger.
    with engine.connect() as connection:
        insert_entry(connection, chart.ledger_id)
        with pytest.raises(sa.exc.IntegrityError) as raised:
            connection.commit()
        assert constraint_violation(raised.value).constraint == "ledger_entry_balanced"
    assert snapshot(engine) == before
    # Control: a balanced raw entry commits.
    with engine.connect() as connection:
        entry_id = insert_entry(connection, chart.ledger_id)
        insert_postings(
            connection,
            entry_id,
            [
                (chart.ledger_id, chart.source.id, Side.DEBIT, 7),
                (chart.ledger_id, chart.merchant.id, Side.CREDIT, 7),
            ],
        )
        connection.commit()
    assert count(engine, "ledger_entry") == before[0]["ledger_entry"] + 1

    # Postings slipped into an old entry: refused even when they balance each other.
    entry = ledger_.post(transfer(chart.wallet.id, chart.merchant.id, 10))
    before = snapshot(engine)
    for rows in (
        [(chart.ledger_id, chart.source.id, Side.DEBIT, 5)],
        [
            (chart.ledger_id, chart.source.id, Side.DEBIT, 5),
            (chart.ledger_id, chart.merchant.id, Side.CREDIT, 5),
        ],
    ):
        with engine.connect() as connection, pytest.raises(sa.exc.IntegrityError) as raised:
            insert_postings(connection, entry.id, rows)
        assert f"entry {entry.id} was written by another transaction" in str(raised.value)
    assert snapshot(engine) == before
    assert ledger_.get_entry(entry.id).postings == entry.postings


# Uniqueness: idempotency keys, one resolution per hold, one reversal per entry ----------------


def test_unique_constraints_hold_keys_resolutions_and_reversals(
    ledger_: Ledger, engine: Engine, chart: Chart
) -> None:
    # One entry per (namespace, idempotency_key).
    ledger_.post(
        transfer(chart.wallet.id, chart.merchant.id, 10, namespace="shop", idempotency_key="k1")
    )
    before = snapshot(engine)
    with engine.connect() as connection, pytest.raises(sa.exc.IntegrityError) as raised:
        insert_entry(connection, chart.ledger_id, namespace="shop", key="k1")
    message = str(raised.value)
    assert "uq_ledger_entry_namespace_idempotency_key" in message or (
        "ledger_entry.namespace, ledger_entry.idempotency_key" in message
    )
    assert snapshot(engine) == before
    # The same key in another namespace is a different key.
    with engine.connect() as connection:
        insert_entry(connection, chart.ledger_id, namespace="other-shop", key="k1")
        connection.rollback()

    # A hold is resolved at most once.
    hold = ledger_.post(transfer(chart.wallet.id, chart.merchant.id, 30, pending=True))
    ledger_.void_pending(hold.id)
    before = snapshot(engine)
    for phase in (2, 3):
        with engine.connect() as connection, pytest.raises(sa.exc.IntegrityError) as raised:
            insert_entry(connection, chart.ledger_id, phase=phase, pending_id=hold.id)
        message = str(raised.value)
        assert "uq_ledger_entry_pending_id" in message or "ledger_entry.pending_id" in message
    assert snapshot(engine) == before
    assert totals(ledger_, chart.wallet.id) == (10, 100, 0, 0)

    # An entry is reversed at most once.
    entry = ledger_.post(transfer(chart.wallet.id, chart.merchant.id, 10))
    ledger_.reverse(entry.id)
    before = snapshot(engine)
    with engine.connect() as connection, pytest.raises(sa.exc.IntegrityError) as raised:
        connection.execute(
            sa.text(
                "INSERT INTO ledger_entry (ledger_id, phase, kind, description, metadata, "
                "effective_at_us, recorded_at_us, content_digest, reverses_id) VALUES "
                "(:ledger_id, 0, 'raw', '', '{}', 0, 0, :digest, :reverses_id)"
            ),
            {"ledger_id": chart.ledger_id, "digest": None, "reverses_id": entry.id},
        )
    message = str(raised.value)
    assert "uq_ledger_entry_reverses_id" in message or "ledger_entry.reverses_id" in message
    assert snapshot(engine) == before


def test_errors_on_the_write_paths_own_cursor_are_mapped_like_any_other(
    ledger_: Ledger, engine: Engine, chart: Chart
) -> None:
    """The ledger writes through the driver's cursor; a refusal met there still arrives as
    SQLAlchemy's error, so ``run_with_retries`` names the constraint (and retries what is
    transient) exactly as for any other statement."""
    before = snapshot(engine)

    def duplicate_ledger(tx: Any) -> None:
        tx._cursor().execute(
            "INSERT INTO ledger (id, code, name, created_at_us) "
            f"VALUES ({chart.ledger_id}, 'again', 'again', 0)"
        )

    with pytest.raises(errors.ConstraintViolation) as raised:
        ledger_.transaction(duplicate_ledger)
    assert raised.value.constraint in {"pk_ledger", "ledger.id"}  # PostgreSQL, SQLite
    with pytest.raises(sa.exc.DBAPIError), engine.connect() as connection:
        DriverCursor(connection).execute("SELECT no_such_column FROM ledger")
    assert snapshot(engine) == before
