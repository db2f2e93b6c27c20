"""The city counter's PC, its later acts: a wallet closed when the resident moved out (the form
says how many points expire, a reason first; the API agrees the balance is gone), a resident's
details corrected after a review of what changes (the API shows the new name), and the cards to
print: cards put in the tray from the resident's page and the card screen, one removed, the rest
laid out on one A4 sheet whose SVG holds both cards (their QR codes decoded by zxing-cpp find the
same cards), printed alone on one A4 page, then taken out of the tray. axe on every new screen at
1280x800, screenshots in Japanese and one in English."""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import zxingcpp
from PIL import Image
from playwright.sync_api import Browser, Page, expect

from ledger.service import system_clock
from points import access, people
from points.registry import StaffRole
from redemption import cards

from .desk import desk_of, open_menu, refused_first
from .live import City, Resident
from .test_counter_desk import PIN, find
from .wallet import axe, check_error, on_screen

pytestmark = pytest.mark.browser


def named(city: City, resident: Resident, name: str) -> None:
    """The resident's name set (the city's residents are all 試験 住民)."""
    city.write(
        lambda session: people.correct_resident(
            session, access.SYSTEM, system_clock(), resident.id, changes={"name": name}, reason="t"
        )
    )


def counter_get(page: Page, path: str) -> dict[str, object]:
    answer = page.request.get(path)
    assert answer.status == 200, (path, answer.status, answer.text())
    return dict(answer.json())


def test_counter_closes_a_wallet_and_corrects_the_details(
    browser: Browser, city: City, shoot: Callable[..., Path]
) -> None:
    leaving = city.new_resident(1_200)
    assert city.balance(leaving) == 1_200
    with desk_of(browser, city, StaffRole.COUNTER, "counter-home") as (page, _):
        find(page, leaving.id)
        resident = on_screen(page, "counter-resident")
        expect(resident.locator("#wallets")).to_contain_text("1,200 pt")

        # The form says what is lost, and asks why first.
        resident.locator("#open-close").click()
        form = resident.locator("#close-form")
        expect(form.locator("#close-loss")).to_contain_text("1,200 pt")
        expect(form.locator("#close-loss")).to_contain_text("失効")
        expect(form.locator("#close-go")).to_contain_text("1,200 pt")
        shoot(page, "close-form")
        sentence = refused_first(
            page, resident, "close-go", {"close-reason": "転出の届出"}, check="counter close form"
        )
        assert "理由" in sentence
        expect(resident.locator("#done")).to_contain_text("ウォレットを閉じました")
        expect(resident.locator("#done")).to_contain_text("1,200 pt")
        expect(resident.locator("#wallets")).to_contain_text("閉鎖")
        expect(resident.locator("#open-close")).to_have_count(0)
        expect(resident.locator("#open-reopen")).to_be_visible()
        shoot(page, "closed")
        # The API agrees: the wallet is closed and its balance gone.
        wallet = city.wallet(leaving)
        assert wallet["status"] == "closed" and wallet["balance"] == 0, wallet

        # The details, corrected after a review of what changes.
        resident.locator("#go-correct").click()
        correct = on_screen(page, "counter-correct")
        expect(correct.locator("#fix-name")).to_have_value("試験 住民")
        expect(correct.locator("#fix-year")).to_have_value("1980")
        number = correct.locator("#fix-address").input_value()
        assert number.isdigit()
        axe(page, "counter correct")
        correct.locator("#fix-reason").fill("氏名の字のまちがい（住民記録で確認）")
        correct.locator("#fix-next").click()
        assert "変わっていません" in check_error(page)  # nothing changed: nothing sent
        correct.locator("#fix-name").fill("訂正 花子")
        correct.locator("#fix-reason").fill("")
        correct.locator("#fix-next").click()
        assert "理由" in check_error(page)
        correct.locator("#fix-reason").fill("氏名の字のまちがい（住民記録で確認）")
        correct.locator("#fix-next").click()
        changes = correct.locator("#correct-changes")
        expect(changes.locator("tbody tr")).to_have_count(1)
        expect(changes).to_contain_text("試験 住民")
        expect(changes).to_contain_text("訂正 花子")
        assert counter_get(page, f"/api/v1/counter/residents/{leaving.id}")["name"] == "試験 住民"
        axe(page, "counter correct review")
        shoot(page, "correct-review")
        # Back to the form keeps what was typed.
        correct.locator("#fix-back").click()
        expect(correct.locator("#fix-name")).to_have_value("訂正 花子")
        correct.locator("#fix-next").click()
        correct.locator("#fix-go").click()
        resident = on_screen(page, "counter-resident")
        expect(resident.locator("#resident-name")).to_have_text("訂正 花子")
        expect(resident.locator("#done")).to_contain_text("直しました")
        answer = counter_get(page, f"/api/v1/counter/residents/{leaving.id}")
        assert answer["name"] == "訂正 花子"
        assert answer["address_number"] == number and answer["birth_year"] == 1980


def test_counter_prints_two_cards_on_one_a4_sheet(
    browser: Browser, city: City, shoot: Callable[..., Path]
) -> None:
    first, second, third = (city.new_resident(100) for _ in range(3))
    named(city, first, "一番 さくら")
    named(city, second, "二番 たろう")
    numbers = [cards.grouped(city.new_card(held, PIN).number) for held in (first, second, third)]
    with desk_of(browser, city, StaffRole.COUNTER, "counter-home") as (page, _):
        # From the resident's page, once.
        find(page, first.id)
        resident = on_screen(page, "counter-resident")
        resident.locator("#add-tray").click()
        expect(resident.locator("#done")).to_contain_text("印刷待ちに入れました（いま1枚）")
        resident.locator("#add-tray").click()
        expect(resident.locator("#done")).to_contain_text("もう印刷待ち")

        # From the card screen.
        for held in (second, third):
            find(page, held.id)
            resident = on_screen(page, "counter-resident")
            resident.locator("#go-print-card").click()
            card = on_screen(page, "counter-card")
            expect(card.locator("#card-face svg")).to_be_visible()
            card.locator("#add-tray").click()
            expect(card.locator("#done")).to_contain_text("印刷待ちに入れました")

        tray = open_menu(page, "tray", "counter-tray")
        expect(page.locator("#desk-nav #menu-tray")).to_have_text("印刷待ちのカード（3）")
        rows = tray.locator("#tray tbody tr")
        expect(rows).to_have_count(3)
        expect(rows.nth(0)).to_contain_text("一番 さくら")
        expect(rows.nth(0)).to_contain_text(numbers[0])
        expect(rows.nth(1)).to_contain_text("二番 たろう")
        # This PC's list for the day: a reload keeps it.
        page.reload()
        tray = on_screen(page, "counter-tray")
        expect(tray.locator("#tray tbody tr")).to_have_count(3)
        axe(page, "counter tray")
        shoot(page, "tray")

        # One removed.
        tray.get_by_role("button", name=f"カード {numbers[2]} を印刷待ちから外す").click()
        expect(tray.locator("#done")).to_contain_text("外しました")
        expect(tray.locator("#tray tbody tr")).to_have_count(2)
        expect(tray.locator("#tray")).not_to_contain_text(numbers[2])

        # The two laid out on one A4 sheet.
        tray.locator("#sheet-go").click()
        sheet = tray.locator("#sheet svg")
        expect(sheet).to_be_visible()
        text = sheet.evaluate("(node) => node.outerHTML")
        assert numbers[0] in text and numbers[1] in text and numbers[2] not in text
        assert 'viewBox="0 0 210' in text, text[:300]
        axe(page, "counter tray sheet")
        shoot(page, "sheet")
        page.set_viewport_size({"width": 1280, "height": 2000})
        image = Image.open(io.BytesIO(tray.locator("#sheet").screenshot(scale="device")))
        scanned = {str(found.text) for found in zxingcpp.read_barcodes(image)}
        page.set_viewport_size({"width": 1280, "height": 800})
        assert len(scanned) == 2, scanned
        found = set()
        for qr in scanned:
            answer = page.request.post(
                "/api/v1/counter/cards/find",
                data={"card_qr": qr},
                headers={"X-Points-Client": "staff", "Origin": city.server.url},
            )
            assert answer.status == 200, answer.text()
            found.add(answer.json()["number"])
        assert found == {numbers[0], numbers[1]}

        # Printed, the sheet is all there is, on one A4 page.
        page.emulate_media(media="print")
        expect(tray.locator("#sheet")).to_be_visible()
        expect(tray.locator("#tray")).to_be_hidden()
        expect(tray.locator("#print-sheet")).to_be_hidden()
        expect(page.locator("#desk-nav")).to_be_hidden()
        pdf = page.pdf(prefer_css_page_size=True)
        page.emulate_media(media="screen")
        assert len(re.findall(rb"/Type\s*/Page(?!s)", pdf)) == 1
        assert re.search(rb"/MediaBox\s*\[0 0 59[45]\.\d+ 841\.\d+\]", pdf), "not one A4 page"

        # English, then the printed cards taken out of the tray.
        page.locator("#lang").click()
        expect(tray.locator("#print-sheet")).to_have_text("Print")
        expect(page.locator("#desk-nav #menu-tray")).to_have_text("Cards to print (2)")
        axe(page, "counter tray, English")
        shoot(page, "sheet-en")
        page.locator("#lang").click()
        tray.locator("#sheet-done").click()
        expect(tray.locator("#tray-empty")).to_be_visible()
        expect(tray.locator("#sheet")).to_have_count(0)
        expect(tray.locator("#done")).to_contain_text("2枚")
        shoot(page, "tray-empty")
