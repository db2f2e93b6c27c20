"""The administrator's PC (``/staff/`` enrolled with an admin's device code, 1280x800): the home
with the set-up steps; a merchant registered with a till and bank details (shown masked, a bad
account number refused with a sentence and nothing changed); a device code for the till that a
second browser enrols with as that till; its session revoked (the till goes back to enrolment);
axe on every admin screen; screenshots in Japanese and in English. A token for another system
issued on screen (shown once) that works against the API and is then listed, alone of its kind;
a health-checkup program with two checkup types; a picture for an item, refused when it is not
one, then shown as a thumbnail and in the wallet's catalog; tills apart in the staff list."""

from __future__ import annotations

import io
import re
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image
from playwright.sync_api import Browser, Locator, Page, expect

from issuers.modules import CHECKUP_TYPES
from points.registry import StaffRole

from .desk import DESK, desk_of, enrol_desk, new_desk, open_menu
from .live import TILL_NAME, City, call, expect_status
from .test_wallet_access import CUT_OFF, HORIZONTAL_SCROLL
from .till import enrol_till, new_device
from .wallet import axe, check_error, on_screen

pytestmark = pytest.mark.browser

Shoot = Callable[..., Path]

#: The admin's screens reached from the menu: route -> screen.
MENU = {
    "point-types": "admin-point-types",
    "departments": "admin-departments",
    "programs": "admin-programs",
    "merchants": "admin-merchants",
    "catalog": "admin-catalog",
    "staff": "admin-staff",
    "sessions": "admin-sessions",
}


def fits(page: Page, label: str) -> None:
    """Nothing scrolls sideways and no text is cut off."""
    scroll_width, inner_width = page.evaluate(HORIZONTAL_SCROLL)
    assert scroll_width <= inner_width, f"{label}: scrolls sideways"
    cut = page.evaluate(CUT_OFF)
    assert not cut, f"{label}: text cut off: {cut}"


def look(page: Page, part: str, label: str, shoot: Shoot, name: str) -> None:
    """axe and ``fits`` on the page as ``label``, then the element ``part`` (a selector) scrolled
    into view and shot as ``name``."""
    axe(page, label)
    fits(page, label)
    page.locator(part).scroll_into_view_if_needed()
    shoot(page, name)


def confirm(screen: Locator, reason: str) -> None:
    box = screen.locator("#confirm")
    expect(box).to_be_visible()
    box.locator("#confirm-reason").fill(reason)
    box.locator("#confirm-yes").click()
    expect(box).to_have_count(0)


def test_an_admin_sets_up_a_shop_and_its_till_and_revokes_it(
    browser: Browser, city: City, shoot: Shoot
) -> None:
    mark = uuid.uuid4().hex[:6]
    shop_ja = f"試験ベーカリー{mark}"
    till_name = f"レジ{mark}"
    page = new_desk(browser, city)
    till_page: Page | None = None
    try:
        _, home = enrol_desk(page, city, StaffRole.ADMIN, "admin-home")
        expect(home.locator("#counts")).to_be_visible()
        expect(home.locator("#steps li")).to_have_count(5)
        expect(home.locator("#next-step")).to_be_visible()
        axe(page, "admin home")
        fits(page, "admin home")
        shoot(page, "home")

        # A merchant: registered, then its own page.
        merchants = open_menu(page, "merchants", "admin-merchants")
        expect(merchants.locator("#merchant-add")).to_be_enabled()
        expect(merchants.locator("#merchants")).to_be_visible()
        merchants.locator("#merchant-name-ja").fill(shop_ja)
        merchants.locator("#merchant-name-en").fill(f"Test Bakery {mark}")
        merchants.locator("#merchant-category").fill("bakery")
        merchants.locator("#merchant-add").click()
        shop = on_screen(page, "admin-merchant")
        expect(shop.locator("h1")).to_contain_text(shop_ja)
        expect(shop.locator("#merchant-status")).to_have_text("有効")
        expect(shop.locator("#bank-none")).to_be_visible()
        expect(shop.locator("#tills-empty")).to_be_visible()

        # A till.
        shop.locator("#till-name").fill(till_name)
        shop.locator("#till-add").click()
        expect(shop.locator("#tills")).to_contain_text(till_name)
        expect(shop.locator("#done")).to_contain_text(till_name)

        # A bad account number: a sentence that names the field, and nothing set.
        shop.locator("#bank-code").fill("0005")
        shop.locator("#branch-code").fill("123")
        shop.locator("#account-number").fill("12a4567")
        shop.locator("#holder-name").fill("シケンベーカリー")
        shop.locator("#bank-reason").fill("開業の届け出")
        shop.locator("#bank-save").click()
        sentence = check_error(page)
        assert "口座番号" in sentence, sentence
        expect(shop.locator("#bank-none")).to_be_visible()
        merchant_id = page.url.rsplit("/", 1)[1]
        page.reload()
        shop = on_screen(page, "admin-merchant")
        expect(shop.locator("#bank-none")).to_be_visible()

        # Good details: shown masked.
        shop.locator("#bank-code").fill("0005")
        shop.locator("#branch-code").fill("123")
        shop.locator("#account-number").fill("1234567")
        shop.locator("#holder-name").fill("シケンベーカリー")
        shop.locator("#bank-reason").fill("開業の届け出")
        shop.locator("#bank-save").click()
        number = shop.locator("#bank-number")
        expect(number).to_contain_text("567")
        assert "1234567" not in number.inner_text()
        assert "1234567" not in shop.inner_text()
        assert merchant_id.startswith("mer_") or merchant_id

        # A device code for the till: large, with its QR.
        shop.locator("#tills button[data-till]").first.click()
        code = shop.locator("#device-code")
        expect(code).to_be_visible()
        expect(shop.locator("#device-code-qr svg")).to_be_visible()
        expect(shop.locator("#device-code-until")).to_contain_text("15分")
        code_text = code.inner_text().strip()
        assert re.fullmatch(r"[A-Z0-9-]{6,32}", code_text), code_text
        axe(page, "admin merchant")
        fits(page, "admin merchant")
        page.evaluate("() => window.scrollTo(0, 0)")
        shoot(page, "merchant")

        # The till's store QR to print, and the shop suspended and reactivated after a confirmation.
        shop.locator("#tills button[id^=qr-]").first.click()
        expect(shop.locator("#store-qr svg")).to_be_visible()
        shop.locator("#merchant-suspend").click()
        expect(shop.locator("#confirm")).to_contain_text(shop_ja)
        confirm(shop, "改装のため休業")
        expect(shop.locator("#merchant-status")).to_have_text("一時停止中")
        shop.locator("#merchant-reactivate").click()
        confirm(shop, "営業再開")
        expect(shop.locator("#merchant-status")).to_have_text("有効")

        # A second browser enrols with it as that till.
        till_page = new_device(browser, city)
        enrol_till(till_page, code_text, f"{shop_ja}のレジ「{till_name}」")

        # The admin revokes the till's session: the till goes back to enrolment.
        sessions = open_menu(page, "sessions", "admin-sessions")
        row = sessions.locator("#device-sessions tr", has_text=till_name)
        expect(row).to_have_count(1)
        axe(page, "admin sessions")
        row.locator("button[data-token]").click()
        expect(sessions.locator("#confirm")).to_contain_text(till_name)
        axe(page, "admin sessions, confirming")
        shoot(page, "sessions-confirm")
        sessions.locator("#confirm-yes").click()
        check_error(page)  # no reason yet: a sentence, nothing revoked
        expect(row).to_have_count(1)
        confirm(sessions, "テストの後片付け")
        expect(sessions.locator("#done")).to_contain_text(till_name)
        expect(sessions.locator("#device-sessions tr", has_text=till_name)).to_have_count(0)
        till_page.reload()
        on_screen(till_page, "enrol")
    finally:
        if till_page is not None:
            till_page.context.close()
        page.context.close()


def test_every_admin_screen_in_japanese_and_english(
    browser: Browser, city: City, shoot: Shoot
) -> None:
    mark = uuid.uuid4().hex[:6]
    with desk_of(browser, city, StaffRole.ADMIN, "admin-home") as (page, _):
        for route, name in MENU.items():
            screen = open_menu(page, route, name)
            expect(screen.locator(".quiet", has_text="読み込んでいます")).to_have_count(0)
            axe(page, name)
            fits(page, name)
            shoot(page, route)

        # A department, and a staff member of it with a device code for their PC.
        departments = open_menu(page, "departments", "admin-departments")
        expect(departments.locator("#department-add")).to_be_enabled()
        departments.locator("#department-code").fill(f"test-{mark}")
        departments.locator("#department-name-ja").fill(f"試験課{mark}")
        departments.locator("#department-name-en").fill(f"Test Division {mark}")
        departments.locator("#department-add").click()
        expect(departments.locator("#departments")).to_contain_text(f"試験課{mark}")
        # The same code again: a sentence, not a code.
        departments.locator("#department-code").fill(f"test-{mark}")
        departments.locator("#department-name-ja").fill(f"試験課{mark}")
        departments.locator("#department-name-en").fill(f"Test Division {mark}")
        departments.locator("#department-add").click()
        check_error(page)

        staff = open_menu(page, "staff", "admin-staff")
        expect(staff.locator("#staff-add")).to_be_enabled()
        staff.locator("#staff-name").fill(f"試験 太郎{mark}")
        staff.locator("#staff-role").select_option("issuer")
        staff.locator("#staff-department").select_option(label=f"試験課{mark}")
        staff.locator("#staff-add").click()
        row = staff.locator("#staff tr", has_text=f"試験 太郎{mark}")
        expect(row).to_contain_text("担当課")
        row.locator("button", has_text="登録コード").click()
        expect(staff.locator("#device-code")).to_be_visible()
        axe(page, "admin staff with a device code")
        row.locator("button", has_text="無効にする").click()
        confirm(staff, "異動")
        expect(row).to_contain_text("無効")

        # A program as a draft, started after a confirmation.
        programs = open_menu(page, "programs", "admin-programs")
        expect(programs.locator("#program-add")).to_be_enabled()
        programs.locator("#program-name-ja").fill(f"試験の事業{mark}")
        programs.locator("#program-name-en").fill(f"Test program {mark}")
        programs.locator("#program-department").select_option(label=f"試験課{mark}")
        programs.locator("#program-amount").fill("100")
        programs.locator("#program-add").click()
        program = programs.locator("#programs tr", has_text=f"試験の事業{mark}")
        expect(program).to_contain_text("下書き")
        program.locator("button", has_text="開始する").click()
        confirm(programs, "議会で承認")
        expect(program).to_contain_text("有効")
        programs.locator("#allocation-program").select_option(label=f"試験の事業{mark}")
        programs.locator("#allocation-amount").fill("50000")
        programs.locator("#allocation-reason").fill("議会の議決")
        programs.locator("#allocation-add").click()
        expect(programs.locator("#done")).to_contain_text("50,000 pt")
        expect(program).to_contain_text("50,000 pt")
        axe(page, "admin programs")

        # A city counter that takes the city's points, and goods for it with their stock.
        counter_ja = f"試験窓口{mark}"
        merchants = open_menu(page, "merchants", "admin-merchants")
        expect(merchants.locator("#merchant-add")).to_be_enabled()
        merchants.locator("#merchant-name-ja").fill(counter_ja)
        merchants.locator("#merchant-name-en").fill(f"Test counter {mark}")
        merchants.locator("#merchant-category").fill("city-counter")
        merchants.locator("#merchant-kind").select_option("counter")
        merchants.locator("#merchant-add").click()
        shop = on_screen(page, "admin-merchant")
        expect(shop.locator("h1")).to_contain_text(counter_ja)
        shop.locator("#settings-form input[type=checkbox]").first.check()
        shop.locator("#settings-reason").fill("窓口の開設")
        shop.locator("#settings-save").click()
        expect(shop.locator("#done")).to_be_visible()
        expect(shop.locator("#settings-sums")).to_contain_text("狛江ポイント")

        catalog = open_menu(page, "catalog", "admin-catalog")
        expect(catalog.locator("#item-add")).to_be_enabled()
        catalog.locator("#item-name-ja").fill(f"試験のエコバッグ{mark}")
        catalog.locator("#item-name-en").fill(f"Test eco bag {mark}")
        catalog.locator("#item-counter").select_option(label=counter_ja)
        catalog.locator("#item-points").fill("300")
        catalog.locator("#item-stock").fill("10")
        catalog.locator("#item-add").click()
        item = catalog.locator("#catalog tr", has_text=f"試験のエコバッグ{mark}")
        expect(item).to_contain_text("10個")
        catalog.locator("#stock-item").select_option(label=f"試験のエコバッグ{mark}")
        catalog.locator("#stock-delta").fill("-20")
        catalog.locator("#stock-reason").fill("数え違い")
        catalog.locator("#stock-save").click()
        check_error(page)
        expect(item).to_contain_text("10個")
        catalog.locator("#stock-delta").fill("5")
        catalog.locator("#stock-save").click()
        expect(item).to_contain_text("15個")
        axe(page, "admin catalog")
        fits(page, "admin catalog")
        shoot(page, "catalog-items")

        # English.
        page.locator("#lang").click()
        home = open_menu(page, "home", "admin-home")
        expect(home.locator("h1")).to_have_text("Admin home")
        expect(home.locator("#counts")).to_be_visible()
        axe(page, "admin home in English")
        fits(page, "admin home in English")
        merchants = open_menu(page, "merchants", "admin-merchants")
        expect(merchants.locator("#merchant-add")).to_be_enabled()
        expect(merchants.locator("h1")).to_have_text("Merchants")
        merchants.locator("#merchants a[data-merchant]").first.click()
        shop = on_screen(page, "admin-merchant")
        expect(shop.locator("#tills, #tills-empty")).to_be_visible()
        axe(page, "admin merchant in English")
        fits(page, "admin merchant in English")
        shoot(page, "merchant-en")
        page.locator("#lang").click()
        assert page.viewport_size == DESK


def _png() -> bytes:
    """A small PNG of a towel (what an admin uploads)."""
    image = Image.new("RGB", (160, 120), (60, 130, 200))
    image.paste((250, 250, 250), (20, 40, 140, 80))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def test_an_admin_issues_a_token_makes_a_checkup_program_and_pictures_an_item(
    browser: Browser, city: City, shoot: Shoot
) -> None:
    mark = uuid.uuid4().hex[:6]
    url = city.server.url
    resident = city.new_resident()
    item_id = city.new_catalog_item(f"試験のタオル{mark}", f"Test towel {mark}", 200)
    page = new_desk(browser, city)
    try:
        admin_id, _ = enrol_desk(page, city, StaffRole.ADMIN, "admin-home")

        # A token for another system: issued as the admin's own account, shown once, large.
        sessions = open_menu(page, "sessions", "admin-sessions")
        expect(sessions.locator("#token-issue")).to_be_enabled()
        label = f"会計システム{mark}"
        # Office staff come first: the holder chosen by default is never a shop's till.
        first = sessions.locator("#token-holder option").first
        expect(first).not_to_contain_text("レジ")
        sessions.locator("#token-holder").select_option(admin_id)
        sessions.locator("#token-label").fill(label)
        sessions.locator("#token-days").fill("500")
        sessions.locator("#token-issue").click()
        sentence = check_error(page)
        assert "有効な日数" in sentence, sentence
        expect(sessions.locator("#token-panel")).to_have_count(0)
        sessions.locator("#token-days").fill("30")
        sessions.locator("#token-issue").click()
        secret = sessions.locator("#token-secret")
        expect(secret).to_be_visible()
        expect(sessions.locator("#token-once")).to_contain_text("一度しか表示されません")
        token = secret.inner_text().strip()
        assert re.fullmatch(r"kp_[A-Za-z0-9_-]{8}_[A-Za-z0-9_-]{20,}", token), token
        sessions.locator("#token-copy").click()
        expect(sessions.locator("#token-copied")).to_be_visible()
        expect(sessions.locator("#tokens tr", has_text=label)).to_have_count(1)
        look(page, "#token-panel", "a token issued", shoot, "token-issued")

        # The token works against the API: the live API tokens, with it and without the
        # residents' or the devices' (this PC's own session among them).
        listed = expect_status(
            call(url, "GET", "/api/v1/admin/tokens?kind=api&state=live&limit=200", token=token),
            200,
            "tokens with the issued token",
        )
        ours = [one for one in listed["items"] if one["label"] == label]
        assert len(ours) == 1 and ours[0]["principal_id"] == admin_id, listed
        devices = expect_status(
            call(
                url, "GET", f"/api/v1/admin/tokens?principal_id={admin_id}&kind=device", token=token
            ),
            200,
            "this PC's session",
        )["items"]
        assert devices, "the desk's own device session"
        wallet = expect_status(
            call(url, "GET", f"/api/v1/admin/tokens?principal_id={resident.id}", token=token),
            200,
            "the resident's token",
        )["items"]
        assert wallet, "the resident's wallet session"

        # Again on screen: listed, the secret not shown again, no resident's or device's token.
        page.reload()
        sessions = on_screen(page, "admin-sessions")
        expect(sessions.locator("#tokens tr", has_text=label)).to_have_count(1)
        expect(sessions.locator("#token-secret")).to_have_count(0)
        assert token not in page.content()
        tokens_text = sessions.locator("#tokens").inner_text()
        for other in devices + wallet:
            assert other["prefix"] not in tokens_text, other
        axe(page, "admin sessions with tokens")

        # A health-checkup program: its checkup types, none chosen first (a sentence).
        programs = open_menu(page, "programs", "admin-programs")
        expect(programs.locator("#program-add")).to_be_enabled()
        programs.locator("#program-name-ja").fill(f"健診ポイント{mark}")
        programs.locator("#program-name-en").fill(f"Checkup points {mark}")
        programs.locator("#program-department").select_option(city.department_id)
        programs.locator("#program-module").select_option("health_checkup")
        checks = programs.locator("#program-health-checkup-checkup-types input[type=checkbox]")
        assert checks.evaluate_all("boxes => boxes.map((box) => box.value)") == list(CHECKUP_TYPES)
        expect(programs.locator("#program-health-checkup-checkup-types")).to_contain_text(
            "がん検診"
        )
        programs.locator("#program-amount").fill("500")
        programs.locator("#program-add").click()
        sentence = check_error(page)
        assert "対象の健診" in sentence, sentence
        programs.locator("input[value=specific_health_checkup]").check()
        programs.locator("input[value=dental_checkup]").check()
        axe(page, "admin programs, a checkup program")
        programs.locator("#program-form").scroll_into_view_if_needed()
        shoot(page, "program-checkup-form")
        programs.locator("#program-add").click()
        program = programs.locator("#programs tr", has_text=f"健診ポイント{mark}")
        expect(program).to_contain_text("下書き")
        expect(program.locator("[data-config]")).to_contain_text("特定健康診査、歯科健診")
        made = [
            one
            for one in expect_status(
                call(url, "GET", "/api/v1/admin/programs?limit=200", token=token), 200, "programs"
            )["items"]
            if one["name_ja"] == f"健診ポイント{mark}"
        ]
        assert len(made) == 1, made
        assert made[0]["module"] == "health_checkup"
        assert made[0]["config"] == {
            "checkup_types": ["specific_health_checkup", "dental_checkup"]
        }, made[0]
        program.scroll_into_view_if_needed()
        shoot(page, "program-checkup")

        # A picture for an item: a file that is not one is refused with why; a PNG is shown.
        catalog = open_menu(page, "catalog", "admin-catalog")
        expect(catalog.locator("#picture-save")).to_be_enabled()
        row = catalog.locator("#catalog tr", has_text=f"試験のタオル{mark}")
        expect(row.locator("img.item-thumb")).to_have_count(0)
        catalog.locator("#picture-item").select_option(item_id)
        catalog.locator("#picture-save").click()
        check_error(page)
        catalog.locator("#picture-file").set_input_files(
            {"name": "towel.png", "mimeType": "image/png", "buffer": b"not a picture at all"}
        )
        expect(catalog.locator("#picture-file-hint")).to_contain_text("towel.png")
        catalog.locator("#picture-save").click()
        sentence = check_error(page, japanese=False)
        assert "PNGでもJPEGでもない" in sentence, sentence
        expect(row.locator("img.item-thumb")).to_have_count(0)
        catalog.locator("#picture-item").select_option(item_id)
        catalog.locator("#picture-file").set_input_files(
            {"name": "huge.png", "mimeType": "image/png", "buffer": _png() + bytes(300 * 1024)}
        )
        catalog.locator("#picture-save").click()
        sentence = check_error(page, japanese=False)
        assert "大きすぎます" in sentence, sentence
        catalog.locator("#picture-file").set_input_files(
            {"name": "towel.png", "mimeType": "image/png", "buffer": _png()}
        )
        catalog.locator("#picture-save").click()
        expect(catalog.locator("#done")).to_contain_text(f"試験のタオル{mark}")
        thumb = row.locator("img.item-thumb")
        expect(thumb).to_be_visible()
        page.wait_for_function(
            "id => document.querySelector(`img[data-item='${id}']`)?.naturalWidth === 160",
            arg=item_id,
        )
        offered = expect_status(
            call(url, "GET", "/api/v1/me/catalog", token=resident.token), 200, "wallet catalog"
        )
        ours_item = [one for one in offered if one["id"] == item_id]
        assert len(ours_item) == 1 and ours_item[0]["image_url"], offered
        image = call(url, "GET", ours_item[0]["image_url"])
        assert image.status == 200 and image.headers["content-type"] == "image/png", image.status
        axe(page, "admin catalog with a picture")
        fits(page, "admin catalog with a picture")
        row.scroll_into_view_if_needed()
        shoot(page, "catalog-picture")

        # The staff list: a till's own account is listed apart, with its shop.
        staff = open_menu(page, "staff", "admin-staff")
        expect(staff.locator(".quiet", has_text="読み込んでいます")).to_have_count(0)
        till = staff.locator("#shop-accounts tr", has_text=TILL_NAME).first
        expect(till.locator("[data-kind=till]")).to_have_text("レジ")
        expect(till.locator("a[href^='#/merchants/']")).to_be_visible()
        expect(staff.locator("#staff tr", has_text=TILL_NAME)).to_have_count(0)
        look(page, "#shop-accounts", "shops' accounts", shoot, "staff-tills")

        # In English: the token form, the checkup types and the picture form.
        page.locator("#lang").click()
        sessions = open_menu(page, "sessions", "admin-sessions")
        expect(sessions.locator("#token-new-title")).to_have_text(
            "Issue a token for another system"
        )
        look(page, "#token-form", "admin sessions in English", shoot, "token-form-en")
        programs = open_menu(page, "programs", "admin-programs")
        program = programs.locator("#programs tr", has_text=f"Checkup points {mark}")
        expect(program.locator("[data-config]")).to_have_text(
            "Checkups rewarded: Specific health checkup (ages 40 to 74), Dental checkup"
        )
        catalog = open_menu(page, "catalog", "admin-catalog")
        expect(catalog.locator("#picture-title")).to_have_text("Add a picture of goods")
        look(page, "#picture-form", "admin catalog in English", shoot, "picture-form-en")
        page.locator("#lang").click()
    finally:
        page.context.close()
