"""``python -m bench city``: how long ``points demo`` takes to seed the pilot city.

On each database (a fresh SQLite file, and a fresh PostgreSQL database on the server of
``--postgres`` or ``$POINTS_TEST_POSTGRES_URL``, dropped afterwards), migrated with the real
migrations: ``points.shell.city.seed_city`` with ``--residents`` (2,000 by default, as
``points demo``) and ``--seed``, timed from the claim of the city's record to its seal, with the
seeding's own clock at the real time (so the history ends today). The goal (issue 23): under a
minute on SQLite on a 2-core machine. Prints a table (seconds, ledger entries, payments,
awards), then one JSON line with every figure. Not a test: the tests seed a small city and time
nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from bench.databases import POSTGRESQL, SQLITE, databases
from ledger import Ledger
from ledger.service import system_clock
from points import keys
from points.shell import city, city_report

POSTGRES_ENV = "POINTS_TEST_POSTGRES_URL"
GOAL_SECONDS = 60.0
ORIGIN = "http://127.0.0.1:8000"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench city")
    parser.add_argument("--postgres", default=None, help=f"a server URL (or ${POSTGRES_ENV})")
    parser.add_argument("--only", choices=[SQLITE, POSTGRESQL], default=None)
    parser.add_argument("--residents", type=int, default=city.DEFAULT_RESIDENTS)
    parser.add_argument("--seed", type=int, default=city.DEFAULT_SEED)
    args = parser.parse_args(argv)
    postgres_url = args.postgres or os.environ.get(POSTGRES_ENV)
    kinds = [SQLITE] + ([POSTGRESQL] if postgres_url else [])
    if args.only:
        kinds = [args.only]
    results = []
    with tempfile.TemporaryDirectory(prefix="bench_city_keys_") as directory:
        keys.ensure_key(Path(directory), system_clock())
        ring = keys.KeyRing(Path(directory))
        for kind in kinds:
            with databases(kind, postgres_url) as made:
                engine = made.new_ledger_engine("city")
                try:
                    started = time.perf_counter()
                    city.seed_city(
                        engine,
                        ring,
                        ORIGIN,
                        clock=system_clock,
                        seed=args.seed,
                        residents=args.residents,
                    )
                    seconds = time.perf_counter() - started
                    figures = city_report.figures(engine)
                    verified = Ledger(engine).verify(unsealed_grace_seconds=0).ok
                    results.append(
                        {
                            "database": made.version(),
                            "residents": args.residents,
                            "seconds": round(seconds, 1),
                            "goal_seconds": GOAL_SECONDS,
                            "verified": verified,
                            **figures,
                        }
                    )
                finally:
                    engine.dispose()
    print(f"{'database':18} {'seconds':>8} {'entries':>8} {'payments':>9} {'awards':>7}  goal")
    for row in results:
        sqlite = str(row["database"]).startswith("SQLite")
        mark = ("PASS" if float(row["seconds"]) < GOAL_SECONDS else "MISS") if sqlite else "-"
        print(
            f"{str(row['database'])[:18]:18} {row['seconds']:>8} {row['entries']:>8,} "
            f"{row['payments']:>9,} {row['awards']:>7,}  {mark}"
        )
    print(json.dumps({"benchmark": "city", "results": results}))
    return 0
