"""The accounts and transfers that the measures of ``python -m bench ledger`` work on.

Accounts, created through the ledger API in every ledger database of a run (so ids agree):

- ``funding``: a debit-normal account without flags; it funds every wallet with 10**12 points.
- ``thread_wallets``: per client thread, a group of its own of ``WALLETS_PER_THREAD`` wallets
  (credit-normal, flag ``DEBITS_MUST_NOT_EXCEED_CREDITS``). A thread's transfers go between two
  distinct random wallets of its own group: threads never wait for each other's account rows, so
  the figures show the write path and the database, not queueing on one hot account.
- ``batch_wallets``: ``BATCH_WALLETS`` wallets that batches move points between (random pairs; a
  batch of 1,000 entries updates nearly all of their totals).
- ``hot`` and ``cold`` (credit-normal, no flags), the accounts whose balance is read, and the
  ``counterparties`` their postings come from.

A transfer ``(payer, payee, amount)`` is the entry ``Posting(payer, DEBIT, amount)``,
``Posting(payee, CREDIT, amount)``; amounts are random in 1..1000. Workloads are made from fixed
seeds before the clock starts, and the same lists feed the ledger and the plain-SQL limit.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from ledger import AccountFlags, BatchMode, Ledger, LedgerTx, NewEntry, Posting, Side

THREADS_MAX = 8
WALLETS_PER_THREAD = 16
BATCH_WALLETS = 200
COUNTERPARTIES = 100
FUNDS = 10**12
AMOUNT_MAX = 1000

#: (payer, payee, amount): the payer is debited, the payee credited.
Transfer = tuple[int, int, int]


@dataclass(frozen=True)
class Accounts:
    ledger_id: int
    funding: int
    thread_wallets: tuple[tuple[int, ...], ...]
    batch_wallets: tuple[int, ...]
    hot: int
    cold: int
    counterparties: tuple[int, ...]


def create_accounts(ledger: Ledger) -> Accounts:
    """Create the run's ledger and accounts in one transaction, then fund the wallets."""

    def create(tx: LedgerTx) -> Accounts:
        ledger_id = tx.create_ledger("bench", "Benchmark").id

        def account(side: Side, flags: AccountFlags = AccountFlags.NONE) -> int:
            return tx.create_account(ledger_id=ledger_id, code=1, normal_side=side, flags=flags).id

        def wallets(count: int) -> tuple[int, ...]:
            flag = AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS
            return tuple(account(Side.CREDIT, flag) for _ in range(count))

        return Accounts(
            ledger_id=ledger_id,
            funding=account(Side.DEBIT),
            thread_wallets=tuple(wallets(WALLETS_PER_THREAD) for _ in range(THREADS_MAX)),
            batch_wallets=wallets(BATCH_WALLETS),
            hot=account(Side.CREDIT),
            cold=account(Side.CREDIT),
            counterparties=tuple(account(Side.DEBIT) for _ in range(COUNTERPARTIES)),
        )

    accounts = ledger.transaction(create)
    wallets = [w for group in accounts.thread_wallets for w in group] + [*accounts.batch_wallets]
    funding = [new_entry((accounts.funding, wallet, FUNDS)) for wallet in wallets]
    ledger.post_batch(funding, BatchMode.ATOMIC)
    return accounts


def transfers(wallets: Sequence[int], count: int, seed: int) -> list[Transfer]:
    """``count`` transfers between two distinct random wallets of ``wallets``."""
    rng = random.Random(seed)
    made = []
    for _ in range(count):
        payer, payee = rng.sample(wallets, 2)
        made.append((payer, payee, rng.randint(1, AMOUNT_MAX)))
    return made


def batches(wallets: Sequence[int], count: int, size: int, seed: int) -> list[list[Transfer]]:
    return [transfers(wallets, size, seed * 1000 + number) for number in range(count)]


def new_entry(transfer: Transfer) -> NewEntry:
    payer, payee, amount = transfer
    return NewEntry([Posting(payer, Side.DEBIT, amount), Posting(payee, Side.CREDIT, amount)])
