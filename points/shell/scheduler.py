"""APScheduler inside ``points serve``: runs the registered jobs (``points.jobs.JOBS``) on their
schedules, in the time zone Asia/Tokyo.

On by default; ``POINTS_JOBS_ENABLED=false`` turns every job off (so that exactly one process
of a deployment runs them, or none while a migration runs), ``POINTS_JOBS_DISABLED`` lists jobs
to leave out, and ``POINTS_JOB_SCHEDULES`` overrides a job's trigger, e.g.
``{"expiry": {"trigger": "cron", "hour": 1, "minute": 0}}``. Two processes running the same job
are safe anyway: every run claims its (job, period) row first.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy.engine import Engine

from points.calendar import TOKYO
from points.jobs import JOBS, run_job
from points.settings import Settings
from points.shell import wiring  # noqa: F401  (registers the jobs)

log = logging.getLogger("points.scheduler")


def enabled_jobs(settings: Settings) -> list[str]:
    if not settings.jobs_enabled:
        return []
    unknown = (set(settings.jobs_disabled) | set(settings.job_schedules)) - set(JOBS)
    if unknown:
        raise ValueError(f"unknown jobs in the settings: {', '.join(sorted(unknown))}")
    return [name for name in JOBS if name not in settings.jobs_disabled]


def job_options(settings: Settings) -> dict[str, int]:
    """The settings the jobs read (``JobContext.options``), for every run however started."""
    return {
        "idempotency_retention_hours": settings.idempotency_retention_hours,
        "unsealed_grace_seconds": settings.unsealed_grace_seconds,
    }


def start_scheduler(
    engine: Engine, settings: Settings, clock: Callable[[], datetime]
) -> BackgroundScheduler | None:
    """Start the scheduler with every enabled job; None when jobs are off."""
    names = enabled_jobs(settings)
    if not names:
        log.info("scheduled jobs are off")
        return None
    # APScheduler logs every run at INFO (the seal job runs every 5 seconds); runs are recorded
    # in job_run instead, and this module logs the ones that did something.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    scheduler = BackgroundScheduler(timezone=TOKYO)
    options = job_options(settings)
    for name in names:
        trigger = dict(JOBS[name].schedule)
        override = settings.job_schedules.get(name, {})
        if override.get("trigger", trigger["trigger"]) != trigger["trigger"]:
            trigger = {}  # another kind of trigger: its own arguments only
        trigger.update(override)
        kind = trigger.pop("trigger")

        def fire(name: str = name) -> None:
            try:
                result = run_job(engine, name, as_of=clock(), clock=clock, options=options)
            except Exception:  # already recorded as a failed run and logged by run_job
                return
            if result.status == "done" and any(result.counts.values()):
                log.info("job %s for %s: %s", name, result.period, result.counts)

        scheduler.add_job(
            fire,
            kind,
            id=name,
            name=name,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=60,
            **trigger,
        )
    scheduler.start()
    log.info("scheduled jobs: %s", ", ".join(names))
    return scheduler
