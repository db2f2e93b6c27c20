"""The department's PC (担当課, role ``issuer``) at 1280x800: a CSV file with one bad row is
reported line by line and awards nothing, the mended file awards every row; one resident is
awarded by address number after a confirmation; a program's page lists the awards; the check-in
screen shows a QR code that decodes and whose attendance count rises when a resident checks in,
and a resident without a phone checks in by card; a new event is created and closed early. axe
on every department screen, screenshots in Japanese and one in English."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from points.registry import StaffRole

from .desk import desk_of, open_menu, refused_first
from .live import City, call, expect_status
from .till import qr_text
from .wallet import axe, on_screen

pytestmark = pytest.mark.browser

AMOUNT = 700


def csv_file(page: Page, name: str, lines: list[str]) -> None:
    page.set_input_files(
        "#csv-file",
        files=[
            {"name": name, "mimeType": "text/csv", "buffer": ("\n".join(lines) + "\n").encode()}
        ],
    )


def choose_program(page: Page, select: str, program_id: str, screen: str) -> None:
    page.locator(select).select_option(program_id)
    expect(page).to_have_url(re.compile(re.escape(program_id)))
    on_screen(page, screen)


def test_department_uploads_a_file_awards_a_resident_and_reads_a_program(
    browser: Browser, city: City, shoot: Callable[..., Path]
) -> None:
    tag = uuid.uuid4().hex[:6]
    program = city.new_department_program(
        f"健診受診ポイント{tag}", f"Checkup points {tag}", AMOUNT, 2_000_000
    )
    first, first_number = city.new_numbered_resident()
    second, second_number = city.new_numbered_resident()
    third, third_number = city.new_numbered_resident()
    with desk_of(browser, city, StaffRole.ISSUER, "department-home") as (page, home):
        expect(home.locator("h1")).to_contain_text("環境政策課")
        expect(home.locator("#first-steps li")).to_have_count(3)
        row = home.locator("#programs tr", has=page.locator(f'[data-program="{program}"]'))
        expect(row).to_contain_text("実施中")
        expect(row).to_contain_text("700 pt")
        axe(page, "department home")
        shoot(page, "home")

        # A file with one bad line: reported line by line, nothing awarded.
        open_menu(page, "upload", "department-upload")
        axe(page, "department upload (no program)")
        choose_program(page, "#upload-program", program, "department-upload")
        with page.expect_download() as sample:
            page.locator("#template").click()
        template = Path(sample.value.path()).read_text("utf-8-sig").splitlines()
        assert template[0] == "address_number,record_id,occurred_on" and len(template) == 3
        header = "address_number,record_id,occurred_on"
        bad = [header, f"{first_number},{tag}-1,", f"{'9' * 19},{tag}-2,"]
        csv_file(page, "checkups.csv", bad)
        page.locator("#check-file").click()
        problems = page.locator("#check-problems")
        expect(problems).to_be_visible()
        expect(problems.locator("tbody tr")).to_have_count(1)
        expect(problems.locator("tbody tr")).to_contain_text("3行目")
        expect(problems.locator("tbody tr")).to_contain_text("宛名番号")
        expect(problems.locator("tbody tr")).to_contain_text("の住民はいません")
        expect(page.locator("#nothing-awarded")).to_be_visible()
        expect(page.locator("#award-file")).to_have_count(0)
        assert city.budget_awarded(program) == 0
        assert city.balance(first) == 0
        problems.scroll_into_view_if_needed()
        axe(page, "department upload check with a problem")
        shoot(page, "upload-problem")

        # Mended: two lines, awarded after the check.
        csv_file(
            page,
            "checkups-mended.csv",
            [header, f"{first_number},{tag}-1,", f"{second_number},{tag}-2,"],
        )
        expect(page.locator("#check-problems")).to_have_count(0)
        page.locator("#check-file").click()
        expect(page.locator("#check-good")).to_be_visible()
        award_file = page.locator("#award-file")
        expect(award_file).to_contain_text("2行")
        expect(award_file).to_contain_text("1,400 pt")
        axe(page, "department upload check clean")
        award_file.click()
        result = on_screen(page, "department-upload-result")
        expect(result.locator("#upload-status")).to_contain_text("付与が終わりました")
        expect(result.locator("#upload-awarded")).to_have_text("2行")
        expect(result.locator("#budget-after-awarded")).to_have_text("1,400 pt")
        assert city.budget_awarded(program) == 2 * AMOUNT
        assert city.balance(first) == AMOUNT and city.balance(second) == AMOUNT
        axe(page, "department upload result")
        shoot(page, "upload-result")

        # One resident, by address number: looked up, confirmed, awarded.
        award = open_menu(page, "award", "department-award")
        axe(page, "department award (no program)")
        choose_program(page, "#award-program", program, "department-award")
        award = on_screen(page, "department-award")
        award.locator("#address-number").fill("1" * 19 + "7")
        refused_first(page, award, "look-up", {"address-number": third_number})
        expect(award.locator("#resident-found")).to_contain_text("ウォレットはまだありません")
        award.locator("#record-id").fill(f"{tag}-3")
        axe(page, "department award form")
        award.locator("#award-review-go").click()
        expect(award.locator("#award-review")).to_contain_text(third_number)
        expect(award.locator("#award-confirm")).to_contain_text("700 pt")
        axe(page, "department award confirmation")
        award.locator("#award-confirm").click()
        expect(award.locator("#award-done")).to_have_text("付与しました")
        expect(award.locator("#award-amount")).to_have_text("700 pt")
        expect(award.locator("#budget-after-awarded")).to_have_text("2,100 pt")
        assert city.balance(third) == AMOUNT
        axe(page, "department award done")
        shoot(page, "award-done")

        # The program's page: this year's budget and its three awards.
        page.locator("#award-program-page").click()
        detail = on_screen(page, "department-program")
        expect(detail.locator("#budget-awarded")).to_have_text("2,100 pt")
        expect(detail.locator("#budget-residents")).to_have_text("3人")
        expect(detail.locator("#awards tbody tr")).to_have_count(3)
        expect(detail.locator("#budget-remaining")).to_have_text("1,997,900 pt")
        expect(detail.locator("#budget-share")).to_contain_text("1%未満")
        axe(page, "department program")
        shoot(page, "program")
        page.locator("#lang").click()
        expect(detail.locator("#budget-residents")).to_have_text("3 people")
        expect(page.locator("#desk-nav #menu-upload")).to_have_text("Award from a CSV file")
        axe(page, "department program in English")
        shoot(page, "program-en")
        page.locator("#lang").click()
        expect(detail.locator("#budget-residents")).to_have_text("3人")

        # An upload that stopped after its first line: cancelled, the rest back to the budget.
        fourth_number = city.new_numbered_resident()[1]
        fifth_number = city.new_numbered_resident()[1]
        lines = [header, f"{fourth_number},{tag}-4,", f"{fifth_number},{tag}-5,"]
        stopped = city.stopped_upload(program, ("\n".join(lines) + "\n").encode())
        page.goto(f"/staff/#/uploads/{stopped}")
        outcome = on_screen(page, "department-upload-result")
        expect(outcome.locator("#upload-status")).to_contain_text("付与の途中です")
        expect(outcome.locator("#upload-awarded")).to_have_text("1行")
        outcome.locator("#cancel-upload").click()
        refused_first(
            page,
            outcome,
            "cancel-confirm",
            {"cancel-reason": "名簿の誤りのため"},
            check="department upload stopped",
        )
        expect(outcome.locator("#upload-status")).to_contain_text("取り消しました")
        expect(outcome.locator("#upload-sums")).to_contain_text("700 pt")
        assert city.budget_awarded(program) == 4 * AMOUNT
        shoot(page, "upload-cancelled")


def test_department_runs_events_and_the_check_in_screen(
    browser: Browser, city: City, shoot: Callable[..., Path]
) -> None:
    tag = uuid.uuid4().hex[:6]
    with desk_of(browser, city, StaffRole.ISSUER, "department-home") as (page, _):
        events = open_menu(page, "events", "department-events")
        expect(events.locator(f'#events [data-event="{city.event_id}"]')).to_be_visible()
        axe(page, "department events")

        # A new event, then closed early (confirmed, with a reason).
        events.locator("#new-event").click()
        name = f"河川敷清掃{tag}"
        events.locator("#event-name").fill(name)
        events.locator("#event-place").fill("五本松")
        events.locator("#event-capacity").fill("30")
        axe(page, "department new event")
        events.locator("#event-create").click()
        expect(events.locator("#events-notice")).to_contain_text(name)
        row = events.locator("#events tbody tr", has_text=name)
        expect(row).to_contain_text("受付中")
        row.locator("button.danger").click()
        events.locator("#close-reason").fill("雨天のため中止")
        axe(page, "department close event")
        events.locator("#close-confirm").click()
        expect(row).to_contain_text("締め切り")
        expect(row).to_contain_text("雨天のため中止")
        shoot(page, "events")

        # The check-in screen: full screen, a QR code that decodes, the count rises.
        events.locator(f"#checkin-{city.event_id}").click()
        checkin = on_screen(page, "department-checkin")
        expect(page.locator("#desk-nav")).to_be_hidden()
        expect(checkin.locator("#checkin-qr svg")).to_be_visible()
        count = checkin.locator("#checkin-count")
        before = int(re.sub(r"\D", "", count.inner_text()))
        text = qr_text(checkin.locator("#checkin-qr"))
        resident = city.new_resident()
        expect_status(
            call(
                city.server.url,
                "POST",
                "/api/v1/me/check-ins",
                body={"token": text},
                token=resident.token,
                idempotent=True,
            ),
            201,
            "check-in",
        )
        expect(count).to_have_text(f"{before + 1}人", timeout=10_000)
        axe(page, "department check-in")
        shoot(page, "checkin")

        # A resident without a phone: by card number.
        card = city.new_card(city.new_resident(), "2468")
        checkin.locator("#card-number").fill(card.number)
        checkin.locator("#card-check-in").click()
        expect(checkin.locator("#card-result")).to_contain_text("300 pt")
        expect(count).to_have_text(f"{before + 2}人", timeout=10_000)
        checkin.locator("#card-number").fill(card.number)
        checkin.locator("#card-check-in").click()
        expect(checkin.locator("#card-result")).to_contain_text("受付済み")
        checkin.locator("#checkin-leave").click()
        on_screen(page, "department-events")
        expect(page.locator("#desk-nav")).to_be_visible()
