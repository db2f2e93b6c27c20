"""``python -m bench ledger``: the ledger's throughput against the limit, batches, sealing, reads.

On SQLite (fresh files in a temporary directory, migrated with ``points.shell.schema.upgrade``;
engines from ``ledger.create_engine``: WAL, ``synchronous=FULL``) and, when
``POINTS_TEST_POSTGRES_URL`` or ``--postgres URL`` is given, on PostgreSQL (fresh ``bench_*``
databases, dropped afterwards):

1. Transfers/s, one two-posting transfer per transaction, at 1 and at 8 client threads, each
   thread on a connection of its own and on its own group of 16 wallets (``bench.workload``):
   ``Ledger.post`` (``auto_seal`` off; ``bench.api_runs``) against the *limit*, the same rows
   written by plain SQL through the same driver into a separately migrated database of the same
   schema (``bench.plain_sql``), and on PostgreSQL against django-hordak 2.0 in a third database
   (``bench.hordak_runs``). The contenders run in alternating rounds (``bench.timing``).
2. Entries/s in batches of 1,000 entries per transaction: ``post_batch`` in ``ATOMIC`` and
   ``INDEPENDENT`` mode against a set-based plain-SQL limit.
3. Entries sealed/s by ``Ledger.seal()`` over everything queued by 1 and 2.
4. ``Ledger.balance`` read time for an account with 1k postings and one with 1M (100k with
   ``--quick``), built through ``post_batch`` (the build rate is reported too), and the ratio.

Each throughput figure is the sum of ``rounds`` timed windows of ``--seconds`` each, after a
warm-up, measured with ``time.perf_counter``. Goals (PASS/MISS, never a failing exit code):
ours/limit >= 0.7 unbatched, >= 0.5 batched; ours/hordak >= 2; balance read 1M/1k <= 1.2.
Output: a table per database, the goals, then one JSON line (starting with ``{``) with every
figure. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import sys
import time
from importlib.metadata import version
from typing import Any

from bench import hordak_runs, measures, report
from bench.databases import POSTGRESQL, SQLITE, Databases, databases
from bench.workload import create_accounts
from ledger import Ledger

POSTGRES_ENV = "POINTS_TEST_POSTGRES_URL"


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    config = measures.Config.make(quick=args.quick, seconds=args.seconds)
    postgres_url = args.postgres or os.environ.get(POSTGRES_ENV)
    kinds = [SQLITE] + ([POSTGRESQL] if postgres_url else [])
    if args.only:
        kinds = [kind for kind in kinds if kind == args.only]
        if not kinds:
            print(f"--only {args.only}: no PostgreSQL URL (--postgres or {POSTGRES_ENV})")
            return 2
    started = time.perf_counter()
    load_before = os.getloadavg()
    results: dict[str, dict[str, Any]] = {}
    titles: dict[str, str] = {}
    environment: dict[str, Any] = {}
    for kind in kinds:
        _progress(f"{kind}: starting")
        with databases(kind, postgres_url) as made:
            version_text = made.version()
            settings = made.settings()
            titles[kind] = f"{version_text} ({', '.join(f'{k}={v}' for k, v in settings.items())})"
            environment[kind] = {"version": version_text, "settings": settings}
            results[kind] = _run(kind, made, config)
    elapsed = time.perf_counter() - started
    load_after = os.getloadavg()

    found = report.goals(results)
    print(_header(config, environment, load_before, load_after, postgres_url is not None))
    for kind in kinds:
        print()
        print(report.table(kind, titles[kind], results[kind], found))
    print()
    print(report.goal_summary(found))
    print(f"\nRun time: {elapsed:.0f} s")
    document = {
        "benchmark": "ledger",
        "quick": config.quick,
        "cpu_count": os.cpu_count(),
        "load_average_before": load_before,
        "load_average_after": load_after,
        "versions": _versions(),
        "databases": environment,
        "config": {
            "seconds_per_window": config.seconds,
            "rounds": config.rounds,
            "warmup_seconds": config.warmup,
            "thread_counts": list(measures.THREAD_COUNTS),
            "batch_size": measures.BATCH_SIZE,
            "large_postings": config.large_postings,
            "small_postings": config.small_postings,
        },
        "results": results,
        "goals": [goal.as_json() for goal in found],
        "elapsed_seconds": elapsed,
    }
    print(report.json_line(document))
    return 0


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench ledger", description=(__doc__ or "").splitlines()[0]
    )
    parser.add_argument(
        "--quick", action="store_true", help="short windows and 100k instead of 1M postings"
    )
    parser.add_argument(
        "--postgres", metavar="URL", help=f"PostgreSQL server to use (default: ${POSTGRES_ENV})"
    )
    parser.add_argument("--only", choices=(SQLITE, POSTGRESQL), help="run on one database only")
    parser.add_argument("--seconds", type=float, help="length of each timed window")
    return parser.parse_args(argv)


def _run(kind: str, made: Databases, config: measures.Config) -> dict[str, Any]:
    ours_engine = made.new_ledger_engine("ours")
    limit_engine = made.new_ledger_engine("limit")
    try:
        ours = Ledger(ours_engine, auto_seal=False)
        accounts = create_accounts(ours)
        assert create_accounts(Ledger(limit_engine)) == accounts, "account ids differ"
        hordak_url = made.new_url("hordak") if kind == POSTGRESQL else None
        _progress(f"{kind}: transfers at 1 and 8 threads")
        figures = measures.transfers_measure(ours, limit_engine, accounts, config, hordak_url)
        _progress(f"{kind}: batches")
        figures |= measures.batches_measure(ours, limit_engine, accounts, config)
        _progress(f"{kind}: sealing")
        figures["seal"] = measures.seal_measure(ours)
        _progress(f"{kind}: building {config.large_postings:,} postings, reading balances")
        figures |= measures.balance_measure(ours, accounts, config)
        _progress(f"{kind}: done")
        return figures
    finally:
        ours_engine.dispose()
        limit_engine.dispose()


def _versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in ("sqlalchemy", "psycopg", "alembic"):
        found[name] = version(name)
    with contextlib.suppress(ImportError):
        found |= hordak_runs.versions()
    return found


def _header(
    config: measures.Config,
    environment: dict[str, Any],
    load_before: tuple[float, float, float],
    load_after: tuple[float, float, float],
    postgres: bool,
) -> str:
    mode = (
        "QUICK MODE: short windows, 100,000 postings for the large balance read"
        if config.quick
        else "full run"
    )
    versions = ", ".join(f"{name} {value}" for name, value in _versions().items())
    databases_line = "; ".join(item["version"] for item in environment.values())
    lines = [
        f"python -m bench ledger - {mode}",
        f"cores (os.cpu_count()): {os.cpu_count()}; load average before/after: "
        f"{load_before[0]:.2f} / {load_after[0]:.2f}",
        f"databases: {databases_line}",
        f"software: {versions}",
        f"timing: {config.rounds} rounds x {config.seconds:g} s per figure after "
        f"{config.warmup:g} s warm-up, contenders interleaved in alternating order",
        "limit: the same rows written by plain SQL through the same driver, into a separately "
        "migrated database of the same schema (bench/plain_sql.py)",
        "workload: each client thread transfers between 16 wallets of its own (no shared rows); "
        "Ledger auto_seal off",
    ]
    if not postgres:
        lines.append(f"PostgreSQL skipped: set {POSTGRES_ENV} or pass --postgres URL")
    return "\n".join(lines)


def _progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)
