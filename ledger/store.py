"""Ledger operations inside one database transaction (``LedgerTx``).

How a write works, for one entry or a batch, on both databases:

1. The pure checks (``ledger.model.validate_entry``) run first; nothing is read for a bad request.
2. Entries already recorded under the batch's idempotency keys are looked up.
3. Every account the batch touches is locked in id order (``SELECT ... ORDER BY id FOR UPDATE``
   on PostgreSQL; on SQLite ``BEGIN IMMEDIATE`` has taken the database's write lock already), so
   concurrent writers cannot deadlock and no decision rests on an unlocked read.
4. The new totals are computed in Python from the locked rows and every rule is checked there:
   flags, closed accounts, one ledger per entry, 64-bit totals, hold state. *Atomic* batches are
   checked on the state after the whole batch; *independent* batches entry by entry.
5. Entries, postings, the seal queue and the totals are written with set-based SQL: on
   PostgreSQL one statement (data-modifying CTEs over ``unnest`` arrays); on SQLite a few
   ``executemany`` calls. Totals change by increments (``SET x = x + :delta``), and the
   database's CHECK constraints hold the flags once more.

A ``LedgerTx`` never commits: its caller owns the transaction, so that a service in ``points``
can write its own rows (an award's cap counter, an API idempotency record) in the same
transaction as the ledger entry. ``ledger.Ledger`` runs a unit of work with retries and commits.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

import sqlalchemy as sa

from ledger import schema
from ledger.database import DriverCursor, is_sqlite
from ledger.errors import (
    AccountClosed,
    AccountHasPending,
    AccountNotFound,
    AlreadyReversed,
    BatchRejected,
    DuplicateLedger,
    EntryNotFound,
    FlagViolation,
    HoldAlreadyResolved,
    HoldAmountExceeded,
    HoldExpired,
    HoldNotPending,
    IdempotencyConflict,
    InvalidField,
    LedgerError,
    LedgerNotFound,
    MixedLedgers,
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
    Delta,
    Entry,
    EntryResult,
    HistoryLine,
    LedgerInfo,
    NewEntry,
    Page,
    Phase,
    Posting,
    Side,
    Totals,
    ValidEntry,
    check_text,
    from_us,
    posting_delta,
    to_us,
    validate_entry,
)

Clock = Callable[[], datetime]

_ACCOUNT_COLUMNS = (
    "id, ledger_id, code, normal_side, owner_ref, flags, closed, debits_posted, credits_posted, "
    "debits_pending, credits_pending, created_at_us"
)
_ENTRY_COLUMNS = (
    "id, ledger_id, phase, kind, description, metadata, effective_at_us, recorded_at_us, "
    "namespace, idempotency_key, timeout_at_us, pending_id, reverses_id, content_digest"
)

# Parameters are sent in binary (%(name)b): encoding a thousand-element array as text costs
# more than the statement itself.
_PG_WRITE = """
WITH ids AS MATERIALIZED (
    SELECT nextval('ledger_entry_id_seq') AS id, n FROM generate_series(1, %(count)s) AS n
), new_entry AS (
    INSERT INTO ledger_entry (id, ledger_id, phase, kind, description, metadata, effective_at_us,
        recorded_at_us, namespace, idempotency_key, content_digest, timeout_at_us, pending_id,
        reverses_id)
    SELECT ids.id, v.ledger_id, v.phase, v.kind, v.description, v.metadata, v.effective_at_us,
        v.recorded_at_us, v.namespace, v.idempotency_key, v.content_digest, v.timeout_at_us,
        v.pending_id, v.reverses_id
    FROM unnest(%(e_ledger)b::int[], %(e_phase)b::smallint[], %(e_kind)b::text[],
        %(e_description)b::text[], %(e_metadata)b::text[], %(e_effective)b::bigint[],
        %(e_recorded)b::bigint[], %(e_namespace)b::text[], %(e_key)b::text[],
        %(e_digest)b::bytea[], %(e_timeout)b::bigint[], %(e_pending)b::bigint[],
        %(e_reverses)b::bigint[])
        WITH ORDINALITY AS v(ledger_id, phase, kind, description, metadata, effective_at_us,
            recorded_at_us, namespace, idempotency_key, content_digest, timeout_at_us,
            pending_id, reverses_id, n)
    JOIN ids ON ids.n = v.n
), new_posting AS (
    INSERT INTO ledger_posting (entry_id, ledger_id, account_id, side, amount)
    SELECT ids.id, p.ledger_id, p.account_id, p.side, p.amount
    FROM unnest(%(p_entry)b::bigint[], %(p_ledger)b::int[], %(p_account)b::bigint[],
        %(p_side)b::smallint[], %(p_amount)b::bigint[])
        WITH ORDINALITY AS p(entry_n, ledger_id, account_id, side, amount, position)
    JOIN ids ON ids.n = p.entry_n
    ORDER BY p.position
), queued AS (
    INSERT INTO ledger_unsealed (entry_id) SELECT id FROM ids
), totals AS (
    UPDATE ledger_account AS a SET
        debits_posted = a.debits_posted + d.debits_posted,
        credits_posted = a.credits_posted + d.credits_posted,
        debits_pending = a.debits_pending + d.debits_pending,
        credits_pending = a.credits_pending + d.credits_pending
    FROM unnest(%(a_id)b::bigint[], %(a_dp)b::bigint[], %(a_cp)b::bigint[],
        %(a_dq)b::bigint[], %(a_cq)b::bigint[])
        AS d(id, debits_posted, credits_posted, debits_pending, credits_pending)
    WHERE a.id = d.id
)
SELECT n, id FROM ids
"""

_SQLITE_INSERT_ENTRY = (
    "INSERT INTO ledger_entry (id, ledger_id, phase, kind, description, metadata, "
    "effective_at_us, recorded_at_us, namespace, idempotency_key, content_digest, timeout_at_us, "
    "pending_id, reverses_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_SQLITE_INSERT_POSTING = (
    "INSERT INTO ledger_posting (entry_id, ledger_id, account_id, side, amount) "
    "VALUES (?, ?, ?, ?, ?)"
)
_SQLITE_UPDATE_ACCOUNT = (
    "UPDATE ledger_account SET debits_posted = debits_posted + ?, "
    "credits_posted = credits_posted + ?, debits_pending = debits_pending + ?, "
    "credits_pending = credits_pending + ? WHERE id = ?"
)


class _AccountRow(NamedTuple):
    id: int
    ledger_id: int
    code: int
    normal_side: int
    owner_ref: str | None
    flags: int
    closed: bool
    debits_posted: int
    credits_posted: int
    debits_pending: int
    credits_pending: int
    created_at_us: int


@dataclass(slots=True)
class _Hold:
    """A pending entry as a resolution sees it."""

    id: int
    ledger_id: int
    phase: Phase
    timeout_at_us: int | None
    postings: list[Posting]
    resolved_by: int | None = None


@dataclass(slots=True)
class _Planned:
    """One entry of a batch on its way to being written."""

    index: int
    valid: ValidEntry
    deltas: dict[int, Delta] = field(default_factory=dict)
    ledger_id: int = 0
    entry_id: int = 0
    #: The id of an entry recorded earlier under the same idempotency key and content.
    replay_of: int | None = None
    #: An earlier entry of this batch with the same idempotency key and content.
    same_as: _Planned | None = None


class LedgerTx:
    """The ledger's operations on one open transaction; see the module docstring."""

    def __init__(self, connection: sa.Connection, clock: Clock) -> None:
        self.connection = connection
        self.clock = clock
        self._sqlite = is_sqlite(connection)
        self._raw_cursor: Any = None

    # Ledgers and accounts -------------------------------------------------------------------

    def create_ledger(self, code: str, name: str) -> LedgerInfo:
        check_text("ledger code", code, 32)
        check_text("ledger name", name, 200)
        exists = self.connection.execute(
            sa.select(schema.ledger.c.id).where(schema.ledger.c.code == code)
        ).first()
        if exists is not None:
            raise DuplicateLedger(f"ledger {code!r} exists already", code=code)
        ledger_id = self.connection.execute(
            schema.ledger.insert().values(code=code, name=name, created_at_us=self._now_us())
        ).inserted_primary_key
        assert ledger_id is not None
        return LedgerInfo(int(ledger_id[0]), code, name)

    def get_ledger(self, code: str) -> LedgerInfo:
        row = self.connection.execute(
            sa.select(schema.ledger.c.id, schema.ledger.c.code, schema.ledger.c.name).where(
                schema.ledger.c.code == code
            )
        ).first()
        if row is None:
            raise LedgerNotFound(f"ledger {code!r} does not exist", code=code)
        return LedgerInfo(int(row.id), row.code, row.name)

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
        exists = self.connection.execute(
            sa.select(schema.ledger.c.id).where(schema.ledger.c.id == ledger_id)
        ).first()
        if exists is None:
            raise LedgerNotFound(f"ledger {ledger_id} does not exist", ledger_id=ledger_id)
        now_us = self._now_us()
        inserted = self.connection.execute(
            schema.account.insert().values(
                ledger_id=ledger_id,
                code=code,
                normal_side=int(normal_side),
                owner_ref=owner_ref,
                flags=int(flags),
                closed=False,
                debits_posted=0,
                credits_posted=0,
                debits_pending=0,
                credits_pending=0,
                created_at_us=now_us,
            )
        ).inserted_primary_key
        assert inserted is not None
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
        ids = self._new_ids("ledger_account", len(rest))
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
        row = self._fetch_accounts([account_id], lock=False).get(account_id)
        if row is None:
            raise AccountNotFound(account_id)
        return _account(row)

    def lock_account(self, account_id: int) -> Account:
        """The account, locked until this transaction ends (``FOR UPDATE``; SQLite writers are
        serialised already): a balance read here stays true for a decision made on it."""
        row = self._fetch_accounts([account_id], lock=True).get(account_id)
        if row is None:
            raise AccountNotFound(account_id)
        return _account(row)

    def list_ledgers(self) -> list[LedgerInfo]:
        rows = self.connection.exec_driver_sql("SELECT id, code, name FROM ledger ORDER BY id")
        return [LedgerInfo(row[0], row[1], row[2]) for row in rows]

    def list_accounts(
        self, ledger_id: int, *, after: int | None = None, limit: int = 100
    ) -> list[Account]:
        """Accounts of one ledger in id order, after the id ``after``."""
        if type(limit) is not int or not 1 <= limit <= PAGE_LIMIT_MAX:
            raise InvalidField(f"limit is 1 .. {PAGE_LIMIT_MAX}", limit=repr(limit))
        if not self._rows("SELECT 1 FROM ledger WHERE id = :id", {"id": ledger_id}):
            raise LedgerNotFound(f"ledger {ledger_id} does not exist", ledger_id=ledger_id)
        rows = self.connection.exec_driver_sql(
            self._sql(
                f"SELECT {_ACCOUNT_COLUMNS} FROM ledger_account "
                "WHERE ledger_id = :ledger_id AND id > :after ORDER BY id LIMIT :limit"
            ),
            {"ledger_id": ledger_id, "after": after or 0, "limit": limit},
        ).fetchall()
        return [_account(row) for row in rows]

    def find_accounts(self, ledger_id: int, *, owner_ref: str) -> list[Account]:
        """The accounts of ``ledger_id`` with this owner reference, oldest first."""
        rows = self.connection.exec_driver_sql(
            self._sql(
                f"SELECT {_ACCOUNT_COLUMNS} FROM ledger_account "
                "WHERE ledger_id = :ledger_id AND owner_ref = :owner_ref ORDER BY id"
            ),
            {"ledger_id": ledger_id, "owner_ref": owner_ref},
        ).fetchall()
        return [_account(row) for row in rows]

    def close_account(self, account_id: int) -> Account:
        row = self._fetch_accounts([account_id], lock=True).get(account_id)
        if row is None:
            raise AccountNotFound(account_id)
        if row.debits_pending or row.credits_pending:
            raise AccountHasPending(account_id, row.debits_pending, row.credits_pending)
        self.connection.execute(
            schema.account.update().where(schema.account.c.id == account_id).values(closed=True)
        )
        return self.get_account(account_id)

    def reopen_account(self, account_id: int) -> Account:
        """Open a closed account again (a wallet reopened when its resident returns); what it
        recorded stays as it was. Opening an open account changes nothing."""
        row = self._fetch_accounts([account_id], lock=True).get(account_id)
        if row is None:
            raise AccountNotFound(account_id)
        self.connection.execute(
            schema.account.update().where(schema.account.c.id == account_id).values(closed=False)
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
        rows = self.connection.exec_driver_sql(
            "SELECT e.id FROM ledger_entry e WHERE e.phase = 1 AND e.timeout_at_us <= "
            f"{to_us(as_of)} AND NOT EXISTS (SELECT 1 FROM ledger_entry r "
            f"WHERE r.pending_id = e.id) ORDER BY e.id LIMIT {int(limit)}"
        ).fetchall()
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
            f"SELECT {_ENTRY_COLUMNS} FROM ledger_entry "
            "WHERE namespace = :namespace AND idempotency_key = :key",
            {"namespace": namespace, "key": idempotency_key},
        )
        return self._entries_from_rows(rows)[0] if rows else None

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
            f"SELECT {_ENTRY_COLUMNS} FROM ledger_entry WHERE id IN ({_int_list(ids)}) ORDER BY id"
        )
        return self._entries_from_rows(rows)

    def history(self, account_id: int, *, limit: int = 100, cursor: str | None = None) -> Page:
        """An account's postings, newest first, a page at a time (cursor pagination)."""
        if type(limit) is not int or not 1 <= limit <= PAGE_LIMIT_MAX:
            raise InvalidField(f"limit is 1 .. {PAGE_LIMIT_MAX}", limit=repr(limit))
        before = _parse_cursor(cursor)
        self.get_account(account_id)
        rows = self.connection.exec_driver_sql(
            self._sql(
                "SELECT p.id, p.entry_id, e.phase, e.kind, e.description, p.side, p.amount, "
                "e.effective_at_us, e.recorded_at_us FROM ledger_posting p "
                "JOIN ledger_entry e ON e.id = p.entry_id "
                "WHERE p.account_id = :account_id AND p.id < :before "
                "ORDER BY p.id DESC LIMIT :limit"
            ),
            {"account_id": account_id, "before": before, "limit": limit + 1},
        ).fetchall()
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
        now_us = self._now_us()
        plans = [_Planned(index, item) for index, item in enumerate(valid)]
        results: dict[int, EntryResult] = {}
        atomic = mode is BatchMode.ATOMIC

        def fail(plan: _Planned, error: LedgerError) -> None:
            if atomic:
                raise error if single else BatchRejected(plan.index, error)
            results[plan.index] = EntryResult(plan.index, None, error)

        holds = self._load_holds(
            {p.valid.pending_id for p in plans if p.valid.pending_id is not None}
        )
        account_ids = {posting.account_id for plan in plans for posting in plan.valid.postings}
        for hold in holds.values():
            account_ids.update(posting.account_id for posting in hold.postings)
        accounts = self._fetch_accounts(sorted(account_ids), lock=True)
        # Read after the locks: a concurrent resolution or reversal has committed by now.
        self._load_resolutions(holds)
        reversed_by = self._reversed_by(
            {p.valid.reverses_id for p in plans if p.valid.reverses_id is not None}
        )
        existing = self._existing_keys(plans)
        working = {
            account_id: Totals(
                account_id,
                row.flags,
                row.debits_posted,
                row.credits_posted,
                row.debits_pending,
                row.credits_pending,
            )
            for account_id, row in accounts.items()
        }

        seen_keys: dict[tuple[str, str], _Planned] = {}
        accepted: list[_Planned] = []
        for plan in plans:
            item = plan.valid
            if item.namespace is not None:
                assert item.idempotency_key is not None
                key = (item.namespace, item.idempotency_key)
                earlier = seen_keys.get(key)
                if earlier is not None:
                    if earlier.valid.content_digest != item.content_digest:
                        fail(plan, IdempotencyConflict(key[0], key[1], earlier.replay_of))
                    else:
                        plan.same_as = earlier
                    continue
                seen_keys[key] = plan
                if key in existing:
                    entry_id, digest = existing[key]
                    if digest != item.content_digest:
                        fail(plan, IdempotencyConflict(key[0], key[1], entry_id))
                    else:
                        plan.replay_of = entry_id
                    continue
            try:
                self._plan_deltas(plan, accounts, holds, reversed_by, now_us)
                if not atomic:
                    trial = {account_id: working[account_id].copy() for account_id in plan.deltas}
                    for account_id, delta in plan.deltas.items():
                        trial[account_id].apply(delta)
                    working.update(trial)
            except LedgerError as error:
                fail(plan, error)
                continue
            # Later entries of this batch see this one's resolution or reversal.
            if item.pending_id is not None:
                holds[item.pending_id].resolved_by = 0
            if item.reverses_id is not None:
                reversed_by[item.reverses_id] = 0
            accepted.append(plan)
        if atomic:
            self._apply_atomic(accepted, working, single=single)

        entries = self._insert(accepted, now_us) if accepted else {}
        replayed = {
            entry.id: entry
            for entry in self.get_entries(p.replay_of for p in plans if p.replay_of is not None)
        }
        for plan in plans:
            if plan.index in results:
                continue
            if plan.same_as is not None:
                first = results[plan.same_as.index]
                results[plan.index] = EntryResult(
                    plan.index, first.entry, first.error, replayed=first.error is None
                )
            elif plan.replay_of is not None:
                results[plan.index] = EntryResult(
                    plan.index, replayed[plan.replay_of], None, replayed=True
                )
            else:
                results[plan.index] = EntryResult(plan.index, entries[plan.index], None)
        return [results[plan.index] for plan in plans]

    def _plan_deltas(
        self,
        plan: _Planned,
        accounts: dict[int, Any],
        holds: dict[int, _Hold],
        reversed_by: dict[int, int | None],
        now_us: int,
    ) -> None:
        item = plan.valid
        ledger_ids: set[int] = set()
        pending = item.phase is Phase.PENDING
        deltas = plan.deltas
        for posting in item.postings:
            row = accounts.get(posting.account_id)
            if row is None:
                raise AccountNotFound(posting.account_id)
            if row.closed:
                raise AccountClosed(posting.account_id)
            ledger_ids.add(row.ledger_id)
            delta = deltas.get(posting.account_id)
            if delta is None:
                delta = deltas[posting.account_id] = Delta()
            if pending:
                if posting.side is Side.DEBIT:
                    delta.debits_pending += posting.amount
                else:
                    delta.credits_pending += posting.amount
            elif posting.side is Side.DEBIT:
                delta.debits_posted += posting.amount
            else:
                delta.credits_posted += posting.amount
        if item.pending_id is not None:
            hold = holds.get(item.pending_id)
            if hold is None:
                raise EntryNotFound(
                    f"entry {item.pending_id} does not exist", entry_id=item.pending_id
                )
            if hold.phase is not Phase.PENDING:
                raise HoldNotPending(f"entry {hold.id} is not a pending entry", entry_id=hold.id)
            if hold.resolved_by is not None:
                raise HoldAlreadyResolved(
                    f"hold {hold.id} was resolved already",
                    entry_id=hold.id,
                    resolved_by=hold.resolved_by or None,
                )
            if item.phase is Phase.POST_PENDING:
                if hold.timeout_at_us is not None and now_us >= hold.timeout_at_us:
                    raise HoldExpired(
                        f"hold {hold.id} timed out at {from_us(hold.timeout_at_us).isoformat()}",
                        entry_id=hold.id,
                    )
                _check_within_hold(hold, item.postings)
            ledger_ids.add(hold.ledger_id)
            for posting in hold.postings:
                release = posting_delta(posting.side, -posting.amount, pending=True)
                plan.deltas.setdefault(posting.account_id, Delta()).add(release)
        if item.reverses_id is not None:
            if item.reverses_id not in reversed_by:
                raise EntryNotFound(
                    f"entry {item.reverses_id} does not exist", entry_id=item.reverses_id
                )
            if reversed_by[item.reverses_id] is not None:
                raise AlreadyReversed(
                    f"entry {item.reverses_id} was reversed already", entry_id=item.reverses_id
                )
        if len(ledger_ids) > 1:
            raise MixedLedgers(sorted(ledger_ids))
        assert ledger_ids, "an entry touches at least one account"
        plan.ledger_id = ledger_ids.pop()
        plan.deltas = {k: v for k, v in plan.deltas.items() if not v.is_zero()}

    def _apply_atomic(
        self, plans: list[_Planned], working: dict[int, Totals], *, single: bool
    ) -> None:
        """Apply the batch's summed deltas once per account: flags hold on the final state."""
        summed: dict[int, Delta] = {}
        for plan in plans:
            for account_id, delta in plan.deltas.items():
                summed.setdefault(account_id, Delta()).add(delta)
        for account_id in sorted(summed):
            try:
                working[account_id].apply(summed[account_id])
            except LedgerError as error:
                if single:
                    raise
                raise BatchRejected(_blame(plans, account_id, error), error) from error

    def _insert(self, plans: list[_Planned], now_us: int) -> dict[int, Entry]:
        summed: dict[int, Delta] = {}
        for plan in plans:
            for account_id, delta in plan.deltas.items():
                summed.setdefault(account_id, Delta()).add(delta)
        account_rows = [
            (d.debits_posted, d.credits_posted, d.debits_pending, d.credits_pending, account_id)
            for account_id, d in sorted(summed.items())
            if not d.is_zero()
        ]
        entry_rows = [
            (
                plan.ledger_id,
                int(plan.valid.phase),
                plan.valid.kind,
                plan.valid.description,
                plan.valid.metadata_json,
                plan.valid.effective_at_us if plan.valid.effective_at_us is not None else now_us,
                now_us,
                plan.valid.namespace,
                plan.valid.idempotency_key,
                plan.valid.content_digest,
                plan.valid.timeout_at_us,
                plan.valid.pending_id,
                plan.valid.reverses_id,
            )
            for plan in plans
        ]
        cursor = self._cursor()
        if self._sqlite:
            ids = self._new_ids("ledger_entry", len(plans))
            cursor.executemany(
                _SQLITE_INSERT_ENTRY,
                [(entry_id, *row) for entry_id, row in zip(ids, entry_rows, strict=True)],
            )
            cursor.executemany(
                _SQLITE_INSERT_POSTING,
                [
                    (
                        entry_id,
                        plan.ledger_id,
                        posting.account_id,
                        int(posting.side),
                        posting.amount,
                    )
                    for plan, entry_id in zip(plans, ids, strict=True)
                    for posting in plan.valid.postings
                ],
            )
            cursor.executemany(
                "INSERT INTO ledger_unsealed (entry_id) VALUES (?)", [(i,) for i in ids]
            )
            cursor.executemany(_SQLITE_UPDATE_ACCOUNT, account_rows)
        else:
            columns: list[Sequence[Any]] = list(zip(*entry_rows, strict=True))
            posting_rows = [
                (number, plan.ledger_id, posting.account_id, int(posting.side), posting.amount)
                for number, plan in enumerate(plans, start=1)
                for posting in plan.valid.postings
            ]
            posting_columns: list[Sequence[Any]] = list(zip(*posting_rows, strict=True)) or [[]] * 5
            account_columns: list[Sequence[Any]] = list(zip(*account_rows, strict=True)) or [[]] * 5
            names = (
                "e_ledger",
                "e_phase",
                "e_kind",
                "e_description",
                "e_metadata",
                "e_effective",
                "e_recorded",
                "e_namespace",
                "e_key",
                "e_digest",
                "e_timeout",
                "e_pending",
                "e_reverses",
            )
            parameters: dict[str, Any] = {
                name: list(column) for name, column in zip(names, columns, strict=True)
            }
            for name, column in zip(
                ("p_entry", "p_ledger", "p_account", "p_side", "p_amount"),
                posting_columns,
                strict=True,
            ):
                parameters[name] = list(column)
            for name, column in zip(
                ("a_dp", "a_cp", "a_dq", "a_cq", "a_id"), account_columns, strict=True
            ):
                parameters[name] = list(column)
            parameters["count"] = len(plans)
            cursor.execute(_PG_WRITE, parameters)
            by_number = dict(cursor.fetchall())
            ids = [by_number[number] for number in range(1, len(plans) + 1)]
        entries: dict[int, Entry] = {}
        recorded_at = from_us(now_us)
        for plan, entry_id in zip(plans, ids, strict=True):
            plan.entry_id = entry_id
            item = plan.valid
            entries[plan.index] = Entry(
                id=entry_id,
                ledger_id=plan.ledger_id,
                phase=item.phase,
                kind=item.kind,
                description=item.description,
                metadata=item.metadata,
                effective_at=(
                    from_us(item.effective_at_us)
                    if item.effective_at_us is not None
                    else recorded_at
                ),
                recorded_at=recorded_at,
                namespace=item.namespace,
                idempotency_key=item.idempotency_key,
                timeout_at=from_us(item.timeout_at_us) if item.timeout_at_us is not None else None,
                pending_id=item.pending_id,
                reverses_id=item.reverses_id,
                postings=item.postings,
            )
        return entries

    def _new_ids(self, table: str, count: int) -> list[int]:
        """``count`` ids for new rows of ``table`` (``ledger_entry`` or ``ledger_account``).

        SQLite: the write lock is held (BEGIN IMMEDIATE), so the ids after the largest are the
        ones SQLite itself would give. PostgreSQL: from the table's sequence."""
        cursor = self._cursor()
        if self._sqlite:
            top = cursor.execute(f"SELECT coalesce(max(id), 0) FROM {table}").fetchone()[0]
            return list(range(top + 1, top + 1 + count))
        cursor.execute(
            f"SELECT nextval('{table}_id_seq') FROM generate_series(1, %(count)s)",
            {"count": count},
        )
        return [int(row[0]) for row in cursor.fetchall()]

    def _cursor(self) -> Any:
        """The driver's own cursor, for the hot path: no result metadata is built, and on
        PostgreSQL a statement whose text repeats is prepared by psycopg after a few uses."""
        if self._raw_cursor is None:
            self._raw_cursor = DriverCursor(self.connection)
        return self._raw_cursor

    def _rows(self, statement: str, parameters: Any = None) -> list[Any]:
        cursor = self._cursor()
        cursor.execute(self._sql(statement), parameters or {})
        return list(cursor.fetchall())

    # Reads used by the write path ----------------------------------------------------------

    def _fetch_accounts(self, account_ids: Sequence[int], *, lock: bool) -> dict[int, _AccountRow]:
        ids = sorted(set(account_ids))
        if not ids:
            return {}
        for account_id in ids:
            if type(account_id) is not int:
                raise InvalidField("account ids are integers", account_id=repr(account_id))
        if self._sqlite:
            rows = self._rows(
                f"SELECT {_ACCOUNT_COLUMNS} FROM ledger_account WHERE id IN ({_int_list(ids)}) "
                "ORDER BY id"
            )
        else:
            # One statement text whatever the ids, so psycopg prepares it.
            rows = self._rows(
                f"SELECT {_ACCOUNT_COLUMNS} FROM ledger_account WHERE id = ANY(:ids) "
                "ORDER BY id" + (" FOR UPDATE" if lock else ""),
                {"ids": ids},
            )
        return {row[0]: _AccountRow(*row) for row in rows}

    def _existing_keys(self, plans: list[_Planned]) -> dict[tuple[str, str], tuple[int, bytes]]:
        keys = {
            (plan.valid.namespace, plan.valid.idempotency_key)
            for plan in plans
            if plan.valid.namespace is not None
        }
        if not keys:
            return {}
        found: dict[tuple[str, str], tuple[int, bytes]] = {}
        key_list = sorted(keys)
        for start in range(0, len(key_list), 500):
            chunk = key_list[start : start + 500]
            if self._sqlite:
                values = ", ".join("(?, ?)" for _ in chunk)
                rows = self._rows(
                    f"WITH wanted(namespace, idempotency_key) AS (VALUES {values}) "
                    "SELECT e.namespace, e.idempotency_key, e.id, e.content_digest "
                    "FROM wanted w JOIN ledger_entry e ON e.namespace = w.namespace "
                    "AND e.idempotency_key = w.idempotency_key",
                    tuple(part for pair in chunk for part in pair),
                )
            else:
                rows = self._rows(
                    "SELECT e.namespace, e.idempotency_key, e.id, e.content_digest "
                    "FROM unnest(%(namespaces)s::text[], %(keys)s::text[]) AS w(namespace, key) "
                    "JOIN ledger_entry e ON e.namespace = w.namespace "
                    "AND e.idempotency_key = w.key",
                    {
                        "namespaces": [pair[0] for pair in chunk],
                        "keys": [pair[1] for pair in chunk],
                    },
                )
            for row in rows:
                found[(row[0], row[1])] = (row[2], bytes(row[3]) if row[3] is not None else b"")
        return found

    def _load_holds(self, hold_ids: set[int]) -> dict[int, _Hold]:
        if not hold_ids:
            return {}
        ids = _int_list(sorted(hold_ids))
        holds = {
            row[0]: _Hold(row[0], row[1], Phase(row[2]), row[3], [])
            for row in self._rows(
                f"SELECT id, ledger_id, phase, timeout_at_us FROM ledger_entry WHERE id IN ({ids})"
            )
        }
        for row in self._rows(
            f"SELECT entry_id, account_id, side, amount FROM ledger_posting "
            f"WHERE entry_id IN ({ids}) ORDER BY id"
        ):
            holds[row[0]].postings.append(Posting(row[1], Side(row[2]), row[3]))
        return holds

    def _load_resolutions(self, holds: dict[int, _Hold]) -> None:
        if not holds:
            return
        for row in self._rows(
            f"SELECT pending_id, id FROM ledger_entry WHERE pending_id IN ({_int_list(holds)})"
        ):
            holds[row[0]].resolved_by = row[1]

    def _reversed_by(self, entry_ids: set[int]) -> dict[int, int | None]:
        if not entry_ids:
            return {}
        ids = _int_list(sorted(entry_ids))
        found: dict[int, int | None] = {
            row[0]: None for row in self._rows(f"SELECT id FROM ledger_entry WHERE id IN ({ids})")
        }
        for row in self._rows(
            f"SELECT reverses_id, id FROM ledger_entry WHERE reverses_id IN ({ids})"
        ):
            found[row[0]] = row[1]
        return found

    def _entries_from_rows(self, rows: Sequence[Any]) -> list[Entry]:
        if not rows:
            return []
        postings: dict[int, list[Posting]] = {row[0]: [] for row in rows}
        for row in self._rows(
            "SELECT entry_id, account_id, side, amount FROM ledger_posting "
            f"WHERE entry_id IN ({_int_list(sorted(postings))}) ORDER BY id"
        ):
            postings[row[0]].append(Posting(row[1], Side(row[2]), row[3]))
        return [
            Entry(
                id=row[0],
                ledger_id=row[1],
                phase=Phase(row[2]),
                kind=row[3],
                description=row[4],
                metadata=json.loads(row[5]),
                effective_at=from_us(row[6]),
                recorded_at=from_us(row[7]),
                namespace=row[8],
                idempotency_key=row[9],
                timeout_at=from_us(row[10]) if row[10] is not None else None,
                pending_id=row[11],
                reverses_id=row[12],
                postings=tuple(postings[row[0]]),
            )
            for row in rows
        ]

    def _now_us(self) -> int:
        return to_us(self.clock())

    def _sql(self, statement: str) -> str:
        """Named parameters ``:name`` as each driver wants them."""
        if self._sqlite:
            return statement
        return _to_pyformat(statement)


_NAMED_PARAMETER = re.compile(r"(?<![:\w]):([a-zA-Z_]\w*)")


@functools.lru_cache(maxsize=256)
def _to_pyformat(statement: str) -> str:
    return _NAMED_PARAMETER.sub(r"%(\1)s", statement)


def _int_list(ids: Iterable[int]) -> str:
    """Integers inlined into SQL: safe because each is checked to be an ``int``."""
    parts = []
    for value in ids:
        if type(value) is not int:
            raise InvalidField("ids are integers", id=repr(value))
        parts.append(str(value))
    return ", ".join(parts)


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


def _check_within_hold(hold: _Hold, postings: Sequence[Posting]) -> None:
    held: dict[tuple[int, Side], int] = {}
    for posting in hold.postings:
        key = (posting.account_id, posting.side)
        held[key] = held.get(key, 0) + posting.amount
    asked: dict[tuple[int, Side], int] = {}
    for posting in postings:
        key = (posting.account_id, posting.side)
        asked[key] = asked.get(key, 0) + posting.amount
    for key, amount in asked.items():
        if amount > held.get(key, 0):
            raise HoldAmountExceeded(
                f"hold {hold.id} holds {held.get(key, 0)} on account {key[0]}; {amount} asked",
                entry_id=hold.id,
                account_id=key[0],
                held=held.get(key, 0),
                requested=amount,
            )


def _blame(plans: list[_Planned], account_id: int, error: LedgerError) -> int:
    """The index of the last entry that pushed ``account_id`` the way its flag forbids."""
    debit_side = not isinstance(error, FlagViolation) or error.code == "insufficient_funds"
    for plan in reversed(plans):
        delta = plan.deltas.get(account_id)
        if delta is None:
            continue
        pushes = (
            delta.debits_posted > 0 or delta.debits_pending > 0
            if debit_side
            else delta.credits_posted > 0 or delta.credits_pending > 0
        )
        if pushes:
            return plan.index
    return plans[-1].index


def _account(row: Any) -> Account:
    return Account(
        id=row.id,
        ledger_id=row.ledger_id,
        code=row.code,
        normal_side=Side(row.normal_side),
        owner_ref=row.owner_ref,
        flags=AccountFlags(row.flags),
        closed=bool(row.closed),
        debits_posted=row.debits_posted,
        credits_posted=row.credits_posted,
        debits_pending=row.debits_pending,
        credits_pending=row.credits_pending,
        created_at=from_us(row.created_at_us),
    )
