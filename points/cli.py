"""The ``points`` command: the composition root that wires settings, database and services.

::

    points db upgrade          take the database to the latest schema
    points db current          print the schema revision
    points verify              recompute and check everything; exit 1 naming the first problem
    points seal                seal every committed entry not sealed yet
    points ledger demo         a few accounts and entries on the configured database
"""

from __future__ import annotations

import sys

import click

from ledger import Ledger
from points import db
from points.demo import run_demo
from points.settings import Settings


def _settings() -> Settings:
    return Settings()


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
    engine = db.make_engine(settings)
    db.upgrade(engine, revision)
    click.echo(f"database at {db.current_revision(engine)} ({engine.url.render_as_string()})")


@db_group.command("current")
def db_current() -> None:
    """Print the database's schema revision and whether it is the latest."""
    engine = db.make_engine(_settings())
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
    ledger = Ledger(db.make_engine(settings))
    report = ledger.verify(
        unsealed_grace_seconds=(
            settings.unsealed_grace_seconds if grace_seconds is None else grace_seconds
        )
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
    ledger = Ledger(db.make_engine(_settings()))
    click.echo(f"sealed {ledger.seal()} entries")


@main.group("ledger")
def ledger_group() -> None:
    """The ledger core."""


@ledger_group.command("demo")
def ledger_demo() -> None:
    """Create a few accounts and entries on the configured database and print balances."""
    settings = _settings()
    engine = db.make_engine(settings)
    db.upgrade(engine)
    run_demo(Ledger(engine), echo=click.echo)


if __name__ == "__main__":  # pragma: no cover
    main()
