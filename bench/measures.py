"""The measures of ``python -m bench ledger`` on one database kind; each returns plain figures.

- ``transfers_measure``: one transfer per transaction at 1 and at 8 client threads: the ledger
  API against the plain-SQL limit (and django-hordak on PostgreSQL), interleaved in rounds.
- ``batches_measure``: 1,000 entries per transaction, ``BatchMode.ATOMIC`` and ``INDEPENDENT``
  against the set-based plain-SQL limit, interleaved in rounds.
- ``seal_measure``: ``Ledger.seal()`` over everything the measures above queued; entries/s.
- ``balance_measure``: build one account with 1k postings and one with 1M (100k in quick mode)
  through ``post_batch`` (timed, making the entries included: the build rate is reported), then
  time ``Ledger.balance`` on each, alternately, and report each one's median and their ratio.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Engine

from bench import api_runs, hordak_runs, plain_sql
from bench.timing import Rate, Worker, interleaved, latencies, measure
from bench.workload import Accounts, batches, transfers
from ledger import BatchMode, Ledger, NewEntry, Posting, Side

THREAD_COUNTS = (1, 8)
BATCH_SIZE = 1000
#: Each timed window of a batch measure holds at least this many batches.
BATCH_MIN_OPERATIONS = 3
#: Each entry of the balance build: one debit from a counterparty and this many credits to the
#: account being built up (fewer rows per posting than two-posting entries).
BUILD_POSTINGS_PER_ENTRY = 15
BUILD_ENTRIES_PER_BATCH = 4000


@dataclass(frozen=True)
class Config:
    quick: bool
    seconds: float
    warmup: float
    rounds: int
    #: Distinct transfers each thread cycles through (and batches the batch measures cycle).
    transfers_per_thread: int
    distinct_batches: int
    small_postings: int
    large_postings: int
    balance_reads: int

    @staticmethod
    def make(*, quick: bool, seconds: float | None) -> Config:
        if quick:
            return Config(True, seconds or 1.0, 0.3, 2, 2000, 4, 1000, 100_000, 500)
        return Config(False, seconds or 3.0, 1.0, 2, 5000, 8, 1000, 1_000_000, 2000)


def _ratio(ours: float, other: float) -> float:
    return ours / other if other else 0.0


def transfers_measure(
    ours: Ledger,
    limit_engine: Engine,
    accounts: Accounts,
    config: Config,
    hordak_url: str | None,
) -> dict[str, Any]:
    workloads = [
        transfers(group, config.transfers_per_thread, seed=thread)
        for thread, group in enumerate(accounts.thread_wallets)
    ]
    contenders: dict[str, Callable[[int], Callable[[], Rate]]] = {}

    def timed(worker: Worker) -> Callable[[int], Callable[[], Rate]]:
        return lambda threads: (
            lambda: measure(worker, threads=threads, seconds=config.seconds, warmup=config.warmup)
        )

    contenders["limit"] = timed(
        plain_sql.single_worker(limit_engine, accounts.ledger_id, workloads)
    )
    contenders["ours"] = timed(api_runs.single_worker(ours, workloads))
    if hordak_url is not None:
        hordak_runs.setup(hordak_url)
        groups = hordak_runs.create_accounts(len(workloads), len(accounts.thread_wallets[0]))
        hordak_work = [
            transfers(group, config.transfers_per_thread, seed=thread)
            for thread, group in enumerate(groups)
        ]
        contenders["hordak"] = timed(hordak_runs.single_worker(groups, hordak_work))
    figures: dict[str, Any] = {}
    for threads in THREAD_COUNTS:
        rates = interleaved(
            {name: make(threads) for name, make in contenders.items()}, rounds=config.rounds
        )
        figure: dict[str, Any] = {name: round(rate.per_second, 1) for name, rate in rates.items()}
        figure["ratio"] = _ratio(figure["ours"], figure["limit"])
        if "hordak" in figure:
            figure["ratio_hordak"] = _ratio(figure["ours"], figure["hordak"])
        figure["transfers"] = {name: rate.units for name, rate in rates.items()}
        figures[f"transfers_{threads}_thread{'s' if threads > 1 else ''}"] = figure
    return figures


def batches_measure(
    ours: Ledger, limit_engine: Engine, accounts: Accounts, config: Config
) -> dict[str, Any]:
    work = batches(accounts.batch_wallets, config.distinct_batches, BATCH_SIZE, seed=99)

    def timed(worker: Worker) -> Callable[[], Rate]:
        return lambda: measure(
            worker,
            threads=1,
            seconds=config.seconds,
            warmup=config.warmup,
            min_operations=BATCH_MIN_OPERATIONS,
        )

    rates = interleaved(
        {
            "limit": timed(plain_sql.batch_worker(limit_engine, accounts.ledger_id, work)),
            "atomic": timed(api_runs.batch_worker(ours, work, BatchMode.ATOMIC)),
            "independent": timed(api_runs.batch_worker(ours, work, BatchMode.INDEPENDENT)),
        },
        rounds=config.rounds,
    )
    limit = round(rates["limit"].per_second, 1)
    figures = {}
    for mode in ("atomic", "independent"):
        ours_rate = round(rates[mode].per_second, 1)
        figures[f"batch_{mode}"] = {
            "ours": ours_rate,
            "limit": limit,
            "ratio": _ratio(ours_rate, limit),
            "entries": {"ours": rates[mode].units, "limit": rates["limit"].units},
        }
    return figures


def seal_measure(ours: Ledger) -> dict[str, Any]:
    start = time.perf_counter()
    sealed = ours.seal()
    seconds = time.perf_counter() - start
    return {"entries": sealed, "seconds": round(seconds, 3), "per_second": sealed / seconds}


def balance_measure(ours: Ledger, accounts: Accounts, config: Config) -> dict[str, Any]:
    rng = random.Random(7)
    expected = {}
    build = {}
    for account, postings in (
        (accounts.cold, config.small_postings),
        (accounts.hot, config.large_postings),
    ):
        start = time.perf_counter()
        expected[account] = _build(ours, account, accounts.counterparties, postings, rng)
        build[account] = time.perf_counter() - start
    reads = latencies(
        {
            "small": lambda: ours.balance(accounts.cold),
            "large": lambda: ours.balance(accounts.hot),
        },
        repeat=config.balance_reads,
        warmup=max(50, config.balance_reads // 10),
    )
    for account, total in expected.items():
        assert ours.balance(account).posted == total, "the balance does not match the build"
    return {
        "balance_read": {
            "postings_small": config.small_postings,
            "postings_large": config.large_postings,
            "small_us": reads["small"].median * 1e6,
            "large_us": reads["large"].median * 1e6,
            "ratio": reads["large"].median / reads["small"].median,
            "small_mean_us": reads["small"].mean * 1e6,
            "large_mean_us": reads["large"].mean * 1e6,
            "small_p99_us": reads["small"].p99 * 1e6,
            "large_p99_us": reads["large"].p99 * 1e6,
            "reads_each": reads["small"].calls,
        },
        "balance_build": {
            "postings": config.large_postings,
            "seconds": round(build[accounts.hot], 2),
            "postings_per_second": config.large_postings / build[accounts.hot],
            "postings_per_entry": BUILD_POSTINGS_PER_ENTRY + 1,
            "entries_per_transaction": BUILD_ENTRIES_PER_BATCH,
        },
    }


def _build(
    ours: Ledger, account: int, counterparties: tuple[int, ...], postings: int, rng: random.Random
) -> int:
    """Give ``account`` ``postings`` credit postings through ``post_batch``; return their sum."""
    total = 0
    left = postings
    while left:
        entries: list[NewEntry] = []
        while left and len(entries) < BUILD_ENTRIES_PER_BATCH:
            count = min(BUILD_POSTINGS_PER_ENTRY, left)
            amounts = [rng.randint(1, 1000) for _ in range(count)]
            payer = Posting(rng.choice(counterparties), Side.DEBIT, sum(amounts))
            entries.append(NewEntry([payer, *(Posting(account, Side.CREDIT, a) for a in amounts)]))
            total += sum(amounts)
            left -= count
        ours.post_batch(entries, BatchMode.ATOMIC)
    return total
