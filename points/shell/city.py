"""``points demo``: the pilot city, seeded through the same services the API uses.

**The city.** 狛江市 runs a year-long pilot of its points. Three departments take part: 健康推進課
(health: points for health checkups), 環境政策課 (environment: a monthly Tama River clean-up with
check-in by event QR, and a campaign) and 子育て支援課 (child-rearing support: a fixed monthly
award to households with children). Two point types: ``pt`` (狛江ポイント, valid until the end of
the month 12 months after the month earned) and the short-lived campaign points ``eco``
(こまエコポイント, valid until the end of the month after the month earned). 30 local shops in a
dozen categories (grocery, cafe, bakery, pharmacy, bookshop, restaurant, ...) take ``pt``, some
also ``eco``; each has a till (the larger ones two), its payment settings and bank details. The
city counter (狛江市役所 交換窓口) exchanges points for local goods from its catalog. 2,000
residents (``--residents``) with plausible Japanese names, birth years and address numbers
(宛名番号): most take part with a phone, about 3 % with a printed card and a PIN (mostly the
elderly), a few not at all. Staff: an admin, finance, a counter clerk and an officer per
department.

**The history** is the twelve months before the *anchor day* (the Tokyo date of the first
seeding, stored in ``demo_city``), every act at its own simulated instant, in order:

* day one: the registries, point types, programs with their fiscal year's budgets, shops, tills,
  bank details, the counter's catalog and the residents (the counter's registry import);
  card holders get their card (the PIN they chose) at the counter in the first weeks;
* awards: health checkups of the month before as a CSV file (Shift_JIS, as Excel saves it) on
  the 10th, dental checkups reported one by one on the day (single awards), the child-rearing
  file of the month on the 5th (bulk), a clean-up on the second Saturday of each month with
  check-in by the rotating event QR, and three campaign waves of ``eco`` points by CSV;
* payments every day: payment QR, pay code, store QR (confirmed by the till, posted at once by
  the shops in auto-confirm mode, one a month declined), card and PIN at the till; refunds
  (full and partial) a few days later; exchanges at the counter in the wallet and by card;
* nights of the 1st: the ``expiry`` job at 00:10 (points of both types are valid until a
  month's end, so the other nights would find nothing; the campaign points left unspent expire
  at the end of the month after their wave), and at 01:00 the ``settlement`` job for the month
  that ended; finance makes the transfer file on the 5th and marks it paid on the 10th;
  April 1 allocates the new fiscal year's budgets and April 20 decides the old ones (lapse or
  carry over);
* on the anchor day itself nothing but the night's jobs (when it is a 1st), no later than the
  seeding's real time. Everything is sealed at the end. The day's acts run in a fixed order
  between 08:30 and 20:00 Tokyo; nothing is recorded after the seeding's real time.

Every choice (who, what, when, how much) comes from one ``random.Random(seed)``, and the script
keeps its own model of every wallet (balances by expiry date, earliest expiry spent first, as
the ledger does), so nothing is refused and the same seed and anchor day give the same ledger
totals and counts, on either database. Ids are random, as always, and the ledger draws a
resident's buckets of one expiry date in program-id order, so which program's bucket a payment
drew from (its postings, a statement's lines by program) may differ between two seedings.

Acts of a day share one unit of work; what runs its own transactions (CSV uploads, PIN checks,
jobs) runs between them. The mass awards go through the bulk path (``issuers.bulk``), expiry
through the job's bulk path.

**Seeding again** finds the ``demo_city`` row and adds nothing, whatever the day or the options:
the city is the one the first run made. A database with other data is refused, and so is one
whose seeding was interrupted (start from an empty one).

Over 1,000 lines because it is the whole script, one step per kind of act; the work is done by
the services it calls.
"""

from __future__ import annotations

import bisect
import csv
import io
import math
import random
import time as timer
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from issuers import awards, bulk, events, programs
from issuers.modules import CHECKUP_TYPES
from issuers.programs import ProgramStatus, YearEndDecision
from ledger import Ledger
from points import access, keys, people, pointtypes
from points.auth import Principal, Role
from points.calendar import TOKYO, add_months, end_of_month, fiscal_year, tokyo_date
from points.errors import Conflict
from points.jobs import run_job
from points.pointtypes import PointType
from points.registry import Department, Merchant, MerchantKind, Resident, StaffRole
from points.shell import city_data as data
from points.shell import wiring as _wiring  # noqa: F401  (registers the jobs run here)
from points.shell.city_record import DemoCity
from points.uow import unit_of_work
from redemption import cards, catalog, flows, merchants, payouts
from redemption.settlement_models import SettlementRun

#: The version of this script; a city records the one that seeded it.
GENERATOR = 1
DEFAULT_SEED = 2026
DEFAULT_RESIDENTS = 2_000
RESIDENTS_MIN = 30
RESIDENTS_MAX = 100_000
#: The label of the bearer tokens ``points demo`` prints; a later run revokes them.
DEMO_LABEL = "points demo"
#: What the acts of the script are recorded as coming through (a principal's token id).
VIA = "demo-city"
SYSTEM = access.SYSTEM

#: Shares of the residents: with a card and no phone; not taking part at all; households with
#: children (the monthly award); keen on the environment (clean-ups, the campaign).
CARD_SHARE, ABSENT_SHARE, CHILDREN_SHARE, GREEN_SHARE = 0.03, 0.07, 0.12, 0.15
#: Payments at shops a month per resident (at least ``PAYMENTS_MIN`` a month).
PAYMENTS_PER_RESIDENT, PAYMENTS_MIN = 0.06, 12
#: Of a phone's payments: payment QR, pay code, store QR.
PHONE_FLOWS = (("payment_qr", 0.5), ("pay_code", 0.38), ("store_qr", 0.12))
#: A payment is refunded (a few days later) with this probability.
REFUND_SHARE = 0.02
#: Checkups a fiscal year, by type: who may attend (ages in the year) and how likely they do.
CHECKUPS = {
    "specific_health_checkup": (40, 74, 0.35),
    "elderly_health_checkup": (75, 200, 0.30),
    "cancer_screening": (40, 200, 0.25),
    "dental_checkup": (20, 200, 0.12),
}
#: The campaign's waves: months after the history's first month, and the share of residents.
ECO_WAVES, ECO_SHARE, ECO_SPENDERS = (2, 7, 11), 0.15, 0.4
#: Residents at each clean-up, per resident of the city (at least 3).
CLEAN_UP_SHARE = 0.012
#: What the first two residents keep in their wallets, for the demo's sign-in.
KEEP = 500


# The city's model of itself ------------------------------------------------------------------


@dataclass(slots=True)
class Person:
    """A resident as the script knows them: who they are and what their wallets hold."""

    index: int
    address_number: str
    name: str
    birth_year: int
    #: "phone", "card" or "absent".
    kind: str
    children: bool = False
    green: bool = False
    pin: str | None = None
    card_ready: bool = False
    #: Set when the act that made the row has run.
    id: str = ""
    card_id: str = ""
    #: Per point type code: [valid until, points] sorted by date (the buckets, merged by date).
    lots: dict[str, list[list[Any]]] = field(default_factory=dict)
    #: Once-keys of checkups: (fiscal year, checkup type).
    checkups: set[tuple[int, str]] = field(default_factory=set)

    def available(self, code: str, day: date) -> int:
        return sum(amount for until, amount in self.lots.get(code, ()) if until >= day)

    def earn(self, code: str, until: date, amount: int) -> None:
        lots = self.lots.setdefault(code, [])
        for lot in lots:
            if lot[0] == until:
                lot[1] += amount
                return
        bisect.insort(lots, [until, amount])

    def take(self, code: str, amount: int, day: date) -> list[tuple[date, int]]:
        """Draw ``amount``, earliest expiry first (as ``points.spending.draw``)."""
        drawn = []
        for lot in self.lots.get(code, []):
            if amount == 0:
                break
            if lot[0] < day or lot[1] == 0:
                continue
            share = min(lot[1], amount)
            lot[1] -= share
            amount -= share
            drawn.append((lot[0], share))
        assert amount == 0, "the model spent more than the wallet holds"
        return drawn

    def give_back(self, code: str, drawn: list[tuple[date, int]], amount: int, day: date) -> None:
        """A refund: back to the dates drawn from, latest first; an expired share is lost."""
        for until, share in sorted(drawn, reverse=True):
            back = min(share, amount)
            amount -= back
            if back and until >= day:
                self.earn(code, until, back)


@dataclass(slots=True)
class ShopModel:
    spec: data.ShopSpec
    id: str = ""
    #: Per till: (till id, staff id, printed store QR).
    tills: list[tuple[str, str, str]] = field(default_factory=list)

    def principal(self, till: int) -> Principal:
        return Principal(Role.MERCHANT, self.tills[till][1], VIA, merchant_id=self.id)


@dataclass(slots=True)
class Paid:
    """A payment the script made, for a refund later."""

    key: int
    person: Person
    shop: ShopModel
    till: int
    code: str
    amount: int
    drawn: list[tuple[date, int]]
    day: date
    refunded: bool = False


@dataclass(frozen=True, slots=True)
class Seeded:
    record: DemoCity
    #: False when the city was there already and nothing was added.
    added: bool


# Seeding --------------------------------------------------------------------------------------


def seed_city(
    engine: Engine,
    ring: keys.KeyRing,
    origin: str,
    *,
    clock: Callable[[], datetime],
    seed: int = DEFAULT_SEED,
    residents: int = DEFAULT_RESIDENTS,
    progress: Callable[[str], None] | None = None,
) -> Seeded:
    """Seed the pilot city (see the module docstring), or find it seeded and add nothing."""
    if not RESIDENTS_MIN <= residents <= RESIDENTS_MAX:
        raise Conflict(f"a city has {RESIDENTS_MIN:,} to {RESIDENTS_MAX:,} residents")
    started = timer.perf_counter()
    now = clock()
    claimed = unit_of_work(engine, lambda session: _claim(session, now, seed, residents))
    if not claimed[1]:
        return Seeded(claimed[0], added=False)
    record = claimed[0]
    city = City(engine, ring, origin, seed=seed, size=residents, anchor=record.anchor_day)
    city.run(real_now=now, progress=progress)
    Ledger(engine, clock=clock).seal()
    finished = clock()
    duration = int((timer.perf_counter() - started) * 1000)

    def finish(session: Session) -> DemoCity:
        row = session.get(DemoCity, 1)
        assert row is not None
        row.finished_at, row.duration_ms = finished, duration
        session.add(row)
        return row

    return Seeded(unit_of_work(engine, finish), added=True)


def find_city(engine: Engine) -> DemoCity | None:
    return unit_of_work(engine, lambda session: session.get(DemoCity, 1), read_only=True)


def _claim(session: Session, now: datetime, seed: int, residents: int) -> tuple[DemoCity, bool]:
    """The city's record: found (and finished), or written now; refused on a database that holds
    other data or a seeding that did not finish."""
    found = session.get(DemoCity, 1)
    if found is not None:
        if found.finished_at is None:
            raise Conflict(
                f"the demo city's seeding of {found.anchor_day.isoformat()} did not finish "
                "(interrupted?); seed it again on an empty database (remove points.db, or set "
                "POINTS_DATABASE_URL to a new one)"
            )
        return found, False
    for model in (PointType, Department, Resident, Merchant):
        if session.exec(select(model.id).limit(1)).first() is not None:
            raise Conflict(
                "this database holds data that points demo did not make (point types, "
                "departments, residents or shops); the demo city needs an empty database "
                "(remove points.db, or set POINTS_DATABASE_URL to a new one)"
            )
    record = DemoCity(
        seed=seed,
        residents=residents,
        generator=GENERATOR,
        anchor_day=tokyo_date(now),
        started_at=now,
    )
    session.add(record)
    session.flush()
    return record, True


def at(day: date, hour: int, minute: int = 0, second: int = 0) -> datetime:
    """An instant of a Tokyo day, in UTC."""
    return datetime.combine(day, time(hour, minute, second), tzinfo=TOKYO).astimezone(UTC)


def _weekday_from(day: date) -> date:
    while day.weekday() >= 5:
        day += timedelta(days=1)
    return day


def _second_saturday(year: int, month: int) -> date:
    first = date(year, month, 1)
    return first + timedelta(days=(5 - first.weekday()) % 7 + 7)


def _poisson(rng: random.Random, mean: float) -> int:
    """A Poisson draw (Knuth's method; the means here are small)."""
    if mean <= 0:
        return 0
    if mean > 30:
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    limit, k, product = math.exp(-mean), 0, rng.random()
    while product > limit:
        k += 1
        product *= rng.random()
    return k


def make_people(rng: random.Random, size: int, anchor: date) -> list[Person]:
    """Who lives in the city: the first residents, then ``size`` in all with names, birth
    years, unique address numbers, how they take part, and the card holders' PINs."""
    made = [
        Person(index, number, name, born, kind)
        for index, (number, name, born, kind) in enumerate(data.FIRST_RESIDENTS)
    ]
    numbers = {person.address_number for person in made}
    last = anchor.year
    while len(made) < size:
        number = str(rng.randrange(1_000_100_000, 1_099_999_999))
        if number in numbers:
            continue
        numbers.add(number)
        # Komae is older than the country: about 60 % are 40 or older.
        born = int(rng.triangular(1930, last - 18, 1965))
        generation = max(g for g in data.GIVEN_NAMES if g <= max(born, 1930))
        women, men = data.GIVEN_NAMES[generation]
        given = rng.choice(women if rng.random() < 0.52 else men)
        name = f"{rng.choice(data.FAMILY_NAMES)} {given}"
        draw = rng.random()
        elderly = last - born >= 70
        if draw < (CARD_SHARE * 2.5 if elderly else CARD_SHARE * 0.3):
            kind = "card"
        elif draw > 1 - ABSENT_SHARE:
            kind = "absent"
        else:
            kind = "phone"
        made.append(Person(len(made), number, name, born, kind))
    for person in made:
        age = last - person.birth_year
        person.children = 28 <= age <= 48 and rng.random() < CHILDREN_SHARE * 3
        person.green = rng.random() < GREEN_SHARE
        if person.kind == "card":
            person.pin = _pin(rng, person)
    made[0].green = made[2].green = True
    made[2].children = False
    return made


def _pin(rng: random.Random, person: Person) -> str:
    while True:
        pin = f"{rng.randrange(10_000):04d}"
        if not cards.trivial_pin(pin, person.birth_year):
            return pin


Act = Callable[[Session], None]
Step = Callable[[datetime], None]
Plan = Callable[[datetime, Step], None]


class Plans:
    """A day's steps: each planned at its instant, carried out in time order (each step
    updates the script's model, then queues its acts)."""

    def __init__(self) -> None:
        self.steps: list[tuple[datetime, int, Step]] = []

    def add(self, instant: datetime, step: Step) -> None:
        self.steps.append((instant, len(self.steps), step))

    def carry_out(self) -> None:
        for instant, _seq, step in sorted(self.steps, key=lambda planned: planned[:2]):
            step(instant)


class City:
    """The script: plans each day's acts in time order on its model, and runs them."""

    def __init__(
        self, engine: Engine, ring: keys.KeyRing, origin: str, *, seed: int, size: int, anchor: date
    ) -> None:
        self.engine = engine
        self.ring = ring
        self.origin = origin
        self.signing = flows.Signing(ring, origin)
        self.card_signing = cards.CardSigning(ring, origin, ring)
        self.rng = random.Random(seed)
        self.size = size
        self.anchor = anchor
        self.start = self.history_start(anchor)
        self.pending: list[Act] = []
        self.ids: dict[str, str] = {}
        self.payment_ids: dict[int, str] = {}
        self.people = make_people(self.rng, size, anchor)
        self.spenders = [p for p in self.people if p.kind != "absent"]
        self.shops = [ShopModel(spec) for spec in data.SHOPS]
        self.counter = ShopModel(data.ShopSpec(*data.COUNTER_SHOP, "city", "", tills=1))
        self.by_category: dict[str, list[ShopModel]] = {}
        for shop in self.shops:
            self.by_category.setdefault(shop.spec.category, []).append(shop)
        self.eco_shops = [shop for shop in self.shops if shop.spec.eco]
        self.categories = list(data.CATEGORY_WEIGHTS)
        self.weights = list(data.CATEGORY_WEIGHTS.values())
        self.budgets: dict[tuple[str, int], int] = {}
        self.stock = {index: item[3] for index, item in enumerate(data.CATALOG)}
        self.taken: Counter[tuple[int, int, int]] = Counter()
        self.item_ids: list[str] = []
        self.events: dict[date, str] = {}
        self.paid: list[Paid] = []
        self.refunds: dict[date, list[tuple[Paid, int]]] = {}
        self.eco_spends: dict[date, list[Person]] = {}
        self.month_flows: Counter[str] = Counter()
        self.record_seq = 0
        self.keys_made = 0
        self.card_days: dict[date, list[Person]] = {}
        #: Card holders' payments of a day: (points, payments per shop).
        self.card_spent: Counter[tuple[int, date]] = Counter()
        self.card_shop: Counter[tuple[int, date, str]] = Counter()

    @staticmethod
    def history_start(anchor: date) -> date:
        """The first day of the history of a city anchored on ``anchor``."""
        return add_months(anchor, -12)

    @staticmethod
    def people_of(record: DemoCity) -> list[Person]:
        """The residents of a seeded city as the script knows them (their PINs too): the
        first draws of the city's random choices, made again."""
        return make_people(random.Random(record.seed), record.residents, record.anchor_day)

    # Running -----------------------------------------------------------------------------------

    def session_act(self, act: Act) -> None:
        self.pending.append(act)

    def flush(self) -> None:
        if self.pending:
            acts, self.pending = self.pending, []

            def work(session: Session) -> None:
                for act in acts:
                    act(session)

            unit_of_work(self.engine, work)

    def engine_act(self, act: Callable[[], Any]) -> None:
        self.flush()
        act()

    def run(self, *, real_now: datetime, progress: Callable[[str], None] | None) -> None:
        self._setup(at(self.start, 8, 30))
        day = self.start
        while day <= self.anchor:
            plans = Plans()
            self._night(day, plans.add, real_now)
            if day < self.anchor:
                self._plan_day(day, plans.add)
            plans.carry_out()
            self.flush()
            if day.day == 1 or day == self.start:
                self._analyze()
                if progress is not None:
                    progress(day.isoformat()[:7])
            day += timedelta(days=1)

    def _analyze(self) -> None:
        """On PostgreSQL, fresh planner statistics: the tables grow from nothing in seconds,
        faster than autovacuum notices, and stale statistics turn lookups into scans."""
        if self.engine.dialect.name == "postgresql":
            with self.engine.connect() as connection:
                connection.exec_driver_sql("ANALYZE")
                connection.commit()

    # Day one -----------------------------------------------------------------------------------

    def _setup(self, when: datetime) -> None:
        first_year = fiscal_year(self.start)

        def setup(session: Session) -> None:
            now = when
            ids = self.ids
            for role, name in (
                (StaffRole.ADMIN, data.ADMIN_NAME),
                (StaffRole.FINANCE, data.FINANCE_NAME),
                (StaffRole.COUNTER, data.COUNTER_NAME),
            ):
                ids[role.value] = people.create_staff(
                    session, SYSTEM, now, role=role, display_name=name
                ).id
            session.flush()
            admin = self.admin
            for code, name_ja, name_en, months in (data.PT, data.ECO):
                point_type = pointtypes.create_point_type(
                    session,
                    admin,
                    now,
                    pointtypes.NewPointType(
                        code=code, name_ja=name_ja, name_en=name_en, expiry_months=months
                    ),
                )
                ids[f"type:{code}"] = point_type.id
            for code, name_ja, name_en, officer in data.DEPARTMENTS:
                department = people.create_department(
                    session, admin, now, code=code, name_ja=name_ja, name_en=name_en
                )
                session.flush()
                ids[f"dep:{code}"] = department.id
                ids[f"issuer:{code}"] = people.create_staff(
                    session,
                    admin,
                    now,
                    role=StaffRole.ISSUER,
                    display_name=officer,
                    department_id=department.id,
                ).id
            for spec in data.PROGRAMS:
                config: dict[str, Any] = {}
                if spec.checkup_types:
                    config = {"checkup_types": list(spec.checkup_types)}
                program = programs.create_program(
                    session,
                    admin,
                    now,
                    programs.NewProgram(
                        department_id=ids[f"dep:{spec.department}"],
                        point_type_id=ids[f"type:{spec.point_type}"],
                        module=spec.module,
                        name_ja=spec.name_ja,
                        name_en=spec.name_en,
                        amount=spec.amount,
                        valid_from=self.start,
                        cap_per_month=spec.cap_per_month,
                        cap_per_fiscal_year=spec.cap_per_fiscal_year,
                        config=config,
                        budget_code=spec.budget_code,
                    ),
                )
                ids[f"program:{spec.key}"] = program.id
                programs.change_status(
                    session, admin, now, program.id, ProgramStatus.ACTIVE, reason="パイロット開始"
                )
            self._allocate(session, now, first_year)
            self._make_shops(session, now)
            counter = self.counter_principal
            for person in self.people:
                person.id = people.create_resident(
                    session,
                    counter,
                    now,
                    name=person.name,
                    address_number=person.address_number,
                    birth_year=person.birth_year,
                    verified=True,
                ).id

        self.engine_act(lambda: unit_of_work(self.engine, setup))
        for spec in data.PROGRAMS:
            self.budgets[(spec.key, first_year)] = self._budget_of(spec)
        # Card holders get their card at the counter in the first weeks (the first one at once).
        for person in self.people:
            if person.kind == "card":
                offset = 0 if person.index == 1 else self.rng.randrange(1, 45)
                self.card_days.setdefault(self.start + timedelta(days=offset), []).append(person)

    def _budget_of(self, spec: data.ProgramSpec) -> int:
        return spec.budget_per_resident * self.size

    def _allocate(self, session: Session, now: datetime, year: int) -> None:
        for spec in data.PROGRAMS:
            programs.allocate(
                session,
                self.finance,
                now,
                self.ids[f"program:{spec.key}"],
                year,
                self._budget_of(spec),
                reason=f"{year}年度 当初予算",
            )

    def _make_shops(self, session: Session, now: datetime) -> None:
        admin, finance = self.admin, self.finance
        rng = self.rng
        for shop in [*self.shops, self.counter]:
            spec = shop.spec
            counter = shop is self.counter
            merchant = people.create_merchant(
                session,
                admin,
                now,
                name_ja=spec.name_ja,
                name_en=spec.name_en,
                category=spec.category,
                kind=MerchantKind.COUNTER if counter else MerchantKind.SHOP,
            )
            session.flush()
            shop.id = merchant.id
            accepted = ["pt", "eco"] if spec.eco else ["pt"]
            merchants.change_settings(
                session,
                admin,
                now,
                merchant.id,
                merchants.SettingsChange(
                    accepted_point_types=accepted,
                    confirm_mode=(
                        merchants.ConfirmMode.AUTO_CONFIRM
                        if spec.auto_confirm_max
                        else merchants.ConfirmMode.CONFIRM_EACH
                    ),
                    auto_confirm_max=spec.auto_confirm_max,
                ),
                reason="加盟店登録",
            )
            if spec.fee_bps:
                merchants.set_fee(session, finance, now, merchant.id, spec.fee_bps, reason="契約")
            if not counter:
                payouts.set_bank_account(
                    session,
                    admin,
                    now,
                    merchant.id,
                    payouts.BankDetails(
                        rng.choice(("0005", "0009", "0001", "1345", "2285")),
                        f"{rng.randrange(100, 999):03d}",
                        "1",
                        f"{rng.randrange(1_000_000, 9_999_999):07d}",
                        spec.holder_kana,
                    ),
                    reason="加盟店登録",
                )
            for till in range(spec.tills):
                made = merchants.create_till(
                    session,
                    admin,
                    now,
                    merchant.id,
                    f"レジ{till + 1}",
                    keys=self.ring,
                    origin=self.origin,
                )
                shop.tills.append((made.till.id, made.till.staff_id, made.till.store_text))
            if counter:
                self.item_ids = []
                for name_ja, name_en, points, stock, limit in data.CATALOG:
                    item = catalog.create_item(
                        session,
                        admin,
                        now,
                        catalog.NewItem(
                            merchant_id=merchant.id,
                            point_type="pt",
                            name_ja=name_ja,
                            name_en=name_en,
                            points=points,
                            stock=stock,
                            per_resident_limit=limit,
                        ),
                    )
                    self.item_ids.append(item.id)

    # Principals --------------------------------------------------------------------------------

    @property
    def admin(self) -> Principal:
        return Principal(Role.ADMIN, self.ids["admin"], VIA)

    @property
    def finance(self) -> Principal:
        return Principal(Role.FINANCE, self.ids["finance"], VIA)

    @property
    def counter_principal(self) -> Principal:
        return Principal(Role.COUNTER, self.ids["counter"], VIA)

    def issuer(self, department: str) -> Principal:
        return Principal(
            Role.ISSUER,
            self.ids[f"issuer:{department}"],
            VIA,
            department_id=self.ids[f"dep:{department}"],
        )

    # Nights ------------------------------------------------------------------------------------

    def _night(
        self,
        day: date,
        plan: Plan,
        real_now: datetime,
    ) -> None:
        if day == self.start:
            return

        def when(hour: int, minute: int) -> datetime:
            # On the anchor day the night's jobs run no later than the seeding itself.
            instant = at(day, hour, minute)
            return min(instant, real_now) if day == self.anchor else instant

        if day.day != 1:
            return
        # The scheduler runs expiry every night at 00:10; points of both types are valid until a
        # month's end, so the nights of the 1st are the ones that find anything to expire.
        plan(when(0, 10), lambda now: self.engine_act(lambda: self._job("expiry", now)))
        plan(when(1, 0), lambda now: self.engine_act(lambda: self._job("settlement", now)))

    def _job(self, name: str, now: datetime) -> None:
        result = run_job(self.engine, name, as_of=now, clock=lambda: now, trigger="scheduler")
        assert result.status == "done", result

    # Days --------------------------------------------------------------------------------------

    def _plan_day(self, day: date, plan: Plan) -> None:
        rng = self.rng
        if day.day == 1:
            self.month_flows = Counter()
        weekday = day.weekday() < 5
        year, month = day.year, day.month
        first = date(year, month, 1)
        if day.month == 4 and day.day == 1 and day != self.start:
            plan(at(day, 9), self._new_fiscal_year)
        if day == _weekday_from(date(year, 4, 20)) and day.month == 4:
            plan(at(day, 10), self._year_end)
        if day == _weekday_from(first):
            plan(at(day, 9, 30), self._restock)
        if day == _weekday_from(first + timedelta(days=4)):
            plan(at(day, 10), self._children_file)
            plan(at(day, 11), self._transfer_file)
        if day == _weekday_from(first + timedelta(days=9)):
            plan(at(day, 14), self._health_file)
            plan(at(day, 15), self._mark_paid)
        offset = (year - self.start.year) * 12 + month - self.start.month
        if offset in ECO_WAVES and day == _weekday_from(first + timedelta(days=14)):
            plan(at(day, 10, 30), self._eco_wave)
        event_day = _second_saturday(year, month)
        if self.start < event_day < self.anchor and day == max(
            event_day - timedelta(days=7), self.start
        ):
            plan(at(day, 10, 15), self._event_maker(event_day))
        if day == event_day and day in self.events:
            for person in self._clean_up_crew():
                minute = rng.randrange(0, 45)
                plan(at(day, 8, 30 + minute // 2, rng.randrange(60)), self._check_in(person))
        for person in self.card_days.get(day, ()):
            plan(at(day, 10, rng.randrange(60)), self._issue_card(person))
        if weekday:
            for _ in range(_poisson(rng, self._dental_rate())):
                plan(self._daytime(day, 9, 17), self._dental)
        payments = self._payments_today(day)
        for _ in range(payments):
            plan(self._daytime(day, 9, 20), self._payment)
        for person in self.eco_spends.pop(day, ()):
            plan(self._daytime(day, 9, 20), self._eco_payment(person))
        for paid, amount in self.refunds.pop(day, ()):
            plan(self._daytime(day, 10, 19), self._refund(paid, amount))
        for _ in range(_poisson(rng, max(0.3, self.size * 0.006) / 30 * 7 / 5 if weekday else 0)):
            plan(self._daytime(day, 9, 17), self._exchange)
        if day.day == 25:
            # What the month has not shown yet, so that every flow is in every month.
            plan(at(day, 16), self._month_complete)

    def _daytime(self, day: date, start: int, end: int) -> datetime:
        seconds = self.rng.randrange(start * 3600, end * 3600)
        return at(day, seconds // 3600, seconds % 3600 // 60, seconds % 60)

    def _payments_today(self, day: date) -> int:
        monthly = max(PAYMENTS_MIN, self.size * PAYMENTS_PER_RESIDENT)
        days = end_of_month(day.year, day.month).day
        mean = monthly / days * (1.3 if day.weekday() >= 5 else 0.88)
        return _poisson(self.rng, mean)

    def _dental_rate(self) -> float:
        return self.size * 0.95 * CHECKUPS["dental_checkup"][2] / 245

    # Budgets -----------------------------------------------------------------------------------

    def _new_fiscal_year(self, now: datetime) -> None:
        year = fiscal_year(tokyo_date(now))
        for spec in data.PROGRAMS:
            self.budgets[(spec.key, year)] = self.budgets.get(
                (spec.key, year), 0
            ) + self._budget_of(spec)
        self.session_act(lambda session: self._allocate(session, now, year))

    def _year_end(self, now: datetime) -> None:
        year = fiscal_year(tokyo_date(now)) - 1
        decided = []
        for spec in data.PROGRAMS:
            if (spec.key, year) not in self.budgets:
                continue
            remaining = self.budgets.pop((spec.key, year))
            if spec.year_end == "carry_over":
                self.budgets[(spec.key, year + 1)] = (
                    self.budgets.get((spec.key, year + 1), 0) + remaining
                )
            decided.append(spec)

        def act(session: Session) -> None:
            for spec in decided:
                programs.close_budget(
                    session,
                    self.finance,
                    now,
                    self.ids[f"program:{spec.key}"],
                    year,
                    YearEndDecision(spec.year_end),
                    reason=f"{year}年度 決算",
                )

        self.session_act(act)

    def _charge(self, spec: data.ProgramSpec, day: date, amount: int) -> bool:
        """Whether the budget of the event's fiscal year has ``amount`` left (then it is used)."""
        key = (spec.key, fiscal_year(day))
        if self.budgets.get(key, 0) < amount:
            return False
        self.budgets[key] -= amount
        return True

    def _earn(self, person: Person, spec: data.ProgramSpec, earned_on: date) -> None:
        months = data.PT[3] if spec.point_type == "pt" else data.ECO[3]
        until = end_of_month(earned_on.year, earned_on.month + months)
        person.earn(spec.point_type, until, spec.amount)

    def _record(self, prefix: str) -> str:
        self.record_seq += 1
        return f"{prefix}-{self.record_seq:06d}"

    # Awards ------------------------------------------------------------------------------------

    def _upload(
        self,
        now: datetime,
        spec: data.ProgramSpec,
        rows: list[dict[str, str]],
        filename: str,
        encoding: str = "utf-8",
    ) -> None:
        if not rows:
            return
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\r\n")
        writer.writeheader()
        writer.writerows(rows)
        content = out.getvalue().encode(encoding)
        issuer = self.issuer(spec.department)
        program_id = self.ids[f"program:{spec.key}"]

        def act() -> None:
            result = bulk.upload(
                self.engine,
                issuer,
                lambda: now,
                program_id,
                content,
                department_id=issuer.department_id,
                filename=filename,
            )
            assert result.upload.awarded == len(rows), result.upload

        self.engine_act(act)

    def _children_file(self, now: datetime) -> None:
        today = tokyo_date(now)
        occurred = max(today.replace(day=1), self.start)
        rows = []
        for person in self.people:
            if person.children and self._charge(data.CHILDREN, occurred, data.CHILDREN.amount):
                self._earn(person, data.CHILDREN, today)
                rows.append(
                    {
                        "address_number": person.address_number,
                        "record_id": f"KOSODATE-{occurred:%Y%m}-{person.address_number}",
                        "occurred_on": occurred.isoformat(),
                    }
                )
        self._upload(now, data.CHILDREN, rows, f"子育て応援ポイント_{occurred:%Y%m}.csv")

    def _health_file(self, now: datetime) -> None:
        """The clinics' checkups of the month before (not dental: reported one by one)."""
        today = tokyo_date(now)
        month_end = today.replace(day=1) - timedelta(days=1)
        month_start = max(month_end.replace(day=1), self.start)
        if month_start > month_end:
            return
        days = (month_end - month_start).days + 1
        rng = self.rng
        rows = []
        for person in self.people:
            for checkup, (youngest, oldest, chance) in CHECKUPS.items():
                if checkup == "dental_checkup":
                    continue
                occurred = month_start + timedelta(days=rng.randrange(days))
                year = fiscal_year(occurred)
                if not youngest <= year - person.birth_year <= oldest:
                    continue
                if (year, checkup) in person.checkups:
                    continue
                forced = person.index < 2 and occurred.month in (5, 6, 11, 12)
                if not forced and rng.random() >= chance / 12:
                    continue
                if not self._charge(data.CHECKUP, occurred, data.CHECKUP.amount):
                    continue
                person.checkups.add((year, checkup))
                self._earn(person, data.CHECKUP, today)
                rows.append(
                    {
                        "address_number": person.address_number,
                        "record_id": self._record("KENSHIN"),
                        "occurred_on": occurred.isoformat(),
                        "checkup_type": data_checkup_name(checkup),
                    }
                )
        self._upload(now, data.CHECKUP, rows, f"健診受診者_{month_end:%Y%m}.csv", encoding="cp932")

    def _dental(self, now: datetime) -> None:
        """A dental clinic reports a checkup through the API: a single award."""
        today = tokyo_date(now)
        year = fiscal_year(today)
        for _ in range(10):
            person = self.rng.choice(self.people)
            if year - person.birth_year >= 20 and (year, "dental_checkup") not in person.checkups:
                break
        else:
            return
        if not self._charge(data.CHECKUP, today, data.CHECKUP.amount):
            return
        person.checkups.add((year, "dental_checkup"))
        self._earn(person, data.CHECKUP, today)
        request = awards.AwardRequest(
            self.ids["program:checkup"],
            None,
            self._record("DENTAL"),
            {"checkup_type": "dental_checkup"},
            occurred_on=today,
            address_number=person.address_number,
        )
        issuer = self.issuer("health")
        self.session_act(
            lambda session: _award(session, issuer, now, request, issuer.department_id)
        )

    def _eco_wave(self, now: datetime) -> None:
        today = tokyo_date(now)
        rng = self.rng
        until = end_of_month(today.year, today.month + data.ECO[3])
        rows = []
        for person in self.spenders:
            chance = ECO_SHARE * (2.5 if person.green else 0.75)
            if person.kind != "phone" or rng.random() >= chance:
                continue
            if not self._charge(data.ECO_CHALLENGE, today, data.ECO_CHALLENGE.amount):
                continue
            self._earn(person, data.ECO_CHALLENGE, today)
            rows.append(
                {
                    "address_number": person.address_number,
                    "record_id": f"ECO-{today:%Y%m}-{person.address_number}",
                }
            )
            if rng.random() < ECO_SPENDERS:
                spend_on = today + timedelta(days=rng.randrange(1, (until - today).days + 1))
                if spend_on < self.anchor:
                    self.eco_spends.setdefault(spend_on, []).append(person)
        self._upload(now, data.ECO_CHALLENGE, rows, f"こまエコ参加者_{today:%Y%m}.csv")

    def _event_maker(self, event_day: date) -> Step:
        return lambda now: self._create_event(now, event_day)

    def _create_event(self, now: datetime, event_day: date) -> None:
        issuer = self.issuer("environment")
        program_id = self.ids["program:clean_up"]
        capacity = max(10, round(self.size * CLEAN_UP_SHARE * 2))

        def act(session: Session) -> None:
            event = events.create_event(
                session,
                issuer,
                now,
                events.NewEvent(
                    program_id=program_id,
                    name=f"多摩川清掃 {event_day.month}月",
                    place="多摩川河川敷 (猪方 水辺の楽校前)",
                    starts_at=at(event_day, 9),
                    ends_at=at(event_day, 11),
                    opens_at=at(event_day, 8, 30),
                    closes_at=at(event_day, 11, 30),
                    capacity=capacity,
                ),
                department_id=issuer.department_id,
            )
            self.ids[f"event:{event_day.isoformat()}"] = event.id

        self.events[event_day] = f"event:{event_day.isoformat()}"
        self.session_act(act)

    def _clean_up_crew(self) -> list[Person]:
        rng = self.rng
        wanted = max(3, round(self.size * CLEAN_UP_SHARE))
        green = [p for p in self.people if p.green and p.kind == "phone"]
        crew = rng.sample(green, min(len(green), wanted))
        if self.people[0] not in crew and rng.random() < 0.7:
            crew.append(self.people[0])
        return crew

    def _check_in(self, person: Person) -> Step:
        def step(now: datetime) -> None:
            day = tokyo_date(now)
            if not self._charge(data.CLEAN_UP, day, data.CLEAN_UP.amount):
                return
            self._earn(person, data.CLEAN_UP, day)
            event_key = self.events[day]

            def act(session: Session) -> None:
                event = session.get(events.VolunteerEvent, self.ids[event_key])
                assert event is not None
                text, _seconds = events.current_token(event, self.ring, now, origin=self.origin)
                caller = Principal(Role.RESIDENT, person.id, VIA)
                events.check_in_with_token(
                    session,
                    caller,
                    now,
                    text,
                    keys=self.ring,
                    origin=self.origin,
                    resident_id=person.id,
                )

            self.session_act(act)

        return step

    # Cards -------------------------------------------------------------------------------------

    def _issue_card(self, person: Person) -> Step:
        def step(now: datetime) -> None:
            person.card_ready = True
            assert person.pin is not None
            pin = person.pin

            def act(session: Session) -> None:
                made = cards.issue_card(
                    session, self.counter_principal, now, person.id, pin, signing=self.card_signing
                )
                person.card_id = made.card.id

            self.session_act(act)

        return step

    def _check_pin(self, now: datetime, person: Person, shop: ShopModel, till: int) -> None:
        till_id, staff_id, _store = shop.tills[till]
        assert person.pin is not None
        pin = person.pin
        self.engine_act(
            lambda: cards.verify_pin(
                self.engine,
                now,
                person.card_id,
                pin,
                staff_id=staff_id,
                till_id=till_id,
                pepper=self.ring.pin_pepper(),
            )
        )

    # Paying ------------------------------------------------------------------------------------

    def _spendable(self, person: Person, code: str, day: date) -> int:
        keep = KEEP if person.index < 2 and code == "pt" else 0
        return person.available(code, day) - keep

    def _pick_payer(self, day: date, flow: str | None = None) -> Person | None:
        for _ in range(25):
            person = self.rng.choice(self.spenders)
            if person.kind == "card" and not person.card_ready:
                continue
            if flow == "card" and person.kind != "card":
                continue
            if flow is not None and flow != "card" and person.kind != "phone":
                continue
            if self._spendable(person, "pt", day) >= 100:
                return person
        return None

    def _pick_shop(self) -> tuple[ShopModel, int]:
        category = self.rng.choices(self.categories, self.weights)[0]
        shop = self.rng.choice(self.by_category[category])
        return shop, self.rng.randrange(len(shop.tills))

    def _price(self, shop: ShopModel) -> int:
        low, high = data.PRICES[shop.spec.category]
        return self.rng.randrange(low // 10, high // 10 + 1) * 10

    def _payment(self, now: datetime, flow: str | None = None, decline: bool = False) -> None:
        day = tokyo_date(now)
        person = self._pick_payer(day, flow)
        if person is None:
            return
        if flow is None:
            flow = (
                "card"
                if person.kind == "card"
                else self.rng.choices(
                    [name for name, _ in PHONE_FLOWS], [share for _, share in PHONE_FLOWS]
                )[0]
            )
        shop, till = self._pick_shop()
        if flow == "store_qr" and decline:
            shop, till = self._confirming_shop()
        amount = min(self._price(shop), self._spendable(person, "pt", day))
        if flow == "card" and not self._card_allows(person, day, shop, amount):
            return
        self._pay(now, person, shop, till, "pt", amount, flow, decline=decline)

    def _card_allows(self, person: Person, day: date, shop: ShopModel, amount: int) -> bool:
        """Whether the card's limits of the day (``redemption.cards``, the defaults) allow it."""
        return (
            self.card_spent[(person.index, day)] + amount <= cards.CARD_DAILY_LIMIT_DEFAULT
            and self.card_shop[(person.index, day, shop.id)] < cards.CARD_PAYMENTS_PER_SHOP_DEFAULT
        )

    def _confirming_shop(self) -> tuple[ShopModel, int]:
        shop = self.rng.choice([s for s in self.shops if not s.spec.auto_confirm_max])
        return shop, self.rng.randrange(len(shop.tills))

    def _eco_payment(self, person: Person) -> Step:
        def step(now: datetime) -> None:
            day = tokyo_date(now)
            available = person.available("eco", day)
            if available <= 0:
                return
            shop = self.rng.choice(self.eco_shops)
            till = self.rng.randrange(len(shop.tills))
            amount = min(self._price(shop), available)
            flow = "payment_qr" if self.rng.random() < 0.6 else "pay_code"
            self._pay(now, person, shop, till, "eco", amount, flow)

        return step

    def _pay(
        self,
        now: datetime,
        person: Person,
        shop: ShopModel,
        till: int,
        code: str,
        amount: int,
        flow: str,
        *,
        decline: bool = False,
    ) -> None:
        day = tokyo_date(now)
        key = self.keys_made
        self.keys_made += 1
        reference = f"R{day:%m%d}-{self.rng.randrange(1, 9999):04d}"
        caller = shop.principal(till)
        signing = self.signing
        held = flow == "store_qr" and not (
            shop.spec.auto_confirm_max and amount <= shop.spec.auto_confirm_max
        )
        if decline:
            # The amount typed is not the receipt's: the till declines it (the points held go
            # back), and the resident pays again by payment QR.
            assert held
        self.month_flows["declined" if decline else flow] += 1
        drawn = [] if decline else person.take(code, amount, day)
        if flow == "card":
            self.card_spent[(person.index, day)] += amount
            self.card_shop[(person.index, day, shop.id)] += 1
            self._check_pin(now, person, shop, till)
        payment_ids = self.payment_ids

        def act(session: Session) -> None:
            if flow == "payment_qr":
                request = flows.create_request(
                    session,
                    caller,
                    now,
                    amount=amount,
                    point_type=code,
                    reference=reference,
                    signing=signing,
                )
                paid = flows.pay(
                    session,
                    person.id,
                    now + timedelta(seconds=20),
                    request.request.token,
                    amount=None,
                    point_type=None,
                    signing=signing,
                )
            elif flow == "pay_code":
                shown = flows.issue_pay_code(session, person.id, now, signing=signing)
                paid = flows.pay_by_code(
                    session,
                    caller,
                    now + timedelta(seconds=15),
                    shown.text,
                    amount=amount,
                    point_type=code,
                    reference=reference,
                    signing=signing,
                )
            elif flow == "store_qr":
                paid = flows.pay(
                    session,
                    person.id,
                    now,
                    shop.tills[till][2],
                    amount=amount,
                    point_type=code,
                    signing=signing,
                )
                if held and decline:
                    flows.decline(session, caller, now + timedelta(seconds=40), paid.payment.id)
                elif held:
                    flows.confirm(session, caller, now + timedelta(seconds=40), paid.payment.id)
            else:
                paid = flows.pay_by_card(
                    session,
                    caller,
                    now + timedelta(seconds=10),
                    person.card_id,
                    amount=amount,
                    point_type=code,
                    reference=reference,
                )
            payment_ids[key] = paid.payment.id

        self.session_act(act)
        if decline or code != "pt":
            return
        record = Paid(key, person, shop, till, code, amount, drawn, day)
        self.paid.append(record)
        if self.rng.random() < REFUND_SHARE:
            self._schedule_refund(record, day + timedelta(days=self.rng.randrange(1, 6)))

    def _schedule_refund(self, paid: Paid, when: date, *, partial: bool | None = None) -> None:
        """A refund of ``paid`` on ``when`` (full, or half of it), if that is in the history."""
        if paid.refunded or when >= self.anchor:
            return
        if partial is None:
            partial = self.rng.random() < 0.5
        if partial and paid.amount < 20:
            partial = False
        amount = (paid.amount // 2 // 10 * 10 or 1) if partial else paid.amount
        paid.refunded = True
        self.refunds.setdefault(when, []).append((paid, amount))

    def _refund(self, paid: Paid, amount: int) -> Step:
        def step(now: datetime) -> None:
            paid.person.give_back(paid.code, paid.drawn, amount, tokyo_date(now))
            self.month_flows["refund_full" if amount == paid.amount else "refund_partial"] += 1
            caller = paid.shop.principal(paid.till)
            reason = "返品" if amount == paid.amount else "一部返品"

            def act(session: Session) -> None:
                flows.refund(
                    session, caller, now, self.payment_ids[paid.key], amount, reason=reason
                )

            self.session_act(act)

        return step

    # The counter -------------------------------------------------------------------------------

    def _exchange(self, now: datetime, by_card: bool | None = None) -> None:
        day = tokyo_date(now)
        rng = self.rng
        year = fiscal_year(day)
        if by_card is None:
            by_card = rng.random() < 0.15
        person = self._pick_payer(day, "card" if by_card else "phone")
        if person is None:
            return
        choices = [
            index
            for index, (_ja, _en, points, _stock, limit) in enumerate(data.CATALOG)
            if self.stock[index] >= 1
            and points <= self._spendable(person, "pt", day)
            and (limit is None or self.taken[(index, person.index, year)] < limit)
        ]
        if not choices:
            return
        index = rng.choice(choices)
        points = data.CATALOG[index][2]
        if by_card:
            if not self._card_allows(person, day, self.counter, points):
                return
            self.card_spent[(person.index, day)] += points
            self.card_shop[(person.index, day, self.counter.id)] += 1
        self.stock[index] -= 1
        self.taken[(index, person.index, year)] += 1
        person.take("pt", points, day)
        self.month_flows["exchange_card" if by_card else "exchange"] += 1
        item_index = index
        if by_card:
            self._check_pin(now, person, self.counter, 0)
            caller = self.counter.principal(0)

            def by_card_act(session: Session) -> None:
                flows.exchange_by_card(
                    session,
                    caller,
                    now + timedelta(seconds=10),
                    person.card_id,
                    item_id=self.item_ids[item_index],
                    quantity=1,
                )

            self.session_act(by_card_act)
            return

        def in_wallet(session: Session) -> None:
            flows.exchange_in_wallet(session, person.id, now, self.item_ids[item_index], 1)

        self.session_act(in_wallet)

    def _restock(self, now: datetime) -> None:
        deliveries = []
        for index, (_ja, _en, _points, first, _limit) in enumerate(data.CATALOG):
            if self.stock[index] < 20:
                delta = max(first, 40)
                self.stock[index] += delta
                deliveries.append((index, delta))
        if not deliveries:
            return
        counter = self.counter_principal

        def act(session: Session) -> None:
            for index, delta in deliveries:
                catalog.adjust_stock(session, counter, now, self.item_ids[index], delta, "入荷")

        self.session_act(act)

    # Settlement --------------------------------------------------------------------------------

    def _transfer_file(self, now: datetime) -> None:
        day = tokyo_date(now)
        period = f"{(day.replace(day=1) - timedelta(days=1)):%Y-%m}"
        if day.replace(day=1) - timedelta(days=1) < self.start:
            return
        transfer_on = _weekday_from(day.replace(day=10))
        finance = self.finance

        def act(session: Session) -> None:
            run = session.exec(select(SettlementRun).where(SettlementRun.period == period)).one()
            payouts.make_transfers(session, finance, now, run.id, transfer_on)

        self.session_act(act)

    def _mark_paid(self, now: datetime) -> None:
        day = tokyo_date(now)
        if day.replace(day=1) - timedelta(days=1) < self.start:
            return
        period = f"{(day.replace(day=1) - timedelta(days=1)):%Y-%m}"
        finance = self.finance

        def act(session: Session) -> None:
            run = session.exec(select(SettlementRun).where(SettlementRun.period == period)).one()
            assert run.transfer_on is not None
            payouts.mark_paid(session, finance, now, run.id, payout_date=run.transfer_on)

        self.session_act(act)

    # Every flow, every month -------------------------------------------------------------------

    def _month_complete(self, now: datetime) -> None:
        seen = self.month_flows
        step = timedelta(minutes=3)
        for flow in ("payment_qr", "pay_code", "store_qr", "card"):
            if not seen[flow]:
                self._payment(now, flow)
                now += step
        self._payment(now, "store_qr", decline=True)
        now += step
        if not seen["exchange"]:
            self._exchange(now, by_card=False)
            now += step
        if not seen["exchange_card"]:
            self._exchange(now, by_card=True)
            now += step
        day = tokyo_date(now)
        recent = [
            p
            for p in self.paid[-200:]
            if p.amount >= 20 and not p.refunded and (day - p.day).days < 30
        ]
        for kind, partial in (("refund_full", False), ("refund_partial", True)):
            if not seen[kind] and recent:
                paid = self.rng.choice(recent)
                recent.remove(paid)
                self._schedule_refund(paid, day + timedelta(days=1), partial=partial)


def data_checkup_name(code: str) -> str:
    """A checkup type as a department's spreadsheet writes it: its Japanese name."""
    return CHECKUP_TYPES[code][0]


def _award(
    session: Session,
    issuer: Principal,
    now: datetime,
    request: awards.AwardRequest,
    department_id: str | None,
) -> None:
    result = awards.award(session, issuer, now, request, department_id=department_id)
    assert not result.replayed
