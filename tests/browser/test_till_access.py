"""The till's screens for everyone (SQLite only: nothing here depends on the database): axe-core
on every screen at a phone's (360x640) and a tablet's (768x1024) size with a screenshot of each
in artifacts/, no text cut off or scrolling sideways, the till in English, and the stream of
payment events falling back to polling when it cannot be opened."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import Page, Route, expect

from .camera import FakeCamera
from .live import SHOP_NAME_EN, City, Server, call, expect_status
from .test_wallet_access import CUT_OFF, HORIZONTAL_SCROLL
from .till import PHONE, TABLET, enrol_till, expect_sound, key_in
from .wallet import axe, japanese_in, on_screen, points

pytestmark = pytest.mark.browser
Shoot = Callable[..., Path]
PIN = "4826"


@pytest.fixture
def sqlite_only(live: Server) -> None:
    if live.backend != "sqlite":
        pytest.skip("the same on every database: SQLite only")


def check(page: Page, screen: str, shoot: Shoot, name: str | None = None) -> None:
    """axe (no serious or critical violation), nothing cut off, no sideways scrolling, and a
    screenshot (``name``, the screen's by default), at each size; back to the phone's size."""
    on_screen(page, screen)
    name = name or screen
    for size in (PHONE, TABLET):
        page.set_viewport_size(size)
        label = f"{name} at {size['width']}x{size['height']}"
        axe(page, label)
        assert page.evaluate(CUT_OFF) == [], label
        scroll_width, inner_width = page.evaluate(HORIZONTAL_SCROLL)
        assert scroll_width <= inner_width, f"{label}: scrolls sideways"
        shoot(page, f"{name}-{size['width']}")
    page.set_viewport_size(PHONE)


def pay_as(city: City, token: str, body: dict[str, object]) -> dict[str, object]:
    answer = call(
        city.server.url, "POST", "/api/v1/me/payments", body=body, token=token, idempotent=True
    )
    return dict(expect_status(answer, 201, "paying"))


@pytest.mark.usefixtures("sqlite_only")
def test_every_till_screen_at_a_phones_and_a_tablets_size(
    page: Page, city: City, camera: FakeCamera, shoot: Shoot
) -> None:
    resident = city.new_resident(5_000, expiring=500)
    city.statement_of_last_month(resident, 400)

    page.goto("/staff/#/enrol")
    check(page, "enrol", shoot)
    camera.show(None)
    page.locator("#enrol-scan").click()
    check(page, "enrol-scan", shoot)
    page.locator("#cancel").click()
    on_screen(page, "enrol")

    enrol_till(page, city.device_code())
    check(page, "home", shoot)
    page.locator("#go-settings").click()
    check(page, "settings", shoot)
    page.locator("#back").click()

    # The payment QR: keyed, shown, paid; another cancelled.
    page.locator("#go-charge").click()
    key_in(on_screen(page, "charge"), "1200")
    check(page, "charge", shoot)
    page.locator("#make-qr").click()
    check(page, "qr", shoot)
    request_id = page.url.rsplit("/", 1)[1]
    shown = expect_status(
        call(
            city.server.url,
            "GET",
            f"/api/v1/merchant/payment-requests/{request_id}",
            token=city.till_token,
        ),
        200,
        "the request",
    )
    pay_as(city, resident.token, {"token": shown["token"]})
    check(page, "paid", shoot)
    page.locator("#next-charge").click()
    key_in(on_screen(page, "charge"), "80")
    page.locator("#make-qr").click()
    on_screen(page, "qr").locator("#qr-cancel").click()
    check(page, "cancelled", shoot)

    # A store-QR payment to confirm: the banner on home, then the list.
    page.locator("#done").click()
    on_screen(page, "home")
    pay_as(city, resident.token, {"token": city.store_qr, "amount": 350})
    expect(page.locator("#banner-link")).to_be_visible()
    check(page, "home", shoot, "home-banner")
    page.locator("#banner-link").click()
    check(page, "incoming", shoot)
    page.locator(".incoming-item button.confirm").click()
    expect(page.locator("#resolved")).to_contain_text(points(350))
    check(page, "incoming", shoot, "incoming-done")

    # A card: scanned, amount, PIN (a wrong one first), receipt; a locked one.
    card = city.new_card(resident, PIN)
    camera.show(card.text)
    page.goto("/staff/#/take")
    amount = on_screen(page, "take-amount")
    key_in(amount, "300")
    check(page, "take-amount", shoot)
    amount.locator("#take-next").click()
    pin = on_screen(page, "pin")
    key_in(pin, "13")
    check(page, "pin", shoot)
    key_in(pin, "57")
    pin.locator("#pin-pay").click()
    expect(page.locator("#error")).to_be_visible()
    check(page, "pin", shoot, "pin-wrong")
    key_in(pin, PIN)
    pin.locator("#pin-pay").click()
    check(page, "taken", shoot)
    other = city.new_resident(500)
    locked = city.new_card(other, PIN, attempts_left=1)
    camera.show(None)
    page.locator("#next-take").click()
    check(page, "take", shoot)
    page.locator("#type-card").click()
    page.locator("#card-number").fill(locked.number)
    check(page, "card-number", shoot)
    page.locator("#card-next").click()
    key_in(on_screen(page, "take-amount"), "100")
    page.locator("#take-next").click()
    key_in(on_screen(page, "pin"), "9753")
    page.locator("#pin-pay").click()
    check(page, "locked", shoot)
    # A code that is neither a pay code nor a card.
    camera.show(city.store_qr)
    page.goto("/staff/#/take")
    check(page, "not-ours", shoot)

    # Today's payments, one of them, a refund.
    page.goto("/staff/#/payments")
    listed = on_screen(page, "payments")
    expect(listed.locator("#total-count")).to_be_visible()
    check(page, "payments", shoot)
    listed.locator("a.row-link").first.click()
    check(page, "payment", shoot)
    page.locator("#refund-part").click()
    key_in(on_screen(page, "refund-amount"), "100")
    check(page, "refund-amount", shoot)
    page.locator("#refund-next").click()
    check(page, "refund-confirm", shoot)
    page.locator("#refund-do").click()
    check(page, "refunded", shoot)

    # Statements.
    page.goto("/staff/#/statements")
    expect(page.locator(".statement").first).to_be_visible()
    check(page, "statements", shoot)


@pytest.mark.usefixtures("sqlite_only")
def test_the_till_in_english_and_a_role_whose_screens_come_later(
    page: Page, city: City, shoot: Shoot
) -> None:
    from points.registry import StaffRole

    home = enrol_till(page, city.device_code())
    page.locator("#lang").click()
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(home.locator("#till-of")).to_contain_text("The till")
    # The shop's English name (sessions/current); only the till's name (no English) is Japanese.
    expect(home.locator("#till-of")).to_contain_text(SHOP_NAME_EN)
    outside_names = home.evaluate(
        """section => {
            const copy = section.cloneNode(true);
            copy.querySelector('#till-of').remove();
            document.body.appendChild(copy);
            const text = copy.innerText;
            copy.remove();
            return text;
        }"""
    )
    assert not japanese_in(outside_names), outside_names
    check(page, "home", shoot, "home-en")
    page.locator("#go-charge").click()
    check(page, "charge", shoot, "charge-en")
    page.locator("#lang").click()
    expect(page.locator("html")).to_have_attribute("lang", "ja")

    # A shop's member of staff who is not a till (a manager): no screens yet.
    other = city.new_staff(StaffRole.MERCHANT)
    page.goto(f"/staff/#/enrol/{city.device_code(staff_id=other)}")
    check(page, "later", shoot)


@pytest.mark.usefixtures("sqlite_only")
def test_without_the_event_stream_the_till_polls(page: Page, city: City) -> None:
    """A proxy that never lets the stream through: the till polls the events' twin route, and a
    payment QR still turns paid by itself."""
    resident = city.new_resident(1_000)

    def refuse(route: Route) -> None:
        route.abort()

    page.route("**/api/v1/merchant/payment-events/stream*", refuse)
    enrol_till(page, city.device_code())
    expect(page.locator("#live-status")).to_contain_text("数秒ごと")
    page.locator("#go-charge").click()
    key_in(on_screen(page, "charge"), "200")
    page.locator("#make-qr").click()
    on_screen(page, "qr")
    request_id = page.url.rsplit("/", 1)[1]
    shown = expect_status(
        call(
            city.server.url,
            "GET",
            f"/api/v1/merchant/payment-requests/{request_id}",
            token=city.till_token,
        ),
        200,
        "the request",
    )
    pay_as(city, resident.token, {"token": shown["token"]})
    expect(on_screen(page, "paid").locator("#paid-amount")).to_have_text(points(200))
    expect_sound(page, "paid")
