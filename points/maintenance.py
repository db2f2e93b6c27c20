"""The jobs that keep the ledger moving (``points.shell.wiring`` registers them in
``points.jobs.JOBS``).

=============  ==========================  ===========================================
job            when (Asia/Tokyo)           what
=============  ==========================  ===========================================
expiry         daily at 00:10              expired buckets' remainders to expired points
hold_timeouts  every minute                void the holds whose timeout has passed
seal           every 5 seconds             seal committed entries into the hash chain
purge          daily at 03:00              idempotency records past retention, old
                                           rate-limit windows, old runs of frequent jobs
                                           (``Job.frequent``: these two, ``upload_handback``),
                                           used QR tokens a day past their expiry,
                                           card PIN attempts older than a year
verify         daily at 02:30              ``points verify``: recompute and check the
                                           whole ledger, recorded in ``verify_run``; a
                                           run that finds problems is ``failed`` (its
                                           outcome names the first, its counts say how
                                           many); finance also queues one by the API
=============  ==========================  ===========================================

Each is idempotent for its period and safe when two processes run it at once (``points.jobs``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy.engine import Engine

from ledger import Ledger
from ledger.service import system_clock
from points import expiry, idempotency, jobs, qrtokens, ratelimit
from points.errors import ProblemsFound
from points.jobs import Job, JobContext, purge_runs, seconds_slot, tokyo_day, tokyo_minute
from points.settings import Settings
from points.uow import unit_of_work
from points.verification import verify_and_record

#: Runs of the frequent jobs are kept this long (the daily ones are kept for good).
FREQUENT_RUNS_KEPT = timedelta(days=7)
SEAL_SECONDS = 5


def _expiry(context: JobContext) -> dict[str, int]:
    return expiry.expire(
        context.engine, context.as_of, progress=context.progress, clock=context.clock
    ).as_dict()


# The jobs below are a statement or three each: they report progress in those steps (the
# progress bar of ``points jobs run``), expiry in buckets.


#: Steps run after ``hold_timeouts`` voided holds, each ``step(engine, as_of) -> count``: the
#: application shell adds the one that tells shops' devices (``points.shell.wiring``). A step
#: finds its work from the ledger, so a crash between the void and the step is made good by the
#: next run.
AFTER_HOLD_TIMEOUTS: list[Callable[[Engine, datetime], int]] = []
#: Steps ``purge`` runs after its own, each ``step(engine, as_of) -> {name: rows deleted}``:
#: the application shell adds the other packages' (old PIN attempts, ``redemption.cards``).
AFTER_PURGE: list[Callable[[Engine, datetime], dict[str, int]]] = []


def _hold_timeouts(context: JobContext) -> dict[str, int]:
    context.progress(0, 1)
    ledger = Ledger(context.engine, clock=context.clock or system_clock)
    voided = ledger.void_expired_holds(context.as_of)
    announced = sum(step(context.engine, context.as_of) for step in AFTER_HOLD_TIMEOUTS)
    context.progress(1, 1)
    return {"voided": voided, "announced": announced}


def _seal(context: JobContext) -> dict[str, int]:
    context.progress(0, 1)
    sealed = Ledger(context.engine).seal(skip_if_busy=True)
    context.progress(1, 1)
    return {"sealed": sealed}


def _purge(context: JobContext) -> dict[str, int]:
    retention = timedelta(hours=int(context.options.get("idempotency_retention_hours", 24)))
    context.progress(0, 4)
    records = idempotency.purge(context.engine, before=context.as_of - retention)
    context.progress(1, 4)
    windows = ratelimit.purge(context.engine, before=context.as_of - timedelta(days=1))
    context.progress(2, 4)
    frequent = sorted(name for name, job in jobs.JOBS.items() if job.frequent)
    runs = unit_of_work(
        context.engine,
        lambda session: purge_runs(
            session, before=context.as_of - FREQUENT_RUNS_KEPT, jobs=frequent
        ),
    )
    context.progress(3, 4)
    used = unit_of_work(
        context.engine,
        lambda session: qrtokens.purge_used(session, before=context.as_of - qrtokens.USED_KEPT),
    )
    counts = {
        "idempotency_records": records,
        "rate_limit_windows": windows,
        "job_runs": runs,
        "used_tokens": used,
    }
    for step in AFTER_PURGE:
        counts.update(step(context.engine, context.as_of))
    context.progress(4, 4)
    return counts


def _verify(context: JobContext) -> dict[str, int]:
    """``points verify`` as a job: the run is recorded in ``verify_run`` (what
    ``GET /api/v1/finance/verify/last`` shows) and its counts in the job run; problems found
    make the run ``failed`` (``ProblemsFound``), its outcome naming the first."""
    grace = int(context.options.get("unsealed_grace_seconds", DEFAULT_UNSEALED_GRACE_SECONDS))
    context.progress(0, 1)
    ledger = Ledger(context.engine, clock=context.clock or system_clock)
    report, run = verify_and_record(ledger, unsealed_grace_seconds=grace)
    context.progress(1, 1)
    assert run.id is not None
    counts = {
        "entries": report.entries,
        "accounts": report.accounts,
        "sealed": report.sealed,
        "unsealed": report.unsealed,
        "problems": len(report.problems),
        "verify_run": run.id,
    }
    if not report.ok:
        first = report.problems[0]
        raise ProblemsFound(
            f"{len(report.problems)} problems found; the first: [{first.kind}] {first.message}",
            counts=counts,
        )
    return counts


#: The verify job's grace for unsealed entries when the settings give none.
DEFAULT_UNSEALED_GRACE_SECONDS = int(Settings.model_fields["unsealed_grace_seconds"].default)


EXPIRY = Job(
    "expiry",
    "move expired buckets' remainders to expired points",
    tokyo_day,
    _expiry,
    {"trigger": "cron", "hour": 0, "minute": 10},
)
HOLD_TIMEOUTS = Job(
    "hold_timeouts",
    "void the holds whose timeout has passed",
    tokyo_minute,
    _hold_timeouts,
    {"trigger": "cron", "minute": "*"},
    frequent=True,
)
SEAL = Job(
    "seal",
    "seal committed entries into the hash chain",
    seconds_slot(SEAL_SECONDS),
    _seal,
    {"trigger": "interval", "seconds": SEAL_SECONDS},
    frequent=True,
)
PURGE = Job(
    "purge",
    "delete idempotency records past retention, old rate-limit windows, job runs, used tokens",
    tokyo_day,
    _purge,
    {"trigger": "cron", "hour": 3, "minute": 0},
)

VERIFY = Job(
    "verify",
    "recompute and check the whole ledger (points verify); problems found fail the run",
    tokyo_day,
    _verify,
    {"trigger": "cron", "hour": 2, "minute": 30},
)

#: The jobs of the point domain, registered by the application shell (``points.shell.wiring``).
JOBS = (EXPIRY, HOLD_TIMEOUTS, SEAL, PURGE, VERIFY)
