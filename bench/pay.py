"""``python -m bench pay``: paying at shops through the HTTP API, against a bare endpoint.

On each database (a fresh SQLite file, and a fresh PostgreSQL database created and dropped on
the server of ``--postgres``, ``$POINTS_TEST_POSTGRES_URL`` or ``127.0.0.1:5432``):

1. **Seed** through the services the API uses (``points.people``, ``issuers.programs``,
   ``issuers.awards``, ``redemption.merchants``, ``points.access``): the point type ``pt``, a
   funded fixed-award program, ``--shops`` shops accepting ``pt`` with ``--tills`` tills each
   (a till's token), and one resident per client, with a token and points for the whole run.
2. **Serve**: a real ``points serve`` (its console script, its defaults: one worker, the
   scheduled jobs on, JSON logs at ``info`` to a file) and the bare endpoint
   (``bench.bare_endpoint``: the same uvicorn options, the same engine settings, one row
   inserted a request into a table of the same database), each on a free port of 127.0.0.1.
3. **Peak**: ``--clients`` threads, each with its own keep-alive connection (the standard
   library's ``http.client``, the lightest client at hand: the clients share the machine's
   cores with the server), run one of three measures as fast as they can
   (``bench.timing.measure``: warm-up, then a window of ``--seconds``), in ``--rounds`` rounds
   in alternating order (``bench.timing.interleaved``):

   - flow (a) *payment QR*: the till POSTs ``/api/v1/merchant/payment-requests``, the resident
     POSTs ``/api/v1/me/payments`` with the token (and an ``Idempotency-Key``): 2 requests;
   - flow (b) *pay code*: the resident POSTs ``/api/v1/me/pay-codes``, the till POSTs
     ``/api/v1/merchant/pay-code-payments`` with the token and the amount (and a key): 2;
   - the limit: ``POST /rows`` of the bare endpoint: 1 request, one row.

   Client ``i`` pays as resident ``i`` at till ``i mod tills`` (the tills taken shop by shop in
   turn), so that no two clients share a wallet and the shops share the load. Every answer is
   checked (201, ``posted``); at the end the payments in the database are counted against the
   ones the clients made.
4. **Half peak**: each flow again, the clients paced to half of that flow's measured peak
   payments/s together (each starts a payment every ``clients / rate`` seconds, at a random
   phase), for one window twice as long as a peak's (at half the rate, the same number of
   payments as a peak round, so that its p99 rests on a few hundred requests); a payment's
   first request is timed from the moment it was due, so a server falling behind shows in the
   latency instead of slowing the clients down.

Figures: payments/s, requests/s (every request a payment makes), and the p50 and p99 latency of
a request (and of a whole payment), from the requests started inside the measured windows. The
goals (issue 17): a flow's requests/s ≥ 0.5 × the bare endpoint's, and a request's p99 ≤ 100 ms
at half of the peak. A table per database, the goals with PASS/MISS, then one JSON line.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session

from bench import bare_endpoint
from bench.databases import POSTGRESQL, SQLITE, Databases, databases
from bench.report import Goal, goal_summary, json_line
from bench.timing import Rate, Worker, interleaved, measure
from issuers import awards, programs
from ledger.service import system_clock
from points import access, keys, people, pointtypes
from points.auth import Role
from points.calendar import fiscal_year, tokyo_date
from points.settings import DEVELOPMENT_PUBLIC_URL
from points.uow import unit_of_work
from redemption import merchants

POSTGRES_ENV = "POINTS_TEST_POSTGRES_URL"
DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
HOST = "127.0.0.1"
POINT_TYPE = "pt"
#: What each payment pays (under the pay code's limit of 5,000).
AMOUNT = 500
#: Each resident's points: more than any run pays.
WALLET_POINTS = 1_000_000_000
#: Goals (issue 17).
THROUGHPUT_GOAL = 0.5
P99_GOAL_MS = 100.0
#: A measured window starts when the clients pass their barrier; a request started this much
#: before the window's computed start (the clock readings of different threads) still counts.
WINDOW_SLACK = 0.005
SYSTEM = access.SYSTEM

PAYMENT_REQUESTS = "/api/v1/merchant/payment-requests"
PAYMENTS = "/api/v1/me/payments"
PAY_CODES = "/api/v1/me/pay-codes"
PAY_CODE_PAYMENTS = "/api/v1/merchant/pay-code-payments"
BARE_ROWS = "/rows"


@dataclass(frozen=True)
class Config:
    clients: int
    seconds: float
    warmup: float
    rounds: int
    shops: int
    tills: int
    log_level: str


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench pay",
        description="Payments/s and latency through a real `points serve`, against a bare "
        "endpoint inserting one row per request into the same database.",
    )
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients (16)")
    parser.add_argument("--seconds", type=float, default=5.0, help="each measured window (5)")
    parser.add_argument("--warmup", type=float, default=1.0, help="warm-up per window (1)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of the peak measures (2)")
    parser.add_argument(
        "--database", choices=["sqlite", "postgres", "both"], default="both", help="(both)"
    )
    parser.add_argument(
        "--postgres", default=None, help=f"a server URL (${POSTGRES_ENV}, else {DEFAULT_POSTGRES})"
    )
    parser.add_argument("--shops", type=int, default=4, help="shops accepting pt (4)")
    parser.add_argument("--tills", type=int, default=1, help="tills per shop (1)")
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="points serve --log-level (info, its default)",
    )
    args = parser.parse_args(argv)
    config = Config(
        args.clients, args.seconds, args.warmup, args.rounds, args.shops, args.tills, args.log_level
    )
    postgres_url = args.postgres or os.environ.get(POSTGRES_ENV) or DEFAULT_POSTGRES
    kinds = {"sqlite": [SQLITE], "postgres": [POSTGRESQL], "both": [SQLITE, POSTGRESQL]}
    started = time.perf_counter()
    load_before = os.getloadavg()
    results: dict[str, dict[str, Any]] = {}
    for kind in kinds[args.database]:
        with databases(kind, postgres_url) as made:
            results[kind] = {"version": made.version(), **_run(made, config)}
    all_goals = [goal for kind, figures in results.items() for goal in _goals(kind, figures)]
    print(
        f"\npython -m bench pay: {config.clients} clients, {config.shops} shops × "
        f"{config.tills} till(s), {config.rounds} round(s) × {config.seconds:g} s, "
        f"{os.cpu_count()} cores, load {load_before[0]:.1f} before / "
        f"{os.getloadavg()[0]:.1f} after, {time.perf_counter() - started:.0f} s"
    )
    for figures in results.values():
        print()
        print(_table(figures))
    print()
    print(goal_summary(all_goals))
    print(
        json_line(
            {
                "benchmark": "pay",
                "cpu_count": os.cpu_count(),
                "load_average_before": load_before,
                "config": config.__dict__,
                "results": results,
                "goals": [goal.as_json() for goal in all_goals],
            }
        )
    )
    return 0


def _progress(message: str) -> None:
    print(f"... {message}", flush=True)


# The world the clients pay in ---------------------------------------------------------------


@dataclass(frozen=True)
class Parties:
    """The bearer tokens: one resident per client, the tills shop by shop."""

    residents: list[str]
    tills: list[str]
    per_shop: int = 1

    def of(self, client: int) -> tuple[str, str]:
        """Client ``client``'s resident and till (consecutive clients at different shops)."""
        shops = len(self.tills) // self.per_shop
        shop, till = client % shops, (client // shops) % self.per_shop
        return self.residents[client], self.tills[shop * self.per_shop + till]


def _seed(engine: Engine, key_dir: Path, config: Config) -> Parties:
    """The city through the services the API uses (see the module docstring)."""
    now = system_clock()
    keys.ensure_key(key_dir, now)
    ring = keys.KeyRing(key_dir)
    year = fiscal_year(tokyo_date(now))

    def city(session: Session) -> str:
        point_type = pointtypes.create_point_type(
            session,
            SYSTEM,
            now,
            pointtypes.NewPointType(
                code=POINT_TYPE, name_ja="狛江ポイント", name_en="Komae points"
            ),
        )
        department = people.create_department(
            session, SYSTEM, now, code="bench", name_ja="計測課", name_en="Benchmarks"
        )
        session.flush()
        program = programs.create_program(
            session,
            SYSTEM,
            now,
            programs.NewProgram(
                department_id=department.id,
                point_type_id=point_type.id,
                module="fixed_award",
                name_ja="計測用付与",
                name_en="Benchmark award",
                amount=WALLET_POINTS,
                valid_from=date(year, 4, 1),
            ),
        )
        programs.change_status(
            session, SYSTEM, now, program.id, programs.ProgramStatus.ACTIVE, reason="bench"
        )
        programs.allocate(
            session, SYSTEM, now, program.id, year, WALLET_POINTS * config.clients, reason="bench"
        )
        return program.id

    def shop(session: Session, number: int) -> list[str]:
        merchant = people.create_merchant(
            session,
            SYSTEM,
            now,
            name_ja=f"計測商店{number}",
            name_en=f"Bench shop {number}",
            category="shop",
        )
        session.flush()
        merchants.change_settings(
            session,
            SYSTEM,
            now,
            merchant.id,
            merchants.SettingsChange(accepted_point_types=[POINT_TYPE]),
            reason="bench",
        )
        # Made on the shop's first payment otherwise: the run measures shops paid before.
        merchants.payable_account(
            session, merchant.id, pointtypes.find_point_type(session, POINT_TYPE), now
        )
        return [
            merchants.create_till(
                session,
                SYSTEM,
                now,
                merchant.id,
                f"レジ{till + 1}",
                keys=ring,
                origin=DEVELOPMENT_PUBLIC_URL,
            ).token.secret
            for till in range(config.tills)
        ]

    def resident(session: Session, program_id: str, number: int) -> str:
        made = people.create_resident(
            session,
            SYSTEM,
            now,
            name="計測 住民",
            address_number=f"9{number:09d}",
            birth_year=1980,
            verified=True,
        )
        session.flush()
        awards.award(
            session,
            SYSTEM,
            now,
            awards.AwardRequest(program_id, made.id, f"bench-{number}", {}),
            department_id=None,
        )
        return access.issue_token(
            session, SYSTEM, now, role=Role.RESIDENT, principal_id=made.id, label="bench"
        ).secret

    program_id = unit_of_work(engine, city)
    tills = unit_of_work(
        engine, lambda s: [token for n in range(config.shops) for token in shop(s, n)]
    )
    residents = unit_of_work(
        engine, lambda s: [resident(s, program_id, n) for n in range(config.clients)]
    )
    bare_endpoint.METADATA.create_all(engine)
    with engine.connect() as connection:
        connection.exec_driver_sql("ANALYZE")
        connection.commit()
    return Parties(residents, tills, per_shop=config.tills)


# The servers --------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


@contextmanager
def _served(name: str, command: list[str], env: dict[str, str], log: Path) -> Iterator[int]:
    """Run a server on a free port until the block ends (SIGTERM, as a deployment stops it);
    yields the port once ``GET /readyz`` answers 200."""
    port = _free_port()
    with log.open("wb") as output:
        process = subprocess.Popen(
            [*command, "--port", str(port)], env=env, stdout=output, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 60
        while not _ready(port):
            if process.poll() is not None or time.monotonic() > deadline:
                tail = log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{name} did not start (exit {process.poll()}):\n{tail}")
            time.sleep(0.1)
        yield port
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _ready(port: int) -> bool:
    connection = http.client.HTTPConnection(HOST, port, timeout=5)
    try:
        connection.request("GET", "/readyz")
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


def _server_env(database_url: str, key_dir: Path) -> dict[str, str]:
    """The environment of both servers: this one, with the database, the keys, the public
    origin the tokens were signed for, and the project first on the path (``bench`` is not an
    installed package, and the servers run the code of this checkout)."""
    root = str(Path(__file__).resolve().parent.parent)
    path = os.environ.get("PYTHONPATH")
    return {
        **os.environ,
        "POINTS_DATABASE_URL": database_url,
        "POINTS_KEY_DIR": str(key_dir),
        "POINTS_PUBLIC_URL": DEVELOPMENT_PUBLIC_URL,
        "POINTS_ENVIRONMENT": "development",
        "PYTHONPATH": root + (os.pathsep + path if path else ""),
    }


def _points_serve(log_level: str) -> list[str]:
    script = shutil.which("points", path=str(Path(sys.executable).parent))
    entry = [script] if script else [sys.executable, "-m", "points.shell.cli"]
    return [*entry, "serve", "--host", HOST, "--log-level", log_level]


# The clients --------------------------------------------------------------------------------


class Http:
    """One client's keep-alive connection; ``post`` returns the decoded 201 answer."""

    def __init__(self, port: int) -> None:
        self._connection = http.client.HTTPConnection(HOST, port, timeout=60)

    def post(self, path: str, body: dict[str, Any], headers: dict[str, str]) -> Any:
        self._connection.request(
            "POST",
            path,
            body=json.dumps(body).encode(),
            headers={"Content-Type": "application/json", **headers},
        )
        response = self._connection.getresponse()
        data = response.read()
        if response.status != 201:
            raise RuntimeError(f"POST {path}: {response.status} {data[:500].decode()}")
        return json.loads(data)

    def close(self) -> None:
        self._connection.close()


def _bearer(token: str, *, idempotent: bool = False) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {token}"}
    if idempotent:
        headers["Idempotency-Key"] = f"bench-{uuid.uuid4()}"
    return headers


def _posted(payment: Any) -> None:
    if payment.get("state") != "posted" or payment.get("amount") != AMOUNT:
        raise RuntimeError(f"the payment is not posted: {payment}")


#: One payment (or one bare request): the client's connection, its resident's token and its
#: till's; returns the time each of its requests ended (``time.perf_counter``).
Flow = Callable[[Http, str, str], list[float]]


def payment_qr(connection: Http, resident: str, till: str) -> list[float]:
    """Flow (a): the till shows a payment QR, the resident's wallet pays it."""
    request = connection.post(
        PAYMENT_REQUESTS, {"amount": AMOUNT, "reference": "bench"}, _bearer(till)
    )
    shown = time.perf_counter()
    _posted(
        connection.post(PAYMENTS, {"token": request["token"]}, _bearer(resident, idempotent=True))
    )
    return [shown, time.perf_counter()]


def pay_code(connection: Http, resident: str, till: str) -> list[float]:
    """Flow (b): the resident's wallet shows a pay code, the till scans it and keys the amount."""
    code = connection.post(PAY_CODES, {}, _bearer(resident))
    shown = time.perf_counter()
    _posted(
        connection.post(
            PAY_CODE_PAYMENTS,
            {"token": code["token"], "amount": AMOUNT, "reference": "bench"},
            _bearer(till, idempotent=True),
        )
    )
    return [shown, time.perf_counter()]


def bare_row(connection: Http, _resident: str, _till: str) -> list[float]:
    """The limit: one row inserted by the bare endpoint."""
    connection.post(BARE_ROWS, {"amount": AMOUNT, "reference": "bench"}, {})
    return [time.perf_counter()]


#: When an operation started (or was due) and when each of its requests ended.
Sample = tuple[float, list[float]]


@dataclass
class Tally:
    """What the measures of one flow gathered: the samples inside the measured windows, and
    how many operations the clients did in all (warm-ups included), to count in the database."""

    samples: list[Sample] = field(default_factory=list)
    operations: int = 0


def _worker(
    port: int, flow: Flow, parties: Parties, threads: list[list[Sample]], every: float | None
) -> Worker:
    """Thread ``i`` does ``flow`` as client ``i`` over its own connection, as fast as it can,
    or (``every`` seconds) one operation per slot, from a random phase; samples go to
    ``threads[i]``."""

    @contextmanager
    def worker(index: int) -> Iterator[Callable[[], int]]:
        connection = Http(port)
        resident, till = parties.of(index) if parties.residents else ("", "")
        mine = threads[index]
        due = time.perf_counter() + (random.random() * every if every else 0.0)

        def operation() -> int:
            nonlocal due
            if every is None:
                started = time.perf_counter()
            else:
                time.sleep(max(0.0, due - time.perf_counter()))
                started, due = due, due + every
            mine.append((started, flow(connection, resident, till)))
            return 1

        try:
            yield operation
        finally:
            connection.close()

    return worker


def _measured(
    port: int, flow: Flow, parties: Parties, config: Config, tally: Tally, every: float | None
) -> Callable[[], Rate]:
    """One measure of ``flow`` (``bench.timing.measure``) adding its samples to ``tally``."""

    def run() -> Rate:
        threads: list[list[Sample]] = [[] for _ in range(config.clients)]
        rate = measure(
            _worker(port, flow, parties, threads, every),
            threads=config.clients,
            seconds=config.seconds,
            warmup=config.warmup,
        )
        done = [sample for samples in threads for sample in samples]
        tally.operations += len(done)
        # measure() times from the barrier to the end of the last operation: the window.
        begin = max(ends[-1] for _, ends in done) - rate.seconds - WINDOW_SLACK
        tally.samples.extend(sample for sample in done if sample[0] >= begin)
        return rate

    return run


def _percentile(ordered: list[float], share: float) -> float:
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


def _figures(rate: Rate, samples: list[Sample]) -> dict[str, Any]:
    """Payments/s, requests/s, and the latency of a request and of a payment, in ms."""
    per_request: list[float] = []
    per_payment: list[float] = []
    for started, ends in samples:
        per_request.extend(end - begin for begin, end in zip([started, *ends], ends, strict=False))
        per_payment.append(ends[-1] - started)
    per_request.sort()
    per_payment.sort()
    requests_each = len(samples[0][1])
    return {
        "payments_per_second": rate.per_second,
        "requests_per_second": rate.per_second * requests_each,
        "p50_ms": _percentile(per_request, 0.5) * 1000,
        "p99_ms": _percentile(per_request, 0.99) * 1000,
        "payment_p50_ms": _percentile(per_payment, 0.5) * 1000,
        "payment_p99_ms": _percentile(per_payment, 0.99) * 1000,
        "operations": rate.units,
        "seconds": rate.seconds,
        "requests_timed": len(per_request),
    }


# One database -------------------------------------------------------------------------------

FLOWS: dict[str, Flow] = {"payment_qr": payment_qr, "pay_code": pay_code}


def _run(made: Databases, config: Config) -> dict[str, Any]:
    _progress(f"{made.kind}: seeding {config.clients} residents and {config.shops} shops")
    engine = made.new_ledger_engine("pay")
    database_url = engine.url.render_as_string(hide_password=False)
    with tempfile.TemporaryDirectory(prefix="bench_pay_") as scratch:
        directory = Path(scratch)
        log = directory / "points.log"
        try:
            parties = _seed(engine, directory / "keys", config)
            env = _server_env(database_url, directory / "keys")
            with (
                _served("points serve", _points_serve(config.log_level), env, log) as ours,
                _served(
                    "the bare endpoint",
                    [sys.executable, "-m", "bench.bare_endpoint", "--host", HOST],
                    env,
                    directory / "bare.log",
                ) as bare,
            ):
                figures = _measures(ours, bare, parties, config)
        except RuntimeError:
            print("points serve logged, last:", *_logged(log)[-10:], sep="\n  ", flush=True)
            raise
        finally:
            engine.dispose()
        figures["server_log"] = Counter(json.loads(line)["level"] for line in _logged(log))
        figures["check"] = _counted(engine, figures.pop("tallies"))
    return figures


def _measures(ours: int, bare: int, parties: Parties, config: Config) -> dict[str, Any]:
    tallies = {name: Tally() for name in [*FLOWS, "bare"]}
    contenders = {
        name: _measured(ours, flow, parties, config, tallies[name], None)
        for name, flow in FLOWS.items()
    }
    contenders["bare"] = _measured(bare, bare_row, Parties([], []), config, tallies["bare"], None)
    _progress(
        f"peak: flow (a), flow (b) and the bare endpoint, {config.clients} clients, "
        f"{config.rounds} round(s) of {config.seconds:g} s each"
    )
    rates = interleaved(contenders, rounds=config.rounds)
    peak = {name: _figures(rates[name], tallies[name].samples) for name in contenders}
    figures: dict[str, Any] = {"bare": peak["bare"]}
    for name, flow in FLOWS.items():
        target = peak[name]["payments_per_second"] / 2
        _progress(f"half peak: {name} at {target:,.0f} payments/s")
        paced = Tally()
        longer = replace(config, seconds=config.seconds * 2)
        rate = _measured(ours, flow, parties, longer, paced, config.clients / target)()
        tallies[name].operations += paced.operations
        figures[name] = {
            "peak": peak[name],
            "ratio_to_bare": peak[name]["requests_per_second"]
            / peak["bare"]["requests_per_second"],
            "half_peak": {"target_payments_per_second": target, **_figures(rate, paced.samples)},
        }
    figures["tallies"] = {name: tally.operations for name, tally in tallies.items()}
    return figures


def _logged(log: Path) -> list[str]:
    """The lines of the server's log at level warning and above."""
    return [
        line
        for line in log.read_text(errors="replace").splitlines()
        if line.startswith("{")
        and json.loads(line).get("level") in ("warning", "error", "critical")
    ]


def _counted(engine: Engine, tallies: dict[str, int]) -> dict[str, Any]:
    """The payments and bare rows in the database, against what the clients were told."""
    with engine.connect() as connection:
        rows = connection.execute(sa.text("SELECT flow, COUNT(*) FROM payment GROUP BY flow"))
        in_database: Counter[str] = Counter({str(flow): int(count) for flow, count in rows})
        in_database["bare"] = connection.execute(
            sa.select(sa.func.count()).select_from(bare_endpoint.ROWS)
        ).scalar_one()
    for name, made in tallies.items():
        if in_database[name] != made:
            raise RuntimeError(f"{name}: the clients made {made}, the database holds {in_database}")
    return {"rows_match": True, **tallies}


# The report ---------------------------------------------------------------------------------


def _goals(kind: str, figures: dict[str, Any]) -> list[Goal]:
    found = []
    for name, label in (("payment_qr", "flow (a)"), ("pay_code", "flow (b)")):
        flow = figures[name]
        found.append(
            Goal(
                kind,
                f"{name}.ratio_to_bare",
                f"requests/s vs bare, {label}",
                ">=",
                THROUGHPUT_GOAL,
                flow["ratio_to_bare"],
            )
        )
        found.append(
            Goal(
                kind,
                f"{name}.half_peak.p99_ms",
                f"p99 ms at half peak, {label}",
                "<=",
                P99_GOAL_MS,
                flow["half_peak"]["p99_ms"],
            )
        )
    return found


def _table(figures: dict[str, Any]) -> str:
    header = (
        "measure",
        "payments/s",
        "requests/s",
        "p50 ms",
        "p99 ms",
        "payment p99",
        "requests timed",
        "vs bare",
    )
    rows: list[tuple[str, ...]] = [header]

    def add(
        label: str, measured: dict[str, Any], ratio: str = "", *, payments: bool = True
    ) -> None:
        rows.append(
            (
                label,
                f"{measured['payments_per_second']:,.0f}" if payments else "-",
                f"{measured['requests_per_second']:,.0f}",
                f"{measured['p50_ms']:.1f}",
                f"{measured['p99_ms']:.1f}",
                f"{measured['payment_p99_ms']:.1f}",
                f"{measured['requests_timed']:,}",
                ratio,
            )
        )

    for name, label in (("payment_qr", "flow (a) payment QR"), ("pay_code", "flow (b) pay code")):
        flow = figures[name]
        add(f"{label}, peak", flow["peak"], f"{flow['ratio_to_bare']:.2f}")
        add(f"{label}, half peak", flow["half_peak"])
    add("bare endpoint, one row a request (the limit)", figures["bare"], payments=False)
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    logged = ", ".join(f"{count} {level}" for level, count in figures["server_log"].items())
    lines = [f"{figures['version']}; points serve logged {logged or 'no warning or error'}"]
    for row in rows:
        cells = [row[0].ljust(widths[0])] + [
            cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)
        ]
        lines.append("  " + "  ".join(cells))
    return "\n".join(lines)
