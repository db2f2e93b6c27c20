"""The ``points`` command: settings, database and services wired by the application shell.

::

    points db upgrade          take the database to the latest schema
    points db current          print the schema revision
    points verify              recompute and check everything; exit 1 naming the first problem
    points seal                seal every committed entry not sealed yet
    points purge               delete expired idempotency records and rate-limit windows
    points demo [--seed --residents --no-serve]   seed the pilot city, print ways in, serve
    points ledger demo         a few accounts and entries on the configured database
    points serve               the HTTP API (uvicorn)
    points admin create-staff  add a member of staff (the first admin, for example)
    points admin create-token  print a new token for a principal, once
    points types create|list|delete   point types (a ledger and its policy)
    points jobs run NAME [--as-of]    run one scheduled job by hand (recorded like any run)
    points jobs list           the latest job runs
    points expire [--as-of DATE] [--dry-run] [--force]   expire buckets by hand
    points award --program P --csv FILE [--check]   award every row of a CSV file
    points keys init|rotate|retire KID [--force]|list [--json]   the QR signing keys
    points export --format F (--from-seq N --to-seq M | --from DATE --to DATE) --out FILE
    points verify-export FILE  re-walk the seal chain of an export, without the database

Over 600 lines because it is every command's option parsing and output, and nothing else: the
work is done by the services it calls.
"""

from __future__ import annotations

import getpass
import json
import os
import signal
import sys
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import click
import uvicorn
from pydantic import ValidationError
from sqlalchemy.engine import Engine
from sqlmodel import Session

from api.logs import configure_logging
from issuers import bulk
from ledger import Ledger
from ledger import export as ledger_export
from ledger.errors import LedgerError
from ledger.service import system_clock
from points import access, db, expiry, exports, idempotency, keys, people, pointtypes, ratelimit
from points.auth import Principal, Role
from points.calendar import start_of_day
from points.errors import AlreadyDone, PointsError, RunningElsewhere
from points.jobs import JOBS, list_runs, run_job
from points.registry import StaffRole
from points.settings import Settings
from points.shell import city, city_report, schema
from points.shell.city import DEFAULT_RESIDENTS, DEFAULT_SEED, RESIDENTS_MAX, RESIDENTS_MIN
from points.shell.ledger_demo import run_demo
from points.shell.scheduler import job_options, start_scheduler
from points.uow import unit_of_work
from points.verification import verify_and_record
from redemption import merchants, settlement
from redemption.settlement_models import RunTrigger

T = TypeVar("T")


def _settings(**overrides: Any) -> Settings:
    """The settings (``overrides`` before the environment); a bad value is a one-line message
    per problem and exit status 1."""
    try:
        return Settings(**overrides)
    except ValidationError as error:
        problems = "; ".join(
            problem["msg"].removeprefix("Value error, ") for problem in error.errors()
        )
        raise click.ClickException(f"invalid settings: {problems}") from error


def _engine(settings: Settings) -> Engine:
    """An engine that is disposed of (its connections closed) when the command ends."""
    engine = db.make_engine(settings)
    click.get_current_context().call_on_close(engine.dispose)
    return engine


def _explained(action: Callable[[], T]) -> T:
    """Run ``action``; a domain error becomes a one-line message and exit status 1."""
    try:
        return action()
    except (PointsError, LedgerError) as error:
        raise click.ClickException(error.message) from error


@click.group()
@click.version_option(package_name="komae-points")
def main() -> None:
    """Local digital points: a double-entry ledger for a city's point programs."""


@main.group("db")
def db_group() -> None:
    """Database schema."""


@db_group.command("upgrade")
@click.option("--revision", default="head", show_default=True)
def db_upgrade(revision: str) -> None:
    """Take the database (an empty one is fine) to the latest schema."""
    settings = _settings()
    engine = _engine(settings)
    schema.upgrade(engine, revision)
    click.echo(f"database at {db.current_revision(engine)} ({engine.url.render_as_string()})")


@db_group.command("current")
def db_current() -> None:
    """Print the database's schema revision and whether it is the latest."""
    engine = _engine(_settings())
    current = db.current_revision(engine)
    head = db.head_revision()
    click.echo(f"{current or '(empty)'}{'' if current == head else f' (latest is {head})'}")


@main.command("verify")
@click.option(
    "--grace-seconds",
    type=click.IntRange(0, 86_400),
    default=None,
    help="Report entries committed longer ago than this and still not sealed.",
)
def verify_command(grace_seconds: int | None) -> None:
    """Recompute every total from the postings, check every entry balances, re-walk the seal
    chain and check the schema's guards. Exit 1 naming the first problem."""
    settings = _settings()
    ledger = Ledger(_engine(settings))
    report, _run = verify_and_record(
        ledger,
        unsealed_grace_seconds=(
            settings.unsealed_grace_seconds if grace_seconds is None else grace_seconds
        ),
    )
    click.echo(
        f"checked {report.entries} entries, {report.accounts} accounts, "
        f"{report.sealed} seals ({report.unsealed} unsealed)"
    )
    if report.ok:
        click.echo("ledger verified: no problems")
        return
    for problem in report.problems:
        click.echo(f"PROBLEM [{problem.kind}] {problem.message}", err=True)
    click.echo(f"first problem: {report.problems[0].message}", err=True)
    sys.exit(1)


@main.command("seal")
def seal_command() -> None:
    """Seal every committed entry that is not sealed yet."""
    ledger = Ledger(_engine(_settings()))
    click.echo(f"sealed {ledger.seal()} entries")


@main.command("purge")
def purge_command() -> None:
    """Delete idempotency records past their retention and rate-limit windows older than a day
    (the job scheduler runs this daily; it is safe to run at any time)."""
    settings = _settings()
    engine = _engine(settings)
    now = system_clock()
    records = idempotency.purge(
        engine, before=now - timedelta(hours=settings.idempotency_retention_hours)
    )
    windows = ratelimit.purge(engine, before=now - timedelta(days=1))
    click.echo(f"purged {records} idempotency records and {windows} rate-limit windows")


@main.command("demo")
@click.option(
    "--seed", type=int, default=DEFAULT_SEED, show_default=True, help="The city's random seed."
)
@click.option(
    "--residents",
    type=click.IntRange(RESIDENTS_MIN, RESIDENTS_MAX),
    default=DEFAULT_RESIDENTS,
    show_default=True,
    help="How many residents (a smaller city seeds faster).",
)
@click.option("--no-serve", is_flag=True, help="Seed and print, but do not serve.")
@click.option("--host", default="127.0.0.1", show_default=True, help="The address to serve on.")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
def demo_command(seed: int, residents: int, no_serve: bool, host: str, port: int) -> None:
    """Seed the pilot city (a year of history; points.shell.city) on the configured database,
    print it and a one-time way in for each role, then serve the API and the apps until Ctrl-C.
    Run again, it adds nothing (the city is the first run's) and prints new ways in.

    The URLs printed and the QR codes signed are for POINTS_PUBLIC_URL; when it is not set, for
    http://HOST:PORT (with --host 0.0.0.0, set POINTS_PUBLIC_URL to the address phones reach)."""
    origin_given = demo_origin(host, port, os.environ)
    if host in WILDCARD_HOSTS and not os.environ.get("POINTS_PUBLIC_URL"):
        click.echo(
            f"serving on {host}: set POINTS_PUBLIC_URL to the address phones and PCs open "
            "(http://192.168.1.20:8000, say), or their QR codes will not work",
            err=True,
        )
    settings = _settings() if origin_given is None else _settings(public_url=origin_given)
    engine = _engine(settings)
    schema.upgrade(engine)
    _signing_key_ready(settings)
    ring = keys.KeyRing(settings.key_dir)
    origin = settings.public_origin

    def progress(month: str) -> None:
        click.echo(f"  ... {month}", err=True)

    found = city.find_city(engine)
    if found is None:
        click.echo(f"Seeding the pilot city ({residents:,} residents, seed {seed}) ...", err=True)
    seeded = _explained(
        lambda: city.seed_city(
            engine,
            ring,
            origin,
            clock=system_clock,
            seed=seed,
            residents=residents,
            progress=progress,
        )
    )
    record = seeded.record
    if not seeded.added:
        click.echo(
            f"The pilot city is here already (seeded {record.anchor_day.isoformat()}, seed "
            f"{record.seed}, {record.residents:,} residents): nothing added."
        )
    for line in city_report.describe(engine, record):
        click.echo(line)
    report = Ledger(engine).verify(unsealed_grace_seconds=settings.unsealed_grace_seconds)
    click.echo("  points verify: " + ("no problems" if report.ok else report.problems[0].message))
    ways, tokens = _explained(
        lambda: city_report.sign_in(
            engine, record, system_clock(), secret_key=settings.secret_key_bytes, origin=origin
        )
    )
    click.echo("")
    click.echo("Ways in (each code works once, for 15 minutes; `points demo` prints new ones):")
    for way in ways:
        click.echo(f"  {way.role:10} {way.who}")
        for line in way.lines:
            click.echo(f"             {line}")
    click.echo("")
    click.echo(f"Bearer tokens for the API ({origin.rstrip('/')}/api/v1/docs):")
    for role, secret in tokens:
        click.echo(f"  {role:9} {secret}")
    if no_serve:
        return
    click.echo("")
    click.echo(f"Serving the API and the apps on {origin} (Ctrl-C stops it)")
    if origin_given is not None:
        os.environ["POINTS_PUBLIC_URL"] = origin_given  # the server's app reads its environment
    _serve_with_jobs(settings, host, port, 1, "info")


#: Addresses that serve on every interface: no origin can be made of them.
WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", ""})  # noqa: S104 (recognised, not bound)


def demo_origin(host: str, port: int, environ: Mapping[str, str]) -> str | None:
    """The public origin ``points demo --host --port`` serves at when POINTS_PUBLIC_URL is not
    set (None: leave the settings as they are; the default, or the wildcard address)."""
    if environ.get("POINTS_PUBLIC_URL") or host in WILDCARD_HOSTS:
        return None
    if (host, port) == ("127.0.0.1", 8000):
        return None
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


def _signing_key_ready(settings: Settings) -> None:
    """Production: refuse to go on without an active signing key (exit 1 naming
    POINTS_KEY_DIR). Development: create the first key on first use, and say so on stderr."""
    directory = settings.key_dir
    if settings.environment == "development":
        created = _explained(lambda: keys.ensure_key(directory, system_clock()))
        if created is not None:
            click.echo(
                f"created signing key {created.kid} in {directory} (POINTS_KEY_DIR; "
                "development only: production needs `points keys init`)",
                err=True,
            )
    try:
        keys.list_keys(directory)  # a missing directory or an unsafe file, with its reason
        keys.KeyRing(directory).signing_key()
        keys.read_pin_pepper(directory)  # cards' PINs (written by `points keys init`)
    except PointsError as error:
        raise click.ClickException(f"cannot start: {error.message}") from error


@main.group("ledger")
def ledger_group() -> None:
    """The ledger core."""


@ledger_group.command("demo")
def ledger_demo() -> None:
    """Create a few accounts and entries on the configured database and print balances."""
    settings = _settings()
    engine = _engine(settings)
    schema.upgrade(engine)
    run_demo(Ledger(engine), echo=click.echo)


@main.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True)
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["debug", "info", "warning", "error"]),
)
def serve(host: str, port: int, workers: int, log_level: str) -> None:
    """Run the HTTP API. Stops gracefully on SIGTERM or Ctrl-C (requests in flight finish).

    The scheduled jobs run in this process (one scheduler however many workers serve requests)
    unless POINTS_JOBS_ENABLED=false."""
    _serve_with_jobs(None, host, port, workers, log_level)


def _serve_with_jobs(
    settings: Settings | None, host: str, port: int, workers: int, log_level: str
) -> None:
    """``points serve``'s work (``points demo`` serves the same way once it has seeded)."""
    configure_logging(log_level.upper())
    # Each worker process reads the level from its environment (api.app.app_from_environment).
    os.environ["POINTS_LOG_LEVEL"] = log_level.upper()
    settings = settings or _settings()
    # uvicorn shuts down gracefully on SIGTERM, then raises the signal again with the handler
    # that was installed before it; with the default one the process died there, before the
    # scheduler below was shut down, and a job in the middle of a run was killed (its run left
    # "running" until its lease lapsed). This handler ends the process normally instead.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    _signing_key_ready(settings)
    scheduler = start_scheduler(_engine(settings), settings, system_clock)
    try:
        _serve(host, port, workers)
    finally:
        if scheduler is not None:
            scheduler.shutdown(wait=True)  # lets a job run in progress finish


def _exit_on_sigterm(_signal: int, _frame: object) -> None:
    raise SystemExit(0)


def _serve(host: str, port: int, workers: int) -> None:
    uvicorn.run(
        "api.app:app_from_environment",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_config=None,
        access_log=False,
        proxy_headers=True,
        timeout_graceful_shutdown=20,
    )


@main.group("admin")
def admin_group() -> None:
    """Administration from the shell (for the first admin, and for emergencies)."""


@admin_group.command("create-staff")
@click.option("--role", required=True, type=click.Choice([role.value for role in StaffRole]))
@click.option("--name", "display_name", required=True, help="Shown in the audit trail.")
@click.option("--merchant", "merchant_id", default=None, help="For merchant staff.")
@click.option("--department", "department_id", default=None, help="For issuers.")
def create_staff(
    role: str, display_name: str, merchant_id: str | None, department_id: str | None
) -> None:
    """Add a member of staff and print their id."""
    settings = _settings()
    engine = _engine(settings)
    staff_id = _explained(
        lambda: unit_of_work(
            engine,
            lambda session: (
                people.create_staff(
                    session,
                    access.SYSTEM,
                    system_clock(),
                    role=StaffRole(role),
                    display_name=display_name,
                    merchant_id=merchant_id,
                    department_id=department_id,
                ).id
            ),
        )
    )
    click.echo(staff_id)


@admin_group.command("create-token")
@click.option("--role", required=True, type=click.Choice([role.value for role in Role]))
@click.option("--principal", "principal_id", required=True, help="A staff or resident id.")
@click.option("--label", default="created with points admin create-token")
@click.option("--days", type=click.IntRange(1, 400), default=None, help="Lifetime in days.")
def create_token(role: str, principal_id: str, label: str, days: int | None) -> None:
    """Print a new token for a principal. It is shown this once; only its hash is kept."""
    settings = _settings()
    engine = _engine(settings)
    lifetime = timedelta(days=days) if days else None
    new = _explained(
        lambda: unit_of_work(
            engine,
            lambda session: access.issue_token(
                session,
                access.SYSTEM,
                system_clock(),
                role=Role(role),
                principal_id=principal_id,
                label=label,
                lifetime=lifetime,
            ),
        )
    )
    click.echo(new.secret)
    # On its own line of stderr, so that ``$(points admin create-token ...)`` takes the secret
    # alone and a terminal shows the two apart.
    click.echo(f"(prefix {new.token.prefix}, expires {new.token.expires_at.isoformat()})", err=True)


@admin_group.command("device-code")
@click.option("--till", "till_id", default=None, help="Enrol this till (its session).")
@click.option("--staff", "staff_id", default=None, help="Enrol a device of this member of staff.")
@click.option("--label", default="", help="What the device is, shown in the list of sessions.")
def device_code(till_id: str | None, staff_id: str | None, label: str) -> None:
    """Print a one-time code (15 minutes) that enrols a till or a staff device in the staff
    app, and the address that opens the staff app with it."""
    if (till_id is None) == (staff_id is None):
        raise click.UsageError("give exactly one of --till and --staff")
    settings = _settings()
    engine = _engine(settings)

    def work(session: Session) -> str:
        nonlocal staff_id, label
        if till_id is not None:
            till = merchants.get_till(session, till_id)
            staff_id = till.staff_id
            label = label or till.name
        assert staff_id is not None
        _device, code = access.create_device_code(
            session,
            access.SYSTEM,
            system_clock(),
            staff_id,
            secret_key=settings.secret_key_bytes,
            label=label,
        )
        return code

    code = _explained(lambda: unit_of_work(engine, work))
    click.echo(code)
    click.echo(f"(open {settings.public_origin}/staff/#/enrol/{code} on the device)", err=True)


@main.group("types")
def types_group() -> None:
    """Point types: a ledger plus its policy (expiry, transfer, issuer, funding)."""


@types_group.command("create")
@click.option("--code", required=True, help="Short lower-case code, e.g. pt.")
@click.option("--name-ja", required=True)
@click.option("--name-en", required=True)
@click.option("--unit", default="pt", show_default=True)
@click.option(
    "--expiry",
    "expiry_rule",
    type=click.Choice([rule.value for rule in pointtypes.ExpiryRule]),
    default="months",
    show_default=True,
)
@click.option("--months", "expiry_months", type=int, default=None, help="For --expiry months.")
@click.option(
    "--until", "expiry_date", type=click.DateTime(["%Y-%m-%d"]), default=None, help="fixed_date"
)
@click.option("--transferable/--not-transferable", default=False, show_default=True)
@click.option(
    "--issuer",
    type=click.Choice([kind.value for kind in pointtypes.IssuerKind]),
    default="city",
    show_default=True,
)
@click.option(
    "--funding",
    type=click.Choice([kind.value for kind in pointtypes.Funding]),
    default="free",
    show_default=True,
)
@click.option("--psa-override-reason", default=None, help="Payment Services Act registration.")
def types_create(
    code: str,
    name_ja: str,
    name_en: str,
    unit: str,
    expiry_rule: str,
    expiry_months: int | None,
    expiry_date: datetime | None,
    transferable: bool,
    issuer: str,
    funding: str,
    psa_override_reason: str | None,
) -> None:
    """Create a point type and its ledger; print its id."""
    rule = pointtypes.ExpiryRule(expiry_rule)
    new = pointtypes.NewPointType(
        code=code,
        name_ja=name_ja,
        name_en=name_en,
        unit=unit,
        expiry_rule=rule,
        expiry_months=(expiry_months or 12) if rule is pointtypes.ExpiryRule.MONTHS else None,
        expiry_date=expiry_date.date() if expiry_date is not None else None,
        transferable=transferable,
        issuer=pointtypes.IssuerKind(issuer),
        funding=pointtypes.Funding(funding),
        psa_override_reason=psa_override_reason,
    )
    engine = _engine(_settings())
    created = _explained(
        lambda: unit_of_work(
            engine,
            lambda session: pointtypes.create_point_type(
                session, access.SYSTEM, system_clock(), new
            ),
        )
    )
    click.echo(created.id)


@types_group.command("list")
def types_list() -> None:
    """Every point type, one per line: code, id, expiry rule, names."""
    engine = _engine(_settings())
    for row in unit_of_work(engine, pointtypes.list_point_types, read_only=True):
        rule = {
            "months": f"{row.expiry_months} months after the month earned",
            "fixed_date": f"until {row.expiry_date}",
            "none": "no expiry",
        }[row.expiry_rule]
        click.echo(f"{row.code}\t{row.id}\t{rule}\t{row.name_ja} / {row.name_en}")


@types_group.command("delete")
@click.argument("code")
@click.option("--reason", required=True)
def types_delete(code: str, reason: str) -> None:
    """Delete a point type no program uses (refused when it is in use)."""
    engine = _engine(_settings())

    def work(session: Session) -> None:
        found = pointtypes.find_point_type(session, code)
        pointtypes.delete_point_type(
            session, access.SYSTEM, system_clock(), found.id, reason=reason
        )

    _explained(lambda: unit_of_work(engine, work))
    click.echo(f"deleted {code}")


@main.command("settle")
@click.option(
    "--period",
    default=None,
    help="The month to settle, YYYY-MM (default: the month that ended last, in Tokyo).",
)
@click.option("--dry-run", is_flag=True, help="Print the statements; write nothing.")
def settle_command(period: str | None, dry_run: bool) -> None:
    """Settle a month with the merchants: a statement per merchant and point type, and the
    payables moved to settled. Once per month: asking again prints the same run."""
    engine = _engine(_settings())
    now = system_clock()
    chosen = period or settlement.last_ended_period(now)
    if dry_run:
        planned = _explained(
            lambda: unit_of_work(engine, lambda s: settlement.plan(s, chosen, now), read_only=True)
        )
        click.echo(f"{chosen} (dry run, nothing written): {len(planned.statements)} statements")
        rows = [
            (
                p.merchant_id,
                p.point_type_id,
                p.net_points,
                p.carried_in,
                p.settle_points,
                p.yen,
                p.fee,
                p.yen_to_pay,
                str(p.transfer),
            )
            for p in planned.statements
        ]
    else:
        result = _explained(
            lambda: unit_of_work(
                engine,
                lambda s: settlement.settle(s, access.SYSTEM, now, chosen, trigger=RunTrigger.CLI),
            )
        )
        state = "settled before (a replay: nothing written)" if result.replay else "settled"
        click.echo(f"{chosen} {state}: run {result.run.id}, {len(result.statements)} statements")
        rows = [
            (
                s.merchant_id,
                s.point_type_id,
                s.net_points,
                s.carried_in,
                s.settle_points,
                s.yen,
                s.fee,
                s.yen_to_pay,
                s.transfer,
            )
            for s in result.statements
        ]
    click.echo("merchant\tpoint type\tnet\tcarried in\tsettled\tyen\tfee\tto pay\ttransfer")
    for row in rows:
        click.echo("\t".join(str(value) for value in row))
    click.echo(f"total to pay: {sum(int(row[7]) for row in rows)} yen")


@main.group("jobs")
def jobs_group() -> None:
    """Scheduled jobs: run one by hand, list the runs."""


def _as_of(value: datetime | None, force: bool) -> datetime:
    """The instant of a run: now, or the start (Asia/Tokyo) of the given date; a date in the
    future is refused without --force."""
    now = system_clock()
    if value is None:
        return now
    as_of = start_of_day(value.date())
    if as_of > now and not force:
        raise click.ClickException(
            f"--as-of {value.date().isoformat()} is in the future; add --force if you mean it"
        )
    return as_of


class _Bar:
    """A progress callback drawing a bar on stderr once the total is known."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.bar: Any = None
        self.shown = 0

    def __call__(self, done: int, total: int | None) -> None:
        if self.bar is None and total:
            self.bar = click.progressbar(length=total, label=self.label, file=sys.stderr)
            self.bar.__enter__()
        if self.bar is not None:
            self.bar.update(done - self.shown)
            self.shown = done

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)


def _run_by_hand(name: str, as_of: datetime) -> None:
    settings = _settings()
    engine = _engine(settings)
    bar = _Bar(name)
    try:
        result = _explained(
            lambda: run_job(
                engine,
                name,
                as_of=as_of,
                clock=system_clock,
                progress=bar,
                trigger="cli",
                options=job_options(settings),
            )
        )
    finally:
        bar.close()
    # By hand, a period that is not run is refused (exit status 1, with the error's code); the
    # scheduler takes the same statuses as normal (another process got there first).
    refusals = {
        "already_done": AlreadyDone(
            f"{name} for {result.period}: already done; nothing changed ({AlreadyDone.code})"
        ),
        "running_elsewhere": RunningElsewhere(
            f"{name} for {result.period}: running in another process; not run "
            f"({RunningElsewhere.code})"
        ),
    }
    if result.status in refusals:
        raise click.ClickException(refusals[result.status].message)
    counts = ", ".join(f"{key} {value}" for key, value in sorted(result.counts.items()))
    click.echo(f"{name} for {result.period}: done ({counts or 'nothing to do'})")


@jobs_group.command("run")
@click.argument("name", type=click.Choice(sorted(JOBS)))
@click.option("--as-of", type=click.DateTime(["%Y-%m-%d"]), default=None, help="A Tokyo date.")
@click.option("--force", is_flag=True, help="Allow an --as-of in the future.")
def jobs_run(name: str, as_of: datetime | None, force: bool) -> None:
    """Run one job now (or as of the start of a date, Asia/Tokyo)."""
    _run_by_hand(name, _as_of(as_of, force))


JOB_RUN_COLUMNS = (
    "id",
    "job",
    "period",
    "state",
    "trigger",
    "started_at",
    "finished_at",
    "counts",
    "outcome",
)


@jobs_group.command("list")
@click.option("--job", type=click.Choice(sorted(JOBS)), default=None)
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per run, one per line.")
def jobs_list(job: str | None, limit: int, as_json: bool) -> None:
    """The latest runs, newest first: a table with a header, or JSON lines."""
    engine = _engine(_settings())
    runs = unit_of_work(
        engine,
        lambda session: list_runs(session, job=job, before=None, limit=limit),
        read_only=True,
    )
    rows = [
        {
            "id": run.id,
            "job": run.job,
            "period": run.period,
            "state": run.state,
            "trigger": run.trigger,
            "started_at": run.started_at.isoformat(),
            "finished_at": run.finished_at.isoformat() if run.finished_at else None,
            "counts": json.loads(run.counts),
            "outcome": run.outcome,
        }
        for run in runs
    ]
    if as_json:
        for row in rows:
            click.echo(json.dumps(row, ensure_ascii=False))
        return
    click.echo(
        _table(JOB_RUN_COLUMNS, [[_cell(row[name]) for name in JOB_RUN_COLUMNS] for row in rows])
    )


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict):
        return ", ".join(f"{key} {count}" for key, count in sorted(value.items())) or "-"
    return str(value)


def _table(header: Sequence[str], rows: list[list[str]]) -> str:
    """Columns padded to their widest cell (East Asian wide characters count two)."""
    widths = [
        max([_width(name)] + [_width(row[index]) for row in rows])
        for index, name in enumerate(header)
    ]
    lines = [list(header), *rows]
    return "\n".join(
        "  ".join(
            cell + " " * (width - _width(cell)) for cell, width in zip(line, widths, strict=True)
        ).rstrip()
        for line in lines
    )


def _width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(char) in "WF" else 1 for char in text)


@main.command("expire")
@click.option("--as-of", type=click.DateTime(["%Y-%m-%d"]), default=None, help="A Tokyo date.")
@click.option("--dry-run", is_flag=True, help="Only say what would expire.")
@click.option("--force", is_flag=True, help="Allow an --as-of in the future.")
def expire_command(as_of: datetime | None, dry_run: bool, force: bool) -> None:
    """Expire the buckets expired at the start of a date (today by default), Asia/Tokyo. A dry
    run writes nothing, so it may look at any date without --force."""
    instant = _as_of(as_of, force or dry_run)
    if dry_run:
        found = expiry.pending(_engine(_settings()), instant)
        click.echo(
            f"would expire {found.buckets} buckets holding {found.points} points "
            f"in {found.entries} entries (dry run: nothing written)"
        )
        return
    _run_by_hand("expiry", instant)


@main.command("award")
@click.option("--program", "program_id", required=True, help="The program's id (prg_...).")
@click.option(
    "--csv", "path", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option("--check", is_flag=True, help="Only check the file; award nothing.")
@click.option(
    "--report-json", type=click.Path(dir_okay=False, path_type=Path), help="Problems as JSON."
)
@click.option(
    "--report-csv", type=click.Path(dir_okay=False, path_type=Path), help="Problems as CSV."
)
def award_command(
    program_id: str, path: Path, check: bool, report_json: Path | None, report_csv: Path | None
) -> None:
    """Award every row of a CSV file (UTF-8 or Shift_JIS): checked whole first; any bad row
    refuses the file, and every problem is reported (line, column, reason)."""
    engine = _engine(_settings())
    data = path.read_bytes()
    _plan, errors = _explained(
        lambda: bulk.check_file(engine, program_id, None, data, system_clock())
    )
    if errors:
        if report_json is not None:
            report_json.write_text(
                json.dumps([error.as_dict() for error in errors], ensure_ascii=False, indent=1),
                encoding="utf-8",
            )
        if report_csv is not None:
            report_csv.write_bytes(bulk.errors_csv(errors))
        for error in errors[:20]:
            click.echo(f"line {error.line}, {error.column or '-'}: {error.reason}", err=True)
        if len(errors) > 20:
            click.echo(f"... and {len(errors) - 20} more", err=True)
        raise click.ClickException(f"{len(errors)} problem(s) in {path.name}; nothing awarded")
    if check:
        click.echo(f"{path.name}: no problems")
        return
    bar = _Bar("awarding")
    try:
        result = _explained(
            lambda: bulk.upload(
                engine,
                access.SYSTEM,
                system_clock,
                program_id,
                data,
                department_id=None,
                filename=path.name,
                progress=bar,
            )
        )
    finally:
        bar.close()
    upload = result.upload
    if result.replayed:
        click.echo(f"{path.name} was uploaded before ({upload.id}); nothing awarded now")
    click.echo(
        f"{upload.id}: {upload.awarded} awarded, {upload.replayed} awarded before, "
        f"{upload.failed} refused while awarding; {upload.total} points set aside"
    )


@main.group("keys")
def keys_group() -> None:
    """The Ed25519 keys that sign QR codes (POINTS_KEY_DIR; private keys never leave it)."""


@keys_group.command("init")
def keys_init() -> None:
    """Create the key directory, the card PIN pepper and the first, active key (refused when a
    key exists; on a directory from before card PINs, writes only the pepper)."""
    directory = _settings().key_dir
    created = _explained(lambda: keys.init_keys(directory, system_clock()))
    if created is None:
        click.echo(f"wrote the card PIN pepper ({keys.PEPPER_FILE}) in {directory}")
    else:
        click.echo(f"created key {created.kid} (active) and the card PIN pepper in {directory}")


@keys_group.command("rotate")
def keys_rotate() -> None:
    """A new active key; the previous active key keeps verifying the codes it signed."""
    directory = _settings().key_dir
    created = _explained(lambda: keys.rotate(directory, system_clock()))
    click.echo(f"created key {created.kid} (active); earlier keys keep verifying")


@keys_group.command("retire")
@click.argument("kid", type=click.IntRange(1, keys.MAX_KID))
@click.option("--force", is_flag=True, help="Retire even while live printed codes use the key.")
def keys_retire(kid: int, force: bool) -> None:
    """Stop a key verifying for good (its private key is deleted). Refused for the active key,
    and while live printed codes (tills, cards) use it unless --force: they would stop working."""
    settings = _settings()
    engine = _engine(settings)
    live = keys.printed_tokens(engine, kid)
    retired = _explained(
        lambda: keys.retire(
            settings.key_dir, kid, system_clock(), live_printed_tokens=live, force=force
        )
    )
    note = f"; {live} live printed code(s) stop working" if live else ""
    click.echo(f"key {retired.kid} retired{note}")


KEY_COLUMNS = ("kid", "status", "created_at", "retired_at", "live_printed_tokens")


@keys_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per key, one per line.")
def keys_list(as_json: bool) -> None:
    """Every key: id, status, created, retired, and the live printed codes that use it."""
    settings = _settings()
    engine = _engine(settings)
    found = _explained(lambda: keys.list_keys(settings.key_dir))
    rows = [
        {
            "kid": info.kid,
            "status": info.status.value,
            "created_at": info.created_at.isoformat(),
            "retired_at": info.retired_at.isoformat() if info.retired_at else None,
            "live_printed_tokens": keys.printed_tokens(engine, info.kid),
            "public_key": info.public_key_text,
        }
        for info in found
    ]
    if as_json:
        for row in rows:
            click.echo(json.dumps(row))
        return
    click.echo(_table(KEY_COLUMNS, [[_cell(row[name]) for name in KEY_COLUMNS] for row in rows]))


@main.command("export")
@click.option("--format", "format_name", required=True, help="csv, csv-cp932, jsonl or hledger.")
@click.option("--from-seq", type=int, default=None, help="First seal sequence (included).")
@click.option("--to-seq", type=int, default=None, help="Last seal sequence (included).")
@click.option(
    "--from",
    "from_day",
    type=click.DateTime(["%Y-%m-%d"]),
    default=None,
    help="First day (Tokyo) of entries recorded; widened to the seal range that covers them.",
)
@click.option(
    "--to",
    "to_day",
    type=click.DateTime(["%Y-%m-%d"]),
    default=None,
    help="Last day (Tokyo, included).",
)
@click.option("--from-id", type=int, default=None, help="First entry id; widened to seals.")
@click.option("--to-id", type=int, default=None, help="Last entry id (included).")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False, path_type=Path))
def export_command(
    format_name: str,
    from_seq: int | None,
    to_seq: int | None,
    from_day: datetime | None,
    to_day: datetime | None,
    from_id: int | None,
    to_id: int | None,
    out_path: Path,
) -> None:
    """Export sealed ledger entries by seal sequence (docs/exports.md). CP932 CSV and hledger
    files get their JSON Lines twin, FILE.jsonl, for ``points verify-export``."""
    engine = _engine(_settings())
    try:
        fmt = exports.parse_format(format_name)
        if not out_path.parent.is_dir():
            raise click.ClickException(f"no such directory: {out_path.parent}")
        from_seq, to_seq = exports.resolve_range(
            engine,
            seqs=(from_seq, to_seq),
            days=(
                None if from_day is None else from_day.date(),
                None if to_day is None else to_day.date(),
            ),
            ids=(from_id, to_id),
        )
        request = exports.ExportRequest(fmt, from_seq, to_seq)
        actor = Principal(Role.ADMIN, f"cli:{getpass.getuser()}", "cli")
        exports.record_export(engine, request, actor=actor, at=datetime.now(UTC), via="cli")
    except ledger_export.ExportError as error:
        raise click.ClickException(f"{error.code}: {error.message}") from error
    unencodable = exports.Unencodable()
    with out_path.open("wb") as handle:
        for chunk in exports.stream_export(engine, request, unencodable):
            handle.write(chunk)
    click.echo(f"exported sequences {from_seq}..{to_seq} as {fmt.value} to {out_path}")
    if fmt in (exports.ExportFormat.CSV_CP932, exports.ExportFormat.HLEDGER):
        twin = out_path.with_name(out_path.name + ".jsonl")
        with twin.open("wb") as handle:
            twin_request = exports.ExportRequest(exports.ExportFormat.JSONL, from_seq, to_seq)
            for chunk in exports.stream_export(engine, twin_request):
                handle.write(chunk)
        click.echo(f"its JSON Lines twin (for verify-export): {twin}")
    if unencodable.found:
        click.echo(
            f"{len(unencodable.found)} characters CP932 cannot hold were written as ?: "
            + unencodable.summary(),
            err=True,
        )


@main.command("verify-export")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
def verify_export_command(file: str) -> None:
    """Check an export (JSON Lines or UTF-8 CSV) without the database: the seal chain, every
    entry's balance and the totals. Exit 1 naming the first bad line."""
    result = exports.verify_file(file)
    if result.ok:
        click.echo(f"export verified: {result.entries} entries, chain and totals intact")
        return
    raise click.ClickException(f"line {result.line}: {result.message}")


if __name__ == "__main__":  # pragma: no cover
    main()
