"""Throughput and latency measurement, with ``time.perf_counter``.

``measure``: N threads run one operation over and over. Each thread first sets itself up (its own
database connection) and warms up for ``warmup`` seconds; then all threads start together on a
barrier, and the clock runs from the barrier to the moment the last thread has finished the
operation it was in when ``seconds`` had passed (or its ``min_operations``-th, if later). The
rate is the units done in that window (a transfer is one unit, a batch of 1,000 entries is
1,000) divided by its length.

``interleaved``: several measures that are to be compared are run in rounds, in alternating order
(A B, then B A, ...), and each one's rounds are added up, so that drift in the database (growing
tables, checkpoints, autovacuum) weighs on each of them alike.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, suppress
from dataclasses import dataclass

#: One operation; returns how many units it did.
Operation = Callable[[], int]
#: Sets up thread number ``index`` and yields its operation; cleans up on exit.
Worker = Callable[[int], AbstractContextManager[Operation]]


@dataclass(frozen=True)
class Rate:
    units: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.units / self.seconds if self.seconds else 0.0

    def __add__(self, other: Rate) -> Rate:
        return Rate(self.units + other.units, self.seconds + other.seconds)


def measure(
    worker: Worker, *, threads: int, seconds: float, warmup: float, min_operations: int = 1
) -> Rate:
    """Run ``worker``'s operation on ``threads`` threads for ``seconds``; see the module doc.

    A thread that has done fewer than ``min_operations`` when the time is up goes on until it
    has (slow operations such as batches then still give a figure from several of them).
    """
    barrier = threading.Barrier(threads + 1)
    stop = threading.Event()
    units = [0] * threads
    finished = [0.0] * threads
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            with worker(index) as operation:
                deadline = time.perf_counter() + warmup
                operation()
                while time.perf_counter() < deadline:
                    operation()
                barrier.wait()
                done = operations = 0
                while operations < min_operations or not stop.is_set():
                    done += operation()
                    operations += 1
                finished[index] = time.perf_counter()
                units[index] = done
        except BaseException as error:
            errors.append(error)
            barrier.abort()

    pool = [threading.Thread(target=run, args=(i,), name=f"bench-{i}") for i in range(threads)]
    for thread in pool:
        thread.start()
    with suppress(threading.BrokenBarrierError):
        barrier.wait()
    start = time.perf_counter()
    if not errors:
        time.sleep(seconds)
    stop.set()
    for thread in pool:
        thread.join()
    if errors:
        real = [e for e in errors if not isinstance(e, threading.BrokenBarrierError)]
        raise (real or errors)[0]
    return Rate(sum(units), max(finished) - start)


def interleaved(runs: Mapping[str, Callable[[], Rate]], *, rounds: int) -> dict[str, Rate]:
    """Run every measure ``rounds`` times in alternating order and add up each one's rounds."""
    totals: dict[str, Rate] = {name: Rate(0, 0.0) for name in runs}
    names = list(runs)
    for number in range(rounds):
        for name in names if number % 2 == 0 else reversed(names):
            totals[name] = totals[name] + runs[name]()
    return totals


@dataclass(frozen=True)
class Latency:
    """Seconds per call: median, mean and 99th percentile of many timed calls."""

    median: float
    mean: float
    p99: float
    calls: int


def latencies(
    calls: Mapping[str, Callable[[], object]], *, repeat: int, warmup: int
) -> dict[str, Latency]:
    """Time each call ``repeat`` times, taking the calls in turn so that drift hits all alike."""
    for _ in range(warmup):
        for call in calls.values():
            call()
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeat):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            samples[name].append(time.perf_counter() - start)
    result: dict[str, Latency] = {}
    for name, values in samples.items():
        values.sort()
        result[name] = Latency(
            median=statistics.median(values),
            mean=statistics.fmean(values),
            p99=values[min(len(values) - 1, int(len(values) * 0.99))],
            calls=len(values),
        )
    return result
