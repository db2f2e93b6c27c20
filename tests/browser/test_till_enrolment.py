"""The staff app's till in Chromium, against a live ``points serve`` on SQLite and PostgreSQL:
enrolled by a device code typed, opened from its address, or scanned from its QR by the camera;
what the device is (the till of the shop); a withdrawn or lapsed registration sends the device
back to enrolment with a sentence saying why; other roles get a page of their own."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from points.registry import StaffRole

from .camera import FakeCamera
from .live import SHOP_NAME_JA, City
from .till import TILL_OF, enrol_till, new_device
from .wallet import check_error, enrol, on_screen

pytestmark = pytest.mark.browser
Shoot = Callable[..., Path]


def test_a_till_enrolled_by_its_code_typed_opened_or_scanned(
    page: Page, browser: Browser, city: City, camera: FakeCamera, shoot: Shoot
) -> None:
    # Without a session: the enrolment screen, in Japanese.
    page.goto("/staff/")
    enrolment = on_screen(page, "enrol")
    expect(page.locator("html")).to_have_attribute("lang", "ja")
    shoot(page, "enrol")
    # A wrong code: a plain sentence, no error code.
    enrolment.locator("#code").fill("AAAA-BBBB-CC")
    enrolment.locator("#enrol-code").click()
    check_error(page)

    # The right one, typed: the till's home says which till of which shop it is.
    code = city.device_code()
    home = enrol_till(page, code)
    expect(home.locator("#till-of")).to_have_text(TILL_OF)
    expect(page.locator("#live-status")).to_contain_text("受け取っています")
    shoot(page, "home")
    # The session is a cookie: a reload stays on home.
    page.reload()
    expect(on_screen(page, "home").locator("#till-of")).to_have_text(TILL_OF)
    # The code was used: typed again on another device, refused in a sentence.
    other = new_device(browser, city)
    try:
        other.goto("/staff/#/enrol")
        on_screen(other, "enrol").locator("#code").fill(code)
        other.locator("#enrol-code").click()
        assert "使われています" in check_error(other)

        # A code opened from its address (#/enrol/<code>): enrolled without a tap, and the
        # address no longer holds the code.
        other.goto(city.enrol_url(city.device_code()).replace(city.server.url, ""))
        expect(on_screen(other, "home").locator("#till-of")).to_have_text(TILL_OF)
        assert "/enrol/" not in other.url
    finally:
        other.context.close()

    # A code's QR (enrol_url) scanned by the camera.
    scanning = new_device(browser, city)
    try:
        camera.show(city.enrol_url(city.device_code()))
        scanning.goto("/staff/#/enrol")
        on_screen(scanning, "enrol").locator("#enrol-scan").click()
        expect(on_screen(scanning, "home").locator("#till-of")).to_have_text(TILL_OF)
    finally:
        scanning.context.close()


def test_a_withdrawn_or_lapsed_registration_goes_back_to_enrolment(
    page: Page, city: City, shoot: Shoot
) -> None:
    till_id = city.new_till("レジ9")
    staff_id = city.till_staff_id(till_id)
    till_of = f"{SHOP_NAME_JA}のレジ「レジ9」"
    enrol_till(page, city.device_code(till_id), till_of)

    # An administrator withdraws the device (a lost tablet): the next step (or, within the
    # minute, the event stream's reconnection) goes to enrolment and says why, in a sentence.
    assert city.revoke_device_sessions(staff_id) == 1
    page.goto("/staff/#/payments")
    on_screen(page, "enrol")
    assert "取り消されました" in check_error(page)
    shoot(page, "revoked")
    # Reloaded, it still knows it was registered.
    page.reload()
    on_screen(page, "enrol")

    # Enrolled again; then the session lapses (not used for too long).
    enrol_till(page, city.device_code(till_id), till_of)
    assert city.lapse_device_sessions(staff_id) == 1
    page.reload()
    on_screen(page, "enrol")
    assert "登録が切れました" in check_error(page)


def test_other_roles_and_a_residents_wallet_get_their_own_page(
    page: Page, browser: Browser, city: City, shoot: Shoot
) -> None:
    # A shop's member of staff who is not a till (the office PCs have their own screens:
    # test_desk_frame.py and the test_*_desk.py files).
    manager = city.new_staff(StaffRole.MERCHANT)
    page.goto(f"/staff/#/enrol/{city.device_code(staff_id=manager)}")
    later = on_screen(page, "later")
    expect(later).to_contain_text("加盟店")
    shoot(page, "later")
    # Its settings sign it out.
    later.locator("#go-settings").click()
    settings = on_screen(page, "settings")
    settings.locator("#signout").click()
    settings.locator("#signout-confirm").click()
    on_screen(page, "enrol")
    page.goto("/staff/#/home")
    on_screen(page, "enrol")

    # A resident's wallet in this browser: the staff app points to the wallet.
    resident = city.new_resident(100)
    wallet = new_device(browser, city)
    try:
        enrol(wallet, resident.counter_code)
        wallet.goto("/staff/")
        on_screen(wallet, "resident").locator("#to-wallet").click()
        on_screen(wallet, "home")
        # And its enrolment screen warns that registering ends the wallet here.
        wallet.goto("/staff/#/enrol")
        expect(on_screen(wallet, "enrol").locator("#resident-here")).to_be_visible()
    finally:
        wallet.context.close()
