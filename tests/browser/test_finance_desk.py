"""The finance office PC (``/staff/``, a finance member of staff's device code) at 1280x800:
its home queues a verification of the ledger and follows it to the end; the reports draw their
charts as inline SVG with bars for the seeded data (points outstanding, expired points, payments
by month and by shop) beside their tables, payments by month from one request to its report
(none per month) and each bar that report's sum of its month; an export in hledger format
downloads and passes ``hledger check -s``; the settlement screens list last month's run, its
statements, and say why the transfer file cannot be made (the test shop has no bank details) as a
sentence; a statement's screen, and its recovery form on the same statement answered as a closed
shop's final negative one (the API's recovery itself: tests/test_settlement_api.py); the payments
list shows the resident's payment and the audit screen the verification's job run and the acts in
words. axe on every screen; screenshots in Japanese and English."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Download, Locator, Page, Request, Route, expect

from ledger.service import system_clock
from points.calendar import tokyo_date
from points.registry import StaffRole

from .desk import desk_of, open_menu
from .live import PROGRAM_NAME_JA, SHOP_NAME_JA, City
from .wallet import axe, check_error, on_screen

pytestmark = pytest.mark.browser

CHARTS = ("chart-outstanding", "chart-breakage", "chart-payments", "chart-merchants")


def bars_with_height(page: Page, chart: str) -> int:
    """How many of the chart's bars are drawn taller (or wider) than nothing."""
    return int(
        page.locator(f"#{chart} rect.bar").evaluate_all(
            "bars => bars.filter(bar => Number(bar.getAttribute('height')) > 0"
            " && Number(bar.getAttribute('width')) > 0).length"
        )
    )


def points_of(title: str) -> int:
    """The points of a bar's title ("2026年11月: 1,200 pt")."""
    return int(re.sub(r"[^0-9-]", "", title.rsplit(": ", 1)[1]))


def recovery_form(page: Page, run: Locator, shoot: Callable[..., Path]) -> None:
    """The shop's statement, opened from its run: its figures, no recovery (an open merchant's
    balance nets into its next statement). The same statement answered as a closed merchant's
    final one ending negative (the browser's answer replaced: the city of these tests cannot
    settle a second month) offers the recovery: the real API refuses it (a sentence, the key
    dropped), then an answer recorded shows the recovery (method, note, by whom)."""
    run.locator("#table-statements tr", has_text=SHOP_NAME_JA).locator(".statement-open").click()
    statement = on_screen(page, "finance-statement")
    expect(page.locator("#desk-nav #menu-settlement")).to_have_attribute("aria-current", "page")
    expect(statement.locator("h1")).to_contain_text(SHOP_NAME_JA)
    expect(statement.locator("#statement-figures")).to_contain_text("pt")
    expect(statement.locator("#table-entries")).to_contain_text("支払い")
    expect(statement.locator("#table-lines")).to_contain_text(PROGRAM_NAME_JA)
    expect(statement.locator("#recovery")).to_have_count(0)
    axe(page, "finance statement")
    shoot(page, "statement")
    statement_id = page.url.rsplit("/", 1)[1]
    path = f"**/api/v1/finance/statements/{statement_id}"
    recorded: dict[str, object] = {}

    def final_negative(route: Route) -> None:
        body = route.fetch().json()
        body.update(final=True, carried_out=-300, settle_points=0, yen=0, fee=0, yen_to_pay=0)
        if recorded:
            body["recovery"] = recorded
        route.fulfill(json=body)

    page.route(path, final_negative)
    page.reload()
    statement = on_screen(page, "finance-statement")
    expect(statement.locator("#statement-final")).to_be_visible()
    expect(statement.locator("#recovery-lead")).to_contain_text("300 pt")
    axe(page, "finance statement, negative")
    statement.locator("#recovery-method").select_option("written_off")
    statement.locator("#recovery-record").click()
    expect(statement.locator("#confirm")).to_contain_text("市の判断で放棄した")
    statement.locator("#confirm-yes").click()
    expect(statement.locator("#error")).to_have_text("理由を入力してください。")
    statement.locator("#confirm-reason").fill("市長決裁 第12号により放棄")
    axe(page, "finance statement, confirming the recovery")
    shoot(page, "statement-recovery-confirm")
    keys: list[str] = []

    def key_sent(request: Request) -> None:
        if request.url.endswith("/recovery"):
            keys.append(request.headers.get("idempotency-key", ""))

    page.on("request", key_sent)
    statement.locator("#confirm-yes").click()  # the real API: not a closed merchant's statement
    check_error(page)
    expect(statement.locator("#confirm")).to_be_visible()

    def recorded_answer(route: Route) -> None:
        sent = json.loads(route.request.post_data or "{}")
        assert sent == {"method": "written_off", "note": "市長決裁 第12号により放棄"}
        recorded.update(
            statement_id=statement_id,
            method=sent["method"],
            points=300,
            yen=300,
            note=sent["note"],
            entry_id=1,
            recorded_by="staff-finance-1",
            recorded_at="2026-12-01T01:00:00Z",
        )
        route.fulfill(status=201, json=recorded)

    page.route(f"{path}/recovery", recorded_answer)
    statement.locator("#confirm-yes").click()
    expect(statement.locator("#done")).to_have_text("回収を記録しました。")
    figures = statement.locator("#recovery-figures")
    expect(figures).to_contain_text("市の判断で放棄した")
    expect(figures).to_contain_text("市長決裁 第12号により放棄")
    expect(figures).to_contain_text("staff-finance-1")
    expect(statement.locator("#recovery-record")).to_have_count(0)
    # A key with each request, a new one after the refusal.
    assert len(keys) == 2 and all(keys) and keys[0] != keys[1], keys
    axe(page, "finance statement, recovered")
    shoot(page, "statement-recovered")
    page.unroute(path)
    page.unroute(f"{path}/recovery")
    page.remove_listener("request", key_sent)


def test_finance_checks_the_ledger_reads_the_charts_and_exports_hledger(
    browser: Browser, city: City, shoot: Callable[..., Path], tmp_path: Path
) -> None:
    resident = city.new_resident(3000)
    period = city.statement_of_last_month(resident, 700)
    city.expired_points(400)
    today = tokyo_date(system_clock())
    with desk_of(browser, city, StaffRole.FINANCE, "finance-home") as (page, home):
        expect(home.locator("#figures")).not_to_contain_text("…")
        expect(home.locator("#todo-title")).to_be_visible()
        expect(page.locator("#desk-nav #menu-home")).to_have_attribute("aria-current", "page")
        axe(page, "finance home")

        # A verification, queued and followed to its end (sealed first: the seal job is off).
        city.seal()
        home.locator("#verify-run").click()
        expect(home.locator("#verify-run")).to_be_disabled()
        expect(home.locator("#verify-state")).to_have_text("点検が終わりました。", timeout=30_000)
        expect(home.locator("#verify-verdict")).to_have_class("verify-ok")
        expect(home.locator("#verify-run")).to_be_enabled()
        shoot(page, "home")

        asked: list[str] = []

        def report_asked(request: Request) -> None:
            if "/api/v1/finance/reports/" in request.url:
                asked.append(request.url)

        page.on("request", report_asked)
        reports = open_menu(page, "reports", "finance-reports")
        expect(page.locator("#desk-nav #menu-reports")).to_have_attribute("aria-current", "page")
        for chart in CHARTS:
            svg = reports.locator(f"#{chart}")
            expect(svg).to_be_visible()
            expect(svg).to_have_attribute("role", "img")
            assert bars_with_height(page, chart) >= 1, chart
        this_month = today.strftime("%Y-%m")
        expired = reports.locator(f'#chart-breakage rect.bar[data-period="{this_month}"]')
        assert float(expired.get_attribute("height") or 0) > 0
        expect(expired.locator("title")).to_contain_text("pt")
        paid = reports.locator(f'#chart-payments rect.bar[data-period="{period}"]')
        assert float(paid.get_attribute("height") or 0) > 0
        expect(reports.locator("#table-merchants")).to_contain_text(SHOP_NAME_JA)
        page.remove_listener("request", report_asked)
        # Payments by month: one request for the range (none per month), each bar the sum of the
        # report's rows of its month over the point types.
        by_month = [url for url in asked if "/payments-by-month?" in url]
        assert len(by_month) == 1, asked
        assert len([url for url in asked if "/payments-by-merchant?" in url]) == 1, asked
        start = reports.locator("#report-from").input_value()
        end = reports.locator("#report-to").input_value()
        assert f"from={start}&to={end}" in by_month[0]
        report = page.request.get(
            f"/api/v1/finance/reports/payments-by-month?from={start}&to={end}"
        ).json()
        expected: dict[str, int] = {}
        for row in report["rows"]:
            expected[row["month"]] = expected.get(row["month"], 0) + row["net"]
        assert expected[period] >= 700 and len(expected) >= 12
        bars = reports.locator("#chart-payments rect.bar").all()
        drawn = {
            bar.get_attribute("data-period") or "": points_of(
                bar.locator("title").text_content() or ""
            )
            for bar in bars
        }
        assert drawn == expected
        expect(reports.locator("#csv-payments")).to_have_attribute(
            "href", re.compile(r"payments-by-month\?from=.*format=csv")
        )
        expect(reports.locator("#table-trial")).to_contain_text("合計")
        axe(page, "finance reports")
        shoot(page, "reports")
        page.locator("#lang").click()
        expect(reports.locator("h1")).to_have_text("Reports")
        expect(reports.locator("#chart-outstanding")).to_have_attribute(
            "aria-label", "Bar chart of points outstanding by expiry month"
        )
        axe(page, "finance reports in English")
        shoot(page, "reports-en")
        page.locator("#lang").click()
        expect(reports.locator("h1")).to_have_text("報告書")

        exports = open_menu(page, "exports", "finance-exports")
        expect(page.locator("#desk-nav #menu-exports")).to_have_attribute("aria-current", "page")
        axe(page, "finance exports")
        exports.locator("#export-from").fill(today.isoformat())
        exports.locator("#export-to").fill((today - timedelta(days=1)).isoformat())
        downloads: list[Download] = []

        def downloaded(download: Download) -> None:
            downloads.append(download)

        page.on("download", downloaded)
        exports.locator("#export-download").click()
        check_error(page)  # the last day before the first: a sentence, no download
        page.wait_for_timeout(300)
        page.remove_listener("download", downloaded)
        assert not downloads
        exports.locator("#export-format").select_option("hledger")
        exports.locator("#export-from").fill((today - timedelta(days=800)).isoformat())
        exports.locator("#export-to").fill(today.isoformat())
        city.seal()
        with page.expect_download() as download:
            exports.locator("#export-download").click()
        journal = tmp_path / "ledger.journal"
        download.value.save_as(journal)
        assert "狛江" in journal.read_text("utf-8") or journal.stat().st_size > 0
        if shutil.which("hledger"):
            checked = subprocess.run(
                ["hledger", "check", "-s", "-f", str(journal)],
                capture_output=True,
                text=True,
                check=False,
            )
            assert checked.returncode == 0, checked.stderr

        settlement = open_menu(page, "settlement", "finance-settlement")
        run_link = settlement.locator(".run-link").first
        expect(run_link).to_be_visible()
        axe(page, "finance settlement")
        settlement.locator("#plan-period").fill(today.strftime("%Y-%m"))
        settlement.locator("#plan-show").click()
        check_error(page)  # this month has not ended: a sentence
        month = f"{int(period[:4])}年{int(period[5:])}月"
        settlement.get_by_role("link", name=month, exact=True).first.click()
        run = on_screen(page, "finance-run")
        expect(page.locator("#desk-nav #menu-settlement")).to_have_attribute("aria-current", "page")
        expect(run.locator("#table-statements")).to_contain_text(SHOP_NAME_JA)
        expect(run.locator("#run-totals")).to_contain_text("円")
        axe(page, "finance run")
        run.locator("#transfer-make").click()
        expect(run.locator("#transfer-confirm-question")).to_be_visible()
        axe(page, "finance run, confirming")
        run.locator("#transfer-confirm").click()
        text = check_error(page)
        assert "振込する精算書がありません" in text  # the test shop has no bank details
        shoot(page, "run")
        recovery_form(page, run, shoot)

        payments = open_menu(page, "payments", "finance-payments")
        payments.locator("#payments-from").fill(
            (today.replace(day=1) - timedelta(days=1)).replace(day=1).isoformat()
        )
        payments.locator("#payments-show").click()
        expect(payments.locator("#table-payments-list")).to_contain_text(SHOP_NAME_JA)
        expect(payments.locator("#table-payments-list")).to_contain_text(resident.id)
        axe(page, "finance payments")

        audit = open_menu(page, "audit", "finance-audit")
        expect(audit.locator("#table-jobs")).to_contain_text("台帳の点検")
        # The verification queued above is for a Tokyo minute, shown with a space, not a "T".
        verified = audit.locator("#table-jobs tbody tr").filter(has_text="台帳の点検").first
        period = verified.locator("td").nth(1)
        expect(period).to_have_text(re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}$"))
        expect(audit.locator("#table-audit tbody tr").first).to_be_visible()
        # The seeding's first acts, oldest first: in words, the stored name beside them.
        created = audit.locator("#table-audit .action-name").filter(has_text="ポイントの種類の作成")
        expect(created.first.locator("code.raw-action")).to_have_text("point_type.create")
        axe(page, "finance audit")
        shoot(page, "audit")
