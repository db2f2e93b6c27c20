"""``python -m bench export``: exporting the sealed ledger, against plain SQL doing the same work.

On each database (a fresh SQLite file, and a fresh PostgreSQL database created and dropped on
the server of ``--postgres``, ``$POINTS_TEST_POSTGRES_URL`` or ``127.0.0.1:5432``; both migrated
to head by ``bench.databases``):

1. **Build**: one ledger ``pt`` and the chart of accounts' kinds of account (city funding 100,
   four program budgets 200 ``<program>:FY2026``, 1,000 resident buckets 300, 50 merchant
   payables 400), then ``--entries`` entries (1,000,000) of two postings each through the real
   API, ``Ledger.post_batch`` (``ATOMIC``) 1,000 entries a transaction: four budget allocations,
   then awards (budget -> a resident's bucket, with the metadata, namespace and idempotency key
   that ``issuers.awards.award_entry`` gives an award) and payments (a bucket -> a shop's
   payable, with a payment's metadata), from a fixed seed, effective every 31 s over a fiscal
   year; then ``Ledger.seal()``. Posting (making the entries included) and sealing are timed.
   Then the database is ANALYZEd, as a server's tables are by autovacuum (the test server runs
   without it; without planner statistics PostgreSQL reads a batch's postings by scanning).
2. **Ours**: ``points.exports.stream_export`` (the code behind ``points export`` and
   ``GET /api/v1/finance/exports``; the audit record they write first is not included) of
   sequences 1..N as UTF-8 CSV (``ExportFormat.CSV``) and as an hledger journal, its bytes
   written to a file in a temporary directory; wall time with ``time.perf_counter``.
3. **The limit**: the same posting rows read and written by plain SQL in the same run: on
   PostgreSQL ``COPY (SELECT ... FROM ledger_seal JOIN ledger_entry JOIN ledger JOIN
   ledger_posting JOIN ledger_account ... ORDER BY sequence, posting id) TO STDOUT WITH (FORMAT
   csv)`` through psycopg's ``cursor.copy()`` written to a file; on SQLite the same join through
   the standard library's ``sqlite3`` cursor written by ``csv.writer``. Its columns are our CSV's
   (the account name and the Tokyo time computed in SQL, the hashes as hex); it writes the
   column names but not our ``range`` and ``end`` rows (the end row's per-ledger totals) nor the
   BOM, and COPY ends its lines with LF where we write CRLF. The first posting rows of both
   files are compared byte for byte, line endings aside (``same_rows``).
4. **Memory**: our CSV export (and the hledger journal) of the first 100,000 entries (a tenth
   with ``--quick``) and of all N, each in a fresh child process (``python -m bench export
   --child``) that reports its own peak RSS (``VmHWM`` of ``/proc/self/status``; not
   ``ru_maxrss``, which in a child starts at the parent's RSS) after its imports and connecting,
   and after the export. Streaming means the two exports' peaks are about equal.

Entries/s = N / seconds (each posting is one CSV row: 2N rows); MB/s = bytes / 10**6 / seconds.
``--rounds`` rounds (2), each running ours (CSV, hledger) and the limit, in alternating order;
each contender's rounds are added up. Goal (issue 21): our CSV's entries/s >= 0.5 x the limit's.
The hledger journal's ratio is shown without a goal (it writes a different format). A table per
database, the goal with PASS/MISS (never a failing exit code), then one JSON line. Progress goes
to stderr. The databases and files are removed at the end.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import random
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from importlib.metadata import version
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy.engine import Engine, make_url

import ledger
from bench.databases import POSTGRESQL, SQLITE, Databases, databases
from bench.report import Goal, goal_summary, json_line
from ledger import BatchMode, Ledger, LedgerTx, NewEntry, Posting, Side
from points.accounts import ACCOUNT_RULES, AccountCode
from points.calendar import TOKYO
from points.exports import CSV_COLUMNS, ExportFormat, ExportRequest, account_name, stream_export
from points.shell import schema

POSTGRES_ENV = "POINTS_TEST_POSTGRES_URL"
DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
ENTRIES = 1_000_000
QUICK_ENTRIES = 100_000
MEMORY_SMALL = 100_000
BATCH = 1000
#: Goal (issue 21): our CSV's entries/s against the limit's.
CSV_GOAL = 0.5
#: Posting rows of ours and of the limit compared byte for byte.
SAME_ROWS_CHECKED = 10_000

PROGRAMS = 4
RESIDENTS = 1000
MERCHANTS = 50
FISCAL_YEAR = 2026
BUDGET = 10**12
START = datetime(FISCAL_YEAR, 4, 1, 9, tzinfo=TOKYO)
SPACING = timedelta(seconds=31)


# The ledger ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Accounts:
    city: int
    budgets: tuple[int, ...]
    residents: tuple[int, ...]
    merchants: tuple[int, ...]


def _program(number: int) -> str:
    return f"prg-{number:04d}"


def create_accounts(book: Ledger) -> Accounts:
    """The ledger ``pt`` and its accounts, named as the services name them (owner references)."""

    def create(tx: LedgerTx) -> Accounts:
        ledger_id = tx.create_ledger("pt", "狛江ポイント").id

        def many(code: AccountCode, owners: list[str]) -> tuple[int, ...]:
            side, flags = ACCOUNT_RULES[code]
            return tuple(
                tx.create_accounts(
                    ledger_id=ledger_id,
                    code=int(code),
                    normal_side=side,
                    owner_refs=owners,
                    flags=flags,
                )
            )

        (city,) = many(AccountCode.CITY_FUNDING, ["city"])
        return Accounts(
            city=city,
            budgets=many(
                AccountCode.PROGRAM_BUDGET,
                [f"{_program(n)}:FY{FISCAL_YEAR}" for n in range(PROGRAMS)],
            ),
            residents=many(AccountCode.RESIDENT_BUCKET, [f"R-{n:06d}" for n in range(RESIDENTS)]),
            merchants=many(AccountCode.MERCHANT_PAYABLE, [f"M-{n:04d}" for n in range(MERCHANTS)]),
        )

    return book.transaction(create)


def entry_batches(accounts: Accounts, count: int, seed: int = 21) -> Iterator[list[NewEntry]]:
    """``count`` two-posting entries in batches of ``BATCH``: the budgets' allocations, then
    awards (3 in 5) and payments (a resident pays only what their bucket holds)."""
    rng = random.Random(seed)
    held = [0] * len(accounts.residents)
    batch: list[NewEntry] = []
    for number in range(count):
        at = START + number * SPACING + timedelta(microseconds=rng.randrange(1, 1_000_000))
        if number < len(accounts.budgets):
            entry = NewEntry(
                [
                    Posting(accounts.city, Side.DEBIT, BUDGET),
                    Posting(accounts.budgets[number], Side.CREDIT, BUDGET),
                ],
                kind="allocation",
                description=f"FY{FISCAL_YEAR} budget",
                metadata={"program_id": _program(number), "fiscal_year": FISCAL_YEAR},
                effective_at=at,
            )
        else:
            resident = rng.randrange(len(accounts.residents))
            amount = rng.randint(1, 1000)
            if rng.random() < 0.6 or held[resident] < amount:
                program = rng.randrange(len(accounts.budgets))
                amount = rng.randint(100, 5000)
                held[resident] += amount
                record = f"rec-{number:08d}"
                entry = NewEntry(
                    [
                        Posting(accounts.budgets[program], Side.DEBIT, amount),
                        Posting(accounts.residents[resident], Side.CREDIT, amount),
                    ],
                    kind="award",
                    description=f"Health checkup {program}",
                    metadata={
                        "program_id": _program(program),
                        "program_ja": f"健康診断{program}",
                        "program_en": f"Health checkup {program}",
                        "record_id": record,
                        "fiscal_year": FISCAL_YEAR,
                    },
                    namespace=f"award:{_program(program)}",
                    idempotency_key=record,
                    effective_at=at,
                )
            else:
                merchant = rng.randrange(len(accounts.merchants))
                held[resident] -= amount
                payment = f"pay-{number:08d}"
                entry = NewEntry(
                    [
                        Posting(accounts.residents[resident], Side.DEBIT, amount),
                        Posting(accounts.merchants[merchant], Side.CREDIT, amount),
                    ],
                    kind="payment",
                    description=f"Shop {merchant}",
                    metadata={
                        "payment_id": payment,
                        "merchant_id": f"M-{merchant:04d}",
                        "shop_ja": f"商店{merchant}",
                        "shop_en": f"Shop {merchant}",
                    },
                    namespace=f"payment:M-{merchant:04d}",
                    idempotency_key=payment,
                    effective_at=at,
                )
        batch.append(entry)
        if len(batch) == BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def build(engine: Engine, entries: int) -> dict[str, Any]:
    """Post ``entries`` entries through ``post_batch`` and seal them; the times taken."""
    book = Ledger(engine, auto_seal=False)
    accounts = create_accounts(book)
    start = time.perf_counter()
    for batch in entry_batches(accounts, entries):
        book.post_batch(batch, BatchMode.ATOMIC)
    posted = time.perf_counter() - start
    start = time.perf_counter()
    sealed = book.seal()
    sealing = time.perf_counter() - start
    assert sealed == entries, f"sealed {sealed} entries, not {entries}"
    start = time.perf_counter()
    with engine.connect() as connection:
        connection.exec_driver_sql("ANALYZE")
        connection.commit()
    analyzing = time.perf_counter() - start
    return {
        "entries": entries,
        "post_seconds": posted,
        "post_entries_per_second": entries / posted,
        "seal_seconds": sealing,
        "seal_entries_per_second": entries / sealing,
        "analyze_seconds": analyzing,
        "seconds": posted + sealing,
    }


# Ours and the limit ----------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    seconds: float
    bytes: int

    def __add__(self, other: Run) -> Run:
        return Run(self.seconds + other.seconds, self.bytes + other.bytes)


def ours(engine: Engine, export_format: ExportFormat, to_seq: int, path: Path) -> Run:
    """``stream_export`` of sequences 1..to_seq written to ``path``."""
    size = 0
    start = time.perf_counter()
    with path.open("wb") as out:
        for chunk in stream_export(engine, ExportRequest(export_format, 1, to_seq)):
            out.write(chunk)
            size += len(chunk)
    return Run(time.perf_counter() - start, size)


def _account_sql() -> str:
    """The CSV's ``account`` column in SQL: ``points.exports.account_name`` of the chart's
    codes (owner references used as they are: this run's have no characters to replace)."""
    cases = []
    for code in AccountCode:
        base = account_name(int(code), None)
        if code is AccountCode.RESIDENT_BUCKET:
            cases.append(f"WHEN {int(code)} THEN '{base}'")
        else:
            cases.append(f"WHEN {int(code)} THEN '{base}' || COALESCE(':' || a.owner_ref, '')")
    other = "'other:code-' || CAST(a.code AS TEXT)"
    return f"CASE a.code {' '.join(cases)} ELSE {other} END"


def limit_query(kind: str, to_seq: int) -> str:
    """The posting rows of our CSV (same columns, same order) as one plain SQL query."""
    if kind == SQLITE:
        effective = (
            "strftime('%Y-%m-%dT%H:%M:%S', e.effective_at_us / 1000000, 'unixepoch', "
            "'+9 hours') || printf('.%06d', e.effective_at_us % 1000000) || '+09:00'"
        )
        previous, digest = "lower(hex(s.previous_hash))", "lower(hex(s.hash))"
    else:
        effective = (
            "to_char(timestamp 'epoch' + e.effective_at_us * interval '1 microsecond' "
            "+ interval '9 hours', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"+09:00\"')"
        )
        previous, digest = "encode(s.previous_hash, 'hex')", "encode(s.hash, 'hex')"
    columns = [
        "'posting'",
        "s.sequence",
        "e.id",
        "e.ledger_id",
        "l.code",
        "e.phase",
        "e.kind",
        "e.description",
        "e.metadata",
        "e.effective_at_us",
        "e.recorded_at_us",
        effective,
        "e.namespace",
        "e.idempotency_key",
        "e.timeout_at_us",
        "e.pending_id",
        "e.reverses_id",
        "p.id",
        "p.account_id",
        _account_sql(),
        "CASE p.side WHEN 1 THEN 'debit' ELSE 'credit' END",
        "p.amount",
        previous,
        digest,
    ]
    assert len(columns) == len(CSV_COLUMNS)
    return (
        f"SELECT {', '.join(columns)} FROM ledger_seal s "
        "JOIN ledger_entry e ON e.id = s.entry_id "
        "JOIN ledger l ON l.id = e.ledger_id "
        "JOIN ledger_posting p ON p.entry_id = e.id "
        "JOIN ledger_account a ON a.id = p.account_id "
        f"WHERE s.sequence BETWEEN 1 AND {int(to_seq)} ORDER BY s.sequence, p.id"
    )


def _header_line() -> bytes:
    return (",".join(CSV_COLUMNS) + "\r\n").encode("utf-8")


def limit(kind: str, url: str, to_seq: int, path: Path) -> Run:
    """Plain SQL writing the posting rows of sequences 1..to_seq to ``path``."""
    query = limit_query(kind, to_seq)
    start = time.perf_counter()
    if kind == SQLITE:
        database = make_url(url).database
        assert database is not None
        connection = sqlite3.connect(database)
        try:
            with path.open("w", encoding="utf-8", newline="") as out:
                writer = csv.writer(out)
                writer.writerow(CSV_COLUMNS)
                writer.writerows(connection.execute(query))
        finally:
            connection.close()
    else:
        conninfo = make_url(url).set(drivername="postgresql").render_as_string(False)
        with (
            psycopg.connect(conninfo) as server,
            server.cursor() as cursor,
            path.open("wb") as out,
        ):
            out.write(_header_line())
            with cursor.copy(f"COPY ({query}) TO STDOUT WITH (FORMAT csv)") as copy:
                for data in copy:
                    out.write(data)
    seconds = time.perf_counter() - start
    return Run(seconds, path.stat().st_size)


def same_rows(ours_csv: Path, limit_csv: Path, rows: int = SAME_ROWS_CHECKED) -> bool:
    """Whether the first ``rows`` posting rows of both files are the same bytes, line endings
    aside (PostgreSQL's COPY ends a line with LF, we with CRLF): ours after its BOM, column
    names and ``range`` row; the limit's after its column names."""
    with ours_csv.open("rb") as mine, limit_csv.open("rb") as theirs:
        if mine.read(3) != b"\xef\xbb\xbf":
            return False
        for _ in range(2):
            mine.readline()
        theirs.readline()
        for _ in range(rows):
            line = mine.readline().rstrip(b"\r\n")
            if not line.startswith(b"posting,") or line != theirs.readline().rstrip(b"\r\n"):
                return False
    return True


# Memory: a fresh child process per export ------------------------------------------------


def _peak_kib() -> int:
    """This process image's peak RSS in KiB: ``VmHWM`` of ``/proc/self/status``. Not
    ``getrusage``'s ``ru_maxrss``: on Linux a child's starts at its parent's RSS (the forked copy
    of the parent is counted when ``exec`` replaces it), which here is the benchmark's own."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def child(url: str, export_format: ExportFormat, to_seq: int, path: Path) -> int:
    """In the child process: one export, then its peak RSS (and times) as one JSON line."""
    engine = ledger.create_engine(url)
    with engine.connect() as connection:
        connection.exec_driver_sql("SELECT 1")
    before = _peak_kib()
    run = ours(engine, export_format, to_seq, path)
    engine.dispose()
    print(
        json.dumps(
            {
                "entries": to_seq,
                "peak_rss_kib_before": before,
                "peak_rss_kib": _peak_kib(),
                "seconds": run.seconds,
                "bytes": run.bytes,
            }
        )
    )
    path.unlink()
    return 0


def in_child(url: str, export_format: ExportFormat, to_seq: int, path: Path) -> dict[str, Any]:
    command = [sys.executable, "-m", "bench", "export", "--child", url]
    command += ["--format", export_format.value, "--to-seq", str(to_seq), "--out", str(path)]
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


# One database ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    entries: int
    memory_small: int
    rounds: int
    quick: bool
    hledger_memory: bool


def measure(kind: str, made: Databases, config: Config, directory: Path) -> dict[str, Any]:
    url = made.new_url("export")
    engine = ledger.create_engine(url)
    try:
        schema.upgrade(engine)
        _progress(f"{kind}: building {config.entries:,} entries")
        figures: dict[str, Any] = {"build": build(engine, config.entries)}
        _progress(
            f"{kind}: built in {figures['build']['seconds']:.0f} s; exporting "
            f"({config.rounds} round(s))"
        )
        n = config.entries
        paths = {
            "csv": directory / f"{kind}-ours.csv",
            "hledger": directory / f"{kind}-ours.journal",
            "limit": directory / f"{kind}-limit.csv",
        }

        def contender(name: str) -> Run:
            if name == "csv":
                return ours(engine, ExportFormat.CSV, n, paths[name])
            if name == "hledger":
                return ours(engine, ExportFormat.HLEDGER, n, paths[name])
            return limit(kind, url, n, paths[name])

        totals: dict[str, Run] = {}
        rounds: list[dict[str, float]] = []
        order = ["csv", "hledger", "limit"]
        for number in range(config.rounds):
            this_round = {}
            for name in order if number % 2 == 0 else list(reversed(order)):
                run = contender(name)
                _progress(f"{kind}: round {number + 1}, {name}: {run.seconds:.1f} s")
                totals[name] = totals[name] + run if name in totals else run
                this_round[name] = n / run.seconds
            rounds.append(this_round)
        figures["same_rows"] = same_rows(paths["csv"], paths["limit"], min(SAME_ROWS_CHECKED, n))
        for path in paths.values():
            path.unlink()
        limit_rate = n * config.rounds / totals["limit"].seconds
        for name in ("csv", "hledger", "limit"):
            total = totals[name]
            rate = n * config.rounds / total.seconds
            figure = {
                "entries_per_second": rate,
                "mb_per_second": total.bytes / 1e6 / total.seconds,
                "bytes": total.bytes // config.rounds,
                "seconds": total.seconds / config.rounds,
            }
            if name != "limit":
                figure["ratio"] = rate / limit_rate
            figures[name] = figure
        figures["rounds"] = rounds
        memory: dict[str, Any] = {}
        formats = [ExportFormat.CSV] + ([ExportFormat.HLEDGER] if config.hledger_memory else [])
        for export_format in formats:
            for entries in (config.memory_small, n):
                _progress(f"{kind}: peak RSS, {export_format.value}, {entries:,} entries")
                path = directory / f"{kind}-child.{export_format.value}"
                memory[f"{export_format.value}_{entries}"] = in_child(
                    url, export_format, entries, path
                )
        figures["memory"] = memory
        _progress(f"{kind}: done")
        return figures
    finally:
        engine.dispose()


def goals(results: dict[str, dict[str, Any]]) -> list[Goal]:
    return [
        Goal(
            kind, "csv.ratio", "CSV entries/s, ours/limit", ">=", CSV_GOAL, figures["csv"]["ratio"]
        )
        for kind, figures in results.items()
    ]


def table(kind: str, title: str, figures: dict[str, Any], config: Config, found: list[Goal]) -> str:
    rows: list[tuple[str, ...]] = [("measure", "entries/s", "MB/s", "MB", "s", "ratio", "goal")]
    verdict = {
        goal.measure: "PASS" if goal.passed else "MISS" for goal in found if goal.database == kind
    }
    labels = {
        "csv": "ours, CSV (UTF-8)",
        "hledger": "ours, hledger journal",
        "limit": "limit, plain SQL CSV",
    }
    for name, label in labels.items():
        figure = figures[name]
        ratio = f"{figure['ratio']:.2f}" if "ratio" in figure else ""
        goal = f">= {CSV_GOAL} {verdict['csv.ratio']}" if name == "csv" else ""
        rows.append(
            (
                label,
                f"{figure['entries_per_second']:,.0f}",
                f"{figure['mb_per_second']:.1f}",
                f"{figure['bytes'] / 1e6:,.0f}",
                f"{figure['seconds']:.1f}",
                ratio,
                goal,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    aligns = ("<", ">", ">", ">", ">", ">", "<")
    lines = [title]
    for row in rows:
        cells = [f"{c:{a}{w}}" for c, a, w in zip(row, aligns, widths, strict=True)]
        lines.append("  " + "  ".join(cells).rstrip())
    build_figures = figures["build"]
    lines.append(
        f"  build: {config.entries:,} entries posted in {build_figures['post_seconds']:.1f} s "
        f"({build_figures['post_entries_per_second']:,.0f}/s), sealed in "
        f"{build_figures['seal_seconds']:.1f} s ({build_figures['seal_entries_per_second']:,.0f}/s)"
    )
    lines.append(
        f"  first {min(SAME_ROWS_CHECKED, config.entries):,} posting rows of ours and the limit "
        f"identical: {'yes' if figures['same_rows'] else 'NO'}"
    )
    for key, figure in figures["memory"].items():
        export_format, entries = key.rsplit("_", 1)
        lines.append(
            f"  peak RSS, {export_format} export of {int(entries):,} entries in a fresh process: "
            f"{figure['peak_rss_kib'] / 1024:,.0f} MiB (after imports and connecting: "
            f"{figure['peak_rss_kib_before'] / 1024:,.0f} MiB; {figure['seconds']:.1f} s)"
        )
    return "\n".join(lines)


# The command -------------------------------------------------------------------------------


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench export",
        description="Exporting the sealed ledger as CSV and hledger through stream_export, "
        "against plain SQL writing the same CSV rows.",
    )
    parser.add_argument(
        "--entries", type=int, help=f"sealed entries to build and export ({ENTRIES:,})"
    )
    parser.add_argument(
        "--quick", action="store_true", help=f"{QUICK_ENTRIES:,} entries unless --entries"
    )
    parser.add_argument("--rounds", type=int, default=2, help="rounds, order alternating (2)")
    parser.add_argument(
        "--postgres", default=None, help=f"a server URL (${POSTGRES_ENV}, else {DEFAULT_POSTGRES})"
    )
    parser.add_argument("--sqlite-only", action="store_true", help="skip PostgreSQL")
    parser.add_argument(
        "--no-hledger-memory",
        action="store_true",
        help="measure the peak RSS of the CSV export only",
    )
    parser.add_argument("--child", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--format", default="csv", help=argparse.SUPPRESS)
    parser.add_argument("--to-seq", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    if args.child:
        return child(args.child, ExportFormat(args.format), args.to_seq, Path(args.out))
    entries = args.entries or (QUICK_ENTRIES if args.quick else ENTRIES)
    config = Config(
        entries=entries,
        memory_small=min(MEMORY_SMALL, max(1, entries // 10)),
        rounds=args.rounds,
        quick=args.quick,
        hledger_memory=not args.no_hledger_memory,
    )
    postgres_url = args.postgres or os.environ.get(POSTGRES_ENV) or DEFAULT_POSTGRES
    kinds = [SQLITE] if args.sqlite_only else [SQLITE, POSTGRESQL]
    started = time.perf_counter()
    load_before = os.getloadavg()
    results: dict[str, dict[str, Any]] = {}
    versions: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="bench_export_") as directory:
        for kind in kinds:
            with databases(kind, postgres_url) as made:
                versions[kind] = made.version()
                results[kind] = measure(kind, made, config, Path(directory))
    load_after = os.getloadavg()
    elapsed = time.perf_counter() - started
    found = goals(results)
    software = {"python": platform.python_version()}
    software |= {name: version(name) for name in ("sqlalchemy", "psycopg")}
    print(
        f"python -m bench export: {config.entries:,} sealed entries (2 postings each), "
        f"{config.rounds} round(s); {os.cpu_count()} cores, load average "
        f"{load_before[0]:.2f} before / {load_after[0]:.2f} after; {elapsed:.0f} s"
    )
    print("software: " + ", ".join(f"{name} {value}" for name, value in software.items()))
    for kind, figures in results.items():
        print()
        print(table(kind, versions[kind], figures, config, found))
    print()
    print(goal_summary(found))
    print(
        json_line(
            {
                "benchmark": "export",
                "quick": config.quick,
                "cpu_count": os.cpu_count(),
                "load_average_before": load_before,
                "load_average_after": load_after,
                "versions": software | versions,
                "config": config.__dict__,
                "results": results,
                "goals": [goal.as_json() for goal in found],
                "elapsed_seconds": elapsed,
            }
        )
    )
    return 0


def _progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)
