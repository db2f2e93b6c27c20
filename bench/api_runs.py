"""The ledger under measurement, called through its public API as an application calls it.

- one transfer per transaction: ``Ledger.post(NewEntry([Posting(payer, DEBIT, x),
  Posting(payee, CREDIT, x)]))``; the ledger checks a connection out of the engine's pool for
  each transaction, so every client thread works on a connection of its own;
- batches: ``Ledger.post_batch(entries, mode)``, 1,000 entries per transaction, in
  ``BatchMode.ATOMIC`` or ``BatchMode.INDEPENDENT``.

The ``Ledger`` runs with ``auto_seal`` off: sealing is a separate step, measured on its own.
``NewEntry`` values are built before the clock starts and reused (they carry no idempotency key).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from bench.timing import Operation, Worker
from bench.workload import Transfer, new_entry
from ledger import BatchMode, Ledger


def single_worker(ledger: Ledger, workloads: Sequence[list[Transfer]]) -> Worker:
    """Thread ``i`` posts the transfers of ``workloads[i]``, one per transaction, in a loop."""

    @contextmanager
    def worker(index: int) -> Iterator[Operation]:
        entries = itertools.cycle([new_entry(transfer) for transfer in workloads[index]])

        def operation() -> int:
            ledger.post(next(entries))
            return 1

        yield operation

    return worker


def batch_worker(ledger: Ledger, batches: Sequence[list[Transfer]], mode: BatchMode) -> Worker:
    """Post the batches one per transaction, round and round; a unit is an entry."""

    @contextmanager
    def worker(_index: int) -> Iterator[Operation]:
        prepared = itertools.cycle([[new_entry(t) for t in batch] for batch in batches])

        def operation() -> int:
            results = ledger.post_batch(next(prepared), mode)
            assert all(result.error is None for result in results)
            return len(results)

        yield operation

    return worker
