"""``Ledger``: the ledger's operations, each in its own transaction, retried when transient.

Use ``Ledger.transaction(work)`` to run several operations (and your own SQL, on the driver's
connection ``tx.driver``) in one transaction; every other method is a one-operation transaction.
A unit of work may be run more than once (after a deadlock, a serialization failure, or a lost
race on an idempotency key), so it must not have effects outside the database.

The hot path: ``Ledger.transaction`` (and so every write shortcut here) runs on the pool's DBAPI
connection (``ledger.database.run_on_driver``), not on a SQLAlchemy ``Connection``; the ledger's
statements go through the driver's cursor either way, and the transaction, the retries and the
errors are the same. A service that shares its transaction with a SQLAlchemy ``Session`` makes
its own ``LedgerTx(session.connection(), clock)`` instead. ``Ledger.read`` stays on a
``Connection`` (``tx.connection`` there), deferred on SQLite.

After every committed write the ledger wakes its background sealer (when ``auto_seal`` is on);
writers never wait for it. The sealer also wakes every ``seal_interval_seconds`` by itself.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ledger.database import is_sqlite, run_on_driver, run_with_retries
from ledger.model import (
    Account,
    AccountFlags,
    Balance,
    BatchMode,
    Entry,
    EntryResult,
    LedgerInfo,
    NewEntry,
    Page,
    Side,
)
from ledger.seal import SEAL_BATCH_MAX, seal_pending
from ledger.store import Clock, LedgerTx
from ledger.verify import Report, verify

T = TypeVar("T")
log = logging.getLogger("ledger")


def system_clock() -> datetime:
    return datetime.now(UTC)


class Ledger:
    """A double-entry ledger on one database; see the module docstring."""

    def __init__(
        self,
        engine: Engine,
        *,
        clock: Clock = system_clock,
        auto_seal: bool = False,
        seal_interval_seconds: float = 2.0,
    ) -> None:
        self.engine = engine
        self.clock = clock
        self._sealer: _Sealer | None = None
        if auto_seal:
            self._sealer = _Sealer(self, seal_interval_seconds)
            self._sealer.start()

    def close(self) -> None:
        """Stop the background sealer (sealing what is queued first)."""
        if self._sealer is not None:
            self._sealer.stop()
            self._sealer = None

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # Units of work --------------------------------------------------------------------------

    def transaction(self, work: Callable[[LedgerTx], T]) -> T:
        """Run ``work`` in one transaction with retries, commit, and wake the sealer."""
        result = run_on_driver(
            self.engine, lambda connection: work(LedgerTx(connection, self.clock))
        )
        if self._sealer is not None:
            self._sealer.wake()
        return result

    def read(self, work: Callable[[LedgerTx], T]) -> T:
        """Run a read-only ``work`` (SQLite: a deferred transaction, no write lock)."""
        return run_with_retries(
            self.engine, lambda connection: work(LedgerTx(connection, self.clock)), read_only=True
        )

    # One-operation shortcuts ----------------------------------------------------------------

    def create_ledger(self, code: str, name: str) -> LedgerInfo:
        return self.transaction(lambda tx: tx.create_ledger(code, name))

    def get_ledger(self, code: str) -> LedgerInfo:
        return self.read(lambda tx: tx.get_ledger(code))

    def create_account(
        self,
        *,
        ledger_id: int,
        code: int,
        normal_side: Side,
        owner_ref: str | None = None,
        flags: AccountFlags = AccountFlags.NONE,
    ) -> Account:
        return self.transaction(
            lambda tx: tx.create_account(
                ledger_id=ledger_id,
                code=code,
                normal_side=normal_side,
                owner_ref=owner_ref,
                flags=flags,
            )
        )

    def get_account(self, account_id: int) -> Account:
        return self.read(lambda tx: tx.get_account(account_id))

    def close_account(self, account_id: int) -> Account:
        return self.transaction(lambda tx: tx.close_account(account_id))

    def post(self, entry: NewEntry) -> Entry:
        return self.transaction(lambda tx: tx.post(entry))

    def post_batch(
        self, entries: Sequence[NewEntry], mode: BatchMode = BatchMode.ATOMIC
    ) -> list[EntryResult]:
        return self.transaction(lambda tx: tx.post_batch(entries, mode))

    def post_pending(self, hold_id: int, **options: Any) -> Entry:
        return self.transaction(lambda tx: tx.post_pending(hold_id, **options))

    def void_pending(self, hold_id: int, **options: Any) -> Entry:
        return self.transaction(lambda tx: tx.void_pending(hold_id, **options))

    def reverse(self, entry_id: int, **options: Any) -> Entry:
        return self.transaction(lambda tx: tx.reverse(entry_id, **options))

    def void_expired_holds(self, as_of: datetime, *, limit: int = 1000) -> int:
        """Void every hold timed out at ``as_of``, ``limit`` per transaction; return how many."""
        total = 0
        while True:
            voided = self.transaction(lambda tx: tx.void_expired_holds(as_of, limit=limit))
            total += len(voided)
            if len(voided) < limit:
                return total

    def balance(self, account_id: int) -> Balance:
        return self.read(lambda tx: tx.balance(account_id))

    def history(self, account_id: int, *, limit: int = 100, cursor: str | None = None) -> Page:
        return self.read(lambda tx: tx.history(account_id, limit=limit, cursor=cursor))

    def find_entry(self, namespace: str, idempotency_key: str) -> Entry | None:
        return self.read(lambda tx: tx.find_entry(namespace, idempotency_key))

    def get_entry(self, entry_id: int) -> Entry:
        return self.read(lambda tx: tx.get_entry(entry_id))

    # Sealing and verification ---------------------------------------------------------------

    def seal(self, *, skip_if_busy: bool = False) -> int:
        """Seal every queued entry, a batch per transaction; return how many were sealed."""
        total = 0
        while True:
            count = run_with_retries(
                self.engine,
                lambda connection: seal_pending(connection, skip_if_busy=skip_if_busy),
            )
            total += count
            if count < SEAL_BATCH_MAX:
                return total

    def verify(self, *, unsealed_grace_seconds: int = 10) -> Report:
        return run_with_retries(
            self.engine,
            lambda connection: verify(
                connection, now=self.clock(), unsealed_grace_seconds=unsealed_grace_seconds
            ),
            read_only=True,
        )

    @property
    def is_sqlite(self) -> bool:
        return is_sqlite(self.engine)


class _Sealer:
    """A daemon thread that seals after commits; one per ``Ledger``."""

    def __init__(self, ledger: Ledger, interval_seconds: float) -> None:
        self._ledger = ledger
        self._interval_seconds = interval_seconds
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ledger-sealer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        self._thread.join(timeout=30)
        # An entry committed while the thread's last pass ran is sealed here, before close()
        # returns: close() promises that everything queued is sealed.
        self._ledger.seal()

    def _run(self) -> None:
        while True:
            self._wake.wait(self._interval_seconds)
            self._wake.clear()
            try:
                self._ledger.seal(skip_if_busy=True)
            except (sa.exc.SQLAlchemyError, Exception):
                # The sealer must outlive a passing database failure; the next wake retries.
                log.exception("sealing failed; will try again")
            if self._stopping.is_set():
                return
