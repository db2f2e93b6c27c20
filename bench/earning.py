"""``python -m bench expiry`` and ``python -m bench award``: the bulk paths of earning, measured.

**expiry**: expire N buckets (default 1,000,000: 100,000 residents × 10 expiry dates) with
``points.expiry.expire``, against *the limit*: plain SQL writing the same rows in the same
chunks into an identical database (per chunk of 1,008 buckets, one transaction: the same
candidate query, then the entries (one per 63 buckets), their postings, the seal-queue rows and
the total updates; prepared statements with ``executemany`` on SQLite, one set-based statement
per table on PostgreSQL). Both databases are ANALYZEd after the setup. Goal: ≤ 3 × the
limit, and under 60 s on PostgreSQL.

**award**: a CSV file of N rows (default 100,000 residents, one health checkup each) through
``issuers.bulk.upload`` (check, set-aside, batches, settle), against the ledger's own batched
posting rate measured in the same run (``LedgerTx.post_batch`` of N two-posting entries in
batches of 2,000). Goal: rows/s ≥ 0.5 × entries/s.

The state the runs start from (residents, wallets, bucket accounts holding points) is written
with plain SQL before any clock starts: the benchmarks measure the bulk paths, not the setup.
Both print a table, then one JSON line with every figure. ``--postgres URL`` (or
``POINTS_TEST_POSTGRES_URL``) adds PostgreSQL; ``--only sqlite|postgresql``; ``--size N``.

``--rounds N`` (award: 3 by default, expiry: 1) runs N rounds on fresh databases, ours and the
reference alternating, and counts each side's best round; every round's figure is printed too.
On this machine the same run's speed drifts by up to a fifth from one minute to the next, for
both sides alike: one round of each can land ours in a slow minute and the reference in a fast
one. The best of three of each is what the code does when the machine does not get in the way.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from datetime import UTC, date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from bench.databases import POSTGRESQL, SQLITE, databases
from issuers import bulk, programs
from ledger import BatchMode, Ledger, LedgerTx, NewEntry, Posting, Side
from ledger.model import to_us
from points import access, expiry, people, pointtypes
from points.accounts import ACCOUNT_RULES, AccountCode
from points.calendar import start_of_day, tokyo_date
from points.uow import unit_of_work

POSTGRES_ENV = "POINTS_TEST_POSTGRES_URL"
NOW = datetime(2026, 5, 10, 3, 0, tzinfo=UTC)
SYSTEM = access.SYSTEM
BUCKETS_PER_RESIDENT = 10
POINTS_PER_BUCKET = 100
#: The expiry run is as of this day: every bucket of the setup has expired by then.
EXPIRE_AS_OF = start_of_day(date(2027, 1, 1))


def main_expiry(argv: list[str] | None = None) -> int:
    return _main("expiry", argv, 1_000_000, 1)


def main_award(argv: list[str] | None = None) -> int:
    return _main("award", argv, 100_000, 3)


def _main(name: str, argv: list[str] | None, default_size: int, default_rounds: int) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m bench {name}")
    parser.add_argument("--postgres", default=None, help=f"a server URL (or ${POSTGRES_ENV})")
    parser.add_argument("--only", choices=[SQLITE, POSTGRESQL], default=None)
    parser.add_argument("--size", type=int, default=default_size)
    parser.add_argument(
        "--rounds",
        type=int,
        default=default_rounds,
        help="rounds on fresh databases, ours and the reference alternating; each side's best "
        f"round counts (default {default_rounds})",
    )
    args = parser.parse_args(argv)
    postgres_url = args.postgres or os.environ.get(POSTGRES_ENV)
    kinds = [SQLITE] + ([POSTGRESQL] if postgres_url else [])
    if args.only:
        kinds = [kind for kind in kinds if kind == args.only]
    started = time.perf_counter()
    load_before = os.getloadavg()
    results: dict[str, Any] = {}
    for kind in kinds:
        with databases(kind, postgres_url) as made:
            run = _expiry_run if name == "expiry" else _award_run
            results[kind] = {"version": made.version(), **run(made, args.size, args.rounds)}
    print(
        f"python -m bench {name}, size {args.size:,}, {os.cpu_count()} cores, load "
        f"{load_before[0]:.1f} before / {os.getloadavg()[0]:.1f} after"
    )
    for figures in results.values():
        print(f"\n{figures['version']}")
        for key, value in figures.items():
            if key != "version":
                if isinstance(value, list):
                    print(f"  {key:38} {', '.join(f'{item:,}' for item in value)}")
                elif isinstance(value, float):
                    print(f"  {key:38} {value:>14,.2f}")
                else:
                    print(f"  {key:38} {value:>14,}")
    print(f"\nRun time: {time.perf_counter() - started:.0f} s")
    print(
        json.dumps(
            {
                "benchmark": name,
                "size": args.size,
                "cpu_count": os.cpu_count(),
                "load_average_before": load_before,
                "results": results,
            }
        )
    )
    return 0


def _progress(message: str) -> None:
    print(f"... {message}", flush=True)


# The world the runs start from ------------------------------------------------------------


def _program(engine: Engine, budget: int) -> tuple[pointtypes.PointType, programs.Program]:
    def work(session: Any) -> tuple[pointtypes.PointType, programs.Program]:
        department = people.create_department(
            session, SYSTEM, NOW, code="health", name_ja="健康推進課", name_en="Health"
        )
        point_type = pointtypes.create_point_type(
            session,
            SYSTEM,
            NOW,
            pointtypes.NewPointType(code="pt", name_ja="ポイント", name_en="points"),
        )
        session.flush()
        program = programs.create_program(
            session,
            SYSTEM,
            NOW,
            programs.NewProgram(
                department_id=department.id,
                point_type_id=point_type.id,
                module="health_checkup",
                name_ja="健診",
                name_en="Checkup",
                amount=POINTS_PER_BUCKET,
                valid_from=date(2026, 4, 1),
                config={"checkup_types": ["specific_health_checkup"]},
            ),
        )
        programs.change_status(
            session, SYSTEM, NOW, program.id, programs.ProgramStatus.ACTIVE, reason="bench"
        )
        programs.allocate(session, SYSTEM, NOW, program.id, 2026, budget, reason="bench")
        return point_type, program

    return unit_of_work(engine, work)


def _residents(engine: Engine, count: int) -> list[str]:
    """``res_bench000000000000`` and on, active."""
    ids = [f"res_bench{i:012d}" for i in range(count)]
    rows = [
        {
            "id": i,
            "verification": "self_enrolled",
            "status": "active",
            "created_at": NOW,
            "updated_at": NOW,
        }
        for i in ids
    ]
    from points.registry import Resident  # noqa: PLC0415

    with engine.begin() as connection:
        for start in range(0, len(rows), 10_000):
            connection.execute(sa.insert(Resident.__table__), rows[start : start + 10_000])
    return ids


def _buckets(engine: Engine, point_type: Any, program: Any, residents: list[str]) -> None:
    """Wallets and BUCKETS_PER_RESIDENT bucket accounts per resident, each holding points (the
    totals as awards would have left them), valid until dates in 2026."""
    from points.wallets import Wallet, WalletBucket  # noqa: PLC0415

    side, flags = ACCOUNT_RULES[AccountCode.RESIDENT_BUCKET]
    with engine.begin() as connection:
        tx = LedgerTx(connection, lambda: NOW)
        connection.execute(
            sa.insert(Wallet.__table__),
            [
                {
                    "resident_id": r,
                    "point_type_id": point_type.id,
                    "status": "open",
                    "created_at": NOW,
                }
                for r in residents
            ],
        )
        for start in range(0, len(residents), 5_000):
            part = residents[start : start + 5_000]
            owners = [r for r in part for _ in range(BUCKETS_PER_RESIDENT)]
            ids = tx.create_accounts(
                ledger_id=point_type.ledger_id,
                code=int(AccountCode.RESIDENT_BUCKET),
                normal_side=side,
                owner_refs=owners,
                flags=flags,
            )
            connection.execute(
                sa.update(sa.table("ledger_account", sa.column("id"), sa.column("credits_posted")))
                .where(sa.column("id").between(min(ids), max(ids)))
                .values(credits_posted=POINTS_PER_BUCKET)
            )
            connection.execute(
                sa.insert(WalletBucket.__table__),
                [
                    {
                        "account_id": account_id,
                        "resident_id": owner,
                        "point_type_id": point_type.id,
                        "program_id": program.id,
                        "valid_until": date(2026, 6, 30) + timedelta(days=10 * (n % 10)),
                    }
                    for n, (account_id, owner) in enumerate(zip(ids, owners, strict=True))
                ],
            )


def _expiry_world(made: Any, label: str, size: int) -> tuple[Engine, Any]:
    engine = made.new_ledger_engine(label)
    point_type, program = _program(engine, 1_000)
    residents = _residents(engine, size // BUCKETS_PER_RESIDENT)
    _buckets(engine, point_type, program, residents)
    _analyze(engine)
    return engine, point_type


def _analyze(engine: Engine) -> None:
    """Planner statistics for the freshly loaded tables, as a server in use has them
    (autovacuum would analyze them a minute later, in the middle of a run)."""
    with engine.connect() as connection:
        connection.exec_driver_sql("ANALYZE")
        connection.commit()


# expiry -----------------------------------------------------------------------------------


def _expiry_run(made: Any, size: int, rounds: int) -> dict[str, Any]:
    """``rounds`` rounds (see ``_award_run``): ours, then the limit, on fresh databases."""
    ours: list[float] = []
    limits: list[float] = []
    entries = 0
    for round_ in range(1, rounds + 1):
        _progress(f"{made.kind}, round {round_} of {rounds}: setting up {size:,} buckets, twice")
        ours_engine, _point_type = _expiry_world(made, f"expiry_ours_{round_}", size)
        limit_engine, limit_type = _expiry_world(made, f"expiry_limit_{round_}", size)
        try:
            _progress(f"{made.kind}, round {round_}: expiring through points.expiry")
            started = time.perf_counter()
            counts = expiry.expire(ours_engine, EXPIRE_AS_OF)
            ours.append(time.perf_counter() - started)
            assert counts.buckets == size, counts
            entries = counts.entries
            _progress(f"{made.kind}, round {round_}: expiring with plain SQL (the limit)")
            started = time.perf_counter()
            limit_buckets = _plain_expiry(limit_engine, limit_type.expired_account_id)
            limits.append(time.perf_counter() - started)
            assert limit_buckets == size
        finally:
            ours_engine.dispose()
            limit_engine.dispose()
        made.drop_all()
    return {
        "buckets": size,
        "entries": entries,
        "rounds": rounds,
        "ours_seconds": min(ours),
        "limit_seconds": min(limits),
        "ratio_to_limit": min(ours) / min(limits),
        "buckets_per_second": size / min(ours),
        "ours_seconds_each_round": [round(seconds, 1) for seconds in ours],
        "limit_seconds_each_round": [round(seconds, 1) for seconds in limits],
    }


def _plain_expiry(engine: Engine, expired_account_id: int) -> int:
    """The same rows, chunk by chunk, by plain statements through the driver: on SQLite
    prepared statements run with ``executemany``; on PostgreSQL one set-based statement per
    table and chunk (``unnest`` over arrays), the fastest way each database offers."""
    sqlite = engine.dialect.name == "sqlite"
    p = "?" if sqlite else "%s"
    cutoff = tokyo_date(EXPIRE_AS_OF).isoformat() if sqlite else tokyo_date(EXPIRE_AS_OF)
    select = (
        "SELECT a.id, a.credits_posted - a.debits_posted FROM wallet_bucket b "
        "JOIN ledger_account a ON a.id = b.account_id "
        f"WHERE b.valid_until < {p} AND b.account_id > {p} AND a.id > {p} "
        "AND a.credits_posted > a.debits_posted AND a.debits_pending = 0 "
        f"ORDER BY a.id LIMIT {expiry.CHUNK}" + ("" if sqlite else " FOR UPDATE OF a")
    )
    with engine.connect() as looking:
        ledger_id = int(
            looking.execute(
                sa.text("SELECT ledger_id FROM ledger_account WHERE id = :id"),
                {"id": expired_account_id},
            ).scalar_one()
        )
    raw = engine.raw_connection()
    connection = raw.driver_connection
    metadata = json.dumps({"expired_before": tokyo_date(EXPIRE_AS_OF).isoformat()})
    write = _plain_expiry_sqlite if sqlite else _plain_expiry_postgresql
    after = total = 0
    try:
        while True:
            cursor = connection.cursor()
            if sqlite:
                cursor.execute("BEGIN IMMEDIATE")
            cursor.execute(
                f"SELECT id FROM ledger_account WHERE id = {p}" + ("" if sqlite else " FOR UPDATE"),
                (expired_account_id,),
            )
            cursor.execute(select, (cutoff, after, after))
            rows = cursor.fetchall()
            if not rows:
                connection.rollback() if not sqlite else cursor.execute("ROLLBACK")
                break
            parts = [rows[start : start + 63] for start in range(0, len(rows), 63)]
            write(cursor, parts, ledger_id, expired_account_id, metadata)
            if sqlite:
                cursor.execute("COMMIT")
            else:
                connection.commit()
            after = rows[-1][0]
            total += len(rows)
    finally:
        raw.close()
    return total


def _plain_expiry_sqlite(
    cursor: Any, parts: list[list[Any]], ledger_id: int, expired_id: int, metadata: str
) -> None:
    now_us = time.time_ns() // 1000
    for part in parts:
        amount = sum(int(r[1]) for r in part)
        cursor.execute(
            "INSERT INTO ledger_entry (ledger_id, phase, kind, description, metadata, "
            "effective_at_us, recorded_at_us) VALUES (?, 0, 'expiry', 'expired', ?, ?, ?) "
            "RETURNING id",
            (ledger_id, metadata, to_us(EXPIRE_AS_OF), now_us),
        )
        entry_id = cursor.fetchone()[0]
        cursor.executemany(
            "INSERT INTO ledger_posting (entry_id, ledger_id, account_id, side, amount) "
            "VALUES (?, ?, ?, ?, ?)",
            [(entry_id, ledger_id, r[0], 1, int(r[1])) for r in part]
            + [(entry_id, ledger_id, expired_id, 2, amount)],
        )
        cursor.executemany(
            "UPDATE ledger_account SET debits_posted = debits_posted + ? WHERE id = ?",
            [(int(r[1]), r[0]) for r in part],
        )
        cursor.execute(
            "UPDATE ledger_account SET credits_posted = credits_posted + ? WHERE id = ?",
            (amount, expired_id),
        )
        cursor.execute("INSERT INTO ledger_unsealed (entry_id) VALUES (?)", (entry_id,))


def _plain_expiry_postgresql(
    cursor: Any, parts: list[list[Any]], ledger_id: int, expired_id: int, metadata: str
) -> None:
    now_us = time.time_ns() // 1000
    cursor.execute(
        "SELECT nextval(pg_get_serial_sequence('ledger_entry', 'id')) FROM generate_series(1, %s)",
        (len(parts),),
    )
    ids = [row[0] for row in cursor.fetchall()]
    cursor.execute(
        "INSERT INTO ledger_entry (id, ledger_id, phase, kind, description, metadata, "
        "effective_at_us, recorded_at_us) SELECT id, %s, 0, 'expiry', 'expired', %s, %s, %s "
        "FROM unnest(%s::bigint[]) AS id",
        (ledger_id, metadata, to_us(EXPIRE_AS_OF), now_us, ids),
    )
    entries: list[int] = []
    accounts: list[int] = []
    sides: list[int] = []
    amounts: list[int] = []
    for entry_id, part in zip(ids, parts, strict=True):
        debits = [(int(account_id), int(remaining)) for account_id, remaining in part]
        for account_id, remaining in debits:
            entries.append(entry_id)
            accounts.append(account_id)
            sides.append(1)
            amounts.append(remaining)
        entries.append(entry_id)
        accounts.append(expired_id)
        sides.append(2)
        amounts.append(sum(remaining for _, remaining in debits))
    cursor.execute(
        "INSERT INTO ledger_posting (entry_id, ledger_id, account_id, side, amount) "
        "SELECT e, %s, a, s, x FROM unnest(%s::bigint[], %s::bigint[], %s::smallint[], "
        "%s::bigint[]) AS p(e, a, s, x)",
        (ledger_id, entries, accounts, sides, amounts),
    )
    cursor.execute("INSERT INTO ledger_unsealed (entry_id) SELECT unnest(%s::bigint[])", (ids,))
    buckets = [(a, x) for a, s, x in zip(accounts, sides, amounts, strict=True) if s == 1]
    cursor.execute(
        "UPDATE ledger_account AS a SET debits_posted = a.debits_posted + d.x "
        "FROM unnest(%s::bigint[], %s::bigint[]) AS d(id, x) WHERE a.id = d.id",
        ([a for a, _ in buckets], [x for _, x in buckets]),
    )
    cursor.execute(
        "UPDATE ledger_account SET credits_posted = credits_posted + %s WHERE id = %s",
        (sum(x for _, x in buckets), expired_id),
    )


# award ------------------------------------------------------------------------------------


def _award_run(made: Any, size: int, rounds: int) -> dict[str, Any]:
    """``rounds`` rounds, each on fresh databases: our upload, then the ledger's batches. The
    figures are each side's best round (the machine's speed drifts by a fifth from minute to
    minute here; alternating the two sides lets both meet the same drift)."""
    lines = ["resident_id,record_id,checkup_type"] + [
        f"res_bench{n:012d},HC-{n:07d},specific_health_checkup" for n in range(size)
    ]
    data = ("\r\n".join(lines) + "\r\n").encode("utf-8")
    uploads: list[float] = []
    ledger_rates: list[float] = []
    for round_ in range(1, rounds + 1):
        _progress(f"{made.kind}, round {round_} of {rounds}: setting up {size:,} residents")
        engine = made.new_ledger_engine(f"award_ours_{round_}")
        _point_type, program = _program(engine, POINTS_PER_BUCKET * size)
        _residents(engine, size)
        base_engine = made.new_ledger_engine(f"award_ledger_{round_}")
        try:
            _progress(f"{made.kind}, round {round_}: uploading the file through issuers.bulk")
            started = time.perf_counter()
            result = bulk.upload(engine, SYSTEM, lambda: NOW, program.id, data, department_id=None)
            uploads.append(time.perf_counter() - started)
            assert result.upload.awarded == size, result.upload
            _progress(f"{made.kind}, round {round_}: the ledger's batched posting rate")
            ledger_rates.append(_ledger_batch_rate(base_engine, size))
        finally:
            engine.dispose()
            base_engine.dispose()
        made.drop_all()
    rows_per_second = size / min(uploads)
    ledger_rate = max(ledger_rates)
    return {
        "rows": size,
        "rounds": rounds,
        "upload_seconds": min(uploads),
        "rows_per_second": rows_per_second,
        "ledger_entries_per_second": ledger_rate,
        "ratio_to_ledger_batches": rows_per_second / ledger_rate,
        "rows_per_second_each_round": [round(size / seconds) for seconds in uploads],
        "ledger_entries_per_second_each_round": [round(rate) for rate in ledger_rates],
    }


def _ledger_batch_rate(engine: Engine, size: int) -> float:
    """Entries/s of ``post_batch`` (2,000 per transaction): budget -> a wallet each."""
    book = Ledger(engine, clock=lambda: NOW)
    info = book.create_ledger("bench", "bench")
    side, flags = ACCOUNT_RULES[AccountCode.RESIDENT_BUCKET]
    source = book.create_account(ledger_id=info.id, code=100, normal_side=Side.DEBIT)
    targets = book.transaction(
        lambda tx: tx.create_accounts(
            ledger_id=info.id, code=300, normal_side=side, owner_refs=[None] * size, flags=flags
        )
    )
    batches = [
        [
            NewEntry(
                [
                    Posting(source.id, Side.DEBIT, POINTS_PER_BUCKET),
                    Posting(target, Side.CREDIT, POINTS_PER_BUCKET),
                ],
                kind="award",
                namespace="bench",
                idempotency_key=f"HC-{start + n:07d}",
            )
            for n, target in enumerate(targets[start : start + 2_000])
        ]
        for start in range(0, size, 2_000)
    ]
    started = time.perf_counter()
    for batch in batches:
        book.post_batch(batch, BatchMode.ATOMIC)
    return size / (time.perf_counter() - started)
