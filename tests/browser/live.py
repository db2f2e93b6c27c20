"""A real ``points serve`` on a free port of 127.0.0.1, and a city seeded in its database.

``serving(backend, request, directory)`` takes a fresh migrated database from the suite's
templates (``tests/conftest.py``: a copy of the migrated SQLite template file, or ``CREATE
DATABASE ... TEMPLATE`` of the migrated PostgreSQL template), creates the QR signing key, starts
``points serve`` with the database, the keys and the public origin it is really served at (QR
tokens are signed for that origin), waits for ``/readyz`` and stops it with SIGTERM at the end
(as ``bench/pay.py`` does).

``City`` is seeded through the services the API uses, directly on the engine, while the server
runs: the point type ``pt``, a department, fixed-award programs, a volunteering program with an
open check-in event, and a shop accepting ``pt`` with one till (its token and printed store QR).
``City.new_resident(points)`` is a verified resident with ``points`` awarded and a fresh counter
code; the shop's side calls the real HTTP API with the till's bearer token. For the staff app's
till: ``City.device_code()`` is a one-time device code of the till (``points.access``), and
``new_till``, ``new_card``, ``revoke_device_sessions``, ``lapse_device_sessions`` and
``statement_of_last_month`` make what its tests need.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

import ledger
from issuers import awards, events, programs
from ledger.service import system_clock
from points import access, keys, people, pointtypes, wallets
from points.auth import DeviceCode, Principal, Role, Token
from points.calendar import fiscal_year, tokyo_date
from points.registry import Merchant, MerchantKind, StaffRole
from points.settings import DEVELOPMENT_SECRET_KEY
from points.uow import unit_of_work
from redemption import cards, catalog, flows, merchants, settlement
from redemption.settlement_models import RunTrigger

T = TypeVar("T")
HOST = "127.0.0.1"
ROOT = Path(__file__).resolve().parents[2]
SYSTEM = access.SYSTEM
POINT_TYPE = "pt"


def merchant_taking_pt(
    session: Session,
    now: datetime,
    name_ja: str,
    name_en: str,
    category: str,
    kind: MerchantKind = MerchantKind.SHOP,
) -> Merchant:
    """A new merchant (a shop, or a city counter) that takes the city's type ``pt``, made as an
    admin's requests make one."""
    merchant = people.create_merchant(
        session, SYSTEM, now, name_ja=name_ja, name_en=name_en, category=category, kind=kind
    )
    session.flush()
    merchants.change_settings(
        session,
        SYSTEM,
        now,
        merchant.id,
        merchants.SettingsChange(accepted_point_types=[POINT_TYPE]),
        reason="browser tests",
    )
    return merchant


def item_of(
    session: Session, now: datetime, counter_id: str, name_ja: str, name_en: str, **item: Any
) -> str:
    """A new catalog item of the city counter ``counter_id`` taking ``pt`` (``item``: points,
    stock and any other field of ``catalog.NewItem``): its id."""
    made = catalog.create_item(
        session,
        SYSTEM,
        now,
        catalog.NewItem(
            merchant_id=counter_id,
            point_type=POINT_TYPE,
            name_ja=name_ja,
            name_en=name_en,
            **item,
        ),
    )
    session.flush()
    return made.id


SHOP_NAME_JA = "狛江珈琲店"
SHOP_NAME_EN = "Komae Coffee"
TILL_NAME = "レジ1"
PROGRAM_NAME_JA = "特別給付ポイント"
PROGRAM_NAME_EN = "Special award"
EVENT_NAME = "多摩川清掃"
EVENT_POINTS = 300
#: Enough for every award the browser tests make, in every fiscal year they touch.
BUDGET = 10**12


# The server ---------------------------------------------------------------------------------


@dataclass
class Server:
    backend: str
    port: int
    #: ``http://127.0.0.1:PORT``: the public origin too (``POINTS_PUBLIC_URL``).
    url: str
    database_url: str
    engine: Engine
    key_dir: Path
    log: Path

    def log_tail(self, characters: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-characters:]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def server_env(database_url: str, key_dir: Path, origin: str) -> dict[str, str]:
    path = os.environ.get("PYTHONPATH")
    env = {
        name: value
        for name, value in os.environ.items()
        # The developer's own settings never leak in; ours are below.
        if not name.startswith("POINTS_")
    }
    return {
        **env,
        "POINTS_DATABASE_URL": database_url,
        "POINTS_KEY_DIR": str(key_dir),
        "POINTS_PUBLIC_URL": origin,
        "POINTS_ENVIRONMENT": "development",
        "POINTS_SELF_ENROLMENT": "true",
        # One browser makes more attempts from one address than any person.
        "POINTS_RATE_LIMIT_SELF_ENROLMENTS_PER_ADDRESS": "1000000",
        "POINTS_RATE_LIMIT_CODE_ATTEMPTS_PER_ADDRESS": "1000000",
        "POINTS_RATE_LIMIT_CODES_PER_COUNTER": "1000000",
        # No scheduled job runs under the tests' feet (expiry, hold timeouts, sealing).
        "POINTS_JOBS_ENABLED": "false",
        "PYTHONPATH": str(ROOT) + (os.pathsep + path if path else ""),
    }


def _points_command() -> list[str]:
    script = shutil.which("points", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "points.shell.cli"]


def _ready(port: int) -> bool:
    connection = http.client.HTTPConnection(HOST, port, timeout=5)
    try:
        connection.request("GET", "/readyz")
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


@contextmanager
def serving(backend: str, request: pytest.FixtureRequest, directory: Path) -> Iterator[Server]:
    """A fresh migrated database of ``backend`` and ``points serve`` on it (see the module)."""
    from conftest import new_database_url  # tests/conftest.py: the migrated templates

    urls = new_database_url(backend, request, directory)
    database_url = next(urls)
    engine = ledger.create_engine(database_url)
    key_dir = directory / "keys"
    keys.ensure_key(key_dir, system_clock())
    port = free_port()
    origin = f"http://{HOST}:{port}"
    log = directory / f"points-serve-{backend}.log"
    try:
        with log.open("wb") as output:
            process = subprocess.Popen(
                [*_points_command(), "serve", "--host", HOST, "--port", str(port)],
                env=server_env(database_url, key_dir, origin),
                cwd=directory,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        try:
            deadline = time.monotonic() + 60
            while not _ready(port):
                if process.poll() is not None or time.monotonic() > deadline:
                    tail = log.read_text(errors="replace")[-3000:]
                    raise RuntimeError(f"points serve did not start ({process.poll()}):\n{tail}")
                time.sleep(0.05)
            yield Server(backend, port, origin, database_url, engine, key_dir, log)
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    finally:
        engine.dispose()
        urls.close()


# Plain HTTP calls ---------------------------------------------------------------------------


@dataclass
class Answer:
    status: int
    body: Any
    headers: dict[str, str]


def call(
    url: str,
    method: str,
    path: str,
    *,
    body: Any = None,
    token: str | None = None,
    headers: dict[str, str] | None = None,
    idempotent: bool = False,
) -> Answer:
    """One request to the live server (the standard library's client); JSON in, JSON out."""
    port = int(url.rsplit(":", 1)[1])
    sent = dict(headers or {})
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    if idempotent:
        sent["Idempotency-Key"] = f"browser-{uuid.uuid4()}"
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        sent["Content-Type"] = "application/json"
    connection = http.client.HTTPConnection(HOST, port, timeout=30)
    try:
        connection.request(method, path, body=data, headers=sent)
        response = connection.getresponse()
        raw = response.read()
        kind = response.getheader("content-type", "")
        parsed: Any = json.loads(raw) if raw and "json" in kind else raw.decode(errors="replace")
        return Answer(response.status, parsed, {k.lower(): v for k, v in response.getheaders()})
    finally:
        connection.close()


def expect_status(answer: Answer, status: int, what: str) -> Any:
    assert answer.status == status, f"{what}: {answer.status} {answer.body}"
    return answer.body


# The city -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Resident:
    id: str
    #: A fresh 15-minute counter code, as the counter prints it (``ABCD-EF23-45``).
    counter_code: str
    #: A bearer token of the resident's own, for the tests' checks through the API (the app
    #: itself uses its cookie session).
    token: str

    def __iter__(self) -> Iterator[str]:
        """``resident_id, counter_code = city.new_resident(...)``."""
        return iter((self.id, self.counter_code))


@dataclass
class City:
    server: Server
    point_type_id: str
    department_id: str
    merchant_id: str
    till_id: str
    till_token: str
    #: The till's printed store QR text.
    store_qr: str
    volunteering_program_id: str
    event_id: str
    _award_programs: dict[tuple[int, bool], str] = field(default_factory=dict)

    # Direct access to the services ------------------------------------------------------

    def write(self, work: Callable[[Session], T]) -> T:
        return unit_of_work(self.server.engine, work)

    def read(self, work: Callable[[Session], T]) -> T:
        return unit_of_work(self.server.engine, work, read_only=True)

    # Residents --------------------------------------------------------------------------

    def new_resident(self, points: int = 0, *, expiring: int = 0) -> Resident:
        """A new verified resident with ``points`` awarded today (valid for a year) and
        ``expiring`` more awarded a year ago (expiring at the end of this month, so that the
        app announces them), and a fresh counter code."""
        now = system_clock()

        def work(session: Session) -> Resident:
            resident = people.create_resident(
                session,
                SYSTEM,
                now,
                name="試験 住民",
                address_number=str(1_000_000_000 + uuid.uuid4().int % 8_999_999_999),
                birth_year=1980,
                verified=True,
            )
            session.flush()
            _, code = access.create_enrolment_code(
                session, SYSTEM, now, resident.id, secret_key=DEVELOPMENT_SECRET_KEY.encode()
            )
            token = access.issue_token(
                session, SYSTEM, now, role=Role.RESIDENT, principal_id=resident.id, label="tests"
            ).secret
            return Resident(resident.id, f"{code[:4]}-{code[4:8]}-{code[8:]}", token)

        made = self.write(work)
        if expiring:
            self.award(made.id, expiring, at=_a_year_before(now))
        if points:
            self.award(made.id, points)
        return made

    def counter_code(self, resident_id: str) -> str:
        """Another fresh counter code for the resident (a second phone)."""
        now = system_clock()
        code = self.write(
            lambda session: access.create_enrolment_code(
                session, SYSTEM, now, resident_id, secret_key=DEVELOPMENT_SECRET_KEY.encode()
            )[1]
        )
        return f"{code[:4]}-{code[4:8]}-{code[8:]}"

    def award(self, resident_id: str, points: int, *, at: datetime | None = None) -> None:
        """``points`` by a fixed-award program of that amount, as of ``at`` (now)."""
        now = at or system_clock()
        backdated = at is not None
        program = self._award_programs.get((points, backdated))
        if program is None:
            program = self.write(
                lambda session: _program(
                    session,
                    now,
                    self.department_id,
                    self.point_type_id,
                    module="fixed_award",
                    name_ja=PROGRAM_NAME_JA,
                    name_en=PROGRAM_NAME_EN,
                    amount=points,
                )
            )
            self._award_programs[(points, backdated)] = program
        self.write(
            lambda session: awards.award(
                session,
                SYSTEM,
                now,
                awards.AwardRequest(program, resident_id, f"browser-{uuid.uuid4().hex}", {}),
                department_id=None,
            )
        )

    def wallet(self, resident: Resident) -> dict[str, Any]:
        """The resident's ``pt`` wallet through the API (balance, by_expiry, ...)."""
        answer = call(
            self.server.url, "GET", f"/api/v1/me/wallets/{POINT_TYPE}", token=resident.token
        )
        return dict(expect_status(answer, 200, "the wallet"))

    def balance(self, resident: Resident) -> int:
        return int(self.wallet(resident)["balance"])

    def resident_payments(self, resident: Resident) -> list[dict[str, Any]]:
        answer = call(self.server.url, "GET", "/api/v1/me/payments", token=resident.token)
        return list(expect_status(answer, 200, "the resident's payments")["items"])

    def pay_code_limit(self, resident: Resident) -> int:
        answer = call(self.server.url, "GET", "/api/v1/me/payment-settings", token=resident.token)
        return int(expect_status(answer, 200, "the payment settings")["pay_code_limit"])

    # The event --------------------------------------------------------------------------

    def event_qr(self) -> str:
        """The check-in event's QR text of now (it rotates every 30 seconds)."""
        now = system_clock()
        event = self.read(lambda session: session.get(events.VolunteerEvent, self.event_id))
        assert event is not None
        text, _ = events.current_token(
            event, keys.KeyRing(self.server.key_dir), now, origin=self.server.url
        )
        return text

    # The shop (the real HTTP API, the till's bearer token) ------------------------------

    def _shop(
        self, method: str, path: str, body: Any = None, *, idempotent: bool = False
    ) -> Answer:
        return call(
            self.server.url,
            method,
            f"/api/v1/merchant{path}",
            body=body,
            token=self.till_token,
            idempotent=idempotent,
        )

    def payment_request(self, amount: int, reference: str = "") -> str:
        """The till shows a payment QR for ``amount``: its text."""
        made = self._shop("POST", "/payment-requests", {"amount": amount, "reference": reference})
        return str(expect_status(made, 201, "a payment request")["token"])

    def confirm(self, payment_id: str) -> dict[str, Any]:
        answer = self._shop("POST", f"/payments/{payment_id}/confirm", idempotent=True)
        return dict(expect_status(answer, 200, "confirming"))

    def decline(self, payment_id: str) -> dict[str, Any]:
        answer = self._shop("POST", f"/payments/{payment_id}/decline", idempotent=True)
        return dict(expect_status(answer, 200, "declining"))

    def pay_with_code(self, code_text: str, amount: int) -> dict[str, Any]:
        answer = self._shop(
            "POST",
            "/pay-code-payments",
            {"token": code_text, "amount": amount, "reference": ""},
            idempotent=True,
        )
        return dict(expect_status(answer, 201, "paying with a pay code"))

    def payments(self) -> list[dict[str, Any]]:
        """The shop's payments of today, newest first (the first page: up to 200)."""
        answer = self._shop("GET", "/payments?limit=200")
        return list(expect_status(answer, 200, "the shop's payments")["items"])

    def pending_payment(self, amount: int, timeout: float = 10.0) -> dict[str, Any]:
        """The newest pending payment of ``amount`` (a store-QR payment awaiting the shop)."""
        deadline = time.monotonic() + timeout
        while True:
            for payment in self.payments():
                if payment["state"] == "pending" and payment["amount"] == amount:
                    return payment
            if time.monotonic() > deadline:
                raise AssertionError(f"no pending payment of {amount} at the shop")
            time.sleep(0.1)

    # The shop's devices (the staff app) ----------------------------------------------------

    def till_staff_id(self, till_id: str | None = None) -> str:
        """The member of staff a till is (its device sessions are theirs)."""
        wanted = till_id or self.till_id
        till = self.read(lambda session: session.get(merchants.Till, wanted))
        assert till is not None
        return till.staff_id

    def device_code(self, till_id: str | None = None, *, staff_id: str | None = None) -> str:
        """A one-time, 15-minute code that enrols a device as the till (the city's by default)
        or as ``staff_id``, as an admin's ``POST /api/v1/admin/device-codes`` makes it."""
        who = staff_id or self.till_staff_id(till_id)
        now = system_clock()
        return self.write(
            lambda session: access.create_device_code(
                session, SYSTEM, now, who, secret_key=DEVELOPMENT_SECRET_KEY.encode()
            )[1]
        )

    def enrol_url(self, code: str) -> str:
        """What the device code's QR holds (``enrol_url``)."""
        return f"{self.server.url}/staff/#/enrol/{code}"

    def new_till(self, name: str) -> str:
        """Another till of the shop (its own member of staff): its id."""
        now = system_clock()
        ring = keys.KeyRing(self.server.key_dir)
        made = self.write(
            lambda session: merchants.create_till(
                session, SYSTEM, now, self.merchant_id, name, keys=ring, origin=self.server.url
            )
        )
        return made.till.id

    def new_staff(self, role: StaffRole) -> str:
        """A member of staff of another role (a counter's; a merchant's is the shop's, and an
        issuer's the department's): their id."""
        now = system_clock()

        def work(session: Session) -> str:
            staff = people.create_staff(
                session,
                SYSTEM,
                now,
                role=role,
                display_name=f"{role} staff",
                department_id=self.department_id if role is StaffRole.ISSUER else None,
                merchant_id=self.merchant_id if role is StaffRole.MERCHANT else None,
            )
            session.flush()
            return staff.id

        return self.write(work)

    def _device_tokens(self, session: Session, staff_id: str) -> list[Token]:
        rows = session.exec(
            select(Token)
            .join(DeviceCode, col(DeviceCode.token_id) == col(Token.id))
            .where(col(Token.principal_id) == staff_id, col(Token.revoked_at).is_(None))
        ).all()
        return list(rows)

    def revoke_device_sessions(self, staff_id: str) -> int:
        """Revoke the member of staff's device sessions (as an admin's
        ``POST /api/v1/admin/tokens/{id}/revoke`` does); how many."""
        now = system_clock()

        def work(session: Session) -> int:
            tokens = self._device_tokens(session, staff_id)
            for token in tokens:
                access.revoke_token(session, SYSTEM, now, token.id, "browser tests: lost till")
            return len(tokens)

        return self.write(work)

    def lapse_device_sessions(self, staff_id: str) -> int:
        """Make the member of staff's device sessions lapse (not used for too long)."""
        past = system_clock() - timedelta(minutes=1)

        def work(session: Session) -> int:
            tokens = self._device_tokens(session, staff_id)
            for token in tokens:
                token.expires_at = past
                session.add(token)
            return len(tokens)

        return self.write(work)

    # Cards and statements ---------------------------------------------------------------

    def new_card(self, resident: Resident, pin: str, *, attempts_left: int = 5) -> cards.Card:
        """A card for the resident with ``pin``; ``attempts_left`` below 5 as if wrong PINs
        had been typed before."""
        now = system_clock()
        ring = keys.KeyRing(self.server.key_dir)
        signing = cards.CardSigning(ring, self.server.url, ring)

        def work(session: Session) -> cards.Card:
            card = cards.issue_card(session, SYSTEM, now, resident.id, pin, signing=signing).card
            card.pin_attempts = cards.PIN_ATTEMPTS_MAX - attempts_left
            session.add(card)
            session.flush()
            session.expunge(card)
            return card

        return self.write(work)

    def statement_of_last_month(self, resident: Resident, amount: int) -> str:
        """A payment QR of ``amount`` paid by the resident at the till on a day of last month
        (backdated, as the awards of a year ago are), and last month settled: the period."""
        now = system_clock()
        today = tokyo_date(now)
        first = today.replace(day=1)
        paid_at = datetime(first.year, first.month, 1, 3, 0, tzinfo=now.tzinfo) - timedelta(days=2)
        till = Principal(
            Role.MERCHANT, self.till_staff_id(), "browser-tests", merchant_id=self.merchant_id
        )
        ring = keys.KeyRing(self.server.key_dir)
        signing = flows.Signing(ring, self.server.url)

        def pay(session: Session) -> None:
            made = flows.create_request(
                session,
                till,
                paid_at,
                amount=amount,
                point_type=None,
                reference="last month",
                signing=signing,
            )
            flows.pay(
                session,
                resident.id,
                paid_at,
                made.request.token,
                amount=None,
                point_type=None,
                signing=signing,
            )

        self.write(pay)
        period = settlement.last_ended_period(now)
        self.write(
            lambda session: settlement.settle(session, SYSTEM, now, period, trigger=RunTrigger.CLI)
        )
        return period

    # Finance (tests/browser/test_finance_*.py) ----------------------------------------------

    def seal(self) -> int:
        """Seal every committed entry (the scheduler's seal job is off in the tests)."""
        return ledger.Ledger(self.server.engine).seal()

    def expired_points(self, points: int) -> Resident:
        """A new resident awarded ``points`` fourteen months ago, and an expiry run now: the
        points are expired (breakage of this month)."""
        from points import expiry

        now = system_clock()
        resident = self.new_resident()
        self.award(resident.id, points, at=now - timedelta(days=425))
        expiry.expire(self.server.engine, now)
        return resident

    # The counter's catalog ----------------------------------------------------------------

    def new_catalog_item(self, name_ja: str, name_en: str, points: int, stock: int = 10) -> str:
        """An item of a new city counter (a merchant of kind ``counter`` taking the city's
        type), offered from now: its id."""
        now = system_clock()

        def work(session: Session) -> str:
            counter = merchant_taking_pt(
                session,
                now,
                "市役所 交換窓口",
                "City hall exchange counter",
                "city",
                MerchantKind.COUNTER,
            )
            return item_of(session, now, counter.id, name_ja, name_en, points=points, stock=stock)

        return self.write(work)

    def close_wallet(self, resident: Resident) -> None:
        """The resident's wallet of the city's type closed (moved out): its balance expired."""
        now = system_clock()

        def work(session: Session) -> None:
            found = pointtypes.find_point_type(session, POINT_TYPE)
            wallets.close_wallet(session, SYSTEM, now, found, resident.id, reason="browser tests")

        self.write(work)

    # The department PC ---------------------------------------------------------------------

    def new_numbered_resident(self) -> tuple[Resident, str]:
        """A new verified resident (no points, no wallet yet) and their address number, as a
        department knows them."""
        from points.registry import Resident as Registered

        made = self.new_resident()
        row = self.read(lambda session: people.get(session, Registered, made.id))
        assert row.address_number is not None
        return made, row.address_number

    def new_department_program(self, name_ja: str, name_en: str, amount: int, budget: int) -> str:
        """A new active fixed-award program of the department, valid from last fiscal year,
        with ``budget`` allocated for this fiscal year."""
        now = system_clock()
        year = fiscal_year(tokyo_date(now))

        def work(session: Session) -> str:
            program = programs.create_program(
                session,
                SYSTEM,
                now,
                programs.NewProgram(
                    department_id=self.department_id,
                    point_type_id=self.point_type_id,
                    valid_from=date(year - 1, 4, 1),
                    module="fixed_award",
                    name_ja=name_ja,
                    name_en=name_en,
                    amount=amount,
                ),
            )
            programs.change_status(
                session, SYSTEM, now, program.id, programs.ProgramStatus.ACTIVE, reason="tests"
            )
            programs.allocate(session, SYSTEM, now, program.id, year, budget, reason="tests")
            return program.id

        return self.write(work)

    def budget_awarded(self, program_id: str) -> int:
        """What the program awarded this fiscal year (Tokyo), read from its budget."""
        now = system_clock()

        def work(session: Session) -> int:
            program = programs.get_program(session, program_id)
            year = fiscal_year(tokyo_date(now))
            return int(awards.budget_view(session, program, year, now).awarded)

        return self.read(work)

    def stopped_upload(self, program_id: str, data: bytes) -> str:
        """An upload of the CSV ``data`` that stopped after awarding its first row (as when the
        connection is cut): still ``issuing``, its lease let go, the rest still set aside. Its
        id."""
        from issuers import bulk

        class Cut(Exception):
            pass

        def cut(done: int, _total: int | None) -> None:
            if done >= 1:
                raise Cut

        staff_id = self.new_staff(StaffRole.ISSUER)
        caller = Principal(Role.ISSUER, staff_id, "browser-tests", department_id=self.department_id)
        with suppress(Cut):
            bulk.upload(
                self.server.engine,
                caller,
                system_clock,
                program_id,
                data,
                department_id=self.department_id,
                filename="stopped.csv",
                progress=cut,
                batch=1,
            )
        digest = hashlib.sha256(data).hexdigest()
        return self.read(
            lambda session: session.exec(
                select(bulk.AwardUpload.id).where(bulk.AwardUpload.sha256 == digest)
            ).one()
        )


def _a_year_before(now: datetime) -> datetime:
    """The same day a year earlier, at noon Tokyo time: what was earned then expires at the end
    of this month (``pt``: valid until the end of the 12th month after the month earned)."""
    today = tokyo_date(now)
    day = min(today.day, 28)
    return datetime(today.year - 1, today.month, day, 3, 0, tzinfo=now.tzinfo)


def _program(
    session: Session,
    now: datetime,
    department_id: str,
    point_type_id: str,
    **fields: Any,
) -> str:
    """An active program, valid from two fiscal years back, funded for every year since."""
    year = fiscal_year(tokyo_date(system_clock()))
    first = min(fiscal_year(tokyo_date(now)), year) - 1
    program = programs.create_program(
        session,
        SYSTEM,
        now,
        programs.NewProgram(
            department_id=department_id,
            point_type_id=point_type_id,
            valid_from=date(first, 4, 1),
            **fields,
        ),
    )
    programs.change_status(
        session, SYSTEM, now, program.id, programs.ProgramStatus.ACTIVE, reason="browser tests"
    )
    for funded in range(first, year + 1):
        programs.allocate(session, SYSTEM, now, program.id, funded, BUDGET, reason="browser tests")
    return program.id


def seed_city(server: Server) -> City:
    """The city of the browser tests (see the module docstring), through the services."""
    now = system_clock()
    engine = server.engine
    ring = keys.KeyRing(server.key_dir)

    def basics(session: Session) -> tuple[str, str]:
        point_type = pointtypes.create_point_type(
            session,
            SYSTEM,
            now,
            pointtypes.NewPointType(
                code=POINT_TYPE, name_ja="狛江ポイント", name_en="Komae points"
            ),
        )
        department = people.create_department(
            session, SYSTEM, now, code="environment", name_ja="環境政策課", name_en="Environment"
        )
        session.flush()
        return point_type.id, department.id

    point_type_id, department_id = unit_of_work(engine, basics)

    def volunteering(session: Session) -> tuple[str, str]:
        program = _program(
            session,
            now,
            department_id,
            point_type_id,
            module="volunteering",
            name_ja="多摩川清掃ボランティア",
            name_en="Tama River clean-up",
            amount=EVENT_POINTS,
        )
        event = events.create_event(
            session,
            SYSTEM,
            now,
            events.NewEvent(
                program_id=program,
                name=EVENT_NAME,
                place="多摩川河川敷",
                starts_at=now,
                ends_at=now + timedelta(hours=6),
                opens_at=now - timedelta(minutes=5),
                closes_at=now + timedelta(hours=6),
                capacity=100_000,
            ),
            department_id=None,
        )
        return program, event.id

    volunteering_program_id, event_id = unit_of_work(engine, volunteering)

    def shop(session: Session) -> tuple[str, str, str, str]:
        merchant = merchant_taking_pt(session, now, SHOP_NAME_JA, SHOP_NAME_EN, "cafe")
        made = merchants.create_till(
            session, SYSTEM, now, merchant.id, TILL_NAME, keys=ring, origin=server.url
        )
        return merchant.id, made.till.id, made.token.secret, made.till.store_text

    merchant_id, till_id, till_token, store_qr = unit_of_work(engine, shop)
    return City(
        server=server,
        point_type_id=point_type_id,
        department_id=department_id,
        merchant_id=merchant_id,
        till_id=till_id,
        till_token=till_token,
        store_qr=store_qr,
        volunteering_program_id=volunteering_program_id,
        event_id=event_id,
    )
