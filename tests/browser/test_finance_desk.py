"""The finance office PC (``/staff/``, a finance member of staff's device code) at 1280x800:
its home queues a verification of the ledger and follows it to the end; the reports draw their
charts as inline SVG with bars for the seeded data (points outstanding, expired points, payments
by month and by shop) beside their tables; an export in hledger format downloads and passes
``hledger check -s``; the settlement screens list last month's run, its statements, and say why
the transfer file cannot be made (the test shop has no bank details) as a sentence; the payments
list shows the resident's payment and the audit screen the verification's job run. axe on every
screen; screenshots in Japanese and English."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Download, Page, expect

from ledger.service import system_clock
from points.calendar import tokyo_date
from points.registry import StaffRole

from .desk import desk_of, open_menu
from .live import SHOP_NAME_JA, City
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
        expect(audit.locator("#table-audit tbody tr").first).to_be_visible()
        axe(page, "finance audit")
        shoot(page, "audit")
