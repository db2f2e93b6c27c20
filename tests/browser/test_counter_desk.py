"""The city counter's PC (issue 23 part 1): counter staff register a resident whose identity they
checked, print the phone's enrolment code, issue a card with the PIN the resident types, and the
card printed on screen scans back to that same resident; a wrong input gets a sentence; a card
locked after wrong PINs is unlocked, blocked and reissued; a lost phone is stopped; an exchange
from the catalog is made with the resident's PIN; the expiry notice list downloads. axe on every
counter screen at 1280x800, screenshots in Japanese and one in English."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect
from sqlmodel import Session

from ledger.service import system_clock
from points import access, people
from points.registry import StaffRole

from .desk import desk_of, open_menu, refused_first
from .live import City
from .till import qr_text
from .wallet import axe, check_error, on_screen

pytestmark = pytest.mark.browser

PIN = "4826"


def address() -> str:
    return str(2_000_000_000 + uuid.uuid4().int % 7_999_999_999)


def find(page: Page, text: str) -> None:
    home = page.locator('#view [data-screen="counter-home"]')
    if not home.count():
        home = open_menu(page, "home", "counter-home")
    home.locator("#find-text").fill(text)
    home.locator("#find-go").click()


def test_counter_registers_a_resident_and_prints_a_card_that_scans(
    browser: Browser, city: City, shoot: Callable[..., Path]
) -> None:
    with desk_of(browser, city, StaffRole.COUNTER, "counter-home") as (page, home):
        axe(page, "counter home")
        # Nothing typed, or nobody with that number: a sentence, never a code.
        refused_first(page, home, "find-go", {"find-text": address()})
        assert "見つかりません" in check_error(page)
        shoot(page, "home")

        register = open_menu(page, "register", "counter-register")
        number = address()
        register.locator("#reg-name").fill("窓口 花子")
        register.locator("#reg-address").fill(number)
        register.locator("#reg-year").fill("1948")
        register.locator("#reg-go").click()
        assert "本人確認" in check_error(page)  # the box is not ticked
        register.locator("#reg-checked").check()
        axe(page, "counter register")
        register.locator("#reg-go").click()
        resident = on_screen(page, "counter-resident")
        expect(resident.locator("#resident-name")).to_have_text("窓口 花子")
        expect(resident.locator("#done")).to_contain_text("登録しました")
        expect(resident.locator("#resident-details")).to_contain_text(number)
        axe(page, "counter resident")

        # The phone's enrolment code, large, on a slip.
        resident.locator("#issue-code").click()
        slip = on_screen(page, "counter-code")
        expect(slip.locator("#enrol-code-text")).to_have_text(re.compile(r"^[A-Z0-9-]{8,}$"))
        axe(page, "counter code")
        shoot(page, "code")
        # Printed, the slip is all there is.
        page.emulate_media(media="print")
        expect(slip.locator("#slip")).to_be_visible()
        expect(slip.locator("h1")).to_be_hidden()
        expect(page.locator("#desk-nav")).to_be_hidden()
        page.emulate_media(media="screen")
        slip.locator("#back-resident").click()

        # A trivial PIN is refused with a sentence; the resident's own one makes the card.
        resident = on_screen(page, "counter-resident")
        resident.locator("#open-issue").click()
        resident.locator("#issue-pin").fill("1234")
        resident.locator("#issue-pin2").fill("1234")
        refused_first(page, resident, "issue-go", {"issue-pin": PIN, "issue-pin2": "4827"})
        assert "ちがいます" in check_error(page)
        resident.locator("#issue-pin2").fill(PIN)
        resident.locator("#issue-go").click()
        card = on_screen(page, "counter-card")
        face = card.locator("#card-face svg")
        expect(face).to_be_visible()
        expect(card.locator("#print-card")).to_be_visible()
        axe(page, "counter card")
        shoot(page, "card")
        scanned = qr_text(card.locator("#card-face"))
        page.emulate_media(media="print")
        expect(card.locator("#card-face")).to_be_visible()
        expect(card.locator("#print-card")).to_be_hidden()
        expect(card.locator("#done")).to_be_hidden()
        page.emulate_media(media="screen")

        # The card's QR, as the scanner types it, finds the same resident.
        find(page, scanned)
        found = on_screen(page, "counter-resident")
        expect(found.locator("#resident-name")).to_have_text("窓口 花子")
        expect(found.locator("#cards")).to_contain_text("利用中")
        shoot(page, "resident")


def test_counter_unlocks_blocks_reissues_and_exchanges_with_the_pin(
    browser: Browser, city: City, shoot: Callable[..., Path]
) -> None:
    tag = uuid.uuid4().hex[:6]
    item_ja = f"エコバッグ{tag}"
    city.new_catalog_item(item_ja, f"Eco bag {tag}", points=300, stock=5)
    holder = city.new_resident(1_000)
    city.new_card(holder, PIN, attempts_left=0)
    with desk_of(browser, city, StaffRole.COUNTER, "counter-home") as (page, _):
        find(page, holder.id)
        resident = on_screen(page, "counter-resident")
        expect(resident.locator("#wallets")).to_contain_text("1,000 pt")
        expect(resident.locator("#cards")).to_contain_text("ロック中")

        # Unlock after checking identity: a reason is needed first.
        resident.locator("#open-unlock").click()
        refused_first(page, resident, "unlock-go", {"unlock-reason": "運転免許証で確認"})
        expect(resident.locator("#done")).to_contain_text("ロックを解除しました")
        expect(resident.locator("#cards")).not_to_contain_text("ロック中")

        # An exchange with the resident's PIN: a wrong PIN is a sentence, the right one exchanges.
        resident.locator("#go-exchange").click()
        exchange = on_screen(page, "counter-exchange")
        exchange.locator("label.item-choice", has_text=item_ja).locator("input").check()
        exchange.locator("#ex-reason").fill("スマートフォンがないため")
        exchange.locator("#ex-pin").fill("9157")
        axe(page, "counter exchange")
        shoot(page, "exchange")
        exchange.locator("#ex-next").click()
        expect(exchange.locator("#ex-question")).to_contain_text(item_ja)
        axe(page, "counter exchange confirm")
        exchange.locator("#ex-confirm").click()
        assert "暗証番号" in check_error(page)
        exchange.locator("label.item-choice", has_text=item_ja).locator("input").check()
        exchange.locator("#ex-pin").fill(PIN)
        exchange.locator("#ex-next").click()
        exchange.locator("#ex-confirm").click()
        expect(exchange.locator("#done")).to_contain_text(item_ja)
        expect(exchange.locator("#exchange-receipt")).to_contain_text("700 pt")
        receipt = exchange.locator("#receipt-link").get_attribute("href")
        assert receipt and page.request.get(receipt).status == 200
        axe(page, "counter exchanged")
        shoot(page, "exchanged")

        # English, on the resident's page.
        exchange.locator("#back-resident").click()
        resident = on_screen(page, "counter-resident")
        expect(resident.locator("#wallets")).to_contain_text("700 pt")
        shoot(page, "resident-ja")
        page.locator("#lang").click()
        expect(resident.locator("#wallets")).to_contain_text("700 pt")
        expect(page.locator("#desk-nav #menu-home")).to_have_text("Find a resident")
        expect(resident.locator("#open-block")).to_have_text("Block the card")
        axe(page, "counter resident, English")
        shoot(page, "resident-en")
        page.locator("#lang").click()

        # Block (asked first), then reissue: a new card to print.
        resident.locator("#open-block").click()
        expect(resident.locator("#block-form")).to_contain_text("元に戻せません")
        axe(page, "counter block form")
        shoot(page, "block-form")
        resident.locator("#block-reason").fill("カード紛失の申し出")
        resident.locator("#block-go").click()
        expect(resident.locator("#done")).to_contain_text("カードを止めました")
        resident.locator("#open-reissue").click()
        resident.locator("#reissue-reason").fill("紛失したカードの再発行")
        resident.locator("#reissue-go").click()
        card = on_screen(page, "counter-card")
        expect(card.locator("#card-face svg")).to_be_visible()
        card.locator("#back-resident").click()
        resident = on_screen(page, "counter-resident")
        expect(resident.locator("#cards")).to_contain_text("再発行ずみ")

        # A lost phone: its tokens revoked, a new code printed.
        resident.locator("#open-revoke").click()
        resident.locator("#revoke-reason").fill("スマートフォン紛失の申し出")
        resident.locator("#revoke-go").click()
        slip = on_screen(page, "counter-code")
        expect(slip.locator("#done")).to_contain_text("使えなくしました")
        expect(slip.locator("#enrol-code-text")).to_be_visible()

        # The expiry notice list: the link follows the form; a wrong number of days is a sentence.
        notices = open_menu(page, "notices", "counter-notices")
        axe(page, "counter notices")
        shoot(page, "notices")
        link = notices.locator("#notices-download")
        expect(link).to_have_attribute("href", re.compile(r"within_days=60"))
        notices.locator("#notice-days").fill("30")
        notices.locator("#notice-encoding").select_option("cp932")
        href = link.get_attribute("href")
        assert href and "within_days=30" in href and "encoding=cp932" in href
        downloaded = page.request.get(href)
        assert downloaded.status == 200 and "text/csv" in downloaded.headers["content-type"]
        notices.locator("#notice-days").fill("0")
        check_error(page)
        expect(link).to_have_attribute("aria-disabled", "true")


def test_counter_reopens_a_closed_wallet(browser: Browser, city: City) -> None:
    back = city.new_resident(500)
    city.close_wallet(back)
    with desk_of(browser, city, StaffRole.COUNTER, "counter-home") as (page, _):
        find(page, back.id)
        resident = on_screen(page, "counter-resident")
        expect(resident.locator("#wallets")).to_contain_text("閉鎖")
        resident.locator("#open-reopen").click()
        expect(resident.locator("#reopen-form")).to_contain_text("戻りません")
        refused_first(
            page, resident, "reopen-go", {"reopen-reason": "市内に再転入"}, check="counter reopen"
        )
        expect(resident.locator("#done")).to_contain_text("再開しました")
        expect(resident.locator("#wallets")).to_contain_text("利用中")
        expect(resident.locator("#open-reopen")).to_have_count(0)


def test_counter_verifies_a_self_enrolled_resident_before_a_card(
    browser: Browser, city: City
) -> None:
    number = address()

    def work(session: Session) -> str:
        made = people.create_resident(
            session,
            access.SYSTEM,
            system_clock(),
            name="自己 登録",
            address_number=number,
            birth_year=None,
            verified=False,
        )
        session.flush()
        return made.id

    city.write(work)
    with desk_of(browser, city, StaffRole.COUNTER, "counter-home") as (page, _):
        find(page, number)
        resident = on_screen(page, "counter-resident")
        expect(resident.locator("#resident-details")).to_contain_text("未確認")
        expect(resident.locator("#issue-code")).to_have_count(0)
        expect(resident.locator("#open-issue")).to_have_count(0)
        resident.locator("#open-verify").click()
        resident.locator("#verify-reason").fill("マイナンバーカードで確認")
        axe(page, "counter verify")
        resident.locator("#verify-go").click()
        expect(resident.locator("#done")).to_contain_text("本人確認済みにしました")
        expect(resident.locator("#resident-details")).to_contain_text("確認済み")
        expect(resident.locator("#issue-code")).to_be_visible()
        expect(resident.locator("#open-issue")).to_be_visible()
