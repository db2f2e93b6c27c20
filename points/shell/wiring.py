"""Every package's tables, scheduled jobs and printed-token counters, registered in one place.

Importing a model module registers its tables on ``SQLModel.metadata`` (what Alembic compares
the migrations with); the jobs are registered in ``points.jobs.JOBS`` here, so that ``points
serve`` schedules them and ``points jobs run NAME`` finds them. A new package lists its model
modules and jobs below, and names the references PostgreSQL checks by trigger.

The tables of printed QR codes (store tills, residents' cards) register a counter of the live
codes signed with a key in ``points.keys.PRINTED_TOKEN_COUNTERS`` (``PRINTED_TOKEN_COUNTERS``
below), so that ``points keys retire`` refuses a key they use: the tills' store QRs and the
residents' active cards.
The payment holds voided by the ``hold_timeouts`` job are announced to the shops' devices by a
step the job runs after voiding (``points.maintenance.AFTER_HOLD_TIMEOUTS``).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.engine import Engine

from issuers import awards, bulk, events, programs
from ledger import schema as ledger_schema
from points import (
    audit,
    auth,
    idempotency,
    jobs,
    keys,
    maintenance,
    pointtypes,
    qrtokens,
    ratelimit,
    registry,
    verification,
    wallets,
)
from points.shell import city_record
from points.uow import unit_of_work
from redemption import cards, catalog, flows, merchants, payments, settlement, settlement_models

#: The modules whose tables the migrations manage (imported for that: they register them).
MODEL_MODULES = (
    audit,
    auth,
    idempotency,
    ratelimit,
    registry,
    verification,
    pointtypes,
    wallets,
    programs,
    awards,
    bulk,
    jobs,
    qrtokens,
    events,
    merchants,
    cards,
    payments,
    flows,
    catalog,
    settlement_models,
    city_record,
)

for _job in (*maintenance.JOBS, *bulk.JOBS, settlement.SETTLEMENT_JOB):
    jobs.register(_job)

#: Counters of live printed tokens by key id.
PRINTED_TOKEN_COUNTERS: tuple[keys.PrintedTokenCounter, ...] = (
    merchants.live_store_codes,
    cards.live_cards,
)


def _announce_payment_holds(engine: Engine, now: datetime) -> int:
    """After ``hold_timeouts`` voided holds: tell the shops' devices (``redemption.payments``)."""
    return unit_of_work(engine, lambda session: payments.announce_resolved(session, now))


if _announce_payment_holds not in maintenance.AFTER_HOLD_TIMEOUTS:
    maintenance.AFTER_HOLD_TIMEOUTS.append(_announce_payment_holds)


def _purge_pin_attempts(engine: Engine, now: datetime) -> dict[str, int]:
    """With ``purge``: card PIN attempts past their retention (``redemption.cards``)."""
    before = now - cards.PIN_ATTEMPTS_KEPT
    return {"pin_attempts": unit_of_work(engine, lambda s: cards.purge_attempts(s, before))}


if _purge_pin_attempts not in maintenance.AFTER_PURGE:
    maintenance.AFTER_PURGE.append(_purge_pin_attempts)

for _counter in PRINTED_TOKEN_COUNTERS:
    if _counter not in keys.PRINTED_TOKEN_COUNTERS:
        keys.PRINTED_TOKEN_COUNTERS.append(_counter)


#: References PostgreSQL checks once per statement by trigger instead of by foreign key
#: (migrations 0007 and 0009 say why); the models declare them, and SQLite keeps them as keys.
TRIGGER_CHECKED_FOREIGN_KEYS = ledger_schema.TRIGGER_CHECKED_FOREIGN_KEYS | frozenset(
    {
        "fk_award_program_id",
        "fk_award_resident_id",
        "fk_award_entry_id",
        "fk_award_once_program_id",
        "fk_award_once_resident_id",
        "fk_wallet_point_type_id",
        "fk_wallet_resident_id",
        "fk_wallet_bucket_account_id",
        "fk_wallet_bucket_program_id",
        "fk_wallet_bucket_resident_id_point_type_id",
    }
)
