"""Settlement through the HTTP API (``api.routers.settlement``), on both databases: finance runs
a month (a replay answers the same run), reads runs, statements and a dry run, downloads CSV and
prints statements, records a closed merchant's recovery; a shop sees only its own statements.

The world's staff tokens last 90 days from its opening (2026-04-01): April is paid, settled on
May 1, and May settled on June 1.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from api_world import FISCAL_YEAR, Actor, World, assert_problem
from conftest import FakeClock
from payment_helpers import Shop, _award, funded_resident, key, open_shop, pay, payment_qr
from sqlmodel import Session, select

from issuers.programs import Program
from points.calendar import TOKYO
from points.pointtypes import PointType
from points.registry import Merchant
from redemption.merchants import MerchantSettings
from redemption.settlement_models import SettlementRun, Statement

F = "/api/v1/finance"
M = "/api/v1/merchant"
EVIL = '<script>alert("x")</script>&商店'


def tokyo(year: int, month: int, day: int, hour: int = 12) -> datetime:
    return datetime(year, month, day, hour, tzinfo=TOKYO).astimezone(UTC)


def pay_shop(world: World, shop: Shop, resident: Actor, amount: int) -> str:
    made = pay(world, resident, payment_qr(world, shop, amount)["token"])
    assert made.status_code == 201, made.text
    return str(made.json()["id"])


def refund(world: World, shop: Shop, payment_id: str, amount: int) -> None:
    made = world.client.post(
        f"{M}/payments/{payment_id}/refunds",
        json={"amount": amount},
        headers={**shop.headers, **key("refund")},
    )
    assert made.status_code == 201, made.text


def change(session: Session, model: Any, ident: str, **values: Any) -> None:
    row = session.get(model, ident)
    assert row is not None
    for name, value in values.items():
        setattr(row, name, value)
    session.add(row)


def count_statements(world: World) -> int:
    return world.read(lambda s: len(s.exec(select(Statement)).all()))


def count_runs(world: World) -> int:
    return world.read(lambda s: len(s.exec(select(SettlementRun)).all()))


@dataclass
class April:
    a: Shop
    b: Shop
    counter: Shop
    program: str
    other: str
    p1: str
    p2: str
    p3: str


def april(world: World, clock: FakeClock) -> April:
    """April: 300 + 200 at shop a (fee 1.5 %; 50 of the first refunded), 100 at shop b (its
    name is hostile HTML), 70 at a counter; 2 yen a point; one program with a budget code."""
    clock.now = tokyo(2026, 4, 10)
    program = world.fresh_program(amount=1000, budget={FISCAL_YEAR: 10**9})
    other = world.fresh_program("b", amount=1000, budget={FISCAL_YEAR: 10**9})
    a, b, counter = open_shop(world), open_shop(world), open_shop(world)

    def set_up(session: Session) -> None:
        change(session, PointType, world.point_type_id, yen_rate=2)
        change(session, MerchantSettings, a.merchant_id, fee_bps=150)
        change(session, Program, program, budget_code="01-02-03-04", name_ja="健診事業")
        change(session, Merchant, b.merchant_id, name_ja=EVIL)
        change(session, Merchant, counter.merchant_id, kind="counter", name_ja="市役所窓口")

    world.write(set_up)
    r1, r2 = funded_resident(world, 0), funded_resident(world, 0)
    world.write(lambda s: _award(s, world.now(), program, r1.id))
    world.write(lambda s: _award(s, world.now(), other, r2.id))
    p1 = pay_shop(world, a, r1, 300)
    p2 = pay_shop(world, a, r2, 200)
    refund(world, a, p1, 50)
    p3 = pay_shop(world, b, r1, 100)
    pay_shop(world, counter, r2, 70)
    return April(a, b, counter, program, other, p1, p2, p3)


def run(world: World, period: str, **headers: str) -> Any:
    return world.client.post(
        f"{F}/settlement-runs",
        json={"period": period},
        headers={**world.finance.headers, **key("run"), **headers},
    )


def settled_april(world: World, clock: FakeClock) -> tuple[April, dict[str, Any]]:
    made = april(world, clock)
    clock.now = tokyo(2026, 5, 1, 1)
    response = run(world, "2026-04")
    assert response.status_code == 201, response.text
    return made, response.json()


def statement_of(body: dict[str, Any], shop: Shop) -> dict[str, Any]:
    return next(s for s in body["statements"] if s["merchant_id"] == shop.merchant_id)


# Runs ---------------------------------------------------------------------------------------


def test_a_run_its_replay_and_its_reads(world: World, clock: FakeClock) -> None:
    made = april(world, clock)
    clock.now = tokyo(2026, 5, 1, 1)

    # The dry run writes nothing and shows what the run makes.
    before, runs_before = count_statements(world), count_runs(world)
    planned = world.client.get(f"{F}/settlement-plan?period=2026-04", headers=world.finance.headers)
    assert planned.status_code == 200, planned.text
    assert (count_statements(world), count_runs(world)) == (before, runs_before)
    plan = planned.json()
    assert "id" not in plan["statements"][0]
    planned_a = statement_of(plan, made.a)
    assert (planned_a["yen"], planned_a["fee"], planned_a["yen_to_pay"]) == (900, 13, 887)
    assert {(line["program_id"], line["budget_code"]) for line in planned_a["lines"]} == {
        (made.program, "01-02-03-04"),
        (made.other, None),
    }
    assert "健診事業" in {line["program_name_ja"] for line in planned_a["lines"]}

    response = run(world, "2026-04")
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["replay"] is False and body["period"] == "2026-04" and body["trigger"] == "api"
    assert body["created_by"] == world.finance.id
    sa_ = statement_of(body, made.a)
    assert (sa_["payment_points"], sa_["refund_points"], sa_["net_points"]) == (500, 50, 450)
    assert (sa_["payment_count"], sa_["refund_count"]) == (2, 1)
    assert (sa_["yen"], sa_["fee"], sa_["yen_to_pay"], sa_["transfer"]) == (900, 13, 887, "bank")
    assert statement_of(body, made.counter)["transfer"] == "none"
    assert statement_of(body, made.b)["merchant_name_ja"] == EVIL
    # The plan was what the run made.
    assert {k: v for k, v in sa_.items() if k not in ("id", "run_id")} == {
        k: v for k, v in planned_a.items() if k != "lines"
    }
    totals = body["totals"]
    assert totals["statements"] == 3
    assert totals["yen_to_pay"] == 887 + 200 + 140
    assert totals["by_transfer"] == {
        "bank": {"statements": 2, "yen_to_pay": 887 + 200},
        "none": {"statements": 1, "yen_to_pay": 140},
    }
    audit = world.last_audit()
    assert (audit["action"], audit["actor_id"]) == ("settlement.run", world.finance.id)

    # A replay: 200, the same run, nothing written.
    count = count_statements(world)
    again = run(world, "2026-04")
    assert again.status_code == 200, again.text
    assert again.json()["replay"] is True and again.json()["id"] == body["id"]
    assert {s["id"] for s in again.json()["statements"]} == {s["id"] for s in body["statements"]}
    assert count_statements(world) == count

    # Reads: the list, the run, the statements.
    listed = world.client.get(f"{F}/settlement-runs", headers=world.admin.headers)
    assert listed.status_code == 200 and listed.json()["items"][0]["id"] == body["id"]
    one = world.client.get(f"{F}/settlement-runs/{body['id']}", headers=world.finance.headers)
    assert one.status_code == 200 and one.json()["totals"] == totals
    statements = world.client.get(
        f"{F}/statements?period=2026-04&merchant_id={made.a.merchant_id}",
        headers=world.finance.headers,
    )
    assert [s["id"] for s in statements.json()["items"]] == [sa_["id"]]
    # Paging by (period, merchant, point type) never skips one.
    seen, cursor = [], ""
    while True:
        page = world.client.get(
            f"{F}/statements?limit=1{cursor}", headers=world.finance.headers
        ).json()
        seen.extend(item["id"] for item in page["items"])
        if page["next_cursor"] is None:
            break
        cursor = f"&cursor={page['next_cursor']}"
    assert sorted(seen) == sorted(s["id"] for s in body["statements"])

    detail = world.client.get(f"{F}/statements/{sa_['id']}", headers=world.finance.headers)
    assert detail.status_code == 200, detail.text
    full = detail.json()
    assert full["payout_date"] is None and full["entry_id"] is not None
    assert full["cut_at"] == body["cut_at"]
    assert {
        (line["program_id"], line["budget_code"], line["points"], line["yen"])
        for line in full["lines"]
    } == {(made.program, "01-02-03-04", 250, 500), (made.other, None, 200, 400)}
    assert {line["program_name_ja"] for line in full["lines"]} >= {"健診事業"}
    by_payment = {(e["payment_id"], e["kind"]): e for e in full["entries"]}
    assert set(by_payment) == {(made.p1, "payment"), (made.p2, "payment"), (made.p1, "refund")}
    assert by_payment[(made.p1, "refund")]["points"] == -50
    assert all(isinstance(e["entry_id"], int) for e in full["entries"])

    # The shop: its own statement, by payment, without ledger ids.
    mine = world.client.get(f"{M}/statements/{sa_['id']}", headers=made.a.headers)
    assert mine.status_code == 200, mine.text
    own = mine.json()
    assert own["entry_id"] is None and all(e["entry_id"] is None for e in own["entries"])
    assert {e["payment_id"] for e in own["entries"]} == {made.p1, made.p2}
    assert {k: v for k, v in own.items() if k not in ("entries", "entry_id")} == {
        k: v for k, v in full.items() if k not in ("entries", "entry_id")
    }
    listed_mine = world.client.get(f"{M}/statements", headers=made.a.headers).json()
    assert [s["id"] for s in listed_mine["items"]] == [sa_["id"]]


def test_a_shop_never_sees_another_shops_statement(world: World, clock: FakeClock) -> None:
    made, body = settled_april(world, clock)
    theirs = statement_of(body, made.a)["id"]
    for suffix in ("", ".csv", "/print"):
        response = world.client.get(f"{M}/statements/{theirs}{suffix}", headers=made.b.headers)
        problem = assert_problem(response, 404, "not_found")
        unknown = world.client.get(
            f"{M}/statements/stm_nosuchstatement{suffix}", headers=made.b.headers
        )
        assert_problem(unknown, 404, "not_found")
        for hidden in (made.a.merchant_id, made.p1, "店"):
            assert hidden not in response.text
        assert {k: v for k, v in problem.items() if k not in ("detail", "request_id")} == {
            k: v for k, v in unknown.json().items() if k not in ("detail", "request_id")
        }
    listed = world.client.get(f"{M}/statements", headers=made.b.headers).json()
    assert {s["merchant_id"] for s in listed["items"]} == {made.b.merchant_id}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", f"{F}/settlement-runs"),
        ("GET", f"{F}/settlement-runs"),
        ("GET", f"{F}/settlement-plan?period=2026-03"),
        ("GET", f"{F}/statements"),
        ("GET", f"{M}/statements"),
    ],
)
def test_residents_issuers_and_the_counter_are_refused(
    world: World, method: str, path: str
) -> None:
    names = ["resident", "issuer_a", "counter"]
    if path.startswith(M):
        names += ["finance", "admin"]
    if method == "POST":
        names += ["admin", "merchant_a"]
    before = world.snapshot()
    for name in names:
        response = world.client.request(
            method,
            path,
            json={"period": "2026-03"} if method == "POST" else None,
            headers={**world.actors[name].headers, **key("authz")},
        )
        assert assert_problem(response, 403)["code"] == "forbidden", name
    assert_problem(world.client.get(path if method == "GET" else f"{F}/statements"), 401)
    assert world.snapshot() == before


# Refusals -----------------------------------------------------------------------------------


def test_the_periods_refused(world: World, clock: FakeClock) -> None:
    clock.now = tokyo(2026, 4, 10)
    early = run(world, "2026-04")
    problem = assert_problem(early, 409, "period_not_ended")
    assert problem["cut_at"].startswith("2026-04-30T15:00")
    assert_problem(
        world.client.get(f"{F}/settlement-plan?period=2026-04", headers=world.finance.headers),
        409,
        "period_not_ended",
    )
    assert count_runs(world) == 0
    clock.now = tokyo(2026, 5, 1, 1)
    assert run(world, "2026-04").status_code == 201
    assert_problem(run(world, "2026-03"), 409, "period_superseded")
    assert_problem(
        world.client.get(f"{F}/settlement-plan?period=2026-02", headers=world.finance.headers),
        409,
        "period_superseded",
    )
    for bad in ("2026-13", "26-11", "2026-1", "2026-11-01", "", "１９９９-01", "1999-12"):
        assert_problem(run(world, bad), 422, "validation_error")
    assert_problem(
        world.client.get(f"{F}/settlement-plan?period=2026-13", headers=world.finance.headers),
        422,
        "validation_error",
    )
    assert count_runs(world) == 1


@pytest.mark.parametrize(
    "content",
    [
        b'{"period": 202611}',
        b'{"period": "2026-03", "trigger": "cli"}',
        b'{"period": "2026-03", "period": "2026-03"}',
        b'{"period": ["2026-03"]}',
        b"{}",
    ],
    ids=["an integer", "an unknown field", "a key twice", "a list", "nothing"],
)
def test_a_run_takes_its_body_strictly(world: World, content: bytes) -> None:
    before = world.snapshot()
    response = world.client.post(
        f"{F}/settlement-runs",
        content=content,
        headers={**world.finance.headers, **key("strict"), "Content-Type": "application/json"},
    )
    assert_problem(response, 422, "validation_error")
    assert world.snapshot() == before and count_runs(world) == 0


def test_a_run_needs_an_idempotency_key(world: World) -> None:
    response = world.client.post(
        f"{F}/settlement-runs", json={"period": "2026-03"}, headers=world.finance.headers
    )
    assert response.status_code in (400, 422, 428), response.text
    assert count_runs(world) == 0


# Files --------------------------------------------------------------------------------------


def rows_of(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def test_a_statement_as_csv(world: World, clock: FakeClock) -> None:
    made, body = settled_april(world, clock)
    sa_ = statement_of(body, made.a)
    response = world.client.get(f"{F}/statements/{sa_['id']}.csv", headers=world.finance.headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    disposition = response.headers["content-disposition"]
    assert f'filename="statement-2026-04-{made.a.merchant_id}-pt.csv"' in disposition
    assert "filename*=UTF-8''" in disposition
    assert response.content.startswith(b"\xef\xbb\xbf")
    rows = rows_of(response.content.decode("utf-8-sig"))
    assert rows[0][:8] == [
        *("明細番号", "期間", "加盟店", "ポイント種別"),
        *("区分", "件数", "ポイント", "円"),
    ]
    by_kind = {row[4]: row for row in rows[1:]}
    assert by_kind["お支払額"][7] == str(sa_["yen_to_pay"])
    assert by_kind["精算ポイント"][6:8] == [str(sa_["settle_points"]), str(sa_["yen"])]
    assert by_kind["お支払い"][5:8] == ["2", "500", "1000"]
    assert by_kind["ご返金"][5:8] == ["1", "-50", "-100"]
    budget = [row for row in rows[1:] if row[4] == "予算科目"]
    assert sum(int(row[7]) for row in budget) == sa_["yen"]
    assert ("健診事業", "01-02-03-04") in {(row[8], row[9]) for row in budget}
    covered = [row for row in rows[1:] if row[4].startswith("対象取引")]
    assert {row[10] for row in covered} == {made.p1, made.p2}
    assert all(row[11] for row in covered)  # finance sees the ledger entries
    assert sum(int(row[6]) for row in covered) == sa_["net_points"]

    # CP932 for older Excel; the shop's own file has no ledger ids.
    old = world.client.get(f"{M}/statements/{sa_['id']}.csv?encoding=cp932", headers=made.a.headers)
    assert old.status_code == 200 and "Windows-31J" in old.headers["content-type"]
    text = old.content.decode("cp932")
    assert not old.content.startswith(b"\xef\xbb\xbf")
    shop_rows = rows_of(text)
    assert shop_rows[0][0] == "明細番号"
    assert all(not row[11] for row in shop_rows[1:])
    assert_problem(
        world.client.get(
            f"{F}/statements/{sa_['id']}.csv?encoding=latin-1", headers=world.finance.headers
        ),
        422,
        "validation_error",
    )

    # The hostile name is in the CSV as text (the CSV is not a page), never as a formula.
    sb = statement_of(body, made.b)
    evil = world.client.get(f"{M}/statements/{sb['id']}.csv", headers=made.b.headers)
    assert rows_of(evil.content.decode("utf-8-sig"))[1][2] == EVIL


def test_a_runs_statements_and_budget_lines_as_csv(world: World, clock: FakeClock) -> None:
    _made, body = settled_april(world, clock)
    statements = world.client.get(
        f"{F}/settlement-runs/{body['id']}/statements.csv", headers=world.admin.headers
    )
    assert statements.status_code == 200, statements.text
    assert 'filename="statements-2026-04.csv"' in statements.headers["content-disposition"]
    rows = rows_of(statements.content.decode("utf-8-sig"))
    assert rows[0][0] == "明細番号" and len(rows) == 1 + 3
    header = rows[0]
    pay_column = header.index("お支払額")
    assert sum(int(row[pay_column]) for row in rows[1:]) == body["totals"]["yen_to_pay"]

    lines = world.client.get(
        f"{F}/settlement-runs/{body['id']}/budget-lines.csv?encoding=cp932",
        headers=world.finance.headers,
    )
    assert lines.status_code == 200, lines.text
    rows = rows_of(lines.content.decode("cp932"))
    assert rows[0] == ["期間", "予算科目", "事業", "区分", "明細数", "ポイント", "円"]
    per_code = {row[1]: row for row in rows[1:] if row[3] == "予算科目計"}
    # The coded program's points: 250 at shop a and 100 at shop b (2 yen a point).
    assert per_code["01-02-03-04"][5:7] == ["350", "700"]
    total = next(row for row in rows[1:] if row[3] == "合計")
    assert total[5:7] == [str(body["totals"]["points"]), str(body["totals"]["yen"])]
    assert sum(int(row[6]) for row in per_code.values()) == body["totals"]["yen"]


def test_a_statement_as_a_page_to_print(world: World, clock: FakeClock) -> None:
    made, body = settled_april(world, clock)
    sa_ = statement_of(body, made.a)
    page = world.client.get(f"{M}/statements/{sa_['id']}/print", headers=made.a.headers)
    assert page.status_code == 200, page.text
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["cache-control"] == "no-store"
    assert "style-src 'sha256-" in page.headers["content-security-policy"]
    html = page.text
    city = world.app.state.services.settings.city_name
    for words in (
        "精算書 (お支払明細)",
        city,
        "2026年4月分",
        "未払い",
        "お支払い件数",
        "ご返金件数",
        "前月からの繰越",
        "精算ポイント",
        "換算レート",
        "手数料",
        "お支払額",
        "887 円",
        "900 円",
        "13 円",
        "01-02-03-04",
        "健診事業",
        "予算科目 (款項目節)",
        "@page",
        "A4",
    ):
        assert words in html, words
    assert "<script" not in html

    sb = statement_of(body, made.b)
    evil = world.client.get(f"{F}/statements/{sb['id']}/print", headers=world.finance.headers)
    assert evil.status_code == 200
    assert "<script" not in evil.text
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;商店" in evil.text

    counter = statement_of(body, made.counter)
    page = world.client.get(f"{F}/statements/{counter['id']}/print", headers=world.admin.headers)
    assert "振込なし（市の窓口）" in page.text and "未払い" not in page.text


# A closed merchant's final statement and its recovery ----------------------------------------


def test_a_final_statement_and_its_recovery(world: World, clock: FakeClock) -> None:
    made, body = settled_april(world, clock)
    # May: shop b's April payment refunded in full, and shop b closes owing it.
    clock.now = tokyo(2026, 5, 2)
    refund(world, made.b, made.p3, 100)
    closed = world.client.post(
        f"/api/v1/admin/merchants/{made.b.merchant_id}/status",
        json={"status": "closed", "reason": "閉店"},
        headers=world.admin.headers,
    )
    assert closed.status_code == 200, closed.text
    clock.now = tokyo(2026, 6, 1, 1)
    may = run(world, "2026-05")
    assert may.status_code == 201, may.text
    final = statement_of(may.json(), made.b)
    assert (final["final"], final["carried_out"], final["settle_points"]) == (True, -100, 0)

    page = world.client.get(f"{F}/statements/{final['id']}/print", headers=world.finance.headers)
    assert "最終明細" in page.text and "100 pt" in page.text and "200 円" in page.text

    # The open shop a's statement has nothing to recover; the note is needed.
    open_one = statement_of(body, made.a)["id"]
    assert_problem(
        world.client.post(
            f"{F}/statements/{open_one}/recovery",
            json={"method": "repaid", "note": "x"},
            headers={**world.finance.headers, **key("rec")},
        ),
        409,
        "conflict",
    )
    for wrong in ({"method": "repaid", "note": " "}, {"method": "paid", "note": "x"}, {}):
        assert_problem(
            world.client.post(
                f"{F}/statements/{final['id']}/recovery",
                json=wrong,
                headers={**world.finance.headers, **key("rec")},
            ),
            422,
            "validation_error",
        )
    assert_problem(
        world.client.post(
            f"{F}/statements/{final['id']}/recovery",
            json={"method": "repaid", "note": "x"},
            headers={**world.admin.headers, **key("rec")},
        ),
        403,
        "forbidden",
    )

    recorded = world.client.post(
        f"{F}/statements/{final['id']}/recovery",
        json={"method": "repaid", "note": "店主が返金"},
        headers={**world.finance.headers, **key("rec")},
    )
    assert recorded.status_code == 201, recorded.text
    recovery = recorded.json()
    assert (recovery["method"], recovery["points"], recovery["yen"]) == ("repaid", 100, 200)
    assert recovery["recorded_by"] == world.finance.id and recovery["entry_id"]
    assert world.last_audit()["action"] == "statement.recovery"

    detail = world.client.get(f"{F}/statements/{final['id']}", headers=world.finance.headers)
    assert detail.json()["recovery"]["note"] == "店主が返金"
    # A closed shop's staff no longer sign in (``points.access``); finance prints it for them.
    assert_problem(world.client.get(f"{M}/statements/{final['id']}", headers=made.b.headers), 401)
    # (Were it to sign in, it would see the recovery without the ledger's ids or finance's staff.)
    world.write(lambda s: change(s, Merchant, made.b.merchant_id, status="active"))
    theirs = world.client.get(f"{M}/statements/{final['id']}", headers=made.b.headers)
    assert theirs.status_code == 200, theirs.text
    assert theirs.json()["recovery"]["method"] == "repaid"
    assert theirs.json()["recovery"]["entry_id"] is None
    assert theirs.json()["recovery"]["recorded_by"] is None
    again = world.client.post(
        f"{F}/statements/{final['id']}/recovery",
        json={"method": "offset", "note": "again"},
        headers={**world.finance.headers, **key("rec")},
    )
    assert_problem(again, 409, "conflict")
    assert (
        "ご返金済み"
        in world.client.get(
            f"{F}/statements/{final['id']}/print", headers=world.finance.headers
        ).text
    )
    assert json.dumps(recovery)  # serialisable as stored for an idempotent replay
