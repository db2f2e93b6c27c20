"""A resident's journeys through the wallet app in Chromium, against a live ``points serve`` on
SQLite and PostgreSQL: enrolment with a counter code, paying a payment QR, a store QR the shop
confirms or declines, an event check-in, a pay code the shop scans, a payment whose answer the
network lost, the app offline, the app in English, and a QR code's URL opened directly."""

from __future__ import annotations

import io
import re
import uuid
from collections.abc import Callable
from datetime import date
from pathlib import Path

import pytest
import zxingcpp
from PIL import Image
from playwright.sync_api import Browser, Page, Request, Route, expect

from .camera import FakeCamera
from .live import (
    EVENT_NAME,
    EVENT_POINTS,
    PROGRAM_NAME_JA,
    SHOP_NAME_EN,
    SHOP_NAME_JA,
    TILL_NAME,
    City,
)
from .wallet import (
    check_error,
    enrol,
    expect_balance,
    go_home,
    japanese_date,
    japanese_in,
    on_screen,
    points,
    scan,
)

pytestmark = pytest.mark.browser
Shoot = Callable[..., Path]
PAYMENTS = "**/api/v1/me/payments"


def test_enrol_pay_a_payment_qr_and_see_it_in_the_history(
    page: Page, city: City, camera: FakeCamera, shoot: Shoot
) -> None:
    resident = city.new_resident(1_200, expiring=500)
    expiring = next(line for line in city.wallet(resident)["by_expiry"] if line["amount"] == 500)
    expires_on = date.fromisoformat(expiring["valid_until"])

    page.goto("/app/#/enrol")
    on_screen(page, "enrol")
    expect(page.locator("html")).to_have_attribute("lang", "ja")
    expect(page.locator("#enrol-self")).to_be_visible()  # the city allows self-enrolment
    # A wrong code: a plain Japanese sentence, no error code.
    page.locator("#code").fill("AAAA-BBBB-CC")
    page.locator("#enrol-code").click()
    check_error(page)

    page.locator("#code").fill(resident.counter_code)
    page.locator("#enrol-code").click()
    on_screen(page, "welcome")
    page.locator("#to-home").click()
    expect_balance(page, 1_700)
    expect(page.locator("#expiring")).to_be_visible()
    expect(page.locator("#expiring")).to_contain_text(points(500))
    expect(page.locator("#expiring")).to_contain_text(japanese_date(expires_on))
    shoot(page, "home")

    # The balance by expiry date.
    page.locator("#go-balance").click()
    on_screen(page, "balance")
    lines = page.locator("#by-expiry li")
    expect(lines).to_have_count(2)
    expect(lines.filter(has_text=japanese_date(expires_on))).to_contain_text(points(500))
    go_home(page)

    # The shop's till shows a payment QR; the resident scans it.
    scan(page, camera, city.payment_request(400))
    preview = on_screen(page, "preview")
    expect(preview.locator("#shop")).to_contain_text(SHOP_NAME_JA)
    expect(preview.locator("#till")).to_contain_text(TILL_NAME)
    expect(preview.locator("#amount")).to_have_text(points(400))
    expect(preview.locator("#balance-after")).to_have_text(points(1_300))
    shoot(page, "preview")
    preview.locator("#pay").click()
    paid = on_screen(page, "paid")
    expect(paid.locator("#paid-amount")).to_have_text(points(400))
    expect(paid.locator("#shop")).to_contain_text(SHOP_NAME_JA)
    shoot(page, "paid")
    paid.locator("#done").click()
    expect_balance(page, 1_300)
    assert city.balance(resident) == 1_300

    page.locator("#go-history").click()
    on_screen(page, "history")
    history = page.locator("#history li")
    expect(history.first).to_contain_text(SHOP_NAME_JA)
    expect(history.first).to_contain_text(re.compile(r"400"))
    expect(history.filter(has_text=PROGRAM_NAME_JA)).to_have_count(2)
    shoot(page, "history")


def test_store_qr_confirmed_then_declined(
    page: Page, city: City, camera: FakeCamera, shoot: Shoot
) -> None:
    resident = city.new_resident(2_000)
    enrol(page, resident.counter_code)

    def pay_at_the_store(keys: list[str], amount: int) -> str:
        scan(page, camera, city.store_qr)
        store = on_screen(page, "store")
        expect(store.locator("#shop")).to_contain_text(SHOP_NAME_JA)
        expect(store.locator("#till")).to_contain_text(TILL_NAME)
        shoot(page, "store")
        store.locator("#store-ok").click()
        keypad = on_screen(page, "amount")
        for key in keys:
            keypad.locator(f'[data-key="{key}"]').click()
        expect(keypad.locator("#amount")).to_contain_text(f"{amount:,}")
        shoot(page, "amount")
        keypad.locator("#amount-next").click()
        confirm = on_screen(page, "confirm")
        expect(confirm.locator("#shop")).to_contain_text(SHOP_NAME_JA)
        expect(confirm.locator("#amount")).to_have_text(points(amount))
        confirm.locator("#pay").click()
        on_screen(page, "waiting")
        shoot(page, "waiting")
        pending = [p for p in city.resident_payments(resident) if p["state"] == "pending"]
        assert [p["amount"] for p in pending] == [amount], pending
        return str(pending[0]["id"])

    # 1, 2, 3, back, 0: 120 pt, confirmed by the shop.
    payment = pay_at_the_store(["1", "2", "3", "back", "0"], 120)
    city.confirm(payment)
    paid = on_screen(page, "paid")
    expect(paid.locator("#paid-amount")).to_have_text(points(120))
    paid.locator("#done").click()
    expect_balance(page, 1_880)

    # 50 pt, declined: the points stay.
    payment = pay_at_the_store(["5", "0"], 50)
    city.decline(payment)
    on_screen(page, "declined")
    shoot(page, "declined")
    go_home(page)
    expect_balance(page, 1_880)
    assert city.balance(resident) == 1_880


def test_check_in_at_an_event_and_a_code_not_ours(
    page: Page, city: City, camera: FakeCamera, shoot: Shoot
) -> None:
    resident = city.new_resident(100)
    enrol(page, resident.counter_code)
    expect_balance(page, 100)

    scan(page, camera, "https://example.com/hello")
    not_ours = on_screen(page, "not-ours")
    assert not_ours.inner_text().strip(), "the not-ours screen explains nothing"
    shoot(page, "not-ours")
    not_ours.locator("#done").click()
    expect_balance(page, 100)

    scan(page, camera, city.event_qr())
    checkin = on_screen(page, "checkin")
    expect(checkin.locator("#event-name")).to_contain_text(EVENT_NAME)
    expect(checkin.locator("#earned")).to_have_text(points(EVENT_POINTS))
    shoot(page, "checkin")
    checkin.locator("#done").click()
    expect_balance(page, 100 + EVENT_POINTS)
    assert city.balance(resident) == 100 + EVENT_POINTS


def test_a_pay_code_the_shop_scans(page: Page, city: City, shoot: Shoot) -> None:
    resident = city.new_resident(1_000)
    enrol(page, resident.counter_code)
    page.locator("#go-paycode").click()
    paycode = on_screen(page, "paycode")
    qr = paycode.locator("#paycode-qr")
    expect(qr.locator("svg")).to_be_visible()
    expect(paycode.locator("#countdown")).to_have_text(re.compile(r"\d"))
    image = Image.open(io.BytesIO(qr.screenshot()))
    shoot(qr, "paycode-qr")
    found = zxingcpp.read_barcodes(image)
    assert found, "zxing-cpp finds no code in #paycode-qr"
    text = found[0].text
    assert text.upper().startswith(city.server.url.upper() + "/Q/"), text

    city.pay_with_code(text, 250)
    paid = on_screen(page, "paid")
    expect(paid.locator("#paid-amount")).to_have_text(points(250))
    expect(paid.locator("#shop")).to_contain_text(SHOP_NAME_JA)
    paid.locator("#done").click()
    expect_balance(page, 750)


def test_a_payment_whose_answer_was_lost_is_retried_once(
    page: Page, city: City, camera: FakeCamera
) -> None:
    resident = city.new_resident(1_000)
    enrol(page, resident.counter_code)
    reference = f"cut-{uuid.uuid4().hex[:8]}"
    scan(page, camera, city.payment_request(300, reference=reference))
    preview = on_screen(page, "preview")

    sent: list[Request] = []
    page.on(
        "request",
        lambda request: (
            sent.append(request)
            if request.method == "POST" and request.url.endswith("/api/v1/me/payments")
            else None
        ),
    )
    reached: list[int] = []

    def cut(route: Route) -> None:
        if route.request.method != "POST" or reached:
            route.continue_()
            return
        reached.append(route.fetch().status)  # the server did the payment...
        route.abort()  # ...and the phone never heard of it

    page.route(PAYMENTS, cut)
    preview.locator("#pay").click()
    expect(page.locator("#retry")).to_be_visible()
    check_error(page)
    assert reached == [201]
    page.unroute(PAYMENTS, cut)
    page.locator("#retry").click()
    paid = on_screen(page, "paid")
    expect(paid.locator("#paid-amount")).to_have_text(points(300))

    keys = [request.headers.get("idempotency-key") for request in sent]
    assert len(keys) == 2 and keys[0] and keys[0] == keys[1], keys
    assert [p["reference"] for p in city.payments()].count(reference) == 1
    assert len(city.resident_payments(resident)) == 1
    assert city.balance(resident) == 700


def test_offline_the_app_shows_the_last_balance(page: Page, city: City, shoot: Shoot) -> None:
    resident = city.new_resident(800)
    enrol(page, resident.counter_code)
    expect_balance(page, 800)
    expect(page.locator("#offline")).to_be_hidden()
    assert page.evaluate("async () => { await navigator.serviceWorker.ready; return true; }")

    page.context.set_offline(True)
    page.reload()
    expect_balance(page, 800)
    expect(page.locator("#balance-at")).to_be_visible()
    expect(page.locator("#balance-at")).to_have_text(re.compile(r"\d"))
    offline = page.locator("#offline")
    expect(offline).to_be_visible()
    expect(offline).to_have_attribute("role", "status")
    shoot(page, "offline-home")

    page.context.set_offline(False)
    expect(offline).to_be_hidden()


def test_in_english(page: Page, city: City, camera: FakeCamera, shoot: Shoot) -> None:
    resident = city.new_resident(1_000)
    enrol(page, resident.counter_code)
    language = page.locator("#lang")
    expect(language).to_have_text(re.compile("English"))
    language.click()
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(language).to_have_text(re.compile("日本語"))

    home = on_screen(page, "home")
    expect(page.locator("#balance")).to_have_text(points(1_000))
    for button in ("#go-scan", "#go-paycode"):
        expect(home.locator(button)).to_have_text(re.compile(r"[A-Za-z]{3,}"))
    assert not japanese_in(home.inner_text()), home.inner_text()
    shoot(page, "home-en")

    scan(page, camera, city.payment_request(200))
    preview = on_screen(page, "preview")
    expect(preview.locator("#shop")).to_contain_text(SHOP_NAME_EN)
    shoot(page, "preview-en")
    expect(preview.locator("#pay")).to_have_text(re.compile(r"[A-Za-z]{3,}"))
    # The till's name is the shop's own and has no English version.
    outside_till = preview.evaluate(
        """section => {
            const copy = section.cloneNode(true);
            copy.querySelectorAll('#till').forEach(node => node.remove());
            document.body.appendChild(copy);
            const text = copy.innerText;
            copy.remove();
            return text;
        }"""
    )
    assert not japanese_in(outside_till), outside_till
    preview.locator("#cancel").click()
    on_screen(page, "home")

    # Back to Japanese in the settings, then sign out.
    page.locator("#go-settings").click()
    settings = on_screen(page, "settings")
    settings.locator("#lang-ja").click()
    expect(page.locator("html")).to_have_attribute("lang", "ja")
    settings.locator("#signout").click()
    # Asked first: "no" keeps the session, "yes" ends it.
    settings.locator("#signout-keep").click()
    settings.locator("#signout").click()
    settings.locator("#signout-confirm").click()
    on_screen(page, "enrol")
    page.goto("/app/#/home")
    on_screen(page, "enrol")


def test_a_qr_codes_url_opened_directly(page: Page, browser: Browser, city: City) -> None:
    resident = city.new_resident(500)
    text = city.payment_request(100)
    origin, rest = text.split("/Q/", 1)
    url = f"{origin.lower()}/Q/{rest}"

    # Without a session: the page saying to scan it in the wallet.
    stranger = browser.new_context(locale="ja-JP")
    try:
        opened = stranger.new_page()
        opened.goto(url)
        expect(opened.locator("h1")).to_have_text("ウォレットで読み取ってください")
        expect(opened.locator('a[href="/app/"]').first).to_be_visible()
    finally:
        stranger.close()

    # With a session: straight to the payment's preview in the app.
    enrol(page, resident.counter_code)
    page.goto(url)
    preview = on_screen(page, "preview")
    expect(preview.locator("#amount")).to_have_text(points(100))
    expect(preview.locator("#shop")).to_contain_text(SHOP_NAME_JA)
