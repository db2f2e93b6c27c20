"""Finance reports (``points.reports``, ``issuers.reports``, ``redemption.reports``, the API in
``api.routers.reports``), on SQLite and, when ``POINTS_TEST_POSTGRES_URL`` is set, PostgreSQL.

One world: awards by two departments' programs and by a program of an operator's bought point
type, payments at two shops and a refund, a settlement run, an expiry run a year later, and a
refund of a spend whose bucket has expired since (its points go to expired points). Every
report, read through the API, is then computed again here from the ledger's own rows
(``ledger_posting``, ``ledger_entry``, ``ledger_account``, in plain SQL) and compared, and
checked against the accounts' maintained totals where a report covers everything.
"""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from api_world import FISCAL_YEAR, World, _program, assert_problem
from conftest import FakeClock
from payment_helpers import _award, funded_resident, open_shop
from sqlmodel import Session
from test_settlement import pay_shop, refund, set_up, settle, tokyo

from issuers.programs import Program
from points import access, expiry, pointtypes
from points.calendar import TOKYO
from points.pointtypes import Funding, IssuerKind, NewPointType, PointType
from points.registry import StaffRole

R = "/api/v1/finance/reports"
POSTED = """
    SELECT p.entry_id, p.account_id, p.side, p.amount, a.code, a.ledger_id,
           e.recorded_at_us, e.kind, e.metadata
    FROM ledger_posting p
    JOIN ledger_entry e ON e.id = p.entry_id
    JOIN ledger_account a ON a.id = p.account_id
    WHERE e.phase IN (0, 2)
"""


def by_month_in(
    postings: Any, payables: dict[int, Any], types: dict[str, Any], start: date, end: date
) -> dict[tuple[str, str], list[int]]:
    """[payments, paid, refunded] by (Tokyo month, point type) of the payment entries recorded
    from ``start`` to ``end``, computed here from the postings."""
    by_month: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    for row in postings:
        if (
            row.account_id in payables
            and row.kind not in ("settlement", "settlement_recovery")
            and end_us(start - timedelta(days=1)) <= row.recorded_at_us < end_us(end)
        ):
            at = datetime.fromtimestamp(row.recorded_at_us / 1_000_000, UTC).astimezone(TOKYO)
            code = types[payables[row.account_id].point_type_id].code
            line = by_month[(at.strftime("%Y-%m"), code)]
            if row.side == 2:
                line[0] += 1
                line[1] += row.amount
            else:
                line[2] += row.amount
    return dict(by_month)


def end_us(day: date) -> int:
    """The end of a Tokyo day, computed here without the code under test."""
    instant = datetime.combine(day + timedelta(days=1), time(0), tzinfo=TOKYO)
    return int(instant.timestamp() * 1_000_000)


def sql(world: World, text: str, **params: Any) -> list[Any]:
    with world.engine.connect() as connection:
        return list(connection.execute(sa.text(text), params))


def get(world: World, path: str, **query: str) -> Any:
    made = world.client.get(f"{R}/{path}", params=query, headers=world.finance.headers)
    assert made.status_code == 200, made.text
    return made.json()


def signed(row: Any) -> int:
    return int(row.amount) if row.side == 2 else -int(row.amount)


def build(world: World, clock: FakeClock) -> dict[str, Any]:
    clock.now = tokyo(2026, 4, 10)
    a = world.fresh_program("a", amount=1000, budget={FISCAL_YEAR: 10**6})
    b = world.fresh_program("b", amount=500, budget={FISCAL_YEAR: 10**6})
    # The world's points last a month, so that they expire within the tokens' lifetime.
    world.write(
        lambda s: set_up(
            s,
            code=(Program, a, {"budget_code": "01-02-03-04"}),
            months=(PointType, world.point_type_id, {"expiry_months": 1}),
        )
    )
    now = world.now()

    def operator_type(session: Session) -> str:
        made = pointtypes.create_point_type(
            session,
            access.SYSTEM,
            now,
            NewPointType(
                code="op_bought",
                name_ja="購入ポイント",
                name_en="Bought points",
                issuer=IssuerKind.OPERATOR,
                funding=Funding.BOUGHT,
                yen_rate=10_000,
                psa_override_reason="registered as an issuer of prepaid payment instruments",
            ),
        )
        return made.id

    bought = world.write(operator_type)
    c = world.write(
        lambda s: _program(
            s, now, world.departments["a"], bought, activate=True,
            budget={FISCAL_YEAR: 10**6}, amount=1100,
        )
    )  # fmt: skip
    shop_a, shop_b = open_shop(world), open_shop(world)
    r1, r2, r3 = (funded_resident(world, 0) for _ in range(3))
    world.write(lambda s: _award(s, now, a, r1.id))
    world.write(lambda s: _award(s, now, b, r2.id))
    world.write(lambda s: _award(s, now, c, r3.id))
    p1 = pay_shop(world, shop_a, r1, 300)
    pay_shop(world, shop_b, r2, 200)
    refund(world, shop_a, p1, 50)
    clock.now = tokyo(2026, 5, 1, 1)
    settle(world, "2026-04")
    clock.now = tokyo(2026, 5, 10)
    p4 = pay_shop(world, shop_a, r1, 100)
    # In July the world's April buckets have expired (the bought type's last a year); the May
    # spend is refunded after, to a bucket expired since.
    clock.now = tokyo(2026, 7, 1, 3)
    moved = expiry.expire(world.engine, world.now(), clock=clock)
    assert moved.points > 0
    clock.now = tokyo(2026, 7, 2)
    refund(world, shop_a, p4, 100)
    # Staff tokens are short-lived: finance and an admin with new ones.
    world.actors["finance"] = world.fresh_staff(StaffRole.FINANCE)
    world.actors["admin"] = world.fresh_staff(StaffRole.ADMIN)
    return {"a": a, "b": b, "c": c, "bought": bought, "shops": (shop_a, shop_b)}


def test_every_report_reconciles_with_the_ledger(world: World, clock: FakeClock) -> None:
    built = build(world, clock)
    postings = sql(world, POSTED)
    ledgers = dict(sql(world, "SELECT id, code FROM ledger"))
    types = {
        r.id: r
        for r in sql(world, "SELECT id, code, ledger_id, issuer, funding, yen_rate FROM point_type")
    }
    type_of_ledger = {**ledgers, **{r.ledger_id: r.code for r in types.values()}}
    buckets = {
        r.account_id: r
        for r in sql(
            world,
            "SELECT b.account_id, b.point_type_id, b.program_id, b.valid_until, p.department_id"
            " FROM wallet_bucket b JOIN program p ON p.id = b.program_id",
        )
    }

    # Trial balance, at two dates.
    for day in (date(2026, 4, 30), date(2026, 7, 31)):
        sums: dict[tuple[str, int], list[int]] = defaultdict(lambda: [0, 0])
        for row in postings:
            if row.recorded_at_us < end_us(day):
                sums[(ledgers[row.ledger_id], row.code)][0 if row.side == 1 else 1] += row.amount
        report = get(world, "trial-balance", date=day.isoformat())
        assert report["date"] == day.isoformat()
        *lines, total = report["rows"]
        assert {
            (r["ledger"], r["account_code"]): [r["debits"], r["credits"]] for r in lines
        } == sums
        assert total["ledger"] == "TOTAL" and total["debits"] == total["credits"] > 0
    # At the end, the trial balance is the accounts' maintained totals.
    maintained: dict[tuple[str, int], list[int]] = defaultdict(lambda: [0, 0])
    for r in sql(
        world, "SELECT ledger_id, code, debits_posted, credits_posted FROM ledger_account"
    ):
        if r.debits_posted or r.credits_posted:
            maintained[(ledgers[r.ledger_id], r.code)][0] += r.debits_posted
            maintained[(ledgers[r.ledger_id], r.code)][1] += r.credits_posted
    assert {
        (r["ledger"], r["account_code"]): [r["debits"], r["credits"]]
        for r in get(world, "trial-balance", date="2026-07-31")["rows"][:-1]
    } == maintained

    # Points outstanding.
    for day in (date(2026, 4, 30), date(2026, 5, 31), date(2026, 7, 31)):
        expected: dict[tuple[str, str, str, str], int] = defaultdict(int)
        for row in postings:
            if row.code == 300 and row.recorded_at_us < end_us(day):
                bucket = buckets.get(row.account_id)
                if bucket is None:  # the world's bare bucket accounts, of no wallet
                    key = (type_of_ledger[row.ledger_id], "", "", "")
                else:
                    valid = bucket.valid_until
                    valid = date.fromisoformat(valid) if isinstance(valid, str) else valid
                    month = "never" if valid.year == 9999 else f"{valid.year}-{valid.month:02d}"
                    key = (
                        type_of_ledger[row.ledger_id],
                        bucket.department_id,
                        bucket.program_id,
                        month,
                    )
                expected[key] += signed(row)
        got = {
            (r["point_type"], r["department_id"], r["program_id"], r["expiry_month"]): r["points"]
            for r in get(world, "outstanding", date=day.isoformat())["rows"]
        }
        assert got == {k: v for k, v in expected.items() if v}
    # Before the expiry the three awards are outstanding, less what was spent and refunded.
    april = get(world, "outstanding", date="2026-04-30")["rows"]
    by_program = {r["program_id"]: r["points"] for r in april}
    assert by_program[built["a"]] == 1000 - 300 + 50
    assert by_program[built["b"]] == 500 - 200
    assert by_program[built["c"]] == 1100
    # After it, nothing of the world's type is left; the bought type's points last a year.
    final = {
        r["program_id"]: r["points"] for r in get(world, "outstanding", date="2026-07-31")["rows"]
    }
    assert built["a"] not in final and built["b"] not in final
    assert final[built["c"]] == 1100
    live = sum(
        r.credits_posted - r.debits_posted
        for r in sql(
            world, "SELECT credits_posted, debits_posted FROM ledger_account WHERE code = 300"
        )
    )
    assert sum(r["points"] for r in get(world, "outstanding", date="2026-07-31")["rows"]) == live

    # Breakage: every credit to expired points, by month and point type; by program as known.
    start, end = date(2026, 6, 1), date(2026, 7, 31)
    expected_breakage: dict[tuple[str, str], int] = defaultdict(int)
    for row in postings:
        if row.code == 500 and end_us(start - timedelta(days=1)) <= row.recorded_at_us < end_us(
            end
        ):
            at = datetime.fromtimestamp(row.recorded_at_us / 1e6, UTC).astimezone(TOKYO)
            expected_breakage[(f"{at.year}-{at.month:02d}", type_of_ledger[row.ledger_id])] += (
                signed(row)
            )
    report = get(world, "breakage", **{"from": start.isoformat(), "to": end.isoformat()})
    got_breakage: dict[tuple[str, str], int] = defaultdict(int)
    programs: dict[str, int] = defaultdict(int)
    for r in report["rows"]:
        got_breakage[(r["month"], r["point_type"])] += r["points"]
        programs[r["program_id"]] += r["points"]
    assert got_breakage == expected_breakage
    # Program a's bucket: 1000 - 300 + 50 expired, then the May spend's 100 refunded to it.
    assert programs[built["a"]] == 750 - 100 + 100
    assert programs[built["b"]] == 300
    assert built["c"] not in programs
    assert "" not in programs
    expired_total = sum(
        r.credits_posted - r.debits_posted
        for r in sql(
            world, "SELECT credits_posted, debits_posted FROM ledger_account WHERE code = 500"
        )
    )
    assert sum(got_breakage.values()) == expired_total
    assert get(world, "breakage", **{"from": "2026-04-01", "to": "2026-06-30"})["rows"] == []

    # Payments by merchant, April and July 2026.
    payables = {
        r.account_id: r
        for r in sql(
            world,
            "SELECT mp.account_id, mp.merchant_id, mp.point_type_id, m.category"
            " FROM merchant_payable mp JOIN merchant m ON m.id = mp.merchant_id",
        )
    }
    for start, end in (
        (date(2026, 4, 1), date(2026, 4, 30)),
        (date(2026, 7, 1), date(2026, 7, 31)),
    ):
        expected_paid: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
        for row in postings:
            if (
                row.account_id in payables
                and row.kind not in ("settlement", "settlement_recovery")
                and end_us(start - timedelta(days=1)) <= row.recorded_at_us < end_us(end)
            ):
                payable = payables[row.account_id]
                line = expected_paid[(payable.category, payable.merchant_id)]
                if row.side == 2:
                    line[0] += 1
                    line[1] += row.amount
                else:
                    line[2] += row.amount
        report = get(
            world, "payments-by-merchant", **{"from": start.isoformat(), "to": end.isoformat()}
        )
        got_paid = {
            (r["category"], r["merchant_id"]): [r["payments"], r["paid"], r["refunded"]]
            for r in report["rows"]
        }
        assert got_paid == expected_paid
        assert all(r["net"] == r["paid"] - r["refunded"] for r in report["rows"])

    # Payments by month, over a range that starts and ends mid-month: grouped here by the Tokyo
    # month of each entry's recording; every month a row for each point type paid (zeros too).
    start, end = date(2026, 3, 15), date(2026, 8, 10)
    by_month = by_month_in(postings, payables, types, start, end)
    months = ["2026-03", "2026-04", "2026-05", "2026-06", "2026-07", "2026-08"]
    paid_types = sorted({code for _, code in by_month})
    report = get(world, "payments-by-month", **{"from": start.isoformat(), "to": end.isoformat()})
    assert [(r["month"], r["point_type"]) for r in report["rows"]] == [
        (month, code) for month in months for code in paid_types
    ]
    assert {
        (r["month"], r["point_type"]): [r["payments"], r["paid"], r["refunded"]]
        for r in report["rows"]
    } == {
        (month, code): by_month.get((month, code), [0, 0, 0])
        for month in months
        for code in paid_types
    }
    assert all(r["net"] == r["paid"] - r["refunded"] for r in report["rows"])
    assert sum(r["paid"] for r in report["rows"]) > 0
    assert any(r["paid"] == 0 for r in report["rows"])  # a quiet month is a zero row
    # A range within one month is that month's row (no month boundary to group on).
    april = get(world, "payments-by-month", **{"from": "2026-04-02", "to": "2026-04-29"})
    april_paid = by_month_in(postings, payables, types, date(2026, 4, 2), date(2026, 4, 29))
    assert {
        (r["month"], r["point_type"]): [r["payments"], r["paid"], r["refunded"]]
        for r in april["rows"]
    } == april_paid
    assert april["rows"] and all(r["month"] == "2026-04" for r in april["rows"])
    shop_a, shop_b = built["shops"]
    april_paid = {
        r["merchant_id"]: (r["payments"], r["paid"], r["refunded"])
        for r in get(world, "payments-by-merchant", **{"from": "2026-04-01", "to": "2026-04-30"})[
            "rows"
        ]
    }
    assert april_paid[shop_a.merchant_id] == (1, 300, 50)
    assert april_paid[shop_b.merchant_id] == (1, 200, 0)
    # The payment table agrees: every payment and refund of April at the two shops.
    rows = sql(
        world,
        "SELECT merchant_id, SUM(amount) AS paid FROM payment WHERE merchant_id IN (:a, :b)"
        " GROUP BY merchant_id",
        a=shop_a.merchant_id,
        b=shop_b.merchant_id,
    )
    assert {r.merchant_id: r.paid for r in rows} == {
        shop_a.merchant_id: 400,
        shop_b.merchant_id: 200,
    }

    # Budgets of FY2026: allocated and drawn from each budget account's postings.
    budgets = sql(
        world,
        "SELECT b.account_id, b.program_id, p.department_id, p.budget_code"
        " FROM program_budget b JOIN program p ON p.id = b.program_id WHERE b.fiscal_year = :y",
        y=FISCAL_YEAR,
    )
    expected_budgets = {}
    for budget in budgets:
        credits = sum(
            r.amount for r in postings if r.account_id == budget.account_id and r.side == 2
        )
        debits = sum(
            r.amount for r in postings if r.account_id == budget.account_id and r.side == 1
        )
        expected_budgets[budget.program_id] = (
            budget.department_id,
            budget.budget_code or "",
            credits,
            debits,
            credits - debits,
        )
    report = get(world, "budgets", fiscal_year=str(FISCAL_YEAR))
    assert {
        r["program_id"]: (
            r["department_id"],
            r["budget_code"],
            r["allocated"],
            r["drawn"],
            r["remaining"],
        )
        for r in report["rows"]
    } == expected_budgets
    assert expected_budgets[built["a"]][1:] == ("01-02-03-04", 10**6, 1000, 10**6 - 1000)
    assert expected_budgets[built["b"]][0] == world.departments["b"]
    assert get(world, "budgets", fiscal_year="2031")["rows"] == []

    # The Payment Services Act's base dates.
    for day in (date(2026, 9, 30), date(2027, 3, 31)):
        unused: dict[int, int] = defaultdict(int)
        for row in postings:
            if row.code in (300, 400) and row.recorded_at_us < end_us(day):
                unused[row.ledger_id] += signed(row)
        report = {
            r["point_type"]: r for r in get(world, "psa-base-date", date=day.isoformat())["rows"]
        }
        assert set(report) == {t.code for t in types.values()}
        for t in types.values():
            line = report[t.code]
            assert line["unused_points"] == unused[t.ledger_id]
            assert line["unused_yen"] == unused[t.ledger_id] * t.yen_rate
        assert report["op_bought"]["unused_yen"] == 11_000_000
        assert report["op_bought"]["status"] == "reportable"
        assert report["pt"]["status"] == "exempt"
    before = {r["point_type"]: r for r in get(world, "psa-base-date", date="2026-03-31")["rows"]}
    assert before["op_bought"]["unused_yen"] == 0
    assert before["op_bought"]["status"] == "below_threshold"


def test_reports_as_csv(world: World, clock: FakeClock) -> None:
    build(world, clock)
    made = world.client.get(
        f"{R}/trial-balance",
        params={"date": "2026-07-31", "format": "csv"},
        headers=world.admin.headers,
    )
    assert made.status_code == 200, made.text
    assert made.headers["content-type"].startswith("text/csv; charset=utf-8")
    assert made.content.startswith("\ufeff".encode())
    lines = list(csv.reader(io.StringIO(made.content.decode("utf-8-sig"))))
    assert lines[0] == ["ledger", "account_code", "account", "debits", "credits"]
    assert lines[-1][0] == "TOTAL" and lines[-1][3] == lines[-1][4]
    as_json = get(world, "trial-balance", date="2026-07-31")["rows"]
    assert len(lines) == len(as_json) + 1
    sjis = world.client.get(
        f"{R}/psa-base-date",
        params={"date": "2026-09-30", "format": "csv", "encoding": "cp932"},
        headers=world.finance.headers,
    )
    assert sjis.status_code == 200
    assert "Windows-31J" in sjis.headers["content-type"]
    rows = list(csv.reader(io.StringIO(sjis.content.decode("cp932"))))
    assert rows[0][0] == "point_type" and len(rows) >= 3


@pytest.mark.parametrize(
    ("path", "query", "field"),
    [
        ("trial-balance", {}, "date"),
        ("trial-balance", {"date": "2026-11-31"}, "date"),
        ("trial-balance", {"date": "30/11/2026"}, "date"),
        ("trial-balance", {"date": "2026-11-30T00:00:00"}, "date"),
        ("outstanding", {"date": "20261130"}, "date"),
        ("outstanding", {"date": "2026-11-30", "format": "xlsx"}, "format"),
        ("psa-base-date", {"date": "2026-09-30", "encoding": "latin-1"}, "encoding"),
        ("breakage", {"from": "2026-04-01"}, "to"),
        ("payments-by-merchant", {"from": "2026-4-1", "to": "2026-04-30"}, "from"),
        ("payments-by-month", {"from": "2026-04-01", "to": "2026-04-31"}, "to"),
        ("budgets", {"fiscal_year": "FY2026"}, "fiscal_year"),
        ("budgets", {"fiscal_year": "2026", "extra": "1"}, None),
    ],
)
def test_bad_queries_are_refused(
    world: World, path: str, query: dict[str, str], field: str | None
) -> None:
    made = world.client.get(f"{R}/{path}", params=query, headers=world.finance.headers)
    if field is None:
        # An unknown query parameter is ignored, as on the other routes.
        assert made.status_code == 200
        return
    body = assert_problem(made, 422, "validation_error")
    assert field in json.dumps(body)


@pytest.mark.parametrize(
    ("path", "query"),
    [
        ("breakage", {"from": "2026-05-01", "to": "2026-04-30"}),
        ("payments-by-merchant", {"from": "2026-01-01", "to": "2027-01-02"}),
        ("payments-by-month", {"from": "2026-05-01", "to": "2026-04-30"}),
    ],
)
def test_bad_ranges_are_refused(world: World, path: str, query: dict[str, str]) -> None:
    made = world.client.get(f"{R}/{path}", params=query, headers=world.finance.headers)
    assert_problem(made, 422)
