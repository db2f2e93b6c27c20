"""Who may be awarded what: the award rules, written once (DESIGN §5).

A single award (``issuers.awards.award``), the whole-file check of a bulk upload
(``issuers.bulk.check``) and the batches of an upload (``issuers.bulk.batches``) obey the same
rules because they call these functions. The rules are pure: each caller reads the facts its
own way (a row at a time, or set-based for a whole file) and hands them in.

``decide`` applies them in this order, the first refusal winning:

1. the program is active (``program_not_active``);
2. the event's date is not in the future and falls in the program's validity window
   (``outside_program_window``); its fiscal year (April to March) picks the budget;
3. the program's module plans the award: its amount and once-keys (``issuers.modules``);
4. the resident exists and is active, and their wallet is not closed (the wallet's own rule,
   ``points.wallets.check_can_receive``);
5. points of the program's type earned today are still valid somewhere in the future (a type
   with a fixed last date can run out);
6. no once-key is claimed already, by an earlier award or by an earlier line of the same file
   (``already_awarded``);
7. every cap of the program (per day and month of the event's date, per fiscal year;
   ``cap_periods``) has room for the amount (``cap_exceeded``).

Rules 6 and 7 are held once more by the database against concurrent awards: a once-key is a row
under a unique key, and a cap counter is raised by a conditional update under a CHECK
``amount <= cap``. A bulk batch applies rules 1, 2, 4 and 5 to its distinct residents and dates
at once (``check_program_active``, ``fiscal_year_of``, ``check_parties``,
``check_points_valid``) and leaves 6 and 7 to those guards: a batch that meets one goes row by
row, each row through ``decide``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from issuers.errors import AlreadyAwarded, CapExceeded, OutsideProgramWindow, ProgramNotActive
from issuers.modules import AwardEvent, ProgramModule
from issuers.programs import Program, ProgramStatus
from points.calendar import fiscal_year
from points.errors import Conflict
from points.wallets import check_can_receive

#: (period, cap): ``D2026-05-03``, ``M2026-05`` or ``FY2026``, and the most points in it.
CapPeriod = tuple[str, int]


@dataclass(frozen=True, slots=True)
class Parties:
    """What the database says of the award's resident, as the caller read it."""

    #: ``None``: there is no such resident.
    resident_status: str | None
    #: ``None``: the resident has no wallet of the program's point type yet (the award opens it).
    wallet_status: str | None


@dataclass(frozen=True, slots=True)
class OnceClaim:
    """Who claimed a once-key: an earlier award's record, or an earlier line of the same file."""

    record_id: str
    line: int | None = None


@dataclass(frozen=True, slots=True)
class Claimed:
    """What is claimed already for the resident in this program."""

    #: Once-keys claimed already (only those the award plans need be present).
    once: Mapping[str, OnceClaim]
    #: Points counted per cap period (a period absent counts 0).
    counted: Mapping[str, int]


NOTHING_CLAIMED = Claimed(once={}, counted={})

#: Reads what is claimed for the award's once-keys and cap periods, once the module has planned
#: them: a database read for a single award, in-memory tables for a whole file.
ClaimsReader = Callable[[Sequence[str], Sequence[CapPeriod]], Claimed]


@dataclass(frozen=True, slots=True)
class Decision:
    """An award the rules allow: what it is worth and what it counts towards."""

    fiscal_year: int
    occurred_on: date
    amount: int
    once_keys: tuple[str, ...]
    cap_periods: tuple[CapPeriod, ...]


def decide(
    program: Program,
    module: ProgramModule,
    config: Any,
    details: Any,
    *,
    resident_id: str,
    record_id: str,
    occurred_on: date | None,
    today: date,
    valid_until: date,
    parties: Parties,
    claimed: ClaimsReader,
) -> Decision:
    """Decide one award (see the module docstring for the rules and their order); raise the
    first refusal. ``occurred_on`` ``None`` is ``today``; ``valid_until`` is the last day of
    points of the program's type earned ``today``."""
    check_program_active(program)
    day = occurred_on or today
    year = fiscal_year_of(program, day, today)
    plan = module.plan(
        program.terms(), config, details, AwardEvent(resident_id, record_id, day, year)
    )
    check_parties(parties)
    check_points_valid(valid_until, today)
    periods = tuple(cap_periods(program, day, year))
    found = claimed(plan.once, periods)
    check_once(plan.once, found.once)
    check_caps(periods, found.counted, plan.amount)
    return Decision(year, day, plan.amount, tuple(plan.once), periods)


def check_program_active(program: Program) -> None:
    if program.status != ProgramStatus.ACTIVE:
        raise ProgramNotActive(
            f"program {program.id} is {program.status}; only an active program awards",
            status=program.status,
        )


def fiscal_year_of(program: Program, occurred_on: date, today: date) -> int:
    """The fiscal year of an event on ``occurred_on``, if the program can award it today."""
    if occurred_on > today:
        raise OutsideProgramWindow(
            f"occurred_on {occurred_on.isoformat()} is in the future", field="occurred_on"
        )
    if occurred_on < program.valid_from or (
        program.valid_until is not None and occurred_on > program.valid_until
    ):
        until = program.valid_until.isoformat() if program.valid_until else "open-ended"
        raise OutsideProgramWindow(
            f"the program runs {program.valid_from.isoformat()} to {until}; "
            f"the event was on {occurred_on.isoformat()}",
            field="occurred_on",
        )
    return fiscal_year(occurred_on)


def check_parties(parties: Parties) -> None:
    """Rule 4: the wallet's own rule (``points.wallets.check_can_receive``), for an award."""
    check_can_receive(parties.resident_status, parties.wallet_status)


def check_points_valid(valid_until: date, today: date) -> None:
    if valid_until < today:
        raise Conflict(
            f"points of this program's type expired on {valid_until.isoformat()}; nothing can "
            "be awarded in them"
        )


def cap_periods(program: Program, occurred_on: date, year: int) -> list[CapPeriod]:
    """(period, cap) for each cap the program has, for an event on ``occurred_on``."""
    periods = []
    if program.cap_per_day is not None:
        periods.append((f"D{occurred_on.isoformat()}", program.cap_per_day))
    if program.cap_per_month is not None:
        periods.append((f"M{occurred_on.isoformat()[:7]}", program.cap_per_month))
    if program.cap_per_fiscal_year is not None:
        periods.append((f"FY{year}", program.cap_per_fiscal_year))
    return periods


def has_caps(program: Program) -> bool:
    caps = (program.cap_per_day, program.cap_per_month, program.cap_per_fiscal_year)
    return any(cap is not None for cap in caps)


def check_once(once_keys: Sequence[str], claimed: Mapping[str, OnceClaim]) -> None:
    for once_key in once_keys:
        claim = claimed.get(once_key)
        if claim is None:
            continue
        if claim.line is not None:
            raise AlreadyAwarded(
                f"{once_key} is also on line {claim.line}",
                once_key=once_key,
                record_id=claim.record_id,
            )
        raise AlreadyAwarded(
            f"{once_key} was awarded already (record {claim.record_id})",
            once_key=once_key,
            record_id=claim.record_id,
        )


def check_caps(periods: Sequence[CapPeriod], counted: Mapping[str, int], amount: int) -> None:
    for period, cap in periods:
        so_far = counted.get(period, 0)
        if so_far + amount > cap:
            raise CapExceeded(
                f"the cap for {period} is {cap}; {so_far} is counted already and this award "
                f"is {amount}",
                period=period,
                cap=cap,
                awarded=so_far,
            )
