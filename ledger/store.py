"""Ledger operations inside one database transaction (``LedgerTx``).

How a write works, for one entry or a batch, on both databases:

1. The pure checks (``ledger.model.validate_entry``) run first; nothing is read for a bad request.
2. Every account the batch touches is locked in id order (``SELECT ... ORDER BY id FOR UPDATE``
   on PostgreSQL; on SQLite ``BEGIN IMMEDIATE`` has taken the database's write lock already), so
   concurrent writers cannot deadlock and no decision rests on an unlocked read. The holds the
   batch resolves, their resolutions, the entries it reverses and the entries already recorded
   under its idempotency keys are read too (``ledger.recording``).
3. ``ledger.planning.plan_write`` decides, in Python and without the database, from what was
   read: replays and idempotency conflicts, per-account deltas, and every rule (flags, closed
   accounts, one ledger per entry, 64-bit totals, hold state). *Atomic* batches are checked on
   the state after the whole batch; *independent* batches entry by entry.
4. ``ledger.recording.Recorder.insert`` writes the accepted entries, postings, the seal queue and
   the totals with set-based SQL: on PostgreSQL one statement (data-modifying CTEs over
   ``unnest`` arrays); on SQLite a few ``executemany`` calls. Totals change by increments
   (``SET x = x + :delta``), and the database's CHECK constraints hold the flags once more.

A ``LedgerTx`` never commits: its caller owns the transaction, so that a service in ``points``
can write its own rows (an award's cap counter, an API idempotency record) in the same
transaction as the ledger entry. ``ledger.Ledger`` runs a unit of work with retries and commits.
A ``LedgerTx`` is made on a SQLAlchemy ``Connection`` (a service's session) or, by
``Ledger.transaction``, on the pool's DBAPI connection (``ledger.database.DriverConnection``);
its statements go through the driver's cursor either way.

About 600 lines: one method per ledger operation; planning and SQL live in their own modules.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from ledger.database import DriverConnection, DriverCursor, is_sqlite
from ledger.errors import (
    AccountHasPending,
    AccountNotFound,
    BatchRejected,
    DuplicateLedger,
    EntryNotFound,
    HoldAmountExceeded,
    HoldNotPending,
    InvalidField,
    LedgerError,
    LedgerNotFound,
    NotReversible,
)
from ledger.model import (
    BATCH_ENTRIES_MAX,
    OWNER_REF_MAX_LENGTH,
    PAGE_LIMIT_MAX,
    Account,
    AccountFlags,
    Balance,
    BatchMode,
    Entry,
    EntryResult,
    HistoryLine,
    LedgerInfo,
    NewEntry,
    Page,
    Phase,
    Posting,
    Side,
    ValidEntry,
    check_text,
    from_us,
    to_us,
    validate_entry,
)
from ledger.planning import AccountRow, idempotency_keys, plan_write
from ledger.recording import (
    ACCOUNT_COLUMNS,
    ENTRY_COLUMNS,
    Recorder,
    account_from_row,
    int_list,
)

Clock = Callable[[], datetime]


class LedgerTx:
    """The ledger's operations on one open transaction; see the module docstring."""

    def __init__(self, connection: sa.Connection | DriverConnection, clock: Clock) -> None:
        """On a SQLAlchemy ``Connection`` (a service's session sharing the transaction), or on
        the pool's DBAPI connection (``Ledger.transaction``); every statement goes through the
        driver's cursor either way."""
        self._connection = connection
        self.clock = clock
        if isinstance(connection, DriverConnection):
            self._sqlite = connection.sqlite
        else:
            self._sqlite = is_sqlite(connection)
        self._recording: Recorder | None = None

    @property
    def connection(self) -> sa.Connection:
        """The SQLAlchemy connection of this transaction, for a caller's own SQL. Not there when
        ``Ledger.transaction`` runs the work on the driver's connection: use ``driver``."""
        if isinstance(self._connection, DriverConnection):
            raise TypeError(
                "this LedgerTx runs on the driver's connection (Ledger.transaction); "
                "use tx.driver, or run the work through a SQLAlchemy connection"
            )
        return self._connection

    @property
    def driver(self) -> Any:
        """The driver's own connection of this transaction (``sqlite3.Connection`` or
        ``psycopg.Connection``), whichever way the ``LedgerTx`` was made."""
        if isinstance(self._connection, DriverConnection):
            return self._connection.dbapi_connection
        return self._connection.connection.dbapi_connection

    # Ledgers and accounts -------------------------------------------------------------------

    def create_ledger(self, code: str, name: str) -> LedgerInfo:
        check_text("ledger code", code, 32)
        check_text("ledger name", name, 200)
        if self._rows("SELECT id FROM ledger WHERE code = :code", {"code": code}):
            raise DuplicateLedger(f"ledger {code!r} exists already", code=code)
        (row,) = self._rows(
            "INSERT INTO ledger (code, name, created_at_us) VALUES (:code, :name, :now) "
            "RETURNING id",
            {"code": code, "name": name, "now": self._now_us()},
        )
        return LedgerInfo(int(row[0]), code, name)

    def get_ledger(self, code: str) -> LedgerInfo:
        rows = self._rows("SELECT id, code, name FROM ledger WHERE code = :code", {"code": code})
        if not rows:
            raise LedgerNotFound(f"ledger {code!r} does not exist", code=code)
        return LedgerInfo(int(rows[0][0]), rows[0][1], rows[0][2])

    def create_account(
        self,
        *,
        ledger_id: int,
        code: int,
        normal_side: Side,
        owner_ref: str | None = None,
        flags: AccountFlags = AccountFlags.NONE,
    ) -> Account:
        if type(code) is not int or not 0 <= code <= 65535:
            raise InvalidField("account code is an integer in 0 .. 65535", code=repr(code))
        if not isinstance(normal_side, Side):
            raise InvalidField("normal_side must be Side.DEBIT or Side.CREDIT")
        if owner_ref is not None:
            check_text("owner_ref", owner_ref, OWNER_REF_MAX_LENGTH)
        flags = AccountFlags(flags)
        if not self._rows("SELECT id FROM ledger WHERE id = :id", {"id": ledger_id}):
            raise LedgerNotFound(f"ledger {ledger_id} does not exist", ledger_id=ledger_id)
        now_us = self._now_us()
        (inserted,) = self._rows(
            "INSERT INTO ledger_account (ledger_id, code, normal_side, owner_ref, flags, closed, "
            "debits_posted, credits_posted, debits_pending, credits_pending, created_at_us) "
            "VALUES (:ledger_id, :code, :side, :owner_ref, :flags, :closed, 0, 0, 0, 0, :now) "
            "RETURNING id",
            {
                "ledger_id": ledger_id,
                "code": code,
                "side": int(normal_side),
                "owner_ref": owner_ref,
                "flags": int(flags),
                "closed": False,
                "now": now_us,
            },
        )
        return Account(
            int(inserted[0]),
            ledger_id,
            code,
            normal_side,
            owner_ref,
            flags,
            False,
            0,
            0,
            0,
            0,
            from_us(now_us),
        )

    def create_accounts(
        self,
        *,
        ledger_id: int,
        code: int,
        normal_side: Side,
        owner_refs: Sequence[str | None],
        flags: AccountFlags = AccountFlags.NONE,
    ) -> list[int]:
        """Many accounts of one kind at once (one multi-row statement); their ids, in the order
        of ``owner_refs``."""
        if not owner_refs:
            return []
        first = self.create_account(
            ledger_id=ledger_id,
            code=code,
            normal_side=normal_side,
            owner_ref=owner_refs[0],
            flags=flags,
        )
        rest = list(owner_refs[1:])
        for owner_ref in rest:
            if owner_ref is not None:
                check_text("owner_ref", owner_ref, OWNER_REF_MAX_LENGTH)
        if not rest:
            return [first.id]
        # Ids chosen first, so that one statement inserts them all in the order asked
        # (RETURNING would make SQLAlchemy run a statement per row on SQLite to keep the order).
        ids = self._recorder().new_ids("ledger_account", len(rest))
        values = {
            "ledger": ledger_id,
            "code": code,
            "side": int(normal_side),
            "flags": int(AccountFlags(flags)),
            "now": self._now_us(),
        }
        columns = (
            "INSERT INTO ledger_account (id, ledger_id, code, normal_side, owner_ref, flags, "
            "closed, debits_posted, credits_posted, debits_pending, credits_pending, "
            "created_at_us) "
        )
        cursor = self._cursor()
        if self._sqlite:
            shared = (values["ledger"], values["code"], values["side"])
            cursor.executemany(
                columns + "VALUES (?, ?, ?, ?, ?, ?, 0, 0, 0, 0, 0, ?)",
                [
                    (account_id, *shared, owner_ref, values["flags"], values["now"])
                    for account_id, owner_ref in zip(ids, rest, strict=True)
                ],
            )
        else:
            # Arrays in binary: psycopg quotes a text array value by value in Python.
            cursor.execute(
                columns + "SELECT id, %(ledger)s, %(code)s, %(side)s, owner_ref, %(flags)s, "
                "false, 0, 0, 0, 0, %(now)s "
                "FROM unnest(%(ids)b::bigint[], %(owners)b::text[]) AS v(id, owner_ref)",
                {**values, "ids": ids, "owners": rest},
            )
        return [first.id, *ids]

    def get_account(self, account_id: int) -> Account:
        row = self._recorder().fetch_accounts([account_id], lock=False).get(account_id)
        if row is None:
            raise AccountNotFound(account_id)
        return account_from_row(row)

    def lock_account(self, account_id: int) -> Account:
        """The account, locked until this transaction ends (``FOR UPDATE``; SQLite writers are
        serialised already): a balance read here stays true for a decision made on it."""
        row = self._recorder().fetch_accounts([account_id], lock=True).get(account_id)
        if row is None:
            raise AccountNotFound(account_id)
        return account_from_row(row)

    def list_ledgers(self) -> list[LedgerInfo]:
        rows = self._rows("SELECT id, code, name FROM ledger ORDER BY id")
        return [LedgerInfo(row[0], row[1], row[2]) for row in rows]

    def list_accounts(
        self, ledger_id: int, *, after: int | None = None, limit: int = 100
    ) -> list[Account]:
        """Accounts of one ledger in id order, after the id ``after``."""
        if type(limit) is not int or not 1 <= limit <= PAGE_LIMIT_MAX:
            raise InvalidField(f"limit is 1 .. {PAGE_LIMIT_MAX}", limit=repr(limit))
        if not self._rows("SELECT 1 FROM ledger WHERE id = :id", {"id": ledger_id}):
            raise LedgerNotFound(f"ledger {ledger_id} does not exist", ledger_id=ledger_id)
        rows = self._rows(
            f"SELECT {ACCOUNT_COLUMNS} FROM ledger_account "
            "WHERE ledger_id = :ledger_id AND id > :after ORDER BY id LIMIT :limit",
            {"ledger_id": ledger_id, "after": after or 0, "limit": limit},
        )
        return [account_from_row(AccountRow(*row)) for row in rows]

    def find_accounts(self, ledger_id: int, *, owner_ref: str) -> list[Account]:
        """The accounts of ``ledger_id`` with this owner reference, oldest first."""
        rows = self._rows(
            f"SELECT {ACCOUNT_COLUMNS} FROM ledger_account "
            "WHERE ledger_id = :ledger_id AND owner_ref = :owner_ref ORDER BY id",
            {"ledger_id": ledger_id, "owner_ref": owner_ref},
        )
        return [account_from_row(AccountRow(*row)) for row in rows]

    def close_account(self, account_id: int) -> Account:
        row = self._recorder().fetch_accounts([account_id], lock=True).get(account_id)
        if row is None:
            raise AccountNotFound(account_id)
        if row.debits_pending or row.credits_pending:
            raise AccountHasPending(account_id, row.debits_pending, row.credits_pending)
        return self._set_closed(account_id, closed=True)

    def reopen_account(self, account_id: int) -> Account:
        """Open a closed account again (a wallet reopened when its resident returns); what it
        recorded stays as it was. Opening an open account changes nothing."""
        if account_id not in self._recorder().fetch_accounts([account_id], lock=True):
            raise AccountNotFound(account_id)
        return self._set_closed(account_id, closed=False)

    def _set_closed(self, account_id: int, *, closed: bool) -> Account:
        self._recorder().execute(
            "UPDATE ledger_account SET closed = :closed WHERE id = :id",
            {"closed": closed, "id": account_id},
        )
        return self.get_account(account_id)

    def balance(self, account_id: int) -> Balance:
        """An account's balance: one primary-key read, whatever the number of postings."""
        return self.get_account(account_id).balance

    # Entries --------------------------------------------------------------------------------

    def post(self, entry: NewEntry) -> Entry:
        """Record one entry; a repeat of an idempotent request returns the original entry."""
        return self._one(validate_entry(entry))

    def post_batch(
        self, entries: Sequence[NewEntry], mode: BatchMode = BatchMode.ATOMIC
    ) -> list[EntryResult]:
        """Record many entries in this transaction.

        *Atomic*: all or nothing; the flags are checked on the state after the whole batch, and
        any failure raises ``BatchRejected`` with the index and cause. *Independent*: each entry
        succeeds or fails alone and the result list says which (``EntryResult.error``).
        """
        if len(entries) > BATCH_ENTRIES_MAX:
            raise InvalidField(f"a batch has at most {BATCH_ENTRIES_MAX} entries")
        if not entries:
            return []
        valid: list[ValidEntry] = []
        failed: dict[int, LedgerError] = {}
        for index, new_entry in enumerate(entries):
            try:
                valid.append(validate_entry(new_entry))
            except LedgerError as error:
                if mode is BatchMode.ATOMIC:
                    raise BatchRejected(index, error) from error
                failed[index] = error
        if mode is BatchMode.ATOMIC:
            return self._write(valid, mode, single=False)
        indices = [index for index in range(len(entries)) if index not in failed]
        written = self._write(valid, mode, single=False) if valid else []
        results: list[EntryResult] = [
            EntryResult(index, None, error) for index, error in failed.items()
        ]
        for position, result in zip(indices, written, strict=True):
            results.append(EntryResult(position, result.entry, result.error, result.replayed))
        results.sort(key=lambda item: item.index)
        return results

    # Holds and reversals ------------------------------------------------------------------

    def post_pending(
        self,
        hold_id: int,
        *,
        amounts: Sequence[int] | None = None,
        kind: str = "post_pending",
        description: str = "",
        metadata: Mapping[str, Any] | None = None,
        namespace: str | None = None,
        idempotency_key: str | None = None,
    ) -> Entry:
        """Post a hold: in full, or with ``amounts`` (one per held posting, each no more than
        held; a zero drops that posting). What is not posted is released."""
        hold = self.get_entry(hold_id)
        if hold.phase is not Phase.PENDING:
            raise HoldNotPending(f"entry {hold_id} is not a pending entry", entry_id=hold_id)
        if amounts is None:
            postings = list(hold.postings)
        else:
            if len(amounts) != len(hold.postings):
                raise InvalidField(
                    f"hold {hold_id} has {len(hold.postings)} postings; "
                    f"{len(amounts)} amounts given"
                )
            postings = []
            for held, amount in zip(hold.postings, amounts, strict=True):
                if type(amount) is not int or amount < 0:
                    raise InvalidField("amounts to post are integers >= 0", amount=repr(amount))
                if amount > held.amount:
                    raise HoldAmountExceeded(
                        f"hold {hold_id} holds {held.amount} on account {held.account_id}; "
                        f"{amount} asked",
                        entry_id=hold_id,
                        held=held.amount,
                        requested=amount,
                    )
                if amount:
                    postings.append(Posting(held.account_id, held.side, amount))
            if not postings:
                raise InvalidField("posting nothing is a void: use void_pending")
        valid = validate_entry(
            NewEntry(
                postings,
                kind=kind,
                description=description,
                metadata=metadata or {},
                namespace=namespace,
                idempotency_key=idempotency_key,
            ),
            phase=Phase.POST_PENDING,
            pending_id=hold_id,
        )
        return self._one(valid)

    def void_pending(
        self,
        hold_id: int,
        *,
        kind: str = "void_pending",
        description: str = "",
        metadata: Mapping[str, Any] | None = None,
        namespace: str | None = None,
        idempotency_key: str | None = None,
    ) -> Entry:
        """Void a hold: release everything it held. Allowed after its timeout too."""
        valid = validate_entry(
            NewEntry(
                (),
                kind=kind,
                description=description,
                metadata=metadata or {},
                namespace=namespace,
                idempotency_key=idempotency_key,
            ),
            phase=Phase.VOID_PENDING,
            pending_id=hold_id,
        )
        return self._one(valid)

    def reverse(
        self,
        entry_id: int,
        *,
        kind: str = "reversal",
        description: str = "",
        metadata: Mapping[str, Any] | None = None,
        namespace: str | None = None,
        idempotency_key: str | None = None,
    ) -> Entry:
        """Reverse a posted entry: a new entry with every posting's side swapped."""
        original = self.get_entry(entry_id)
        if original.phase not in (Phase.POSTED, Phase.POST_PENDING) or original.reverses_id:
            raise NotReversible(
                f"entry {entry_id} cannot be reversed (a pending entry is voided instead; a "
                "void or a reversal is not reversed)",
                entry_id=entry_id,
            )
        valid = validate_entry(
            NewEntry(
                [Posting(p.account_id, p.side.opposite, p.amount) for p in original.postings],
                kind=kind,
                description=description,
                metadata=metadata or {},
                namespace=namespace,
                idempotency_key=idempotency_key,
            ),
            reverses_id=entry_id,
        )
        return self._one(valid)

    def void_expired_holds(self, as_of: datetime, *, limit: int = 1000) -> list[Entry]:
        """Void up to ``limit`` holds whose timeout is at or before ``as_of``."""
        rows = self._rows(
            "SELECT e.id FROM ledger_entry e WHERE e.phase = 1 AND e.timeout_at_us <= :as_of "
            "AND NOT EXISTS (SELECT 1 FROM ledger_entry r WHERE r.pending_id = e.id) "
            "ORDER BY e.id LIMIT :limit",
            {"as_of": to_us(as_of), "limit": int(limit)},
        )
        valid = [
            validate_entry(
                NewEntry((), kind="hold_timeout", description="hold timed out"),
                phase=Phase.VOID_PENDING,
                pending_id=row[0],
            )
            for row in rows
        ]
        if not valid:
            return []
        results = self._write(valid, BatchMode.INDEPENDENT, single=False)
        return [result.entry for result in results if result.entry is not None]

    def _one(self, valid: ValidEntry) -> Entry:
        result = self._write([valid], BatchMode.ATOMIC, single=True)[0]
        assert result.entry is not None
        return result.entry

    def find_entry(self, namespace: str, idempotency_key: str) -> Entry | None:
        rows = self._rows(
            f"SELECT {ENTRY_COLUMNS} FROM ledger_entry "
            "WHERE namespace = :namespace AND idempotency_key = :key",
            {"namespace": namespace, "key": idempotency_key},
        )
        return self._recorder().entries_from_rows(rows)[0] if rows else None

    def get_entry(self, entry_id: int) -> Entry:
        entries = self.get_entries([entry_id])
        if not entries:
            raise EntryNotFound(f"entry {entry_id} does not exist", entry_id=entry_id)
        return entries[0]

    def get_entries(self, entry_ids: Iterable[int]) -> list[Entry]:
        ids = sorted({int(entry_id) for entry_id in entry_ids})
        if not ids:
            return []
        rows = self._rows(
            f"SELECT {ENTRY_COLUMNS} FROM ledger_entry WHERE id IN ({int_list(ids)}) ORDER BY id"
        )
        return self._recorder().entries_from_rows(rows)

    def history(self, account_id: int, *, limit: int = 100, cursor: str | None = None) -> Page:
        """An account's postings, newest first, a page at a time (cursor pagination)."""
        if type(limit) is not int or not 1 <= limit <= PAGE_LIMIT_MAX:
            raise InvalidField(f"limit is 1 .. {PAGE_LIMIT_MAX}", limit=repr(limit))
        before = _parse_cursor(cursor)
        self.get_account(account_id)
        rows = self._rows(
            "SELECT p.id, p.entry_id, e.phase, e.kind, e.description, p.side, p.amount, "
            "e.effective_at_us, e.recorded_at_us FROM ledger_posting p "
            "JOIN ledger_entry e ON e.id = p.entry_id "
            "WHERE p.account_id = :account_id AND p.id < :before "
            "ORDER BY p.id DESC LIMIT :limit",
            {"account_id": account_id, "before": before, "limit": limit + 1},
        )
        items = [
            HistoryLine(
                posting_id=row[0],
                entry_id=row[1],
                phase=Phase(row[2]),
                kind=row[3],
                description=row[4],
                side=Side(row[5]),
                amount=row[6],
                effective_at=from_us(row[7]),
                recorded_at=from_us(row[8]),
            )
            for row in rows[:limit]
        ]
        next_cursor = str(items[-1].posting_id) if len(rows) > limit else None
        return Page(items, next_cursor)

    # The write path ------------------------------------------------------------------------

    def _write(
        self, valid: list[ValidEntry], mode: BatchMode, *, single: bool
    ) -> list[EntryResult]:
        """Read under locks, plan (``ledger.planning``), write (``ledger.recording``)."""
        now_us = self._now_us()
        recorder = self._recorder()
        holds = recorder.load_holds(
            item.pending_id for item in valid if item.pending_id is not None
        )
        account_ids = {posting.account_id for item in valid for posting in item.postings}
        for hold in holds.values():
            account_ids.update(posting.account_id for posting in hold.postings)
        accounts = recorder.fetch_accounts(account_ids, lock=True)
        # Read after the locks: a concurrent resolution or reversal has committed by now.
        recorder.load_resolutions(holds)
        reversed_by = recorder.reversed_by(
            item.reverses_id for item in valid if item.reverses_id is not None
        )
        keys = idempotency_keys(valid)
        existing = recorder.existing_keys(keys) if keys else {}
        plan = plan_write(
            valid,
            mode,
            single=single,
            now_us=now_us,
            accounts=accounts,
            holds=holds,
            reversed_by=reversed_by,
            existing=existing,
        )
        written = recorder.insert(plan, now_us)
        replayed = {entry.id: entry for entry in self.get_entries(plan.replayed_ids())}
        return plan.results(written, replayed)

    def _cursor(self) -> DriverCursor:
        """The driver's own cursor, for the hot path: no result metadata is built, and on
        PostgreSQL a statement whose text repeats is prepared by psycopg after a few uses."""
        return self._recorder().cursor

    def _recorder(self) -> Recorder:
        if self._recording is None:
            self._recording = Recorder(DriverCursor(self._connection), sqlite=self._sqlite)
        return self._recording

    def _rows(self, statement: str, parameters: Any = None) -> list[Any]:
        return self._recorder().rows(statement, parameters)

    def _now_us(self) -> int:
        return to_us(self.clock())


def _parse_cursor(cursor: str | None) -> int:
    if cursor is None:
        return 2**63 - 1
    if (
        not isinstance(cursor, str)
        or not cursor.isascii()
        or not cursor.isdigit()
        or len(cursor) > 19
        or int(cursor) > 2**63 - 1
    ):
        raise InvalidField("cursor is not one this ledger gave out", cursor=repr(cursor))
    return int(cursor)
