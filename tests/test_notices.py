"""Expiry notices (``points.notices``): who has points expiring soon, the CSV for mail merge
(UTF-8 with a BOM, or CP932 with 〓 for what it cannot hold), and the counter's download
``GET /api/v1/counter/expiry-notices``, on SQLite and (when configured) PostgreSQL.

The FakeClock starts at 2026-04-01 00:00 UTC (09:00 in Tokyo). Under a one-month rule, points
earned that day are valid until 2026-05-31, points earned on 2026-05-01 until 2026-06-30.
"""

from __future__ import annotations

import csv
import io
import itertools
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from api_world import (
    RESIDENT_ADDRESS_NUMBER,
    RESIDENT_NAME,
    Actor,
    World,
    assert_problem,
    open_world,
    unique_address_number,
)
from conftest import FakeClock
from earning_helpers import ACTOR, Earning
from payment_helpers import ensure_signing_key
from sqlalchemy.engine import Engine
from sqlmodel import Session

from api.logs import JsonFormatter
from issuers import awards
from issuers.programs import Program
from ledger import LedgerTx, Side
from points import notices, people, pointtypes, spending, wallets
from points.calendar import TOKYO
from points.notices import HEADER, Notice
from points.pointtypes import ExpiryRule, PointType
from points.registry import ResidentStatus, StaffRole
from redemption import cards

BOM = b"\xef\xbb\xbf"
HEADER_LINE = (
    "resident_id,address_number,name,point_type,expiring_points,first_expiry_date,balance,"
    "card_last4\r\n"
)
#: A character CP932 cannot hold (U+20BB7, the 𠮷 of 𠮷野家), and one only CP932 has among the
#: Shift_JIS family (髙, an IBM extension).
OUTSIDE_CP932 = "𠮷"
CP932_ONLY = "髙"
START = datetime(2026, 4, 1, 0, 0, tzinfo=UTC)


def tokyo(year: int, month: int, day: int, hour: int = 0) -> datetime:
    return datetime(year, month, day, hour, tzinfo=TOKYO).astimezone(UTC)


class Town:
    """A point type with a one-month expiry rule, two programs and named residents."""

    def __init__(self, engine: Engine, clock: FakeClock) -> None:
        self.clock = clock
        self.earning = Earning(engine, clock)
        self.pt = self.earning.point_type(expiry_rule=ExpiryRule.MONTHS, expiry_months=1)
        self.hundred = self.program(self.pt, 100)
        self.thirty = self.program(self.pt, 30)
        self.records = itertools.count(1)
        self.merchant = self.earning.write(
            lambda s: (
                LedgerTx(s.connection(), clock)
                .create_account(
                    ledger_id=self.pt.ledger_id, code=400, normal_side=Side.CREDIT, owner_ref="m"
                )
                .id
            )
        )

    def program(self, point_type: PointType, amount: int) -> Program:
        program = self.earning.program(point_type, amount=amount)
        self.earning.allocate(program, 2026, 1_000_000)
        return program

    def resident(self, name: str | None, address_number: str | None = None) -> str:
        now = self.clock()
        return self.earning.write(
            lambda s: (
                people.create_resident(
                    s,
                    ACTOR,
                    now,
                    name=name,
                    address_number=address_number,
                    birth_year=1950 if name else None,
                    verified=name is not None,
                ).id
            )
        )

    def award(self, program: Program, resident: str) -> None:
        result = self.earning.award(program, resident, f"N-{next(self.records)}")
        assert not result.replayed

    def spend(self, resident: str, amount: int, **options: Any) -> None:
        self.earning.spend(
            self.pt, spending.Spend(resident, amount, to_account_id=self.merchant, **options)
        )

    def expiring(
        self, now: datetime, within_days: int, point_type: PointType | None = None
    ) -> list[Notice]:
        chosen = point_type or self.pt
        return self.earning.read(lambda s: notices.expiring(s, _fresh(s, chosen), now, within_days))


def _fresh(session: Session, point_type: PointType) -> PointType:
    found = session.get(PointType, point_type.id)
    assert found is not None
    return found


@pytest.fixture
def town(engine: Engine, clock: FakeClock) -> dict[str, Any]:
    """The residents of the story, by role, on a Town."""
    town = Town(engine, clock)
    ids = {
        "both": town.resident("山田 太郎", "1000000001"),
        "spent_out": town.resident("支払 済子", "1000000002"),
        "closed": town.resident("転出 一郎", "1000000003"),
        "inactive": town.resident("転出 二郎", "1000000004"),
        "later_only": town.resident("来月 三子", "1000000005"),
        "partly": town.resident("一部 四郎", "1000000006"),
        "held": town.resident("保留 五子", "1000000007"),
        "anonymous": town.resident(None),
        "other_type": town.resident("別種 六郎", "1000000008"),
        "spent_then_later": town.resident("後日 七子", "1000000009"),
    }
    # 2026-04-01: points valid until 2026-05-31.
    town.award(town.hundred, ids["both"])
    town.award(town.thirty, ids["both"])
    town.award(town.hundred, ids["spent_out"])
    town.spend(ids["spent_out"], 100)
    town.award(town.hundred, ids["closed"])
    town.award(town.hundred, ids["inactive"])
    town.award(town.hundred, ids["partly"])
    town.spend(ids["partly"], 40)
    town.award(town.thirty, ids["held"])
    town.spend(ids["held"], 10, hold_until=tokyo(2026, 5, 31, 12))
    town.award(town.thirty, ids["anonymous"])
    town.award(town.thirty, ids["spent_then_later"])
    town.spend(ids["spent_then_later"], 30)
    other = town.earning.point_type(expiry_rule=ExpiryRule.MONTHS, expiry_months=1)
    town.award(town.program(other, 100), ids["other_type"])
    town.earning.write(
        lambda s: wallets.close_wallet(
            s, ACTOR, town.clock(), _fresh(s, town.pt), ids["closed"], reason="moved out"
        )
    )
    town.earning.set_resident_status(ids["inactive"], ResidentStatus.MOVED_OUT)
    # 2026-05-01: points valid until 2026-06-30.
    town.clock.advance(days=30)
    town.award(town.hundred, ids["both"])
    town.award(town.hundred, ids["later_only"])
    town.award(town.hundred, ids["spent_then_later"])
    return {"town": town, "other": other, **ids}


def rows(found: list[Notice]) -> list[tuple[str, int, date, int]]:
    return [(n.resident_id, n.expiring_points, n.first_expiry_date, n.balance) for n in found]


def test_residents_with_points_expiring_within_the_window(town: dict[str, Any]) -> None:
    story: Town = town["town"]
    may_31 = date(2026, 5, 31)
    soon = sorted(
        [
            (town["both"], 130, may_31, 230),
            (town["partly"], 60, may_31, 60),
            (town["held"], 20, may_31, 20),
            (town["anonymous"], 30, may_31, 30),
        ]
    )

    # On 2026-04-01, 60 days reach 2026-05-31 exactly; 59 days do not.
    found = story.expiring(START, 60)
    assert rows(found) == soon
    assert story.expiring(START, 59) == []
    both = next(n for n in found if n.resident_id == town["both"])
    assert (both.name, both.address_number, both.point_type) == (
        "山田 太郎",
        "1000000001",
        story.pt.code,
    )
    anonymous = next(n for n in found if n.resident_id == town["anonymous"])
    assert (anonymous.name, anonymous.address_number) == (None, None)

    # 90 days reach the points earned in May as well: each resident still once, the sum of what
    # expires and the first date.
    wider = story.expiring(START, 90)
    assert rows(wider) == [
        *[(r, 230 if r == town["both"] else e, d, b) for r, e, d, b in soon],
        # A spent-out bucket sets no first date: the later one does.
        *sorted(
            [
                (town["later_only"], 100, date(2026, 6, 30), 100),
                (town["spent_then_later"], 100, date(2026, 6, 30), 100),
            ]
        ),
    ]
    assert len({n.resident_id for n in wider}) == len(wider)

    # From 2026-06-01 (Tokyo) the May points are gone from the list, swept or not.
    june = story.expiring(tokyo(2026, 6, 1), 60)
    assert rows(june) == sorted(
        [
            (town["both"], 100, date(2026, 6, 30), 100),
            (town["later_only"], 100, date(2026, 6, 30), 100),
            (town["spent_then_later"], 100, date(2026, 6, 30), 100),
        ]
    )
    # The last instant of 2026-05-31 in Tokyo still lists them.
    assert len(story.expiring(tokyo(2026, 6, 1) - timedelta(microseconds=1), 1)) == 4

    # Another point type's list is its own.
    assert [n.resident_id for n in story.expiring(START, 60, town["other"])] == [town["other_type"]]


def notice(name: str | None, **fields: Any) -> Notice:
    values: dict[str, Any] = {
        "resident_id": "res_1",
        "address_number": "1234567890",
        "name": name,
        "point_type": "pt",
        "expiring_points": 1200,
        "first_expiry_date": date(2026, 5, 31),
        "balance": 3400,
    }
    values.update(fields)
    return Notice(**values)


def test_the_csv_in_utf8_has_a_bom_crlf_and_round_trips() -> None:
    listed = [
        notice("狛江 花子"),
        notice('Comma, "Quote"', resident_id="res_2", address_number=None, card_last4="0042"),
        notice(None, resident_id="res_3", expiring_points=5),
        notice(f"{OUTSIDE_CP932}野 {CP932_ONLY}子", resident_id="res_4"),
    ]

    data = notices.to_csv(listed)

    assert data.startswith(BOM)
    assert data.count(b"\n") == data.count(b"\r\n") == 5
    assert data.endswith(b"\r\n")
    text = data.decode("utf-8-sig")
    assert text.startswith(HEADER_LINE)
    parsed = list(csv.reader(io.StringIO(text, newline="")))
    assert tuple(parsed[0]) == HEADER
    assert parsed[1:] == [
        ["res_1", "1234567890", "狛江 花子", "pt", "1200", "2026-05-31", "3400", ""],
        ["res_2", "", 'Comma, "Quote"', "pt", "1200", "2026-05-31", "3400", "0042"],
        ["res_3", "1234567890", "", "pt", "5", "2026-05-31", "3400", ""],
        [
            "res_4",
            "1234567890",
            f"{OUTSIDE_CP932}野 {CP932_ONLY}子",
            "pt",
            "1200",
            "2026-05-31",
            "3400",
            "",
        ],
    ]
    assert notices.to_csv([]) == BOM + HEADER_LINE.encode()


def test_the_csv_in_cp932_replaces_what_it_cannot_hold() -> None:
    listed = [
        notice("狛江 花子"),
        notice(f"{OUTSIDE_CP932}野 {CP932_ONLY}子", resident_id="res_2"),
        notice("ｺﾏｴ ﾊﾅｺ①", resident_id="res_3"),
    ]

    data = notices.to_csv(listed, "cp932")

    assert not data.startswith(BOM)
    assert data.count(b"\n") == data.count(b"\r\n") == 4
    text = data.decode("cp932")
    assert text.startswith(HEADER_LINE)
    parsed = list(csv.reader(io.StringIO(text, newline="")))
    assert tuple(parsed[0]) == HEADER
    assert [row[2] for row in parsed[1:]] == ["狛江 花子", f"〓野 {CP932_ONLY}子", "ｺﾏｴ ﾊﾅｺ①"]
    assert "狛江 花子".encode("cp932") in data
    assert notices.to_csv([], "cp932") == HEADER_LINE.encode("cp932")
    with pytest.raises(ValueError, match="encoding"):
        notices.to_csv(listed, "shift_jis")


# Through the API ----------------------------------------------------------------------------

NOTICES = "/api/v1/counter/expiry-notices"


@dataclass(frozen=True)
class Site:
    world: World
    #: A second resident whose name CP932 cannot hold in full.
    rare_id: str
    rare_name: str
    rare_address: str
    #: Staff tokens issued after the clock moved (the world's own last 90 days).
    counter: Actor
    admin: Actor
    finance: Actor


@pytest.fixture
def site(engine: Engine, clock: FakeClock, database_url: str) -> Iterator[Site]:
    """The API world with a second resident: both have points from 2026-04-01 valid until
    2027-04-30 (the world's type keeps points 12 months); the clock is then moved to 2027-04-01
    so that they expire within 60 days."""
    with open_world(engine, clock, database_url) as world:
        now = clock()
        rare_name = f"{OUTSIDE_CP932}田 {CP932_ONLY}子"
        address = unique_address_number()

        def work(session: Session) -> str:
            resident = people.create_resident(
                session,
                ACTOR,
                now,
                name=rare_name,
                address_number=address,
                birth_year=1960,
                verified=True,
            )
            session.flush()
            awards.award(
                session,
                ACTOR,
                now,
                awards.AwardRequest(world.programs["a"], resident.id, "notice-1", {}),
                department_id=None,
            )
            return resident.id

        rare_id = world.write(work)
        clock.advance(days=365)
        yield Site(
            world,
            rare_id,
            rare_name,
            address,
            counter=world.fresh_staff(StaffRole.COUNTER),
            admin=world.fresh_staff(StaffRole.ADMIN),
            finance=world.fresh_staff(StaffRole.FINANCE),
        )


def csv_rows(data: bytes, encoding: str) -> list[list[str]]:
    text = data.decode("utf-8-sig" if encoding == "utf-8" else encoding)
    return list(csv.reader(io.StringIO(text, newline="")))


def test_counter_and_admin_download_the_csv(site: Site) -> None:
    world, rare_id, rare_name, address = site.world, site.rare_id, site.rare_name, site.rare_address

    response = world.client.get(NOTICES, params={"within_days": 60}, headers=site.counter.headers)

    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["content-disposition"] == (
        'attachment; filename="expiry-notices-pt-2027-04-01.csv"'
    )
    assert response.content.startswith(BOM)
    parsed = csv_rows(response.content, "utf-8")
    assert tuple(parsed[0]) == HEADER
    by_id = {row[0]: row for row in parsed[1:]}
    assert by_id[world.resident.id] == [
        world.resident.id,
        RESIDENT_ADDRESS_NUMBER,
        RESIDENT_NAME,
        "pt",
        "100",
        "2027-04-30",
        "100",
        "",
    ]
    assert by_id[rare_id][1:3] == [address, rare_name]
    assert len(by_id) == 2

    cp932 = world.client.get(
        NOTICES,
        params={"point_type": "pt", "within_days": 60, "encoding": "cp932"},
        headers=site.admin.headers,
    )
    assert cp932.status_code == 200, cp932.text
    assert cp932.headers["content-type"].startswith("text/csv")
    assert cp932.headers["content-disposition"].startswith("attachment;")
    assert not cp932.content.startswith(BOM)
    by_id = {row[0]: row for row in csv_rows(cp932.content, "cp932")[1:]}
    assert by_id[world.resident.id][2] == RESIDENT_NAME
    assert by_id[rare_id][2] == rare_name.replace(OUTSIDE_CP932, "〓")

    # Nothing expires within 20 days: the header alone.
    empty = world.client.get(NOTICES, params={"within_days": 20}, headers=site.counter.headers)
    assert empty.status_code == 200
    assert empty.content == BOM + HEADER_LINE.encode()


def test_the_cp932_download_declares_a_charset_that_decodes_it(site: Site) -> None:
    world = site.world
    response = world.client.get(
        NOTICES, params={"within_days": 60, "encoding": "cp932"}, headers=site.counter.headers
    )
    assert response.status_code == 200
    charset = response.headers["content-type"].split("charset=")[1]
    # Windows-31J is CP932's registered name (WHATWG decoders know it; Python calls it cp932).
    assert charset == "Windows-31J"
    assert response.content.decode("cp932").startswith("resident_id,")


def test_the_csv_is_for_counter_staff_and_admins_only(site: Site) -> None:
    world = site.world
    for actor in (
        site.finance,
        world.resident,
        world.resident_self,
        world.fresh_staff(StaffRole.ISSUER),
    ):
        response = world.client.get(NOTICES, headers=actor.headers)
        body = assert_problem(response, 403)
        assert RESIDENT_NAME not in response.text
        assert body["status"] == 403
    assert_problem(world.client.get(NOTICES), 401)


def test_the_csv_refuses_bad_parameters(site: Site) -> None:
    world = site.world
    headers = site.counter.headers
    assert_problem(world.client.get(NOTICES, params={"point_type": "nosuch"}, headers=headers), 404)
    for params in (
        {"within_days": 0},
        {"within_days": 367},
        {"encoding": "latin-1"},
        {"point_type": "Not A Code"},
    ):
        assert_problem(world.client.get(NOTICES, params=params, headers=headers), 422)


def test_personal_data_is_in_the_csv_but_never_in_the_logs(
    site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    world, address = site.world, site.rare_address
    secrets = [RESIDENT_NAME, RESIDENT_ADDRESS_NUMBER, site.rare_name, address]

    with caplog.at_level(logging.DEBUG):
        for encoding in ("utf-8", "cp932"):
            response = world.client.get(
                NOTICES,
                params={"within_days": 60, "encoding": encoding},
                headers=site.counter.headers,
            )
            assert response.status_code == 200
            text = response.content.decode("utf-8-sig" if encoding == "utf-8" else "cp932")
            assert RESIDENT_NAME in text and RESIDENT_ADDRESS_NUMBER in text and address in text

    access = [r for r in caplog.records if r.name == "api.access"]
    assert [getattr(r, "route", None) for r in access] == [NOTICES, NOTICES]
    formatter = JsonFormatter()
    for record in caplog.records:
        line = formatter.format(record) + repr(record.__dict__)
        for secret in secrets:
            assert secret not in line, (secret, record.name)


# The card's last four digits (issue 19) -----------------------------------------------------


def issue_card(site: Site, resident_id: str) -> dict[str, Any]:
    ensure_signing_key(site.world)
    made = site.world.client.post(
        f"/api/v1/counter/residents/{resident_id}/cards",
        json={"pin": "4826"},
        headers=site.counter.headers,
    )
    assert made.status_code == 201, made.text
    return dict(made.json())


def last4_by_resident(site: Site) -> dict[str, str]:
    response = site.world.client.get(
        NOTICES, params={"within_days": 60}, headers=site.counter.headers
    )
    assert response.status_code == 200, response.text
    parsed = csv_rows(response.content, "utf-8")
    assert parsed[0][-1] == "card_last4"
    return {row[0]: row[-1] for row in parsed[1:]}


def test_the_letters_carry_the_active_cards_last_four_digits(site: Site) -> None:
    """The CSV's last column is the last four digits of the resident's active card, empty for
    a resident without one; a blocked card's digits leave the letters, a reissued card's new
    digits replace them. ``notices.expiring`` says the same with the lookup, nothing without."""
    world, rare_id = site.world, site.rare_id
    card = issue_card(site, rare_id)
    assert card["last4"] == card["number"][-4:]

    assert last4_by_resident(site) == {world.resident.id: "", rare_id: card["last4"]}
    pt = world.read(lambda s: _fresh_type(s, "pt"))
    now = world.now()
    listed = world.read(lambda s: notices.expiring(s, pt, now, 60, card_digits=cards.active_last4))
    assert {n.resident_id: n.card_last4 for n in listed} == {
        world.resident.id: "",
        rare_id: card["last4"],
    }
    unlooked = world.read(lambda s: notices.expiring(s, pt, now, 60))
    assert {n.card_last4 for n in unlooked} == {""}

    reissued = world.client.post(
        f"/api/v1/counter/cards/{card['id']}/reissue",
        json={"reason": "worn out"},
        headers=site.counter.headers,
    )
    assert reissued.status_code == 201, reissued.text
    assert last4_by_resident(site)[rare_id] == reissued.json()["last4"]

    blocked = world.client.post(
        f"/api/v1/counter/cards/{reissued.json()['id']}/block",
        json={"reason": "lost"},
        headers=site.counter.headers,
    )
    assert blocked.status_code == 200, blocked.text
    assert last4_by_resident(site) == {world.resident.id: "", rare_id: ""}


def test_the_card_lookup_reads_many_residents_in_chunks(site: Site) -> None:
    """More residents than one chunk of the lookup (500): each with a card is found, once."""
    world = site.world
    made = issue_card(site, site.rare_id)
    ids = [f"res_none{index}" for index in range(1_200)]
    ids.insert(777, site.rare_id)
    assert world.read(lambda s: cards.active_last4(s, ids)) == {site.rare_id: made["last4"]}
    assert world.read(lambda s: cards.active_last4(s, [])) == {}


def _fresh_type(session: Session, code: str) -> PointType:
    return pointtypes.find_point_type(session, code)
